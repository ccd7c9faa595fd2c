"""What ``make run`` and ``sislms demo`` show while they run: a progress bar per flow during the
initial sync, then one status line; the supervisor's reports (starts, exits, restarts) above.

On a terminal this is a ``rich`` live display on standard error; elsewhere (CI, a pipe) the same
facts as plain lines, one block every ``every_s`` seconds. Counts and rates only: no record, so
no student data, ever reaches it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.text import Text

from sislms.pipeline import FlowState
from sislms.supervisor import Child

__all__ = ["View", "status_line"]


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def status_line(states: Sequence[FlowState], children: Sequence[Child], extra: str = "") -> str:
    """One line: each flow's rate and lag, the processes up, restarts and memory."""
    parts = []
    for s in states:
        if not s.started:
            continue
        parts.append(f"{s.name.split(':')[0].split(' ->')[0]} {s.rate:,.0f}/s lag {s.lag:,}")
    up = sum(1 for c in children if c.running)
    restarts = sum(c.restarts for c in children)
    rss = sum(c.rss() for c in children)
    tail = f"{up}/{len(children)} up, {restarts} restarts, {_mb(rss)}"
    return " | ".join([*parts, tail] + ([extra] if extra else []))


class View:
    """Progress bars (``phase`` "sync") or the status line (``phase`` "live")."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream, stderr=self.stream is sys.stderr)
        self.tty = self.console.is_terminal
        self.every_s = every_s
        self._printed_at = 0.0
        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            console=self.console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._status = Text("")
        self._live: Live | None = None
        self.phase = "sync"

    def __enter__(self) -> View:
        if self.tty:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def _render(self) -> Group:
        return Group(self.progress, self._status) if self.phase == "sync" else Group(self._status)

    def say(self, line: str) -> None:
        """A line above the live display (a start, an exit, a phase done)."""
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def update(self, states: Sequence[FlowState], children: Sequence[Child], extra: str = "") -> None:
        line = status_line(states, children, extra)
        self._status = Text(line)
        for s in states:
            rate = f"{s.rate:,.0f}/s" if s.started else "waiting"
            if s.name not in self._tasks:
                self._tasks[s.name] = self.progress.add_task(s.name, total=max(1, s.total), rate=rate)
            self.progress.update(self._tasks[s.name], completed=s.done, total=max(1, s.total), rate=rate)
        if self._live is not None:
            self._live.update(self._render())
            return
        now = time.monotonic()
        if now - self._printed_at < self.every_s:
            return
        self._printed_at = now
        if self.phase == "sync":
            for s in states:
                pct = 100.0 * s.done / s.total if s.total else 0.0
                state = f"{s.done:,}/{s.total:,} ({pct:.0f} %), {s.rate:,.0f}/s" if s.started else "waiting"
                print(f"  {s.name:<24} {state}", file=self.stream)
        print(f"  status: {line}", file=self.stream, flush=True)

    def live(self) -> None:
        """The initial sync is over: from now on, the status line only."""
        self.phase = "live"
        if self._live is not None:
            self._live.update(self._render())
