"""Re-applying role rules: decide again the people a rule change touches, and emit only the
differences (``sislms roles reapply``).

The roster workers decide a person when one of the person's records changes, with the rule set
they were started with. After a rule change, the people it touches must be decided again:

1. **Plan.** From the ``sis.*`` topics, every person is decided under the previous rule set and
   under the new one (:func:`plan_reapply`, the same pure functions the people agent runs). The
   people whose LMS targets or decisions differ are the ones to ask; the commands the workers will
   emit are the diff of the two target sets (:func:`streams.roster.commands.diff`). The previous
   rule set is the one the workers run now, or the one they ran before the new one (both read
   back from ``roster.rule_sets.v1``, where every worker records its rules at start).
2. **Ask.** One request per person on ``roster.reapply.v1``, keyed by the person (the people
   agent's partition), carrying the new rule set's version. The agent decides the person again
   from its own tables and emits what differs from what it emitted before: the workers' diff, not
   this plan, decides what is sent, so a request repeated (a resumed or second reapply) emits
   nothing more. A worker running other rules dead-letters the request instead.
3. **Wait.** Until the workers' group has committed past every request, with progress; then the
   commands the requests caused are counted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.compacted import end_offsets, read_to_end
from streams.roles.engine import Decision, RuleSet
from streams.roles.facts import ClassFacts, CourseFacts, OrgFacts
from streams.roster.app import rules_of_client
from streams.roster.commands import diff
from streams.roster.desired import Target, target_id
from streams.roster.plan import Records, plan_people
from streams.serde import Serdes, TopicSerde, decode_key, encode_key

__all__ = [
    "Member",
    "ReapplyPlan",
    "RosterState",
    "plan_reapply",
    "previous_rule_set",
    "publish_requests",
    "publish_rule_set",
    "read_rule_sets",
    "roster_members",
    "wait_decided",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """A member of the roster workers' consumer group and the rule set it runs."""

    client_id: str
    host: str
    rules: str | None  # None: not a roster worker's client id (an older worker)


@dataclass
class RosterState:
    """The ``sis.*`` records the people agent decides from, decoded (latest per key)."""

    orgs: Records
    courses: Records
    classes: Records
    users: Records
    enrollments: Records

    @property
    def records(self) -> int:
        return sum(len(x) for x in (self.orgs, self.courses, self.classes, self.users, self.enrollments))


def _role(attrs: Mapping[str, Any] | None) -> str:
    """How a change is summed up: the role of an enrollment or admin role, else the status."""
    if attrs is None or (attrs.get("status") == "deleted" and "role" in attrs):
        return "(none)"
    return str(attrs.get("role") or attrs.get("status") or "(none)")


def _outcomes(decisions: Iterable[Decision]) -> dict[str, Any]:
    """What an audit reader sees of each decision, but which rules were tried: a rule set that
    only adds a rule nobody matches changes no decision."""
    return {
        f"{d.kind}:{d.subject}": (d.outcome, tuple((g.kind, g.role, g.account, g.rule) for g in d.grants))
        for d in decisions
    }


