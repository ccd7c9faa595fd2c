"""The CSV binding against the public bundles and hand-made broken ones."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from connectors.oneroster.csv import Row, RowError, open_bundle, write_bundle
from streams.errors import ConfigError

MANIFEST = "propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\n"
ORGS = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
USERS = (
    "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,"
    "email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,preferredGivenName,preferredMiddleName,"
    "preferredFamilyName,primaryOrgSourcedId,pronouns\n"
)
ROLES = (
    "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,"
    "userProfileSourcedId\n"
)


def _user(sid: str, given: str = "Ana", org: str = "o1") -> str:
    return f"{sid},active,2026-08-01T00:00:00Z,true,{sid},,{given},Doe,,,,,,,09,secret,,,,,{org},\n"


def _bundle(tmp_path: Path, files: dict[str, str | bytes], manifest: str = MANIFEST) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name, content in {"manifest.csv": manifest, **files}.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def _read(path: Path) -> tuple[list[Row], list[RowError]]:
    items = list(open_bundle(path).rows())
    return [i for i in items if isinstance(i, Row)], [i for i in items if isinstance(i, RowError)]


def test_minimal_public_bundle_loads_without_a_problem(fixtures_dir: Path) -> None:
    rows, errors = _read(fixtures_dir / "oneroster" / "csv_v1p2_catalyst_minimal")
    assert errors == []
    assert sorted(r.entity for r in rows) == sorted(
        ["orgs", "academicSessions", "courses", "classes", "users", "demographics", "enrollments"]
    )
    [user] = [r.obj for r in rows if r.entity == "users"]
    assert user["enabledUser"] is True and "password" not in user
    assert user["roles"] == [
        {"roleType": "primary", "role": "student", "org": {"href": None, "sourcedId": "ORG_1", "type": "org"}}
    ]
    assert user["userProfiles"][0]["profileId"] == "USER_PROFILE_1"


def test_quirky_public_bundle_reports_every_problem_and_loads_the_rest(fixtures_dir: Path) -> None:
    bundle = open_bundle(fixtures_dir / "oneroster" / "csv_v1p2_catalyst_quirky")
    items = list(bundle.rows())
    errors = [(e.file, e.line, e.field) for e in items if isinstance(e, RowError)]
    assert ("roles.csv", 1, None) in errors  # dataLastModified, a typo of dateLastModified
    assert ("users.csv", 1, None) in errors  # prefferedGivenName ...
    assert [e for e in errors if e[0] == "users.csv" and e[2] == "dateLastModified"] == [
        ("users.csv", line, "dateLastModified")
        for line in (2, 4, 5, 6, 7)  # 1/05/2023, 15/06/2023
    ]
    # userprofiles.csv holds roles: every row lacks profileType and vendorId.
    assert [e for e in errors if e[0] == "userProfiles.csv" and e[1] != 1] == [
        ("userProfiles.csv", line, "profileType") for line in range(2, 9)
    ]
    # Enrollments of the users whose rows were rejected dangle.
    assert sorted(e[1] for e in errors if e[0] == "enrollments.csv") == [2, 3, 4, 5, 6, 7]
    header = next(e for e in items if isinstance(e, RowError) and e.file == "users.csv" and e.line == 1)
    assert "did you mean 'preferredGivenName'" in header.reason
    good = [i for i in items if isinstance(i, Row)]
    assert {r.obj["sourcedId"] for r in good if r.entity == "users"} == {"usr-222-66778899"}
    assert len([r for r in good if r.entity == "academicSessions"]) == 5
    assert any("userprofiles.csv" in w for w in bundle.warnings)
    mary = next(r.obj for r in good if r.entity == "users")
    assert mary["userIds"] == [{"type": "LDAP", "identifier": "12"}]
    assert [r["role"] for r in mary["roles"]] == ["student"]


def test_v1p1_bundles_load_roles_from_the_user_row(fixtures_dir: Path) -> None:
    rows, errors = _read(fixtures_dir / "oneroster" / "csv_v1p1_catalyst_full")
    assert errors == []
    users = [r.obj for r in rows if r.entity == "users"]
    assert len(users) == 6 and all(u["roles"][0]["roleType"] == "primary" for u in users)
    rows, errors = _read(fixtures_dir / "oneroster" / "csv_v1p1_oat_base")
    # Real problems of that sample: classes without a course, a demographics file keyed by
    # userSourcedId (a 1.0 spelling), enrollments of those rejected classes.
    assert {(e.file, e.field) for e in errors} >= {
        ("classes.csv", "courseSourcedId"),
        ("enrollments.csv", "classSourcedId"),
    }
    assert [r.entity for r in rows].count("users") == 2


def test_bom_is_fine_and_latin1_rejects_only_its_row(tmp_path: Path) -> None:
    users = (
        USERS.encode()
        + _user("u1").encode()
        + _user("u2", "Jos\xe9").encode("latin-1")
        + _user("u3").encode()
    )
    path = _bundle(
        tmp_path,
        {"orgs.csv": b"\xef\xbb\xbf" + (ORGS + "o1,active,,School,school,,\n").encode(), "users.csv": users},
    )
    rows, errors = _read(path)
    assert [r.obj["sourcedId"] for r in rows if r.entity == "users"] == ["u1", "u3"]
    [bad] = errors
    assert (bad.file, bad.line, bad.field) == ("users.csv", 3, "givenName")
    assert "0xE9" in bad.reason and b"Jos\xe9" in bad.raw and bad.sourced_id == "u2"


def test_structure_problems(tmp_path: Path) -> None:
    orgs = ORGS + "o1,active,,School,school,,\no2,active,,Other,school,,,extra\no1,active,,Dup,school,,\n"
    users = USERS + _user("u1") + 'u2,active,2026-08-01,true,u2,,"Cut'
    path = _bundle(tmp_path, {"orgs.csv": orgs, "users.csv": users})
    rows, errors = _read(path)
    found = {(e.file, e.line): e.reason for e in errors}
    assert "3 cells" not in found[("orgs.csv", 3)] and "the header 7" in found[("orgs.csv", 3)]
    assert "appears twice" in found[("orgs.csv", 4)]
    assert "unterminated quote" in found[("users.csv", 3)]
    assert [r.obj["sourcedId"] for r in rows] == ["o1", "u1"]


def test_values_references_and_missing_columns(tmp_path: Path) -> None:
    users = USERS + _user("u1") + _user("u2", org="nowhere")
    roles = (
        ROLES
        + "r1,active,,u1,primary,student,,,o1,\n"
        + "r2,active,,u1,main,teacher,,,o1,\n"
        + "r3,active,,ghost,primary,student,,,o1,\n"
    )
    enrollments = "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId\n"
    enrollments += "e1,active,,c1,o1,u1\n"
    sessions = (
        "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n"
        "t1,active,,Fall,term,2026-08-17,2026-13-01,,2027\n"
    )
    path = _bundle(
        tmp_path,
        {
            "orgs.csv": ORGS + "o1,active,,School,school,,\n",
            "users.csv": users,
            "roles.csv": roles,
            "enrollments.csv": enrollments,
            "academicSessions.csv": sessions,
        },
    )
    rows, errors = _read(path)
    found = {(e.file, e.line): (e.field, e.reason) for e in errors}
    assert found[("users.csv", 3)] == ("primaryOrgSourcedId", "'nowhere' is not in orgs.csv")
    assert found[("roles.csv", 3)][0] == "roleType" and "'main'" in found[("roles.csv", 3)][1]
    assert found[("roles.csv", 4)] == ("userSourcedId", "'ghost' is not in users.csv")
    assert found[("enrollments.csv", 2)][1].startswith("required column(s) role missing")
    assert found[("academicSessions.csv", 2)] == ("endDate", "'2026-13-01' is not a date YYYY-MM-DD")
    [u1] = [r.obj for r in rows if r.entity == "users"]
    assert [r["role"] for r in u1["roles"]] == ["student"]


def test_delta_bundles_may_point_outside(tmp_path: Path) -> None:
    manifest = MANIFEST + "file.enrollments,delta\n"
    enrollments = (
        "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role\n"
        "e1,active,,c9,o9,u9,student\n"
    )
    rows, errors = _read(_bundle(tmp_path, {"enrollments.csv": enrollments}, manifest))
    assert errors == [] and rows[0].obj["user"]["sourcedId"] == "u9"


def test_zip_round_trip_and_children(tmp_path: Path) -> None:
    ref = lambda sid, t: {"href": "/x", "sourcedId": sid, "type": t}  # noqa: E731
    collections = {
        "orgs": [
            {
                "sourcedId": "d",
                "status": "active",
                "dateLastModified": "2026-08-01T00:00:00.000Z",
                "name": "District",
                "type": "district",
                "children": [ref("s", "org")],
            },
            {
                "sourcedId": "s",
                "status": "active",
                "dateLastModified": "2026-08-01T00:00:00.000Z",
                "name": "School, North",
                "type": "school",
                "parent": ref("d", "org"),
                "children": [],
                "metadata": {"ext.region": "N"},
            },
        ],
        "users": [
            {
                "sourcedId": "u",
                "status": "active",
                "dateLastModified": "2026-08-01T00:00:00.000Z",
                "enabledUser": True,
                "username": "u",
                "givenName": "Zoë",
                "familyName": "O'Neil",
                "userIds": [{"type": "SIS", "identifier": "7"}],
                "agents": [],
                "grades": ["09", "10"],
                "roles": [
                    {
                        "roleType": "primary",
                        "role": "student",
                        "org": ref("s", "org"),
                        "beginDate": "2026-08-17",
                    }
                ],
                "userProfiles": [],
            }
        ],
    }
    path = tmp_path / "b.zip"
    write_bundle(collections, path, zip=True)
    assert zipfile.is_zipfile(path)
    rows, errors = _read(path)
    assert errors == []

    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "href"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    assert [strip(r.obj) for r in rows] == [strip(o) for o in collections["orgs"] + collections["users"]]


def test_writer_refuses_a_comma_inside_a_list_value(tmp_path: Path) -> None:
    course = {"sourcedId": "c", "title": "T", "org": {"sourcedId": "o"}, "subjects": ["Arts, Music"]}
    with pytest.raises(ValueError, match="comma"):
        write_bundle({"courses": [course]}, tmp_path / "x")


def test_not_a_bundle_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="no OneRoster CSV file"):
        open_bundle(tmp_path)
    with pytest.raises(ConfigError, match="not a folder or a zip"):
        open_bundle(tmp_path / "notes.txt")
