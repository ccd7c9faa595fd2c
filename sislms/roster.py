"""Builds the roster side from settings: the rule set, the reference replica, the Faust worker,
and ``roles explain``."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from sislms.wiring import Kernel
from streams.compacted import end_offsets, group_lag, read_to_end
from streams.confirmed import ConfirmedProducer
from streams.dlq import DeadLetterPublisher
from streams.errors import ConfigError, PlanRefused
from streams.kafka import client_config, producer_config
from streams.roles.engine import Decision, RuleSet
from streams.roles.facts import ClassFacts, CourseFacts, EnrollmentFacts, OrgFacts, UserFacts
from streams.roster.app import Roster, RosterTopics
from streams.roster.reapply import (
    ReapplyPlan,
    RosterState,
    commands_since,
    plan_reapply,
    previous_rule_set,
    publish_requests,
    publish_rule_set,
    read_rule_sets,
    roster_members,
    wait_decided,
)
from streams.roster.reference import Reference
from streams.serde import Serdes, decode_key
from streams.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["apply_roles_reapply", "build_roster", "explain", "load_rules", "plan_roles_reapply", "topic_map"]


def load_rules(settings: Settings, path: Path | None = None) -> RuleSet:
    """The rule set, validated (``RuleFileError`` names the line and field of every problem)."""
    return RuleSet.load(path or settings.roles_file)


def topic_map(path: Path | None) -> RosterTopics:
    """The roster's topics; ``path`` is a JSON file renaming some (``{catalog name: name}``)."""
    if path is None:
        return RosterTopics()
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the topic map: {exc}") from None
    return RosterTopics.renamed(names)


def _replication(kernel: Kernel) -> int:
    brokers = len(kernel.admin.list_topics(timeout=30).brokers)
    return max(1, min(3, brokers))


def rocksdb_options(settings: Settings) -> dict[str, int]:
    """Each roster table's RocksDB budget per partition (a worker opens one database per table and
    partition it holds, standbys included): two write buffers and a block cache. Faust's own
    defaults (three 64 MB buffers and a 2 GB cache, each) let a worker grow with the district."""
    mb = 1024 * 1024
    return {
        "write_buffer_size": settings.roster_rocksdb_write_buffer_mb * mb,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.roster_rocksdb_block_cache_mb * mb,
    }


def build_roster(
    settings: Settings,
    *,
    worker: str = "worker-1",
    web_port: int | None = None,
    rules: RuleSet | None = None,
    topics: RosterTopics | None = None,
) -> Roster:
    """A roster worker ready to run: the rules validated, the reference data read to its end."""
    kernel = Kernel(settings)
    rules = rules or load_rules(settings)
    topics = topics or RosterTopics()
    for name in topics.all():
        kernel.catalog.topic(name)  # every topic declared (ConfigError otherwise)
    serdes = Serdes(kernel.registry, kernel.catalog, validate=False)
    dead_letters = DeadLetterPublisher(kernel.producer(), serdes, kernel.catalog)
    conf = client_config(settings, kernel.endpoints.kafka_bootstrap)
    reference = Reference(conf, serdes, topics.orgs, topics.courses).start()
    roster = Roster(
        bootstrap=kernel.endpoints.kafka_bootstrap,
        client_conf=conf,
        catalog=kernel.catalog,
        serdes=serdes,
        dead_letters=dead_letters,
        rules=rules,
        reference=reference,
        topics=topics,
        app_id=settings.roster_app_id,
        store=settings.roster_store,
        data_dir=settings.state_dir / "roster" / worker,
        web_port=web_port if web_port is not None else settings.roster_web_port,
        replication=_replication(kernel),
        as_of=settings.roster_as_of,
        producer=ConfirmedProducer(producer_config(settings, kernel.endpoints.kafka_bootstrap)),
        batch_size=settings.roster_batch_size,
        batch_within=settings.roster_batch_within,
        standby_replicas=settings.roster_standby_replicas,
        store_options=rocksdb_options(settings),
    )
    _declare_changelogs(kernel, roster)
    # every rule set a worker starts with is recorded: the audit's versions read back, and what
    # `sislms roles reapply` compares a new rule set with
    publish_rule_set(
        kernel.producer(), serdes[topics.rule_sets], topics.rule_sets,
        app_id=settings.roster_app_id, rules=rules, worker=worker,
    )  # fmt: skip
    return roster


