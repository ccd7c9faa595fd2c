"""``sislms``: the command line. Settings are built here, once, and passed down."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streams.errors import PlanRefused, SislmsError
from streams.logs import configure_logging
from streams.settings import Settings

if TYPE_CHECKING:
    from sislms.wiring import Kernel
    from streams.dlq_replay import Letter

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False)
stack_app = typer.Typer(no_args_is_help=True, help="The local Kafka, registry and PostgreSQL.")
topology_app = typer.Typer(no_args_is_help=True, help="Topics and schemas as code.")
app.add_typer(stack_app, name="stack")
sis_app = typer.Typer(
    no_args_is_help=True, help="The SIS side: simulator, OneRoster sources, mass-change holds."
)
app.add_typer(topology_app, name="topology")
app.add_typer(sis_app, name="sis")
roles_app = typer.Typer(
    no_args_is_help=True,
    help="Role mapping: check a rule file, explain a person's roles, re-apply changed rules.",
)
app.add_typer(roles_app, name="roles")
lms_app = typer.Typer(
    no_args_is_help=True, help="The LMS side: the Canvas simulator and the provisioning sink."
)
app.add_typer(lms_app, name="lms")
db_app = typer.Typer(no_args_is_help=True, help="The analytics store: migrations and where the sink is.")
app.add_typer(db_app, name="db")
analytics_app = typer.Typer(
    no_args_is_help=True, help="The analytics side: the engagement processor and the PostgreSQL sink."
)
app.add_typer(analytics_app, name="analytics")
backfill_app = typer.Typer(
    no_args_is_help=True, help="Full re-reads of a source, publishing only what differs."
)
app.add_typer(backfill_app, name="backfill")
dlq_app = typer.Typer(
    no_args_is_help=True, help="Dead letters: count them, inspect them, re-submit them after a fix."
)
app.add_typer(dlq_app, name="dlq")

Components = Annotated[list[str] | None, typer.Argument(help="kafka, registry, postgres (default: all)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document for scripts.")]


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _until_signal(run: Callable[[threading.Event], None]) -> None:
    """``run(stop)`` in the foreground; SIGTERM or Ctrl-C sets ``stop``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(stop)
    except KeyboardInterrupt:
        stop.set()


