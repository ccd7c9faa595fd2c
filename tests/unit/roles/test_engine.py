"""The role-mapping engine, table by table: OneRoster facts in, LMS and LTI 1.3 roles out.

Every OneRoster 1.2 user role and enrollment role against the shipped rules, both roleTypes,
effective dates (of roles, enrollments and rules), people with several roles, unmapped roles,
every condition a rule can test, observers, inactive subjects, course templates, and the
promise that a decision's facts hold no personal data. Pure functions only: no Kafka.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.roles import (
    DEFAULT_RULES,
    ClassFacts,
    CourseFacts,
    Decision,
    EnrollmentFacts,
    Grant,
    OrgFacts,
    RoleFacts,
    RuleFile,
    RuleSet,
    UserFacts,
    lti_roles_for,
)
from streams.roles.rules import When

TODAY = date(2026, 10, 15)
YESTERDAY, TOMORROW = "2026-10-14", "2026-10-16"

_LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
LEARNER = _LIS + "membership#Learner"
INSTRUCTOR = _LIS + "membership#Instructor"
TEACHING_ASSISTANT = _LIS + "membership/Instructor#TeachingAssistant"
CONTENT_DEVELOPER = _LIS + "membership#ContentDeveloper"
MENTOR = _LIS + "membership#Mentor"
MEMBERSHIP_ADMINISTRATOR = _LIS + "membership#Administrator"
INSTITUTION_ADMINISTRATOR = _LIS + "institution/person#Administrator"
INSTITUTION_STAFF = _LIS + "institution/person#Staff"

#: The OneRoster 1.2 user roles (users[].roles[].role), plus an extension role the shipped rules map.
USER_ROLES = (
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
    "ext:curriculumDesigner",
)
ROLE_TYPES = ("primary", "secondary")

DISTRICT, SCHOOL, DEPARTMENT = "org-district", "org-school", "org-dept"
ORGS = {
    DISTRICT: OrgFacts(DISTRICT, "district", "Reference District"),
    SCHOOL: OrgFacts(SCHOOL, "school", "Reference High", parent=DISTRICT),
    DEPARTMENT: OrgFacts(DEPARTMENT, "department", "Mathematics", parent=SCHOOL),
}


# --- builders --------------------------------------------------------------------------------


def make_user(*roles: RoleFacts, **changes: Any) -> UserFacts:
    user = UserFacts(
        sourced_id="user-1",
        active=True,
        enabled=True,
        username="user1",
        given_name="Given",
        family_name="Family",
        roles=roles,
    )
    return replace(user, **changes)


def make_class(**changes: Any) -> ClassFacts:
    klass = ClassFacts(
        sourced_id="class-1",
        active=True,
        title="Algebra I",
        course="course-alg",
        school=SCHOOL,
        class_code="ALG-1",
        class_type="scheduled",
        subjects=("Mathematics",),
        subject_codes=("27.1",),
    )
    return replace(klass, **changes)


def make_enrollment(role: str = "student", **changes: Any) -> EnrollmentFacts:
    enrollment = EnrollmentFacts(
        sourced_id="enr-1", active=True, user="user-1", klass="class-1", school=SCHOOL, role=role
    )
    return replace(enrollment, **changes)


def inline(text: str) -> RuleSet:
    """A rule set written in the test, validated the way the engine's callers do it."""
    return RuleSet(RuleFile.model_validate(yaml.safe_load(text)), text)


def from_doc(doc: dict[str, Any]) -> RuleSet:
    return inline(yaml.safe_dump(doc, sort_keys=False))


def one_rule(kind: str, when: dict[str, Any], **more: Any) -> RuleSet:
    """A rule set with a single rule of ``kind`` testing ``when``."""
    then = {"skip": "tested"} if kind == "org_role" else {"course_role": "ta"}
    rule = {"id": "r", "applies_to": kind, "when": when, "then": then, **more}
    return from_doc({"version": "t1", "rules": [rule]})


def grant_tuple(g: Grant) -> tuple[str, str, str | None]:
    return (g.kind, g.role, g.account)


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return RuleSet.load(DEFAULT_RULES)


# --- every OneRoster user role at a school and at the district, with the shipped rules --------

ADMIN_ROOT = (("account", "AccountAdmin", "root"),)
ADMIN_ORG = (("account", "AccountAdmin", "org"),)
COUNSELOR = (("account", "Counselor (read-only)", "org"),)
TEMPLATE = (("template", "designer", None),)
SKIP_NOTE = "course roles come from enrollments"

#: (role, org, outcome, grants as (kind, role, account), rule that decided or None)
ORG_ROLE_TABLE = [
    ("aide", SCHOOL, "skipped", (), "no-account-role"),
    ("aide", DISTRICT, "skipped", (), "no-account-role"),
    ("counselor", SCHOOL, "mapped", COUNSELOR, "counselors"),
    ("counselor", DISTRICT, "unmapped", (), None),
    ("districtAdministrator", SCHOOL, "mapped", ADMIN_ROOT, "district-administrators"),
    ("districtAdministrator", DISTRICT, "mapped", ADMIN_ROOT, "district-administrators"),
    ("guardian", SCHOOL, "skipped", (), "no-account-role"),
    ("guardian", DISTRICT, "skipped", (), "no-account-role"),
    ("parent", SCHOOL, "skipped", (), "no-account-role"),
    ("parent", DISTRICT, "skipped", (), "no-account-role"),
    ("principal", SCHOOL, "mapped", ADMIN_ORG, "site-administrators"),
    ("principal", DISTRICT, "unmapped", (), None),
    ("proctor", SCHOOL, "skipped", (), "no-account-role"),
    ("proctor", DISTRICT, "skipped", (), "no-account-role"),
    ("relative", SCHOOL, "skipped", (), "no-account-role"),
    ("relative", DISTRICT, "skipped", (), "no-account-role"),
    ("siteAdministrator", SCHOOL, "mapped", ADMIN_ORG, "site-administrators"),
    ("siteAdministrator", DISTRICT, "unmapped", (), None),
    ("student", SCHOOL, "skipped", (), "no-account-role"),
    ("student", DISTRICT, "skipped", (), "no-account-role"),
    ("systemAdministrator", SCHOOL, "mapped", ADMIN_ROOT, "system-administrators"),
    ("systemAdministrator", DISTRICT, "mapped", ADMIN_ROOT, "system-administrators"),
    ("teacher", SCHOOL, "skipped", (), "no-account-role"),
    ("teacher", DISTRICT, "skipped", (), "no-account-role"),
    ("ext:curriculumDesigner", SCHOOL, "mapped", TEMPLATE, "curriculum-designers"),
    ("ext:curriculumDesigner", DISTRICT, "mapped", TEMPLATE, "curriculum-designers"),
]


