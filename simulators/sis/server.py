"""Runs the simulated SIS: the district, the HTTP provider, the change generator and the
webhook notifier, in the foreground (``sislms sis serve``) or in a background thread (tests).

With a ``state_file``, the store is saved there while it runs and when it stops, and a simulator
started again on that file goes on from the saved district and change log instead of generating
a new district.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from connectors.oneroster.auth import SCOPES, TokenIssuer
from simulators.district import District, DistrictSpec, generate
from simulators.serving import AppServer, StateFileError, StateSaver
from simulators.sis.app import SimState, build_app
from simulators.sis.changes import ChangeGenerator
from simulators.sis.store import Change, SisStore

__all__ = ["SimulatorConfig", "SisSimulator", "WebhookNotifier"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatorConfig:
    """The SIS simulator's settings.

    Attributes:
        state_file: where the store is kept across restarts (None: in memory only). When the file
            exists at start, the district, its changes and its change log are read from it and
            ``district`` (the spec) is not generated.
        save_every_s: seconds between saves of a changed store to ``state_file``.
    """

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
    state_file: Path | None = None
    save_every_s: float = 30.0


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
    """The simulated SIS over a generated district, or over the one its ``state_file`` holds."""

    def __init__(self, config: SimulatorConfig, district: District | None = None) -> None:
        self.config = config
        started = time.monotonic()
        path = config.state_file
        self.restored = path is not None and path.exists()
        seed = config.change_seed
        if path is not None and self.restored:
            self.store = SisStore.load(path)
            self.district = _district_of(self.store, path)
            log.info(
                "SIS state restored from %s in %.1f s: %s, %d changes",
                path,
                time.monotonic() - started,
                self.district.counts(),
                self.store.last_seq,
            )
            if self.district.spec != config.district:
                log.warning("the restored district was generated from another spec: keeping the restored one")
            # A fresh seed: the configured one would make the ids the first run made again
            # (the factory draws sourcedIds from its seeded RNG).
            seed = secrets.randbits(63)
            log.info("change generator seeded with %d (restored state)", seed)
        else:
            self.district = district or generate(config.district)
            log.info("district generated in %.1f s: %s", time.monotonic() - started, self.district.counts())
            self.store = SisStore(self.district.collections)
            self.store.meta["district"] = {"spec": self.district.spec, "context": self.district.context}
        self.saver = (
            StateSaver(
                "sis-simulator",
                path,
                self.store.save,
                lambda: self.store.last_seq,
                every_s=config.save_every_s,
                saved=self.store.last_seq if self.restored else None,
            )
            if path is not None
            else None
        )
        clients = {config.client_id: (config.client_secret, frozenset(SCOPES))}
        self.issuer = TokenIssuer(clients, ttl_s=config.token_ttl_s)
        self.generator = ChangeGenerator(self.store, self.district, seed=seed)
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
        """Run in the foreground until SIGTERM or SIGINT; the state is saved a last time."""
        if self.saver is not None:
            self.saver.start()
        try:
            self.server.serve_forever()
        finally:
            if self.saver is not None:
                self.saver.stop()
            if self.notifier is not None:
                self.notifier.close()

    def start(self) -> SisSimulator:
        """Run in a background thread; returns once it listens."""
        self.server.start()
        if self.saver is not None:
            self.saver.start()
        return self

    def stop(self) -> None:
        """Stop serving and changing, then save the state a last time (with a ``state_file``)."""
        self.server.stop()
        if self.saver is not None:
            self.saver.stop()
        if self.notifier is not None:
            self.notifier.close()

    def save(self) -> bool:
        """Save the state now if it changed since the last save (True when it saved)."""
        return self.saver.save_now() if self.saver is not None else False


def _district_of(store: SisStore, path: Path) -> District:
    """The district a restored store holds, with the numbers its factory hands out next moved
    past every one in use (the first run's new users took some)."""
    saved = store.meta.get("district")
    if not isinstance(saved, dict) or "spec" not in saved or "context" not in saved:
        raise StateFileError(f"{path} has no district spec and context (not saved by the SIS simulator)")
    context = saved["context"]
    numbers = _next_numbers(store.collections.get("users", {}).values(), context.next_numbers)
    return District(saved["spec"], store.collections, replace(context, next_numbers=numbers))


def _next_numbers(users: Iterable[Mapping[str, Any]], start: Mapping[str, int]) -> dict[str, int]:
    """``start`` moved past the district numbers the users hold: ``identifier`` ``<n>`` (a
    student), ``E<n>`` (staff), ``G<n>`` (a guardian), and the digits-only ``userIds`` (state ids)."""
    top = dict(start)

    def seen(kind: str, text: str) -> None:
        if text.isdigit():
            top[kind] = max(top.get(kind, 0), int(text) + 1)

    for user in users:
        identifier = str(user.get("identifier") or "")
        if identifier[:1] in ("E", "G"):
            seen("staff" if identifier[0] == "E" else "guardian", identifier[1:])
        else:
            seen("student", identifier)
        for uid in user.get("userIds") or ():
            if isinstance(uid, Mapping):
                seen("state", str(uid.get("identifier") or ""))
    return top
