"""Invariants every generated district must keep, shared by the generator and factory tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from simulators.district import District

__all__ = ["DATE", "INSTANT", "assert_consistent", "guid_refs"]

INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

#: GUIDRef type -> (collection, URL service).
REF_TARGETS = {
    "org": ("orgs", "rostering"),
    "academicSession": ("academicSessions", "rostering"),
    "term": ("academicSessions", "rostering"),
    "gradingPeriod": ("academicSessions", "rostering"),
    "course": ("courses", "rostering"),
    "class": ("classes", "rostering"),
    "user": ("users", "rostering"),
    "student": ("users", "rostering"),
    "teacher": ("users", "rostering"),
    "category": ("categories", "gradebook"),
    "lineItem": ("lineItems", "gradebook"),
}
#: (collection, field) -> the GUIDRef type it must hold.
FIELD_TYPES = {
    ("orgs", "parent"): "org",
    ("orgs", "children"): "org",
    ("academicSessions", "parent"): "academicSession",
    ("academicSessions", "children"): "academicSession",
    ("courses", "schoolYear"): "academicSession",
    ("courses", "org"): "org",
    ("classes", "course"): "course",
    ("classes", "school"): "org",
    ("classes", "terms"): "academicSession",
    ("users", "primaryOrg"): "org",
    ("users", "agents"): "user",
    ("enrollments", "user"): "user",
    ("enrollments", "class"): "class",
    ("enrollments", "school"): "org",
    ("lineItems", "class"): "class",
    ("lineItems", "school"): "org",
    ("lineItems", "category"): "category",
    ("lineItems", "gradingPeriod"): "academicSession",
    ("lineItems", "academicSession"): "academicSession",
    ("results", "lineItem"): "lineItem",
    ("results", "student"): "user",
    ("results", "class"): "class",
}
#: Arrays the contracts define: always present, even when empty.
ARRAYS = {
    "orgs": ("children",),
    "academicSessions": ("children",),
    "courses": ("grades", "subjects", "subjectCodes", "resources"),
    "classes": ("grades", "subjects", "terms", "subjectCodes", "periods", "resources"),
    "users": ("userIds", "roles", "userProfiles", "agents", "grades"),
}
ROLES = {
    "aide", "counselor", "districtAdministrator", "guardian", "parent", "principal", "proctor", "relative",
    "siteAdministrator", "student", "systemAdministrator", "teacher", "ext:curriculumDesigner",
}  # fmt: skip
SCORE_STATUSES = {"exempt", "fully graded", "not submitted", "partially graded", "submitted"}
DATE_FIELDS = ("startDate", "endDate", "beginDate", "birthDate", "scoreDate")
INSTANT_FIELDS = ("dateLastModified", "assignDate", "dueDate")


def guid_refs(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every GUIDRef inside a JSON value, with the top-level field it sits under.

    Raises:
        AssertionError: on a null anywhere (optional fields without a value must be left out).
    """
    if isinstance(value, dict):
        if len(value) == 3 and "href" in value and "sourcedId" in value and "type" in value:
            yield path, value
            return
        for key, item in value.items():
            assert item is not None, f"{path or key} is null: omit optional fields instead"
            if isinstance(item, dict | list):
                yield from guid_refs(item, path or key)
    elif isinstance(value, list):
        for item in value:
            assert item is not None, f"{path} holds a null"
            if isinstance(item, dict | list):
                yield from guid_refs(item, path)