def _fail(exc: Exception, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


# --- stack ------------------------------------------------------------------------------
@stack_app.command("up")
def stack_up(components: Components = None, as_json: JsonFlag = False) -> None:
    """Start what is not running (harmless to repeat) and wait until it answers."""
    from sislms.stack import Stack

    stack = Stack(_settings())
    statuses = stack.up(components)
    _print_status(stack, statuses, as_json)


@stack_app.command("down")
def stack_down(components: Components = None) -> None:
    """Stop the components this stack started (external services are left alone)."""
    from sislms.stack import Stack

    stack = Stack(_settings())
    stopped = stack.down(components)
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
def stack_status(components: Components = None, as_json: JsonFlag = False) -> None:
    """Each component's health and endpoint; exit 1 if any is not healthy."""
    from sislms.stack import Stack

    stack = Stack(_settings())
    statuses = stack.status(components)
    _print_status(stack, statuses, as_json)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@stack_app.command("fetch")
def stack_fetch() -> None:
    """Fetch the Kafka and registry jars from Maven Central into the cache (once)."""
    from sislms.stack.jars import fetch_jars

    jars = fetch_jars(_settings())
    typer.echo(
        f"jars ready in {jars.root} (Kafka {jars.kafka_version}, Apicurio Registry {jars.registry_version})"
    )


# --- topology ---------------------------------------------------------------------------
@topology_app.command("plan")
def topology_plan(as_json: JsonFlag = False) -> None:
    """Show how the cluster and the registry differ from the topology file."""
    from sislms.wiring import Kernel
    from streams.topology import plan

    settings = _settings()
    k = Kernel(settings)
    p = plan(k.catalog, k.admin, k.registry, settings.replication_factor_cap)
    typer.echo(json.dumps(p.as_dict(), indent=2) if as_json else p.render())
    if p.refusals:
        raise typer.Exit(1)


@topology_app.command("apply")
def topology_apply(as_json: JsonFlag = False) -> None:
    """Make the topology true: create topics, add partitions, fix configs, register schemas."""
    from sislms.wiring import Kernel
    from streams.topology import apply, plan

    settings = _settings()
    k = Kernel(settings)
    p = plan(k.catalog, k.admin, k.registry, settings.replication_factor_cap)
    if not as_json:
        typer.echo(p.render())
    result = apply(k.catalog, k.admin, k.registry, the_plan=p)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "applied": [a.line() for a in result.applied],
                    "failed": result.failed,
                    "notes": p.notes,
                },
                indent=2,
            )
        )
    else:
        typer.echo(f"applied {len(result.applied)} change(s)")
        for target, reason in result.failed.items():
            typer.echo(f"FAILED {target}: {reason}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@topology_app.command("docs")
def topology_docs() -> None:
    """Print the topic catalog as a Markdown table (README carries it)."""
    from sislms.wiring import Kernel
    from streams.docs import topic_catalog_markdown

    typer.echo(topic_catalog_markdown(Kernel(_settings()).catalog))


@app.command("docs")
def docs_cmd(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if README is stale.")] = False,
) -> None:
    """Regenerate README's settings table and topic catalog from the code."""
    from sislms.wiring import Kernel
    from streams.docs import render_readme
    from streams.settings import PROJECT_ROOT

    readme = PROJECT_ROOT / "README.md"
    text = readme.read_text()
    try:
        new = render_readme(text, Kernel(_settings()).catalog)
    except ValueError as exc:
        raise _fail(exc) from None
    if check:
        if new != text:
            typer.echo("README.md is stale: run `make docs`", err=True)
            raise typer.Exit(1)
        return
    readme.write_text(new)
    typer.echo("README.md: settings table and topic catalog regenerated")


@app.command("settings")
def settings_cmd(markdown: Annotated[bool, typer.Option(help="README's table")] = False) -> None:
    """Print the current settings (secrets redacted), or the documented table."""
    from streams.docs import settings_markdown

    settings = _settings()
    if markdown:
        typer.echo(settings_markdown())
    else:
        typer.echo(json.dumps(settings.as_dict(), indent=2, default=str))


@app.command("schemas")
def schemas_check() -> None:
    """Check every contract against each committed version of it (backward compatibility)."""
    from streams.schemas import SchemaSet, check_history

    settings = _settings()
    current = SchemaSet.load(settings.schemas_dir)
    problems = check_history(settings.schemas_dir, current)
    for where, found in problems.items():
        typer.echo(f"INCOMPATIBLE {where}:", err=True)
        for f in found:
            typer.echo(f"  - {f}", err=True)
    typer.echo(f"{len(current.contracts)} contracts; {len(problems)} incompatible change(s)")
    if problems:
        raise typer.Exit(1)


# --- sis ---------------------------------------------------------------------------------
StateFile = Annotated[
    Path | None,
    typer.Option(
        help="Keep the simulator's state in this file: loaded at start, saved every 30 s and at stop."
    ),
]
Users = Annotated[int | None, typer.Option("--users", help="Students + staff (default: the setting).")]
Seed = Annotated[int | None, typer.Option("--seed", help="District seed (default: the setting).")]


@sis_app.command("serve")
def sis_serve(
    users: Users = None,
    seed: Seed = None,
    port: Annotated[int | None, typer.Option(help="Port (default: the setting).")] = None,
    rate: Annotated[float | None, typer.Option(help="Changes per second made on its own.")] = None,
    webhook: Annotated[
        str | None, typer.Option(help="URL called on every change (e.g. the source's /trigger).")
    ] = None,
    state: StateFile = None,
) -> None:
    """Run the OneRoster 1.2 SIS simulator over a generated district (foreground)."""
    from sislms.sis import build_simulator

    simulator = build_simulator(
        _settings(),
        users=users,
        seed=seed,
        port=port,
        change_rate=rate,
        webhook_url=webhook,
        state_file=state,
    )
    typer.echo(f"OneRoster 1.2 SIS simulator on {simulator.url} ({simulator.district.counts()})")
    simulator.serve_forever()


# --- lms ---------------------------------------------------------------------------------
@lms_app.command("serve")
def lms_serve(
    port: Annotated[int | None, typer.Option(help="Port (default: the setting).")] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(help="Throttle bucket size per token (Canvas: 700; 0 turns throttling off)."),
    ] = None,
    state: StateFile = None,
    truth: Annotated[
        bool, typer.Option(help="Record the ground truth for GET /_sim/truth (it grows with every change).")
    ] = True,
) -> None:
    """Run the Canvas-compatible LMS simulator (foreground); token: SISLMS_LMS_TOKEN or the local one.
    It sends Canvas Live Events to the event receiver (SISLMS_LMS_SIMULATOR_EVENTS); POST
    /_sim/activity {"days": N} plays N school days of student and teacher activity."""
    from simulators.lms.app import Throttle
    from sislms.lms import build_lms_simulator

    throttle = Throttle() if rate_limit is None else Throttle(capacity=rate_limit)
    simulator = build_lms_simulator(_settings(), port=port, throttle=throttle, state_file=state, truth=truth)
    typer.echo(f"Canvas LMS simulator on {simulator.url}")
    simulator.serve_forever()


@lms_app.command("sink")
def lms_sink() -> None:
    """Run the Canvas provisioning sink: lms.provisioning.v1 applied to Canvas, outcomes to
    lms.provisioning.results.v1; /healthz and /metrics on SISLMS_LMS_SINK_PORT."""
    from sislms.lms import run_sink

    _until_signal(lambda stop: run_sink(_settings(), stop))


