"""The CSV reader against the public bundles in the shared fixtures (read in place).

Every problem asserted here was found by reading the files by hand; see the comments.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from connectors.oneroster.csv import Row, open_bundle
from tests.unit.connectors.oneroster.csv.support import problems, read


@pytest.fixture(scope="module")
def oneroster(fixtures_dir: Path) -> Path:
    return fixtures_dir / "oneroster"


def _ref(sourced_id: str, kind: str) -> dict[str, object]:
    return {"href": None, "sourcedId": sourced_id, "type": kind}


def _counts(rows: list[Row]) -> Counter[str]:
    return Counter(row.entity for row in rows)


# --- 1.2 minimal: complete and consistent --------------------------------------------------------
def test_minimal_bundle_loads_every_row(oneroster: Path) -> None:
    rows, errors = read(oneroster / "csv_v1p2_catalyst_minimal")
    assert errors == []
    # One data row in each of the 9 data files; roles.csv and userProfiles.csv fold into the user.
    assert _counts(rows) == {
        "orgs": 1, "academicSessions": 1, "courses": 1, "classes": 1, "users": 1,
        "demographics": 1, "enrollments": 1,
    }  # fmt: skip
    assert [row.entity for row in rows] == [
        "orgs", "academicSessions", "courses", "classes", "users", "demographics", "enrollments",
    ]  # fmt: skip
    user = next(row for row in rows if row.entity == "users")
    assert (user.file, user.line) == ("users.csv", 2)
    assert user.raw.startswith(b"USER_0,active,") and user.raw.endswith(b"\r\n")
    assert user.obj == {
        "sourcedId": "USER_0",
        "status": "active",
        "dateLastModified": "2023-10-02T00:00:00.000Z",
        "enabledUser": True,  # "TRUE" in the file
        "username": "brucewayne",
        "userIds": [],
        "givenName": "Bruce",
        "familyName": "Wayne",
        "identifier": "bruce.wayne",
        "agents": [],
        "grades": [],
        # The password column (Batman.Ru1ez) is never read.
        "roles": [{"roleType": "primary", "role": "student", "org": _ref("ORG_1", "org")}],
        "userProfiles": [
            {
                "profileId": "USER_PROFILE_1",
                "profileType": "SYSTEM",
                "vendorId": "WEI18954",
                "credentials": [{"type": "login", "username": "brucewayne"}],
            }
        ],
    }
    klass = next(row.obj for row in rows if row.entity == "classes")
    assert klass["course"] == _ref("COURSE_001", "course")
    assert klass["terms"] == [_ref("ACAD_SESS_1", "academicSession")]
    assert klass["subjects"] == [] and klass["periods"] == []


def test_minimal_bundle_is_consistent_even_when_checked_as_bulk(oneroster: Path) -> None:
    bundle = open_bundle(oneroster / "csv_v1p2_catalyst_minimal")
    assert bundle.version == "1.2"
    assert bundle.mode["users"] == "delta" and bundle.mode["lineItems"] == "absent"
    # Its manifest says delta, so references are not checked; every one resolves anyway.
    bundle.mode = {name: "bulk" if mode == "delta" else mode for name, mode in bundle.mode.items()}
    assert [item for item in bundle.rows() if not isinstance(item, Row)] == []


# --- 1.2 quirky: every problem, found by hand ----------------------------------------------------
_PROFILE_COLUMNS = ("profileType", "vendorId", "credentialType", "username")

QUIRKY_PROBLEMS = [
    # orgs.csv: the only org's parent, org-sch-222-3456, is in no file of the bundle.
    ("orgs.csv", 2, "parentSourcedId", "reference"),
    # academicSessions.csv: two terms name a school year as-syr-222-2023 that is not there;
    # line 4 says "inactive", which 1.2 no longer has. (Line 4 and 5 give dateLastModified as a
    # bare date, 2023-05-01: read as midnight UTC.)
    ("academicSessions.csv", 3, "parentSourcedId", "reference"),
    ("academicSessions.csv", 4, "status", "enum"),
    ("academicSessions.csv", 6, "parentSourcedId", "reference"),
    # classes.csv: courses.csv is absent, so both courses are unknown; "Scheduled" is capitalised.
    ("classes.csv", 2, "courseSourcedId", "reference"),
    ("classes.csv", 2, "classType", "enum"),
    ("classes.csv", 3, "courseSourcedId", "reference"),
    # roles.csv: dataLastModified (a typo; its values are ignored). Two empty trailing header cells
    # are only a warning.
    ("roles.csv", 1, "dataLastModified", "header"),
    # userprofiles.csv (lower-case name) holds a copy of roles.csv: six columns userProfiles.csv
    # does not have, and none of its four required columns, so each of its 7 rows is rejected.
    *[
        ("userprofiles.csv", 1, column, "header")
        for column in ("dataLastModified", "roleType", "role", "beginDate", "endDate", "orgSourcedId")
    ],
    *[
        ("userprofiles.csv", line, column, "missing-column")
        for line in range(2, 9)
        for column in _PROFILE_COLUMNS
    ],
    # users.csv: "preffered" names; dateLastModified 1/05/2023 (4 rows) and 15/06/2023.
    ("users.csv", 1, "prefferedGivenName", "header"),
    ("users.csv", 1, "prefferedMiddleName", "header"),
    ("users.csv", 1, "prefferedFamilyName", "header"),
    *[("users.csv", line, "dateLastModified", "value") for line in (2, 4, 5, 6, 7)],
]


def test_quirky_bundle_reports_every_problem(oneroster: Path) -> None:
    _, errors = read(oneroster / "csv_v1p2_catalyst_quirky")
    assert problems(errors) == QUIRKY_PROBLEMS
    by_line = {(e.file, e.line): e for e in errors if e.line != 1}
    assert by_line["users.csv", 2].reason == (
        "dateLastModified '1/05/2023' is not an ISO 8601 date-time such as 2024-05-01T18:25:43.511Z"
    )
    assert by_line["users.csv", 2].sourced_id == "usr-222-123456"
    assert by_line["users.csv", 2].raw.startswith(b"usr-222-123456,active,1/05/2023,TRUE,john.doe,")
    assert by_line["classes.csv", 2].reason == (
        "courseSourcedId 'crs-222-2023-456-12345' is not the sourcedId of any row of courses.csv "
        "(the bundle has no courses.csv); classType 'Scheduled' is not one of homeroom, scheduled "
        "(or an ext: value); values are case-sensitive: did you mean 'scheduled'?"
    )
    assert by_line["orgs.csv", 2].reason == (
        "parentSourcedId 'org-sch-222-3456' is not the sourcedId of any row of orgs.csv"
    )
    assert by_line["academicSessions.csv", 4].reason == "status 'inactive' is not one of active, tobedeleted"
    assert by_line["userprofiles.csv", 2].entity == "userProfiles"
    header = next(e for e in errors if e.file == "users.csv" and e.line == 1)
    assert header.reason == (
        "unknown column 'prefferedGivenName' (did you mean 'preferredGivenName'?); its values are ignored"
    )


def test_quirky_bundle_loads_its_good_rows(oneroster: Path) -> None:
    rows, _ = read(oneroster / "csv_v1p2_catalyst_quirky")
    assert [(row.entity, row.line) for row in rows] == [
        ("academicSessions", 2),
        ("academicSessions", 5),
        ("users", 3),
        *[("enrollments", line) for line in range(2, 8)],
    ]
    # Enrollments name users and classes whose rows were rejected: those rows exist in the bundle,
    # so the enrollments are good (each problem is reported once, where it is).
    mary = next(row.obj for row in rows if row.entity == "users")
    assert mary == {
        "sourcedId": "usr-222-66778899",  # status and dateLastModified empty: omitted
        "enabledUser": True,
        "username": "mary.jones",
        "userIds": [{"type": "LDAP", "identifier": "12"}],
        "givenName": "Mary",
        "familyName": "Jones",
        "middleName": "Jane",
        "identifier": "mary.jones",
        "email": "mary.jones@myschool.com",
        "sms": "6031234567",
        "phone": "6031234567",
        "agents": [_ref("usr-222-123456", "user")],
        "grades": ["12"],
        "primaryOrg": _ref("org-sch-222-456", "org"),
        "pronouns": "she/her/hers",
        "roles": [
            {
                "roleType": "primary",
                "role": "student",
                "org": _ref("org-sch-222-456", "org"),
                "beginDate": "2024-03-06",
                "endDate": "2025-09-23",
            }
        ],
        "userProfiles": [],
    }
    session = next(row.obj for row in rows if row.line == 5)
    assert session["dateLastModified"] == "2023-05-01T00:00:00.000Z"


def test_quirky_bundle_warnings_and_summary(oneroster: Path) -> None:
    bundle = open_bundle(oneroster / "csv_v1p2_catalyst_quirky")
    assert bundle.mode["userProfiles"] == "bulk"  # present, though the manifest leaves it empty
    list(bundle.rows())
    summary = bundle.summary()
    assert summary["files"]["users.csv"] == {"rows": 1, "errors": 8}
    assert summary["files"]["userprofiles.csv"] == {"rows": 0, "errors": 13}
    assert summary["files"]["roles.csv"] == {"rows": 7, "errors": 1}
    warnings = summary["warnings"]
    assert "manifest.csv line 22: file.userProfiles has no value (bulk, delta or absent expected)" in warnings
    assert (
        "userprofiles.csv: read as userProfiles.csv (the binding's file names are case-sensitive)" in warnings
    )
    assert "roles.csv: 2 empty column name(s) at the end of the header; ignored" in warnings


# --- 1.1 -------------------------------------------------------------------------------------------
def test_v1p1_catalyst_bundle(oneroster: Path) -> None:
    rows, errors = read(oneroster / "csv_v1p1_catalyst_full")
    # The same data as the quirky 1.2 set in 1.1 shape, with the same real data errors: a parent
    # org and a school year that are not in the bundle, classes of courses it does not have, a
    # capitalised classType. "inactive" is a 1.1 status, and 1.1 users.csv has no date typos.
    assert problems(errors) == [
        ("orgs.csv", 2, "parentSourcedId", "reference"),
        ("academicSessions.csv", 3, "parentSourcedId", "reference"),
        ("academicSessions.csv", 6, "parentSourcedId", "reference"),
        ("classes.csv", 2, "courseSourcedId", "reference"),
        ("classes.csv", 2, "classType", "enum"),
        ("classes.csv", 3, "courseSourcedId", "reference"),
    ]
    assert _counts(rows) == {"academicSessions": 3, "users": 6, "enrollments": 6}
    users = {row.obj["sourcedId"]: row.obj for row in rows if row.entity == "users"}
    school = _ref("org-sch-222-456", "org")
    # 1.1 role + orgSourcedIds become roles[]: the role at the first org is primary.
    assert users["usr-222-123456"]["roles"] == [{"roleType": "primary", "role": "teacher", "org": school}]
    assert users["usr-222-1234561"]["roles"] == [{"roleType": "primary", "role": "parent", "org": school}]
    assert users["usr-222-1234561"]["userIds"] == [
        {"type": "LDAP", "identifier": "12"},
        {"type": "LTI", "identifier": "15"},
        {"type": "Fed", "identifier": "23"},
    ]
    assert all(user["userProfiles"] == [] and "password" not in user for user in users.values())
    inactive = next(row.obj for row in rows if row.obj["sourcedId"] == "as-grp-222-2345")
    assert inactive["status"] == "inactive"  # kept as the file says


def test_v1p1_oat_bundle(oneroster: Path) -> None:
    bundle = open_bundle(oneroster / "csv_v1p1_oat_base")
    items = list(bundle.rows())
    rows = [item for item in items if isinstance(item, Row)]
    errors = [item for item in items if not isinstance(item, Row)]
    # Real data errors: classes.csv leaves the required courseSourcedId empty and names term "1",
    # but academicSessions.csv has no rows (its header even lacks schoolYear, a warning only).
    # users.csv spells userIds "userId" (a 1.0 column): its values ("abc") are ignored.
    assert problems(errors) == [
        *[
            ("classes.csv", line, field, kind)
            for line in (2, 3, 4)
            for field, kind in (("courseSourcedId", "required"), ("termSourcedIds", "reference"))
        ],
        ("users.csv", 1, "userId", "header"),
    ]
    assert _counts(rows) == {"orgs": 2, "users": 2, "enrollments": 3}
    orgs = {row.obj["sourcedId"]: row.obj for row in rows if row.entity == "orgs"}
    assert orgs["12345"]["dateLastModified"] == "2017-05-06T08:01:05.000Z"  # "2017-05-06 08:01:05"
    assert orgs["12345"]["metadata"] == {
        "classification": "Classification 1",
        "gender": "mixed",
        "boarding": "FALSE",
    }
    assert orgs["54321"]["children"] == [_ref("12345", "org")]
    assert "status" not in orgs["54321"]
    warnings = bundle.summary()["warnings"]
    assert "classes.csv: column 'grade' read as 'grades'" in warnings
    assert "classes.csv: extension column 'ext_imagineLearning_databaseId' ignored" in warnings
    assert "demographics.csv: column 'userSourcedId' read as 'sourcedId'" in warnings
    assert "academicSessions.csv: required column(s) schoolYear missing from the header" in warnings
