"""The REST source's bookkeeping as plain logic: fake provider (our store), fake writer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.oneroster.errors import UnknownObject
from connectors.oneroster.models import Entity
from connectors.oneroster.query import Query
from connectors.sources.base import SourceState
from connectors.sources.holds import HoldBook, MassChangeGuard
from connectors.sources.oneroster_rest.client import Page
from connectors.sources.oneroster_rest.source import RestSource, RestSourceConfig
from simulators.sis.store import SisStore
from streams.catalog import load_catalog
from streams.settings import Settings


class FakeClient:
    def __init__(self, store: SisStore) -> None:
        self.store = store
        self.requests = 0

    def get_page(self, entity: Entity, query: Query) -> Page:
        self.requests += 1
        page, total = self.store.query(entity.name, query)
        return Page(page, total, entity.path)

    def pages(self, entity: Entity, query: Query) -> Iterator[Page]:
        offset = 0
        while True:
            page = self.get_page(entity, Query(limit=query.limit, offset=offset))
            yield page
            offset += len(page.records)
            if not page.records or offset >= (page.total or 0):
                return

    def get_one(self, entity: Entity, sid: str) -> dict[str, Any]:
        record = self.store.get(entity.name, sid)
        if record is None:
            raise UnknownObject("gone", status=404)
        return record


class FakeWriter:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, Any]] = []
        self.rejected: list[tuple[str, str]] = []
        from collections import Counter

        self.counts: Counter[str] = Counter()

    def upsert(self, entity: str, topic: str, key: str, record: Any) -> None:
        self.published.append((topic, key, record["dateLastModified"]))

    def tombstone(self, entity: str, topic: str, key: str) -> None:
        self.published.append((topic, key, None))

    def reject(self, entity: str, error: BaseException, **kw: Any) -> None:
        self.counts[f"{entity}.dead_letter"] += 1
        self.rejected.append((entity, str(error)))

    def flush(self, timeout: float = 0) -> None:
        pass


def _user(i: int, stamp: str) -> dict[str, Any]:
    return {
        "sourcedId": f"u{i:03d}",
        "status": "active",
        "dateLastModified": stamp,
        "username": f"u{i}",
        "enabledUser": True,
        "givenName": "A",
        "familyName": "B",
        "roles": [{"roleType": "primary", "role": "student", "org": {"sourcedId": "s", "type": "org"}}],
    }


SAME = "2026-08-01T00:00:00.000Z"


@pytest.fixture
def parts(tmp_path: Path, settings: Settings) -> dict[str, Any]:
    # 25 users share one timestamp: the delta must step over whole pages at one instant.
    store = SisStore({"users": {f"u{i:03d}": _user(i, SAME) for i in range(25)}})
    return {
        "store": store,
        "catalog": load_catalog(settings.topology_file, settings.schemas_dir),
        "state": tmp_path / "state.json",
        "holds": HoldBook(tmp_path / "holds"),
    }


def _source(parts: dict[str, Any], writer: FakeWriter, live: set[str], now: datetime) -> RestSource:
    config = RestSourceConfig(name="t", entities=("users",), page_size=10, clock_skew_s=5)
    return RestSource(
        config,
        client=FakeClient(parts["store"]),
        writer=writer,  # type: ignore[arg-type]
        catalog=parts["catalog"],
        state=SourceState(parts["state"]),
        holds=parts["holds"],
        guard=MassChangeGuard(0.10, 3),
        live_keys=lambda topic: set(live),
        clock=lambda: now,
    )


def test_snapshot_then_deltas_publish_each_version_once(parts: dict[str, Any]) -> None:
    writer = FakeWriter()
    now = datetime(2026, 9, 1, tzinfo=UTC)
    source = _source(parts, writer, set(), now)
    source.sync_once()
    assert len(writer.published) == 25
    # Bookmark: the run's start minus the margin, not the newest record seen.
    assert source.state.entity("users")["bookmark"] == "2026-08-31T23:59:55.000Z"

    store: SisStore = parts["store"]
    # New versions: stamped by the store's clock (now, in 2026 real time) - later than the bookmark.
    for i in range(12):
        store.update("users", f"u{i:03d}", {"givenName": "Z"}, kind="test")
    later = datetime.now(UTC).replace(year=2100)
    restarted = _source(parts, writer, {f"u{i:03d}" for i in range(25)}, later)
    report = restarted.sync_once()
    assert report.upserts == {"users": 12}
    again = _source(parts, writer, {f"u{i:03d}" for i in range(25)}, later).sync_once()
    assert again.total("upserts") == 0
    assert len(writer.published) == 37


def test_changes_newer_than_the_run_start_stay_unbookmarked_but_are_not_republished(
    parts: dict[str, Any],
) -> None:
    writer = FakeWriter()
    source = _source(parts, writer, set(), datetime(2026, 9, 1, tzinfo=UTC))
    source.sync_once()
    store: SisStore = parts["store"]
    change = store.update("users", "u001", {"givenName": "Q"}, kind="test")
    # The source's clock is behind the SIS's: the bookmark is capped at its own start.
    behind = datetime(2026, 9, 2, tzinfo=UTC)
    first = _source(parts, writer, set(), behind).sync_once()
    assert first.upserts == {"users": 1}
    state = SourceState(parts["state"]).entity("users")
    assert state["bookmark"] <= "2026-09-02T00:00:00.000Z"
    assert state["seen"]["u001"] == change.at
    second = _source(parts, writer, set(), behind).sync_once()
    assert second.total("upserts") == 0 and second.skipped == {"users": 1}


def test_a_bad_record_is_dead_lettered_and_the_rest_published(parts: dict[str, Any]) -> None:
    store: SisStore = parts["store"]
    store.put("users", {**_user(99, SAME), "enabledUser": "maybe"}, kind="test", stamp=False)
    writer = FakeWriter()
    report = _source(parts, writer, set(), datetime(2026, 9, 1, tzinfo=UTC)).sync_once()
    assert report.upserts == {"users": 25} and report.dead_letters == {"users": 1}
    assert "enabledUser" in writer.rejected[0][1]


def test_missing_keys_are_confirmed_before_tombstoning(parts: dict[str, Any]) -> None:
    writer = FakeWriter()
    live = {f"u{i:03d}" for i in range(25)} | {"ghost"}
    report = _source(parts, writer, live, datetime(2026, 9, 1, tzinfo=UTC)).sync_once()
    assert report.deletes == {"users": 1}
    assert ("sis.users.v1", "ghost", None) in writer.published


def test_mass_deletion_is_held_not_published(parts: dict[str, Any]) -> None:
    writer = FakeWriter()
    live = {f"u{i:03d}" for i in range(25)} | {f"gone{i}" for i in range(10)}
    report = _source(parts, writer, live, datetime(2026, 9, 1, tzinfo=UTC)).sync_once()
    assert "users" in report.held and not report.deletes
    [hold] = parts["holds"].list(status="pending")
    assert len(hold.deletions) == 10 and hold.live_before == 35
    assert not [p for p in writer.published if p[2] is None]


def test_guard_thresholds() -> None:
    guard = MassChangeGuard(0.10, 10)
    assert not guard.exceeds(1000, 100)
    assert guard.exceeds(1000, 101)
    assert not guard.exceeds(20, 9)  # too few to matter
    assert guard.exceeds(0, 10)


def test_delta_steps_over_pages_that_share_one_instant(parts: dict[str, Any]) -> None:
    writer = FakeWriter()
    _source(parts, writer, set(), datetime(2026, 9, 1, tzinfo=UTC)).sync_once()
    store: SisStore = parts["store"]
    burst = "2026-09-03T00:00:00.000Z"  # a bulk job stamps 23 records with one instant
    for i in range(23):
        store.put("users", {**_user(i, burst), "givenName": "Burst"}, kind="test", stamp=False)
    store.put("users", {**_user(200, "2026-09-03T00:00:01.000Z")}, kind="test", stamp=False)
    client_source = _source(parts, writer, set(), datetime(2026, 9, 5, tzinfo=UTC))
    report = client_source.sync_once()
    assert report.upserts == {"users": 24}
    burst_keys = [k for _, k, stamp in writer.published[25:] if stamp is not None]
    assert len(burst_keys) == len(set(burst_keys)) == 24


def test_a_bad_version_is_dead_lettered_once_not_at_every_poll(parts: dict[str, Any]) -> None:
    writer = FakeWriter()
    _source(parts, writer, set(), datetime(2026, 9, 1, tzinfo=UTC)).sync_once()
    store: SisStore = parts["store"]
    store.put(
        "users", {**_user(1, "2026-09-02T00:00:00.000Z"), "enabledUser": "maybe"}, kind="t", stamp=False
    )
    later = datetime(2026, 9, 5, tzinfo=UTC)
    first = _source(parts, writer, set(), later).sync_once()
    assert first.dead_letters == {"users": 1}
    assert SourceState(parts["state"]).entity("users")["bookmark"] == "2026-09-02T00:00:00.000Z"
    second = _source(parts, writer, set(), later).sync_once()
    assert second.dead_letters == {} and second.total("upserts") == 0
    # Fixed at the source: the new version is published.
    store.put("users", {**_user(1, "2026-09-03T00:00:00.000Z")}, kind="t", stamp=False)
    assert _source(parts, writer, set(), later).sync_once().upserts == {"users": 1}
