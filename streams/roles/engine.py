"""The role-mapping engine: OneRoster facts in, LMS roles out, with the reasons.

A :class:`RuleSet` is a validated rule file (:mod:`streams.roles.rules`). For each *subject*
(one role of a user at an org, one enrollment, or one agent of an enrolled student) it goes
through the rules of that kind by priority, records for every rule whether it matched and why
(the first condition that failed, or what held), and stops at the first match unless the rule
says ``continue``. The result is a :class:`Decision`: the grants (LMS roles with their LTI 1.3 role
URIs), the outcome (mapped, skipped, unmapped, defaulted, inactive) and the checks. Decisions are
pure values: the agents turn them into provisioning commands and audit records, and
``sislms roles explain`` prints them.

Dates: a role or enrollment outside its ``beginDate``..``endDate`` (inclusive) is *inactive*
today, and a rule outside its ``effective`` window does not match. ``today`` is always passed in.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from streams.errors import RuleFileError
from streams.roles.facts import ClassFacts, CourseFacts, EnrollmentFacts, OrgFacts, RoleFacts, UserFacts
from streams.roles.rules import (
    AccountRole,
    Output,
    Rule,
    RuleFile,
    TemplateRole,
    UnmappedPolicy,
    load_rule_file,
)

__all__ = ["LTI", "Check", "Decision", "Grant", "RuleSet", "lti_roles_for"]

_LIS = "http://purl.imsglobal.org/vocab/lis/v2/"


class LTI:
    """The LTI 1.3 role URIs (1EdTech LTI Core 1.3, Appendix A.2) the engine sends."""

    LEARNER = _LIS + "membership#Learner"
    INSTRUCTOR = _LIS + "membership#Instructor"
    TEACHING_ASSISTANT = _LIS + "membership/Instructor#TeachingAssistant"
    CONTENT_DEVELOPER = _LIS + "membership#ContentDeveloper"
    MENTOR = _LIS + "membership#Mentor"
    ADMINISTRATOR = _LIS + "membership#Administrator"
    INSTITUTION_ADMINISTRATOR = _LIS + "institution/person#Administrator"
    INSTITUTION_STAFF = _LIS + "institution/person#Staff"


_COURSE_LTI: dict[str, tuple[str, ...]] = {
    "student": (LTI.LEARNER,),
    "teacher": (LTI.INSTRUCTOR,),
    "ta": (LTI.INSTRUCTOR, LTI.TEACHING_ASSISTANT),
    "designer": (LTI.CONTENT_DEVELOPER,),
    "observer": (LTI.MENTOR,),
}


def lti_roles_for(kind: str, base_role: str | None, account_role: str | None = None) -> tuple[str, ...]:
    """The LTI 1.3 roles that go with an LMS role, unless a rule gives its own."""
    if kind == "account":
        if account_role == "AccountAdmin":
            return (LTI.INSTITUTION_ADMINISTRATOR, LTI.ADMINISTRATOR)
        return (LTI.INSTITUTION_STAFF,)  # a custom (usually narrower) account role
    return _COURSE_LTI.get(base_role or "", ())


@dataclass(frozen=True, slots=True)
class Grant:
    """One LMS role given to one person.

    ``kind`` course: ``role`` in the subject's class (``base_role`` is the built-in role it
    extends). ``kind`` account: admin role ``role`` on ``account``, ``"root"`` (the district's
    root account) or ``"org"`` (the sub-account of the org the role is held at). ``kind``
    template: ``role`` on the course templates :meth:`RuleSet.templates` selects.
    """

    kind: Literal["course", "account", "template"]
    role: str
    base_role: str | None
    lti_roles: tuple[str, ...]
    rule: str
    account: str | None = None
    template: TemplateRole | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """One rule considered for a subject: matched or not, and why."""

    rule: str
    matched: bool
    why: str


Outcome = Literal["mapped", "skipped", "unmapped", "defaulted", "inactive"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules decided for one subject.

    ``person`` is whose LMS role it is (for an observer decision: the agent, with ``student`` the
    enrolled user); ``subject`` identifies what was decided (``<role>@<org>``, an enrollment id,
    or ``<enrollment id>/<agent id>``). ``facts`` are the inputs that rules can see, without any
    personal data, so decisions can be logged and audited.
    """

    kind: Literal["org_role", "enrollment", "observer"]
    person: str
    subject: str
    outcome: Outcome
    grants: tuple[Grant, ...]
    checks: tuple[Check, ...]
    note: str
    facts: Mapping[str, str] = field(default_factory=dict)
    student: str | None = None


