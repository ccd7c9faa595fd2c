"""JSON -> Avro conversion of OneRoster objects, checked against the real contracts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest

from connectors.oneroster.models import (
    ENTITIES,
    InvalidRecord,
    entity,
    format_instant,
    parse_instant,
    to_record,
)
from streams.catalog import Catalog, load_catalog
from streams.settings import Settings


@pytest.fixture(scope="module")
def catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.topology_file, settings.schemas_dir)


def _schema(catalog: Catalog, collection: str) -> dict[str, Any]:
    return catalog.contract(entity(collection).topic).schema


META = {
    "source": "tests",
    "sourceChangedAt": None,
    "ingestedAt": datetime(2026, 9, 1, tzinfo=UTC),
    "traceId": "t-1",
    "sourceVersion": None,
}


def _ref(sid: str, kind: str) -> dict[str, str]:
    return {"href": f"/x/{sid}", "sourcedId": sid, "type": kind}


USER = {
    "sourcedId": "u1",
    "status": "active",
    "dateLastModified": "2026-08-01T10:11:12.345Z",
    "username": "ana",
    "enabledUser": "true",
    "givenName": "Ana",
    "familyName": "Río",
    "roles": [
        {"roleType": "primary", "role": "student", "org": _ref("s1", "org"), "beginDate": "2026-08-17"}
    ],
    "userIds": [{"type": "SIS", "identifier": "42"}],
    "agents": [],
    "grades": ["09"],
}


def test_user_converts_and_encodes(catalog: Catalog) -> None:
    schema = _schema(catalog, "users")
    record = to_record("users", USER, schema, meta=META)
    assert record["enabledUser"] is True
    assert record["dateLastModified"] == datetime(2026, 8, 1, 10, 11, 12, 345000, tzinfo=UTC)
    assert record["roles"][0]["beginDate"] == date(2026, 8, 17)
    assert record["roles"][0]["userProfile"] is None
    assert record["email"] is None and record["userProfiles"] == [] and record["metadata"] == {}
    # sourceChangedAt comes from dateLastModified when the caller leaves it None
    assert record["meta"]["sourceChangedAt"] == record["dateLastModified"]
    fastavro.validation.validate(record, fastavro.parse_schema(schema), raise_errors=True, strict=True)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"givenName": None}, "givenName", "required"),
        ({"enabledUser": "yes"}, "enabledUser", "true or false"),
        ({"dateLastModified": "yesterday"}, "dateLastModified", "ISO 8601"),
        ({"status": "inactive"}, "status", "active, tobedeleted"),
        (
            {"roles": [{"roleType": "main", "role": "student", "org": _ref("s1", "org")}]},
            "roles[0].roleType",
            "main",
        ),
        (
            {"roles": [{"roleType": "primary", "role": "wizard", "org": _ref("s1", "org")}]},
            "roles[0].role",
            "wizard",
        ),
        ({"roles": [{"roleType": "primary", "role": "student"}]}, "roles[0].org", "required"),
        ({"roles": "student"}, "roles", "list"),
    ],
)
def test_bad_user_fields_are_named(catalog: Catalog, change: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        to_record("users", {**USER, **change}, _schema(catalog, "users"), meta=META)
    assert caught.value.field == field
    assert words in caught.value.message


def test_extension_roles_pass(catalog: Catalog) -> None:
    obj = {
        **USER,
        "roles": [{"roleType": "primary", "role": "ext:curriculumDesigner", "org": _ref("d", "org")}],
    }
    assert (
        to_record("users", obj, _schema(catalog, "users"), meta=META)["roles"][0]["role"]
        == "ext:curriculumDesigner"
    )


def test_missing_date_last_modified_uses_default_only_when_given(catalog: Catalog) -> None:
    obj = {k: v for k, v in USER.items() if k not in ("dateLastModified", "status")}
    with pytest.raises(InvalidRecord, match="dateLastModified"):
        to_record("users", {**obj, "status": "active"}, _schema(catalog, "users"), meta=META)
    when = datetime(2026, 9, 2, 3, 4, 5, tzinfo=UTC)
    record = to_record("users", obj, _schema(catalog, "users"), meta=META, default_modified=when)
    assert record["dateLastModified"] == when and record["status"] == "active"


def test_result_enumeration_and_numbers(catalog: Catalog) -> None:
    obj = {
        "sourcedId": "r1",
        "status": "active",
        "dateLastModified": "2026-09-01T00:00:00Z",
        "lineItem": _ref("li", "lineItem"),
        "student": _ref("u1", "user"),
        "scoreStatus": "fully graded",
        "score": "87.5",
        "scoreDate": "2026-09-01",
    }
    record = to_record("results", obj, _schema(catalog, "results"), meta=META)
    assert record["score"] == 87.5
    with pytest.raises(InvalidRecord, match="scoreStatus"):
        to_record("results", {**obj, "scoreStatus": "graded"}, _schema(catalog, "results"), meta=META)


def test_every_entity_has_a_declared_topic(catalog: Catalog) -> None:
    for ent in ENTITIES:
        assert ent.topic in catalog
        assert ent.path.startswith("/ims/oneroster/")


def test_instants_round_trip_in_sortable_form() -> None:
    text = format_instant(parse_instant("2026-08-01T12:00:00+02:00"))
    assert text == "2026-08-01T10:00:00.000Z"
    assert format_instant(parse_instant("2026-08-01T10:00:00.5Z")) == "2026-08-01T10:00:00.500Z"
