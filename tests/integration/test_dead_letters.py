"""Undecodable bytes land in the dead-letter topic with their metadata; good records go on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from sislms.cli import app
from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.consumer import DecodingConsumer
from streams.dlq import DeadLetterPublisher, SourcePosition
from streams.dlq_replay import LEDGER_TOPIC
from streams.errors import DecodeError
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


def test_dlq_list_show_and_replay_from_the_command_line(
    kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str, tmp_path: Path
) -> None:
    """Two undecodable users and a CSV row refused at the edge. One user's good version comes
    later: its letter is superseded (its old bytes are not written over the newer record). The
    other is re-submitted with its original bytes, fails again, and comes back once with one more
    attempt; the edge row is never re-submitted. A second replay re-submits only the new letter."""
    topic, dlq_topic, stage = f"t{uid}.users.v1", f"dlq.s{uid}.v1", f"s{uid}"
    specs = [
        {"name": "t{uid}.users.v1", "value_schema": "sis/users.v1.avsc", "cleanup_policy": "compact",
         "partitions": 1},
        {"name": "dlq.s{uid}.v1", "value_schema": "dlq/dead_letter.v1.avsc", "partitions": 1},
    ]  # fmt: skip
    cat = make_catalog(specs)
    assert apply(cat, kernel.admin, kernel.registry).ok
    ledger = kernel.catalog.topic(LEDGER_TOPIC)  # the real ledger (the session applied it)
    make_catalog([*specs, {**ledger.model_dump(exclude_none=True), "name": LEDGER_TOPIC}], name="cli.yaml")
    env = {
        "SISLMS_TOPOLOGY_FILE": str(tmp_path / "cli.yaml"),
        "SISLMS_SCHEMAS_DIR": str(tmp_path / "schemas"),
    }
    serdes = Serdes(kernel.registry, cat)
    good = serdes[topic].encode(user("u-a")) or b""
    positions = _produce_all(
        kernel, topic, [(b"u-a", b"not avro"), (b"u-b", b"\x05not avro"), (b"u-a", good)]
    )
    dead = DeadLetterPublisher(kernel.producer(), serdes, cat)
    dead.send(
        stage, DecodeError("line 9: bad row"), key=b"row-9", value=b"a,b,c",
        source=SourcePosition(headers=(("origin.file", b"users.csv"), ("origin.line", b"9"))),
    )  # fmt: skip
    dead.flush()

    def consume(group: str) -> int:
        c = DecodingConsumer(
            Consumer(consumer_config(kernel.settings, kernel.endpoints.kafka_bootstrap, group)),
            serdes, dead, stage=stage,
        )  # fmt: skip
        c.subscribe([topic])
        deadline, quiet, seen = time.monotonic() + 30, float("inf"), -1
        while time.monotonic() < min(deadline, quiet):  # until 3 s with nothing new once assigned
            c.poll_batch(100, 0.5)
            if c.consumer.assignment() and c.decoded + c.dead_lettered != seen:
                seen, quiet = c.decoded + c.dead_lettered, time.monotonic() + 3
        c.commit()
        c.close()
        dead.flush()
        return c.dead_lettered

    group = f"g{uid}"
    assert consume(group) == 2
    runner = CliRunner()

    def cli(*args: str) -> Any:
        result = runner.invoke(app, ["dlq", *args, "--stage", stage], env=env)
        assert result.exit_code == 0, result.output
        return result

    def listed() -> dict[str, dict[str, Any]]:
        return {row["reason"]: row for row in json.loads(cli("list", "--json").stdout)}

    rows = listed()
    assert {r: (x["letters"], x["pending"]) for r, x in rows.items()} == {"undecodable": (3, 3)}
    shown = json.loads(cli("show", "--json").stdout)
    assert [d["key"] for d in shown] == ["row-9", "u-a", "u-b"]
    assert shown[0]["origin"] == "file=users.csv line=9" and "value" not in shown[0]
    assert shown[1]["origin"] == f"{topic}:0:{positions[0][1]}" and shown[1]["valueBytes"] == 8
    assert json.loads(cli("show", "--json", "--payload").stdout)[2]["value"].startswith("(does not decode")

    plan = json.loads(cli("replay", "--dry-run", "--json").stdout)
    a, b, edge = (f"{dlq_topic}:0:{d['letter'].rsplit(':', 1)[1]}" for d in (shown[1], shown[2], shown[0]))
    assert plan["resubmit"] == [b] and plan["superseded"] == {a: f"{topic}:0:{positions[2][1]}"}
    assert plan["notFromKafka"] == [edge] and plan["dryRun"] is True
    assert listed()["undecodable"]["pending"] == 3  # the dry run changed nothing

    done = cli("replay")
    assert "re-submitted 1, settled 1 superseded" in done.stdout
    # the re-submitted record: u-b's original bytes at the end of its topic, marked; u-a's not written
    tail = _read_all(kernel, topic, f"tail{uid}", expect=4)[3:]
    assert [(m.key(), m.value()) for m in tail] == [(b"u-b", b"\x05not avro")]
    assert dict(tail[0].headers() or []) == {"dlq.replay.of": b.encode(), "dlq.attempt": b"1"}

    assert consume(group) == 1  # it fails again: back to the dead letters, once, with one more attempt
    rows = listed()["undecodable"]
    assert (rows["letters"], rows["resubmitted"], rows["superseded"], rows["pending"]) == (4, 1, 1, 2)
    newest = json.loads(cli("show", "--json", "--limit", "1").stdout)[0]
    assert (newest["key"], newest["attempt"]) == ("u-b", 2)

    again = json.loads(cli("replay", "--json").stdout)
    assert again["resubmit"] == [newest["letter"]] and again["superseded"] == {}
    assert sorted(again["settled"]) == sorted([a, b])
