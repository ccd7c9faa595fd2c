"""Runs the simulated SIS: the district, the HTTP provider, the change generator and the
webhook notifier, in the foreground (``sislms sis serve``) or in a background thread (tests)."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import httpx

from connectors.oneroster.auth import SCOPES, TokenIssuer
from simulators.district import District, DistrictSpec, generate
from simulators.serving import AppServer
from simulators.sis.app import SimState, build_app
from simulators.sis.changes import ChangeGenerator
from simulators.sis.store import Change, SisStore

__all__ = ["SimulatorConfig", "SisSimulator", "WebhookNotifier"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 18090
    client_id: str = "sislms"
    client_secret: str = field(default="", repr=False)
    token_ttl_s: float = 3600.0
    district: DistrictSpec = field(default_factory=DistrictSpec)
    change_rate: float = 0.0  # changes per second; 0 = only on request
    change_seed: int = 7
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    known_fields: dict[str, frozenset[str]] = field(default_factory=dict)


class WebhookNotifier:
    """Calls the webhook for every change, from its own thread, batching what queued up.

    The payload names what changed (collection, sourcedId, op, seq), never personal data.
    Delivery is best effort: a failed call is logged and counted; the delta poll still finds
    the change on its next interval.
    """

    def __init__(self, url: str, secret: str | None = None) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._queue: queue.Queue[Change | None] = queue.Queue()
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="sis-webhook", daemon=True)
        self._thread.start()

    def __call__(self, change: Change) -> None:
        self._queue.put(change)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while not self._queue.empty() and len(batch) < 500:
                    item = self._queue.get_nowait()
                    if item is None:
                        self._send(client, batch)
                        return
                    batch.append(item)
                self._send(client, batch)

    def _send(self, client: httpx.Client, batch: list[Change]) -> None:
        body = {"changes": [c.to_json() for c in batch]}
        try:
            response = client.post(self.url, json=body, headers=self.headers)
            response.raise_for_status()
            self.sent += len(batch)
        except httpx.HTTPError as exc:
            self.failed += len(batch)
            log.warning(
                "webhook %s failed for %d change(s): %s", self.url, len(batch), exc.__class__.__name__
            )


class SisSimulator:
    """The simulated SIS over a generated district."""

    def __init__(self, config: SimulatorConfig, district: District | None = None) -> None:
        self.config = config
        started = time.monotonic()
        self.district = district or generate(config.district)
        log.info("district generated in %.1f s: %s", time.monotonic() - started, self.district.counts())
        self.store = SisStore(self.district.collections)
        clients = {config.client_id: (config.client_secret, frozenset(SCOPES))}
        self.issuer = TokenIssuer(clients, ttl_s=config.token_ttl_s)
        self.generator = ChangeGenerator(self.store, self.district, seed=config.change_seed)
        self.state = SimState(self.store, self.issuer, config.known_fields, on_generator=self.set_rate)
        self.notifier = (
            WebhookNotifier(config.webhook_url, config.webhook_secret) if config.webhook_url else None
        )
        if self.notifier is not None:
            self.store.listeners.append(self.notifier)
        self._rate = config.change_rate
        self.server = AppServer(
            "sis-simulator", config.host, config.port, lambda: build_app(self.state), tasks=[self._generate]
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def set_rate(self, rate: float) -> None:
        self._rate = max(0.0, rate)
        log.info("change generator rate set to %.2f/s", self._rate)

    async def _generate(self) -> None:
        while True:
            if self._rate <= 0:
                await asyncio.sleep(0.2)
                continue
            self.generator.step()
            await asyncio.sleep(1.0 / self._rate)

    def serve_forever(self) -> None:
        """Run in the foreground until interrupted."""
        try:
            self.server.serve_forever()
        finally:
            if self.notifier is not None:
                self.notifier.close()

    def start(self) -> SisSimulator:
        """Run in a background thread; returns once it listens."""
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        if self.notifier is not None:
            self.notifier.close()
