"""Serde encode and decode records/s against plain fastavro on the same parsed schema."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import fastavro

from streams.serde import TopicSerde

__all__ = ["serde_benchmarks"]


def _rate(n: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def serde_benchmarks(serde: TopicSerde, pool: list[dict[str, Any]], n: int) -> dict[str, Callable[[], float]]:
    """Named measurements, each returning records/s for ``n`` records cycled from ``pool``."""
    parsed = serde.reader
    records = [pool[i % len(pool)] for i in range(n)]
    encoded = [serde.encode(r) for r in pool]
    bodies = [bytes(e[5:]) for e in encoded if e is not None]
    frames = [encoded[i % len(encoded)] for i in range(n)]
    raw_bodies = [bodies[i % len(bodies)] for i in range(n)]
    serde.schema_id  # noqa: B018 - looked up once, before timing

    def encode_validated() -> None:
        serde.validate = True
        for r in records:
            serde.encode(r)

    def encode_unvalidated() -> None:
        serde.validate = False
        try:
            for r in records:
                serde.encode(r)
        finally:
            serde.validate = True

    def encode_raw() -> None:
        for r in records:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, r)
            buf.getvalue()

    def decode_serde() -> None:
        for f in frames:
            serde.decode(f)

    def decode_raw() -> None:
        for b in raw_bodies:
            fastavro.schemaless_reader(io.BytesIO(b), parsed, None)

    return {
        "encode: serde (validate)": lambda: _rate(n, encode_validated),
        "encode: serde (no validate)": lambda: _rate(n, encode_unvalidated),
        "encode: plain fastavro (limit)": lambda: _rate(n, encode_raw),
        "decode: serde": lambda: _rate(n, decode_serde),
        "decode: plain fastavro (limit)": lambda: _rate(n, decode_raw),
    }