def test_org_role_table_covers_every_user_role_at_both_org_types() -> None:
    covered = {(role, org) for role, org, *_ in ORG_ROLE_TABLE}
    assert covered == {(r, o) for r in USER_ROLES for o in (SCHOOL, DISTRICT)}


def org_role_decision(rules: RuleSet, role: str, org: str, role_type: str) -> Decision:
    [decision] = rules.org_roles(make_user(RoleFacts(role, role_type, org)), ORGS, TODAY)
    return decision


@pytest.mark.parametrize("role_type", ROLE_TYPES)
@pytest.mark.parametrize(("role", "org", "outcome", "grants", "rule"), ORG_ROLE_TABLE)
def test_user_role_with_shipped_rules(
    shipped: RuleSet, role: str, org: str, role_type: str, outcome: str, grants: tuple, rule: str | None
) -> None:
    d = org_role_decision(shipped, role, org, role_type)
    assert d.kind == "org_role"
    assert d.person == "user-1"
    assert d.subject == f"{role}@{org}"
    assert d.outcome == outcome
    assert tuple(grant_tuple(g) for g in d.grants) == grants
    assert all(g.rule == rule for g in d.grants)
    assert d.facts["role"] == role
    assert d.facts["roleType"] == role_type
    assert d.facts["org"] == org
    assert d.facts["orgType"] == ORGS[org].type
    matched = [c.rule for c in d.checks if c.matched]
    if outcome == "unmapped":
        assert matched == []
        assert d.note == "no rule matched: reported"
        # every org_role rule was tried, and each says why it did not match
        assert len(d.checks) == sum(r.applies_to == "org_role" for r in shipped.rules)
        assert all(c.why for c in d.checks)
    else:
        assert matched == [rule]
        assert d.checks[-1].rule == rule  # the first match stops the search
    if outcome == "skipped":
        assert d.note == SKIP_NOTE


def test_principal_at_the_district_is_unmapped_because_site_admins_need_a_school(shipped: RuleSet) -> None:
    d = org_role_decision(shipped, "principal", DISTRICT, "primary")
    why = {c.rule: c.why for c in d.checks}
    assert why["site-administrators"] == "org_type is 'district', wants school"
    assert why["no-account-role"].startswith("role is 'principal', wants student or teacher")


def test_curriculum_designer_template_grant_carries_the_template_spec(shipped: RuleSet) -> None:
    [g] = org_role_decision(shipped, "ext:curriculumDesigner", SCHOOL, "primary").grants
    assert g.template is not None
    assert g.base_role == "designer"
    assert g.template.course_role == "designer"
    assert g.template.match_course == g.template.match_user == "metadata.ext.department"
    assert g.template.all_when_unset is True


def test_role_at_an_unknown_org_is_decided_without_an_org_type(shipped: RuleSet) -> None:
    [d] = shipped.org_roles(make_user(RoleFacts("principal", "primary", "org-elsewhere")), ORGS, TODAY)
    assert d.outcome == "unmapped"
    assert "orgType" not in d.facts
    assert {c.rule: c.why for c in d.checks}["site-administrators"] == "org_type is None, wants school"


# --- every OneRoster enrollment role, with the shipped rules ----------------------------------

#: (enrollment role, outcome, course role, base role, note)
ENROLLMENT_TABLE = [
    ("administrator", "unmapped", None, None, "no rule matched: reported"),
    ("aide", "mapped", "ta", "ta", ""),
    ("counselor", "unmapped", None, None, "no rule matched: reported"),
    ("districtAdministrator", "unmapped", None, None, "no rule matched: reported"),
    ("guardian", "unmapped", None, None, "no rule matched: reported"),
    ("parent", "unmapped", None, None, "no rule matched: reported"),
    ("principal", "unmapped", None, None, "no rule matched: reported"),
    ("proctor", "skipped", None, None, "proctors are scheduled by the testing office, not enrolled"),
    ("relative", "unmapped", None, None, "no rule matched: reported"),
    ("siteAdministrator", "unmapped", None, None, "no rule matched: reported"),
    ("student", "mapped", "student", "student", ""),
    ("systemAdministrator", "unmapped", None, None, "no rule matched: reported"),
    ("teacher", "mapped", "teacher", "teacher", ""),
    ("ext:curriculumDesigner", "unmapped", None, None, "no rule matched: reported"),
]


def test_enrollment_table_covers_every_enrollment_role() -> None:
    assert {row[0] for row in ENROLLMENT_TABLE} == {*USER_ROLES, "administrator"}


def enrollment_decision(rules: RuleSet, role: str, primary: bool | None = None) -> Decision:
    user = make_user(RoleFacts("teacher" if role == "administrator" else role, "primary", SCHOOL))
    return rules.enrollment(make_enrollment(role, primary=primary), user, make_class(), TODAY)


@pytest.mark.parametrize("primary", [True, False, None])
@pytest.mark.parametrize(("role", "outcome", "course_role", "base_role", "note"), ENROLLMENT_TABLE)
def test_enrollment_role_with_shipped_rules(
    shipped: RuleSet,
    role: str,
    primary: bool | None,
    outcome: str,
    course_role: str | None,
    base_role: str | None,
    note: str,
) -> None:
    d = enrollment_decision(shipped, role, primary)
    assert d.kind == "enrollment"
    assert d.person == "user-1"
    assert d.subject == "enr-1"
    assert d.outcome == outcome
    assert d.note == note
    if course_role is None:
        assert d.grants == ()
    else:
        [g] = d.grants
        assert (g.kind, g.role, g.base_role, g.account) == ("course", course_role, base_role, None)
    assert d.facts["role"] == role
    assert d.facts["class"] == "class-1"
    assert d.facts["school"] == SCHOOL
    assert d.facts["course"] == "course-alg"
    assert d.facts.get("primary") == (None if primary is None else str(primary).lower())


# --- LTI 1.3 role URIs -------------------------------------------------------------------------

#: (LMS role kind, role, base role) -> the LTI 1.3 role URIs the engine sends with it
LTI_TABLE = [
    ("course", "student", "student", (LEARNER,)),
    ("course", "teacher", "teacher", (INSTRUCTOR,)),
    ("course", "ta", "ta", (INSTRUCTOR, TEACHING_ASSISTANT)),
    ("course", "designer", "designer", (CONTENT_DEVELOPER,)),
    ("course", "observer", "observer", (MENTOR,)),
    ("course", "Reading Specialist", "ta", (INSTRUCTOR, TEACHING_ASSISTANT)),
    ("account", "AccountAdmin", None, (INSTITUTION_ADMINISTRATOR, MEMBERSHIP_ADMINISTRATOR)),
    ("account", "Counselor (read-only)", None, (INSTITUTION_STAFF,)),
]


@pytest.mark.parametrize(("kind", "role", "base_role", "uris"), LTI_TABLE)
def test_lti_roles_for(kind: str, role: str, base_role: str | None, uris: tuple[str, ...]) -> None:
    assert lti_roles_for(kind, base_role, role if kind == "account" else None) == uris


