"""Raw produce and consume messages/s against the broker, and consume + decode records/s."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka import consumer_config, producer_config
from streams.serde import TopicSerde
from streams.settings import Settings

__all__ = ["KafkaBench", "measurements"]

log = logging.getLogger("bench")


class KafkaBench:
    """Owns its uuid-named topics and deletes them in ``close()``."""

    def __init__(self, settings: Settings, bootstrap: str, admin: AdminClient) -> None:
        self.settings, self.bootstrap, self.admin = settings, bootstrap, admin
        self.topics: list[str] = []

    def topic(self, partitions: int = 6) -> str:
        name = f"bench.raw_{uuid.uuid4().hex[:10]}.v1"
        self.admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
        self.topics.append(name)
        return name

    def close(self) -> None:
        if self.topics:
            for fut in self.admin.delete_topics(self.topics).values():
                try:
                    fut.result(30)
                except Exception as exc:  # cleanup must not hide the results
                    log.warning("could not delete a bench topic: %s", exc)
            self.topics.clear()

    def produce(self, topic: str, values: list[bytes], n: int, **conf: Any) -> tuple[float, float]:
        """(messages/s, MB/s) of ``n`` acknowledged messages."""
        config = producer_config(self.settings, self.bootstrap, **conf)
        config.setdefault("queue.buffering.max.messages", 1_000_000)
        p = Producer(config)
        acked = [0, 0]

        def cb(err: Any, msg: Any) -> None:
            if err is None:
                acked[0] += 1
                acked[1] += len(msg.value())

        start = time.perf_counter()
        for i in range(n):
            while True:
                try:
                    p.produce(topic, key=str(i).encode(), value=values[i % len(values)], on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 100_000 == 0 and i:
                log.info("produce: %d/%d", i, n)
            p.poll(0)
        p.flush(120)
        took = time.perf_counter() - start
        if acked[0] != n:
            raise RuntimeError(f"only {acked[0]} of {n} messages were acknowledged")
        return acked[0] / took, acked[1] / took / 1e6

    def consume(self, topic: str, n: int, decode: TopicSerde | None = None) -> float:
        """messages/s to read ``n`` messages from the start (and decode them, if asked)."""
        group = f"bench-{uuid.uuid4().hex[:8]}"
        c = Consumer(consumer_config(self.settings, self.bootstrap, group, **{"fetch.max.bytes": 52428800}))
        c.subscribe([topic])
        seen = 0
        first: float | None = None
        deadline = time.monotonic() + 300
        while seen < n and time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                if m.error() is not None:
                    continue
                if first is None:
                    first = time.perf_counter()  # time from the first message: not the join
                if decode is not None:
                    decode.decode(m.value())
                seen += 1
        end = time.perf_counter()
        c.close()
        if seen < n or first is None:
            raise RuntimeError(f"read {seen} of {n} messages")
        return seen / (end - first)


def measurements(
    kb: KafkaBench, values: list[bytes], frames: list[bytes], serde: TopicSerde, n: int
) -> dict[str, Callable[[], float]]:
    """Named measurements returning messages/s (MB/s is logged)."""
    raw = kb.topic()
    enc = kb.topic()
    kb.produce(enc, frames, n)  # the consume + decode input, produced once

    def produce_idempotent() -> float:
        rate, mb = kb.produce(raw, values, n)
        log.info("produce (idempotent, acks=all): %.0f msg/s, %.1f MB/s", rate, mb)
        return rate

    def produce_acks1() -> float:
        rate, mb = kb.produce(raw, values, n, **{"enable.idempotence": False, "acks": "1"})
        log.info("produce (acks=1): %.0f msg/s, %.1f MB/s", rate, mb)
        return rate

    return {
        "produce 1 KB: idempotent, acks=all, zstd": produce_idempotent,
        "produce 1 KB: acks=1, zstd (reference)": produce_acks1,
        "consume 1 KB: plain (limit)": lambda: kb.consume(raw, n),
        "consume + decode sis.users.v1 (pipeline floor)": lambda: kb.consume(enc, n, decode=serde),
    }
