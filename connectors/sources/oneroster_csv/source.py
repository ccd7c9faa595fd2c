"""The OneRoster CSV source: loads a 1.1 or 1.2 bundle (zip or folder) into the ``sis.*``
topics, for initial loads and backfills.

Rows come from :mod:`connectors.oneroster.csv` (which reports structural, encoding, value and
reference problems per row) and go through the same contract conversion as the REST source, so
a CSV backfill and a REST sync of the same district produce the same records. Every bad row
becomes a dead letter naming the file, the line, the field and the reason, with the row's
original bytes; the load goes on. A file the manifest marks ``bulk`` is the whole truth for its
entity: live keys it does not list become tombstones (held when they are too many, like every
mass deletion). ``delta`` files change only what they list.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.oneroster.csv import Row, RowError, open_bundle
from connectors.oneroster.models import ENTITIES, Entity, InvalidRecord, entity, is_deletion, to_record
from connectors.sources.base import TopicWriter, change_meta
from connectors.sources.holds import HoldBook, MassChangeGuard
from streams.catalog import Catalog
from streams.errors import SkippableError

__all__ = ["CsvLoadReport", "CsvSource", "RowRejected"]

log = logging.getLogger(__name__)

_PROGRESS_EVERY = 50_000
_PUBLISHED = frozenset(e.name for e in ENTITIES)


class RowRejected(SkippableError):
    """A CSV row the reader could not turn into a OneRoster object."""

    reason = "invalid_row"


@dataclass
class CsvLoadReport:
    bundle: str
    version: str = ""
    upserts: Counter[str] = field(default_factory=Counter)
    deletes: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[str, int | None, str | None, str]] = field(
        default_factory=list
    )  # file, line, field, reason
    held: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.upserts.values()) + sum(self.deletes.values())


class CsvSource:
    """Loads bundles for one named source."""

    def __init__(
        self,
        *,
        name: str,
        writer: TopicWriter,
        catalog: Catalog,
        holds: HoldBook,
        guard: MassChangeGuard,
        live_keys: Any,
        entities: tuple[str, ...] | None = None,
        topics: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.topics = dict(topics or {})
        self.source = f"oneroster-csv:{name}"
        self.writer = writer
        self.catalog = catalog
        self.holds = holds
        self.guard = guard
        self._read_live_keys = live_keys
        self.entities = set(entities) if entities else None

    def topic(self, ent: Entity) -> str:
        """The topic an entity is published to (the catalog's, unless overridden)."""
        return self.topics.get(ent.name, ent.topic)

    def load(self, path: Path | str) -> CsvLoadReport:
        """Publish one bundle; returns what it did once every record is confirmed."""
        started = time.monotonic()
        bundle = open_bundle(path)
        report = CsvLoadReport(bundle=str(path), version=bundle.version)
        loaded_at = datetime.now(UTC)
        seen: dict[str, set[str]] = {}
        deleted: dict[str, list[str]] = {}
        done = 0
        for item in bundle.rows():
            done += 1
            if done % _PROGRESS_EVERY == 0:
                log.info("%s: %d rows read from %s", self.source, done, path)
            if isinstance(item, RowError):
                self._reject(item.file, item.line, item.field, item.reason, item.raw, report)
                if item.entity in _PUBLISHED and item.sourced_id:
                    # Rejected is not deleted: what the topic holds for it stays.
                    seen.setdefault(item.entity, set()).add(item.sourced_id)
                continue
            if self.entities is not None and item.entity not in self.entities:
                continue
            self._row(item, loaded_at, report, seen, deleted)
        self.writer.flush()  # the upserts first: a deletion is decided on a confirmed load
        for ent in ENTITIES:
            name = ent.name
            if not bundle.has(name) or (self.entities is not None and name not in self.entities):
                continue
            gone: list[str] = []
            if bundle.mode.get(name) == "bulk":
                # A bulk file is the whole truth for its entity: what it does not list is gone.
                live = self._read_live_keys(self.topic(ent))
                gone = sorted(live - seen.get(name, set()) - set(deleted.get(name, [])))
            self._deletions(name, deleted.get(name, []) + gone, report)
        self.writer.flush()
        report.seconds = time.monotonic() - started
        log.info(
            "%s: loaded %s (OneRoster %s) in %.1f s: %d upserted, %d deleted, %d rejected row(s)%s",
            self.source, path, report.version, report.seconds, sum(report.upserts.values()),
            sum(report.deletes.values()), len(report.rejected),
            f", deletions held: {report.held}" if report.held else "",
        )  # fmt: skip
        return report

    def _reject(
        self,
        file: str,
        line: int | None,
        field_name: str | None,
        reason: str,
        raw: bytes,
        report: CsvLoadReport,
    ) -> None:
        where = f"{file}:{line}" if line else file
        error = RowRejected(f"{where}: {field_name + ': ' if field_name else ''}{reason}")
        origin = {"file": file, "line": str(line or ""), "field": field_name or ""}
        self.writer.reject(file.removesuffix(".csv"), error, key=None, raw=raw, origin=origin)
        report.rejected.append((file, line, field_name, reason))

    def _row(
        self,
        row: Row,
        loaded_at: datetime,
        report: CsvLoadReport,
        seen: dict[str, set[str]],
        deleted: dict[str, list[str]],
    ) -> None:
        ent = entity(row.entity)
        schema = self.catalog.contract(self.topic(ent)).schema
        try:
            record = to_record(
                ent.name, row.obj, schema, meta=change_meta(self.source, ingested_at=loaded_at),
                default_modified=loaded_at,
            )  # fmt: skip
        except InvalidRecord as exc:
            self._reject(row.file, row.line, exc.field, exc.message, row.raw, report)
            if row.obj.get("sourcedId"):
                seen.setdefault(ent.name, set()).add(str(row.obj["sourcedId"]))
            return
        key = record["sourcedId"]
        if is_deletion(row.obj):
            deleted.setdefault(ent.name, []).append(key)
            seen.setdefault(ent.name, set())
            return
        self.writer.upsert(ent.name, self.topic(ent), key, record)
        seen.setdefault(ent.name, set()).add(key)
        report.upserts[ent.name] += 1

    def _deletions(self, name: str, keys: list[str], report: CsvLoadReport) -> None:
        if not keys:
            return
        ent = entity(name)
        live = self._read_live_keys(self.topic(ent))
        keys = [k for k in dict.fromkeys(keys) if k in live]
        if not keys:
            return
        note = f"CSV bundle {report.bundle}: rows marked tobedeleted or missing from a bulk file"
        hold = self.holds.hold_if_mass(
            self.guard, source=self.source, entity=name, topic=self.topic(ent), live_before=len(live),
            deletions=keys, note=note,
        )  # fmt: skip
        if hold is not None:
            report.held[name] = hold.id
            return
        for key in keys:
            self.writer.tombstone(name, self.topic(ent), key)
        report.deletes[name] += len(keys)

    def apply_decided_holds(self) -> int:
        """Publish the tombstones of approved holds of this source; returns how many holds."""
        approved = self.holds.list(source=self.source, status="approved")
        for hold in approved:
            self.holds.apply(hold, self.writer)
        return len(approved)