def lti_rule_set() -> RuleSet:
    """One enrollment rule per course role in LTI_TABLE, and one org_role rule per account role."""
    rules: list[dict[str, Any]] = []
    roles = iter(("student", "teacher", "aide", "proctor", "guardian", "parent"))
    for kind, role, base_role, _ in LTI_TABLE:
        if kind == "course":
            out: dict[str, Any] = {"course_role": role}
            if role != base_role:
                out["base_role"] = base_role
            rules.append({"id": f"c{len(rules)}", "applies_to": "enrollment", "when": {"role": next(roles)}})
        else:
            out = {"account_role": {"role": role, "account": "root"}}
            rules.append({"id": f"a{len(rules)}", "applies_to": "org_role", "when": {"role": "principal"}})
            rules[-1]["continue"] = True
        rules[-1]["then"] = out
    return from_doc({"version": "lti", "rules": rules})


@pytest.mark.parametrize(
    ("enrollment_role", "course_role", "uris"),
    [
        ("student", "student", (LEARNER,)),
        ("teacher", "teacher", (INSTRUCTOR,)),
        ("aide", "ta", (INSTRUCTOR, TEACHING_ASSISTANT)),
        ("proctor", "designer", (CONTENT_DEVELOPER,)),
        ("guardian", "observer", (MENTOR,)),
        ("parent", "Reading Specialist", (INSTRUCTOR, TEACHING_ASSISTANT)),
    ],
)
def test_course_grants_carry_their_lti_roles(enrollment_role: str, course_role: str, uris: tuple) -> None:
    [g] = enrollment_decision(lti_rule_set(), enrollment_role).grants
    assert (g.role, g.lti_roles) == (course_role, uris)


def test_account_grants_carry_their_lti_roles(shipped: RuleSet) -> None:
    d = org_role_decision(lti_rule_set(), "principal", SCHOOL, "primary")
    assert [(g.role, g.lti_roles) for g in d.grants] == [
        ("AccountAdmin", (INSTITUTION_ADMINISTRATOR, MEMBERSHIP_ADMINISTRATOR)),
        ("Counselor (read-only)", (INSTITUTION_STAFF,)),
    ]
    [admin] = org_role_decision(shipped, "districtAdministrator", DISTRICT, "primary").grants
    assert admin.lti_roles == (INSTITUTION_ADMINISTRATOR, MEMBERSHIP_ADMINISTRATOR)
    [counselor] = org_role_decision(shipped, "counselor", SCHOOL, "primary").grants
    assert counselor.lti_roles == (INSTITUTION_STAFF,)
    [template] = org_role_decision(shipped, "ext:curriculumDesigner", SCHOOL, "primary").grants
    assert template.lti_roles == (CONTENT_DEVELOPER,)


def test_a_rule_can_override_the_lti_roles() -> None:
    rules = inline(
        """\
version: t1
rules:
  - id: graders
    applies_to: enrollment
    when: {role: aide}
    then:
      course_role: ta
      lti_roles: [http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#Grader]
"""
    )
    [g] = enrollment_decision(rules, "aide").grants
    assert g.lti_roles == (_LIS + "membership/Instructor#Grader",)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def every_emitted_grant(shipped: RuleSet) -> Iterator[Grant]:
    """Every grant the tables of this module make the engine emit."""
    for role, org, *_ in ORG_ROLE_TABLE:
        for role_type in ROLE_TYPES:
            yield from org_role_decision(shipped, role, org, role_type).grants
    lti = lti_rule_set()
    for rules in (shipped, lti):
        for role, *_ in ENROLLMENT_TABLE:
            yield from enrollment_decision(rules, role).grants
    yield from org_role_decision(lti, "principal", SCHOOL, "primary").grants
    student = make_user(RoleFacts("student", "primary", SCHOOL), agents=("guardian-1",))
    for d in shipped.observers(make_enrollment("student"), student, make_class(), TODAY):
        yield from d.grants
    for d in (unmapped_default("enrollment"), unmapped_default("org_role"), unmapped_default("observer")):
        yield from d.grants


def test_every_emitted_lti_role_is_in_the_shared_vocabulary(fixtures_dir: Path, shipped: RuleSet) -> None:
    vocabulary = json.loads((fixtures_dir / "lti" / "roles.json").read_text())
    known = {s.lower() for s in _strings(vocabulary)}
    emitted = {uri for g in every_emitted_grant(shipped) for uri in g.lti_roles}
    assert emitted >= {
        LEARNER,
        INSTRUCTOR,
        TEACHING_ASSISTANT,
        CONTENT_DEVELOPER,
        MENTOR,
        MEMBERSHIP_ADMINISTRATOR,
        INSTITUTION_ADMINISTRATOR,
        INSTITUTION_STAFF,
    }
    assert sorted(uri for uri in emitted if uri.lower() not in known) == []


# --- effective dates ---------------------------------------------------------------------------

#: (beginDate, endDate, expected inactive note or None when active today)
DATE_TABLE = [
    pytest.param(None, None, None, id="open"),
    pytest.param(TOMORROW, None, f"begins {TOMORROW}", id="before-begin"),
    pytest.param(TODAY.isoformat(), None, None, id="first-day"),
    pytest.param(None, TODAY.isoformat(), None, id="last-day-inclusive"),
    pytest.param(None, YESTERDAY, f"ended {YESTERDAY}", id="after-end"),
    pytest.param(YESTERDAY, TOMORROW, None, id="within"),
    pytest.param(TODAY.isoformat(), TODAY.isoformat(), None, id="one-day"),
    pytest.param("2027-01-01", "2027-06-30", "begins 2027-01-01", id="future-window"),
    pytest.param("2025-09-01", "2026-06-30", "ended 2026-06-30", id="past-window"),
]


@pytest.mark.parametrize(("begin", "end", "inactive"), DATE_TABLE)
def test_role_dates(shipped: RuleSet, begin: str | None, end: str | None, inactive: str | None) -> None:
    user = make_user(RoleFacts("principal", "primary", SCHOOL, begin, end))
    [d] = shipped.org_roles(user, ORGS, TODAY)
    if inactive:
        assert (d.outcome, d.note, d.grants, d.checks) == ("inactive", inactive, (), ())
    else:
        assert d.outcome == "mapped"
        assert [grant_tuple(g) for g in d.grants] == list(ADMIN_ORG)
    assert d.facts.get("beginDate") == begin
    assert d.facts.get("endDate") == end


