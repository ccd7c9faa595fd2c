"""``sislms replay`` on the real broker: a consumer group moved to a time (the broker's
offsets-for-times lookup), to one partition's offset, or to the start, reads exactly the records
from there; a group with a live member is refused, and nothing moves."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer
from typer.testing import CliRunner

from sislms.cli import app
from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.errors import PlanRefused
from streams.kafka import consumer_config
from streams.replay import apply_replay, parse_target, plan_replay
from streams.topology import apply

HOUR_MS = 3_600_000


def _topic(kernel: Kernel, make_catalog: Callable[..., Catalog]) -> str:
    catalog = make_catalog([{"name": "test.replay_{uid}.v1", "value_schema": "lms/events_raw.v1.avsc"}])
    assert apply(catalog, kernel.admin, kernel.registry, 1).ok
    [spec] = list(catalog)
    return spec.name


def _produce(kernel: Kernel, topic: str, values: list[str], at_ms: int) -> dict[str, tuple[int, int]]:
    """Plain bytes records stamped ``at_ms``; returns where each landed (partition, offset)."""
    where: dict[str, tuple[int, int]] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        where[msg.value().decode()] = (msg.partition(), msg.offset())

    producer = kernel.producer()
    for v in values:
        producer.produce(topic, key=v.encode(), value=v.encode(), timestamp=at_ms, on_delivery=delivered)
    assert producer.flush(30) == 0
    return where


def _read(kernel: Kernel, group: str, topic: str, settle_s: float = 4.0) -> list[str]:
    """What ``group`` reads from its committed offsets until nothing comes for ``settle_s``;
    commits what it read, then leaves the group."""
    conf = consumer_config(kernel.settings, kernel.endpoints.kafka_bootstrap, group)
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    got: list[str] = []
    quiet = time.monotonic() + 30  # until the group has given this consumer its partitions
    try:
        while time.monotonic() < quiet:
            m = consumer.poll(0.5)
            if m is None or m.error():
                if consumer.assignment() and not got:
                    quiet = min(quiet, time.monotonic() + settle_s)
                continue
            got.append(m.value().decode())
            quiet = time.monotonic() + settle_s
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def test_a_group_moved_to_a_time_an_offset_or_the_start_reads_exactly_from_there(
    kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str
) -> None:
    topic = _topic(kernel, make_catalog)
    now = int(time.time() * 1000)
    early = [f"early-{i}" for i in range(40)]
    late = [f"late-{i}" for i in range(40)]
    _produce(kernel, topic, early, now - 2 * HOUR_MS)
    landed = _produce(kernel, topic, late, now - HOUR_MS)
    group = f"replay-{uid}"
    assert sorted(_read(kernel, group, topic)) == sorted(early + late)

    # to a time between the two batches: the first record at or after it, in every partition
    at = parse_target(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now - 1.5 * HOUR_MS) / 1000)))
    plan = plan_replay(kernel.admin, group, at)
    first_late: dict[int, int] = {}
    for p, o in landed.values():
        first_late[p] = min(o, first_late.get(p, o))
    assert {m.partition: m.target for m in plan.moves if m.target < m.high} == first_late
    assert plan.messages == plan.reread == len(late) and plan.refusal() is None
    apply_replay(kernel.admin, plan)
    assert sorted(_read(kernel, group, topic)) == sorted(late)  # no early one, each late one once

    # to one partition's offset: only that partition moves
    p, o = landed["late-7"]
    plan = plan_replay(kernel.admin, group, parse_target(f"{topic}:{p}:{o}"))
    assert [(m.partition, m.target) for m in plan.moves] == [(p, o)]
    apply_replay(kernel.admin, plan)
    want = sorted(v for v, (vp, vo) in landed.items() if vp == p and vo >= o)
    assert sorted(_read(kernel, group, topic)) == want and "late-7" in want

    # to the start, through the command line: the dry run moves nothing, then it does
    runner = CliRunner()
    dry = runner.invoke(app, ["replay", "--group", group, "--to", "earliest", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.output)
    assert doc["messages"] == doc["reread"] == len(early + late) and doc["dryRun"] is True
    assert all(row["to"] == 0 for row in doc["partitions"]) and len(doc["partitions"]) == 3
    assert _read(kernel, group, topic, settle_s=1.0) == []  # nothing moved
    done = runner.invoke(app, ["replay", "--group", group, "--to", "earliest"])
    assert done.exit_code == 0, done.output
    assert "moved" in done.output and f"{topic}[0]" in done.output
    assert sorted(_read(kernel, group, topic)) == sorted(early + late)


def test_a_group_with_a_live_member_is_refused_and_nothing_moves(
    kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str
) -> None:
    topic = _topic(kernel, make_catalog)
    _produce(kernel, topic, [f"r-{i}" for i in range(10)], int(time.time() * 1000))
    group = f"replay-live-{uid}"
    assert len(_read(kernel, group, topic)) == 10
    live = Consumer(consumer_config(kernel.settings, kernel.endpoints.kafka_bootstrap, group))
    live.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while not live.assignment() and time.monotonic() < deadline:
            live.poll(0.5)
        assert live.assignment()
        plan = plan_replay(kernel.admin, group, parse_target("earliest"))
        assert plan.members == 1 and "active member" in (plan.refusal() or "")
        with pytest.raises(PlanRefused, match="stop its workers first"):
            apply_replay(kernel.admin, plan)
        refused = CliRunner().invoke(app, ["replay", "--group", group, "--to", "earliest"])
        assert refused.exit_code == 1 and "active member" in refused.output
    finally:
        live.close()
    assert _read(kernel, group, topic, settle_s=1.0) == []  # its offsets did not move
