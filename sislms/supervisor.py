"""Process supervision: the pipeline's programs as child processes, restarted when they crash.

:class:`Supervisor` starts each :class:`Program` (a ``sislms`` sub-command) in order, waiting
for the ones with a ``ready_url`` to answer before the next starts; each child writes its output
to ``<log dir>/<name>.log``. :meth:`Supervisor.check`, called every half second or so by the
command that owns the supervisor, notices a child that exited, reports it (name, exit code, the
last line of its log) and starts it again after a back-off that doubles up to a minute (and
resets once a child has stayed up for a minute). :meth:`Supervisor.stop` stops the children in
the reverse order of their start: SIGTERM, then SIGKILL after a grace period.

The children run in their own sessions, so that a Ctrl-C in the terminal reaches the supervisor
only and the stop stays ordered; on Linux each child also gets SIGTERM if the supervisor dies
(``PR_SET_PDEATHSIG``). The pids are kept in ``<log dir>/pids.json``, so that a supervisor
started after a crash of the previous one stops what that one left running
(:func:`stop_leftovers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

__all__ = ["Child", "Program", "Supervisor", "stop_leftovers"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_BACKOFF_MAX_S = 60.0
_STABLE_S = 60.0


@dataclass(frozen=True)
class Program:
    """One long-running ``sislms`` sub-command: ``argv`` after ``sislms``."""

    name: str
    argv: tuple[str, ...]
    #: answers once the program serves (its /healthz, or a simulator's /_sim/health)
    ready_url: str | None = None
    #: how long to wait for ``ready_url`` at the first start
    ready_timeout_s: float = 120.0


_TREE_EVERY_S = 30.0


@dataclass
class Child:
    program: Program
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    last_exit: int | None = None
    last_words: str = ""
    restart_at: float | None = None  #: when a crashed child is due to start again
    backoff_s: float = 1.0
    peak_rss: int = 0
    #: the process and its descendants as psutil knows them: finding descendants scans all of
    #: /proc, so they are looked for again only every ``_TREE_EVERY_S`` (or when the pid changes)
    _tree: list[psutil.Process] = field(default_factory=list, repr=False)
    _tree_pid: int | None = field(default=None, repr=False)
    _tree_at: float = field(default=0.0, repr=False)

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def rss(self) -> int:
        """Resident memory of the child and its own children, in bytes (0 when not running)."""
        if not self.running or self.proc is None:
            return 0
        now = time.monotonic()
        try:
            if self._tree_pid != self.proc.pid or now - self._tree_at >= _TREE_EVERY_S:
                p = psutil.Process(self.proc.pid)
                self._tree, self._tree_pid, self._tree_at = [p, *p.children(recursive=True)], p.pid, now
            total = self._tree[0].memory_info().rss  # the program itself gone: 0, below
            for descendant in self._tree[1:]:
                with contextlib.suppress(psutil.Error):  # one that has ended since it was found
                    total += descendant.memory_info().rss
        except psutil.Error:
            self._tree_pid = None
            return 0
        self.peak_rss = max(self.peak_rss, total)
        return total


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _last_line(path: Path, limit: int = 4096) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            lines = [ln for ln in handle.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


class Supervisor:
    """Starts, watches, restarts and stops the children (see the module's docstring).

    Args:
        programs: in start order.
        env: the children's environment (the settings travel as ``SISLMS_*`` variables).
        log_dir: where each child's output and the pid file go.
        report: called with one line for each start, exit and restart (default: the log).
        command: how a program is run: ``[*command, *program.argv]`` (default: this Python's
            ``-m sislms``).
        die_with_parent: the children get SIGTERM when the supervisor dies (Linux); False for
            children meant to outlive it (:meth:`detach`).
    """

    def __init__(
        self,
        programs: Iterable[Program],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        report: Callable[[str], None] | None = None,
        command: tuple[str, ...] = (sys.executable, "-m", "sislms"),
        die_with_parent: bool = True,
    ) -> None:
        self.die_with_parent = die_with_parent and sys.platform.startswith("linux")
        self.log_dir = log_dir
        self.env = dict(env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.command = command
        self.report = report or log.info
        self.children = [Child(p, log_dir / f"{p.name}.log") for p in programs]
        self.stopping = False

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    # --- start -------------------------------------------------------------------------------

    def start(self, wait: Callable[[], bool] | None = None) -> None:
        """Start every child in order, each with a ``ready_url`` waited for. ``wait`` is called
        while waiting and stops the start when it returns False (a Ctrl-C, say)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            if self.stopping:
                return
            self._spawn(child)
            if child.program.ready_url:
                self._wait_ready(child, wait)

    def _spawn(self, child: Child) -> None:
        handle = child.log_path.open("ab")
        handle.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start ---\n".encode())
        handle.flush()
        child.proc = subprocess.Popen(
            [*self.command, *child.program.argv],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
            start_new_session=not self.die_with_parent,
        )
        handle.close()
        child.started_at = time.monotonic()
        child.restart_at = None
        self._save_pids()
        self.report(f"{child.name}: started (pid {child.proc.pid}, log {child.log_path})")

    def _wait_ready(self, child: Child, wait: Callable[[], bool] | None) -> None:
        url = child.program.ready_url
        assert url is not None
        deadline = time.monotonic() + child.program.ready_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not child.running:
                    raise RuntimeError(
                        f"{child.name} exited with code {child.proc.returncode if child.proc else '?'} "
                        f"while starting: {_last_line(child.log_path)} (log: {child.log_path})"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    client.get(url)  # any answer: it serves (its health is shown, not waited for)
                    return
                if wait is not None and not wait():
                    self.stopping = True
                    return
                time.sleep(0.25)
        raise RuntimeError(
            f"{child.name} did not answer on {url} within {child.program.ready_timeout_s:.0f} s "
            f"(log: {child.log_path})"
        )

    # --- watch -------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Notice exits, restart what is due; returns the lines it reported."""
        said: list[str] = []

        def say(line: str) -> None:
            said.append(line)
            self.report(line)

        now = time.monotonic()
        for child in self.children:
            if self.stopping:
                break
            if child.proc is not None and child.restart_at is None and child.proc.poll() is not None:
                child.last_exit = child.proc.returncode
                child.last_words = _last_line(child.log_path)
                up = now - child.started_at
                child.backoff_s = 1.0 if up >= _STABLE_S else min(_BACKOFF_MAX_S, child.backoff_s * 2)
                child.restart_at = now + (0.0 if up >= _STABLE_S else child.backoff_s)
                say(
                    f"{child.name}: exited with code {child.last_exit} after {up:.0f} s; restarting "
                    f"in {child.restart_at - now:.0f} s. Last line: {child.last_words} "
                    f"(log: {child.log_path})"
                )
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
                say(f"{child.name}: restarted (restart #{child.restarts})")
            child.rss()
        return said

    # --- stop --------------------------------------------------------------------------------

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM each child, last started first, and wait for it (SIGKILL after ``grace_s``)."""
        self.stopping = True
        for child in reversed(self.children):
            proc = child.proc
            if proc is None or proc.poll() is not None:
                continue
            self.report(f"{child.name}: stopping")
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.report(f"{child.name}: still running after {grace_s:.0f} s, killed")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        with contextlib.suppress(OSError):
            (self.log_dir / "pids.json").unlink()

    def detach(self) -> None:
        """Leave the children running (they were started with ``die_with_parent`` False); their
        pids stay in ``pids.json`` for :func:`stop_leftovers`."""
        self._save_pids()
        self.stopping = True

    def _save_pids(self) -> None:
        pids = {c.name: c.pid for c in self.children if c.running}
        (self.log_dir / "pids.json").write_text(json.dumps(pids))


def stop_leftovers(log_dir: Path, report: Callable[[str], None] = log.info) -> int:
    """Stop the children a previous supervisor left running (it was killed); returns how many."""
    path = log_dir / "pids.json"
    try:
        pids: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    stopped = 0
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            if "sislms" not in " ".join(proc.cmdline()):
                continue  # the pid was reused by something else
            proc.terminate()
            proc.wait(30)
        except psutil.TimeoutExpired:
            proc.kill()
        except psutil.Error:
            continue
        stopped += 1
        report(f"{name}: left running by an earlier run (pid {pid}), stopped")
    path.unlink(missing_ok=True)
    return stopped