@dataclass
class ReapplyPlan:
    """What a reapply will ask and what the workers will emit for it."""

    reapply_id: str
    group: str
    rules: str  # the new rule set's version
    previous: str | None  # the rule set the people were decided under (None: not known)
    previous_from: str  # where the previous one came from
    as_of: date
    members: list[Member]
    people: int = 0  # people read from the topics
    ask: list[str] = field(default_factory=list)  # the people to decide again
    everyone: bool = False
    commands: Counter[str] = field(default_factory=Counter)  # action -> count
    changes: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (kind, before, after)
    decisions: int = 0  # decisions whose outcome or grants change
    records: int = 0  # sis records read
    lag: int | None = None  # records the workers have not committed yet

    def refusal(self) -> str | None:
        """Why the requests cannot be published now (None: they can)."""
        if not self.members:
            return (
                f"no roster worker of {self.group} is running: start the workers with the new rules "
                f"({self.rules}: --rules FILE or SISLMS_ROLES_FILE), then reapply; they decide the people"
            )
        others = sorted({m.rules or "(unknown)" for m in self.members if m.rules != self.rules})
        if others:
            n = sum(1 for m in self.members if m.rules != self.rules)
            return (
                f"{n} of {len(self.members)} workers of {self.group} run other rules ({', '.join(others)}), "
                f"not {self.rules}: restart them with the new rule file first"
            )
        if self.previous is None and not self.everyone:
            return (
                "the rules the people were decided under are not known (not on roster.rule_sets.v1): "
                "give them with --previous FILE, or decide every person again with --all"
            )
        return None

    def lines(self) -> list[str]:
        running = Counter(m.rules or "(unknown)" for m in self.members)
        workers = ", ".join(f"{n} on {v}" for v, n in running.items()) or "none running"
        out = [
            f"reapply {self.reapply_id}: rules {self.rules}, as of {self.as_of.isoformat()}",
            f"  previous rules: {self.previous or '(not known)'} ({self.previous_from})",
            f"  workers of {self.group}: {workers}",
            f"  read {self.records:,} sis records, {self.people:,} people",
        ]
        if self.lag:
            out.append(
                f"  note: the workers have {self.lag:,} input records to read; the plan is against the "
                "topics, which they have not reached yet"
            )
        who = "every person" if self.everyone else "the people whose roles change"
        out.append(f"  to decide again: {len(self.ask):,} ({who})")
        if self.previous is None:
            out.append("  commands: not known without the previous rules (the workers emit only differences)")
            return out
        total = sum(self.commands.values())
        out.append(
            f"  commands the change calls for: {total:,}"
            + (": " + ", ".join(f"{a} {n:,}" for a, n in sorted(self.commands.items())) if total else "")
            + " (the workers emit those they have not emitted yet)"
        )
        out.append(f"  decisions that change: {self.decisions:,}")
        for (kind, before, after), n in sorted(self.changes.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"    {kind:<14} {before} -> {after}: {n:,}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "reapplyId": self.reapply_id,
            "group": self.group,
            "rules": self.rules,
            "previous": self.previous,
            "previousFrom": self.previous_from,
            "asOf": self.as_of.isoformat(),
            "workers": [{"clientId": m.client_id, "host": m.host, "rules": m.rules} for m in self.members],
            "records": self.records,
            "people": self.people,
            "ask": len(self.ask),
            "everyone": self.everyone,
            "commands": dict(sorted(self.commands.items())) if self.previous else None,
            "decisionsChanged": self.decisions if self.previous else None,
            "changes": [
                {"kind": k, "before": b, "after": a, "count": n}
                for (k, b, a), n in sorted(self.changes.items())
            ],
            "lag": self.lag,
            "refused": self.refusal(),
        }


