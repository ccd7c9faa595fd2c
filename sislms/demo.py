"""``sislms demo``: the whole pipeline over a generated district, bounded, then reconciled.

The demo runs on a stack of its own (``<state dir>/demo``, every local port shifted by
:data:`PORT_SHIFT`), made fresh each time, so that it never touches the data of ``make run`` and
its counts are its own. In order:

1. the stack is started and the topology applied; the pipeline's programs start under a
   :class:`~sislms.supervisor.Supervisor` (the SIS simulator with its change generator off);
2. **initial sync**: from the SIS source's start until the LMS simulator holds exactly what the
   SIS simulator's roster gives through the rules, and every consumer group has caught up;
3. **live**: for ``duration`` seconds the SIS simulator makes changes (``sis_rate`` a second,
   announced to the source by its webhook) and the LMS simulator plays school activity on a wall
   clock ``activity_speed`` times faster than real time, its Live Events sent to the receiver.
   The activity is capped at ``activity_rate`` events a second over the live phase: a district
   whose three school days would make more plays them in a share of its classes (reported as
   ``activity_course_share``), so that the LMS simulator sends events as they are made instead
   of queueing them, and latency from the LMS change means what it says;
4. **drain**: the generators stop; the demo waits until every group has caught up and the
   targets reconcile (or ``drain_timeout`` passes);
5. **reconcile**: every flow against the simulators' ground truth (:mod:`sislms.reconcile`),
   printed as one JSON document with the endpoints an outside check can use.

It exits 0 only if no flow has anything missing, unexpected or duplicated, and none is empty
(a live phase that made no grade or no activity proves nothing about them). With ``keep`` the
stack and the programs stay up after the summary (``sislms demo --stop`` stops them).
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from connectors.oneroster.models import ENTITIES, GRADEBOOK_PATH, ROSTERING_PATH, to_record
from sislms.console import View
from sislms.dashboard import dashboard_password
from sislms.lms import events_token, lms_token
from sislms.pipeline import EXTERNAL, Watch, child_env, programs, start_stack
from sislms.reconcile import (
    FlowReport,
    activity_report,
    grades_report,
    roster_latency,
    roster_report,
)
from sislms.sis import client_secret
from sislms.stack import Stack
from sislms.supervisor import Supervisor, stop_leftovers
from sislms.wiring import Kernel
from streams.endpoints import mask_dsn
from streams.roles.engine import RuleSet
from streams.roster.app import RosterTopics
from streams.roster.desired import Target
from streams.roster.plan import plan_district
from streams.settings import Settings

__all__ = ["DemoOptions", "demo_settings", "run_demo", "stop_kept_demo"]

log = logging.getLogger(__name__)

#: The demo's local ports are the settings' plus this (its own Kafka, registry, PostgreSQL...).
PORT_SHIFT = 100
_ROSTER = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments")
#: what a nightly SIS-to-LMS batch carries: the roster and the demographics
_NIGHTLY = (*_ROSTER, "demographics")


@dataclass(frozen=True)
class DemoOptions:
    users: int = 2_000
    duration_s: float = 60.0
    keep: bool = False
    sis_rate: float = 2.0  #: SIS changes a second during the live phase
    #: simulated seconds of school activity per real second (default: three days over the live
    #: phase, so that work is handed in and graded)
    activity_speed: float | None = None
    #: a cap on the activity, in Live Events a second over the live phase (about what one LMS
    #: simulator process sends beside the pipeline on two cores, with room); 0: no cap
    activity_rate: float = 250.0
    sync_timeout_s: float | None = None  #: default: 600 s + 0.2 s per user
    drain_timeout_s: float = 300.0
    #: the SIS calls the source's /trigger on each change; False: the source polls alone
    #: (every SISLMS_SIS_POLL_INTERVAL_S)
    webhook: bool = True
    #: the LMS simulator's throttle bucket per token (None: Canvas's 700, about 100 calls a
    #: second sustained; 0: off, to measure the pipeline without Canvas's rate limit)
    lms_rate_limit: float | None = None
    #: after the reconciliation, today's nightly batch for comparison: the SIS's whole state
    #: exported as a OneRoster CSV bundle and loaded again (``batch_baseline`` in the JSON)
    batch_baseline: bool = False

    @property
    def speed(self) -> float:
        return self.activity_speed or 3 * 86_400 / max(1.0, self.duration_s)

    @property
    def activity_max_steps(self) -> int | None:
        return max(1, int(self.duration_s * self.activity_rate)) if self.activity_rate > 0 else None

    @property
    def sync_deadline_s(self) -> float:
        return self.sync_timeout_s if self.sync_timeout_s is not None else 600.0 + 0.2 * self.users


def demo_settings(base: Settings, today: date) -> tuple[Settings, dict[str, str]]:
    """The demo's settings and its programs' environment: its own state dir, shifted ports, no
    external service, the roster's date fixed, Caliper Live Events."""
    overrides: dict[str, str] = {
        "SISLMS_STATE_DIR": str(base.state_dir / "demo"),
        "SISLMS_ROSTER_AS_OF": today.isoformat(),
        "SISLMS_LMS_SIMULATOR_EVENTS": "true",
        "SISLMS_LMS_SIMULATOR_EVENTS_FORMAT": "caliper",
    }
    for name in Settings.model_fields:
        if name.endswith("_port"):
            overrides[f"SISLMS_{name.upper()}"] = str(getattr(base, name) + PORT_SHIFT)
    env = child_env(overrides, drop_external=True)
    values: dict[str, Any] = {k.removeprefix("SISLMS_").lower(): v for k, v in overrides.items()}
    values.update({k.removeprefix("SISLMS_").lower(): None for k in EXTERNAL})
    values["replication_factor_cap"] = None
    values["roster_workers"] = base.roster_workers
    settings = Settings(**values)
    return settings, env


