"""A consumer that keeps keyed state per input partition, durable in a compacted state topic.

The base of the processors that are plain confluent-kafka consumer groups rather than Faust agents
(the LMS events processor, the engagement processor). The state topic has as many partitions as
the input; the state of input partition ``p`` lives in state partition ``p``, in memory while ``p``
is assigned, and is read back from the state topic when it is assigned again (here or in another
process of the group).

Per batch, a subclass's :meth:`StatefulProcessor.handle` says what to write and which states
changed; then:

1. the records are produced and confirmed,
2. the changed states are produced and confirmed (a state is never durable before the records it
   vouches for),
3. the dead letters are confirmed and the input offsets committed.

A crash between the steps reads the batch again: records already written are written again (same
keys and values, which compacted topics and idempotent sinks take once) and nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from streams.dlq import DeadLetterPublisher
from streams.errors import ConfigError, RetriableError, ServiceUnavailable
from streams.serde import Serdes, decode_key, encode_key

__all__ = ["Batch", "StatefulProcessor"]

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass
class Batch(Generic[S]):
    """What one batch produces: records (topic, key, value) and changed states ((partition,
    key) -> state, ``None`` to delete it)."""

    writes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    changed: dict[tuple[int, str], S | None] = field(default_factory=dict)


class StatefulProcessor(ABC, Generic[S]):
    """Consumes ``input_topic`` with its per-partition state in ``state_topic``.

    Args:
        consumer_conf: a consumer configuration with ``group.id`` (auto commit is turned off).
        producer: an idempotent producer (``streams.kafka.producer_config``).
    """

    #: the processor's name in logs
    what = "processor"

    def __init__(
        self,
        *,
        consumer_conf: dict[str, Any],
        producer: Producer,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        input_topic: str,
        state_topic: str,
        batch_size: int = 1000,
        stage: str,
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
        self.input_topic = input_topic
        self.state_topic = state_topic
        self.batch_size = batch_size
        self.stage = stage
        self.states: dict[int, dict[str, S]] = {}
        self.counts: Counter[str] = Counter()
        self.last_batch_at: float | None = None
        self.last_error: str | None = None
        self._errors: list[str] = []
        for name in (input_topic, state_topic):
            serdes.catalog.topic(name)  # declared (ConfigError otherwise)

    # --- what a subclass says ----------------------------------------------------------------

    @abstractmethod
    def handle(self, messages: list[Message]) -> Batch[S]:
        """The records and state changes of a batch of input messages (no errors among them).
        ``self.state(partition, key)`` is the state before the batch; a subclass reading a state
        it changed earlier in the same batch keeps it in its own batch."""

    @abstractmethod
    def state_from_record(self, value: dict[str, Any]) -> S: ...

    @abstractmethod
    def state_to_record(self, key: str, state: S) -> dict[str, Any]: ...

    def committed(self, batch: Batch[S]) -> None:
        """Called once a batch is committed (metrics)."""

    # --- partitions and their state ----------------------------------------------------------

    def state(self, partition: int, key: str) -> S | None:
        return self.states.get(partition, {}).get(key)

    def _check_partitions(self, consumer: Consumer) -> None:
        meta = consumer.list_topics(timeout=30).topics
        counts = {
            t: len(meta[t].partitions) if t in meta and meta[t].partitions else 0
            for t in (self.input_topic, self.state_topic)
        }
        if counts[self.input_topic] == 0 or counts[self.input_topic] != counts[self.state_topic]:
            raise ConfigError(
                f"{self.input_topic} and {self.state_topic} must exist with the same number of partitions "
                f"(they have {counts[self.input_topic]} and {counts[self.state_topic]}): "
                "`sislms topology apply`"
            )

    def restore(self, partition: int) -> dict[str, S]:
        """Read one partition of the state topic to its end."""
        conf = {k: v for k, v in self.consumer_conf.items() if k not in ("group.id",)}
        reader = Consumer({**conf, "group.id": f"restore-{self.state_topic}", "enable.partition.eof": True})
        states: dict[str, S] = {}
        try:
            low, high = reader.get_watermark_offsets(TopicPartition(self.state_topic, partition), timeout=30)
            if high <= low:
                return states
            reader.assign([TopicPartition(self.state_topic, partition, low)])
            serde = self.serdes[self.state_topic]
            done = False
            while not done:
                for m in reader.consume(5000, timeout=1.0):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            done = True
                            continue
                        raise ServiceUnavailable(f"restoring {self.state_topic}[{partition}]: {err.str()}")
                    key = decode_key(m.key())
                    if key is None:
                        continue
                    value = serde.decode(m.value())
                    if value is None:
                        states.pop(key, None)
                    else:
                        states[key] = self.state_from_record(value)
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
                "%s[%d] assigned: %d states restored in %.1f s",
                self.input_topic,
                tp.partition,
                len(self.states[tp.partition]),
                time.monotonic() - started,
            )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.states.pop(tp.partition, None)
        log.info("%s: %d partition(s) revoked", self.input_topic, len(partitions))

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(self.consumer_conf)
        self._check_partitions(consumer)
        consumer.subscribe([self.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("%s: reading %s", self.what, self.input_topic)
        last_report = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    self.step(consumer)
                    self.last_error = None
                except RetriableError as exc:
                    self.last_error = str(exc)
                    log.warning("%s: %s; retrying in %s s", self.what, exc, exc.retry_after)
                    stop.wait(exc.retry_after or 2)
                    self._rewind(consumer)
                if time.monotonic() - last_report >= 30:
                    last_report = time.monotonic()
                    log.info("%s: %s", self.what, dict(self.counts))
        finally:
            consumer.close()
            log.info("%s stopped: %s", self.what, dict(self.counts))

    def _rewind(self, consumer: Consumer) -> None:
        """After a failed batch: go back to the committed offsets (the batch is read again)."""
        assigned = consumer.assignment()
        if not assigned:
            return
        for tp in consumer.committed(assigned, timeout=30):
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
            self.states[tp.partition] = self.restore(tp.partition)

    def step(self, consumer: Consumer, timeout: float = 0.1) -> int:
        """Process one batch; returns the number of input records read. ``consume`` waits for the
        whole timeout unless the batch fills: a short one keeps a quiet stream's latency low."""
        messages = consumer.consume(self.batch_size, timeout)
        offsets: dict[int, int] = {}
        good: list[Message] = []
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ServiceUnavailable(f"consumer error: {err.str()}")
            offsets[int(m.partition() or 0)] = int(m.offset() or 0) + 1
            good.append(m)
        if not good:
            return 0
        batch = self.handle(good)
        # 1. the records, confirmed
        for topic, key, value in batch.writes:
            data = self.serdes[topic].encode(value)
            self.producer.produce(topic, key=encode_key(key), value=data, on_delivery=self._delivered)
        self._flush("records")
        # 2. the states they vouch for, confirmed
        serde = self.serdes[self.state_topic]
        for (partition, key), state in batch.changed.items():
            self.producer.produce(
                self.state_topic,
                key=encode_key(key),
                value=None if state is None else serde.encode(self.state_to_record(key, state)),
                partition=partition,
                on_delivery=self._delivered,
            )
        self._flush("states")
        self.dead_letters.flush()
        # 3. the offsets
        consumer.commit(
            offsets=[TopicPartition(self.input_topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
        for (partition, key), state in batch.changed.items():
            held = self.states.setdefault(partition, {})
            if state is None:
                held.pop(key, None)
            else:
                held[key] = state
        self.counts["records"] += len(batch.writes)
        self.last_batch_at = time.time()
        self.committed(batch)
        log.debug("%s: %d in, %d out, %d states", self.what, len(good), len(batch.writes), len(batch.changed))
        return len(good)

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
            "states": sum(len(s) for s in self.states.values()),
            "last_batch_at": self.last_batch_at,
            "last_error": self.last_error,
        }