def plan_reapply(
    plan: ReapplyPlan,
    state: RosterState,
    rules: RuleSet,
    previous: RuleSet | None,
    *,
    everyone: bool = False,
) -> ReapplyPlan:
    """Fill ``plan``: decide every person under ``previous`` and ``rules`` (as of ``plan.as_of``),
    and list those to ask: every person with ``everyone``, else those whose targets or decisions
    differ. Counts the commands the people agent will emit for them."""
    orgs = {k: OrgFacts.from_record(v) for k, v in state.orgs.items()}
    courses = [CourseFacts.from_record(v) for v in state.courses.values()]
    classes = {k: ClassFacts.from_record(v) for k, v in state.classes.items()}

    def people(with_rules: RuleSet) -> Iterator[tuple[str, dict[str, Target], list[Decision]]]:
        return plan_people(
            orgs=orgs, courses=courses, classes=classes, users=state.users, enrollments=state.enrollments,
            rules=with_rules, today=plan.as_of,
        )  # fmt: skip

    old = people(previous) if previous is not None else None
    plan.records, plan.everyone = state.records, everyone
    for person, targets, decisions in people(rules):
        plan.people += 1
        if old is None:
            plan.ask.append(person)
            continue
        before_person, before_targets, before_decisions = next(old)
        assert before_person == person  # both in sourcedId order over the same records
        _, emitted = diff({}, before_targets)  # what the agent holds after deciding them so
        commands, _ = diff(emitted, targets)
        was_targets = {target_id(k): t for k, t in before_targets.items()}
        for c in commands:
            plan.commands[c.action] += 1
            prior = was_targets.get(c.target_sis_id)
            plan.changes[(c.target_type, _role(prior.attrs if prior else None), _role(c.attributes))] += 1
        after, before = _outcomes(decisions), _outcomes(before_decisions)
        changed = sum(1 for k in after.keys() | before.keys() if after.get(k) != before.get(k))
        plan.decisions += changed
        if everyone or commands or changed:
            plan.ask.append(person)
    return plan


# --- the rule sets the workers run and ran -----------------------------------------------------


def roster_members(admin: AdminClient, group: str, timeout: float = 30.0) -> list[Member]:
    """The members of the roster workers' group now, each with the rule set its client id names."""
    [future] = admin.describe_consumer_groups([group]).values()
    description = future.result(timeout=timeout)
    return [
        Member(m.client_id, m.host, rules_of_client(m.client_id))
        for m in sorted(description.members, key=lambda m: m.client_id)
    ]


def publish_rule_set(
    producer: Producer, serde: TopicSerde, topic: str, *, app_id: str, rules: RuleSet, worker: str
) -> None:
    """Record on ``roster.rule_sets.v1`` that ``app_id`` runs ``rules`` (a worker, at start)."""
    now = datetime.now(UTC)
    value = {
        "appId": app_id,
        "version": rules.version,
        "text": rules.text,
        "source": rules.source,
        "worker": worker,
        "startedAt": now,
        "meta": {
            "source": f"roster-worker:{worker}",
            "sourceChangedAt": now,
            "ingestedAt": now,
            "traceId": str(uuid.uuid4()),
            "sourceVersion": rules.version,
        },
    }
    errors: list[str] = []
    producer.produce(
        topic,
        key=encode_key(f"{app_id}|{rules.version}"),
        value=serde.encode(value),
        on_delivery=lambda err, _m: errors.append(str(err)) if err is not None else None,
    )
    left = producer.flush(30)
    if left or errors:
        raise RuntimeError(f"the rule set could not be recorded on {topic}: {errors or 'not acknowledged'}")


def read_rule_sets(conf: dict[str, Any], serde: TopicSerde, topic: str, app_id: str) -> list[dict[str, Any]]:
    """Every rule set ``app_id`` ran, oldest start first."""
    found: dict[str, dict[str, Any]] = {}
    for m in read_to_end(conf, topic):
        key = decode_key(m.key())
        if key is None or not key.startswith(f"{app_id}|"):
            continue
        value = serde.decode(m.value()) if m.value() is not None else None
        if value is None:
            found.pop(key, None)
        else:
            found[key] = value
    return sorted(found.values(), key=lambda v: v["startedAt"])


def previous_rule_set(
    ran: list[dict[str, Any]], members: list[Member], new_version: str
) -> tuple[dict[str, Any] | None, str]:
    """The rule set the people were decided under before ``new_version``: the one the running
    workers run when it is another, else the one the app last started with before it. Returns
    the record (None: not known) and where it was found."""
    by_version: dict[str, dict[str, Any]] = {r["version"]: r for r in ran}
    running = {m.rules for m in members if m.rules and m.rules != new_version}
    if len(running) == 1:
        version = running.pop()
        where = "on" if version in by_version else "not on"
        return by_version.get(version), f"run by the workers now; {where} roster.rule_sets.v1"
    if running:
        return None, f"the workers run {len(running)} different rule sets"
    before = [r for r in ran if r["version"] != new_version]
    if not before:
        return None, "no other rule set on roster.rule_sets.v1"
    return before[-1], "the last one the workers started with before these, from roster.rule_sets.v1"


