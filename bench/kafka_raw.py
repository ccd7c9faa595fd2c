"""Raw Kafka throughput against the real broker, with confluent-kafka.

* produce: ~1 KB values to a fresh 6-partition topic, once with the project's producer
  (idempotent, acks=all, zstd, linger 5 ms: ``streams.kafka.producer_config``) and once with
  acks=1 and no idempotence (same compression and linger) as a reference. The clock runs from
  the first ``produce()`` to the end of ``flush()``; only messages whose delivery callback
  reports success are counted.
* consume: ``Consumer.consume(batch)`` from the beginning of every partition (assigned, no
  group rebalance; ``streams.kafka.consumer_config`` otherwise) until every message is read,
  on the topic the last project-producer run filled; then on a topic filled with encoded
  ``sis.users.v1`` records, first plain, then with key and value decoded by our serde (the
  pipeline's floor: nothing a consumer of ours does can be faster).

Every topic here is a throwaway ``bench.<kind>_<uuid>.v1`` topic, deleted at the end, also on
error.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.measure import Measurement, Run, cycled_bytes, progress, steps
from bench.records import payload_pool, user_pool
from bench.serde import POOL_SIZE, TOPIC
from sislms.wiring import Kernel
from streams.kafka import consumer_config, producer_config
from streams.serde import decode_key

__all__ = ["CONSUME_BATCH", "PARTITIONS", "PAYLOAD_SIZE", "Topics", "run_kafka"]

log = logging.getLogger("bench.kafka")

PARTITIONS = 6
PAYLOAD_SIZE = 1024
#: Messages asked of each ``Consumer.consume()`` call.
CONSUME_BATCH = 1000
#: Produce calls between two ``poll(0)`` calls that serve delivery callbacks.
POLL_EVERY = 1000
#: Give up when a consumer reads nothing for this long.
STALL_S = 60.0


class Topics:
    """Creates uuid-named throwaway topics and deletes them all on ``close()``."""

    def __init__(self, admin: AdminClient) -> None:
        self.admin = admin
        self.created: list[str] = []

    def create(self, kind: str) -> str:
        name = f"bench.{kind}_{uuid.uuid4().hex[:12]}.v1"
        futures = self.admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])
        self.created.append(name)  # before result(): a half-created topic is still deleted
        futures[name].result(timeout=30)
        log.info("created topic %s (%d partitions)", name, PARTITIONS)
        return name

    def delete(self, name: str) -> None:
        if name in self.created:
            self.created.remove(name)
            self._delete([name])

    def close(self) -> None:
        names, self.created = self.created, []
        self._delete(names)

    def _delete(self, names: list[str]) -> None:
        if not names:
            return
        for name, fut in self.admin.delete_topics(names, operation_timeout=30).items():
            try:
                fut.result(timeout=60)
                log.info("deleted topic %s", name)
            except Exception as exc:  # report and go on: the other topics must still go
                log.warning("could not delete topic %s: %s", name, exc)


def produce(
    conf: dict[str, Any], topic: str, values: Sequence[bytes], keys: Sequence[bytes], n: int, label: str
) -> tuple[Run, int]:
    """Produce ``n`` messages (values and keys cycled); returns the run and the failure count."""
    delivered = failed = 0

    def on_delivery(err: Any, _msg: Message) -> None:
        nonlocal delivered, failed
        if err is None:
            delivered += 1
        else:
            failed += 1

    producer = Producer(conf | {"on_delivery": on_delivery})
    producer.list_topics(topic, timeout=10)  # metadata before the clock starts
    send = producer.produce
    nv, nk = len(values), len(keys)
    i = sent = 0
    start = time.perf_counter()
    for chunk in steps(n):
        end = i + chunk
        while i < end:
            for j in range(i, min(i + POLL_EVERY, end)):
                while True:
                    try:
                        send(topic, values[j % nv], keys[j % nk])
                        break
                    except BufferError:  # local queue full: serve callbacks, then retry
                        producer.poll(0.01)
            producer.poll(0)
            i = min(i + POLL_EVERY, end)
        sent = i
        progress(f"{label}: sent", sent, n)
    left = producer.flush(120)
    seconds = time.perf_counter() - start
    if left or failed:
        log.warning("%s: %d not delivered, %d still queued after flush", label, failed, left)
    progress(f"{label}: acknowledged", delivered, n)
    return Run(items=delivered, seconds=seconds, nbytes=cycled_bytes(delivered, values)), failed


def consume(
    conf: dict[str, Any],
    topic: str,
    expected: int,
    label: str,
    nbytes: int,
    handle: Callable[[list[Message]], None] | None = None,
) -> Run:
    """Read ``expected`` messages from the beginning of ``topic``; ``handle`` sees every batch."""
    consumer = Consumer(conf)
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = sorted(meta.topics[topic].partitions)
        got = errors = 0
        step = max(1, expected // 10)
        next_mark = step
        last_progress = time.monotonic()
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        while got < expected:
            # Never ask for more than is left: consume() would wait out its timeout for them.
            batch = consumer.consume(num_messages=min(CONSUME_BATCH, expected - got), timeout=1.0)
            if not batch:
                if time.monotonic() - last_progress > STALL_S:
                    raise RuntimeError(f"{label}: stalled at {got}/{expected} messages")
                continue
            last_progress = time.monotonic()
            good = [m for m in batch if m.error() is None]
            errors += len(batch) - len(good)
            if handle is not None:
                handle(good)
            got += len(good)
            if got >= next_mark or got >= expected:
                progress(label, got, expected)
                next_mark = (got // step + 1) * step
        seconds = time.perf_counter() - start
        if errors:
            log.warning("%s: %d error events from consume()", label, errors)
        return Run(items=got, seconds=seconds, nbytes=nbytes)
    finally:
        consumer.close()


def fill_encoded(kernel: Kernel, topic: str, n: int) -> tuple[int, int]:
    """Fill ``topic`` with ``n`` encoded ``sis.users.v1`` records; (delivered, value bytes)."""
    serde = kernel.serdes[TOPIC]
    pool = user_pool(min(n, POOL_SIZE))
    values = [serde.encode(r) or b"" for r in pool]
    keys = [r["sourcedId"].encode() for r in pool]
    conf = producer_config(kernel.settings, kernel.endpoints.kafka_bootstrap)
    run, failed = produce(conf, topic, values, keys, n, f"fill {topic}")
    if failed or run.items != n:
        raise RuntimeError(f"filling {topic}: {run.items}/{n} delivered")
    log.info("filled %s: %d records in %.1f s", topic, n, run.seconds)
    return n, cycled_bytes(n, values)


def run_kafka(kernel: Kernel, messages: int, records: int, repeats: int) -> list[Measurement]:
    settings, bootstrap = kernel.settings, kernel.endpoints.kafka_bootstrap
    payloads = payload_pool(kernel.serdes[TOPIC].reader, size=PAYLOAD_SIZE)
    keys = [f"user-{i:08d}".encode() for i in range(65_536)]
    project = producer_config(settings, bootstrap)
    reference = producer_config(settings, bootstrap, **{"enable.idempotence": False, "acks": "1"})

    kb = f"{PAYLOAD_SIZE // 1024} KB"
    prod_project = Measurement(
        "kafka", f"produce {kb}: idempotent, acks=all, zstd, linger 5 ms (project)", "msgs/s", messages
    )
    prod_reference = Measurement(
        "kafka", f"produce {kb}: acks=1, no idempotence, zstd, linger 5 ms (reference)", "msgs/s", messages
    )
    cons_raw = Measurement("kafka", f"consume {kb}: consume({CONSUME_BATCH})", "msgs/s", messages)
    cons_enc = Measurement("kafka", f"consume {TOPIC} records: consume({CONSUME_BATCH})", "msgs/s", records)
    cons_dec = Measurement(
        "kafka",
        f"consume {TOPIC} records + decode_key + TopicSerde.decode (pipeline floor)",
        "records/s",
        records,
    )

    topics = Topics(kernel.admin)
    try:
        # --- produce: fresh topic per run, project and reference interleaved --------------------
        keep: str | None = None  # the last project-producer topic, read by the raw consume runs
        failures = {prod_project.name: 0, prod_reference.name: 0}
        for i in range(repeats):
            for m, conf in ((prod_project, project), (prod_reference, reference)):
                topic = topics.create("raw")
                tag = "project" if m is prod_project else "reference"
                label = f"produce {tag} run {i + 1}/{repeats}"
                run, failed = produce(conf, topic, payloads, keys, messages, label)
                m.runs.append(run)
                failures[m.name] += failed
                log.info("%s: %.0f msgs/s, %.1f MB/s", label, run.rate, run.mb_per_s or 0)
                if m is prod_project:
                    if keep is not None:
                        topics.delete(keep)
                    keep = topic
                else:
                    topics.delete(topic)
        for m in (prod_project, prod_reference):
            if failures[m.name]:
                m.note = f"{failures[m.name]} deliveries failed (not counted)"
        assert keep is not None
        raw_count = prod_project.runs[-1].items

        # --- consume the raw topic -----------------------------------------------------------
        for i in range(repeats):
            conf = consumer_config(settings, bootstrap, f"bench-{uuid.uuid4().hex[:12]}")
            label = f"consume raw run {i + 1}/{repeats}"
            run = consume(conf, keep, raw_count, label, nbytes=raw_count * PAYLOAD_SIZE)
            cons_raw.runs.append(run)
            log.info("%s: %.0f msgs/s", label, run.rate)
        topics.delete(keep)

        # --- consume (and decode) encoded records --------------------------------------------
        encoded = topics.create("users")
        count, nbytes = fill_encoded(kernel, encoded, records)
        serde = kernel.serdes[TOPIC]
        decode = serde.decode

        def decode_batch(batch: list[Message]) -> None:
            for msg in batch:
                decode_key(msg.key())
                decode(msg.value())

        for i in range(repeats):
            for m, handle in ((cons_enc, None), (cons_dec, decode_batch)):
                conf = consumer_config(settings, bootstrap, f"bench-{uuid.uuid4().hex[:12]}")
                label = f"consume {'+ decode ' if handle else ''}{TOPIC} run {i + 1}/{repeats}"
                run = consume(conf, encoded, count, label, nbytes=nbytes, handle=handle)
                m.runs.append(run)
                log.info("%s: %.0f %s", label, run.rate, m.unit)
    finally:
        topics.close()
    return [prod_project, prod_reference, cons_raw, cons_enc, cons_dec]
