"""The role-mapping rule file: its shape, validated by pydantic, with errors that name the line.

A rule file is YAML::

    version: "2026.1"              # the rule set's version, recorded in every audit decision
    unmapped:                       # what happens to a role no rule maps (never a silent drop)
      enrollment: {policy: report}  # or {policy: default, course_role: student}
      org_role: {policy: report}
    rules:
      - id: teachers
        applies_to: enrollment      # org_role | enrollment | observer
        priority: 50                # higher first; equal priorities keep file order
        when: {role: [teacher]}     # every condition must hold; a list means any of
        then: {course_role: teacher}

What each kind of rule looks at:

* ``org_role``: one of a user's roles at an org (``users[].roles[]``), with the org's type. It may
  grant an account admin role (``account_role``) on the district's root account or the sub-account
  of the role's org, or a role on course templates (``template_role``).
* ``enrollment``: one enrollment, with its user and class. It gives a course role.
* ``observer``: one enrollment and each of the enrolled user's ``agents`` (a student's guardians).
  It gives the agent a course role (observer) in that class, linked to the student.

A matching rule stops the search for its subject unless it says ``continue: true``; ``then`` may
list several outputs (a teacher who is also a site administrator gets both). ``skip`` states
deliberately that a role gets nothing in the LMS; it is not the same as unmapped.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streams.errors import RuleFileError
from streams.yamlfile import YamlDoc, load_yaml

__all__ = [
    "BASE_COURSE_ROLES",
    "ENROLLMENT_ROLES",
    "ORG_TYPES",
    "USER_ROLES",
    "AccountRole",
    "Output",
    "Rule",
    "RuleFile",
    "TemplateRole",
    "Unmapped",
    "When",
    "load_rule_file",
]

#: OneRoster 1.2 user roles (``users[].roles[].role``); ``ext:`` values are also allowed.
USER_ROLES = frozenset(
    {
        "aide",
        "counselor",
        "districtAdministrator",
        "guardian",
        "parent",
        "principal",
        "proctor",
        "relative",
        "siteAdministrator",
        "student",
        "systemAdministrator",
        "teacher",
    }
)
#: OneRoster 1.2 enrollment roles: the user roles plus ``administrator``.
ENROLLMENT_ROLES = USER_ROLES | {"administrator"}
ROLE_TYPES = frozenset({"primary", "secondary"})
ORG_TYPES = frozenset({"department", "school", "district", "local", "state", "national"})
CLASS_TYPES = frozenset({"homeroom", "scheduled"})
#: The LMS's built-in course roles (Canvas: StudentEnrollment, TeacherEnrollment, ...).
BASE_COURSE_ROLES = ("student", "teacher", "ta", "designer", "observer")

_Strings = Annotated[list[str], Field(min_length=1)]


def _strings(value: Any) -> Any:
    """A single string is accepted where a list is expected: ``role: teacher``."""
    return [value] if isinstance(value, str) else value


def _check_vocab(values: list[str] | None, vocab: frozenset[str], what: str) -> list[str] | None:
    for v in values or ():
        if v not in vocab and not v.startswith("ext:"):
            raise ValueError(
                f"{v!r} is not a OneRoster 1.2 {what} (one of {', '.join(sorted(vocab))}, or ext:...)"
            )
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class When(_Strict):
    """Conditions; all must hold. Lists mean any of. Absent means any value."""

    role: _Strings | None = Field(
        None, description="org_role: the user's role; enrollment/observer: the enrollment's role"
    )
    role_type: _Strings | None = Field(None, description="org_role: primary or secondary")
    org: _Strings | None = Field(None, description="org_role: sourcedId of the role's org")
    org_type: _Strings | None = Field(None, description="org_role: type of the role's org")
    user_role: _Strings | None = Field(None, description="the user holds one of these roles (any org)")
    primary: bool | None = Field(None, description="enrollment/observer: the enrollment's primary flag")
    course: _Strings | None = Field(None, description="enrollment/observer: sourcedId of the class's course")
    subject: _Strings | None = Field(None, description="enrollment/observer: one of the class's subjects")
    subject_code: _Strings | None = Field(
        None, description="enrollment/observer: one of the class's subject codes"
    )
    class_code: _Strings | None = Field(None, description="enrollment/observer: the class code")
    class_type: _Strings | None = Field(None, description="enrollment/observer: homeroom or scheduled")
    school: _Strings | None = Field(None, description="enrollment/observer: sourcedId of the class's school")
    metadata: dict[str, str | list[str]] | None = Field(
        None, description="the user's metadata: key -> value (or any of values; '*' means present)"
    )
    has_agents: bool | None = Field(None, description="the user has (or has no) agents")

    _split = field_validator(
        "role", "role_type", "org", "org_type", "user_role", "course", "subject", "subject_code",
        "class_code", "class_type", "school", mode="before",
    )(_strings)  # fmt: skip

    @field_validator("role_type")
    @classmethod
    def _role_types(cls, v: list[str] | None) -> list[str] | None:
        for x in v or ():
            if x not in ROLE_TYPES:
                raise ValueError(f"{x!r} is not a roleType (primary or secondary)")
        return v

    @field_validator("org_type")
    @classmethod
    def _org_types(cls, v: list[str] | None) -> list[str] | None:
        return _check_vocab(v, ORG_TYPES, "org type")

    @field_validator("user_role")
    @classmethod
    def _user_roles(cls, v: list[str] | None) -> list[str] | None:
        return _check_vocab(v, USER_ROLES, "user role")

    @field_validator("class_type")
    @classmethod
    def _class_types(cls, v: list[str] | None) -> list[str] | None:
        return _check_vocab(v, CLASS_TYPES, "class type")

    def used(self) -> set[str]:
        return {name for name in type(self).model_fields if getattr(self, name) is not None}


class AccountRole(_Strict):
    """An admin role on an LMS account: the district's root account, or the role's org's sub-account."""

    role: str = Field(min_length=1, description="LMS account role: AccountAdmin or a custom account role")
    account: Literal["root", "org"] = Field(
        "org", description="root: the district's root account; org: the sub-account of the role's org"
    )


