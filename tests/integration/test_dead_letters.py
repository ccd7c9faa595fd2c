"""Undecodable bytes land in the dead-letter topic with their metadata; good records go on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.consumer import DecodingConsumer
from streams.dlq import DeadLetterPublisher
from streams.kafka import consumer_config
from streams.serde import Serdes
from streams.topology import apply
from tests.factories import user


def _produce_all(
    kernel: Kernel, topic: str, messages: list[tuple[bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Produce in order to partition 0; returns (partition, offset) of each."""
    producer = kernel.producer()
    positions: list[Any] = [None] * len(messages)

    def delivered(i: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            assert err is None, err
            positions[i] = (msg.partition(), msg.offset())

        return cb

    for i, (k, v) in enumerate(messages):
        producer.produce(topic, key=k, value=v, partition=0, on_delivery=delivered(i))
    assert producer.flush(30) == 0
    return positions


def _read_all(kernel: Kernel, topic: str, group: str, expect: int) -> list[Any]:
    c = Consumer(consumer_config(kernel.settings, kernel.endpoints.kafka_bootstrap, group))
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + 30
    while len(out) < expect and time.monotonic() < deadline:
        out += [m for m in c.consume(100, 1.0) if m.error() is None]
    c.close()
    return out


def test_undecodable_records_are_dead_lettered_with_original_bytes_and_position(
    kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str
) -> None:
    cat = make_catalog(
        [
            {"name": "t{uid}.users.v1", "value_schema": "sis/users.v1.avsc", "cleanup_policy": "compact"},
            {"name": "dlq.s{uid}.v1", "value_schema": "dlq/dead_letter.v1.avsc"},
        ]
    )
    assert apply(cat, kernel.admin, kernel.registry).ok
    topic, dlq_topic, stage = f"t{uid}.users.v1", f"dlq.s{uid}.v1", f"s{uid}"
    serdes = Serdes(kernel.registry, cat)

    good = serdes[topic].encode(user("u-good"))
    not_avro = b"this is not avro"
    wrong_magic = b"\x05" + (good or b"")[1:]
    cut_short = (good or b"")[:12]
    messages = [
        (b"u-good", good),
        (b"u-bad-1", not_avro),
        (b"u-bad-2", wrong_magic),
        (b"\xff\xfe-not-utf8", good),
        (b"u-gone", None),  # a tombstone is a valid record: a delete
        (b"u-bad-3", cut_short),
    ]
    positions = _produce_all(kernel, topic, messages)

    group = f"g{uid}"
    dead = DeadLetterPublisher(kernel.producer(), serdes, cat)
    consumer = DecodingConsumer(
        Consumer(consumer_config(kernel.settings, kernel.endpoints.kafka_bootstrap, group)),
        serdes,
        dead,
        stage=stage,
    )
    consumer.subscribe([topic])
    records = []
    deadline = time.monotonic() + 30
    while consumer.decoded + consumer.dead_lettered < len(messages) and time.monotonic() < deadline:
        records += consumer.poll_batch(100, 1.0)
    consumer.commit()

    assert [(r.key, r.value is None) for r in records] == [("u-good", False), ("u-gone", True)]
    assert records[0].value is not None and records[0].value["sourcedId"] == "u-good"
    assert consumer.dead_lettered == 4

    # every offset is committed: nothing will be re-read, nothing was skipped
    committed = consumer.consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    assert committed == positions[-1][1] + 1
    consumer.close()

    letters = _read_all(kernel, dlq_topic, f"check{uid}", expect=4)
    decoded = [serdes[dlq_topic].decode(m.value()) for m in letters]
    by_offset = {d["sourceOffset"]: d for d in decoded}
    bad = {1: not_avro, 2: wrong_magic, 3: good, 5: cut_short}
    assert sorted(by_offset) == sorted(positions[i][1] for i in bad)
    for i, original in bad.items():
        d = by_offset[positions[i][1]]
        assert d["value"] == original
        assert d["key"] == messages[i][0]
        assert d["sourceTopic"] == topic and d["sourcePartition"] == 0
        assert d["stage"] == stage and d["reason"] == "undecodable"
        assert d["errorType"] == "DecodeError" and d["errorMessage"]
    assert "magic byte" in by_offset[positions[2][1]]["errorMessage"]
    assert "UTF-8" in by_offset[positions[3][1]]["errorMessage"]
    headers = dict(letters[0].headers())
    assert headers["dlq.stage"] == stage.encode()