def _demo_dir(base: Settings) -> Path:
    return base.state_dir / "demo"


def stop_kept_demo(base: Settings, say: Callable[[str], None]) -> None:
    """Stop a demo left up by ``--keep``: its programs, then its stack."""
    settings, _ = demo_settings(base, datetime.now(UTC).date())
    stopped = stop_leftovers(settings.state_dir / "logs", say)
    down = Stack(settings).down()
    say(f"demo stopped: {stopped} program(s), stack {', '.join(down) or 'already down'}")


@dataclass
class _Run:
    settings: Settings
    options: DemoOptions
    view: View
    supervisor: Supervisor
    watch: Watch
    kernel: Kernel
    interrupted: threading.Event = field(default_factory=threading.Event)
    #: one client for the simulators' control calls (a new one per call costs an SSL context)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=300))

    @property
    def sis(self) -> str:
        return f"http://127.0.0.1:{self.settings.simulator_port}"

    @property
    def lms(self) -> str:
        return f"http://127.0.0.1:{self.settings.lms_simulator_port}"

    def stop(self, stack: Stack) -> None:
        """Stop the programs, then (unless ``--keep``) this process's Kafka clients and the stack:
        the clients first, or librdkafka logs each refused reconnection to standard error."""
        self.supervisor.stop()
        if not self.options.keep:
            self.watch.close()
            self.kernel.close()
            stack.down()

    def tick(self, extra: str = "") -> None:
        """Watch the children, show the flows; raise when interrupted."""
        if self.interrupted.is_set():
            raise KeyboardInterrupt
        self.supervisor.check()  # reports through the view
        self.view.update(self.watch.read(), self.supervisor.children, extra)

    def wait(self, seconds: float, extra: str = "") -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick(extra)
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))

    def get(self, url: str, **params: Any) -> Any:
        r = self.http.get(url, params=params or None)
        r.raise_for_status()
        return r.json()

    def post(self, url: str, body: dict[str, Any]) -> Any:
        r = self.http.post(url, json=body, timeout=60)
        r.raise_for_status()
        return r.json()

    def caught_up(self) -> bool:
        states = self.watch.read()
        return all(s.lag == 0 for s in states if s.started)

    # --- ground truth ------------------------------------------------------------------------

    def sis_state(self) -> dict[str, dict[str, dict[str, Any]]]:
        state = self.get(f"{self.sis}/_sim/state")
        return {name: {r["sourcedId"]: r for r in records} for name, records in state.items()}

    def plan(self, sis: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Target]:
        """The LMS state the SIS simulator's roster gives through the workers' rules."""
        meta = {
            "source": "demo", "sourceChangedAt": datetime.now(UTC), "ingestedAt": datetime.now(UTC),
            "traceId": "demo", "sourceVersion": None,
        }  # fmt: skip
        g: dict[str, dict[str, Any]] = {}
        for ent in ENTITIES:
            if ent.name in _ROSTER:
                schema = self.kernel.catalog.contract(ent.topic).schema
                g[ent.name] = {
                    sid: to_record(ent.name, obj, schema, meta=meta)
                    for sid, obj in sis.get(ent.name, {}).items()
                    if obj.get("status") != "tobedeleted"
                }
        assert self.settings.roster_as_of is not None
        return plan_district(
            orgs=g["orgs"], sessions=g["academicSessions"], courses=g["courses"], classes=g["classes"],
            users=g["users"], enrollments=g["enrollments"], rules=RuleSet.load(self.settings.roles_file),
            today=self.settings.roster_as_of,
        )  # fmt: skip

    def dead_letters(self) -> dict[str, int]:
        names = [t.name for t in self.kernel.catalog if t.name.startswith("dlq.")]
        return {name: n for name in names if (n := self.watch.records(name))}

    def activity_rows(self) -> list[tuple[str, float]]:
        dsn = self.kernel.endpoints.postgres_dsn
        schema = self.settings.analytics_schema
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                f'select event_id, extract(epoch from written_at) from "{schema}".activity_events'  # noqa: S608
            ).fetchall()
        return [(str(eid), float(at)) for eid, at in rows]