def _in_window(today: date, begin: str | None, end: str | None) -> str | None:
    """None when ``today`` is within [begin, end]; otherwise the reason it is not."""
    if begin and today < date.fromisoformat(begin):
        return f"begins {begin}"
    if end and today > date.fromisoformat(end):
        return f"ended {end}"
    return None


def _field_values(obj: Any, path: str) -> set[str]:
    """Values of ``metadata.<key>`` or of a plain attribute (a string or a tuple of strings)."""
    if path.startswith("metadata."):
        value = obj.metadata.get(path.removeprefix("metadata."))
        return {value} if value else set()
    value = getattr(obj, path, None)
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    return {str(v) for v in value}


class _Subject:
    """What one rule kind can see: the facts each condition reads."""

    def __init__(
        self,
        user: UserFacts | None,
        role: RoleFacts | None = None,
        org: OrgFacts | None = None,
        enrollment: EnrollmentFacts | None = None,
        klass: ClassFacts | None = None,
    ) -> None:
        self.user, self.role, self.org, self.enrollment, self.klass = user, role, org, enrollment, klass

    def value(self, name: str) -> str | bool | set[str] | None:
        u, c = self.user, self.klass
        if name == "role":
            return self.role.role if self.role else (self.enrollment.role if self.enrollment else None)
        if name == "role_type":
            return self.role.role_type if self.role else None
        if name == "org":
            return self.role.org if self.role else None
        if name == "org_type":
            return self.org.type if self.org else None
        if name == "user_role":
            return set(u.role_names) if u else set()
        if name == "primary":
            return self.enrollment.primary if self.enrollment else None
        if name == "course":
            return c.course if c else None
        if name == "subject":
            return set(c.subjects) if c else set()
        if name == "subject_code":
            return set(c.subject_codes) if c else set()
        if name == "class_code":
            return c.class_code if c else None
        if name == "class_type":
            return c.class_type if c else None
        if name == "school":
            return c.school if c else (self.enrollment.school if self.enrollment else None)
        if name == "has_agents":
            return bool(u and u.agents)
        raise KeyError(name)

    def facts(self) -> dict[str, str]:
        """The inputs, as text, without personal data (ids and vocabularies only)."""
        out: dict[str, str] = {}
        if self.role:
            out.update(role=self.role.role, roleType=self.role.role_type, org=self.role.org)
            if self.role.begin:
                out["beginDate"] = self.role.begin
            if self.role.end:
                out["endDate"] = self.role.end
        if self.org:
            out["orgType"] = self.org.type
        if self.enrollment:
            e = self.enrollment
            out.update(role=e.role, class_=e.klass, school=e.school)
            if e.primary is not None:
                out["primary"] = str(e.primary).lower()
            if e.begin:
                out["beginDate"] = e.begin
            if e.end:
                out["endDate"] = e.end
        if self.klass:
            out.update(course=self.klass.course, classType=self.klass.class_type)
            if self.klass.subjects:
                out["subjects"] = ",".join(self.klass.subjects)
        if self.user:
            out["userRoles"] = ",".join(sorted(self.user.role_names))
        return {k.rstrip("_"): v for k, v in out.items()}


