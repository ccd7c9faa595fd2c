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
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message, Producer
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from streams.dlq import DeadLetterPublisher, position
from streams.errors import DecodeError
from streams.lms.events import InvalidEvents, LmsEvent, Output, read_request
from streams.serde import Serdes, timestamp_ms
from streams.stateful import Batch, StatefulProcessor

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
            max_time=timestamp_ms(value["maxEventTime"]),
            recent={r["eventId"]: timestamp_ms(r["receivedAt"]) for r in value["recent"]},
        )


def decide(
    state: SubjectState | None,
    event: LmsEvent,
    received_ms: int,
    *,
    window_ms: int,
    max_ids: int,
    owned: bool = False,
) -> tuple[str, list[Output], SubjectState]:
    """What to do with one event received at ``received_ms``: (outcome, records to write, the
    subject's new state).

    Outcomes: ``duplicate`` (its id was received within the window: nothing written, state
    unchanged), ``superseded`` (a state older than the one applied: only its activity record, if
    any, is written), ``emitted``. The window counts receipt times, not event times: it bounds
    how late a redelivery may come, whatever the event's own time.

    ``recent`` is kept in receipt order. With ``owned`` the state is the caller's own copy (made
    by an earlier call in the same batch) and is changed in place rather than copied.
    """
    when = event.event_time_ms
    assert when is not None and event.outputs
    if state is not None and event.event_id in state.recent:
        return "duplicate", [], state
    if state is None:
        new = SubjectState(when)
    elif owned:
        new = state
    else:
        new = SubjectState(state.max_time, dict(state.recent))
    stale = state is not None and when < state.max_time
    new.max_time = max(new.max_time, when)
    recent = new.recent
    last = next(reversed(recent.values()), None) if recent else None
    if last is None or received_ms > last:
        # the usual case, a receipt later than any kept: appended, the oldest let go from the front
        recent[event.event_id] = received_ms
        horizon = received_ms - window_ms
        while len(recent) > max_ids or next(iter(recent.values())) < horizon:
            del recent[next(iter(recent))]
    else:  # a receipt out of order (or at the same time): the ids put in order again
        recent[event.event_id] = received_ms
        horizon = max(recent.values()) - window_ms
        keep = sorted((t, i) for i, t in recent.items() if t >= horizon)[-max_ids:]
        new.recent = {i: t for t, i in keep}
    if stale and any(o.is_state for o in event.outputs):
        return "superseded", [o for o in event.outputs if not o.is_state], new
    return "emitted", list(event.outputs), new


class EventsProcessor(StatefulProcessor[SubjectState]):
    """Consumes the raw events of its assigned partitions and writes the typed topics.

    Args:
        consumer_conf: a consumer configuration with ``group.id`` (auto commit is turned off).
        producer: an idempotent producer (``streams.kafka.producer_config``).
        window_ms, max_ids: the deduplication window and the most ids kept per subject.
    """

    what = "events processor"

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
        super().__init__(
            consumer_conf=consumer_conf,
            producer=producer,
            serdes=serdes,
            dead_letters=dead_letters,
            input_topic=raw_topic,
            state_topic=dedup_topic,
            batch_size=batch_size,
            stage=stage,
        )
        self.raw_topic = raw_topic
        self.dedup_topic = dedup_topic
        self.topics = topics or {}  # catalog name -> actual topic (tests rename them)
        self.window_ms = window_ms
        self.max_ids = max_ids
        self._received: list[int] = []
        for name in self._out_topics():
            serdes.catalog.topic(name)  # declared (ConfigError otherwise)

    def _out_topics(self) -> Iterable[str]:
        from streams.lms.events import ACTIVITY, ASSIGNMENTS, GRADES, SUBMISSIONS

        return [self.topics.get(t, t) for t in (ASSIGNMENTS, SUBMISSIONS, GRADES, ACTIVITY)]

    def state_from_record(self, value: dict[str, Any]) -> SubjectState:
        return SubjectState.from_record(value)

    def state_to_record(self, key: str, state: SubjectState) -> dict[str, Any]:
        return state.to_record(key)

    def handle(self, messages: list[Message]) -> Batch[SubjectState]:
        batch: Batch[SubjectState] = Batch()
        self._received = []
        for m in messages:
            partition = int(m.partition() or 0)
            try:
                raw = self.serdes[self.raw_topic].decode(m.value())
                if raw is None:
                    continue  # a tombstone: nothing to do
                events = read_request(raw["body"])
            except (DecodeError, InvalidEvents) as exc:
                self.dead_letters.send(self.stage, exc, key=m.key(), value=m.value(), source=position(m))
                self.counts["dead_letter"] += 1
                EVENTS.labels("dead_letter").inc()
                continue
            received_at = timestamp_ms(raw["receivedAt"])
            self._received.append(received_at)
            for event in events:
                if not event.outputs:
                    self.counts["raw_only"] += 1
                    EVENTS.labels("raw_only").inc()
                    continue
                mine = batch.changed.get((partition, event.subject))
                prior = mine or self.state(partition, event.subject)
                outcome, outputs, new = decide(
                    prior, event, received_at, window_ms=self.window_ms, max_ids=self.max_ids,
                    owned=mine is not None,
                )  # fmt: skip
                self.counts[outcome] += 1
                EVENTS.labels(outcome).inc()
                if new is not prior:
                    batch.changed[(partition, event.subject)] = new
                meta = {
                    "source": f"{event.format}:{event.sender}"[:200],
                    "sourceChangedAt": event.event_time_ms,
                    "ingestedAt": received_at,
                    "traceId": raw["meta"]["traceId"],
                    "sourceVersion": event.event_id,
                }
                for out in outputs:
                    topic = self.topics.get(out.topic, out.topic)
                    batch.writes.append((topic, out.key, {**out.value, "meta": meta}))
                    EMITTED.labels(topic).inc()
        return batch

    def committed(self, batch: Batch[SubjectState]) -> None:
        if self._received:
            LATENCY.set(max(0.0, time.time() - max(self._received) / 1000))