def run_demo(base: Settings, options: DemoOptions, emit: Callable[[dict[str, Any]], None]) -> int:
    """Runs the demo (see the module's docstring); ``emit`` gets the summary. Returns the exit
    code: 0 clean, 1 something missing, unexpected or duplicated (or a phase timed out)."""
    today = datetime.now(UTC).date()
    settings, env = demo_settings(base, today)
    home = settings.state_dir
    with View() as view:
        stop_leftovers(home / "logs", view.say)
        Stack(settings).down()
        if home.exists():
            shutil.rmtree(home)
            view.say(f"demo: removed the previous demo's state ({home})")
        home.mkdir(parents=True)
        t_start = time.monotonic()
        view.say("demo: starting its own Kafka, schema registry and PostgreSQL")
        stack, kernel = start_stack(settings)
        supervisor = Supervisor(
            programs(
                settings, users=options.users, sis_rate=0.0, webhook=options.webhook,
                lms_rate_limit=options.lms_rate_limit,
            ),
            env=env,
            log_dir=home / "logs",
            report=view.say, die_with_parent=not options.keep,
        )  # fmt: skip
        watch = Watch(
            settings, kernel.endpoints.kafka_bootstrap, f"http://127.0.0.1:{settings.simulator_port}"
        )
        run = _Run(settings, options, view, supervisor, watch, kernel)
        previous = signal.signal(signal.SIGINT, lambda *_: run.interrupted.set())
        signal.signal(signal.SIGTERM, lambda *_: run.interrupted.set())
        try:
            summary = _phases(run, t_start)
        except KeyboardInterrupt:
            view.say("demo: interrupted; stopping")
            run.stop(stack)
            return 130
        except Exception:
            run.stop(stack)
            raise
        finally:
            signal.signal(signal.SIGINT, previous)
        summary["endpoints"] = _endpoints(settings, kernel)
        summary["kept"] = options.keep
        if options.keep:
            view.say("demo: --keep: the stack and the programs stay up; stop them with `sislms demo --stop`")
            supervisor.detach()
        else:
            run.stop(stack)
    emit(summary)
    return 0 if summary["ok"] else 1


