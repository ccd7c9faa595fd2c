"""Read a compacted topic's current state: which keys are live (latest record not a tombstone).

Used where a process must know what a topic already holds: a full snapshot that turns records
missing at the source into tombstones, and the mass-change guard that compares a deletion with
the entity's size. Reads raw keys without decoding values, with ``assign()`` (no group, nothing
committed) from the beginning to the high watermark seen at the start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.errors import DecodeError, ServiceUnavailable
from streams.serde import TopicSerde, content_digest

__all__ = ["end_offsets", "group_caught_up", "group_lag", "read_digests", "read_live_keys", "read_to_end"]

log = logging.getLogger(__name__)


#: Errors of a topic created a moment ago whose partitions have no leader yet: worth a retry.
_NOT_READY = (
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
)
#: Errors of a group coordinator that is moving or still loading the committed offsets.
_COORDINATOR_BUSY = (
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
)
#: How long a just-created topic may take to answer.
_READY_S = 30.0


def _topic_metadata(consumer: Consumer, topic: str) -> Any:
    deadline = time.monotonic() + _READY_S
    while True:
        info = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if info is not None and info.error is None:
            return info
        code = info.error.code() if info is not None and info.error is not None else None
        if code not in (*_NOT_READY, None) or time.monotonic() > deadline:
            raise ServiceUnavailable(f"topic {topic} is not available: {info.error if info else 'missing'}")
        time.sleep(0.2)


def _watermarks(consumer: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """A partition's low and high watermarks; a just-created topic's leader may need a moment."""
    deadline = time.monotonic() + _READY_S
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=30)
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not isinstance(err, KafkaError) or err.code() not in _NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_to_end(conf: dict[str, Any], topic: str, *, timeout_s: float = 120.0) -> Iterator[Message]:
    """Every record of ``topic`` from the beginning to the end seen at the start, partition by
    partition in offset order (``assign()``: no group, nothing committed).

    Args:
        conf: client properties (bootstrap, TLS, SASL); a throwaway group id is added.
        topic: the topic.
        timeout_s: give up (``ServiceUnavailable``) when the end is not reached in time.
    """
    consumer = Consumer(
        {
            **conf,
            "group.id": f"sislms-read-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        info = _topic_metadata(consumer, topic)
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in info.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, partition))
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        if not starts:
            return
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"reading {topic} to its end took more than {timeout_s:.0f} s")
            batch = consumer.consume(10_000, timeout=0.5)
            if not batch:
                # The last offsets may hold no record (compacted away, control records): ask where we are.
                for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise ServiceUnavailable(f"reading {topic}: {error}")
                yield message
                partition, offset = message.partition(), message.offset()
                if partition in ends and offset is not None and offset + 1 >= ends[partition]:
                    del ends[partition]
    finally:
        consumer.close()


def read_live_keys(conf: dict[str, Any], topic: str, *, timeout_s: float = 120.0) -> set[str]:
    """The keys whose latest record in ``topic`` is not a tombstone (values are not decoded)."""
    live: set[str] = set()
    for message in read_to_end(conf, topic, timeout_s=timeout_s):
        key = message.key()
        if key is None:
            continue
        text = key.decode("utf-8", "replace")
        if message.value() is None:
            live.discard(text)
        else:
            live.add(text)
    return live


def group_caught_up(conf: dict[str, Any], group: str, topics: list[str]) -> tuple[bool, int]:
    """Whether consumer group ``group`` has committed every record now on ``topics``, and how many
    records those topics hold (reads committed offsets and watermarks; joins no group). A
    coordinator still loading or moving answers ``(False, 0)``: not known yet, ask again."""
    positions = _group_positions(conf, group, topics)
    if positions is None:
        return False, 0  # not known yet (a fresh cluster loading its offsets): ask again
    done = all(high == 0 or committed >= high for _, committed, high in positions)
    return done, sum(high - low for low, _, high in positions)


def end_offsets(conf: dict[str, Any], topic: str) -> dict[int, int]:
    """Each partition's end offset (high watermark) of ``topic`` now."""
    consumer = Consumer({**conf, "group.id": f"sislms-read-{time.time_ns()}", "enable.auto.commit": False})
    try:
        parts = _topic_metadata(consumer, topic).partitions
        return {p: _watermarks(consumer, TopicPartition(topic, p))[1] for p in parts}
    finally:
        consumer.close()


def group_lag(conf: dict[str, Any], group: str, topics: list[str]) -> int | None:
    """How many records of ``topics`` consumer group ``group`` has not committed yet (None: not
    known yet, the coordinator is loading)."""
    positions = _group_positions(conf, group, topics)
    if positions is None:
        return None
    return sum(high - max(committed, low) for low, committed, high in positions if committed < high)


def _group_positions(
    conf: dict[str, Any], group: str, topics: list[str]
) -> list[tuple[int, int, int]] | None:
    """(low watermark, committed offset or -1, high watermark) of each partition of ``topics``."""
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        try:
            committed = consumer.committed(parts, timeout=10)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() in _COORDINATOR_BUSY:
                return None
            raise
        out = []
        for tp in committed:
            low, high = _watermarks(consumer, TopicPartition(tp.topic, tp.partition))
            out.append((low, tp.offset, high))
        return out
    finally:
        consumer.close()


def read_digests(
    conf: dict[str, Any], topic: str, serde: TopicSerde, *, timeout_s: float = 300.0
) -> dict[str, bytes]:
    """The content digest (:func:`~streams.serde.content_digest`) of each key's latest record in
    ``topic``, tombstoned and undecodable ones left out: what a backfill compares a snapshot with."""
    out: dict[str, bytes] = {}
    for message in read_to_end(conf, topic, timeout_s=timeout_s):
        key = message.key()
        if key is None:
            continue
        text = key.decode("utf-8", "replace")
        try:
            value = serde.decode(message.value())
        except DecodeError:
            out.pop(text, None)  # unreadable: whatever the snapshot has for this key differs from it
            continue
        if value is None:
            out.pop(text, None)
        else:
            out[text] = content_digest(serde, value)
    return out
