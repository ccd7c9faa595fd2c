"""The grade passback sink: ``lms.assignments.v1`` and ``lms.grades.v1`` in, the SIS gradebook
(OneRoster 1.2 line items and results) out, each outcome on ``lms.grades.passback.v1``.

Records are handled in order, one partition's after another's as the consumer hands them over.
A transient failure (the SIS or the LMS busy or away) is retried with backoff, never dropped; a
refusal (a 4xx) goes to ``dlq.sis_gradebook.v1`` with the record's bytes and the reason, and the
grade's outcome says ``dead_lettered``. Offsets are committed once every outcome and dead letter of
the batch is on the broker: a sink stopped half-way writes the rest again on restart, which the
idempotent ``PUT``\\s absorb.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

from connectors.retry import backoff_delay
from connectors.sinks.oneroster_gradebook.passback import Passback, PassbackOutcome
from streams.dlq import DeadLetterPublisher, position
from streams.errors import DecodeError, RetriableError, ServiceUnavailable, SkippableError
from streams.serde import Serdes, encode_key, timestamp_ms

__all__ = ["GradebookSink"]

log = logging.getLogger(__name__)

OUTCOMES = PromCounter(
    "sislms_passback_outcomes",
    "Grades and assignments handled by the passback, by kind and outcome.",
    ["kind", "outcome"],
)
LATENCY = Histogram(
    "sislms_passback_latency_seconds",
    "From a grade's change in the LMS to its result written in the SIS.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

PIPELINE_LATENCY = Histogram(
    "sislms_passback_pipeline_seconds",
    "From the grade's event taken by the event receiver (meta.ingestedAt) to its result written in "
    "the SIS: the pipeline's part of the latency, whatever the LMS's clock says.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


class GradebookSink:
    """Consumes assignments and grades and writes them to the SIS through ``passback``."""

    def __init__(
        self,
        *,
        consumer_conf: dict[str, Any],
        producer: Producer,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        passback: Passback,
        assignments_topic: str = "lms.assignments.v1",
        grades_topic: str = "lms.grades.v1",
        outcomes_topic: str = "lms.grades.passback.v1",
        stage: str = "sis_gradebook",
        batch_size: int = 200,
        max_backoff_s: float = 30.0,
    ) -> None:
        for name in (assignments_topic, grades_topic, outcomes_topic):
            serdes.catalog.topic(name)
        self.consumer_conf = {**consumer_conf, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        self.producer = producer
        self.serdes = serdes
        self.dead_letters = dead_letters
        self.passback = passback
        self.assignments_topic = assignments_topic
        self.grades_topic = grades_topic
        self.outcomes_topic = outcomes_topic
        self.stage = stage
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_batch_at: float | None = None
        self._errors: list[str] = []
        self._rng = random.Random()

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(self.consumer_conf)
        consumer.subscribe([self.assignments_topic, self.grades_topic])
        log.info("grade passback: reading %s and %s", self.assignments_topic, self.grades_topic)
        last_report = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    self.step(consumer, stop)
                except RetriableError as exc:
                    self.last_error = str(exc)
                    log.warning("grade passback: %s; reading the batch again", exc)
                    stop.wait(exc.retry_after or 2)
                    self._rewind(consumer)
                if time.monotonic() - last_report >= 30:
                    last_report = time.monotonic()
                    log.info("grade passback: %s", dict(self.counts))
        finally:
            consumer.close()
            log.info("grade passback stopped: %s", dict(self.counts))

    def _rewind(self, consumer: Consumer) -> None:
        """Back to the committed offsets: what was not committed is handled again."""
        assigned = consumer.assignment()
        for tp in consumer.committed(assigned, timeout=30) if assigned else []:
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))

    def step(self, consumer: Consumer, stop: threading.Event, timeout: float = 0.1) -> int:
        """Handle one batch (``consume`` waits for the whole timeout unless the batch fills: a
        short one keeps a grade's latency low)."""
        messages = consumer.consume(self.batch_size, timeout)
        offsets: dict[tuple[str, int], int] = {}
        handled = 0
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ServiceUnavailable(f"consumer error: {err.str()}")
            if stop.is_set():
                break  # the rest is read again by the next run
            self._handle(m, stop)
            if stop.is_set() and self.last_error is not None:
                break  # interrupted while retrying: not handled
            offsets[(str(m.topic()), int(m.partition() or 0))] = int(m.offset() or 0) + 1
            handled += 1
        if not offsets:
            return handled
        remaining = self.producer.flush(60)
        self.dead_letters.flush()
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise RetriableError(f"passback outcomes unconfirmed: {remaining}; {errors[:3]}", retry_after=2)
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
        self.last_batch_at = time.time()
        return handled

    def _handle(self, m: Message, stop: threading.Event) -> None:
        topic = str(m.topic())
        kind = "grade" if topic == self.grades_topic else "assignment"
        try:
            value = self.serdes[topic].decode(m.value())
        except DecodeError as exc:
            self._dead_letter(m, exc, kind)
            return
        if value is None:
            return  # a tombstone
        attempt = 0
        while True:
            try:
                if kind == "grade":
                    outcome = self.passback.write_grade(value)
                else:
                    outcome = self.passback.write_assignment(value)
                self.last_error = None
                break
            except RetriableError as exc:
                self.last_error = f"{exc.__class__.__name__}: {str(exc)[:200]}"
                delay = backoff_delay(attempt, exc.retry_after, self.max_backoff_s, self._rng)
                attempt += 1
                self.counts["retries"] += 1
                log.warning("passback %s: %s; retry %d in %.1f s", kind, self.last_error, attempt, delay)
                if stop.wait(delay):
                    return
            except SkippableError as exc:
                self._dead_letter(m, exc, kind)
                if kind == "grade":
                    self._outcome(value, PassbackOutcome("dead_lettered", getattr(exc, "reason", "refused")))
                self.last_error = None
                return
        self.counts[f"{kind}.{outcome.status}"] += 1
        OUTCOMES.labels(kind, outcome.status).inc()
        if kind == "grade":
            self._outcome(value, outcome)
            if outcome.status == "written":
                now = time.time()
                LATENCY.observe(max(0.0, now - timestamp_ms(value["gradedAt"]) / 1000))
                ingested = (value.get("meta") or {}).get("ingestedAt")
                if ingested is not None:
                    PIPELINE_LATENCY.observe(max(0.0, now - timestamp_ms(ingested) / 1000))

    def _dead_letter(self, m: Message, exc: Exception, kind: str) -> None:
        self.dead_letters.send(self.stage, exc, key=m.key(), value=m.value(), source=position(m))
        self.counts[f"{kind}.dead_lettered"] += 1
        OUTCOMES.labels(kind, "dead_lettered").inc()

    def _outcome(self, grade: dict[str, Any], outcome: PassbackOutcome) -> None:
        now = int(time.time() * 1000)
        meta = dict(grade["meta"])
        meta["ingestedAt"] = now
        value = {
            "assignmentId": grade["assignmentId"],
            "userId": grade["userId"],
            "status": outcome.status,
            "reason": outcome.reason,
            "classSourcedId": outcome.class_id,
            "studentSourcedId": outcome.student_id,
            "lineItemSourcedId": outcome.line_item_id,
            "resultSourcedId": outcome.result_id,
            "score": grade.get("score") if outcome.status == "written" else None,
            "scoreStatus": outcome.score_status,
            "gradedAt": grade["gradedAt"],
            "writtenAt": now,
            "meta": meta,
        }
        self.producer.produce(
            self.outcomes_topic,
            key=encode_key(f"{grade['assignmentId']}|{grade['userId']}"),
            value=self.serdes[self.outcomes_topic].encode(value),
            on_delivery=self._delivered,
        )

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def health(self) -> tuple[bool, dict[str, Any]]:
        healthy = self.last_error is None
        return healthy, {
            "healthy": healthy,
            "counts": dict(self.counts),
            "last_batch_at": self.last_batch_at,
            "last_error": self.last_error,
        }
