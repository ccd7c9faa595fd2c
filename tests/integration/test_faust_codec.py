"""The serde kernel inside a real Faust worker: records decode and encode through the
registry; undecodable ones go to the dead-letter topic and the agent keeps running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer

from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.kafka import consumer_config
from streams.serde import Serdes
from streams.topology import apply
from tests.factories import user

PROBE = Path(__file__).with_name("faust_probe.py")


def _collect(kernel: Kernel, topic: str, group: str, expect: int, timeout: float) -> list:
    c = Consumer(consumer_config(kernel.settings, kernel.endpoints.kafka_bootstrap, group))
    c.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out += [m for m in c.consume(100, 1.0) if m.error() is None]
    c.close()
    return out


def test_faust_agent_decodes_encodes_and_dead_letters(
    kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str, tmp_path: Path
) -> None:
    cat = make_catalog(
        [
            {"name": "t{uid}.users.v1", "value_schema": "sis/users.v1.avsc", "partitions": 2},
            {"name": "t{uid}.copies.v1", "value_schema": "sis/users.v1.avsc", "partitions": 2},
            {"name": "dlq.f{uid}.v1", "value_schema": "dlq/dead_letter.v1.avsc", "partitions": 1},
        ]
    )
    assert apply(cat, kernel.admin, kernel.registry).ok
    src, out, dlq = f"t{uid}.users.v1", f"t{uid}.copies.v1", f"dlq.f{uid}.v1"
    serdes = Serdes(kernel.registry, cat)

    producer = kernel.producer()
    for i in range(5):
        producer.produce(src, key=f"u-{i}".encode(), value=serdes[src].encode(user(f"u-{i}")))
    producer.produce(src, key=b"u-bad", value=b"\x00\x00\x00\x00garbage")  # unknown id 0
    producer.produce(src, key=b"u-bad2", value=b"{json: not avro}")
    for i in range(5, 8):
        producer.produce(src, key=f"u-{i}".encode(), value=serdes[src].encode(user(f"u-{i}")))
    assert producer.flush(30) == 0

    env = {
        **os.environ,
        "PROBE_TOPOLOGY": str(cat.path),
        "PROBE_SCHEMAS": str(cat.schemas.origin),
        "PROBE_IN": src,
        "PROBE_OUT": out,
        "PROBE_STAGE": f"f{uid}",
        "PROBE_APP_ID": f"probe-{uid}",
        "PROBE_DATA_DIR": str(tmp_path / "faust-data"),
    }
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, str(PROBE), "worker", "-l", "info"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(Path(__file__).parents[2]),
    )
    try:
        copies = _collect(kernel, out, f"c{uid}", expect=8, timeout=120)
        letters = _collect(kernel, dlq, f"d{uid}", expect=2, timeout=30)
        assert worker.poll() is None, "the agent must keep running after bad records"
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    worker_log = (tmp_path / "worker.log").read_text()

    got = {m.key().decode(): serdes[out].decode(m.value()) for m in copies}
    assert sorted(got) == sorted(f"u-{i}" for i in range(8)), worker_log[-3000:]
    assert all(v is not None and v["familyName"] == "PERSON" for v in got.values())
    dead = sorted((serdes[dlq].decode(m.value()) for m in letters), key=lambda d: d["key"])
    assert [d["key"] for d in dead] == [b"u-bad", b"u-bad2"]
    assert [d["value"] for d in dead] == [b"\x00\x00\x00\x00garbage", b"{json: not avro}"]
    assert all(d["sourceTopic"] == src and d["reason"] == "undecodable" for d in dead)