def _declare_changelogs(kernel: Kernel, roster: Roster) -> None:
    """Create the tables' changelog topics before Faust starts, as Faust would (compacted, one
    partition per input partition). On a new cluster Faust creates them itself at start, but its
    consumer's metadata may not know their partitions yet when the first record comes: the
    agent then fails on a "0 partitions" mismatch and the worker exits (a restart works).
    Created here, they exist when the worker first reads its metadata."""
    wanted = {
        table.changelog_topic.get_topic_name(): table.changelog_topic.partitions or roster.partitions
        for table in roster.app.tables.values()
    }
    existing = kernel.admin.list_topics(timeout=10).topics
    new = [
        NewTopic(name, num_partitions=n, replication_factor=_replication(kernel),
                 config={"cleanup.policy": "compact"})
        for name, n in wanted.items() if name not in existing
    ]  # fmt: skip
    for name, future in (kernel.admin.create_topics(new, request_timeout=30) if new else {}).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another worker made it
                raise
        log.info("changelog topic %s created (%d partitions)", name, wanted[name])


def faust_worker(roster: Roster, loglevel: str = "info") -> Any:
    """The Faust worker of ``roster``, without its terminal spinner.

    At a log level of WARNING or above, Faust's worker keeps a progress spinner that turns on
    every log message: it sets the root logger to DEBUG, so each debug line of Faust and aiokafka
    (one per changelog send, per fetch, ...) became a log record, about 4 % of a loading worker's
    time in a profile. A service logging to a file has no terminal to spin in."""
    from faust.worker import Worker

    worker = Worker(roster.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


def run_worker(roster: Roster, loglevel: str = "info") -> None:
    """Run the Faust worker until SIGTERM or Ctrl-C."""
    faust_worker(roster, loglevel).execute_from_commandline()


@dataclass
class Explanation:
    """Everything the rules decided for one person, from the topics' current state."""

    person: str
    found: bool
    rules_version: str
    as_of: date
    decisions: list[Decision]


def _state(conf: dict[str, Any], serdes: Serdes, topic: str, keep: Any = None) -> dict[str, Any]:
    state: dict[str, Any] = {}
    serde = serdes[topic]
    for m in read_to_end(conf, topic):
        key = decode_key(m.key())
        if key is None:
            continue
        if m.value() is None:
            state.pop(key, None)
            continue
        value = serde.decode(m.value())
        if keep is None or keep(value):
            state[key] = value
        else:
            state.pop(key, None)
    return state


def explain(
    settings: Settings, person: str, *, rules: RuleSet | None = None, topics: RosterTopics | None = None
) -> Explanation:
    """Decide again, from the ``sis.*`` topics, every role of ``person``: each org role, each
    enrollment, and each agent observing them; with a different rule file, a preview of it."""
    kernel = Kernel(settings)
    rules = rules or load_rules(settings)
    t = topics or RosterTopics()
    serdes = Serdes(kernel.registry, kernel.catalog, validate=False)
    conf = client_config(settings, kernel.endpoints.kafka_bootstrap)
    users = _state(conf, serdes, t.users, keep=lambda v: v["sourcedId"] == person)
    today = settings.roster_as_of or datetime.now(UTC).date()
    if person not in users:
        return Explanation(person, False, rules.version, today, [])
    user = UserFacts.from_record(users[person])
    orgs = {k: OrgFacts.from_record(v) for k, v in _state(conf, serdes, t.orgs).items()}
    courses = [CourseFacts.from_record(v) for v in _state(conf, serdes, t.courses).values()]
    enrollments = {
        k: EnrollmentFacts.from_record(v)
        for k, v in _state(
            conf, serdes, t.enrollments, keep=lambda v: v["user"]["sourcedId"] == person
        ).items()
    }
    wanted = {e.klass for e in enrollments.values()}
    classes = {
        k: ClassFacts.from_record(v)
        for k, v in _state(conf, serdes, t.classes, keep=lambda v: v["sourcedId"] in wanted).items()
    }
    decisions: list[Decision] = []
    for d in rules.org_roles(user, orgs, today):
        for g in d.grants:
            if g.kind == "template":
                n = len(list(rules.templates(g, user, courses)))
                d = replace(d, note=f"{g.role} on the templates of {n} courses")
        decisions.append(d)
    for eid in sorted(enrollments):
        e = enrollments[eid]
        decisions.append(rules.enrollment(e, user, classes.get(e.klass), today))
        decisions.extend(rules.observers(e, user, classes.get(e.klass), today))
    return Explanation(person, True, rules.version, today, decisions)


def explanation_json(x: Explanation) -> dict[str, Any]:
    def decision(d: Decision) -> Mapping[str, Any]:
        return {
            "kind": d.kind,
            "subject": d.subject,
            "person": d.person,
            "outcome": d.outcome,
            "note": d.note,
            "grants": [
                {
                    "kind": g.kind,
                    "role": g.role,
                    "account": g.account,
                    "ltiRoles": list(g.lti_roles),
                    "rule": g.rule,
                }
                for g in d.grants
            ],
            "checks": [{"rule": c.rule, "matched": c.matched, "why": c.why} for c in d.checks],
            "facts": dict(d.facts),
        }

    return {
        "person": x.person,
        "found": x.found,
        "rules": x.rules_version,
        "asOf": x.as_of.isoformat(),
        "decisions": [decision(d) for d in x.decisions],
    }


@dataclass
class ReapplyOutcome:
    """What a reapply did once its requests were published."""

    published: int
    decided: bool  # the workers committed past every request before the timeout
    seconds: float
    commands: dict[str, int]  # commands the requests caused, by action
    others: int  # other commands emitted meanwhile (SIS changes)
    dead_letters: int  # requests refused by a worker running other rules

    def as_dict(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "decided": self.decided,
            "seconds": round(self.seconds, 1),
            "commands": dict(sorted(self.commands.items())),
            "otherCommands": self.others,
            "deadLetters": self.dead_letters,
        }


def plan_roles_reapply(
    settings: Settings,
    *,
    rules: RuleSet,
    previous: RuleSet | None = None,
    everyone: bool = False,
    topics: RosterTopics | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> ReapplyPlan:
    """Who ``rules`` re-decides and what it changes, from the ``sis.*`` topics (publishes nothing).
    ``previous`` is the rule set the people were decided under; by default the one the workers run,
    or ran before ``rules``, read back from ``roster.rule_sets.v1``."""
    kernel = Kernel(settings)
    t = topics or RosterTopics()
    serdes = Serdes(kernel.registry, kernel.catalog, validate=False)
    conf = client_config(settings, kernel.endpoints.kafka_bootstrap)
    group = settings.roster_app_id
    members = roster_members(kernel.admin, group)
    if previous is not None:
        previous_from = f"given: {previous.source}"
    else:
        ran = read_rule_sets(conf, serdes[t.rule_sets], t.rule_sets, group)
        record, previous_from = previous_rule_set(ran, members, rules.version)
        if record is not None:
            previous = RuleSet.from_text(record["text"], f"{t.rule_sets} {group}|{record['version']}")
    plan = ReapplyPlan(
        reapply_id=uuid.uuid4().hex[:12],
        group=group,
        rules=rules.version,
        previous=previous.version if previous else None,
        previous_from=previous_from,
        as_of=settings.roster_as_of or datetime.now(UTC).date(),
        members=members,
    )
    state = {}
    for name, topic in (("orgs", t.orgs), ("courses", t.courses), ("classes", t.classes), ("users", t.users),
                        ("enrollments", t.enrollments)):  # fmt: skip
        state[name] = _state(conf, serdes, topic)
        progress(f"read {topic}: {len(state[name]):,} records")
    plan_reapply(plan, RosterState(**state), rules, previous, everyone=everyone)
    plan.lag = group_lag(conf, group, list(t.inputs()))
    return plan


def apply_roles_reapply(
    settings: Settings,
    plan: ReapplyPlan,
    *,
    topics: RosterTopics | None = None,
    timeout_s: float = 3600.0,
    progress: Callable[[str], None] = lambda _line: None,
) -> ReapplyOutcome:
    """Publish the plan's requests and wait until the workers have decided them all."""
    refusal = plan.refusal()
    if refusal:
        raise PlanRefused(refusal)
    kernel = Kernel(settings)
    t = topics or RosterTopics()
    serdes = Serdes(kernel.registry, kernel.catalog, validate=False)
    conf = client_config(settings, kernel.endpoints.kafka_bootstrap)
    started = time.monotonic()
    requests_from = end_offsets(conf, t.reapply)
    commands_from = end_offsets(conf, t.provisioning)
    letters_from = sum(end_offsets(conf, kernel.catalog.dead_letter_topic("roster").name).values())
    published = publish_requests(
        kernel.producer(), serdes, t.reapply, plan, lambda n, total: progress(f"published {n:,}/{total:,}")
    )
    progress(f"published {published:,} request(s) to {t.reapply}; waiting for the workers")
    requests_to = end_offsets(conf, t.reapply)
    last = [0.0]

    def report(done: int, total: int, elapsed: float) -> None:
        if elapsed - last[0] >= 5 or done >= total:
            last[0] = elapsed
            rate = done / elapsed if elapsed > 0 else 0.0
            progress(f"decided {done:,}/{total:,} ({rate:,.0f}/s, {elapsed:,.0f} s)")

    decided = wait_decided(
        conf, plan.group, t.reapply, requests_to, requests_from, timeout_s=timeout_s, progress=report
    )
    ours, others = commands_since(conf, serdes[t.provisioning], t.provisioning, commands_from, t.reapply)
    letters = sum(end_offsets(conf, kernel.catalog.dead_letter_topic("roster").name).values()) - letters_from
    return ReapplyOutcome(published, decided, time.monotonic() - started, dict(ours), others, letters)
