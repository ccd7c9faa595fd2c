"""Runs a simulator's aiohttp app: in the foreground (its ``serve`` command) or in a background
thread (tests), with side tasks (change generators) beside it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

__all__ = ["AppServer"]

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

    async def _main(self) -> None:
        self._stop = asyncio.Event()
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

    def serve_forever(self) -> None:
        """Run in the foreground until interrupted."""
        asyncio.run(self._main())

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