@pytest.mark.parametrize(("begin", "end", "inactive"), DATE_TABLE)
def test_enrollment_dates(shipped: RuleSet, begin: str | None, end: str | None, inactive: str | None) -> None:
    enrollment = make_enrollment("teacher", begin=begin, end=end)
    d = shipped.enrollment(enrollment, make_user(), make_class(), TODAY)
    if inactive:
        assert (d.outcome, d.note, d.grants, d.checks) == ("inactive", inactive, (), ())
    else:
        assert d.outcome == "mapped"
        assert [g.role for g in d.grants] == ["teacher"]
    assert d.facts.get("beginDate") == begin
    assert d.facts.get("endDate") == end


#: (effective window, today, matches, why when it does not)
RULE_WINDOW_TABLE = [
    pytest.param({"from": "2026-09-01", "until": "2027-06-30"}, date(2026, 8, 31), False,
                 "rule in effect from 2026-09-01", id="before"),
    pytest.param({"from": "2026-09-01", "until": "2027-06-30"}, date(2026, 9, 1), True, None, id="first-day"),
    pytest.param({"from": "2026-09-01", "until": "2027-06-30"}, date(2027, 1, 15), True, None, id="within"),
    pytest.param({"from": "2026-09-01", "until": "2027-06-30"}, date(2027, 6, 30), True, None, id="last-day"),
    pytest.param({"from": "2026-09-01", "until": "2027-06-30"}, date(2027, 7, 1), False,
                 "rule in effect until 2027-06-30", id="after"),
    pytest.param({"from": "2026-09-01"}, date(2030, 1, 1), True, None, id="open-end"),
    pytest.param({"from": "2026-09-01"}, date(2026, 8, 31), False,
                 "rule in effect from 2026-09-01", id="open-end-before"),
    pytest.param({"until": "2027-06-30"}, date(2020, 1, 1), True, None, id="open-start"),
    pytest.param({"until": "2027-06-30"}, date(2027, 7, 1), False,
                 "rule in effect until 2027-06-30", id="open-start-after"),
    pytest.param({}, date(2026, 8, 31), True, None, id="no-bounds"),
]  # fmt: skip


@pytest.mark.parametrize("kind", ["org_role", "enrollment", "observer"])
@pytest.mark.parametrize(("window", "today", "matches", "why"), RULE_WINDOW_TABLE)
def test_rule_effective_window(kind: str, window: dict, today: date, matches: bool, why: str | None) -> None:
    then = "{skip: windowed}" if kind == "org_role" else "{course_role: observer}"
    text = f"""\
version: t1
rules:
  - id: windowed
    applies_to: {kind}
    effective: {json.dumps(window)}
    then: {then}
"""
    rules = inline(text)
    user = make_user(RoleFacts("teacher", "primary", SCHOOL), agents=("guardian-1",))
    if kind == "org_role":
        [d] = rules.org_roles(user, ORGS, today)
    elif kind == "enrollment":
        d = rules.enrollment(make_enrollment("teacher"), user, make_class(), today)
    else:
        [d] = rules.observers(make_enrollment("student"), user, make_class(), today)
    [check] = d.checks
    assert check.rule == "windowed"
    assert check.matched is matches
    if matches:
        assert d.outcome in ("mapped", "skipped")
        assert check.why == "no conditions"
    else:
        assert d.outcome == "unmapped"
        assert check.why == why


def test_a_rule_outside_its_window_lets_the_next_rule_decide() -> None:
    rules = inline(
        """\
version: t1
rules:
  - id: pilot-co-teachers
    applies_to: enrollment
    priority: 10
    effective: {from: 2027-01-01}
    when: {role: aide}
    then: {course_role: teacher}
  - id: aides
    applies_to: enrollment
    when: {role: aide}
    then: {course_role: ta}
"""
    )
    d = enrollment_decision(rules, "aide")
    assert [(c.rule, c.matched, c.why) for c in d.checks] == [
        ("pilot-co-teachers", False, "rule in effect from 2027-01-01"),
        ("aides", True, "role is aide"),
    ]
    assert [g.role for g in d.grants] == ["ta"]
    later = rules.enrollment(make_enrollment("aide"), make_user(), make_class(), date(2027, 1, 1))
    assert [g.role for g in later.grants] == ["teacher"]


# --- people with several roles, several outputs, priorities ----------------------------------


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        pytest.param(
            [("teacher", SCHOOL), ("siteAdministrator", SCHOOL)],
            [(f"teacher@{SCHOOL}", "skipped", ()), (f"siteAdministrator@{SCHOOL}", "mapped", ADMIN_ORG)],
            id="teacher-and-site-admin",
        ),
        pytest.param(
            [("districtAdministrator", DISTRICT), ("teacher", SCHOOL), ("counselor", SCHOOL)],
            [
                (f"districtAdministrator@{DISTRICT}", "mapped", ADMIN_ROOT),
                (f"teacher@{SCHOOL}", "skipped", ()),
                (f"counselor@{SCHOOL}", "mapped", COUNSELOR),
            ],
            id="district-admin-teacher-counselor",
        ),
        pytest.param(
            [("principal", SCHOOL), ("principal", DISTRICT), ("ext:curriculumDesigner", DEPARTMENT)],
            [
                (f"principal@{SCHOOL}", "mapped", ADMIN_ORG),
                (f"principal@{DISTRICT}", "unmapped", ()),
                (f"ext:curriculumDesigner@{DEPARTMENT}", "mapped", TEMPLATE),
            ],
            id="principal-at-two-orgs-and-designer",
        ),
        pytest.param([], [], id="no-roles"),
    ],
)
def test_one_decision_per_role(shipped: RuleSet, roles: list, expected: list) -> None:
    user = make_user(
        *(RoleFacts(r, "primary" if i == 0 else "secondary", o) for i, (r, o) in enumerate(roles))
    )
    decisions = shipped.org_roles(user, ORGS, TODAY)
    assert [(d.subject, d.outcome, tuple(grant_tuple(g) for g in d.grants)) for d in decisions] == expected
    userroles = ",".join(sorted({r for r, _ in roles}))
    assert all(d.facts["userRoles"] == userroles for d in decisions)


CONTINUE_RULES = """\
version: t1
rules:
  - id: co-teachers
    applies_to: enrollment
    priority: 30
    continue: true
    when: {role: teacher}
    then: {course_role: teacher}
  - id: teachers-design-too
    applies_to: enrollment
    priority: 20
    continue: true
    when: {role: teacher, user_role: teacher}
    then:
      - course_role: designer
      - skip: no grading role for co-teachers
  - id: reading-specialists
    applies_to: enrollment
    priority: 10
    when: {metadata: {ext.specialty: reading}}
    then:
      course_role: Reading Specialist
      base_role: ta
  - id: never-reached
    applies_to: enrollment
    priority: 0
    then: {course_role: observer}
"""


