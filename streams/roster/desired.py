"""What the LMS should hold, computed from OneRoster facts and the role rules.

Each function here is pure: facts in, *targets* out. A target is one LMS object the pipeline
manages (a user, an account, a term, a course, a section, an enrollment, an account admin role),
named by its target id and described by string attributes. The agents keep, per key, the targets
they last emitted and turn the difference into commands (:mod:`streams.roster.commands`); the
integration tests compute the same targets for a whole district at once
(:mod:`streams.roster.plan`) and compare.

Target ids (the ``targetSisId`` of a command, the record key on ``lms.provisioning.v1``):

====================  ===============================  ===========================================
kind                  target id                        from
====================  ===============================  ===========================================
user                  ``<user>``                       sis.users
account               ``<org>``                        sis.orgs (the district is the root account)
term                  ``<academicSession>``            sis.academic_sessions
course                ``<class>``                      sis.classes (one LMS course per class)
course (template)     ``template:<course>``            sis.courses (one template per course)
section               ``<class>``                      sis.classes (one section per class)
enrollment            ``<enrollment>``                 a course role; a 2nd role: ``<enrollment>#<role>``
enrollment            ``<enrollment>/<agent>``         an agent observing the enrolled student
enrollment            ``template:<course>/<user>``     a role on a course template
account_admin         ``<user>@<account>#<role>``      an admin role on ``root`` or an org's sub-account
====================  ===============================  ===========================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from streams.roles.engine import Decision, Grant, RuleSet
from streams.roles.facts import ClassFacts, CourseFacts, EnrollmentFacts, OrgFacts, UserFacts

__all__ = [
    "ROOT_ACCOUNT",
    "Target",
    "class_targets",
    "course_targets",
    "org_targets",
    "person_targets",
    "session_targets",
    "target_id",
    "user_target",
]

#: The account id of the district's root account in commands.
ROOT_ACCOUNT = "root"

Attrs = dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Target:
    """One LMS object as it should be: its kind and attributes (strings; None clears)."""

    kind: str
    attrs: Mapping[str, str | None]

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.kind, "a": dict(self.attrs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Target:
        return cls(d["k"], d["a"])


def _status(active: bool) -> str:
    return "active" if active else "deleted"


def user_target(user: UserFacts) -> Target:
    status = "deleted" if not user.active else ("active" if user.enabled else "suspended")
    return Target(
        "user",
        {
            "user_id": user.sourced_id,
            "login_id": user.username,
            "first_name": user.preferred_given_name or user.given_name,
            "last_name": user.preferred_family_name or user.family_name,
            "sortable_name": f"{user.family_name}, {user.given_name}",
            "email": user.email,
            "integration_id": user.identifier,
            "account_id": user.primary_org,
            "status": status,
        },
    )


def org_targets(org: OrgFacts) -> dict[str, Target]:
    """The district becomes the root account; every other org a sub-account of its parent."""
    root = org.type == "district" and org.parent is None
    return {
        f"account|{org.sourced_id}": Target(
            "account",
            {
                "account_id": org.sourced_id,
                "parent_account_id": None if root else (org.parent or ROOT_ACCOUNT),
                "root": "true" if root else "false",
                "name": org.name,
                "org_type": org.type,
                "integration_id": org.identifier,
                "status": _status(org.active),
            },
        )
    }


def session_targets(session: Mapping[str, Any]) -> dict[str, Target]:
    """An academic session becomes an LMS term (schoolYear, semester, term, gradingPeriod)."""
    return {
        f"term|{session['sourcedId']}": Target(
            "term",
            {
                "term_id": session["sourcedId"],
                "name": session.get("title", ""),
                "term_type": session.get("type"),
                "start_date": _iso(session.get("startDate")),
                "end_date": _iso(session.get("endDate")),
                "parent_term_id": (session.get("parent") or {}).get("sourcedId"),
                "status": _status(session.get("status") != "tobedeleted"),
            },
        )
    }


def _iso(value: Any) -> str | None:
    return None if value is None else (value.isoformat() if hasattr(value, "isoformat") else str(value))


def course_targets(course: CourseFacts) -> dict[str, Target]:
    """A OneRoster course becomes a course template (a blueprint its classes' courses follow)."""
    return {
        f"course|template:{course.sourced_id}": Target(
            "course",
            {
                "course_id": f"template:{course.sourced_id}",
                "long_name": course.title,
                "short_name": course.course_code or course.title,
                "account_id": course.org or ROOT_ACCOUNT,
                "term_id": None,
                "blueprint": "true",
                "blueprint_course_id": None,
                "status": _status(course.active),
            },
        )
    }


def class_targets(klass: ClassFacts) -> dict[str, Target]:
    """A class becomes an LMS course with one section, under its school's sub-account."""
    status = _status(klass.active)
    return {
        f"course|{klass.sourced_id}": Target(
            "course",
            {
                "course_id": klass.sourced_id,
                "long_name": klass.title,
                "short_name": klass.class_code or klass.title,
                "account_id": klass.school,
                "term_id": klass.terms[0] if klass.terms else None,
                "blueprint": "false",
                "blueprint_course_id": f"template:{klass.course}",
                "status": status,
            },
        ),
        f"section|{klass.sourced_id}": Target(
            "section",
            {
                "section_id": klass.sourced_id,
                "course_id": klass.sourced_id,
                "name": klass.title,
                "status": status,
            },
        ),
    }


def target_id(key: str) -> str:
    """The target id (``targetSisId``) of a state key: keys may carry a ``<kind>|`` prefix."""
    return key.split("|", 1)[1] if "|" in key else key


def _course_role(grant: Grant, **attrs: str | None) -> Target:
    return Target(
        "enrollment",
        {
            **attrs,
            "role": grant.role,
            "base_role": grant.base_role,
            "lti_roles": " ".join(grant.lti_roles),
            "rule": grant.rule,
            "status": "active",
        },
    )


def person_targets(
    user: UserFacts | None,
    enrollments: Mapping[str, EnrollmentFacts],
    classes: Mapping[str, ClassFacts],
    orgs: Mapping[str, OrgFacts],
    courses: Iterable[CourseFacts],
    rules: RuleSet,
    today: date,
    user_id: str,
) -> tuple[dict[str, Target], list[Decision]]:
    """Everything one person should have in the LMS, and the decisions behind it.

    ``user`` is None until the user's record arrives (then only decisions, no targets); a deleted
    or disabled user keeps the user target (status deleted or suspended) and loses every role.
    """
    targets: dict[str, Target] = {}
    decisions: list[Decision] = []
    if user is not None:
        targets[f"user|{user_id}"] = user_target(user)
        for d in rules.org_roles(user, orgs, today):
            decisions.append(d)
            for g in d.grants:
                if g.kind == "account":
                    account = ROOT_ACCOUNT if g.account == "root" else _role_org(d)
                    targets[f"admin|{user_id}@{account}#{g.role}"] = Target(
                        "account_admin",
                        {
                            "user_id": user_id,
                            "account_id": account,
                            "role": g.role,
                            "lti_roles": " ".join(g.lti_roles),
                            "rule": g.rule,
                            "status": "active",
                        },
                    )
                elif g.kind == "template":
                    for course in rules.templates(g, user, courses):
                        targets[f"enrollment|template:{course}/{user_id}"] = _course_role(
                            g, user_id=user_id, course_id=f"template:{course}", section_id=None
                        )
    for eid in sorted(enrollments):
        e = enrollments[eid]
        klass = classes.get(e.klass)
        d = rules.enrollment(e, user, klass, today)
        decisions.append(d)
        for i, g in enumerate(d.grants):
            target = eid if i == 0 else f"{eid}#{g.role}"
            targets[f"enrollment|{target}"] = _course_role(
                g,
                user_id=user_id,
                course_id=e.klass,
                section_id=e.klass,
                enrollment_id=eid,
                start_date=e.begin,
                end_date=e.end,
            )
        for d in rules.observers(e, user, klass, today):
            decisions.append(d)
            for i, g in enumerate(d.grants):
                target = d.subject if i == 0 else f"{d.subject}#{g.role}"
                targets[f"enrollment|{target}"] = _course_role(
                    g,
                    user_id=d.person,
                    course_id=e.klass,
                    section_id=e.klass,
                    enrollment_id=eid,
                    associated_user_id=user_id,
                    start_date=e.begin,
                    end_date=e.end,
                )
    return targets, decisions


def _role_org(d: Decision) -> str:
    """The org of an org_role decision (its subject is ``<role>@<org>``)."""
    return d.subject.rsplit("@", 1)[1]
