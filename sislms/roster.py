"""Builds the roster side from settings: the rule set, the reference replica, the Faust worker,
and ``roles explain``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sislms.wiring import Kernel
from streams.compacted import read_to_end
from streams.confirmed import ConfirmedProducer
from streams.dlq import DeadLetterPublisher
from streams.errors import ConfigError
from streams.kafka import client_config, producer_config
from streams.roles.engine import Decision, RuleSet
from streams.roles.facts import ClassFacts, CourseFacts, EnrollmentFacts, OrgFacts, UserFacts
from streams.roster.app import Roster, RosterTopics
from streams.roster.reference import Reference
from streams.serde import Serdes, decode_key
from streams.settings import Settings

__all__ = ["build_roster", "explain", "load_rules", "topic_map"]


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
    )
    return roster


def run_worker(roster: Roster, loglevel: str = "info") -> None:
    """Run the Faust worker until SIGTERM or Ctrl-C."""
    from faust.worker import Worker

    Worker(roster.app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()


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