@lms_app.command("receive")
def lms_receive(
    port: Annotated[int | None, typer.Option(help="Port (default: SISLMS_LMS_EVENTS_PORT).")] = None,
) -> None:
    """Run the LMS event receiver: Canvas Live Events and Caliper envelopes on POST /events
    (Bearer SISLMS_LMS_EVENTS_TOKEN), into lms.events.raw.v1; /healthz and /metrics."""
    from sislms.lms import build_receiver

    server, _, producer = build_receiver(_settings(), port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    typer.echo(f"LMS event receiver on {server.url}/events")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        producer.close()


@lms_app.command("events")
def lms_events() -> None:
    """Run the events processor: lms.events.raw.v1 deduplicated and ordered into
    lms.assignments.v1, lms.submissions.v1, lms.grades.v1 and lms.activity.v1."""
    from sislms.lms import run_events_processor

    _until_signal(lambda stop: run_events_processor(_settings(), stop))


@lms_app.command("passback")
def lms_passback() -> None:
    """Run the grade passback: lms.assignments.v1 and lms.grades.v1 written to the SIS gradebook
    (OneRoster 1.2 line items and results), outcomes to lms.grades.passback.v1."""
    from sislms.lms import run_passback

    _until_signal(lambda stop: run_passback(_settings(), stop))


# --- analytics store ------------------------------------------------------------------------
@db_app.command("migrate")
def db_migrate() -> None:
    """Bring the analytics store's schema up to this version's newest migration (idempotent)."""
    from sislms.analytics import migrate_store

    try:
        done = migrate_store(_settings())
    except SislmsError as exc:
        raise _fail(exc) from None
    if done:
        typer.echo("applied: " + ", ".join(f"{m.version:04d}_{m.name}" for m in done))
    else:
        typer.echo("the analytics store is up to date")


@db_app.command("status")
def db_status(as_json: JsonFlag = False) -> None:
    """Applied migrations, and how fresh each topic is in the store (the sink's positions)."""
    from sislms.analytics import store_status

    try:
        status = store_status(_settings())
    except SislmsError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(status, indent=2, default=str))
        return
    typer.echo(f"schema {status['schema']}: migrations {status['migrations'] or 'none applied'}")
    for p in status["positions"]:
        typer.echo(
            f"  {p['topic']}[{p['partition']}]  next offset {p['next_offset']}"
            f"  last record {p['last_record_at']}  written {p['written_at']}"
        )


@analytics_app.command("engagement")
def analytics_engagement() -> None:
    """Run the engagement processor: lms.activity.v1 sessionized into time on task, events and
    sessions per user, course and local day, on analytics.engagement_daily.v1."""
    from sislms.analytics import run_engagement_processor

    _until_signal(lambda stop: run_engagement_processor(_settings(), stop))


@analytics_app.command("work")
def analytics_work() -> None:
    """Run the work tracker: each student's standing on each LMS assignment (on time, late,
    missing, pending, excused) on analytics.assignment_work.v1."""
    from sislms.analytics import run_work_tracker

    _until_signal(lambda stop: run_work_tracker(_settings(), stop))


@analytics_app.command("sink")
def analytics_sink() -> None:
    """Run the analytics sink: SIS entities, LMS facts, provisioning, passback and dead letters
    upserted into PostgreSQL (migrations applied at start)."""
    from sislms.analytics import run_analytics_sink

    _until_signal(lambda stop: run_analytics_sink(_settings(), stop))