def _match(rule: Rule, s: _Subject, today: date) -> tuple[bool, str]:
    eff = rule.effective
    if eff is not None:
        if eff.from_ and today < eff.from_:
            return False, f"rule in effect from {eff.from_.isoformat()}"
        if eff.until and today > eff.until:
            return False, f"rule in effect until {eff.until.isoformat()}"
    held: list[str] = []
    when = rule.when
    for name in sorted(when.used()):
        want = getattr(when, name)
        if name == "metadata":
            meta = s.user.metadata if s.user else {}
            for key, accepted in want.items():
                present = meta.get(key)
                options = [accepted] if isinstance(accepted, str) else accepted
                ok = present is not None and ("*" in options or present in options)
                if not ok:
                    return False, f"metadata {key} is {present!r}, wants {' or '.join(options)}"
                held.append(f"metadata {key} is {present!r}")
            continue
        got = s.value(name)
        if isinstance(want, bool):
            if got != want:
                return False, f"{name} is {got!r}, wants {want}"
            held.append(f"{name} is {want}")
        elif isinstance(got, set):
            common = got & set(want)
            if not common:
                return False, f"{name} has none of {', '.join(want)}"
            held.append(f"{name} has {', '.join(sorted(common))}")
        else:
            if got not in want:
                return False, f"{name} is {got!r}, wants {' or '.join(want)}"
            held.append(f"{name} is {got}")
    return True, "; ".join(held) or "no conditions"


def _grant(out: Output | UnmappedPolicy, rule: str) -> Grant | None:
    if isinstance(out, Output) and out.skip is not None:
        return None
    lti = getattr(out, "lti_roles", None)
    if out.course_role:
        base = out.course_role if out.course_role in _COURSE_LTI else out.base_role
        return Grant("course", out.course_role, base, tuple(lti or lti_roles_for("course", base)), rule)
    account: AccountRole | None = out.account_role
    if account is not None:
        return Grant(
            "account",
            account.role,
            None,
            tuple(lti or lti_roles_for("account", None, account.role)),
            rule,
            account=account.account,
        )
    template = getattr(out, "template_role", None)
    assert template is not None
    base = template.course_role if template.course_role in _COURSE_LTI else "designer"
    return Grant(
        "template",
        template.course_role,
        base,
        tuple(lti or lti_roles_for("course", base)),
        rule,
        template=template,
    )