# --- asking and waiting ----------------------------------------------------------------------------


def publish_requests(
    producer: Producer,
    serdes: Serdes,
    topic: str,
    plan: ReapplyPlan,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """One request per person to ask, keyed by the person; returns how many the broker has."""
    serde = serdes[topic]
    now = datetime.now(UTC)
    meta = {"source": f"roles-reapply:{plan.reapply_id}", "sourceChangedAt": now, "ingestedAt": now,
            "traceId": plan.reapply_id, "sourceVersion": plan.rules}  # fmt: skip
    errors: list[str] = []
    done = 0

    def delivered(err: Any, _m: Any) -> None:
        nonlocal done
        if err is not None:
            errors.append(str(err))
        else:
            done += 1

    for i, person in enumerate(plan.ask, 1):
        value = {"person": person, "reapplyId": plan.reapply_id, "ruleSetVersion": plan.rules,
                 "requestedAt": now, "meta": meta}  # fmt: skip
        while True:
            try:
                producer.produce(
                    topic, key=encode_key(person), value=serde.encode(value), on_delivery=delivered
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if progress and i % 10_000 == 0:
            progress(i, len(plan.ask))
    left = producer.flush(60)
    if left or errors:
        raise RuntimeError(f"{left} request(s) not acknowledged; errors: {errors[:3]}")
    return done


def wait_decided(
    conf: dict[str, Any],
    group: str,
    topic: str,
    until: Mapping[int, int],
    since: Mapping[int, int],
    *,
    timeout_s: float,
    progress: Callable[[int, int, float], None] | None = None,
    every_s: float = 2.0,
) -> bool:
    """Wait until ``group`` has committed ``topic`` up to ``until`` (per partition), reporting how
    many of the requests (those between ``since`` and ``until``) are decided. False at timeout."""
    total = sum(max(0, until[p] - since.get(p, 0)) for p in until)
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    started = time.monotonic()
    try:
        while True:
            committed = consumer.committed([TopicPartition(topic, p) for p in until], timeout=10)
            done = sum(
                max(0, min(tp.offset, until[tp.partition]) - since.get(tp.partition, 0))
                for tp in committed
                if tp.offset >= 0
            )
            elapsed = time.monotonic() - started
            if progress:
                progress(done, total, elapsed)
            if done >= total:
                return True
            if elapsed > timeout_s:
                return False
            time.sleep(every_s)
    finally:
        consumer.close()


def commands_since(
    conf: dict[str, Any], serde: TopicSerde, topic: str, since: Mapping[int, int], reapply_topic: str
) -> tuple[Counter[str], int]:
    """The commands on ``topic`` after ``since`` that the requests caused (by action), and how
    many others were emitted meanwhile (changes from the SIS)."""
    ours: Counter[str] = Counter()
    others = 0
    ends = end_offsets(conf, topic)
    pending = {p: end for p, end in ends.items() if end > since.get(p, 0)}
    if not pending:
        return ours, others
    consumer = Consumer({**conf, "group.id": "sislms-reapply-count", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in pending])
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None or m.error() is not None:
                continue
            partition, offset = int(m.partition() or 0), int(m.offset() or 0)
            if partition not in pending or offset >= pending[partition]:
                continue
            if offset >= pending[partition] - 1:
                del pending[partition]
            value = serde.decode(m.value() or b"")
            if value is not None and str(value.get("reason") or "").startswith(f"{reapply_topic} "):
                ours[str(value["action"])] += 1
            else:
                others += 1
    finally:
        consumer.close()
    return ours, others
