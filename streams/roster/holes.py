"""Keep Faust from committing past records that no agent processed (a hole at the head).

Faust commits the first run of consecutive acked offsets of a partition. Its check that the run
starts where the last commit ended is off by one (``min(acked) - committed > 1``) and is skipped
when nothing was committed yet, so when a rebalance made it drop a record before an agent saw
it, the next commit moved past that record and it was never read again. :class:`HoleGuard` knows
where each partition's next commit must start (the committed offset, or the log's start) and
holds a commit whose acked run starts later, until it is known why:

* the log has no record there (compaction removed it, or it is a transaction marker): the
  commit goes on;
* the record is there: the partition is read again from that offset (the records after it are
  processed again: the same commands, the same ids) and the commit waits for it.

The worker wires it into Faust's consumer (:meth:`streams.roster.app.Roster._wrap_consumer`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Hole", "HoleGuard"]


@dataclass
class Hole:
    """Offsets ``start`` up to ``first`` (excluded) of a partition were never acked."""

    start: int
    first: int
    #: what the log holds there: None while it is being looked up
    exists: bool | None = None
    #: when it was found, then when it was last looked up (monotonic)
    at: float = field(default_factory=time.monotonic)
    looked: bool = False


@dataclass
class HoleGuard:
    """Where each partition's next commit must start, and the holes found before it."""

    next: dict[Any, int] = field(default_factory=dict)
    holes: dict[Any, Hole] = field(default_factory=dict)
    #: a hole is looked into only when it stays this long (its records may still be on their
    #: way: fetched, queued for an agent, or read again)
    grace_s: float = 15.0
    #: a real hole not filled this long after reading it again is looked up (and read) again
    retry_s: float = 30.0

    def start(self, tp: Any, offset: int) -> None:
        """The partition was (re)assigned and reads from ``offset``."""
        self.next[tp] = offset
        self.holes.pop(tp, None)

    def forget(self, tps: Iterable[Any]) -> None:
        for tp in tps:
            self.next.pop(tp, None)
            self.holes.pop(tp, None)

    def committed(self, tp: Any, offset: int) -> None:
        self.next[tp] = offset
        self.holes.pop(tp, None)

    def check(
        self, tp: Any, acked: list[int], covered: Callable[[int, int], bool]
    ) -> tuple[str, Hole | None]:
        """May the acked offsets of ``tp`` be committed?

        Returns ``("ok", None)``; ``("look", hole)`` for a hole that stayed ``grace_s`` (find out
        what the log holds from ``hole.start``, then call :meth:`found`); ``("wait", hole)``
        meanwhile, while that is not known, or while the partition is being read again.
        ``covered(a, b)`` tells whether Faust already knows offsets ``a`` to ``b - 1`` are
        missing from the log.
        """
        start = self.next.get(tp)
        if start is None or not acked:
            return "ok", None
        first = min(acked)
        if first <= start or covered(start, first):
            self.holes.pop(tp, None)
            return "ok", None
        hole = self.holes.get(tp)
        if hole is None or hole.start != start:
            hole = self.holes[tp] = Hole(start, first, exists=None, at=time.monotonic(), looked=False)
        if not hole.looked:
            if time.monotonic() - hole.at < self.grace_s:
                return "wait", hole
            hole.looked, hole.at = True, time.monotonic()
            return "look", hole
        if hole.exists is False and first <= hole.first:
            return "ok", None  # nothing in the log from start to first
        if hole.exists is not None and time.monotonic() - hole.at > self.retry_s:
            hole.exists, hole.at = None, time.monotonic()
            return "look", hole
        return "wait", hole

    def found(self, tp: Any, hole: Hole, next_in_log: int | None) -> bool:
        """The log's first record at or after ``hole.start`` is ``next_in_log`` (None: none).
        Returns whether the hole is real (records are missing: read the partition again)."""
        hole.exists = next_in_log is not None and next_in_log < hole.first
        return hole.exists
