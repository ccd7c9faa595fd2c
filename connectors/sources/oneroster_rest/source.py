"""The OneRoster 1.2 REST source: a paged snapshot, then delta polling on ``dateLastModified``.

Per entity (orgs ... results, in dependency order):

- **Snapshot** (no bookmark yet, or ``force_snapshot``): read every page; publish each record
  keyed by ``sourcedId``; records the provider marks ``tobedeleted``, and live keys of the topic
  that the snapshot did not return (each confirmed by a GET first), become tombstones. The
  bookmark is the snapshot's start time minus the clock-skew margin, so nothing that changed
  while the pages were read is missed.
- **Delta**: ``filter=dateLastModified>='<bookmark>'``, sorted ascending, read by keyset (the
  next page starts at the last page's newest time), so a record that changes while we read
  moves ahead of us instead of shifting an offset. Records already published at the same
  ``dateLastModified`` (kept in the state for the margin window) are skipped: a restarted
  source re-reads a few seconds but publishes nothing twice.
- The bookmark is the newest ``dateLastModified`` published, capped at the run's start minus the
  margin (Singer's rule against clock skew and late commits), and is saved only after the
  producer confirmed every record of the run.
- Deletions beyond the mass-change guard are held (:mod:`connectors.sources.holds`).

A record that does not fit its contract goes to the dead-letter topic with its JSON bytes and
the reason, and the run goes on. A page that is not JSON even after retries is dead-lettered and
fails the run (its bookmark stays), so nothing it held is lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.oneroster.errors import UnknownObject
from connectors.oneroster.filter import Operator, Predicate
from connectors.oneroster.models import (
    ENTITIES,
    Entity,
    InvalidRecord,
    entity,
    format_instant,
    is_deletion,
    parse_instant,
    to_record,
)
from connectors.oneroster.query import Query, SortOrder
from connectors.sources.base import METRICS, SourceState, TopicWriter, change_meta
from connectors.sources.holds import HoldBook, MassChangeGuard
from connectors.sources.oneroster_rest.client import BadPayload, OneRosterClient
from streams.catalog import Catalog
from streams.errors import FatalError, SislmsError

__all__ = ["RestSource", "RestSourceConfig", "SyncReport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestSourceConfig:
    name: str = "district-sis"
    entities: tuple[str, ...] = tuple(e.name for e in ENTITIES)
    page_size: int = 1000
    poll_interval_s: float = 10.0
    clock_skew_s: float = 5.0
    verify_missing_limit: int = 1000

    @property
    def source(self) -> str:
        return f"oneroster-rest:{self.name}"


@dataclass
class SyncReport:
    """What one run did, per entity: counts only (never record content)."""

    kind: dict[str, str] = field(default_factory=dict)  # entity -> snapshot | delta
    upserts: dict[str, int] = field(default_factory=dict)
    deletes: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # already published (same version)
    dead_letters: dict[str, int] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # entity -> hold id
    seconds: float = 0.0

    def total(self, what: str) -> int:
        values: Mapping[str, int] = getattr(self, what)
        return sum(values.values())


class RestSource:
    """Syncs one OneRoster provider into the ``sis.*`` topics."""

    def __init__(
        self,
        config: RestSourceConfig,
        *,
        client: OneRosterClient,
        writer: TopicWriter,
        catalog: Catalog,
        state: SourceState,
        holds: HoldBook,
        guard: MassChangeGuard,
        live_keys: Callable[[str], set[str]],
        topics: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.topics = dict(topics or {})
        self.client = client
        self.writer = writer
        self.catalog = catalog
        self.state = state
        self.holds = holds
        self.guard = guard
        self._read_live_keys = live_keys
        self.clock = clock
        self._live: dict[str, set[str]] = {}
        self._trigger = threading.Event()
        self.last_report: SyncReport | None = None
        self.last_error: str | None = None
        self.last_success: datetime | None = None
        self.runs = 0

    # --- the loop ---------------------------------------------------------------------------
    def trigger(self) -> None:
        """Start a delta pull now (the SIS announced a change)."""
        self._trigger.set()

    def run(self, stop: threading.Event) -> None:
        """Sync, then wait for the interval or a trigger, until ``stop`` is set."""
        while not stop.is_set():
            self._trigger.clear()
            try:
                self.sync_once()
            except FatalError:
                raise
            except SislmsError as exc:
                log.error("%s: run failed, retried at the next interval: %s", self.config.source, exc)
            self._trigger.wait(self.config.poll_interval_s)
            if stop.is_set():
                return

    def health(self) -> tuple[bool, dict[str, Any]]:
        healthy = self.last_error is None and self.runs > 0
        return healthy, {
            "source": self.config.source,
            "runs": self.runs,
            "lastSuccess": self.last_success.isoformat() if self.last_success else None,
            "lastError": self.last_error,
            "bookmarks": {n: e.get("bookmark") for n, e in self.state.data.get("entities", {}).items()},
            "holdsPending": len(self.holds.list(source=self.config.source, status="pending")),
        }

    def sync_once(self, *, force_snapshot: bool = False) -> SyncReport:
        """One run over every entity; raises when the run could not complete."""
        started = time.monotonic()
        report = SyncReport()
        self.runs += 1
        try:
            self._apply_decided_holds()
            for name in self.config.entities:
                ent = entity(name)
                bookmark = self.state.entity(name).get("bookmark")
                if bookmark is None or force_snapshot:
                    self._snapshot(ent, report)
                else:
                    self._delta(ent, bookmark, report)
        except Exception as exc:
            self.last_error = f"{exc.__class__.__name__}: {str(exc)[:300]}"
            METRICS.polls.labels(self.config.source, "run", "failed").inc()
            raise
        report.seconds = time.monotonic() - started
        self.last_error, self.last_success, self.last_report = None, self.clock(), report
        METRICS.polls.labels(self.config.source, "run", "ok").inc()
        METRICS.holds.labels(self.config.source).set(
            len(self.holds.list(source=self.config.source, status="pending"))
        )
        return report

    # --- pieces -------------------------------------------------------------------------------
    def topic(self, ent: Entity) -> str:
        """The topic an entity is published to (the catalog's, unless overridden)."""
        return self.topics.get(ent.name, ent.topic)

    def live(self, ent: Entity) -> set[str]:
        if ent.name not in self._live:
            self._live[ent.name] = self._read_live_keys(self.topic(ent))
        return self._live[ent.name]

    def _meta_now(self) -> dict[str, Any]:
        return change_meta(self.config.source)

    def _convert(self, ent: Entity, obj: Any, url: str) -> dict[str, Any] | None:
        """The record for ``obj``, or None after dead-lettering it."""
        key = obj.get("sourcedId") if isinstance(obj, dict) else None
        try:
            if not key or not isinstance(key, str):
                raise InvalidRecord(ent.name, "sourcedId", "is required but missing")
            meta = self._meta_now()
            meta["sourceVersion"] = obj.get("dateLastModified")
            return to_record(ent.name, obj, self.catalog.contract(self.topic(ent)).schema, meta=meta)
        except InvalidRecord as exc:
            raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
            self.writer.reject(
                ent.name,
                exc,
                key=key if isinstance(key, str) else None,
                raw=raw,
                origin={"url": url, "field": exc.field},
            )
            return None

    def _publish(
        self, ent: Entity, records: Iterable[tuple[str, dict[str, Any] | None]], report: SyncReport
    ) -> None:
        live = self.live(ent)
        returned: set[str] = set()
        for key, record in records:
            if record is None:
                self.writer.tombstone(ent.name, self.topic(ent), key)
                live.discard(key)
                report.deletes[ent.name] = report.deletes.get(ent.name, 0) + 1
            else:
                self.writer.upsert(ent.name, self.topic(ent), key, record)
                if key not in live:
                    returned.add(key)
                live.add(key)
                report.upserts[ent.name] = report.upserts.get(ent.name, 0) + 1
        if returned and self.holds.list(source=self.config.source, status="pending"):
            self.holds.key_returned(self.config.source, ent.name, returned)

    def _deletions(self, ent: Entity, keys: Sequence[str], report: SyncReport, note: str) -> None:
        """Tombstone ``keys``, or hold them when they are too many."""
        live = self.live(ent)
        keys = [k for k in dict.fromkeys(keys) if k in live]
        if not keys:
            return
        hold = self.holds.hold_if_mass(
            self.guard, source=self.config.source, entity=ent.name, topic=self.topic(ent),
            live_before=len(live), deletions=list(keys), note=note,
        )  # fmt: skip
        if hold is not None:
            report.held[ent.name] = hold.id
            return
        self._publish(ent, ((k, None) for k in keys), report)

    def _apply_decided_holds(self) -> None:
        for hold in self.holds.list(source=self.config.source, status="approved"):
            self.holds.apply(hold, self.writer)
            self.live(entity(hold.entity)).difference_update(hold.deletions)

    def _finish(
        self, ent: Entity, report: SyncReport, bookmark: str, seen: dict[str, str], kind: str
    ) -> None:
        self.writer.flush()  # raises unless every record is confirmed: the bookmark then stays
        entry = self.state.entity(ent.name)
        entry.update(
            {
                "bookmark": bookmark,
                "seen": {k: v for k, v in seen.items() if v >= bookmark},
                "replication_key": "dateLastModified",
                f"last_{kind}": format_instant(self.clock()),
            }
        )
        self.state.save()
        report.kind[ent.name] = kind
        lag = (self.clock() - parse_instant(bookmark)).total_seconds()
        METRICS.lag.labels(self.config.source, ent.name).set(max(0.0, lag))
        METRICS.polls.labels(self.config.source, kind, "ok").inc()
        log.info(
            "%s %s %s: %d upserted, %d deleted, %d already published, %d dead-lettered%s; bookmark %s",
            self.config.source,
            ent.name,
            kind,
            report.upserts.get(ent.name, 0),
            report.deletes.get(ent.name, 0),
            report.skipped.get(ent.name, 0),
            report.dead_letters.get(ent.name, 0),
            f", deletions held ({report.held[ent.name]})" if ent.name in report.held else "",
            bookmark,
        )

    def _count_dead(self, ent: Entity, report: SyncReport, before: int) -> None:
        after = self.writer.counts[f"{ent.name}.dead_letter"]
        if after > before:
            report.dead_letters[ent.name] = report.dead_letters.get(ent.name, 0) + after - before

    def _bad_page(self, ent: Entity, exc: BadPayload) -> None:
        self.writer.reject(ent.name, exc, key=None, raw=exc.body, origin={"url": exc.url})
        self.writer.flush()

    def _snapshot(self, ent: Entity, report: SyncReport) -> None:
        started = self.clock()
        dead_before = self.writer.counts[f"{ent.name}.dead_letter"]
        live_before = set(self.live(ent))
        bookmark = format_instant(started - timedelta(seconds=self.config.clock_skew_s))
        seen: dict[str, str] = {}
        returned: set[str] = set()
        deleted: list[str] = []
        try:
            for page in self.client.pages(ent, Query(limit=self.config.page_size)):
                batch: list[tuple[str, dict[str, Any] | None]] = []
                for obj in page.records:
                    record = self._convert(ent, obj, page.url)
                    if record is None:
                        bad_key = obj.get("sourcedId") if isinstance(obj, dict) else None
                        if isinstance(bad_key, str) and bad_key:
                            returned.add(bad_key)  # dead-lettered is not deleted
                            seen[bad_key] = str(obj.get("dateLastModified"))
                        continue
                    key = record["sourcedId"]
                    if is_deletion(obj):
                        deleted.append(key)
                        continue
                    returned.add(key)
                    seen[key] = str(obj.get("dateLastModified"))
                    batch.append((key, record))
                self._publish(ent, batch, report)
        except BadPayload as exc:
            self._bad_page(ent, exc)
            raise
        missing = self._confirm_missing(ent, sorted(live_before - returned - set(deleted)), report)
        self._count_dead(ent, report, dead_before)
        self._deletions(ent, deleted + missing, report, note="snapshot: tobedeleted or missing at the source")
        self._finish(ent, report, bookmark, seen, "snapshot")

    def _confirm_missing(self, ent: Entity, keys: list[str], report: SyncReport) -> list[str]:
        """Keys the snapshot did not return, confirmed gone one by one (paging may skip a record
        when the provider deletes rows while we read). More than the limit: a mass change, held
        by the guard as they are."""
        if len(keys) > self.config.verify_missing_limit:
            return keys
        gone: list[str] = []
        for key in keys:
            try:
                obj = self.client.get_one(ent, key)
            except UnknownObject:
                gone.append(key)
                continue
            if is_deletion(obj):
                gone.append(key)
                continue
            record = self._convert(ent, obj, f"{ent.path}/{key}")
            if record is not None:
                self._publish(ent, [(key, record)], report)
        return gone

    def _delta(self, ent: Entity, bookmark: str, report: SyncReport) -> None:
        started = self.clock()
        dead_before = self.writer.counts[f"{ent.name}.dead_letter"]
        entry = self.state.entity(ent.name)
        published: dict[str, str] = dict(entry.get("seen", {}))
        cursor, offset = bookmark, 0
        changes: dict[str, tuple[dict[str, Any], Any]] = {}  # last version per key wins
        newest = bookmark
        run_seen: set[tuple[str, str]] = set()
        try:
            while True:
                query = Query(
                    limit=self.config.page_size,
                    offset=offset,
                    sort="dateLastModified",
                    order_by=SortOrder.ASC,
                    filter=Predicate("dateLastModified", Operator.GE, cursor),
                )
                page = self.client.get_page(ent, query)
                for obj in page.records:
                    stamp = str(obj.get("dateLastModified", "")) if isinstance(obj, dict) else ""
                    key = obj.get("sourcedId") if isinstance(obj, dict) else None
                    if (key, stamp) in run_seen:
                        continue
                    run_seen.add((str(key), stamp))
                    if isinstance(key, str) and published.get(key) == stamp:
                        report.skipped[ent.name] = report.skipped.get(ent.name, 0) + 1
                        continue
                    record = self._convert(ent, obj, page.url)
                    if record is None:
                        # Dead-lettered once: remember this version so the next poll skips it.
                        if isinstance(key, str) and key:
                            published[key] = stamp
                            newest = max(newest, _canonical(stamp) or newest)
                        continue
                    changes.pop(record["sourcedId"], None)
                    changes[record["sourcedId"]] = (record, obj)
                    newest = max(newest, format_instant(record["dateLastModified"]))
                if len(page.records) < self.config.page_size and (
                    page.total is None or page.total <= offset + len(page.records)
                ):
                    break
                stamps = [str(o.get("dateLastModified", "")) for o in page.records if isinstance(o, dict)]
                last = max(stamps) if stamps else cursor
                if last == cursor:
                    offset += len(page.records)  # a whole page at one instant: step over it
                else:
                    cursor, offset = last, 0
        except BadPayload as exc:
            self._bad_page(ent, exc)
            raise
        self._count_dead(ent, report, dead_before)
        deletions = [key for key, (_, obj) in changes.items() if is_deletion(obj)]
        upserts = [(key, record) for key, (record, obj) in changes.items() if not is_deletion(obj)]
        self._publish(ent, upserts, report)
        self._deletions(ent, deletions, report, note="delta: tobedeleted at the source")
        for key, (record, _) in changes.items():
            published[key] = format_instant(record["dateLastModified"])
        cap = format_instant(started - timedelta(seconds=self.config.clock_skew_s))
        new_bookmark = max(bookmark, min(newest, cap))
        self._finish(ent, report, new_bookmark, published, "delta")


def _canonical(stamp: str) -> str | None:
    """A served dateLastModified in our sortable form, or None when it does not parse."""
    try:
        return format_instant(parse_instant(stamp))
    except ValueError:
        return None
