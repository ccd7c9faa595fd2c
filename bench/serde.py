"""Serde throughput for ``sis.users.v1``: our ``TopicSerde`` against plain fastavro.

Encode is measured three ways: ``TopicSerde.encode`` with validation (the default), with
``validate=False``, and ``fastavro.schemaless_writer`` alone on the same parsed schema into a
fresh ``BytesIO`` (the raw limit: no validation, no wire-format header). Decode is measured as
``TopicSerde.decode`` (header, writer schema by id, resolution against the contract, trailing-
bytes check) and ``fastavro.schemaless_reader`` alone on the Avro body with the parsed schema.

Records come from a pool of distinct invented records (``bench.records``), cycled for long runs;
the variants of one operation run interleaved (A B C, A B C, ...) so that noise on a shared
machine spreads over all of them.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from itertools import cycle, islice
from typing import Any

import fastavro

from bench.measure import Measurement, Run, cycled_bytes, progress, steps
from bench.records import user_pool
from sislms.wiring import Kernel
from streams.serde import TopicSerde

__all__ = ["POOL_SIZE", "TOPIC", "run_serde"]

log = logging.getLogger("bench.serde")

TOPIC = "sis.users.v1"
#: Distinct records generated; longer runs cycle through them.
POOL_SIZE = 5_000


def _timed(label: str, items: Sequence[Any], n: int, fn: Callable[[Any], Any], nbytes: int) -> Run:
    """Call ``fn`` on ``n`` items cycled from ``items``; progress is logged between chunks."""
    it = cycle(items)
    done = 0
    start = time.perf_counter()
    for chunk in steps(n):
        for item in islice(it, chunk):
            fn(item)
        done += chunk
        progress(label, done, n)
    return Run(items=n, seconds=time.perf_counter() - start, nbytes=nbytes)


def run_serde(kernel: Kernel, records: int, repeats: int) -> list[Measurement]:
    serde = kernel.serdes[TOPIC]
    spec = serde.spec
    unvalidated = TopicSerde(kernel.registry, spec, kernel.catalog.contract(spec).schema, validate=False)
    parsed = serde.reader

    log.info("serde: generating %d distinct %s records", min(records, POOL_SIZE), TOPIC)
    pool = user_pool(min(records, POOL_SIZE))
    # Warm-up outside the clock: the schema id lookup, the writer schema fetch, and a check that
    # every generated record is valid and round-trips.
    wires: list[bytes] = []
    for rec in pool:
        wire = serde.encode(rec)
        assert wire is not None
        wires.append(wire)
    for wire in wires[:100]:
        serde.decode(wire)
    bodies = [w[5:] for w in wires]
    wire_sizes = [len(w) for w in wires]
    log.info(
        "serde: schema id %d, mean encoded size %.0f bytes (%d-byte header included)",
        serde.schema_id,
        sum(wire_sizes) / len(wire_sizes),
        5,
    )

    def raw_encode(rec: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, rec)
        return buf.getvalue()

    def raw_decode(body: bytes) -> Any:
        return fastavro.schemaless_reader(io.BytesIO(body), parsed)

    wire_bytes, body_bytes = cycled_bytes(records, wires), cycled_bytes(records, bodies)
    variants: list[tuple[Measurement, Sequence[Any], Callable[[Any], Any], int]] = [
        (
            Measurement("serde", "encode: TopicSerde.encode, validate=True (default)", "records/s", records),
            pool,
            serde.encode,
            wire_bytes,
        ),
        (
            Measurement("serde", "encode: TopicSerde.encode, validate=False", "records/s", records),
            pool,
            unvalidated.encode,
            wire_bytes,
        ),
        (
            Measurement("serde", "encode: fastavro.schemaless_writer (raw limit)", "records/s", records),
            pool,
            raw_encode,
            body_bytes,
        ),
        (
            Measurement("serde", "decode: TopicSerde.decode", "records/s", records),
            wires,
            serde.decode,
            wire_bytes,
        ),
        (
            Measurement("serde", "decode: fastavro.schemaless_reader (raw limit)", "records/s", records),
            bodies,
            raw_decode,
            body_bytes,
        ),
    ]
    for i in range(repeats):
        for m, items, fn, nbytes in variants:
            label = f"serde {m.name.split(':')[0]} [{m.name.split(': ', 1)[1]}] run {i + 1}/{repeats}"
            m.runs.append(_timed(label, items, records, fn, nbytes))
            log.info("%s: %.0f %s", label, m.runs[-1].rate, m.unit)
    return [m for m, *_ in variants]
