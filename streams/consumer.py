"""A consumer that decodes with the topic contracts and dead-letters what it cannot.

``DecodingConsumer.poll_batch()`` returns decoded ``Record``s; a record whose key or value does
not decode goes to ``dlq.<stage>.v1`` with its original bytes and is not returned. ``commit()``
first makes the dead letters durable, then commits the offsets of everything returned so far:
call it only after the batch's effects are durable (at-least-once, no loss).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streams.dlq import DeadLetterPublisher, SourcePosition
from streams.errors import DecodeError, ServiceUnavailable
from streams.serde import Serdes, decode_key

__all__ = ["DecodingConsumer", "Record"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: dict[str, Any] | None  # None: a tombstone
    headers: tuple[tuple[str, bytes | None], ...]


def _headers(m: Message) -> tuple[tuple[str, bytes | None], ...]:
    out: list[tuple[str, bytes | None]] = []
    for item in m.headers() or ():
        k, v = item[0], item[1]
        out.append((str(k), v if v is None or isinstance(v, bytes) else str(v).encode()))
    return tuple(out)


class DecodingConsumer:
    def __init__(
        self,
        consumer: Consumer,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        stage: str = "decode",
    ) -> None:
        self.consumer = consumer
        self.serdes = serdes
        self.dead_letters = dead_letters
        self.stage = stage
        self._next: dict[tuple[str, int], int] = {}
        self.decoded = 0
        self.dead_lettered = 0

    def subscribe(self, topics: list[str]) -> None:
        for t in topics:
            self.serdes.catalog.topic(t)  # refuse undeclared topics early
        self.consumer.subscribe(topics)

    def poll_batch(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        msgs: list[Message] = self.consumer.consume(max_records, timeout)
        out: list[Record] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                    raise ServiceUnavailable(f"consumer error: {err.str()}")
                log.warning("consumer error (skipped): %s", err.str())
                continue
            topic, partition, offset = str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)
            headers = _headers(m)
            try:
                key = decode_key(m.key())
                value = self.serdes[topic].decode(m.value())
            except DecodeError as exc:
                self.dead_letters.send(
                    self.stage,
                    exc,
                    key=m.key(),
                    value=m.value(),
                    source=SourcePosition(topic, partition, offset, m.timestamp()[1], headers),
                )
                self.dead_lettered += 1
            else:
                out.append(Record(topic, partition, offset, m.timestamp()[1], key, value, headers))
                self.decoded += 1
            self._next[(topic, partition)] = offset + 1
        return out

    def commit(self) -> None:
        """Make dead letters durable, then commit the offsets of everything polled."""
        if not self._next:
            return
        self.dead_letters.flush()
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._next.items()]
        self.consumer.commit(offsets=offsets, asynchronous=False)
        self._next.clear()

    def close(self) -> None:
        self.consumer.close()