# --- dashboard --------------------------------------------------------------------------------
@analytics_app.command("rebuild")
def analytics_rebuild(
    resume: Annotated[
        str | None, typer.Option("--resume", help="Go on with the rebuild of this id (and swap it in).")
    ] = None,
    no_swap: Annotated[bool, typer.Option("--no-swap", help="Build and catch up; do not swap.")] = False,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Rebuild the analytics store from the topics into a new schema while the dashboard keeps
    serving the old one, then swap the two in one transaction. The swap needs the analytics sink
    stopped; an interrupted rebuild goes on with --resume ID."""
    from sislms.analytics import rebuild_store

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        doc = rebuild_store(
            _settings(), resume=resume, dry_run=dry_run, swap=not no_swap, stop=stop,
            progress=lambda line: typer.echo(line, err=True),
        )  # fmt: skip
    except KeyboardInterrupt:
        typer.echo("interrupted: go on with --resume <id> (the id is in the first line)", err=True)
        raise typer.Exit(130) from None
    except SislmsError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    elif dry_run:
        typer.echo(
            f"rebuild {doc['id']}: {doc['topics']} topic(s), {doc['records']} record(s) into schema "
            f"{doc['schema']}; {doc['live']} becomes {doc['previous']} at the swap; the live sink has "
            f"{doc['liveSinkMembers']} member(s) (it must have none to swap)\ndry run: nothing changed"
        )


@app.command("dashboard")
def dashboard_cmd(
    port: Annotated[int | None, typer.Option("--port", help="Port (default SISLMS_DASHBOARD_PORT).")] = None,
) -> None:
    """Serve the dashboard: district overview with sync health, school, class and student views,
    the rows behind every number. Sign in as SISLMS_DASHBOARD_USER."""
    from sislms.dashboard import serve_dashboard

    try:
        serve_dashboard(_settings(), port)
    except SislmsError as exc:
        raise _fail(exc) from None


@sis_app.command("sync")
def sis_sync(
    once: Annotated[bool, typer.Option("--once", help="One run, then exit (no trigger endpoint).")] = False,
    snapshot: Annotated[
        bool, typer.Option("--snapshot", help="Re-read everything (a full snapshot).")
    ] = False,
) -> None:
    """Run the OneRoster REST source: snapshot, then delta polls plus the webhook trigger."""
    from sislms.sis import build_rest_source, run_rest_source

    settings = _settings()
    if once or snapshot:
        source = build_rest_source(settings)
        report = source.sync_once(force_snapshot=snapshot)
        typer.echo(
            json.dumps(
                {
                    "upserts": report.upserts,
                    "deletes": report.deletes,
                    "skipped": report.skipped,
                    "deadLetters": report.dead_letters,
                    "held": report.held,
                    "seconds": round(report.seconds, 1),
                },
                indent=2,
            )
        )
        return
    _until_signal(lambda stop: run_rest_source(settings, stop))


@sis_app.command("load")
def sis_load(
    bundle: Annotated[str, typer.Argument(help="A OneRoster CSV bundle: a folder or a .zip.")],
    name: Annotated[str, typer.Option(help="Source name (meta.source is oneroster-csv:<name>).")] = "csv",
) -> None:
    """Load a OneRoster 1.1/1.2 CSV bundle; every bad row is reported with file, line and reason."""
    from sislms.sis import build_csv_source

    report = build_csv_source(_settings(), name).load(bundle)
    for file, line, field, reason in report.rejected[:50]:
        typer.echo(f"{file}:{line or '-'}: {field or '-'}: {reason}", err=True)
    if len(report.rejected) > 50:
        typer.echo(f"... and {len(report.rejected) - 50} more (all in dlq.sis_ingest.v1)", err=True)
    typer.echo(
        f"{bundle}: OneRoster {report.version}: {sum(report.upserts.values())} upserted, "
        f"{sum(report.deletes.values())} deleted, {len(report.rejected)} rejected row(s) "
        f"in {report.seconds:.1f} s"
    )
    for entity_name, hold_id in report.held.items():
        typer.echo(
            f"HELD deletions of {entity_name}: sislms sis approve {hold_id}  |  sislms sis reject {hold_id}"
        )


@sis_app.command("export")
def sis_export(
    out: Annotated[str, typer.Argument(help="Folder (or .zip) to write the CSV bundle to.")],
    users: Users = None,
    seed: Seed = None,
) -> None:
    """Write the generated district as a OneRoster 1.2 CSV bundle."""
    from connectors.oneroster.csv import write_bundle
    from simulators.district import DistrictSpec, generate

    settings = _settings()
    district = generate(
        DistrictSpec(
            users=settings.simulator_users if users is None else users,
            seed=settings.simulator_seed if seed is None else seed,
        )
    )
    write_bundle(
        {k: list(v.values()) for k, v in district.collections.items()}, out, zip=out.endswith(".zip")
    )
    typer.echo(f"{out}: {district.counts()}")


@sis_app.command("holds")
def sis_holds(
    every: Annotated[bool, typer.Option("--all", help="Also decided holds.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Mass deletions waiting for an operator."""
    from dataclasses import asdict

    from sislms.sis import hold_book

    holds = hold_book(_settings()).list(status=None if every else "pending")
    if as_json:
        typer.echo(json.dumps([{**asdict(h), "deletions": len(h.deletions)} for h in holds], indent=2))
        return
    if not holds:
        typer.echo("no holds" if every else "no pending holds")
    for h in holds:
        typer.echo(
            f"{h.id}  {h.status:<8} {h.source}  {h.entity}: {len(h.deletions)} deletion(s), "
            f"{100 * h.share:.0f}% of {h.live_before} live, since {h.created_at}  ({h.note})"
        )


@sis_app.command("approve")
def sis_approve(hold_id: Annotated[str, typer.Argument(help="The hold's id (`sislms sis holds`).")]) -> None:
    """Publish a held mass deletion now."""
    from sislms.sis import apply_hold, hold_book

    settings = _settings()
    hold = hold_book(settings).decide(hold_id, approve=True)
    count = apply_hold(settings, hold)
    typer.echo(f"hold {hold_id} approved: {count} tombstone(s) published to {hold.topic}")


@sis_app.command("reject")
def sis_reject(hold_id: Annotated[str, typer.Argument(help="The hold's id (`sislms sis holds`).")]) -> None:
    """Drop a held mass deletion: nothing is deleted."""
    from sislms.sis import hold_book

    hold = hold_book(_settings()).decide(hold_id, approve=False)
    typer.echo(f"hold {hold_id} rejected: {len(hold.deletions)} deletion(s) of {hold.entity} dropped")


# --- roster worker and role mapping ------------------------------------------------------
TopicMap = Annotated[
    Path | None,
    typer.Option("--topic-map", help="JSON file renaming topics: {catalog name: actual name}."),
]


@app.command("worker")
def worker_cmd(
    name: Annotated[
        str, typer.Option(help="This worker's name: its table folder under the state dir.")
    ] = "worker-1",
    port: Annotated[
        int | None, typer.Option(help="Port of /healthz and /metrics (default: SISLMS_ROSTER_WEB_PORT).")
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="Rule file (default: SISLMS_ROLES_FILE).")] = None,
    topic_map_file: TopicMap = None,
) -> None:
    """Run a roster worker: SIS changes in, LMS provisioning commands out. Start as many as you
    like with the same app id (each with its own --name and --port): they share the partitions."""
    from sislms.roster import build_roster, load_rules, run_worker, topic_map

    settings = _settings()
    ruleset = load_rules(settings, rules)  # an invalid rule file stops the worker here
    roster = build_roster(
        settings, worker=name, web_port=port, rules=ruleset, topics=topic_map(topic_map_file)
    )
    typer.echo(f"roster worker {name}: rules {ruleset.version}, {roster.partitions} partitions", err=True)
    run_worker(roster, settings.log_level.lower())


