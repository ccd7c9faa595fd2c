"""Runs a simulator's aiohttp app: in the foreground (its ``serve`` command) or in a background
thread (tests), with side tasks (change generators) beside it; and keeps a simulator's state in a
file across restarts (:func:`write_state`, :func:`read_state`, :class:`StateSaver`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["AppServer", "StateFileError", "StateSaver", "read_state", "write_state"]

log = logging.getLogger(__name__)

Task = Callable[[], Coroutine[Any, Any, None]]


class AppServer:
    """An aiohttp application on ``host:port`` (port 0: a free one, known once it listens)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        app: Callable[[], web.Application],
        tasks: list[Task] | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._app = app
        self._tasks = tasks or []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _main(self, handle_signals: bool = False) -> None:
        self._stop = asyncio.Event()
        if handle_signals:
            self._on_signals(asyncio.get_running_loop(), self._stop)
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info("%s listening on %s", self.name, self.url)
        tasks = [asyncio.create_task(t()) for t in self._tasks]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await runner.cleanup()

    def _on_signals(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        """SIGTERM (a supervisor's stop) and SIGINT stop the server, so ``serve_forever`` returns
        and its callers' ``finally`` blocks run (SIGTERM's default would end the process without
        them). The handlers go after the first signal: a second one acts as it normally would."""

        def stopping(sig: signal.Signals) -> None:
            log.info("%s: %s received, stopping", self.name, sig.name)
            for s in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(s)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping, sig)

    def serve_forever(self) -> None:
        """Run in the foreground until stopped: SIGTERM or SIGINT make it return (main thread)."""
        asyncio.run(self._main(handle_signals=threading.current_thread() is threading.main_thread()))

    def start(self) -> None:
        """Run in a background thread; returns once it listens."""

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._main())

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"{self.name} did not start within 30 s")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)


# --- state files ------------------------------------------------------------------------------


class StateFileError(Exception):
    """A state file that cannot be read back as the state asked for (another kind, another
    format version, or not a state file); the message names the file."""


_VERSION = 1


def write_state(path: Path, kind: str, state: Mapping[str, Any]) -> int:
    """Write ``state`` (plain data: dicts, lists, tuples, sets, scalars, frozen dataclasses) to
    ``path`` atomically: pickled to a temporary file in the same directory, flushed to disk, then
    renamed over ``path``; a crash leaves the old file or the new one, never a torn one.
    Returns the size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"kind": kind, "version": _VERSION, "state": dict(state)}, f, pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return size


def read_state(path: Path, kind: str) -> dict[str, Any]:
    """The state :func:`write_state` wrote to ``path`` for ``kind``. Only for files this project
    wrote (it unpickles). Raises :class:`StateFileError` for anything else, OSError when the
    file cannot be read."""
    with path.open("rb") as f:
        try:
            envelope = pickle.load(f)  # noqa: S301 - our own state file, in our own state directory
        except Exception as exc:
            raise StateFileError(f"{path} is not a readable state file ({exc.__class__.__name__})") from exc
    if not isinstance(envelope, dict) or envelope.get("kind") != kind:
        found = envelope.get("kind") if isinstance(envelope, dict) else type(envelope).__name__
        raise StateFileError(f"{path} holds {found!r}, not a {kind!r} state")
    if envelope.get("version") != _VERSION:
        raise StateFileError(f"{path} is format version {envelope.get('version')}, expected {_VERSION}")
    state = envelope.get("state")
    if not isinstance(state, dict):
        raise StateFileError(f"{path} has no state")
    return state


class StateSaver:
    """Saves a simulator's state in a background thread every ``every_s`` seconds when it changed
    since the last save, and a last time on :meth:`stop`. A failed save is logged, never raised.

    Args:
        name: for the thread and the log lines.
        path: the state file.
        save: writes the state to the path given and returns the change counter it saved at
            (read together with the state, under the owner's lock).
        counter: the owner's change counter now (cheap; any change makes it differ).
        every_s: seconds between looks.
        saved: the counter the file already holds (a state just loaded from it); None when the
            file does not hold the current state, so the first look saves.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        save: Callable[[Path], int],
        counter: Callable[[], int],
        *,
        every_s: float = 30.0,
        saved: int | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.every_s = every_s
        self.saves = 0  #: successful saves
        self.failures = 0  #: failed saves
        self._save = save
        self._counter = counter
        self._saved = saved
        self._lock = threading.Lock()  # one save at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def dirty(self) -> bool:
        """Whether the state changed since the last save."""
        return self._counter() != self._saved

    def start(self) -> StateSaver:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-saver", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and save a last time (when something changed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.save_now()

    def save_now(self, force: bool = False) -> bool:
        """Save if something changed (or ``force``); True when it saved. Never raises."""
        with self._lock:
            if not force and not self.dirty:
                return False
            started = time.monotonic()
            try:
                self._saved = self._save(self.path)
            except Exception:
                self.failures += 1
                log.exception("%s: saving the state to %s failed", self.name, self.path)
                return False
            self.saves += 1
            size = self.path.stat().st_size if self.path.exists() else 0
            log.info(
                "%s: state saved to %s in %.2f s (%.1f MB)",
                self.name,
                self.path,
                time.monotonic() - started,
                size / 1e6,
            )
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.save_now()
