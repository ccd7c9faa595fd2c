"""Delivers the simulated LMS's Live Events to an HTTP endpoint, as Canvas's Live Events
subscriptions do: one event per POST (JSON, ``Authorization: Bearer <token>``), retried with
backoff on connection errors, 5xx and 429, neither deduplicated nor ordered.

:class:`LiveEventsEmitter` is a store listener (it builds the payload at once, so later changes
to the object do not leak into it) and a sink for the activity generator's session events.
``senders`` background threads (one by default) drain a bounded queue concurrently, as Canvas
delivers with many concurrent requests. Nothing is dropped silently: every payload ends up
counted as sent, rejected (a 4xx other than 429), failed (retries exhausted) or dropped (the
queue stayed full, or the emitter stopped with it unsent), and each of the last three is logged
with the event name and status only.

Two knobs exercise the ingest side the way Canvas does: ``duplicate_rate`` sends some events a
second time (same payload, same event id) and ``shuffle_window`` releases the queued events in a
random order within a window of that many (a window per sender thread).

:meth:`LiveEventsEmitter.delivered` is the record of every event answered 2xx, with the
wall-clock times (``time.time()``) of its queueing, of its first POST and of the answer, for
latency measurements: ``sent_at - queued_at`` is the simulator's own backlog.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from simulators.lms.live_events import Asset, LiveEventBuilder, Payload
from simulators.lms.store import CanvasStore, Obj

__all__ = ["EmitterCounts", "LiveEventsEmitter"]

log = logging.getLogger(__name__)

_RETRIABLE = frozenset({429, 500, 502, 503, 504})
_LOG_EVERY_S = 30.0


@dataclass
class EmitterCounts:
    """What became of the events: ``queued`` = sent + rejected + failed + dropped + in flight."""

    queued: int = 0  #: payloads accepted (duplicates included)
    duplicated: int = 0  #: extra copies made by ``duplicate_rate``
    sent: int = 0  #: answered 2xx
    retried: int = 0  #: attempts repeated after a connection error, 5xx or 429
    rejected: int = 0  #: answered a 4xx other than 429 (not retried)
    failed: int = 0  #: given up: retries exhausted, or stopped while retrying
    dropped: int = 0  #: never sent: the queue stayed full, or left unsent at stop
    skipped: int = 0  #: store changes this format has no event for
    errors: int = 0  #: store changes a payload could not be built for

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class _Item:
    event_name: str
    payload: Payload
    copy: bool = False  #: the extra copy made by ``duplicate_rate``
    queued_at: float = field(default_factory=time.time)  #: wall time it was queued (or copied)
    subject: str | None = None  #: for a grade: ``<assignment id>|<user id>`` (Canvas ids)


#: (event id, event name, queued at, first POST at, 2xx at, copy, subject): one per event
#: answered 2xx
_Delivery = tuple[str | None, str, float, float, float, bool, str | None]


def _event_id(payload: Payload) -> str | None:
    """The Caliper event's ``id`` (a single event, or an envelope's first); None for the Canvas
    format, which has none."""
    data = payload.get("data")
    event = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else payload
    if "metadata" in event:
        return None
    value = event.get("id")
    return None if value is None else str(value)


@dataclass
class _Config:
    queue_size: int
    put_timeout_s: float
    max_attempts: int
    backoff_s: float
    max_backoff_s: float
    timeout_s: float
    duplicate_rate: float
    shuffle_window: int
    senders: int


class LiveEventsEmitter:
    """POSTs Live Events to ``url`` from ``senders`` background threads.

    Args:
        url: the receiving endpoint.
        token: sent as ``Authorization: Bearer <token>``; never logged.
        fmt: ``"canvas"`` or ``"caliper"``.
        store: when given, the emitter registers itself as its listener (see :meth:`attach`).
        builder: builds the payloads (default: one for ``store`` in ``fmt``).
        base_url: the simulated Canvas's address written into the events.
        queue_size: bound of the queue; a full queue blocks the producer up to ``put_timeout_s``.
        max_attempts: tries per event (the first one included) before it counts as failed.
        backoff_s, max_backoff_s: exponential backoff between tries, with jitter; a
            ``Retry-After`` header is honoured up to ``max_backoff_s``.
        timeout_s: per-request timeout.
        duplicate_rate: share (0..1) of events sent twice.
        shuffle_window: events released in random order within a window of this many (0: in order);
            each sender thread holds a window of its own.
        senders: sender threads draining the queue concurrently, each with its own connection;
            with more than one, events are also delivered out of order.
        seed: for the duplicate, shuffle and jitter draws (each sender thread has its own
            generator, derived from it; a single sender draws exactly as before).
        transport: an httpx transport (tests); shared by the sender threads and left open.
    """

    def __init__(
        self,
        url: str,
        token: str,
        fmt: str = "canvas",
        *,
        store: CanvasStore | None = None,
        builder: LiveEventBuilder | None = None,
        base_url: str = "https://canvas.sim.test",
        queue_size: int = 10_000,
        put_timeout_s: float = 30.0,
        max_attempts: int = 8,
        backoff_s: float = 0.25,
        max_backoff_s: float = 30.0,
        timeout_s: float = 10.0,
        duplicate_rate: float = 0.0,
        shuffle_window: int = 0,
        senders: int = 1,
        seed: int | None = None,
        transport: httpx.BaseTransport | None = None,
        record: bool = True,
    ) -> None:
        if not 0.0 <= duplicate_rate <= 1.0:
            raise ValueError("duplicate_rate must be within 0..1")
        if shuffle_window < 0 or queue_size < 1 or max_attempts < 1 or senders < 1:
            raise ValueError("shuffle_window must be >= 0, queue_size, max_attempts and senders >= 1")
        self.url = url
        self._token = token
        self.fmt = fmt
        self.base_url = base_url
        self._config = _Config(
            queue_size=queue_size,
            put_timeout_s=put_timeout_s,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            timeout_s=timeout_s,
            duplicate_rate=duplicate_rate,
            shuffle_window=shuffle_window,
            senders=senders,
        )
        self.builder = builder
        self.store: CanvasStore | None = None
        self._transport = transport
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._counts = EmitterCounts()
        self._delivered: list[_Delivery] = []
        #: keep the delivery record (``delivered``); off for a simulator that runs for days
        self.record = record
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # One generator per sender thread; the first draws what a single sender always drew.
        self._rngs = [random.Random(seed)] + [
            random.Random(None if seed is None else f"{seed}/{n}") for n in range(2, senders + 1)
        ]
        self._logged_at = time.monotonic()
        self._logged: dict[str, int] = {}
        if store is not None:
            self.attach(store)

    def __repr__(self) -> str:
        return f"LiveEventsEmitter(url={self.url!r}, fmt={self.fmt!r}, senders={self.senders})"

    # --- wiring ------------------------------------------------------------------------------

    def attach(self, store: CanvasStore) -> LiveEventsEmitter:
        """Listen to ``store``'s changes (building a builder for it if none was given)."""
        if self.builder is None:
            self.builder = LiveEventBuilder(store, self.fmt, base_url=self.base_url)
        self.store = store
        if self not in store.listeners:
            store.listeners.append(self)
        return self

    def detach(self) -> None:
        if self.store is not None and self in self.store.listeners:
            self.store.listeners.remove(self)

    @property
    def senders(self) -> int:
        return self._config.senders

    @property
    def running(self) -> bool:
        """Whether a sender thread is alive."""
        return any(t.is_alive() for t in self._threads)

    def start(self) -> LiveEventsEmitter:
        if self.running:
            return self
        self._stop.clear()
        with self._lock:
            self._logged_at, self._logged = time.monotonic(), self._counts.as_dict()
        self._threads = [
            threading.Thread(target=self._run, args=(rng,), name=f"lms-live-events-{n}", daemon=True)
            for n, rng in enumerate(self._rngs, start=1)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0, flush: bool = True) -> None:
        """Stop the senders; with ``flush``, first wait up to ``timeout`` for the queue to drain.
        Whatever is left unsent is counted as dropped (and logged)."""
        if flush and self.running:
            self.flush(timeout)
        self._stop.set()
        # One deadline for all: a thread may be inside a request of up to timeout_s.
        deadline = time.monotonic() + max(timeout, 1.0) + self._config.timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = []
        self._drop_queued("stopped")
        log.info("live events emitter stopped: %s", self.counts())

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is settled (sent, rejected, failed); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._outstanding > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            return self._counts.as_dict()

    def delivered(self) -> list[dict[str, Any]]:
        """Every event answered 2xx, in the order of the answers: ``id`` (the Caliper event id;
        None in the Canvas format), ``name`` (the event name), ``queued_at`` (wall time it was
        offered to the queue, so a wait for room in a full queue counts; for the extra copy, when
        it was made), ``sent_at`` (wall time of its first POST), ``acked_at`` (wall time of the
        2xx), ``copy`` (True for the extra copy made by ``duplicate_rate``) and, for a
        ``grade_change``, ``subject`` (``<assignment id>|<user id>``, Canvas ids). A copy."""
        with self._lock:
            rows = list(self._delivered)
        return [
            {
                "id": eid, "name": name, "queued_at": queued, "sent_at": sent, "acked_at": acked,
                "copy": copy, "subject": subject,
            }
            for eid, name, queued, sent, acked, copy, subject in rows
        ]  # fmt: skip

    # --- producing ---------------------------------------------------------------------------

    def __call__(self, event_name: str, obj: Obj) -> None:
        """The store listener: build now, send later. Never raises into the store."""
        if self.builder is None:
            return
        try:
            payload = self.builder.build(event_name, obj)
        except Exception:
            log.exception("live event %s could not be built", event_name)
            self._count("errors")
            return
        if payload is None:
            self._count("skipped")
            return
        subject = f"{obj.get('assignment_id')}|{obj.get('user_id')}" if event_name == "grade_change" else None
        self.emit(payload, event_name, subject=subject)

    def emit(self, payload: Payload, event_name: str = "event", *, subject: str | None = None) -> bool:
        """Queue a built payload; False (counted as dropped) when the queue stays full."""
        return self._put(_Item(event_name, payload, subject=subject))

    def logged_in(self, user_id: int, *, at: datetime | None = None, session_id: str | None = None) -> None:
        builder, store = self._require()
        with store.lock:
            payload = builder.logged_in(user_id, at=at, session_id=session_id)
        self.emit(payload, "logged_in")

    def logged_out(self, user_id: int, *, at: datetime | None = None, session_id: str | None = None) -> None:
        builder, store = self._require()
        with store.lock:
            payload = builder.logged_out(user_id, at=at, session_id=session_id)
        self.emit(payload, "logged_out")

    def asset_accessed(
        self,
        user_id: int,
        asset: Asset,
        *,
        at: datetime | None = None,
        session_id: str | None = None,
        referrer: str | None = None,
    ) -> None:
        builder, store = self._require()
        with store.lock:
            payload = builder.asset_accessed(user_id, asset, at=at, session_id=session_id, referrer=referrer)
        self.emit(payload, "asset_accessed")

    def _require(self) -> tuple[LiveEventBuilder, CanvasStore]:
        if self.builder is None:
            raise RuntimeError("the emitter has no store: attach() it first")
        return self.builder, self.builder.store

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self._counts, name, getattr(self._counts, name) + n)

    def _put(self, item: _Item) -> bool:
        with self._lock:
            self._outstanding += 1
            self._counts.queued += 1
        try:
            # Block (backpressure) only while someone drains the queue.
            self._queue.put(item, block=self.running, timeout=self._config.put_timeout_s)
        except queue.Full:
            log.warning("live event %s dropped: the queue stayed full", item.event_name)
            self._settle("dropped")
            return False
        return True

    def _settle(self, outcome: str) -> None:
        with self._idle:
            setattr(self._counts, outcome, getattr(self._counts, outcome) + 1)
            self._outstanding -= 1
            if self._outstanding <= 0:
                self._idle.notify_all()

    def _drop_queued(self, why: str, pending: list[_Item] | None = None) -> None:
        left = list(pending or [])
        while True:
            try:
                left.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for _ in left:
            self._settle("dropped")
        if left:
            log.warning("%d live events dropped unsent (%s)", len(left), why)

    # --- sending -----------------------------------------------------------------------------

    def _run(self, rng: random.Random) -> None:
        """One sender thread: its own client, shuffle window and random draws."""
        pending: list[_Item] = []
        window = self._config.shuffle_window
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        client = httpx.Client(timeout=self._config.timeout_s, transport=self._transport, headers=headers)
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=0.05)
                    idle = False
                except queue.Empty:
                    idle = True
                else:
                    pending.append(item)
                    if rng.random() < self._config.duplicate_rate:
                        with self._lock:
                            self._outstanding += 1
                            self._counts.queued += 1
                            self._counts.duplicated += 1
                        pending.append(_Item(item.event_name, item.payload, copy=True, subject=item.subject))
                # Out of order: hold up to `window` events and release a random one; all of them
                # once nothing more is coming.
                while pending and (len(pending) > window or idle) and not self._stop.is_set():
                    index = rng.randrange(len(pending)) if window else 0
                    self._settle(self._send(client, pending.pop(index), rng))
                self._log_counts()
        finally:
            # A given transport is shared by the threads: the first to stop must not close it.
            if self._transport is None:
                client.close()
            self._drop_queued("stopped", pending)

    def _log_counts(self) -> None:
        """The periodic counts line: whichever thread finds it due writes it, once."""
        now = time.monotonic()
        with self._lock:
            if now - self._logged_at < _LOG_EVERY_S:
                return
            counts = self._counts.as_dict()
            changed = counts != self._logged
            self._logged_at, self._logged = now, counts
        if changed:
            log.info("live events: %s", counts)

    def _send(self, client: httpx.Client, item: _Item, rng: random.Random) -> str:
        """One event, retried; returns its outcome (a counter name)."""
        body = json.dumps(item.payload, separators=(",", ":"))
        first_at = time.time()
        for attempt in range(1, self._config.max_attempts + 1):
            retry_after: float | None = None
            try:
                response = client.post(self.url, content=body)
            except httpx.TransportError as exc:
                status = type(exc).__name__
            else:
                if response.is_success:
                    if not self.record:
                        return "sent"
                    event_id = _event_id(item.payload)
                    with self._lock:  # the time taken inside: the record stays in order of the answers
                        self._delivered.append(
                            (
                                event_id,
                                item.event_name,
                                item.queued_at,
                                first_at,
                                time.time(),
                                item.copy,
                                item.subject,
                            )
                        )
                    return "sent"
                if response.status_code not in _RETRIABLE:
                    log.warning("live event %s rejected: HTTP %d", item.event_name, response.status_code)
                    return "rejected"
                status = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
            if attempt == self._config.max_attempts:
                break
            self._count("retried")
            delay = min(self._config.max_backoff_s, self._config.backoff_s * 2 ** (attempt - 1))
            delay = delay * (0.5 + rng.random() / 2)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self._config.max_backoff_s))
            log.debug("live event %s: %s, retry %d in %.2f s", item.event_name, status, attempt, delay)
            if self._stop.wait(delay):
                log.warning("live event %s failed: stopped while retrying (%s)", item.event_name, status)
                return "failed"
        log.warning(
            "live event %s failed after %d attempts (%s)", item.event_name, self._config.max_attempts, status
        )
        return "failed"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None