# --- replay and dead letters ---------------------------------------------------------------
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]


@app.command("replay")
def replay_cmd(
    group: Annotated[str, typer.Option("--group", help="The consumer group to move.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="earliest | latest | an ISO time with its zone (2026-12-01T06:00:00Z) | "
            "topic:partition:offset",
        ),
    ],
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic", help="Only this topic (repeatable; default: every topic the group committed in)."
        ),
    ] = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Move a stopped consumer group's offsets (by time through the broker's offsets-for-times
    lookup); its workers read again from there when they start. Refuses while the group has
    active members. The sinks are idempotent: what is read twice changes nothing."""
    from sislms.wiring import Kernel
    from streams.replay import apply_replay, parse_target, plan_replay

    k = Kernel(_settings())
    plan = plan_replay(k.admin, group, parse_target(to), topic)
    refusal = plan.refusal()
    if as_json:
        typer.echo(json.dumps({**plan.as_dict(), "dryRun": dry_run, "refused": refusal}, indent=2))
    else:
        typer.echo("\n".join(plan.lines()))
    if refusal:
        raise _fail(PlanRefused(refusal))
    if dry_run:
        if not as_json:
            typer.echo("dry run: nothing changed")
        return
    apply_replay(k.admin, plan)
    if not as_json:
        typer.echo(f"moved {len(plan.moves)} partition(s) of {group}: start its workers to read again")


@backfill_app.command("sis")
def backfill_sis_cmd(
    entities: Annotated[
        str | None,
        typer.Option("--entities", help="Comma-separated OneRoster entities (default: SISLMS_SIS_ENTITIES)."),
    ] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Read this OneRoster CSV bundle instead of the REST API.")
    ] = None,
    name: Annotated[str, typer.Option(help="Source name of a CSV backfill (oneroster-csv:<name>).")] = "csv",
    publish_all: Annotated[
        bool, typer.Option("--all", help="Publish every record, also those the topics already hold.")
    ] = False,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """A full snapshot of the SIS through the REST source (or a CSV bundle): only records that
    differ from the compacted topics are published, deletions as in any snapshot."""
    from sislms.sis import backfill_sis

    report = backfill_sis(
        _settings(),
        only=tuple(n.strip() for n in entities.split(",") if n.strip()) if entities else None,
        csv=csv,
        csv_name=name,
        publish_all=publish_all,
        dry_run=dry_run,
        progress=lambda line: typer.echo(line, err=True),
    )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    verb = "would publish" if dry_run else "published"
    typer.echo(f"{'entity':<18} {verb:>14} {'unchanged':>10} {'deleted':>8} {'dead letters':>13}")
    for n in report.published:
        typer.echo(
            f"{n:<18} {report.published[n]:>14} {report.unchanged[n]:>10} {report.deleted[n]:>8} "
            f"{report.dead_letters[n]:>13}"
        )
    others = {n: c for n, c in report.dead_letters.items() if n not in report.published}
    if others:
        typer.echo("dead letters of other files: " + ", ".join(f"{n} {c}" for n, c in others.items()))
    for n, hold in report.held.items():
        typer.echo(f"HELD deletions of {n}: sislms sis approve {hold}  |  sislms sis reject {hold}")
    typer.echo(f"{'dry run: nothing changed, ' if dry_run else ''}{report.seconds:.1f} s")


Stages = Annotated[
    list[str] | None, typer.Option("--stage", help="Only this stage (repeatable): dlq.<stage>.v1.")
]
Reasons = Annotated[list[str] | None, typer.Option("--reason", help="Only this reason (repeatable).")]


def _letters(stages: list[str] | None, reasons: list[str] | None) -> tuple[Kernel, list[Letter], dict]:
    from sislms.wiring import Kernel
    from streams.dlq_replay import dead_letter_topics, read_ledger, read_letters
    from streams.kafka import client_config

    k = Kernel(_settings())
    conf = client_config(k.settings, k.endpoints.kafka_bootstrap)
    letters = list(read_letters(conf, k.serdes, dead_letter_topics(k.catalog, stages), reasons=reasons))
    return k, letters, read_ledger(conf, k.serdes)


@dlq_app.command("list")
def dlq_list(stage: Stages = None, reason: Reasons = None, as_json: JsonFlag = False) -> None:
    """Dead letters by stage and reason: how many, how many a replay re-submitted or found
    superseded, how many are pending, and when they failed."""
    from streams.dlq_replay import summarize

    _, letters, ledger = _letters(stage, reason)
    rows = summarize(letters, ledger)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        typer.echo("no dead letters")
        return
    typer.echo(
        f"{'stage':<16} {'reason':<22} {'letters':>8} {'resubmitted':>12} {'superseded':>11} {'pending':>8}"
        "  first failed .. last failed"
    )
    for r in rows:
        first = r.first_failed.strftime("%Y-%m-%d %H:%M") if r.first_failed else "-"
        last = r.last_failed.strftime("%Y-%m-%d %H:%M") if r.last_failed else "-"
        typer.echo(
            f"{r.stage:<16} {r.reason:<22} {r.letters:>8} {r.resubmitted:>12} {r.superseded:>11} "
            f"{r.pending:>8}  {first} .. {last}"
        )


@dlq_app.command("show")
def dlq_show(
    stage: Stages = None,
    reason: Reasons = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (newest last).")] = 20,
    payload: Annotated[
        bool,
        typer.Option("--payload", help="Also print each original value, decoded (it may hold student data)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters one by one: position, stage, reason, attempts, error, where the original came
    from and what a replay did with it. Original values only with --payload."""
    from streams.dlq_replay import describe

    k, letters, ledger = _letters(stage, reason)
    shown = letters[-limit:] if limit > 0 else letters
    docs = []
    for x in shown:
        doc = describe(x, ledger.get(x.coordinate))
        if payload:
            doc["value"] = _decoded(k, x.source_topic, x.record.get("value"))
        docs.append(doc)
    if as_json:
        typer.echo(json.dumps(docs, indent=2, default=str))
        return
    for d in docs:
        replay = d["replay"]
        settled = (
            "pending"
            if replay is None
            else f"{replay['outcome']} {replay['resubmittedTo'] or replay['supersededBy']}"
        )
        typer.echo(
            f"{d['letter']}  {d['stage']}/{d['reason']}  attempt {d['attempt']}  failed {d['failedAt']}  "
            + settled
        )
        typer.echo(f"  error:  {str(d['error'])[:500]}")
        typer.echo(f"  origin: {d['origin']}  key {d['key']}  value {d['valueBytes']} bytes")
        if payload:
            typer.echo(f"  value:  {d['value']}")
    typer.echo(f"{len(docs)} of {len(letters)} letter(s)", err=True)