def assert_consistent(district: District) -> None:
    """Referential integrity, OneRoster shapes, formats and the roster's own rules."""
    c = district.collections
    as_of = datetime.fromisoformat(district.spec.as_of.replace("Z", "+00:00"))
    earliest = (as_of - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    latest = district.spec.as_of
    for name, table in c.items():
        for sid, record in table.items():
            assert record["sourcedId"] == sid
            assert record["status"] == "active"
            assert INSTANT.match(record["dateLastModified"]), record["dateLastModified"]
            assert earliest <= record["dateLastModified"] < latest
            for field in ARRAYS.get(name, ()):
                assert isinstance(record[field], list), f"{name}/{sid}.{field}"
            for field in DATE_FIELDS:
                if field in record:
                    assert DATE.match(record[field]), (name, field, record[field])
            for field in INSTANT_FIELDS:
                if field in record:
                    assert INSTANT.match(record[field]), (name, field, record[field])
            if "metadata" in record:
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in record["metadata"].items())
            for field, ref in guid_refs(record):
                collection, service = REF_TARGETS[ref["type"]]
                assert ref["sourcedId"] in c[collection], f"{name}/{sid}.{field} -> missing {ref}"
                assert ref["href"] == f"/ims/oneroster/{service}/v1p2/{collection}/{ref['sourcedId']}"
                expected = FIELD_TYPES.get((name, field))
                if expected is not None:
                    assert ref["type"] == expected, (name, field, ref)

    orgs = c["orgs"]
    schools = {sid for sid, o in orgs.items() if o["type"] == "school"}
    districts = [o for o in orgs.values() if o["type"] == "district"]
    assert len(districts) == 1
    assert {r["sourcedId"] for r in districts[0]["children"]} == schools
    for sid in schools:
        assert orgs[sid]["parent"]["sourcedId"] == districts[0]["sourcedId"]

    sessions = c["academicSessions"]
    for sid, session in sessions.items():
        for child in session["children"]:
            assert sessions[child["sourcedId"]]["parent"]["sourcedId"] == sid
        if "parent" in session:
            assert sid in {r["sourcedId"] for r in sessions[session["parent"]["sourcedId"]]["children"]}
        assert session["startDate"] <= session["endDate"]
        assert session["schoolYear"] == str(district.spec.school_year)

    users = c["users"]
    students = set()
    for sid, user in users.items():
        primaries = [r for r in user["roles"] if r["roleType"] == "primary"]
        assert len(primaries) == 1, f"user {sid} has {len(primaries)} primary roles"
        assert all(r["role"] in ROLES for r in user["roles"])
        assert isinstance(user["enabledUser"], bool)
        if primaries[0]["role"] == "student":
            students.add(sid)
            assert len(user["grades"]) == 1
            for guardian in user["agents"]:
                assert sid in {a["sourcedId"] for a in users[guardian["sourcedId"]]["agents"]}
        if primaries[0]["role"] in ("guardian", "parent", "relative"):
            assert user["agents"]
            for kid in user["agents"]:
                assert sid in {a["sourcedId"] for a in users[kid["sourcedId"]]["agents"]}
    assert set(c["demographics"]) == students

    taught: dict[str, int] = {}
    for enrollment in c["enrollments"].values():
        klass = c["classes"][enrollment["class"]["sourcedId"]]
        assert enrollment["school"]["sourcedId"] == klass["school"]["sourcedId"]
        assert enrollment["beginDate"] <= enrollment["endDate"]
        if enrollment["role"] == "teacher" and enrollment["primary"]:
            class_id = enrollment["class"]["sourcedId"]
            taught[class_id] = taught.get(class_id, 0) + 1
        if enrollment["role"] == "student":
            assert enrollment["user"]["sourcedId"] in students
            assert "primary" not in enrollment
    assert taught == dict.fromkeys(c["classes"], 1), "every class needs exactly one lead teacher"

    for result in c["results"].values():
        assert result["scoreStatus"] in SCORE_STATUSES
        assert result["student"]["sourcedId"] in students
        item = c["lineItems"][result["lineItem"]["sourcedId"]]
        assert item["class"]["sourcedId"] == result["class"]["sourcedId"]
        assert isinstance(result["late"], bool) and isinstance(result["missing"], bool)
    for item in c["lineItems"].values():
        assert item["assignDate"] <= item["dueDate"]
        assert item["resultValueMin"] == 0.0 and item["resultValueMax"] == 100.0