class TemplateRole(_Strict):
    """A course role on the course templates (one per OneRoster course) that match the user."""

    course_role: str = Field("designer", min_length=1)
    match_course: str = Field(
        "metadata.ext.department", description="field of the course compared (metadata.<key>, subjects, org)"
    )
    match_user: str = Field(
        "metadata.ext.department", description="field of the user compared (metadata.<key>)"
    )
    all_when_unset: bool = Field(False, description="a user without the field gets every template")


class Output(_Strict):
    """One LMS role that a rule gives."""

    course_role: str | None = Field(None, min_length=1)
    base_role: Literal["student", "teacher", "ta", "designer", "observer"] | None = Field(
        None, description="for a custom course role: the built-in role it extends"
    )
    account_role: AccountRole | None = None
    template_role: TemplateRole | None = None
    lti_roles: list[str] | None = Field(None, description="override the LTI 1.3 role URIs sent with the role")
    skip: str | None = Field(
        None, min_length=1, description="deliberately nothing in the LMS, with the reason"
    )

    @model_validator(mode="after")
    def _one(self) -> Output:
        given = [
            n
            for n in ("course_role", "account_role", "template_role", "skip")
            if getattr(self, n) is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of course_role, account_role, template_role, skip")
        if self.course_role and self.course_role not in BASE_COURSE_ROLES and self.base_role is None:
            raise ValueError(
                f"custom course role {self.course_role!r} needs base_role"
                f" (one of {', '.join(BASE_COURSE_ROLES)})"
            )
        for uri in self.lti_roles or ():
            if not uri.startswith("http://purl.imsglobal.org/vocab/lis/v2/"):
                raise ValueError(
                    f"{uri!r} is not an LTI 1.3 role URI (http://purl.imsglobal.org/vocab/lis/v2/...)"
                )
        return self


class Effective(_Strict):
    """When the rule itself applies (inclusive dates); open ends when absent."""

    from_: date | None = Field(None, alias="from")
    until: date | None = None

    @model_validator(mode="after")
    def _order(self) -> Effective:
        if self.from_ and self.until and self.until < self.from_:
            raise ValueError("until is before from")
        return self


#: Which conditions and outputs each kind of rule may use.
_CONDITIONS = {
    "org_role": {"role", "role_type", "org", "org_type", "user_role", "metadata", "has_agents"},
    "enrollment": {
        "role",
        "user_role",
        "primary",
        "course",
        "subject",
        "subject_code",
        "class_code",
        "class_type",
        "school",
        "metadata",
        "has_agents",
    },
}
_CONDITIONS["observer"] = _CONDITIONS["enrollment"]
_OUTPUTS = {
    "org_role": {"account_role", "template_role", "skip"},
    "enrollment": {"course_role", "skip"},
    "observer": {"course_role", "skip"},
}


class Rule(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str | None = None
    applies_to: Literal["org_role", "enrollment", "observer"]
    priority: int = 0
    when: When = When()
    then: list[Output] = Field(min_length=1)
    continue_: bool = Field(False, alias="continue")
    effective: Effective | None = None

    @field_validator("then", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _fits_kind(self, info: ValidationInfo) -> Rule:
        if info.context and info.context.get("deferred"):
            return self  # load_rule_file reports each problem at its own line
        for _, message in self.problems():
            raise ValueError(message)
        return self

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What does not fit this rule's kind: (location inside the rule, reason)."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for name in sorted(self.when.used() - _CONDITIONS[self.applies_to]):
            found.append((("when", name), f"{self.applies_to} rules cannot test {name}"))
        vocab = USER_ROLES if self.applies_to == "org_role" else ENROLLMENT_ROLES
        try:
            _check_vocab(
                self.when.role, vocab, "user role" if self.applies_to == "org_role" else "enrollment role"
            )
        except ValueError as exc:
            found.append((("when", "role"), str(exc)))
        for i, out in enumerate(self.then):
            kind = next(
                n for n in ("course_role", "account_role", "template_role", "skip") if getattr(out, n)
            )
            if kind not in _OUTPUTS[self.applies_to]:
                allowed = " or ".join(sorted(_OUTPUTS[self.applies_to]))
                found.append((("then", i, kind), f"{self.applies_to} rules give {allowed}, not {kind}"))
        return found


class UnmappedPolicy(_Strict):
    policy: Literal["report", "default"] = "report"
    course_role: str | None = None
    base_role: Literal["student", "teacher", "ta", "designer", "observer"] | None = None
    account_role: AccountRole | None = None

    @model_validator(mode="after")
    def _default_needs_role(self) -> UnmappedPolicy:
        if self.policy == "default" and not (self.course_role or self.account_role):
            raise ValueError(
                "policy default needs course_role (enrollment, observer) or account_role (org_role)"
            )
        if self.policy == "report" and (self.course_role or self.account_role):
            raise ValueError("policy report gives no role; use policy: default to give one")
        if self.course_role and self.course_role not in BASE_COURSE_ROLES and self.base_role is None:
            raise ValueError(f"custom course role {self.course_role!r} needs base_role")
        return self


class Unmapped(_Strict):
    """What a role no rule maps gets: a report (audit decision, metric, ``roles explain``) or a default."""

    org_role: UnmappedPolicy = UnmappedPolicy()
    enrollment: UnmappedPolicy = UnmappedPolicy()
    observer: UnmappedPolicy = UnmappedPolicy()

    @model_validator(mode="after")
    def _fits(self) -> Unmapped:
        if self.org_role.course_role:
            raise ValueError("org_role: the default for an unmapped org role is an account_role")
        for name in ("enrollment", "observer"):
            if getattr(self, name).account_role:
                raise ValueError(f"{name}: the default for an unmapped {name} is a course_role")
        return self


class RuleFile(_Strict):
    version: str = Field(min_length=1, description="the rule set's version, recorded in every decision")
    description: str | None = None
    unmapped: Unmapped = Unmapped()
    rules: list[Rule] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v


def _located(
    doc: YamlDoc, i: int, raw: Any, where: tuple[str | int, ...], reason: str
) -> tuple[int | None, str, str]:
    """A rule's problem with the line and field it is about."""
    loc: tuple[str | int, ...] = ("rules", i, *where)
    if isinstance(raw, dict) and isinstance(raw.get("then"), dict) and where[0] == "then":
        loc = ("rules", i, "then", *where[2:])  # a single output written as a mapping
    return (doc.line_at(loc), doc.field_name(loc, "id"), reason)


def load_rule_file(path: Path) -> tuple[RuleFile, str]:
    """Read, validate and return a rule file with its text (hashed into the rule set's identity).

    Raises:
        RuleFileError: naming the file, the line and the field of every problem.
    """
    doc = load_yaml(path, RuleFileError, "role-mapping rule file")
    try:
        rules = doc.validate(RuleFile, label="id", context={"deferred": True})
    except RuleFileError as exc:
        # report the kind problems of the rules that are otherwise valid too: all at once
        more = []
        raw_rules = doc.data.get("rules")
        for i, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
            try:
                rule = Rule.model_validate(raw, context={"deferred": True})
            except ValidationError:
                continue
            more += [_located(doc, i, raw, where, reason) for where, reason in rule.problems()]
        if not more:
            raise
        every = sorted([*exc.problems, *more], key=lambda p: p[0] or 0)
        line, field, reason = every[0]
        raise RuleFileError(str(path), line, field, reason, every) from None
    problems: list[tuple[int | None, str, str]] = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules.rules):
        if rule.id in seen:
            loc: tuple[str | int, ...] = ("rules", i, "id")
            reason = f"rule id {rule.id!r} is used twice (first at rules[{seen[rule.id]}])"
            problems.append((doc.line_at(loc), doc.field_name(loc, "id"), reason))
        seen.setdefault(rule.id, i)
        for where, reason in rule.problems():
            problems.append(_located(doc, i, doc.data["rules"][i], where, reason))
    if problems:
        line, field, reason = problems[0]
        raise RuleFileError(str(path), line, field, reason, problems)
    return rules, path.read_text()
