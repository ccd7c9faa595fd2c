"""A long-running worker (a sink, a processor) in a background thread, for integration tests."""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar


class _Runs(Protocol):
    def run(self, stop: threading.Event) -> None: ...


W = TypeVar("W", bound=_Runs)


class Running(Generic[W]):
    """``worker.run(stop)`` in a daemon thread; ``close()`` stops it and re-raises what it hit."""

    def __init__(self, worker: W) -> None:
        self.worker = worker
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run(self.stop)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert self.error is None, repr(self.error)
