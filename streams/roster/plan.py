"""The LMS state a whole district calls for, computed at once: no Kafka, no agents.

The streaming agents reach the same state one change at a time; the integration tests and the
benchmark compare the two. Input records are shaped like the ``sis.*`` topics' values (decoded
Avro, or OneRoster JSON converted by ``connectors.oneroster.models.to_record``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from streams.roles.engine import Decision, RuleSet
from streams.roles.facts import ClassFacts, CourseFacts, EnrollmentFacts, OrgFacts, UserFacts
from streams.roster.desired import (
    Target,
    class_targets,
    course_targets,
    org_targets,
    person_targets,
    session_targets,
    target_id,
)

__all__ = [
    "Digests",
    "Folded",
    "attrs_digest",
    "fold_commands",
    "fold_digests",
    "plan_district",
    "plan_people",
    "planned_state",
]

Records = Mapping[str, Mapping[str, Any]]


def plan_district(
    *,
    orgs: Records,
    sessions: Records,
    courses: Records,
    classes: Records,
    users: Records,
    enrollments: Records,
    rules: RuleSet,
    today: date,
) -> dict[str, Target]:
    """Every live LMS target (``<kind>|<target id>``) of the district, as the agents would leave
    them after a first full load: objects that would only be created deleted are left out."""
    org_facts = {k: OrgFacts.from_record(v) for k, v in orgs.items()}
    course_facts = [CourseFacts.from_record(v) for v in courses.values()]
    class_facts = {k: ClassFacts.from_record(v) for k, v in classes.items()}
    targets: dict[str, Target] = {}
    for o in org_facts.values():
        targets.update(org_targets(o))
    for s in sessions.values():
        targets.update(session_targets(s))
    for c in course_facts:
        targets.update(course_targets(c))
    for klass in class_facts.values():
        targets.update(class_targets(klass))
    for _, found, _ in plan_people(
        orgs=org_facts, courses=course_facts, classes=class_facts, users=users, enrollments=enrollments,
        rules=rules, today=today,
    ):  # fmt: skip
        targets.update(found)
    return {k: t for k, t in targets.items() if t.attrs.get("status") == "active"}


def plan_people(
    *,
    orgs: Mapping[str, OrgFacts],
    courses: list[CourseFacts],
    classes: Mapping[str, ClassFacts],
    users: Records,
    enrollments: Records,
    rules: RuleSet,
    today: date,
) -> Iterator[tuple[str, dict[str, Target], list[Decision]]]:
    """What the people agent decides for each person (a user, or someone enrolled whose user
    record is missing), in sourcedId order: ``(person, targets, decisions)``, as its
    :func:`~streams.roster.desired.person_targets` would from a first full load."""
    by_user: dict[str, dict[str, EnrollmentFacts]] = defaultdict(dict)
    for k, v in enrollments.items():
        e = EnrollmentFacts.from_record(v)
        by_user[e.user][k] = e
    for uid in sorted(set(users) | set(by_user)):
        user = UserFacts.from_record(users[uid]) if uid in users else None
        mine = by_user.get(uid, {})
        needed = {e.klass: classes[e.klass] for e in mine.values() if e.klass in classes}
        found, decisions = person_targets(user, mine, needed, orgs, courses, rules, today, uid)
        yield uid, found, decisions


def planned_state(targets: Mapping[str, Target]) -> dict[tuple[str, str], dict[str, Any]]:
    """``plan_district``'s targets as (targetType, targetSisId) -> attributes, as commands name them."""
    return {(t.kind, target_id(k)): dict(t.attrs) for k, t in targets.items()}


@dataclass
class Folded:
    """Provisioning commands added up: the state they leave, and their ids."""

    records: int
    state: dict[tuple[str, str], dict[str, Any]]  # live targets: (targetType, targetSisId) -> attributes
    ids: dict[tuple[str, str], set[str]]
    actions: dict[tuple[str, str], list[str]]  # per target, in order, once per commandId

    @property
    def duplicates(self) -> int:
        """Records that repeat a command already seen (same commandId)."""
        return self.records - sum(len(v) for v in self.ids.values())

    def compare(self, want: Mapping[tuple[str, str], Any]) -> tuple[list[Any], list[Any], list[Any]]:
        """(missing, extra, different) targets against ``want``."""
        got = self.state
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        different = [k for k in want if k in got and want[k] != got[k]]
        return missing, extra, different


def fold_commands(values: Iterable[Mapping[str, Any]]) -> Folded:
    """Fold decoded ``lms.provisioning.v1`` values: the highest sequence of a target wins."""
    last: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    actions: dict[tuple[str, str], list[str]] = defaultdict(list)
    records = 0
    for value in values:
        records += 1
        target = (value["targetType"], value["targetSisId"])
        if value["commandId"] not in ids[target]:
            actions[target].append(value["action"])
        ids[target].add(value["commandId"])
        if target not in last or value["sequence"] > last[target][0]:
            last[target] = (value["sequence"], value["attributes"])
    state = {t: a for t, (_, a) in last.items() if a.get("status") == "active"}
    return Folded(records, state, dict(ids), dict(actions))


def attrs_digest(attrs: Mapping[str, Any]) -> str:
    """A short digest of a target's attributes: two states compare equal by digest as by value."""
    return hashlib.sha256(json.dumps(attrs, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Digests:
    """Provisioning commands added up, lean: the live targets' attribute digests and how many
    records repeat a command id (a district of 250,000 users has 3.2 million targets)."""

    records: int
    state: dict[tuple[str, str], str]  # live targets: (targetType, targetSisId) -> attrs_digest
    duplicates: int


def fold_digests(values: Iterable[Mapping[str, Any]]) -> Digests:
    """:func:`fold_commands` without each target's history and attributes: what a whole-district
    end-state check needs, in a fraction of the memory."""
    last: dict[tuple[str, str], tuple[int, str | None]] = {}
    ids: set[str] = set()
    records = 0
    for value in values:
        records += 1
        ids.add(value["commandId"])
        target = (value["targetType"], value["targetSisId"])
        if target not in last or value["sequence"] > last[target][0]:
            attrs = value["attributes"]
            last[target] = (
                value["sequence"],
                attrs_digest(attrs) if attrs.get("status") == "active" else None,
            )
    state = {t: d for t, (_, d) in last.items() if d is not None}
    return Digests(records, state, records - len(ids))