@pytest.mark.parametrize(
    ("metadata", "grants", "checked"),
    [
        pytest.param(
            {"ext.specialty": "reading"},
            [("teacher", "co-teachers"), ("designer", "teachers-design-too"),
             ("Reading Specialist", "reading-specialists")],
            ["co-teachers", "teachers-design-too", "reading-specialists"],
            id="three-rules-until-one-stops",
        ),
        pytest.param(
            {},
            [("teacher", "co-teachers"), ("designer", "teachers-design-too"), ("observer", "never-reached")],
            ["co-teachers", "teachers-design-too", "reading-specialists", "never-reached"],
            id="falls-through-to-the-last",
        ),
    ],
)  # fmt: skip
def test_continue_collects_outputs_of_several_rules(metadata: dict, grants: list, checked: list) -> None:
    user = make_user(RoleFacts("teacher", "primary", SCHOOL), metadata=metadata)
    d = inline(CONTINUE_RULES).enrollment(make_enrollment("teacher"), user, make_class(), TODAY)
    assert d.outcome == "mapped"
    assert [(g.role, g.rule) for g in d.grants] == grants
    assert [c.rule for c in d.checks] == checked
    assert all(c.matched for c in d.checks if c.rule != "reading-specialists")


def test_then_list_gives_every_output_of_one_rule() -> None:
    rules = inline(
        """\
version: t1
rules:
  - id: admin-and-designer
    applies_to: org_role
    when: {role: siteAdministrator}
    then:
      - account_role: {role: AccountAdmin}
      - template_role: {course_role: designer, match_course: org, match_user: metadata.ext.org}
      - skip: and nothing else
"""
    )
    [d] = rules.org_roles(make_user(RoleFacts("siteAdministrator", "primary", SCHOOL)), ORGS, TODAY)
    assert d.outcome == "mapped"
    assert [grant_tuple(g) for g in d.grants] == [("account", "AccountAdmin", "org"), TEMPLATE[0]]
    assert {g.rule for g in d.grants} == {"admin-and-designer"}


def test_continue_with_only_skips_is_skipped_with_every_reason() -> None:
    rules = inline(
        """\
version: t1
rules:
  - id: first
    applies_to: org_role
    continue: true
    when: {role: teacher}
    then: {skip: one}
  - id: second
    applies_to: org_role
    then: [{skip: two}, {skip: three}]
"""
    )
    [d] = rules.org_roles(make_user(RoleFacts("teacher", "primary", SCHOOL)), ORGS, TODAY)
    assert (d.outcome, d.grants, d.note) == ("skipped", (), "one; two; three")


#: rules written in file order as (id, priority); all match; the expected winner
PRIORITY_TABLE = [
    pytest.param([("low", 1), ("high", 9)], "high", ["high"], id="higher-priority-wins"),
    pytest.param([("high", 9), ("low", 1)], "high", ["high"], id="higher-first-in-file"),
    pytest.param([("first", 5), ("second", 5)], "first", ["first"], id="equal-keeps-file-order"),
    pytest.param([("neg", -3), ("zero", 0), ("also-zero", 0)], "zero", ["zero"], id="default-beats-negative"),
    pytest.param([("a", 1), ("b", 2), ("c", 2), ("d", 3)], "d", ["d"], id="highest-of-many"),
]


@pytest.mark.parametrize(("rules", "winner", "checked"), PRIORITY_TABLE)
def test_priority_order_and_first_match_stops(rules: list, winner: str, checked: list) -> None:
    doc = {
        "version": "t1",
        "rules": [
            {"id": rid, "applies_to": "enrollment", "priority": p, "then": {"course_role": "student"}}
            for rid, p in rules
        ],
    }
    d = enrollment_decision(from_doc(doc), "student")
    assert [g.rule for g in d.grants] == [winner]
    assert [c.rule for c in d.checks] == checked


def test_checks_follow_priority_then_file_order_until_the_first_match() -> None:
    doc = {
        "version": "t1",
        "rules": [
            {"id": rid, "applies_to": "enrollment", "priority": p, "when": {"role": role},
             "then": {"course_role": "student"}}
            for rid, p, role in [("p1-teacher", 1, "teacher"), ("p5-aide", 5, "aide"),
                                 ("p5-student", 5, "student"), ("p9-teacher", 9, "teacher"),
                                 ("p5-student-again", 5, "student")]
        ],
    }  # fmt: skip
    d = enrollment_decision(from_doc(doc), "student")
    assert [(c.rule, c.matched) for c in d.checks] == [
        ("p9-teacher", False),
        ("p5-aide", False),
        ("p5-student", True),
    ]


# --- unmapped roles ----------------------------------------------------------------------------


def unmapped_default(kind: str) -> Decision:
    """A decision for a role no rule maps, under a ``default`` unmapped policy."""
    rules = inline(
        """\
version: t1
unmapped:
  org_role: {policy: default, account_role: {role: Staff Viewer, account: root}}
  enrollment: {policy: default, course_role: Visitor, base_role: observer}
  observer: {policy: default, course_role: observer}
rules:
  - id: only-students
    applies_to: enrollment
    when: {role: student}
    then: {course_role: student}
"""
    )
    user = make_user(RoleFacts("relative", "primary", SCHOOL), agents=("guardian-1",))
    if kind == "org_role":
        [d] = rules.org_roles(user, ORGS, TODAY)
    elif kind == "enrollment":
        d = rules.enrollment(make_enrollment("relative"), user, make_class(), TODAY)
    else:
        [d] = rules.observers(make_enrollment("relative"), user, make_class(), TODAY)
    return d


@pytest.mark.parametrize(
    ("kind", "grant", "base_role", "lti"),
    [
        ("org_role", ("account", "Staff Viewer", "root"), None, (INSTITUTION_STAFF,)),
        ("enrollment", ("course", "Visitor", None), "observer", (MENTOR,)),
        ("observer", ("course", "observer", None), "observer", (MENTOR,)),
    ],
)
def test_unmapped_default_policy(kind: str, grant: tuple, base_role: str | None, lti: tuple) -> None:
    d = unmapped_default(kind)
    assert d.outcome == "defaulted"
    assert d.note == "no rule matched: the unmapped default applies"
    [g] = d.grants
    assert grant_tuple(g) == grant
    assert (g.base_role, g.lti_roles, g.rule) == (base_role, lti, "(unmapped default)")


@pytest.mark.parametrize(
    ("unmapped", "grant"),
    [
        pytest.param("{policy: default, course_role: student}", ("course", "student", None), id="student"),
        pytest.param("{policy: default, course_role: ta}", ("course", "ta", None), id="ta"),
        pytest.param("{policy: report}", None, id="report"),
        pytest.param("{}", None, id="report-by-default"),
    ],
)
def test_unmapped_enrollment_policy(unmapped: str, grant: tuple | None) -> None:
    rules = inline(
        f"""\
version: t1
unmapped:
  enrollment: {unmapped}
rules:
  - id: teachers
    applies_to: enrollment
    when: {{role: teacher}}
    then: {{course_role: teacher}}
"""
    )
    d = enrollment_decision(rules, "administrator")
    assert [(c.rule, c.matched) for c in d.checks] == [("teachers", False)]
    if grant is None:
        assert (d.outcome, d.grants, d.note) == ("unmapped", (), "no rule matched: reported")
    else:
        assert d.outcome == "defaulted"
        assert [grant_tuple(g) for g in d.grants] == [grant]
        assert d.grants[0].rule == "(unmapped default)"


