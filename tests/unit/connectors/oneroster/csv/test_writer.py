"""The CSV writer: round trips through the reader, the manifest, 1.1, and what it refuses."""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path
from typing import Any

import pytest

from connectors.oneroster.csv import Row, open_bundle, write_bundle
from connectors.oneroster.csv.binding import ORDER
from tests.unit.connectors.oneroster.csv.support import HEADERS, read

STAMP = "2026-08-01T12:30:00.250Z"


def ref(sourced_id: str, kind: str) -> dict[str, Any]:
    path = {"org": "orgs", "academicSession": "academicSessions", "user": "users"}.get(kind, kind + "s")
    return {
        "href": f"/ims/oneroster/rostering/v1p2/{path}/{sourced_id}",
        "sourcedId": sourced_id,
        "type": kind,
    }


def without_hrefs(node: Any) -> Any:
    """What the reader gives back: the CSV binding has no hrefs."""
    if isinstance(node, dict):
        return {k: None if k == "href" else without_hrefs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [without_hrefs(v) for v in node]
    return node


def base(sourced_id: str, **fields: Any) -> dict[str, Any]:
    return {"sourcedId": sourced_id, "status": "active", "dateLastModified": STAMP, **fields}


def every_entity() -> dict[str, list[dict[str, Any]]]:
    """A small district with every collection and (nearly) every field of the 1.2 binding."""
    return {
        "orgs": [
            base("d1", name="Riverbend USD", type="district", identifier="99", children=[ref("s1", "org")]),
            base(
                "s1", name="Riverbend High, North", type="school", parent=ref("d1", "org"), children=[],
                metadata={"ext.region": "N", "ext.level": "high"},
            ),
        ],
        "academicSessions": [
            base(
                "y27", title="2026-2027", type="schoolYear", startDate="2026-08-17", endDate="2027-06-11",
                schoolYear="2027", children=[ref("t1", "academicSession")],
            ),
            base(
                "t1", status="tobedeleted", title="Fall", type="term", startDate="2026-08-17",
                endDate="2027-01-15", parent=ref("y27", "academicSession"), schoolYear="2027", children=[],
            ),
        ],
        "courses": [
            base(
                "c1", title="Algebra I", schoolYear=ref("y27", "academicSession"), courseCode="ALG1",
                grades=["09", "10"], org=ref("d1", "org"), subjects=["Mathematics"], subjectCodes=["02"],
            ),
        ],
        "classes": [
            base(
                "k1", title='Algebra I, "Honors"\nPeriod 1', classCode="ALG1-1", classType="scheduled",
                location="Room 101", grades=["09"], subjects=["Mathematics"], course=ref("c1", "course"),
                school=ref("s1", "org"), terms=[ref("t1", "academicSession"), ref("y27", "academicSession")],
                subjectCodes=["02"], periods=["1", "2"],
            ),
        ],
        "users": [
            base(
                "u1", userMasterIdentifier="SIS-1", username="zoe.o", enabledUser=True,
                userIds=[{"type": "SIS", "identifier": "1"}, {"type": "LDAP", "identifier": "cn=zoe,o=rb"}],
                givenName="Zoë", familyName="O'Neil", middleName="Ann", preferredGivenName="Zo",
                preferredMiddleName="A", preferredFamilyName="Oneil", pronouns="she/her",
                roles=[
                    {"roleType": "primary", "role": "student", "org": ref("s1", "org"), "userProfile": "p1",
                     "beginDate": "2026-08-17", "endDate": "2027-06-11"},
                    {"roleType": "secondary", "role": "ext:peerTutor", "org": ref("s1", "org")},
                ],
                userProfiles=[
                    {"profileId": "p1", "profileType": "lms", "vendorId": "acme", "applicationId": "app",
                     "description": "Reading app", "credentials": [{"type": "sso", "username": "zoe.o"}]},
                ],
                primaryOrg=ref("s1", "org"), identifier="100001", email="zoe@example.test", sms="+15550100",
                phone="+15550101", agents=[ref("g1", "user")], grades=["09"],
                metadata={"ext.gradYear": "2030"},
            ),
            base(
                "t9", username="kim.t", userIds=[], enabledUser=False, givenName="Kim", familyName="Tran",
                roles=[{"roleType": "primary", "role": "teacher", "org": ref("s1", "org")}],
                userProfiles=[], agents=[], grades=[],
            ),
            base(
                "g1", username="ann.o", userIds=[], enabledUser=True, givenName="Ann", familyName="O'Neil",
                roles=[{"roleType": "primary", "role": "guardian", "org": ref("s1", "org")}],
                userProfiles=[], agents=[ref("u1", "user")], grades=[],
            ),
        ],
        "demographics": [
            base(
                "u1", birthDate="2011-02-03", sex="female", americanIndianOrAlaskaNative=False, asian=False,
                blackOrAfricanAmerican=True, nativeHawaiianOrOtherPacificIslander=False, white=False,
                demographicRaceTwoOrMoreRaces=False, hispanicOrLatinoEthnicity=True, countryOfBirthCode="US",
                stateOfBirthAbbreviation="CA", cityOfBirth="Millbrook", publicSchoolResidenceStatus="01652",
            ),
        ],
        "enrollments": [
            base("e1", user=ref("u1", "user"), **{"class": ref("k1", "class")}, school=ref("s1", "org"),
                 role="student", beginDate="2026-08-17", endDate="2027-01-15"),
            base("e2", user=ref("t9", "user"), **{"class": ref("k1", "class")}, school=ref("s1", "org"),
                 role="teacher", primary=True),
        ],
        "categories": [base("cat1", title="Homework", weight=0.25)],
        "lineItems": [
            base(
                "li1", title="Homework 1", description="Chapter 1, all odd problems", assignDate=STAMP,
                dueDate="2026-09-01T23:59:00.000Z", **{"class": ref("k1", "class")}, school=ref("s1", "org"),
                category=ref("cat1", "category"), gradingPeriod=ref("t1", "academicSession"),
                academicSession=ref("y27", "academicSession"), resultValueMin=0.0, resultValueMax=100.0,
            ),
        ],
        "results": [
            base(
                "r1", lineItem=ref("li1", "lineItem"), student=ref("u1", "user"),
                **{"class": ref("k1", "class")}, scoreStatus="fully graded", score=93.5, textScore="A",
                scoreDate="2026-09-02", comment="Well done,\nkeep going", inProgress=False, incomplete=False,
                late=True, missing=False,
            ),
            base("r2", lineItem=ref("li1", "lineItem"), student=ref("u1", "user"), scoreStatus="exempt",
                 scoreDate="2026-09-02"),
        ],
    }  # fmt: skip


def test_every_entity_round_trips(tmp_path: Path) -> None:
    collections = every_entity()
    before = copy.deepcopy(collections)
    write_bundle(collections, tmp_path / "b")
    assert collections == before  # the input is not changed
    rows, errors = read(tmp_path / "b")
    assert errors == []
    # Dependency order, then file order; every object as written, hrefs None.
    expected = [(name, without_hrefs(obj)) for name in ORDER for obj in collections[name]]
    assert [(row.entity, row.obj) for row in rows] == expected


def test_files_follow_the_binding(tmp_path: Path) -> None:
    collections = every_entity()
    collections["users"][0]["userProfiles"][0]["credentials"][0]["password"] = "hunter2"
    write_bundle(collections, tmp_path / "b")
    folder = tmp_path / "b"
    for name in ("academicSessions", "courses", "classes", "roles", "enrollments"):
        assert (folder / f"{name}.csv").read_bytes().decode().split("\r\n")[0] == HEADERS[name]
    orgs = HEADERS["orgs"] + ",metadata.ext.region,metadata.ext.level"
    assert (folder / "orgs.csv").read_bytes().decode().split("\r\n")[0] == orgs
    assert (folder / "users.csv").read_bytes().decode().split("\r\n")[0] == HEADERS[
        "users"
    ] + ",metadata.ext.gradYear"
    assert (
        (folder / "lineItems.csv")
        .read_bytes()
        .decode()
        .startswith(
            "sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId,"
            "academicSessionSourcedId,resultValueMin,resultValueMax,schoolSourcedId,gradingPeriodSourcedId\r\n"
        )
    )
    assert (folder / "roles.csv").read_bytes().decode().split("\r\n")[1:3] == [
        f"u1-role-1,active,{STAMP},u1,primary,student,2026-08-17,2027-06-11,s1,p1",
        f"u1-role-2,active,{STAMP},u1,secondary,ext:peerTutor,,,s1,",
    ]
    assert (folder / "userProfiles.csv").read_bytes().decode().split("\r\n")[1] == (
        f"p1,active,{STAMP},u1,lms,acme,app,Reading app,sso,zoe.o,"
    )
    assert all(b"hunter2" not in path.read_bytes() for path in folder.iterdir())
    assert (
        (folder / "categories.csv").read_bytes().decode()
        == f"sourcedId,status,dateLastModified,title,weight\r\ncat1,active,{STAMP},Homework,0.25\r\n"
    )


def test_a_zip_in_delta_mode(tmp_path: Path) -> None:
    collections = {"orgs": every_entity()["orgs"], "enrollments": []}
    write_bundle(
        collections, tmp_path / "out" / "delta.zip", zip=True, mode="delta", system_name="district-sim"
    )
    with zipfile.ZipFile(tmp_path / "out" / "delta.zip") as archive:
        assert sorted(archive.namelist()) == ["enrollments.csv", "manifest.csv", "orgs.csv"]
        manifest = archive.read("manifest.csv").decode().split("\r\n")
    assert manifest[:3] == ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.2"]
    assert "file.orgs,delta" in manifest and "file.enrollments,delta" in manifest
    assert "file.users,absent" in manifest and "file.lineItemScoreScales,absent" in manifest
    assert manifest[-2:] == ["source.systemName,district-sim", ""]
    bundle = open_bundle(tmp_path / "out" / "delta.zip")
    assert {name for name, mode in bundle.mode.items() if mode != "absent"} == {"orgs", "enrollments"}
    assert [type(item) for item in bundle.rows()] == [Row, Row]


def test_a_generated_district_round_trips(tmp_path: Path) -> None:
    from simulators.district import DistrictSpec, generate

    district = generate(DistrictSpec(users=150, mess=0.25, seed=11))
    collections = {name: list(records.values()) for name, records in district.collections.items()}
    write_bundle(collections, tmp_path / "district.zip", zip=True)
    rows, errors = read(tmp_path / "district.zip")
    assert errors == []

    def comparable(obj: dict[str, Any]) -> Any:
        # No classResources.csv/courseResources.csv is written: resources (all empty) are not read back.
        return without_hrefs({k: v for k, v in obj.items() if not (k == "resources" and v == [])})

    got = {(row.entity, row.obj["sourcedId"]): row.obj for row in rows}
    want = {(name, obj["sourcedId"]): comparable(obj) for name, objs in collections.items() for obj in objs}
    assert got == want


def test_version_1p1(tmp_path: Path) -> None:
    district = every_entity()
    admin = base(
        "a1", username="al", enabledUser=True, givenName="Al", familyName="Bo",
        roles=[
            {"roleType": "primary", "role": "siteAdministrator", "org": ref("s1", "org")},
            {"roleType": "secondary", "role": "siteAdministrator", "org": ref("s2", "org")},
            {"roleType": "secondary", "role": "parent", "org": ref("s1", "org")},
        ],
    )  # fmt: skip
    counselor = base(
        "c9", username="cy", enabledUser=True, givenName="Cy", familyName="Do",
        roles=[{"roleType": "primary", "role": "counselor", "org": ref("s1", "org")}],
    )  # fmt: skip
    school2 = base("s2", name="South", type="school", parent=ref("d1", "org"))
    collections = {"orgs": [*district["orgs"], school2], "users": [admin, counselor]}
    write_bundle(collections, tmp_path / "b", version="1.1")
    folder = tmp_path / "b"
    assert not (folder / "roles.csv").exists()
    assert (folder / "users.csv").read_bytes().decode().split("\r\n")[:3] == [
        "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,"
        "middleName,identifier,email,sms,phone,agentSourcedIds,grades,password",
        f'a1,active,{STAMP},true,"s1,s2",administrator,al,,Al,Bo,,,,,,,,',
        f"c9,active,{STAMP},true,s1,ext:counselor,cy,,Cy,Do,,,,,,,,",
    ]
    bundle = open_bundle(folder)
    assert bundle.version == "1.1"
    users = {
        item.obj["sourcedId"]: item.obj
        for item in bundle.rows()
        if isinstance(item, Row) and item.entity == "users"
    }
    # One role per user in 1.1: the parent role is lost; administrator comes back per org type.
    assert [(r["roleType"], r["role"], r["org"]["sourcedId"]) for r in users["a1"]["roles"]] == [
        ("primary", "siteAdministrator", "s1"),
        ("secondary", "siteAdministrator", "s2"),
    ]
    assert users["c9"]["roles"][0]["role"] == "ext:counselor"


def _user(**fields: Any) -> dict[str, Any]:
    return base("u", username="u", enabledUser=True, givenName="U", familyName="V", **fields)


_TWO_CREDENTIALS = {
    "profileId": "p",
    "profileType": "x",
    "vendorId": "v",
    "credentials": [{"type": "a", "username": "u"}, {"type": "b", "username": "u"}],
}


@pytest.mark.parametrize(
    ("collections", "kwargs", "message"),
    [
        (
            {"courses": [base("c", title="T", org=ref("o", "org"), subjects=["Arts, Music"])]},
            {},
            "contains a comma",
        ),
        ({"orgs": [base("o", type="school")]}, {}, "'o': name is required by the OneRoster 1.2 CSV binding"),
        ({"enrolments": []}, {}, "unknown collection"),
        ({"orgs": []}, {"version": "1.3"}, "version must be one of 1.1, 1.2"),
        ({"orgs": []}, {"mode": "full"}, "mode must be bulk or delta"),
        ({"users": [_user(userIds=[{"type": "a:b", "identifier": "1"}])]}, {}, "cannot be written as"),
        (
            {"users": [_user(userProfiles=[_TWO_CREDENTIALS])]},
            {},
            "2 credentials; userProfiles.csv carries one",
        ),
    ],
)
def test_what_the_binding_cannot_carry(
    tmp_path: Path, collections: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_bundle(collections, tmp_path / "b", **kwargs)