def _phases(run: _Run, t_start: float) -> dict[str, Any]:
    opts, view = run.options, run.view
    view.say(f"demo: starting the pipeline over a generated district of {opts.users:,} users")
    run.supervisor.start(wait=lambda: not run.interrupted.is_set())
    t0 = run.supervisor.child("sis-source").started_at
    view.say(f"demo: pipeline up in {t0 - t_start:.0f} s; initial sync from the SIS snapshot")

    # --- initial sync --------------------------------------------------------------------
    view.say("demo: the expected LMS state: the SIS simulator's roster through the role rules")
    sis0 = run.sis_state()
    plan0 = run.plan(sis0)
    view.say(f"demo: {len(plan0):,} LMS targets expected; waiting for the pipeline to provision them")
    deadline = t0 + opts.sync_deadline_s
    synced: float | None = None
    roster = FlowReport()
    while time.monotonic() < deadline:
        run.wait(2.0, "initial sync")
        if not run.caught_up():
            continue
        roster = roster_report(plan0, run.get(f"{run.lms}/_sim/state"))
        if roster.clean and run.caught_up():
            synced = time.monotonic() - t0
            break
    out: dict[str, Any] = {
        "users": opts.users, "duration_s": opts.duration_s, "sis_rate": opts.sis_rate,
        "activity_speed": opts.speed, "activity_rate_cap": opts.activity_rate or None,
        "sis_changes_found_by": "trigger" if opts.webhook else "polling",
        "lms_rate_limit": opts.lms_rate_limit, "roster_workers": run.settings.roster_workers,
    }  # fmt: skip
    if synced is None:
        view.say(f"demo: the initial sync did not complete within {opts.sync_deadline_s:.0f} s")
        out |= {"ok": False, "initial_sync_s": None, "timed_out": "initial sync",
                "flows": {"rostering": roster.as_dict()}, "dead_letters": run.dead_letters(),
                "processes": _processes(run)}  # fmt: skip
        return out
    view.say(f"demo: initial sync done in {synced:.1f} s ({roster.applied:,} LMS objects)")
    view.live()

    # --- live ----------------------------------------------------------------------------
    since_seq = int(run.get(f"{run.sis}/_sim/health")["lastSeq"])
    t_live = time.time()
    run.post(f"{run.sis}/_sim/generator", {"rate": opts.sis_rate})
    activity: dict[str, Any] = {"duration_s": opts.duration_s, "speed": opts.speed, "seed": 7}
    if opts.activity_max_steps is not None:
        activity["max_steps"] = opts.activity_max_steps
    run.post(f"{run.lms}/_sim/activity", activity)
    view.say(
        f"demo: live for {opts.duration_s:.0f} s: {opts.sis_rate:g} SIS changes/s, school activity "
        f"at {opts.speed:,.0f}x"
    )
    run.wait(opts.duration_s, "live")
    run.post(f"{run.sis}/_sim/generator", {"rate": 0})

    # --- drain ---------------------------------------------------------------------------
    view.say("demo: generators stopped; waiting for the pipeline to drain")
    deadline = time.monotonic() + opts.drain_timeout_s
    while time.monotonic() < deadline and _lms_busy(run):
        run.wait(1.0, "draining the LMS")
    reports: dict[str, FlowReport] = {}
    drained = False
    while time.monotonic() < deadline:
        run.wait(2.0, "draining")
        if not run.caught_up():
            continue
        reports = _reconcile(run, since_seq, t_live)
        if all(r.clean for r in reports.values()) and run.caught_up():
            drained = True
            break
    if not reports:
        reports = _reconcile(run, since_seq, t_live)
    # a flow with nothing to compare proves nothing: the live phase made no grade or no activity
    empty = [name for name, r in reports.items() if r.expected == 0]
    if empty:
        view.say(f"demo: nothing to reconcile in {', '.join(empty)}: the run proves nothing there")
    ok = drained and not empty and all(r.clean for r in reports.values())
    out |= {
        "ok": ok,
        **({"empty_flows": empty} if empty else {}),
        "activity_course_share": _course_share(run),
        "initial_sync_s": round(synced, 1),
        "initial_sync_objects": roster.applied,
        "flows": {name: r.as_dict() for name, r in reports.items()},
        "dead_letters": run.dead_letters(),
        "processes": _processes(run),
    }
    if not drained:
        out["timed_out"] = "drain"
    elif opts.batch_baseline:
        out["batch_baseline"] = _batch_baseline(run)
        out["ok"] = out["ok"] and out["batch_baseline"]["unchanged"]
    return out


def _batch_baseline(run: _Run) -> dict[str, Any]:
    """Today's nightly batch, for comparison: the SIS's whole current roster (the rostering
    collections: the gradebook goes the other way, LMS to SIS) exported as a OneRoster CSV
    bundle and loaded again through the CSV source, as a nightly full re-import does. The
    pipeline then finds what changed, which is nothing: the streaming path applied every change
    already. Timed: the export, the load, and until every consumer group has caught up.
    Checked: no provisioning command was made and the LMS still equals the plan."""
    import tempfile

    from connectors.oneroster.csv import write_bundle
    from sislms.sis import build_csv_source

    view, watch = run.view, run.watch
    view.say("demo: batch baseline: the SIS exported as a OneRoster CSV bundle and loaded again")
    commands_before = watch.records(RosterTopics().provisioning)
    with tempfile.TemporaryDirectory(prefix="sislms-nightly-") as tmp:
        t0 = time.monotonic()
        state = run.get(f"{run.sis}/_sim/state")
        bundle = Path(tmp) / "oneroster"
        write_bundle({name: state.get(name, []) for name in _NIGHTLY}, bundle)
        t_export = time.monotonic() - t0
        size = sum(f.stat().st_size for f in bundle.iterdir())
        t1 = time.monotonic()
        source = build_csv_source(run.settings, "nightly", run.kernel, state_dir=Path(tmp), only=_NIGHTLY)
        try:
            report = source.load(bundle)
        finally:
            source.writer.producer.close()  # flushed by the load; the stack may go down next
        t_load = time.monotonic() - t1
    t2 = time.monotonic()
    deadline = t2 + 1800.0
    while time.monotonic() < deadline:
        run.wait(2.0, "batch baseline: the pipeline reads the re-import")
        if run.caught_up():
            break
    caught_up = run.caught_up()
    t_apply = time.monotonic() - t2
    commands = watch.records(RosterTopics().provisioning) - commands_before
    roster = roster_report(run.plan(run.sis_state()), run.get(f"{run.lms}/_sim/state"))
    records = sum(report.upserts.values()) + sum(report.deletes.values())
    out = {
        "records": records,
        "rejected": len(report.rejected),
        "bundle_mb": round(size / 2**20, 1),
        "export_s": round(t_export, 1),
        "load_s": round(t_load, 1),
        "pipeline_s": round(t_apply, 1),
        "total_s": round(t_export + t_load + t_apply, 1),
        "caught_up": caught_up,
        "provisioning_commands": commands,
        "lms_equals_plan": roster.clean,
        "unchanged": caught_up and commands == 0 and roster.clean and not report.rejected,
    }
    view.say(
        f"demo: batch baseline: {records:,} records exported in {t_export:.1f} s, loaded in {t_load:.1f} s, "
        f"read by the pipeline in {t_apply:.1f} s; {commands} provisioning command(s) made"
    )
    return out


