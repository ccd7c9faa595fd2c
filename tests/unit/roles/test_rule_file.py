"""Role-mapping rule files: the shipped one loads; a broken one says the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from streams.errors import ConfigError, RuleFileError
from streams.roles import DEFAULT_RULES, RuleFile, RuleSet, load_rule_file

HEAD = "version: '1'\nrules:\n"

#: (rule file text, line, field, part of the reason) for a file with one problem
INVALID = [
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {role: [teacher}\n",
        5, "(syntax)", "expected ',' or ']'", id="yaml-syntax",
    ),
    pytest.param("- id: a\n- id: b\n", 1, "(document)", "expected a mapping", id="not-a-mapping"),
    pytest.param("", 1, "(document)", "expected a mapping", id="empty-file"),
    pytest.param(
        "# rules without a version\nrules:\n  - id: a\n    applies_to: enrollment\n"
        "    then: {course_role: student}\n",
        2, "version", "Field required", id="missing-version",
    ),
    pytest.param("version: '1'\nrules: []\n", 2, "rules", "at least 1 item", id="empty-rules"),
    pytest.param("version: '1'\ndescription: nothing\n", 1, "rules", "Field required", id="missing-rules"),
    pytest.param("version: '1'\nrules:\n  id: a\n", 3, "rules", "valid list", id="rules-not-a-list"),
    pytest.param(
        "version: '1'\nrulez: []\n" + "rules:\n  - id: a\n    applies_to: enrollment\n    then: {skip: x}\n",
        2, "rulez", "Extra inputs are not permitted", id="unknown-top-level-key",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    whne: {role: teacher}\n"
        "    then: {course_role: teacher}\n",
        5, "rules[a].whne", "Extra inputs are not permitted", id="typo-in-rule-key",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when:\n      role: teacher\n      grade: '09'\n"
        "    then: {course_role: teacher}\n",
        7, "rules[a].when.grade", "Extra inputs are not permitted", id="unknown-condition",
    ),
    pytest.param(
        HEAD + "  - id: bad id\n    applies_to: enrollment\n    then: {course_role: ta}\n",
        3, "rules[bad id].id", "should match pattern", id="bad-rule-id",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrolment\n    then: {course_role: teacher}\n",
        4, "rules[a].applies_to", "'org_role', 'enrollment' or 'observer'", id="applies-to-invalid",
    ),
    pytest.param(
        HEAD + "  - id: a\n    then: {course_role: teacher}\n",
        3, "rules[a].applies_to", "Field required", id="applies-to-missing",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when:\n      role: teacher\n"
        "      org_type: school\n    then: {course_role: teacher}\n",
        7, "rules[a].when.org_type", "enrollment rules cannot test org_type", id="org-type-on-enrollment",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: observer\n    when:\n      role_type: primary\n"
        "    then: {course_role: observer}\n",
        6, "rules[a].when.role_type", "observer rules cannot test role_type", id="role-type-on-observer",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: org_role\n    when:\n      role: teacher\n      primary: true\n"
        "    then: {skip: x}\n",
        7, "rules[a].when.primary", "org_role rules cannot test primary", id="primary-on-org-role",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: org_role\n    when: {class_code: ALG-1}\n    then: {skip: x}\n",
        5, "rules[a].when.class_code", "org_role rules cannot test class_code", id="class-code-on-org-role",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: org_role\n    when: {role: teacher}\n"
        "    then: {course_role: teacher}\n",
        6, "rules[a].then.course_role", "org_role rules give account_role or skip or template_role, not "
        "course_role", id="course-role-on-org-role",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {role: teacher}\n    then:\n"
        "      - course_role: teacher\n      - account_role: {role: AccountAdmin}\n",
        8, "rules[a].then[1].account_role", "enrollment rules give course_role or skip, not account_role",
        id="account-role-on-enrollment",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: observer\n    then: {template_role: {}}\n",
        5, "rules[a].then.template_role", "observer rules give course_role or skip, not template_role",
        id="template-role-on-observer",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {role: teacher}\n    then:\n"
        "      - course_role: teacher\n        skip: not this one\n",
        7, "rules[a].then[0]", "give exactly one of course_role, account_role, template_role, skip",
        id="two-outputs-in-one-item",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    then:\n      - base_role: ta\n",
        6, "rules[a].then[0]", "give exactly one of", id="no-output",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    then: []\n",
        5, "rules[a].then", "at least 1 item", id="empty-then",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {role: teachr}\n"
        "    then: {course_role: teacher}\n",
        5, "rules[a].when.role", "'teachr' is not a OneRoster 1.2 enrollment role",
        id="unknown-enrollment-role",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: org_role\n    when:\n      role: [teacher, administrator]\n"
        "    then: {skip: x}\n",
        6, "rules[a].when.role", "'administrator' is not a OneRoster 1.2 user role",
        id="enrollment-only-role",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {user_role: Teacher}\n"
        "    then: {course_role: teacher}\n",
        5, "rules[a].when.user_role", "'Teacher' is not a OneRoster 1.2 user role", id="unknown-user-role",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: org_role\n    when:\n      role: teacher\n      role_type: main\n"
        "    then: {skip: x}\n",
        7, "rules[a].when.role_type", "'main' is not a roleType (primary or secondary)", id="bad-role-type",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: org_role\n    when:\n      role: teacher\n      org_type: campus\n"
        "    then: {skip: x}\n",
        7, "rules[a].when.org_type", "'campus' is not a OneRoster 1.2 org type", id="bad-org-type",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {class_type: lab}\n"
        "    then: {course_role: ta}\n",
        5, "rules[a].when.class_type", "'lab' is not a OneRoster 1.2 class type", id="bad-class-type",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {primary: maybe}\n"
        "    then: {course_role: ta}\n",
        5, "rules[a].when.primary", "valid boolean", id="bad-primary",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {role: aide}\n    then:\n"
        "      - course_role: Reading Specialist\n",
        7, "rules[a].then[0]", "custom course role 'Reading Specialist' needs base_role",
        id="custom-course-role-without-base-role",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    then:\n"
        "      - {course_role: Reading Specialist, base_role: aide}\n",
        6, "rules[a].then[0].base_role", "'student', 'teacher', 'ta', 'designer' or 'observer'",
        id="bad-base-role",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {role: aide}\n    then:\n"
        "      - course_role: ta\n        lti_roles:\n"
        "          - http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor\n          - Instructor\n",
        7, "rules[a].then[0]", "'Instructor' is not an LTI 1.3 role URI", id="bad-lti-uri",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: org_role\n    then:\n"
        "      - account_role: {role: AccountAdmin, account: school}\n",
        6, "rules[a].then[0].account_role.account", "'root' or 'org'", id="bad-account",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    effective: {from: 2026-09-01, until: 2026-06-30}\n"
        "    then: {course_role: ta}\n",
        5, "rules[a].effective", "until is before from", id="effective-until-before-from",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    effective: {from: someday}\n"
        "    then: {course_role: ta}\n",
        5, "rules[a].effective.from", "valid date", id="effective-not-a-date",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    then: {course_role: ta}\n"
        "  - id: b\n    applies_to: enrollment\n    then: {course_role: ta}\n"
        "  - id: a\n    applies_to: observer\n    then: {course_role: observer}\n",
        9, "rules[a].id", "rule id 'a' is used twice (first at rules[0])", id="duplicate-rule-id",
    ),
    pytest.param(
        "version: '1'\nunmapped:\n  enrollment: {policy: default}\n"
        "rules:\n  - id: a\n    applies_to: enrollment\n    then: {course_role: ta}\n",
        3, "unmapped.enrollment", "policy default needs course_role", id="unmapped-default-without-role",
    ),
    pytest.param(
        "version: '1'\nunmapped:\n  enrollment:\n    policy: report\n    course_role: student\n"
        "rules:\n  - id: a\n    applies_to: enrollment\n    then: {course_role: ta}\n",
        4, "unmapped.enrollment", "policy report gives no role", id="unmapped-report-with-role",
    ),
    pytest.param(
        "version: '1'\nunmapped:\n  observer: {policy: ignore}\n"
        "rules:\n  - id: a\n    applies_to: enrollment\n    then: {course_role: ta}\n",
        3, "unmapped.observer.policy", "'report' or 'default'", id="unmapped-unknown-policy",
    ),
    pytest.param(
        "version: '1'\nunmapped:\n  enrollment: {policy: default, course_role: Visitor}\n"
        "rules:\n  - id: a\n    applies_to: enrollment\n    then: {course_role: ta}\n",
        3, "unmapped.enrollment", "custom course role 'Visitor' needs base_role", id="unmapped-custom-role",
    ),
    pytest.param(
        "version: '1'\nunmapped:\n  org_role: {policy: default, course_role: student}\n"
        "rules:\n  - id: a\n    applies_to: enrollment\n    then: {course_role: ta}\n",
        3, "unmapped", "org_role: the default for an unmapped org role is an account_role",
        id="unmapped-org-role-course-default",
    ),
    pytest.param(
        "version: '1'\nunmapped:\n  enrollment: {policy: default, account_role: {role: AccountAdmin}}\n"
        "rules:\n  - id: a\n    applies_to: enrollment\n    then: {course_role: ta}\n",
        3, "unmapped", "enrollment: the default for an unmapped enrollment is a course_role",
        id="unmapped-enrollment-account-default",
    ),
]  # fmt: skip


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roles.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "line", "field", "reason"), INVALID)
def test_invalid_rule_file(tmp_path: Path, text: str, line: int, field: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleFileError) as info:
        load_rule_file(path)
    err = info.value
    assert isinstance(err, ConfigError)
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert reason in err.reason
    assert err.problems[0] == (line, field, err.reason)
    assert str(err).startswith(f"{path}:{line}: {field}: ")
    with pytest.raises(RuleFileError):
        RuleSet.load(path)  # the engine loads rule files the same way


def test_two_outputs_in_a_single_mapping_point_at_then(tmp_path: Path) -> None:
    text = HEAD + (
        "  - id: a\n    applies_to: enrollment\n    when: {role: teacher}\n    then:\n"
        "      course_role: teacher\n      skip: not this one\n"
    )
    with pytest.raises(RuleFileError) as info:
        load_rule_file(write(tmp_path, text))
    assert info.value.line == 7
    assert info.value.field.startswith("rules[a].then")
    assert "give exactly one of" in info.value.reason


#: several problems in one file: every one with its own line, in file order
MANY = [
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {role: teachr, org_type: school}\n"
        "    then: {course_role: ta}\n"
        "  - id: b\n    applies_to: org_role\n    then: {course_role: ta}\n"
        "  - id: a\n    applies_to: observer\n    then: {course_role: observer}\n",
        [
            (5, "rules[a].when.org_type", "enrollment rules cannot test org_type"),
            (5, "rules[a].when.role", "'teachr' is not a OneRoster 1.2 enrollment role"),
            (9, "rules[b].then.course_role", "org_role rules give"),
            (10, "rules[a].id", "rule id 'a' is used twice"),
        ],
        id="rules-that-do-not-fit-their-kind",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrolment\n    then: {course_role: ta}\n"
        "  - id: b\n    applies_to: org_role\n    when: {role_type: main}\n    then: {skip: x}\n"
        "  - id: c\n    applies_to: enrollment\n    whne: {}\n    then: {course_role: ta}\n",
        [
            (4, "rules[a].applies_to", "Input should be"),
            (8, "rules[b].when.role_type", "'main' is not a roleType"),
            (12, "rules[c].whne", "Extra inputs are not permitted"),
        ],
        id="rules-that-do-not-validate",
    ),
    pytest.param(
        HEAD + "  - id: a\n    applies_to: org_role\n    when: {role_type: main}\n    then: {skip: x}\n"
        "  - id: b\n    applies_to: enrollment\n    when: {org_type: school}\n    then: {course_role: ta}\n",
        [
            (5, "rules[a].when.role_type", "'main' is not a roleType"),
            (9, "rules[b].when.org_type", "enrollment rules cannot test org_type"),
        ],
        id="both-sorts-together",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), MANY)
def test_every_problem_is_reported_at_its_own_line(tmp_path: Path, text: str, expected: list) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleFileError) as info:
        load_rule_file(path)
    err = info.value
    got = [(line, field, reason) for line, field, reason in err.problems]
    assert [(line, field) for line, field, _ in got] == [(line, field) for line, field, _ in expected]
    for (_, _, reason), (_, _, part) in zip(got, expected, strict=True):
        assert part in reason
    assert (err.line, err.field) == expected[0][:2]
    assert len(str(err).splitlines()) == len(expected)


NUMERIC_VERSION = (
    "version: 2026.1\nrules:\n  - id: a.b_c-1\n    applies_to: enrollment\n"
    "    effective: {from: 2026-09-01, until: 2026-09-01}\n    then: {course_role: ta}\n"
)

#: valid files
VALID = [
    pytest.param(
        HEAD + "  - id: a\n    applies_to: enrollment\n    when: {role: [aide, 'ext:specialist']}\n"
        "    then:\n      - course_role: Reading Specialist\n        base_role: ta\n"
        "  - id: b\n    applies_to: org_role\n"
        "    when: {role: 'ext:curriculumDesigner', user_role: 'ext:coach', org_type: 'ext:region'}\n"
        "    then: {skip: x}\n",
        id="ext-roles-and-custom-course-role-with-base-role",
    ),
    pytest.param(NUMERIC_VERSION, id="numeric-version-one-day-window"),
    pytest.param(
        "version: '1'\nunmapped:\n  org_role: {policy: default, account_role: {role: AccountAdmin}}\n"
        "  enrollment: {policy: default, course_role: Visitor, base_role: observer}\n"
        "  observer: {policy: report}\n"
        "rules:\n  - id: a\n    applies_to: observer\n    continue: true\n    priority: -5\n"
        "    when: {role: student, has_agents: true, metadata: {ext.family: '*'}}\n"
        "    then:\n      - course_role: observer\n        lti_roles:\n"
        "          - http://purl.imsglobal.org/vocab/lis/v2/membership#Mentor\n"
        "      - skip: and nothing else\n",
        id="defaults-continue-lists",
    ),
]  # fmt: skip


@pytest.mark.parametrize("text", VALID)
def test_valid_rule_file(tmp_path: Path, text: str) -> None:
    doc, read = load_rule_file(write(tmp_path, text))
    assert read == text
    assert doc.rules
    # the same text validates inline, as the engine's tests and `roles explain` build rule sets
    assert RuleFile.model_validate(yaml.safe_load(text)) == doc


def test_version_is_kept_as_text(tmp_path: Path) -> None:
    doc, _ = load_rule_file(write(tmp_path, NUMERIC_VERSION))
    assert doc.version == "2026.1"


def test_inline_validation_rejects_a_rule_that_does_not_fit_its_kind() -> None:
    text = HEAD + "  - id: a\n    applies_to: enrollment\n    when: {org_type: school}\n    then: {skip: x}\n"
    with pytest.raises(ValidationError, match="enrollment rules cannot test org_type"):
        RuleFile.model_validate(yaml.safe_load(text))


def test_shipped_rules_load() -> None:
    doc, text = load_rule_file(DEFAULT_RULES)
    assert text == DEFAULT_RULES.read_text()
    assert doc.version
    kinds = {rule.applies_to for rule in doc.rules}
    assert kinds == {"org_role", "enrollment", "observer"}
    ids = [rule.id for rule in doc.rules]
    assert len(ids) == len(set(ids))
    assert all(rule.description or rule.id for rule in doc.rules)
    assert {name: getattr(doc.unmapped, name).policy for name in ("org_role", "enrollment", "observer")} == {
        "org_role": "report",
        "enrollment": "report",
        "observer": "report",
    }
    rules = RuleSet.load(DEFAULT_RULES)
    assert rules.version.startswith(doc.version + "+")
