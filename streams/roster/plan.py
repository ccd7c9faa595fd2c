"""The LMS state a whole district calls for, computed at once: no Kafka, no agents.

The streaming agents reach the same state one change at a time; the integration tests and the
benchmark compare the two. Input records are shaped like the ``sis.*`` topics' values (decoded
Avro, or OneRoster JSON converted by ``connectors.oneroster.models.to_record``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from typing import Any

from streams.roles.engine import RuleSet
from streams.roles.facts import ClassFacts, CourseFacts, EnrollmentFacts, OrgFacts, UserFacts
from streams.roster.desired import (
    Target,
    class_targets,
    course_targets,
    org_targets,
    person_targets,
    session_targets,
)

__all__ = ["plan_district"]

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
    by_user: dict[str, dict[str, EnrollmentFacts]] = defaultdict(dict)
    for k, v in enrollments.items():
        e = EnrollmentFacts.from_record(v)
        by_user[e.user][k] = e
    targets: dict[str, Target] = {}
    for o in org_facts.values():
        targets.update(org_targets(o))
    for s in sessions.values():
        targets.update(session_targets(s))
    for c in course_facts:
        targets.update(course_targets(c))
    for klass in class_facts.values():
        targets.update(class_targets(klass))
    for uid in set(users) | set(by_user):
        user = UserFacts.from_record(users[uid]) if uid in users else None
        mine = by_user.get(uid, {})
        needed = {e.klass: class_facts[e.klass] for e in mine.values() if e.klass in class_facts}
        found, _ = person_targets(user, mine, needed, org_facts, course_facts, rules, today, uid)
        targets.update(found)
    return {k: t for k, t in targets.items() if t.attrs.get("status") == "active"}
