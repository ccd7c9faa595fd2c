"""Runs, repeats and their summary: what every benchmark module returns.

A ``Measurement`` is one line of the table: the same operation repeated a few times, each
repetition a ``Run`` (items done, wall seconds, bytes moved). Rates are items per second and
MB/s (10^6 bytes per second). Nothing here judges a number: the benchmarks report, never assert.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Measurement", "Run", "cycled_bytes", "progress", "steps"]

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Run:
    items: int
    seconds: float
    nbytes: int | None = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mb_per_s(self) -> float | None:
        if self.nbytes is None or self.seconds <= 0:
            return None
        return self.nbytes / self.seconds / 1e6


@dataclass
class Measurement:
    group: str
    name: str
    unit: str  # "records/s" or "msgs/s"
    per_run: int  # items asked for in each run
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    @property
    def rates(self) -> list[float]:
        return [r.rate for r in self.runs]

    @property
    def median(self) -> float:
        """NaN when nothing ran (a run not started or not completed: its note says why)."""
        return statistics.median(self.rates) if self.runs else float("nan")

    @property
    def low(self) -> float:
        return min(self.rates) if self.runs else float("nan")

    @property
    def high(self) -> float:
        return max(self.rates) if self.runs else float("nan")

    @property
    def median_mb_per_s(self) -> float | None:
        values = [r.mb_per_s for r in self.runs if r.mb_per_s is not None]
        return statistics.median(values) if values else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "per_run": self.per_run,
            "note": self.note,
            "median": self.median if self.runs else None,
            "min": self.low if self.runs else None,
            "max": self.high if self.runs else None,
            "median_mb_per_s": self.median_mb_per_s,
            "runs": [asdict(r) | {"rate": r.rate, "mb_per_s": r.mb_per_s} for r in self.runs],
        }


def steps(total: int, parts: int = 10) -> Iterator[int]:
    """Split ``total`` into about ``parts`` chunks, so a loop can report progress between them."""
    size = max(1, -(-total // parts))
    done = 0
    while done < total:
        chunk = min(size, total - done)
        done += chunk
        yield chunk


def cycled_bytes(n: int, items: Sequence[bytes]) -> int:
    """Total length of ``n`` items taken in turn from ``items`` (cycling)."""
    if not items:
        return 0
    full, rest = divmod(n, len(items))
    return full * sum(map(len, items)) + sum(map(len, items[:rest]))


def progress(label: str, done: int, total: int) -> None:
    log.info("%s: %d/%d", label, done, total)
