"""The OneRoster CSV source on the real Kafka and registry: public bundles, bad rows, and a
backfill that converges with the REST sync of the same district."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors.oneroster.csv import open_bundle, write_bundle
from connectors.oneroster.models import ENTITIES
from connectors.sources.holds import HoldBook
from simulators.sis.server import SisSimulator
from sislms.sis import run_backfill
from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.kafka import client_config
from streams.settings import Settings
from tests.integration.sis_support import (
    SisTopics,
    active,
    comparable,
    csv_source,
    read_topic,
    rest_source,
    sis_topics,
    start_simulator,
    table,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def topics(kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str) -> SisTopics:
    return sis_topics(kernel, make_catalog, uid, tag="c")


@pytest.fixture
def sim(settings: Settings, kernel: Kernel) -> Iterator[SisSimulator]:
    simulator = start_simulator(settings, kernel, users=600, seed=5)
    yield simulator
    simulator.stop()


def _good_rows(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in open_bundle(path).rows():
        if hasattr(item, "obj"):
            out.setdefault(item.entity, set()).add(item.obj["sourcedId"])
    return out


def test_public_minimal_bundle_loads_completely(
    fixtures_dir: Path, topics: SisTopics, tmp_path: Path
) -> None:
    bundle = fixtures_dir / "oneroster" / "csv_v1p2_catalyst_minimal"
    report = csv_source(topics, tmp_path).load(bundle)
    assert report.rejected == []
    expected = _good_rows(bundle)
    assert expected.get("users") and expected.get("enrollments")
    for name, ids in expected.items():
        assert set(table(topics, name)) == ids, name
    assert read_topic(topics, topics.dead_letters) == []


def test_public_quirky_bundle_reports_every_bad_row(
    fixtures_dir: Path, topics: SisTopics, tmp_path: Path
) -> None:
    bundle = fixtures_dir / "oneroster" / "csv_v1p2_catalyst_quirky"
    report = csv_source(topics, tmp_path).load(bundle)
    assert report.rejected, "the quirky bundle has bad rows"
    letters = [v for _, v, _ in read_topic(topics, topics.dead_letters)]
    assert len(letters) == len(report.rejected)
    for (file, line, _field, reason), letter in zip(report.rejected, letters, strict=True):
        assert letter["headers"]["origin.file"] == file.encode()
        assert letter["headers"]["origin.line"] == str(line or "").encode()
        assert reason in letter["errorMessage"]
        assert letter["value"]  # the row's original bytes
    loaded = sum(len(table(topics, e.name)) for e in ENTITIES)
    assert loaded == sum(report.upserts.values()) > 0


def test_a_dry_run_backfill_of_a_bundle_with_bad_rows_sends_nothing(
    fixtures_dir: Path, topics: SisTopics, tmp_path: Path
) -> None:
    """``sislms backfill sis --csv --dry-run``: the bad rows are counted, not dead-lettered; the
    good ones counted, not published."""
    bundle = fixtures_dir / "oneroster" / "csv_v1p2_catalyst_quirky"
    names = tuple(e.name for e in ENTITIES)
    conf = client_config(topics.kernel.settings, topics.kernel.endpoints.kafka_bootstrap)
    dry = run_backfill(csv_source(topics, tmp_path), names, conf=conf, csv=bundle, dry_run=True)
    assert sum(dry.dead_letters.values()) > 0 and sum(dry.published.values()) > 0
    assert read_topic(topics, topics.dead_letters) == []
    assert all(read_topic(topics, topics.topics[n], decode=False) == [] for n in names)
    done = run_backfill(csv_source(topics, tmp_path), names, conf=conf, csv=bundle)
    assert (done.published, done.dead_letters) == (dry.published, dry.dead_letters)
    assert len(read_topic(topics, topics.dead_letters)) == sum(dry.dead_letters.values())


def test_csv_backfill_and_rest_sync_converge(
    kernel: Kernel,
    make_catalog: Callable[..., Catalog],
    uid: str,
    topics: SisTopics,
    sim: SisSimulator,
    tmp_path: Path,
) -> None:
    via_rest = sis_topics(kernel, make_catalog, uid, tag="r")
    rest_source(via_rest, sim, tmp_path / "rest").sync_once()
    bundle = tmp_path / "district.zip"
    write_bundle({name: list(active(sim, name).values()) for name in sim.store.collections}, bundle, zip=True)
    report = csv_source(topics, tmp_path / "csv").load(bundle)
    assert report.rejected == []
    for ent in ENTITIES:
        from_rest = {k: comparable(v) for k, v in table(via_rest, ent.name).items()}
        from_csv = {k: comparable(v) for k, v in table(topics, ent.name).items()}
        assert set(from_csv) == set(from_rest), ent.name
        differing = [k for k in from_rest if from_rest[k] != from_csv[k]]
        assert not differing, f"{ent.name}: {len(differing)} record(s) differ, e.g. {differing[:1]}"


def test_bulk_file_missing_most_rows_is_held(topics: SisTopics, sim: SisSimulator, tmp_path: Path) -> None:
    full = tmp_path / "full"
    write_bundle({name: list(active(sim, name).values()) for name in sim.store.collections}, full)
    source = csv_source(topics, tmp_path)
    source.load(full)
    users = list(active(sim, "users"))
    partial = tmp_path / "partial"  # a broken nightly export: a third of the users
    collections = {name: list(active(sim, name).values()) for name in sim.store.collections}
    collections["users"] = collections["users"][: len(users) // 3]
    keep = {u["sourcedId"] for u in collections["users"]}
    collections["enrollments"] = [e for e in collections["enrollments"] if e["user"]["sourcedId"] in keep]
    collections["demographics"] = [d for d in collections["demographics"] if d["sourcedId"] in keep]
    collections["results"] = [r for r in collections["results"] if r["student"]["sourcedId"] in keep]
    write_bundle(collections, partial)
    report = source.load(partial)
    assert "users" in report.held
    assert set(table(topics, "users")) == set(users)
    book = HoldBook(tmp_path / "holds")
    book.decide(report.held["users"], approve=True)
    assert source.apply_decided_holds() >= 1
    assert set(table(topics, "users")) == keep