def test_unmapped_org_role_default_account_is_the_role_org() -> None:
    rules = inline(
        """\
version: t1
unmapped:
  org_role: {policy: default, account_role: {role: AccountAdmin}}
rules:
  - id: teachers
    applies_to: org_role
    when: {role: teacher}
    then: {skip: from enrollments}
"""
    )
    user = make_user(RoleFacts("teacher", "primary", SCHOOL), RoleFacts("principal", "secondary", SCHOOL))
    teacher, principal = rules.org_roles(user, ORGS, TODAY)
    assert teacher.outcome == "skipped"
    assert principal.outcome == "defaulted"
    [g] = principal.grants
    assert grant_tuple(g) == ("account", "AccountAdmin", "org")
    assert g.lti_roles == (INSTITUTION_ADMINISTRATOR, MEMBERSHIP_ADMINISTRATOR)


def test_a_rule_set_without_rules_of_a_kind_reports_every_subject_of_that_kind() -> None:
    rules = one_rule("enrollment", {"role": "student"})
    [d] = rules.org_roles(make_user(RoleFacts("principal", "primary", SCHOOL)), ORGS, TODAY)
    assert (d.outcome, d.checks, d.grants) == ("unmapped", (), ())


# --- conditions --------------------------------------------------------------------------------

AGENTS = ("guardian-1",)
META = {"ext.department": "math"}

#: (kind, when, matched, why)
CONDITION_TABLE: list[tuple[str, dict[str, Any], bool, str]] = [
    # org_role: the role teacher (primary) at the school, of a user who is also a principal
    ("org_role", {"role": "teacher"}, True, "role is teacher"),
    ("org_role", {"role": ["aide", "principal"]}, False, "role is 'teacher', wants aide or principal"),
    ("org_role", {"role_type": "primary"}, True, "role_type is primary"),
    ("org_role", {"role_type": "secondary"}, False, "role_type is 'primary', wants secondary"),
    ("org_role", {"org": [DISTRICT, SCHOOL]}, True, f"org is {SCHOOL}"),
    ("org_role", {"org": DISTRICT}, False, f"org is '{SCHOOL}', wants {DISTRICT}"),
    ("org_role", {"org_type": "school"}, True, "org_type is school"),
    ("org_role", {"org_type": ["district", "department"]}, False,
     "org_type is 'school', wants district or department"),
    ("org_role", {"user_role": "principal"}, True, "user_role has principal"),
    ("org_role", {"user_role": ["counselor", "aide"]}, False, "user_role has none of counselor, aide"),
    ("org_role", {"metadata": {"ext.department": "math"}}, True, "metadata ext.department is 'math'"),
    ("org_role", {"metadata": {"ext.department": "art"}}, False,
     "metadata ext.department is 'math', wants art"),
    ("org_role", {"has_agents": True}, True, "has_agents is True"),
    ("org_role", {"has_agents": False}, False, "has_agents is True, wants False"),
    # enrollment: teacher, primary, in class-1 (course-alg, ALG-1, scheduled, Mathematics/27.1)
    ("enrollment", {"role": "teacher"}, True, "role is teacher"),
    ("enrollment", {"role": "administrator"}, False, "role is 'teacher', wants administrator"),
    ("enrollment", {"user_role": ["principal", "counselor"]}, True, "user_role has principal"),
    ("enrollment", {"user_role": "counselor"}, False, "user_role has none of counselor"),
    ("enrollment", {"primary": True}, True, "primary is True"),
    ("enrollment", {"primary": False}, False, "primary is True, wants False"),
    ("enrollment", {"course": ["course-geo", "course-alg"]}, True, "course is course-alg"),
    ("enrollment", {"course": "course-geo"}, False, "course is 'course-alg', wants course-geo"),
    ("enrollment", {"subject": ["Science", "Mathematics"]}, True, "subject has Mathematics"),
    ("enrollment", {"subject": "Science"}, False, "subject has none of Science"),
    ("enrollment", {"subject_code": "27.1"}, True, "subject_code has 27.1"),
    ("enrollment", {"subject_code": ["40.1", "41.1"]}, False, "subject_code has none of 40.1, 41.1"),
    ("enrollment", {"class_code": "ALG-1"}, True, "class_code is ALG-1"),
    ("enrollment", {"class_code": "GEO-1"}, False, "class_code is 'ALG-1', wants GEO-1"),
    ("enrollment", {"class_type": "scheduled"}, True, "class_type is scheduled"),
    ("enrollment", {"class_type": "homeroom"}, False, "class_type is 'scheduled', wants homeroom"),
    ("enrollment", {"school": SCHOOL}, True, f"school is {SCHOOL}"),
    ("enrollment", {"school": "org-other"}, False, f"school is '{SCHOOL}', wants org-other"),
    ("enrollment", {"metadata": {"ext.department": "math"}}, True, "metadata ext.department is 'math'"),
    ("enrollment", {"metadata": {"ext.department": ["science", "math"]}}, True,
     "metadata ext.department is 'math'"),
    ("enrollment", {"metadata": {"ext.department": "*"}}, True, "metadata ext.department is 'math'"),
    ("enrollment", {"metadata": {"ext.department": ["science", "art"]}}, False,
     "metadata ext.department is 'math', wants science or art"),
    ("enrollment", {"metadata": {"ext.grade_band": "*"}}, False, "metadata ext.grade_band is None, wants *"),
    ("enrollment", {"metadata": {"ext.department": "math", "ext.grade_band": "9-12"}}, False,
     "metadata ext.grade_band is None, wants 9-12"),
    ("enrollment", {"has_agents": True}, True, "has_agents is True"),
    ("enrollment", {"has_agents": False}, False, "has_agents is True, wants False"),
    # every condition at once: all must hold; what held is listed in name order
    ("enrollment", {"role": "teacher", "class_type": "scheduled", "school": SCHOOL, "primary": True}, True,
     f"class_type is scheduled; primary is True; role is teacher; school is {SCHOOL}"),
    ("enrollment", {"role": "teacher", "class_type": "homeroom", "school": "org-other"}, False,
     "class_type is 'scheduled', wants homeroom"),
    ("enrollment", {}, True, "no conditions"),
    # observer: the same conditions as enrollment, about the enrollment of the agent's student
    ("observer", {"role": "teacher", "course": "course-alg"}, True, "course is course-alg; role is teacher"),
    ("observer", {"subject": "Science"}, False, "subject has none of Science"),
    ("observer", {"has_agents": True}, True, "has_agents is True"),
]  # fmt: skip