class RuleSet:
    """A validated rule file, ready to decide."""

    def __init__(self, doc: RuleFile, text: str, source: str = "(inline)") -> None:
        self.doc = doc
        self.source = source
        #: The file's text as validated (what the version's hash is of).
        self.text = text
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        #: The rule set's identity in audit records: the declared version and a hash of the text.
        self.version = f"{doc.version}+{digest}"
        ordered = sorted(enumerate(doc.rules), key=lambda ir: (-ir[1].priority, ir[0]))
        self._by_kind: dict[str, list[Rule]] = {"org_role": [], "enrollment": [], "observer": []}
        for _, rule in ordered:
            self._by_kind[rule.applies_to].append(rule)

    @classmethod
    def load(cls, path: Path) -> RuleSet:
        doc, text = load_rule_file(path)
        return cls(doc, text, str(path))

    @classmethod
    def from_text(cls, text: str, source: str) -> RuleSet:
        """A rule set from its text (a rule set read back from ``roster.rule_sets.v1``); problems
        are named against ``source``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rules.yaml"
            path.write_text(text)
            try:
                ruleset = cls.load(path)
            except RuleFileError as exc:
                raise RuleFileError(source, exc.line, exc.field, exc.reason, exc.problems) from None
        ruleset.source = source
        return ruleset

    @property
    def rules(self) -> list[Rule]:
        return list(self.doc.rules)

    def _decide(
        self,
        kind: Literal["org_role", "enrollment", "observer"],
        subject: _Subject,
        today: date,
        person: str,
        subject_id: str,
        inactive: str | None,
        student: str | None = None,
    ) -> Decision:
        facts = subject.facts()
        if inactive:
            return Decision(kind, person, subject_id, "inactive", (), (), inactive, facts, student)
        checks: list[Check] = []
        grants: list[Grant] = []
        skipped: list[str] = []
        for rule in self._by_kind[kind]:
            ok, why = _match(rule, subject, today)
            checks.append(Check(rule.id, ok, why))
            if not ok:
                continue
            for out in rule.then:
                g = _grant(out, rule.id)
                if g is None:
                    skipped.append(out.skip or "")
                else:
                    grants.append(g)
            if not rule.continue_:
                break
        if grants:
            return Decision(
                kind, person, subject_id, "mapped", tuple(grants), tuple(checks), "", facts, student
            )
        if skipped:
            note = "; ".join(skipped)
            return Decision(kind, person, subject_id, "skipped", (), tuple(checks), note, facts, student)
        policy: UnmappedPolicy = getattr(self.doc.unmapped, kind)
        if policy.policy == "default":
            g = _grant(policy, "(unmapped default)")
            assert g is not None
            note = "no rule matched: the unmapped default applies"
            return Decision(kind, person, subject_id, "defaulted", (g,), tuple(checks), note, facts, student)
        return Decision(
            kind,
            person,
            subject_id,
            "unmapped",
            (),
            tuple(checks),
            "no rule matched: reported",
            facts,
            student,
        )

    def org_roles(self, user: UserFacts, orgs: Mapping[str, OrgFacts], today: date) -> list[Decision]:
        """One decision per role of the user (``<role>@<org>``)."""
        out = []
        for role in user.roles:
            org = orgs.get(role.org)
            inactive = None
            if not user.active:
                inactive = "user is deleted"
            elif not user.enabled:
                inactive = "user is disabled"
            else:
                inactive = _in_window(today, role.begin, role.end)
                if inactive is None and org is not None and not org.active:
                    inactive = "org is deleted"
            subject = _Subject(user, role=role, org=org)
            out.append(self._decide("org_role", subject, today, user.sourced_id, role.key, inactive))
        return out

    def enrollment(
        self, enrollment: EnrollmentFacts, user: UserFacts | None, klass: ClassFacts | None, today: date
    ) -> Decision:
        """The course roles of one enrollment."""
        inactive = _inactive_enrollment(enrollment, user, klass, today)
        subject = _Subject(user, enrollment=enrollment, klass=klass)
        return self._decide("enrollment", subject, today, enrollment.user, enrollment.sourced_id, inactive)

    def observers(
        self, enrollment: EnrollmentFacts, user: UserFacts | None, klass: ClassFacts | None, today: date
    ) -> list[Decision]:
        """One decision per agent of the enrolled user: the agent's course role in the class."""
        if user is None:
            return []
        inactive = _inactive_enrollment(enrollment, user, klass, today)
        subject = _Subject(user, enrollment=enrollment, klass=klass)
        return [
            self._decide(
                "observer",
                subject,
                today,
                agent,
                f"{enrollment.sourced_id}/{agent}",
                inactive,
                student=user.sourced_id,
            )
            for agent in user.agents
        ]

    @staticmethod
    def templates(grant: Grant, user: UserFacts, courses: Iterable[CourseFacts]) -> Iterator[str]:
        """sourcedIds of the active courses whose template a ``template`` grant covers for ``user``."""
        spec = grant.template
        assert spec is not None
        wanted = _field_values(user, spec.match_user)
        for course in courses:
            if not course.active:
                continue
            if (not wanted and spec.all_when_unset) or (wanted & _field_values(course, spec.match_course)):
                yield course.sourced_id


def _inactive_enrollment(
    e: EnrollmentFacts, user: UserFacts | None, klass: ClassFacts | None, today: date
) -> str | None:
    if not e.active:
        return "enrollment is deleted"
    if user is None:
        return "user not known yet"
    if not user.active:
        return "user is deleted"
    if not user.enabled:
        return "user is disabled"
    if klass is None:
        return "class not known yet"
    if not klass.active:
        return "class is deleted"
    return _in_window(today, e.begin, e.end)
