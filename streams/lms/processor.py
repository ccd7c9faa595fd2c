"""The events processor: ``lms.events.raw.v1`` in, the typed ``lms.*`` topics out, each event
once and each state in event-time order.

Canvas neither deduplicates nor orders its Live Events, and a Caliper sensor may send an event
twice. The raw topic is keyed by subject (see :mod:`streams.lms.events`), so every event of an
assignment, a submission, a grade or a user's activity reaches one partition, and this processor
keeps per subject:

- the newest event time applied, so an older state arriving late never replaces a newer one in a
  compacted topic (``superseded``, counted; the raw topic keeps it);
- the ids of the events received within ``window_ms`` of the subject's latest receipt (at most
  ``max_ids``), so a redelivery is absorbed. A duplicate of a state event is harmless whenever it
  arrives (it is never newer than what was applied); a duplicate of an activity event is caught
  within the window: the analytics store keys activity by event id, which catches the rest.

Deduplication is per subject: an id a sender reuses for an event about something else (the
Caliper specification's own examples do) is another event.

The state lives in memory and in the compacted ``lms.events.dedup.v1``, in the raw partition's
number; a partition's state is read back when the partition is assigned.

Per batch: the typed records are produced and confirmed, then the changed states, then the
offsets are committed. A crash between the steps re-processes the batch: records already written
are written again (same keys and values: the compacted topics and the analytics store take them
once), and nothing is lost, because a state is never durable before the records it vouches for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from streams.dlq import DeadLetterPublisher, SourcePosition
from streams.errors import ConfigError, DecodeError, RetriableError, ServiceUnavailable
from streams.lms.events import InvalidEvents, LmsEvent, Output, read_request
from streams.serde import Serdes, decode_key, encode_key

__all__ = ["EventsProcessor", "SubjectState", "decide"]

log = logging.getLogger(__name__)

EVENTS = PromCounter(
    "sislms_lms_events_processed",
    "LMS events read from the raw topic, by outcome (emitted, duplicate, superseded, raw_only, dead_letter).",
    ["outcome"],
)
EMITTED = PromCounter("sislms_lms_events_records", "Typed records written, by topic.", ["topic"])
LATENCY = Gauge(
    "sislms_lms_events_last_lag_seconds",
    "Seconds between the receipt of the last event processed and its typed records being confirmed.",
)


def _ms(value: Any) -> int:
    """Milliseconds since the epoch from a decoded ``timestamp-millis`` (a datetime) or an int."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


@dataclass
class SubjectState:
    """What the processor remembers of one subject: the newest event time applied, and the ids of
    the events received lately (id -> receipt time, oldest first)."""

    max_time: int
    recent: dict[str, int] = field(default_factory=dict)

    def to_record(self, subject: str) -> dict[str, Any]:
        return {
            "subject": subject,
            "maxEventTime": self.max_time,
            "recent": [{"eventId": i, "receivedAt": t} for i, t in self.recent.items()],
        }

    @classmethod
    def from_record(cls, value: dict[str, Any]) -> SubjectState:
        return cls(
            max_time=_ms(value["maxEventTime"]),
            recent={r["eventId"]: _ms(r["receivedAt"]) for r in value["recent"]},
        )


def decide(
    state: SubjectState | None, event: LmsEvent, received_ms: int, *, window_ms: int, max_ids: int
) -> tuple[str, list[Output], SubjectState]:
    """What to do with one event received at ``received_ms``: (outcome, records to write, the
    subject's new state).

    Outcomes: ``duplicate`` (its id was received within the window: nothing written, state
    unchanged), ``superseded`` (a state older than the one applied: only its activity record, if
    any, is written), ``emitted``. The window counts receipt times, not event times: it bounds
    how late a redelivery may come, whatever the event's own time.
    """
    when = event.event_time_ms
    assert when is not None and event.outputs
    if state is not None and event.event_id in state.recent:
        return "duplicate", [], state
    new = SubjectState(state.max_time, dict(state.recent)) if state is not None else SubjectState(when)
    stale = state is not None and when < state.max_time
    new.max_time = max(new.max_time, when)
    new.recent[event.event_id] = received_ms
    horizon = max(new.recent.values()) - window_ms
    keep = sorted((t, i) for i, t in new.recent.items() if t >= horizon)[-max_ids:]
    new.recent = {i: t for t, i in keep}
    if stale and any(o.is_state for o in event.outputs):
        return "superseded", [o for o in event.outputs if not o.is_state], new
    return "emitted", list(event.outputs), new