def condition_check(kind: str, when: dict[str, Any], **user_changes: Any) -> Any:
    rules = one_rule(kind, when)
    changes: dict[str, Any] = {"metadata": META, "agents": AGENTS, **user_changes}
    roles = (RoleFacts("teacher", "primary", SCHOOL), RoleFacts("principal", "secondary", DISTRICT))
    user = make_user(*roles, **changes)
    enrollment = make_enrollment("teacher", primary=True)
    if kind == "org_role":
        decisions = rules.org_roles(user, ORGS, TODAY)
    elif kind == "enrollment":
        decisions = [rules.enrollment(enrollment, user, make_class(), TODAY)]
    else:
        decisions = rules.observers(enrollment, user, make_class(), TODAY)
    [check] = decisions[0].checks
    return decisions[0], check


@pytest.mark.parametrize(("kind", "when", "matched", "why"), CONDITION_TABLE)
def test_condition(kind: str, when: dict[str, Any], matched: bool, why: str) -> None:
    d, check = condition_check(kind, when)
    assert (check.matched, check.why) == (matched, why)
    assert d.outcome == (("skipped" if kind == "org_role" else "mapped") if matched else "unmapped")


def test_table_tests_every_condition_matching_and_not_matching() -> None:
    for kind, allowed in (
        ("org_role", {"role", "role_type", "org", "org_type", "user_role", "metadata", "has_agents"}),
        ("enrollment", set(When.model_fields) - {"role_type", "org", "org_type"}),
    ):
        for matched in (True, False):
            tested = {
                name for k, when, m, _ in CONDITION_TABLE if k == kind and m is matched for name in when
            }
            assert tested == allowed, (kind, matched)


@pytest.mark.parametrize(
    ("kind", "when", "user_changes", "matched", "why"),
    [
        ("enrollment", {"has_agents": False}, {"agents": ()}, True, "has_agents is False"),
        ("org_role", {"has_agents": True}, {"agents": ()}, False, "has_agents is False, wants True"),
        ("enrollment", {"metadata": {"ext.department": "*"}}, {"metadata": {}}, False,
         "metadata ext.department is None, wants *"),
        ("org_role", {"metadata": {"ext.department": ["math", "*"]}}, {"metadata": {"ext.department": "x"}},
         True, "metadata ext.department is 'x'"),
    ],
)  # fmt: skip
def test_condition_on_other_users(kind: str, when: dict, user_changes: dict, matched: bool, why: str) -> None:
    _, check = condition_check(kind, when, **user_changes)
    assert (check.matched, check.why) == (matched, why)


def test_primary_condition_with_no_primary_flag_does_not_match() -> None:
    d = one_rule("enrollment", {"primary": True}).enrollment(
        make_enrollment("teacher"), make_user(), make_class(), TODAY
    )
    assert [(c.matched, c.why) for c in d.checks] == [(False, "primary is None, wants True")]


# --- observers ---------------------------------------------------------------------------------


def test_observers_one_decision_per_agent(shipped: RuleSet) -> None:
    student = make_user(RoleFacts("student", "primary", SCHOOL), agents=("guardian-1", "guardian-2"))
    decisions = shipped.observers(make_enrollment("student"), student, make_class(), TODAY)
    assert [(d.kind, d.person, d.student, d.subject, d.outcome) for d in decisions] == [
        ("observer", "guardian-1", "user-1", "enr-1/guardian-1", "mapped"),
        ("observer", "guardian-2", "user-1", "enr-1/guardian-2", "mapped"),
    ]
    for d in decisions:
        [g] = d.grants
        assert (g.kind, g.role, g.base_role, g.lti_roles, g.rule) == (
            "course",
            "observer",
            "observer",
            (MENTOR,),
            "guardians",
        )


@pytest.mark.parametrize(
    ("agents", "enrollment", "has_user", "expected"),
    [
        pytest.param((), make_enrollment("student"), True, [], id="no-agents"),
        pytest.param(("g1",), make_enrollment("student"), False, [], id="unknown-student"),
        pytest.param(("g1",), make_enrollment("student", end=YESTERDAY), True,
                     [("g1", "inactive", f"ended {YESTERDAY}")], id="ended-enrollment"),
        pytest.param(("g1", "g2"), make_enrollment("student", begin=TOMORROW), True,
                     [("g1", "inactive", f"begins {TOMORROW}"), ("g2", "inactive", f"begins {TOMORROW}")],
                     id="future-enrollment"),
        pytest.param(("g1",), make_enrollment("student", active=False), True,
                     [("g1", "inactive", "enrollment is deleted")], id="deleted-enrollment"),
        pytest.param(("g1",), make_enrollment("teacher"), True,
                     [("g1", "unmapped", "no rule matched: reported")], id="agents-of-a-teacher"),
    ],
)  # fmt: skip
def test_observers_table(
    shipped: RuleSet, agents: tuple, enrollment: EnrollmentFacts, has_user: bool, expected: list
) -> None:
    user = make_user(RoleFacts("student", "primary", SCHOOL), agents=agents) if has_user else None
    decisions = shipped.observers(enrollment, user, make_class(), TODAY)
    assert [(d.person, d.outcome, d.note) for d in decisions] == expected
    assert all(d.student == "user-1" and d.grants == () for d in decisions if d.outcome != "mapped")


# --- inactive subjects -------------------------------------------------------------------------

ACTIVE_USER = make_user(RoleFacts("teacher", "primary", SCHOOL))


@pytest.mark.parametrize(
    ("enrollment", "user", "klass", "note"),
    [
        pytest.param(make_enrollment("teacher", active=False), ACTIVE_USER, make_class(),
                     "enrollment is deleted", id="deleted-enrollment"),
        pytest.param(make_enrollment("teacher"), None, make_class(), "user not known yet", id="unknown-user"),
        pytest.param(make_enrollment("teacher"), replace(ACTIVE_USER, active=False), make_class(),
                     "user is deleted", id="deleted-user"),
        pytest.param(make_enrollment("teacher"), replace(ACTIVE_USER, enabled=False), make_class(),
                     "user is disabled", id="disabled-user"),
        pytest.param(make_enrollment("teacher"), ACTIVE_USER, None,
                     "class not known yet", id="unknown-class"),
        pytest.param(make_enrollment("teacher"), ACTIVE_USER, make_class(active=False),
                     "class is deleted", id="deleted-class"),
        pytest.param(make_enrollment("teacher", active=False), None, None,
                     "enrollment is deleted", id="deleted-enrollment-first"),
        pytest.param(make_enrollment("teacher", end=YESTERDAY), ACTIVE_USER, make_class(active=False),
                     "class is deleted", id="deleted-class-before-dates"),
    ],
)  # fmt: skip
def test_inactive_enrollment(
    shipped: RuleSet,
    enrollment: EnrollmentFacts,
    user: UserFacts | None,
    klass: ClassFacts | None,
    note: str,
) -> None:
    d = shipped.enrollment(enrollment, user, klass, TODAY)
    assert (d.outcome, d.note, d.grants, d.checks) == ("inactive", note, (), ())
    assert (d.person, d.subject) == ("user-1", "enr-1")