def _decoded(kernel: Kernel, topic: str | None, value: bytes | None) -> object:
    if value is None:
        return None
    if topic is not None and topic in kernel.catalog:
        try:
            return kernel.serdes[topic].decode(value)
        except SislmsError as exc:
            return f"(does not decode as {topic}: {exc}) {value[:200]!r}"
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value[:200].hex()


@dlq_app.command("replay")
def dlq_replay_cmd(
    stage: Stages = None,
    reason: Reasons = None,
    again: Annotated[
        bool, typer.Option("--again", help="Also re-submit letters an earlier replay settled.")
    ] = False,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-submit dead letters to the topics they came from, after a fix: the stage reads them
    again; one that fails again goes back to its dead-letter topic with one more attempt.
    Resumable: each letter is settled on ops.dlq_replays.v1 in the same transaction."""
    from streams.dlq_replay import ReplayLock, plan_letters, replay_letters
    from streams.kafka import client_config

    k, letters, ledger = _letters(stage, reason)
    conf = client_config(k.settings, k.endpoints.kafka_bootstrap)
    plan = plan_letters(k.admin, conf, letters, ledger, again=again)
    if as_json:
        typer.echo(json.dumps({**plan.as_dict(), "dryRun": dry_run}, indent=2))
    else:
        typer.echo("\n".join(plan.lines()))
    if dry_run:
        if not as_json:
            typer.echo("dry run: nothing changed")
        return
    with ReplayLock(k.admin, conf, k.settings.dlq_replay_group):
        done = replay_letters(
            k.producer(), k.serdes, plan, progress=lambda n, t: typer.echo(f"  {n}/{t} settled", err=True)
        )
    if not as_json:
        typer.echo(f"re-submitted {done['resubmitted']}, settled {done['superseded']} superseded")


@roles_app.command("check")
def roles_check(
    file: Annotated[Path | None, typer.Argument(help="Rule file (default: SISLMS_ROLES_FILE).")] = None,
) -> None:
    """Validate a rule file: every problem with its line and field; exit 1 when any."""
    from streams.roles.engine import RuleSet

    settings = Settings()
    path = file or settings.roles_file
    ruleset = RuleSet.load(path)
    kinds = {
        k: sum(1 for r in ruleset.rules if r.applies_to == k) for k in ("org_role", "enrollment", "observer")
    }
    typer.echo(
        f"{path}: ok, version {ruleset.version}: "
        + ", ".join(f"{n} {k} rule{'s' if n != 1 else ''}" for k, n in kinds.items())
    )


@roles_app.command("explain")
def roles_explain(
    person: Annotated[str, typer.Argument(help="The user's sourcedId.")],
    rules: Annotated[
        Path | None,
        typer.Option(help="Another rule file: preview its decisions (default: SISLMS_ROLES_FILE)."),
    ] = None,
    as_json: JsonFlag = False,
    topic_map_file: TopicMap = None,
) -> None:
    """Which rules matched each org role, enrollment and observer of a person, and why, decided
    again from the sis.* topics. Shows ids and roles only."""
    from sislms.roster import explain, explanation_json, load_rules, topic_map

    settings = _settings()
    x = explain(settings, person, rules=load_rules(settings, rules), topics=topic_map(topic_map_file))
    if as_json:
        typer.echo(json.dumps(explanation_json(x), indent=2))
        if not x.found:
            raise typer.Exit(2)
        return
    if not x.found:
        typer.echo(f"no user {person} on the users topic", err=True)
        raise typer.Exit(2)
    typer.echo(f"user {person}: rules {x.rules_version}, as of {x.as_of.isoformat()}")
    for d in x.decisions:
        head = {"org_role": "role", "enrollment": "enrollment", "observer": "observer"}[d.kind]
        typer.echo(f"\n{head} {d.subject}: {d.outcome}" + (f" ({d.note})" if d.note else ""))
        typer.echo("  facts: " + ", ".join(f"{k}={v}" for k, v in d.facts.items()))
        for c in d.checks:
            typer.echo(f"  {'+' if c.matched else '-'} {c.rule}: {c.why}")
        for g in d.grants:
            where = f" on {g.account}" if g.account else ""
            typer.echo(f"  => {g.kind} role {g.role}{where} [{' '.join(g.lti_roles)}] by {g.rule}")


@roles_app.command("reapply")
def roles_reapply(
    rules: Annotated[
        Path | None, typer.Option(help="The rule file the workers now run (default: SISLMS_ROLES_FILE).")
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            help="The rule file the people were decided under (default: read back from "
            "roster.rule_sets.v1: the one the workers run, or ran before these)."
        ),
    ] = None,
    everyone: Annotated[
        bool,
        typer.Option(
            "--all", help="Decide every person again, not only those whose roles change (date boundaries)."
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the workers to decide everyone asked.")
    ] = 3600.0,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
    topic_map_file: TopicMap = None,
) -> None:
    """Re-apply role rules: decide again, under the rules the roster workers run, every person
    whose roles the change touches, and emit only the differences. Prints what changes first
    (the dry run stops there). Refused while a worker runs other rules, and for a rule file that
    does not validate. Safe to run again: the workers emit only what still differs."""
    from sislms.roster import apply_roles_reapply, load_rules, plan_roles_reapply, topic_map

    settings = _settings()
    ruleset = load_rules(settings, rules)  # an invalid file stops here, every problem named
    before = load_rules(settings, previous) if previous else None
    topics = topic_map(topic_map_file)

    def say(line: str) -> None:
        typer.echo(line, err=True)

    plan = plan_roles_reapply(
        settings, rules=ruleset, previous=before, everyone=everyone, topics=topics, progress=say
    )
    refusal = plan.refusal()
    if not as_json:
        typer.echo("\n".join(plan.lines()))
    if dry_run:
        if as_json:
            typer.echo(json.dumps({**plan.as_dict(), "dryRun": True}, indent=2))
        else:
            if refusal:
                typer.echo(f"not possible yet: {refusal}")
            typer.echo("dry run: nothing published")
        return
    if refusal:
        if as_json:
            typer.echo(json.dumps({**plan.as_dict(), "dryRun": False}, indent=2))
        raise _fail(PlanRefused(refusal))
    outcome = apply_roles_reapply(settings, plan, topics=topics, timeout_s=timeout, progress=say)
    if as_json:
        typer.echo(json.dumps({**plan.as_dict(), "dryRun": False, "outcome": outcome.as_dict()}, indent=2))
    else:
        emitted = sum(outcome.commands.values())
        took = f"asked {outcome.published:,} in {outcome.seconds:.1f} s"
        typer.echo(
            f"{took}; the workers emitted {emitted:,} command(s)"
            + (": " + ", ".join(f"{a} {n:,}" for a, n in sorted(outcome.commands.items())) if emitted else "")
        )
        planned = sum(plan.commands.values())
        if emitted < planned:
            typer.echo(
                f"{planned - emitted:,} of the {planned:,} commands the change calls for were emitted before "
                "(by an earlier reapply of these rules, or a change since)"
            )
        if outcome.others:
            typer.echo(f"other commands meanwhile (SIS changes): {outcome.others:,}")
        if outcome.dead_letters:
            typer.echo(
                f"{outcome.dead_letters} request(s) refused by a worker running other rules: "
                "sislms dlq list --stage roster"
            )
    if not outcome.decided:
        raise _fail(
            RuntimeError(
                f"the workers had not decided everyone after {timeout:.0f} s; run the same command again "
                "to go on (what is done emits nothing again)"
            )
        )


# --- the whole pipeline -------------------------------------------------------------------
RosterWorkers = Annotated[
    int | None,
    typer.Option(
        min=1, max=32, help="Roster worker processes sharing the partitions (default: SISLMS_ROSTER_WORKERS)."
    ),
]


def _with_workers(settings: Settings, workers: int | None) -> Settings:
    return settings if workers is None else settings.model_copy(update={"roster_workers": workers})


@app.command("run")
def run_cmd(
    users: Annotated[
        int | None, typer.Option(help="Students + staff of a new district (default: SISLMS_SIMULATOR_USERS).")
    ] = None,
    sis_rate: Annotated[
        float, typer.Option(help="SIS changes a second once the initial sync is done.")
    ] = 1.0,
    activity_speed: Annotated[
        float, typer.Option(help="Simulated seconds of school activity per real second.")
    ] = 60.0,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over: remove the stored state (topics, store, simulators).")
    ] = False,
    roster_workers: RosterWorkers = None,
) -> None:
    """Run the whole district pipeline, supervised, until Ctrl-C: the stack, the simulators, the
    sources, workers, sinks, event receiver and dashboard. Running it again resumes."""
    from sislms.run import RunOptions, run_pipeline

    settings = _with_workers(_settings(), roster_workers)
    options = RunOptions(
        users=users or settings.simulator_users, sis_rate=sis_rate, activity_speed=activity_speed, fresh=fresh
    )
    raise typer.Exit(run_pipeline(settings, options))


@app.command("demo")
def demo_cmd(
    users: Annotated[int, typer.Option(help="Students + staff of the generated district.")] = 2_000,
    duration: Annotated[float, typer.Option(help="Seconds of live changes and activity.")] = 60.0,
    as_json: JsonFlag = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the stack and the programs up after the summary.")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop a demo left up by --keep, and exit.")] = False,
    sis_rate: Annotated[float, typer.Option(help="SIS changes a second while live.")] = 2.0,
    activity_speed: Annotated[
        float | None,
        typer.Option(help="Simulated seconds of school activity a second (default: 3 days in --duration)."),
    ] = None,
    activity_rate: Annotated[
        float,
        typer.Option(
            help="Cap on the activity, in Live Events a second over --duration: more plays a share of "
            "the classes (0: no cap)."
        ),
    ] = 250.0,
    sync_timeout: Annotated[
        float | None, typer.Option(help="Seconds allowed for the initial sync (default 600 + 0.2/user).")
    ] = None,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds allowed for the pipeline to drain after the live phase.")
    ] = 300.0,
    lms_rate_limit: Annotated[
        float | None,
        typer.Option(help="The LMS simulator's throttle bucket (default Canvas's 700; 0 turns it off)."),
    ] = None,
    batch_baseline: Annotated[
        bool,
        typer.Option(
            "--batch-baseline",
            help="After reconciling, time a nightly full re-import: the SIS exported as OneRoster CSV and "
            "loaded again.",
        ),
    ] = False,
    roster_workers: RosterWorkers = None,
) -> None:
    """Run the whole pipeline over a generated district on a stack of its own, for --duration
    seconds of live changes, then reconcile every flow against the simulators' ground truth.
    Exit 0 only if nothing is missing, unexpected or duplicated."""
    from sislms.demo import DemoOptions, run_demo, stop_kept_demo

    settings = _with_workers(_settings(), roster_workers)
    if stop:
        stop_kept_demo(settings, lambda line: typer.echo(line, err=True))
        return
    options = DemoOptions(
        users=users, duration_s=duration, keep=keep, sis_rate=sis_rate, activity_speed=activity_speed,
        activity_rate=activity_rate, sync_timeout_s=sync_timeout, drain_timeout_s=drain_timeout,
        lms_rate_limit=lms_rate_limit, batch_baseline=batch_baseline,
    )  # fmt: skip

    def emit(summary: dict) -> None:
        if as_json:
            typer.echo(json.dumps(summary, indent=2, default=str))
        else:
            typer.echo(_demo_text(summary))

    raise typer.Exit(run_demo(settings, options, emit))


def _demo_text(summary: dict) -> str:
    lines = [
        f"demo of {summary['users']:,} users: {'CLEAN' if summary['ok'] else 'NOT CLEAN'}",
        f"initial sync: {summary.get('initial_sync_s')} s",
        f"{'flow':<11} {'expected':>9} {'applied':>9} {'missing':>8} {'unexpected':>10} {'duplicated':>10}"
        f" {'p50 ms':>7} {'p99 ms':>7}",
    ]
    for name, f in summary.get("flows", {}).items():
        lat = f.get("latency", {})
        lines.append(
            f"{name:<11} {f['expected']:>9,} {f['applied']:>9,} {f['missing']:>8,} {f['unexpected']:>10,}"
            f" {f['duplicated']:>10,} {lat.get('p50_ms') or '-':>7} {lat.get('p99_ms') or '-':>7}"
        )
    if summary.get("timed_out"):
        lines.append(f"timed out: {summary['timed_out']}")
    if summary.get("empty_flows"):
        lines.append(f"nothing to reconcile in: {', '.join(summary['empty_flows'])}")
    letters = summary.get("dead_letters") or {}
    lines.append("dead letters: " + (", ".join(f"{k} {v}" for k, v in letters.items()) or "none"))
    if b := summary.get("batch_baseline"):
        lines.append(
            f"batch baseline (nightly CSV re-import): {b['records']:,} records, export {b['export_s']} s, "
            f"load {b['load_s']} s, pipeline {b['pipeline_s']} s; {b['provisioning_commands']} command(s), "
            f"{'unchanged' if b['unchanged'] else 'CHANGED'}"
        )
    return "\n".join(lines)


def _print_status(stack: object, statuses: list, as_json: bool) -> None:
    from sislms.stack import Stack

    assert isinstance(stack, Stack)
    if as_json:
        doc = {
            "healthy": all(s.healthy for s in statuses),
            "endpoints": stack.endpoints.public(),
            "components": {s.name: s.as_dict() for s in statuses},
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    for s in statuses:
        pid = f" pid {s.pid}" if s.pid else ""
        typer.echo(f"{s.name:<9} {s.state:<11} {s.endpoint}{pid}")
        if s.detail:
            typer.echo(f"          {s.detail}")
        if s.log_tail:
            typer.echo(f"          --- {s.log_file} (last lines) ---")
            for line in s.log_tail.splitlines():
                typer.echo(f"          | {line}")


def main() -> None:
    try:
        app()
    except SislmsError as exc:  # every expected failure ends as one line, no traceback
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
