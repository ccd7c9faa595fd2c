"""Background processes of the local stack: start detached, track by pid file, stop cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psutil

__all__ = ["ManagedProcess", "tail"]


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file (empty if there is none)."""
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 16384))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One background process whose pid lives in ``<dir>/pid`` and output in ``<dir>/<log>``.

    The pid is trusted only while that process's command line still names ``marker`` (the
    component's own directory), so a recycled pid is never mistaken for ours.
    """

    def __init__(self, directory: Path, marker: str, log_name: str = "stdout.log") -> None:
        self.dir = directory
        self.pid_file = directory / "pid"
        self.log = directory / log_name
        self.marker = marker

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if self.marker not in " ".join(proc.cmdline()):
                return None
        except psutil.Error:
            return None
        return pid

    def was_started(self) -> bool:
        """A pid file exists: we started it and have not stopped it since."""
        return self.pid_file.exists()

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None, user: str | None = None) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=self.dir,
                user=user,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def adopt(self, pid: int) -> None:
        """Record a pid that another tool started (pg_ctl forks the postmaster)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``. True if a process was stopped."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        except psutil.NoSuchProcess:
            pass
        return True