@pytest.mark.parametrize(
    ("user_changes", "orgs", "notes"),
    [
        pytest.param({"active": False}, ORGS, ["user is deleted", "user is deleted"], id="deleted-user"),
        pytest.param({"enabled": False}, ORGS, ["user is disabled", "user is disabled"], id="disabled-user"),
        pytest.param({}, {**ORGS, SCHOOL: replace(ORGS[SCHOOL], active=False)},
                     ["org is deleted", None], id="deleted-school"),
        pytest.param({}, ORGS, [None, None], id="active"),
    ],
)  # fmt: skip
def test_inactive_org_roles(shipped: RuleSet, user_changes: dict, orgs: dict, notes: list) -> None:
    roles = (
        RoleFacts("principal", "primary", SCHOOL),
        RoleFacts("districtAdministrator", "secondary", DISTRICT),
    )
    decisions = shipped.org_roles(make_user(*roles, **user_changes), orgs, TODAY)
    for d, note in zip(decisions, notes, strict=True):
        if note is None:
            assert d.outcome == "mapped"
        else:
            assert (d.outcome, d.note, d.grants) == ("inactive", note, ())


# --- course templates --------------------------------------------------------------------------

COURSES = [
    CourseFacts("course-alg", True, "Algebra I", org=SCHOOL, subjects=("Mathematics",), metadata=META),
    CourseFacts("course-bio", True, "Biology", org=DISTRICT, subjects=("Science",),
                metadata={"ext.department": "science"}),
    CourseFacts("course-art", True, "Art", org=SCHOOL, subjects=("Art",)),
    CourseFacts("course-old-math", False, "Old Algebra", org=SCHOOL, subjects=("Mathematics",),
                metadata=META),
]  # fmt: skip


def template_grant(rules: RuleSet) -> Grant:
    [d] = rules.org_roles(make_user(RoleFacts("ext:curriculumDesigner", "primary", DISTRICT)), ORGS, TODAY)
    [g] = d.grants
    assert g.kind == "template"
    return g


def template_rules(spec: str) -> RuleSet:
    return inline(
        f"""\
version: t1
rules:
  - id: designers
    applies_to: org_role
    when: {{role: "ext:curriculumDesigner"}}
    then: {{template_role: {spec}}}
"""
    )


@pytest.mark.parametrize(
    ("spec", "metadata", "expected"),
    [
        pytest.param(None, META, ["course-alg"], id="shipped-department"),
        pytest.param(None, {"ext.department": "science"}, ["course-bio"], id="shipped-other-department"),
        pytest.param(None, {"ext.department": "music"}, [], id="shipped-no-such-department"),
        pytest.param(None, {}, ["course-alg", "course-bio", "course-art"], id="shipped-unset-gets-all"),
        pytest.param("{all_when_unset: false}", {}, [], id="unset-gets-none"),
        pytest.param("{all_when_unset: true}", META, ["course-alg"], id="set-still-filters"),
        pytest.param("{match_course: subjects, match_user: metadata.ext.subject}",
                     {"ext.subject": "Science"}, ["course-bio"], id="by-subject"),
        pytest.param("{match_course: org, match_user: metadata.ext.org}",
                     {"ext.org": SCHOOL}, ["course-alg", "course-art"], id="by-org"),
    ],
)  # fmt: skip
def test_templates(shipped: RuleSet, spec: str | None, metadata: dict, expected: list) -> None:
    grant = template_grant(shipped if spec is None else template_rules(spec))
    user = make_user(RoleFacts("ext:curriculumDesigner", "primary", DISTRICT), metadata=metadata)
    assert list(RuleSet.templates(grant, user, COURSES)) == expected


# --- decisions carry no personal data ----------------------------------------------------------

PERSONAL = {
    "given_name": "Zebulon",
    "family_name": "Quixotefeld",
    "preferred_given_name": "Zeb",
    "preferred_family_name": "Quixote-Feld",
    "username": "zquixote42",
    "email": "zebulon.quixotefeld@example.org",
    "identifier": "SSN-987-65-4321",
}


def test_decision_facts_hold_no_personal_data(shipped: RuleSet) -> None:
    roles = tuple(RoleFacts(r, "primary", SCHOOL, "2026-08-01", "2027-06-30") for r in USER_ROLES)
    user = make_user(
        *roles,
        agents=("guardian-1",),
        metadata={"ext.department": "math", "ext.nickname": "Zebster"},
        **PERSONAL,
    )
    decisions = list(shipped.org_roles(user, ORGS, TODAY))
    for role in ENROLLMENT_TABLE:
        enrollment = make_enrollment(role[0], primary=True, begin="2026-08-01")
        decisions.append(shipped.enrollment(enrollment, user, make_class(), TODAY))
        decisions.extend(shipped.observers(enrollment, user, make_class(), TODAY))
    decisions.append(shipped.enrollment(make_enrollment(end=YESTERDAY), user, make_class(), TODAY))
    assert {d.outcome for d in decisions} == {"mapped", "skipped", "unmapped", "inactive"}
    secrets = [v.lower() for v in (*PERSONAL.values(), "Zebster")]
    for d in decisions:
        assert d.facts
        text = " ".join(f"{k}={v}" for k, v in d.facts.items()).lower()
        leaked = [s for s in secrets if s in text]
        assert leaked == [], (d.subject, dict(d.facts))
        assert all(isinstance(v, str) for v in d.facts.values())


# --- the rule set's identity -------------------------------------------------------------------

BASE_TEXT = """\
version: "2026.1"
rules:
  - id: students
    applies_to: enrollment
    when: {role: student}
    then: {course_role: student}
"""


@pytest.mark.parametrize(
    ("other", "same"),
    [
        pytest.param(BASE_TEXT, True, id="same-text"),
        pytest.param(BASE_TEXT + "# a comment\n", False, id="comment-added"),
        pytest.param(BASE_TEXT.replace("course_role: student", "course_role: ta"), False, id="rule-changed"),
    ],
)
def test_version_is_declared_version_plus_text_hash(other: str, same: bool) -> None:
    a, b = inline(BASE_TEXT), inline(other)
    for rules in (a, b):
        prefix, _, digest = rules.version.partition("+")
        assert prefix == "2026.1"
        assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert (a.version == b.version) is same


def test_shipped_version_keeps_the_declared_version(shipped: RuleSet) -> None:
    assert shipped.version.startswith(shipped.doc.version + "+")
    assert shipped.doc.version == "2026.11-1"
    assert shipped.source == str(DEFAULT_RULES)
