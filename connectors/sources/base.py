"""What every source shares: the writer that publishes records and dead letters with
confirmed delivery, the bookmark file, and the metrics.

A source converts what it reads into topic records, hands them to :class:`TopicWriter`, and
saves its bookmark with :class:`SourceState` only after :meth:`TopicWriter.flush` returned:
a crash between the two re-reads a little, never loses anything, and re-publishing the same
record is harmless on a compacted topic (consumers upsert guarded by the source version).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from streams.catalog import Catalog
from streams.dlq import DeadLetterPublisher, SourcePosition
from streams.errors import RetriableError
from streams.serde import Serdes, content_digest, encode_key

__all__ = ["METRICS", "SourceState", "TopicWriter", "change_meta"]

log = logging.getLogger(__name__)


class _Metrics:
    """Prometheus metrics of every source in this process (``/metrics`` serves them)."""

    def __init__(self) -> None:
        self.records = PromCounter(
            "sislms_source_records", "Records published by a source", ["source", "entity", "op"]
        )
        self.dead_letters = PromCounter(
            "sislms_source_dead_letters", "Records a source dead-lettered", ["source", "entity", "reason"]
        )
        self.polls = PromCounter(
            "sislms_source_polls", "Sync runs by kind and outcome", ["source", "kind", "outcome"]
        )
        self.lag = Gauge(
            "sislms_source_bookmark_lag_seconds", "Now minus the entity's bookmark", ["source", "entity"]
        )
        self.holds = Gauge("sislms_source_holds_pending", "Mass changes waiting for an operator", ["source"])


METRICS = _Metrics()


def change_meta(source: str, *, trace_id: str | None = None, ingested_at: datetime | None = None) -> dict:
    """A ``ChangeMeta`` (``sourceChangedAt`` left for the converter to fill)."""
    return {
        "source": source,
        "sourceChangedAt": None,
        "ingestedAt": ingested_at or datetime.now(UTC),
        "traceId": trace_id or str(uuid.uuid4()),
        "sourceVersion": None,
    }


class TopicWriter:
    """Publishes records, tombstones and dead letters; ``flush()`` confirms them all.

    Args:
        producer: an idempotent producer (``Kernel.producer()``).
        serdes: the topics' serdes.
        catalog: the topic catalog.
        source: the source's name for metrics and dead letters (``oneroster-rest:district``).
        stage: the dead-letter stage (``dlq.<stage>.v1``).
    """

    def __init__(
        self, producer: Producer, serdes: Serdes, catalog: Catalog, *, source: str, stage: str
    ) -> None:
        self.producer = producer
        self.serdes = serdes
        self.catalog = catalog
        self.source = source
        self.stage = stage
        self.dead_letters = DeadLetterPublisher(producer, serdes, catalog)
        self.counts: Counter[str] = Counter()
        self._errors: list[str] = []
        self._pending = 0
        #: topic -> key -> content digest of what the topic holds: an upsert equal to it is skipped
        self.baseline: Mapping[str, Mapping[str, bytes]] | None = None
        #: count what would be published, publish nothing (``sislms backfill sis --dry-run``)
        self.dry_run = False

    def _delivered(self, err: Any, msg: Any) -> None:
        self._pending -= 1
        if err is not None:
            self._errors.append(str(err))

    def _produce(
        self, topic: str, key: str, value: bytes | None, headers: list[tuple[str, str | bytes | None]]
    ) -> None:
        if self.dry_run:
            return
        while True:
            try:
                self.producer.produce(
                    topic, key=encode_key(key), value=value, headers=headers, on_delivery=self._delivered
                )
                self._pending += 1
                return
            except BufferError:
                self.producer.poll(0.5)  # local queue full: let deliveries drain

    def upsert(self, entity: str, topic: str, key: str, record: Mapping[str, Any]) -> None:
        held = None if self.baseline is None else self.baseline.get(topic)
        if held is not None and held.get(key) == content_digest(self.serdes[topic], record):
            self.counts[f"{entity}.unchanged"] += 1
            return
        value = self.serdes[topic].encode(dict(record))
        trace = str(record.get("meta", {}).get("traceId", ""))
        self._produce(topic, key, value, [("trace_id", trace.encode())])
        self.counts[f"{entity}.upsert"] += 1
        METRICS.records.labels(self.source, entity, "upsert").inc()

    def tombstone(self, entity: str, topic: str, key: str) -> None:
        self._produce(topic, key, None, [])
        self.counts[f"{entity}.delete"] += 1
        METRICS.records.labels(self.source, entity, "delete").inc()

    def reject(
        self,
        entity: str,
        error: BaseException,
        *,
        key: str | None,
        raw: bytes | None,
        origin: Mapping[str, str],
    ) -> None:
        """Dead-letter one input record with its original bytes and where it came from.

        ``origin`` (file, line, field, url, ...) goes into the dead letter's headers; the
        log line names only the entity, origin and error class, never the record's content.
        """
        headers = tuple((f"origin.{k}", str(v).encode()) for k, v in origin.items())
        if not self.dry_run:  # a dry run counts what it would dead-letter, and sends nothing
            self.dead_letters.send(
                self.stage,
                error,
                key=encode_key(key) if key else None,
                value=raw,
                source=SourcePosition(headers=headers),
            )
        reason = getattr(error, "reason", "unexpected_error")
        self.counts[f"{entity}.dead_letter"] += 1
        METRICS.dead_letters.labels(self.source, entity, reason).inc()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until the broker acknowledged everything; raise if anything failed."""
        remaining = self.producer.flush(timeout)
        self.dead_letters.flush(timeout)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise RetriableError(
                f"{remaining} record(s) unconfirmed; delivery errors: {errors[:3]}", retry_after=2
            )


class SourceState:
    """A source's bookmarks in one JSON file, replaced atomically on every save."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"version": 1, "entities": {}}
        if path.exists():
            try:
                self.data = json.loads(path.read_text())
            except ValueError as exc:
                raise RuntimeError(
                    f"{path}: the source state is not JSON ({exc}); fix or remove it"
                ) from None

    def entity(self, name: str) -> dict[str, Any]:
        return self.data.setdefault("entities", {}).setdefault(name, {})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
