"""streams.confirmed on the real broker: a batch is on the broker, in order, when send returns;
a batch the broker refuses raises instead of hanging."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer

from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.confirmed import ConfirmedProducer, DeliveryFailed
from streams.kafka import consumer_config, producer_config
from streams.topology import apply


def _topic(kernel: Kernel, make_catalog: Callable[..., Catalog]) -> str:
    cat = make_catalog(
        [{"name": "t{uid}.confirmed.v1", "value_schema": "sis/users.v1.avsc", "partitions": 3}]
    )
    result = apply(cat, kernel.admin, kernel.registry, 1)
    assert result.ok, result.failed
    return next(iter(cat)).name


def _read(kernel: Kernel, topic: str, expect: int) -> list[Any]:
    c = Consumer(consumer_config(kernel.settings, kernel.endpoints.kafka_bootstrap, f"read-{topic}"))
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + 30
    while len(out) < expect and time.monotonic() < deadline:
        out += [m for m in c.consume(500, 1.0) if m.error() is None]
    c.close()
    return out


def test_a_batch_is_on_the_broker_in_order_when_send_returns(
    kernel: Kernel, make_catalog: Callable[..., Catalog]
) -> None:
    topic = _topic(kernel, make_catalog)
    producer = ConfirmedProducer(producer_config(kernel.settings, kernel.endpoints.kafka_bootstrap))
    records = [(topic, f"k{i % 7}".encode(), f"{i}".encode()) for i in range(3000)]

    async def main() -> None:
        await producer.send(records[:1000])
        await producer.send(records[1000:])

    asyncio.run(main())
    assert producer.sent == 3000
    producer.close()
    got = _read(kernel, topic, 3000)
    assert len(got) == 3000
    by_key: dict[bytes, list[int]] = {}
    for m in got:
        by_key.setdefault(m.key(), []).append(int(m.value()))
    # every record once, and per key in the order sent
    assert sorted(v for vs in by_key.values() for v in vs) == list(range(3000))
    assert all(vs == sorted(vs) for vs in by_key.values())


def test_a_refused_batch_raises(kernel: Kernel) -> None:
    producer = ConfirmedProducer(
        producer_config(kernel.settings, kernel.endpoints.kafka_bootstrap, **{"message.timeout.ms": 3000})
    )

    async def main() -> None:
        # the broker does not create topics on demand: delivery fails after message.timeout.ms
        await asyncio.wait_for(producer.send([("no.such.topic.v1", b"k", b"v")]), timeout=30)

    with pytest.raises(DeliveryFailed, match=re.escape("no.such.topic.v1")):
        asyncio.run(main())
    producer.close(timeout=1)
