"""Every kind of generated record converts into its topic's Avro contract (the sources' own path)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from connectors.oneroster.models import entity, to_record
from simulators.district import District, DistrictSpec, generate
from streams.catalog import Catalog, load_catalog
from streams.settings import Settings

META = {
    "source": "tests",
    "sourceChangedAt": None,
    "ingestedAt": datetime(2026, 9, 1, tzinfo=UTC),
    "traceId": "t-1",
    "sourceVersion": None,
}


@pytest.fixture(scope="module")
def catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.topology_file, settings.schemas_dir)


@pytest.fixture(scope="module")
def district() -> District:
    # Plenty of mess so that every odd shape (dated roles, missing emails, accents) is converted.
    return generate(DistrictSpec(users=600, mess=0.1, seed=5))


@pytest.mark.parametrize(
    "collection",
    [
        "orgs",
        "academicSessions",
        "courses",
        "classes",
        "users",
        "enrollments",
        "demographics",
        "categories",
        "lineItems",
        "results",
    ],
)
def test_records_fit_the_contract(catalog: Catalog, district: District, collection: str) -> None:
    schema: dict[str, Any] = catalog.contract(entity(collection).topic).schema
    parsed = fastavro.parse_schema(schema)
    records = list(district.collections[collection].values())
    assert records
    for obj in records:
        record = to_record(collection, obj, schema, meta=META)
        fastavro.validation.validate(record, parsed, raise_errors=True, strict=True)