def _course_share(run: _Run) -> float | None:
    """The share of the district's classes the live activity played (1.0: all of them)."""
    shares = run.get(f"{run.lms}/_sim/activity/status").get("course_shares") or []
    return round(min(shares), 4) if shares else None


def _lms_busy(run: _Run) -> bool:
    """The LMS simulator still plays activity, or has Live Events not yet answered."""
    truth = run.get(f"{run.lms}/_sim/activity/status")
    if truth.get("running"):
        return True
    c = truth.get("events") or {}
    settled = c.get("sent", 0) + c.get("rejected", 0) + c.get("failed", 0) + c.get("dropped", 0)
    return bool(c) and c.get("queued", 0) > settled


def _reconcile(run: _Run, since_seq: int, t_live: float) -> dict[str, FlowReport]:
    sis = run.sis_state()
    lms_state = run.get(f"{run.lms}/_sim/state")
    truth = run.get(f"{run.lms}/_sim/truth")
    all_changes = run.get(f"{run.sis}/_sim/changes")["changes"]
    changes = [c for c in all_changes if int(c["seq"]) > since_seq]  # the live phase's

    rostering = roster_report(run.plan(sis), lms_state)
    rostering.latency, without = roster_latency(changes, sis, truth["writes"], t_live)
    rostering.detail["sis_changes"] = sum(1 for c in changes if c["collection"] in ("users", "enrollments"))
    rostering.detail["sis_changes_without_lms_effect"] = without

    prefix = run.settings.passback_id_prefix
    result_changes = [c for c in all_changes if c["collection"] == "results"]
    grades = grades_report(
        truth["grades"], sis.get("results", {}).values(), result_changes, prefix, truth["events"]["delivered"]
    )

    activity = activity_report(truth["events"]["delivered"], run.activity_rows())
    activity.detail["events_sent"] = truth["events"]["counts"]
    return {"rostering": rostering, "grades": grades, "activity": activity}


def _processes(run: _Run) -> dict[str, Any]:
    return {
        c.name: {"restarts": c.restarts, "peak_rss_mb": round(c.peak_rss / 2**20)}
        for c in run.supervisor.children
    }


def _endpoints(settings: Settings, kernel: Kernel) -> dict[str, Any]:
    ep = kernel.endpoints
    sis = f"http://127.0.0.1:{settings.simulator_port}"
    return {
        "kafka_bootstrap_servers": ep.kafka_bootstrap,
        "schema_registry_url": ep.schema_registry_url,
        "postgres_dsn": ep.postgres_dsn,
        "postgres_dsn_masked": mask_dsn(ep.postgres_dsn),
        "analytics_schema": settings.analytics_schema,
        "sis": {
            "oneroster_base_url": sis + ROSTERING_PATH,
            "gradebook_base_url": sis + GRADEBOOK_PATH,
            "token_url": sis + "/oauth/token",
            "client_id": settings.sis_client_id,
            "client_secret": client_secret(settings),
        },
        "lms": {"url": f"http://127.0.0.1:{settings.lms_simulator_port}", "token": lms_token(settings)},
        "event_receiver": {
            "url": f"http://127.0.0.1:{settings.lms_events_port}/events",
            "token": events_token(settings),
        },
        "dashboard": {
            "url": f"http://127.0.0.1:{settings.dashboard_port}/",
            "user": settings.dashboard_user,
            "password": dashboard_password(settings),
        },
    }