def _position(m: Message) -> SourcePosition:
    headers: list[tuple[str, bytes | None]] = []
    for item in m.headers() or ():
        k, v = item[0], item[1]
        headers.append((str(k), v if v is None or isinstance(v, bytes) else str(v).encode()))
    return SourcePosition(
        str(m.topic()), int(m.partition() or 0), int(m.offset() or 0), m.timestamp()[1], tuple(headers)
    )


class EventsProcessor:
    """Consumes the raw events of its assigned partitions and writes the typed topics.

    Args:
        consumer_conf: a consumer configuration with ``group.id`` (auto commit is turned off).
        producer: an idempotent producer (``streams.kafka.producer_config``).
        window_ms, max_ids: the deduplication window and the most ids kept per subject.
    """

    def __init__(
        self,
        *,
        consumer_conf: dict[str, Any],
        producer: Producer,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        raw_topic: str = "lms.events.raw.v1",
        dedup_topic: str = "lms.events.dedup.v1",
        topics: dict[str, str] | None = None,
        window_ms: int = 600_000,
        max_ids: int = 500,
        batch_size: int = 1000,
        stage: str = "lms_ingest",
    ) -> None:
        self.consumer_conf = {
            **consumer_conf,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
        self.producer = producer
        self.serdes = serdes
        self.dead_letters = dead_letters
        self.raw_topic = raw_topic
        self.dedup_topic = dedup_topic
        self.topics = topics or {}  # catalog name -> actual topic (tests rename them)
        self.window_ms = window_ms
        self.max_ids = max_ids
        self.batch_size = batch_size
        self.stage = stage
        self.states: dict[int, dict[str, SubjectState]] = {}
        self.counts: Counter[str] = Counter()
        self.last_batch_at: float | None = None
        self.last_error: str | None = None
        self._errors: list[str] = []
        self._consumer: Consumer | None = None
        for name in (raw_topic, dedup_topic, *self._out_topics()):
            serdes.catalog.topic(name)  # declared (ConfigError otherwise)

    def _out_topics(self) -> Iterable[str]:
        from streams.lms.events import ACTIVITY, ASSIGNMENTS, GRADES, SUBMISSIONS

        return [self.topics.get(t, t) for t in (ASSIGNMENTS, SUBMISSIONS, GRADES, ACTIVITY)]

    # --- partitions and their state ----------------------------------------------------------

    def _check_partitions(self, consumer: Consumer) -> None:
        meta = consumer.list_topics(timeout=30).topics
        counts = {
            t: len(meta[t].partitions) if t in meta and meta[t].partitions else 0
            for t in (self.raw_topic, self.dedup_topic)
        }
        if counts[self.raw_topic] == 0 or counts[self.raw_topic] != counts[self.dedup_topic]:
            raise ConfigError(
                f"{self.raw_topic} and {self.dedup_topic} must exist with the same number of partitions "
                f"(they have {counts[self.raw_topic]} and {counts[self.dedup_topic]}): "
                "`sislms topology apply`"
            )

    def restore(self, partition: int) -> dict[str, SubjectState]:
        """Read one partition of the state topic to its end."""
        conf = {k: v for k, v in self.consumer_conf.items() if k not in ("group.id",)}
        reader = Consumer({**conf, "group.id": f"restore-{self.dedup_topic}", "enable.partition.eof": True})
        states: dict[str, SubjectState] = {}
        try:
            low, high = reader.get_watermark_offsets(TopicPartition(self.dedup_topic, partition), timeout=30)
            if high <= low:
                return states
            reader.assign([TopicPartition(self.dedup_topic, partition, low)])
            serde = self.serdes[self.dedup_topic]
            done = False
            while not done:
                for m in reader.consume(5000, timeout=1.0):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            done = True
                            continue
                        raise ServiceUnavailable(f"restoring {self.dedup_topic}[{partition}]: {err.str()}")
                    key = decode_key(m.key())
                    if key is None:
                        continue
                    value = serde.decode(m.value())
                    if value is None:
                        states.pop(key, None)
                    else:
                        states[key] = SubjectState.from_record(value)
                    if int(m.offset() or 0) + 1 >= high:
                        done = True
        finally:
            reader.close()
        return states

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            started = time.monotonic()
            self.states[tp.partition] = self.restore(tp.partition)
            log.info(
                "%s[%d] assigned: %d subject states restored in %.1f s",
                self.raw_topic,
                tp.partition,
                len(self.states[tp.partition]),
                time.monotonic() - started,
            )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.states.pop(tp.partition, None)
        log.info("%s: %d partition(s) revoked", self.raw_topic, len(partitions))

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(self.consumer_conf)
        self._consumer = consumer
        self._check_partitions(consumer)
        consumer.subscribe([self.raw_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("events processor: reading %s", self.raw_topic)
        try:
            while not stop.is_set():
                try:
                    self.step(consumer)
                    self.last_error = None
                except RetriableError as exc:
                    self.last_error = str(exc)
                    log.warning("events processor: %s; retrying in %s s", exc, exc.retry_after)
                    stop.wait(exc.retry_after or 2)
                    self._rewind(consumer)
        finally:
            consumer.close()
            self._consumer = None
            log.info("events processor stopped: %s", dict(self.counts))

    def _rewind(self, consumer: Consumer) -> None:
        """After a failed batch: go back to the committed offsets (the batch is read again)."""
        assigned = consumer.assignment()
        if not assigned:
            return
        for tp in consumer.committed(assigned, timeout=30):
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
            self.states[tp.partition] = self.restore(tp.partition)

    def step(self, consumer: Consumer, timeout: float = 0.1) -> int:
        """Process one batch; returns the number of raw records read. ``consume`` waits for the
        whole timeout unless the batch fills: a short one keeps a quiet stream's latency low."""
        messages = consumer.consume(self.batch_size, timeout)
        offsets: dict[int, int] = {}
        writes: list[tuple[str, str, dict[str, Any], int]] = []  # topic, key, value, partition-free
        changed: dict[tuple[int, str], SubjectState] = {}
        received: list[int] = []
        read = 0
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ServiceUnavailable(f"consumer error: {err.str()}")
            read += 1
            partition, offset = int(m.partition() or 0), int(m.offset() or 0)
            offsets[partition] = offset + 1
            try:
                raw = self.serdes[self.raw_topic].decode(m.value())
                if raw is None:
                    continue  # a tombstone: nothing to do
                events = read_request(raw["body"])
            except (DecodeError, InvalidEvents) as exc:
                self.dead_letters.send(self.stage, exc, key=m.key(), value=m.value(), source=_position(m))
                self.counts["dead_letter"] += 1
                EVENTS.labels("dead_letter").inc()
                continue
            received_at = _ms(raw["receivedAt"])
            received.append(received_at)
            states = self.states.setdefault(partition, {})
            for event in events:
                if not event.outputs:
                    self.counts["raw_only"] += 1
                    EVENTS.labels("raw_only").inc()
                    continue
                prior = changed.get((partition, event.subject)) or states.get(event.subject)
                outcome, outputs, new = decide(
                    prior, event, received_at, window_ms=self.window_ms, max_ids=self.max_ids
                )
                self.counts[outcome] += 1
                EVENTS.labels(outcome).inc()
                if new is not prior:
                    changed[(partition, event.subject)] = new
                meta = {
                    "source": f"{event.format}:{event.sender}"[:200],
                    "sourceChangedAt": event.event_time_ms,
                    "ingestedAt": received_at,
                    "traceId": raw["meta"]["traceId"],
                    "sourceVersion": event.event_id,
                }
                for out in outputs:
                    writes.append(
                        (self.topics.get(out.topic, out.topic), out.key, {**out.value, "meta": meta}, 0)
                    )
        if not messages:
            return 0
        # 1. the typed records, confirmed
        for topic, key, value, _ in writes:
            self.producer.produce(
                topic,
                key=encode_key(key),
                value=self.serdes[topic].encode(value),
                on_delivery=self._delivered,
            )
            EMITTED.labels(topic).inc()
        self._flush("typed records")
        # 2. the states they vouch for, confirmed
        for (partition, subject), state in changed.items():
            self.producer.produce(
                self.dedup_topic,
                key=encode_key(subject),
                value=self.serdes[self.dedup_topic].encode(state.to_record(subject)),
                partition=partition,
                on_delivery=self._delivered,
            )
        self._flush("states")
        self.dead_letters.flush()
        # 3. the offsets
        if offsets:
            consumer.commit(
                offsets=[TopicPartition(self.raw_topic, p, o) for p, o in offsets.items()], asynchronous=False
            )
        for (partition, subject), state in changed.items():
            self.states.setdefault(partition, {})[subject] = state
        self.counts["records"] += len(writes)
        self.last_batch_at = time.time()
        if received:
            LATENCY.set(max(0.0, time.time() - max(received) / 1000))
        if read:
            log.debug("events processor: %d raw, %d records, %d states", read, len(writes), len(changed))
        return read

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _flush(self, what: str) -> None:
        remaining = self.producer.flush(60)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise RetriableError(f"{what}: {remaining} unconfirmed; errors: {errors[:3]}", retry_after=2)

    def health(self) -> tuple[bool, dict[str, Any]]:
        healthy = self.last_error is None
        return healthy, {
            "healthy": healthy,
            "counts": dict(self.counts),
            "partitions": sorted(self.states),
            "subjects": sum(len(s) for s in self.states.values()),
            "last_batch_at": self.last_batch_at,
            "last_error": self.last_error,
        }
