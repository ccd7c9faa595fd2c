"""The CSV reader on hand-made bundles: structure, encoding, values, references, modes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from connectors.oneroster.csv import InvalidBundle, Row, RowError, open_bundle
from streams.errors import ConfigError
from tests.unit.connectors.oneroster.csv.conftest import MakeBundle
from tests.unit.connectors.oneroster.csv.support import BASE, HEADERS, MANIFEST_V1P2, problems, read

_NOT_IN = "is not the sourcedId of any row of"
USER = "{sid},active,,true,{sid},,{given},Doe,,,,,,,09,,,,,,o1,\n"
ORG = "{sid},active,,{name},school,,\n"


def _users(*rows: str | bytes) -> bytes:
    return (HEADERS["users"] + "\n").encode() + b"".join(
        r.encode() if isinstance(r, str) else r for r in rows
    )


def _user(sid: str, given: str = "Ana") -> str:
    return USER.format(sid=sid, given=given)


def test_the_base_bundle_is_clean(make_bundle: MakeBundle) -> None:
    rows, errors = read(make_bundle())
    assert errors == []
    assert [(r.entity, r.obj["sourcedId"]) for r in rows] == [
        ("orgs", "o1"), ("academicSessions", "t1"), ("courses", "c1"), ("classes", "k1"),
        ("users", "u1"), ("users", "u2"), ("enrollments", "e1"), ("enrollments", "e2"),
    ]  # fmt: skip
    ana = rows[4].obj
    assert ana["roles"] == [
        {"roleType": "primary", "role": "student", "org": {"href": None, "sourcedId": "o1", "type": "org"}}
    ]
    assert "password" not in ana and b"secret" in rows[4].raw


# --- encoding ------------------------------------------------------------------------------------
def test_a_utf8_bom_is_dropped(make_bundle: MakeBundle) -> None:
    rows, errors = read(make_bundle({"orgs.csv": b"\xef\xbb\xbf" + BASE["orgs.csv"].encode()}))
    assert errors == []
    assert rows[0].obj["sourcedId"] == "o1"


def test_a_latin1_row_is_rejected_alone(make_bundle: MakeBundle) -> None:
    users = _users(_user("u1"), _user("u2", "Jos\xe9").encode("latin-1"), _user("u3", "Zoë"))
    rows, errors = read(make_bundle({"users.csv": users}))
    [bad] = errors
    assert (bad.file, bad.line, bad.field, bad.kind) == ("users.csv", 3, "givenName", "encoding")
    assert bad.reason.startswith("not UTF-8: byte 0xE9 in field givenName")
    assert bad.raw == _user("u2", "Jos\xe9").encode("latin-1")  # the original bytes
    assert (bad.entity, bad.sourced_id) == ("users", "u2")
    names = {r.obj["sourcedId"]: r.obj["givenName"] for r in rows if r.entity == "users"}
    assert names == {"u1": "Ana", "u3": "Zoë"}


# --- structure -----------------------------------------------------------------------------------
def test_a_cut_off_last_row(make_bundle: MakeBundle) -> None:
    rows, errors = read(make_bundle({"users.csv": _users(_user("u1"), _user("u2"), "u3,active,,true,ca")}))
    assert problems(errors) == [("users.csv", 4, None, "truncated")]
    assert errors[0].reason == "the file ends in the middle of this row (5 of 22 cells): it looks cut off"
    assert errors[0].sourced_id == "u3"
    assert len([r for r in rows if r.entity == "users"]) == 2


def test_a_last_row_without_line_break_is_fine(make_bundle: MakeBundle) -> None:
    rows, errors = read(make_bundle({"users.csv": _users(_user("u1"), _user("u2").rstrip("\n"))}))
    assert errors == []
    assert [r.line for r in rows if r.entity == "users"] == [2, 3]


def test_a_quote_that_never_closes_at_the_end(make_bundle: MakeBundle) -> None:
    _, errors = read(make_bundle({"users.csv": _users(_user("u1"), _user("u2"), 'u3,active,,true,"ca')}))
    assert problems(errors) == [("users.csv", 4, None, "truncated")]
    assert errors[0].reason == "the file ends inside this row: a quote opened in it never closes"


def test_a_stray_quote_costs_one_row(make_bundle: MakeBundle) -> None:
    users = _users(
        _user("u1"),
        'u2,active,,true,ben,,"Ben,Ng,,,,,,,09,,,,,,o1,\n',  # the quote opens and never closes
        _user("u3"),
        'u4,active,,true,dan,,Dan,Ro,,,,,,,"09,10",,,,,,o1,\n',  # a good quoted cell
        _user("u5"),
    )
    rows, errors = read(make_bundle({"users.csv": users}))
    assert [(e.line, e.kind) for e in errors] == [(3, "structure")]
    assert errors[0].reason == (
        "a quoted cell is followed by other characters (a quote inside a cell must be doubled)"
    )
    assert errors[0].raw == b'u2,active,,true,ben,,"Ben,Ng,,,,,,,09,,,,,,o1,\n'  # its first line only
    assert errors[0].sourced_id == "u2"  # read from the cells before the quote: u2 exists
    users_read = {r.obj["sourcedId"]: r for r in rows if r.entity == "users"}
    assert sorted(users_read) == ["u1", "u3", "u4", "u5"]
    assert users_read["u4"].obj["grades"] == ["09", "10"] and users_read["u4"].line == 5


def test_a_quoted_cell_may_span_lines(make_bundle: MakeBundle) -> None:
    orgs = HEADERS["orgs"] + '\no1,active,,"North\nHigh",school,,\no2,active,,South,school,,o1\n'
    rows, errors = read(make_bundle({"orgs.csv": orgs}))
    assert errors == []
    north, south = (r for r in rows if r.entity == "orgs")
    assert (north.line, north.obj["name"], north.raw) == (
        2,
        "North\nHigh",
        b'o1,active,,"North\nHigh",school,,\n',
    )
    assert south.line == 4  # physical lines
    assert north.obj["children"] == [{"href": None, "sourcedId": "o2", "type": "org"}]


def test_too_many_and_too_few_cells(make_bundle: MakeBundle) -> None:
    orgs = (
        HEADERS["orgs"]
        + "\n"
        + ORG.format(sid="o1", name="North")
        + "o2,active,,South,school,,,extra\n"  # 8 cells, the header has 7
        + "o3,active,,East,school,,,,\n"  # empty extra cells are fine
        + "o4,active,,West,school\n"  # 5 cells
    )
    rows, errors = read(make_bundle({"orgs.csv": orgs}))
    assert [(e.line, e.reason) for e in errors] == [
        (3, "the row has 8 cells but the header has 7 columns"),
        (5, "the row has 5 cells but the header has 7 columns"),
    ]
    assert [r.obj["sourcedId"] for r in rows if r.entity == "orgs"] == ["o1", "o3"]


def test_blank_rows_are_skipped(make_bundle: MakeBundle) -> None:
    bundle = open_bundle(make_bundle({"users.csv": _users(_user("u1"), "\r\n", ",,,\n", _user("u2"))}))
    rows = [item for item in bundle.rows() if isinstance(item, Row) and item.entity == "users"]
    assert [r.line for r in rows] == [2, 5]
    assert "users.csv: 2 blank row(s) skipped" in bundle.summary()["warnings"]


def test_an_empty_file_and_a_file_without_header(make_bundle: MakeBundle) -> None:
    enrollments = "e1,active,,k1,o1,u1,student,false,,\ne2,active,,k1,o1,u2,teacher,true,,\n"
    _, errors = read(make_bundle({"demographics.csv": "", "enrollments.csv": enrollments}))
    assert [(e.file, e.line, e.kind, e.sourced_id) for e in errors] == [
        ("demographics.csv", None, "file", None),
        ("enrollments.csv", 1, "missing-header", "e1"),
        ("enrollments.csv", 2, "missing-header", "e2"),
    ]
    assert errors[1].reason.startswith("the file has no header line (expected sourcedId,status,")


# --- header --------------------------------------------------------------------------------------
def test_header_problems(make_bundle: MakeBundle) -> None:
    orgs = "sourcedId,status,dateLastModifed,name,type,identifier,name,,parentSourcedId,metadata.region\n"
    orgs += "o1,active,2026-01-01,North,school,NH,Dup,x,,N\n"
    bundle = open_bundle(make_bundle({"orgs.csv": orgs}))
    items = list(bundle.rows())
    errors = [i for i in items if isinstance(i, RowError)]
    assert [(e.line, e.field, e.reason) for e in errors] == [
        (1, "dateLastModifed",
         "unknown column 'dateLastModifed' (did you mean 'dateLastModified'?); its values are ignored"),
        (1, "name", "column 'name' appears twice; the second one (column 7) is ignored"),
        (1, None, "column 8 has no name; its values are ignored"),
    ]  # fmt: skip
    org = next(i.obj for i in items if isinstance(i, Row) and i.entity == "orgs")
    assert org["name"] == "North" and org["metadata"] == {"region": "N"}
    assert "dateLastModified" not in org
    assert "orgs.csv: unknown column 'dateLastModifed' (did you mean 'dateLastModified'?)" in bundle.warnings


def test_a_missing_required_column_rejects_every_row(make_bundle: MakeBundle) -> None:
    enrollments = "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId\n"
    enrollments += "e1,active,,k1,o1,u1\ne2,active,,k1,o1,u2\n"
    bundle = open_bundle(make_bundle({"enrollments.csv": enrollments}))
    errors = [i for i in bundle.rows() if isinstance(i, RowError)]
    assert problems(errors) == [
        ("enrollments.csv", 2, "role", "missing-column"),
        ("enrollments.csv", 3, "role", "missing-column"),
    ]
    assert errors[0].reason == "required column 'role' is missing from the header"
    assert [e.sourced_id for e in errors] == ["e1", "e2"]  # rejected, not deleted
    assert "enrollments.csv: required column(s) role missing from the header" in bundle.warnings


# --- values --------------------------------------------------------------------------------------
def test_values_that_do_not_parse(make_bundle: MakeBundle) -> None:
    sessions = HEADERS["academicSessions"] + (
        "\nt1,active,2026-08-01T10:00:00+02:00,Fall,term,2026-08-17,2027-01-15,,2027\n"
        "t2,active,yesterday,Spring,term,2027-01-18,2026-13-01,,27\n"
    )
    users = _users(_user("u1"), "u2,active,,yes,ben,{SIS},Ben,,,,,,,,09,,,,,,o1,\n")
    rows, errors = read(make_bundle({"academicSessions.csv": sessions, "users.csv": users}))
    assert [(e.file, e.line, [(p.field, p.reason) for p in e.problems]) for e in errors] == [
        ("academicSessions.csv", 3, [
            ("dateLastModified", "dateLastModified 'yesterday' is not an ISO 8601 date-time such as "
             "2024-05-01T18:25:43.511Z"),
            ("endDate", "endDate '2026-13-01' is not a date YYYY-MM-DD"),
            ("schoolYear", "schoolYear '27' is not a four-digit year such as 2024"),
        ]),
        ("users.csv", 3, [
            ("enabledUser", "enabledUser 'yes' is not true or false"),
            ("userIds", "userIds '{SIS}' is not a list of {type:identifier} pairs such as {LDAP:12}"),
            ("familyName", "familyName is required but empty"),
        ]),
    ]  # fmt: skip
    fall = next(r.obj for r in rows if r.entity == "academicSessions")
    assert fall["dateLastModified"] == "2026-08-01T08:00:00.000Z"  # to UTC, with milliseconds


def test_numbers_and_vocabularies(make_bundle: MakeBundle) -> None:
    orgs = (
        HEADERS["orgs"]
        + "\no1,active,,North,school,,\no2,active,,Campus,campus,,\no3,active,,X,ext:campus,,\n"
    )
    categories = (
        "sourcedId,status,dateLastModified,title,weight\ng1,active,,Homework,0.25\ng2,active,,Tests,abc\n"
    )
    enrollments = HEADERS["enrollments"] + "\ne1,deleted,,k1,o1,u1,Student,false,,\n"
    rows, errors = read(
        make_bundle({"orgs.csv": orgs, "categories.csv": categories, "enrollments.csv": enrollments})
    )
    assert [(e.file, e.line, [(p.kind, p.reason) for p in e.problems]) for e in errors] == [
        ("orgs.csv", 3, [("enum", "type 'campus' is not one of department, district, local, national, "
                                  "school, state (or an ext: value)")]),
        ("enrollments.csv", 2, [
            ("enum", "status 'deleted' is not one of active, tobedeleted"),
            ("enum", "role 'Student' is not one of administrator, aide, counselor, districtAdministrator, "
                     "guardian, parent, principal, proctor, relative, siteAdministrator, student, "
                     "systemAdministrator, teacher (or an ext: value); values are case-sensitive: did you "
                     "mean 'student'?"),
        ]),
        ("categories.csv", 3, [("value", "weight 'abc' is not a number")]),
    ]  # fmt: skip
    assert next(r.obj for r in rows if r.entity == "categories")["weight"] == 0.25
    assert next(r.obj for r in rows if r.obj["sourcedId"] == "o3")["type"] == "ext:campus"


def test_duplicate_sourced_ids(make_bundle: MakeBundle) -> None:
    orgs = HEADERS["orgs"] + "\n" + ORG.format(sid="o1", name="North") + ORG.format(sid="o1", name="Again")
    enrollments = BASE["enrollments.csv"] + "e1,active,,k1,o1,u2,student,false,,\n"
    rows, errors = read(make_bundle({"orgs.csv": orgs, "enrollments.csv": enrollments}))
    assert [(e.file, e.line, e.kind, e.reason) for e in errors] == [
        ("orgs.csv", 3, "duplicate", "sourcedId 'o1' is already used on line 2"),
        ("enrollments.csv", 4, "duplicate", "sourcedId 'e1' is already used by an earlier row"),
    ]
    assert [r.obj["name"] for r in rows if r.entity == "orgs"] == ["North"]


def test_an_empty_sourced_id(make_bundle: MakeBundle) -> None:
    _, errors = read(make_bundle({"orgs.csv": BASE["orgs.csv"] + ",active,,Nameless,school,,\n"}))
    assert [(e.line, e.field, e.kind, e.reason) for e in errors] == [
        (3, "sourcedId", "required", "sourcedId is empty: every row needs one")
    ]


# --- references ----------------------------------------------------------------------------------
def test_dangling_references_name_the_field_and_the_id(make_bundle: MakeBundle) -> None:
    users = _users(_user("u1"), "u2,active,,true,ben,,Ben,Ng,,,,,,u9,09,,,,,,o1,\n")
    roles = BASE["roles.csv"] + "r3,active,,u1,secondary,teacher,,,o7,\nr4,active,,u8,primary,student,,,o1,\n"
    enrollments = BASE["enrollments.csv"] + "e3,active,,k9,o1,u1,student,,,\n"
    rows, errors = read(make_bundle({"users.csv": users, "roles.csv": roles, "enrollments.csv": enrollments}))
    assert [(e.file, e.line, e.field, e.entity, e.reason) for e in errors] == [
        ("roles.csv", 4, "orgSourcedId", "roles", f"orgSourcedId 'o7' {_NOT_IN} orgs.csv"),
        ("roles.csv", 5, "userSourcedId", "roles", f"userSourcedId 'u8' {_NOT_IN} users.csv"),
        ("users.csv", 3, "agentSourcedIds", "users", f"agentSourcedIds 'u9' {_NOT_IN} users.csv"),
        ("enrollments.csv", 4, "classSourcedId", "enrollments", f"classSourcedId 'k9' {_NOT_IN} classes.csv"),
    ]
    ana = next(r.obj for r in rows if r.obj["sourcedId"] == "u1")
    assert [role["role"] for role in ana["roles"]] == ["student"]  # r3 was rejected


def test_a_reference_to_a_later_row_or_a_rejected_row_is_good(make_bundle: MakeBundle) -> None:
    users = _users(
        "u1,active,,true,ana,,Ana,Diaz,,,,,,u2,09,,,,,,o1,\n",  # agent u2 comes later
        "u2,active,,maybe,ben,,Ben,Ng,,,,,,,,,,,,,o1,\n",  # rejected, but it exists
    )
    rows, errors = read(make_bundle({"users.csv": users}))
    assert problems(errors) == [("users.csv", 3, "enabledUser", "value")]
    assert any(r.obj["sourcedId"] == "e2" for r in rows)  # the enrollment of u2 is good


def test_a_delta_bundle_may_point_outside(make_bundle: MakeBundle) -> None:
    manifest = MANIFEST_V1P2 + "file.enrollments,delta\n"
    enrollments = HEADERS["enrollments"] + "\ne9,active,2026-09-01T00:00:00Z,k9,o9,u9,student,,,\n"
    only = {name: None for name in BASE} | {"enrollments.csv": enrollments}
    bundle = open_bundle(make_bundle(only, manifest=manifest))
    assert bundle.mode["enrollments"] == "delta" and bundle.mode["users"] == "absent"
    [row] = list(bundle.rows())
    assert isinstance(row, Row) and row.obj["user"] == {"href": None, "sourcedId": "u9", "type": "user"}
    # The same file in bulk mode: the bundle is the whole truth, and u9 is nowhere in it.
    _, errors = read(make_bundle(only))
    assert problems(errors) == [
        ("enrollments.csv", 2, field, "reference")
        for field in ("classSourcedId", "schoolSourcedId", "userSourcedId")
    ]
    assert (
        errors[0].problems[0].reason
        == f"classSourcedId 'k9' {_NOT_IN} classes.csv (the bundle has no classes.csv)"
    )


def test_references_into_a_delta_file_are_not_checked(make_bundle: MakeBundle) -> None:
    manifest = MANIFEST_V1P2 + "file.users,delta\nfile.enrollments,bulk\n"
    enrollments = (
        HEADERS["enrollments"] + "\ne1,active,,k1,o1,u9,student,,,\ne2,active,,k9,o1,u1,student,,,\n"
    )
    _, errors = read(make_bundle({"enrollments.csv": enrollments}, manifest=manifest))
    assert problems(errors) == [("enrollments.csv", 3, "classSourcedId", "reference")]  # u9 may exist


# --- roles and 1.1 ---------------------------------------------------------------------------------
def test_roles_fold_into_users(make_bundle: MakeBundle) -> None:
    roles = HEADERS["roles"] + (
        "\nr1,active,,u1,primary,student,2026-08-17,2027-06-11,o1,\n"
        "r2,active,,u1,secondary,ext:mentor,,,o1,\n"
        "r3,tobedeleted,,u1,secondary,aide,,,o1,\n"
        "r4,active,,u2,primary,teacher,,,o1,\n"
    )
    rows, errors = read(make_bundle({"roles.csv": roles}))
    assert errors == []
    org = {"href": None, "sourcedId": "o1", "type": "org"}
    ana = next(r.obj for r in rows if r.obj["sourcedId"] == "u1")
    assert ana["roles"] == [
        {
            "roleType": "primary",
            "role": "student",
            "org": org,
            "beginDate": "2026-08-17",
            "endDate": "2027-06-11",
        },
        {"roleType": "secondary", "role": "ext:mentor", "org": org},
    ]  # the tobedeleted role is no role


def test_v1p1_users_become_roles(make_bundle: MakeBundle) -> None:
    manifest = "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n"
    orgs = (
        HEADERS["orgs"]
        + "\nd1,active,,District,district,,\no1,active,,North,school,,d1\no2,active,,South,school,,d1\n"
    )
    users = (
        "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,"
        "middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\n"
        'u1,active,,TRUE,"o1,o2",administrator,ana,,Ana,Diaz,,,,,,,,pw\n'
        "u2,active,,FALSE,d1,administrator,ben,,Ben,Ng,,,,,,,,\n"
        "u3,inactive,,true,o1,teacher,cy,,Cy,Ro,,,,,,,,\n"
        "u4,active,,true,o1,principal,di,,Di,Lu,,,,,,,,\n"
    )
    files = {"manifest.csv": manifest, "orgs.csv": orgs, "users.csv": users, "roles.csv": None}
    bundle = open_bundle(make_bundle(files, manifest=manifest))
    items = list(bundle.rows())
    errors = [i for i in items if isinstance(i, RowError)]
    assert problems(errors) == [("users.csv", 5, "role", "enum")]  # principal is 1.2 only
    users_read = {i.obj["sourcedId"]: i.obj for i in items if isinstance(i, Row) and i.entity == "users"}

    def ref(sid: str) -> dict[str, object]:
        return {"href": None, "sourcedId": sid, "type": "org"}

    assert users_read["u1"]["roles"] == [
        {"roleType": "primary", "role": "siteAdministrator", "org": ref("o1")},
        {"roleType": "secondary", "role": "siteAdministrator", "org": ref("o2")},
    ]
    assert users_read["u2"]["roles"] == [
        {"roleType": "primary", "role": "districtAdministrator", "org": ref("d1")}
    ]
    assert users_read["u2"]["enabledUser"] is False
    assert users_read["u3"]["status"] == "inactive"  # 1.1 still has it
    assert "orgs" not in users_read["u1"] and "role" not in users_read["u1"]


# --- bundles -------------------------------------------------------------------------------------
def test_a_zip_bundle_reads_like_the_folder(make_bundle: MakeBundle, tmp_path: Path) -> None:
    folder = make_bundle()
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for item in sorted(folder.iterdir()):
            zf.write(item, f"export/{item.name}")  # a folder inside the zip is fine
    from_zip, from_folder = read(archive), read(folder)
    assert [(r.entity, r.line, r.obj, r.raw) for r in from_zip[0]] == [
        (r.entity, r.line, r.obj, r.raw) for r in from_folder[0]
    ]
    assert from_zip[1] == []


def test_files_the_binding_has_and_does_not_have(make_bundle: MakeBundle) -> None:
    files = {
        "resources.csv": "sourcedId\n",
        "Users.CSV": BASE["users.csv"],
        "users.csv": None,
        "notes.csv": "x\n",
    }
    bundle = open_bundle(make_bundle(files))
    assert bundle.not_consumed == ["resources.csv"]
    assert bundle.mode["resources"] == "bulk" and bundle.has("users") and not bundle.has("resources")
    assert "Users.CSV: read as users.csv (the binding's file names are case-sensitive)" in bundle.warnings
    assert "notes.csv: not a file of the OneRoster 1.2 CSV binding; ignored" in bundle.warnings
    rows = [item for item in bundle.rows() if isinstance(item, Row) and item.entity == "users"]
    assert [r.file for r in rows] == ["Users.CSV", "Users.CSV"]
    assert bundle.summary()["notConsumed"] == ["resources.csv"]


def test_a_manifest_without_version_and_no_manifest(make_bundle: MakeBundle, tmp_path: Path) -> None:
    bundle = open_bundle(make_bundle(manifest="propertyName,value\nfile.orgs,bulk\n"))
    assert bundle.version == "1.2"
    assert "manifest.csv gives no oneroster.version; the files look like OneRoster 1.2" in bundle.warnings
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "orgs.csv").write_text(BASE["orgs.csv"])
    bundle = open_bundle(bare)
    assert bundle.mode["orgs"] == "bulk" and "no manifest.csv: every file is read as bulk" in bundle.warnings
    assert [type(i) for i in bundle.rows()] == [Row]


def test_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidBundle, match="no OneRoster CSV file"):
        open_bundle(tmp_path)
    with pytest.raises(ConfigError, match="not a folder or a zip file"):
        open_bundle(tmp_path / "notes.txt")


def test_rows_can_be_read_twice(make_bundle: MakeBundle) -> None:
    bundle = open_bundle(make_bundle({"orgs.csv": BASE["orgs.csv"] + "o2,active,,X,planet,,\n"}))
    first, second = list(bundle.rows()), list(bundle.rows())
    assert first == second and len(first) == 9
    assert bundle.summary()["files"]["orgs.csv"] == {"rows": 1, "errors": 1}
