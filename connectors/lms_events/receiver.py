"""The LMS event receiver: an asynchronous HTTP endpoint for Canvas Live Events (Canvas and
Caliper 1.1 formats) and the Caliper 1.2 Sensor API.

Routes:

- ``POST /events`` (also ``/caliper`` and ``/canvas``): one request body, either a Caliper
  envelope (``sensor``, ``sendTime``, ``dataVersion``, ``data``) or a Canvas Live Event
  (``metadata``, ``body``). ``Authorization: Bearer <token>`` is required: a missing or wrong
  credential gets 401 and nothing is published.
  - 200 ``{"accepted": n, "events": [ids]}`` once every event is on the broker, in
    ``lms.events.raw.v1`` keyed by its subject (the events processor takes it from there);
  - 400 ``{"error": "invalid_event", "reasons": [...]}`` for a body that is not readable or breaks
    the Caliper rules; the body goes to ``dlq.lms_ingest.v1`` with the reasons;
  - 413 beyond ``max_body_bytes``; 415 for a body that is not JSON by its content type;
  - 503 with ``Retry-After`` when the broker does not take the events (the sender retries).
- ``GET /healthz``, ``GET /metrics``.

Log lines carry counts, event types and reasons, never a payload (payloads name students).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from streams.confirmed import ConfirmedProducer, DeliveryFailed
from streams.dlq import DeadLetterPublisher, SourcePosition
from streams.lms.events import InvalidEvents, LmsEvent, read_request
from streams.serde import Serdes, encode_key

__all__ = ["EventReceiver"]

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "sislms_lms_events_requests",
    "Requests to the LMS event receiver, by outcome (accepted, invalid, unauthorized, too_large, "
    "unsupported_media_type, unavailable).",
    ["outcome"],
)
RECEIVED = Counter(
    "sislms_lms_events_received", "LMS events accepted, by format and type.", ["format", "type"]
)
PUBLISH = Histogram(
    "sislms_lms_events_publish_seconds", "Time from a request's receipt to its events on the broker."
)

_JSON_TYPES = ("application/json", "application/ld+json", "text/json", "application/x-json")


class EventReceiver:
    """The aiohttp application of the receiver (serve it with ``simulators.serving.AppServer``
    or any aiohttp runner).

    Args:
        producer: confirms each request's raw records before it is answered.
        dead_letters: takes refused bodies (stage ``stage``).
        token: the Bearer credential senders must present.
        source: the instance name in each record's ``meta.source`` (``lms-events:<source>``).
    """

    def __init__(
        self,
        *,
        producer: ConfirmedProducer,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        token: str,
        raw_topic: str = "lms.events.raw.v1",
        max_body_bytes: int = 1_048_576,
        stage: str = "lms_ingest",
        source: str = "default",
    ) -> None:
        if not token:
            raise ValueError("the event receiver needs a token")
        serdes.catalog.topic(raw_topic)  # declared (ConfigError otherwise)
        self.producer = producer
        self.serdes = serdes
        self.dead_letters = dead_letters
        self._token = f"Bearer {token}".encode()
        self.raw_topic = raw_topic
        self.max_body_bytes = max_body_bytes
        self.stage = stage
        self.source = source
        self.counts: dict[str, int] = {}
        self.last_error: str | None = None

    def _count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n
        REQUESTS.labels(outcome).inc()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes + 1024)
        for path in ("/events", "/caliper", "/canvas"):
            app.router.add_post(path, self.receive)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        received_at = int(time.time() * 1000)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._token):
            self._count("unauthorized")
            return web.json_response(
                {"error": "unauthorized", "reason": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="sislms-lms-events"'},
            )
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            self._count("too_large")
            return web.json_response(
                {"error": "too_large", "reason": f"the body exceeds {self.max_body_bytes} bytes"}, status=413
            )
        content_type = request.headers.get("Content-Type", "application/json")
        if content_type.split(";")[0].strip().lower() not in _JSON_TYPES:
            self._count("unsupported_media_type")
            return web.json_response(
                {
                    "error": "unsupported_media_type",
                    "reason": f"expected application/json, got {content_type}",
                },
                status=415,
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._count("too_large")
            return web.json_response(
                {"error": "too_large", "reason": f"the body exceeds {self.max_body_bytes} bytes"}, status=413
            )
        try:
            events = read_request(body)
        except InvalidEvents as exc:
            await self._refuse(request, body, exc)
            return web.json_response({"error": exc.reason, "reasons": exc.reasons}, status=400)
        trace_id = request.headers.get("X-Trace-Id") or str(uuid.uuid4())
        records = [self._raw(e, received_at, content_type, request, trace_id) for e in events]
        try:
            await self.producer.send(records)
        except (TimeoutError, DeliveryFailed) as exc:
            self.last_error = str(exc)
            self._count("unavailable")
            log.warning("events not published (%s): the sender is told to retry", exc.__class__.__name__)
            return web.json_response(
                {"error": "unavailable", "reason": "the event log did not take the events; retry"},
                status=503,
                headers={"Retry-After": "5"},
            )
        self.last_error = None
        PUBLISH.observe(time.time() - received_at / 1000)
        self._count("accepted")
        self.counts["events"] = self.counts.get("events", 0) + len(events)
        for e in events:
            RECEIVED.labels(e.version, e.event_type).inc()
        return web.json_response({"accepted": len(events), "events": [e.event_id for e in events]})

    def _raw(
        self, event: LmsEvent, received_at: int, content_type: str, request: web.Request, trace_id: str
    ) -> tuple[str, bytes | None, bytes | None]:
        value = {
            "eventId": event.event_id,
            "format": event.format,
            "eventType": event.event_type,
            "receivedAt": received_at,
            "contentType": content_type,
            "body": event.body,
            "remoteAddr": request.remote,
            "meta": {
                "source": f"lms-events:{self.source}",
                "sourceChangedAt": event.event_time_ms if event.event_time_ms is not None else received_at,
                "ingestedAt": received_at,
                "traceId": trace_id,
                "sourceVersion": event.event_id,
            },
        }
        return self.raw_topic, encode_key(event.subject), self.serdes[self.raw_topic].encode(value)

    async def _refuse(self, request: web.Request, body: bytes, exc: InvalidEvents) -> None:
        self._count("invalid")
        headers = (
            ("origin.path", request.path.encode()),
            ("origin.content_type", request.headers.get("Content-Type", "").encode()),
        )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def settle(err: Any) -> None:
            if not done.done():
                done.set_result(err)

        def delivered(err: Any, msg: Any) -> None:
            loop.call_soon_threadsafe(settle, err)

        self.dead_letters.send(
            self.stage,
            exc,
            key=None,
            value=body,
            source=SourcePosition(headers=headers),
            on_delivery=delivered,
        )
        self.dead_letters.producer.poll(0)
        try:
            err = await asyncio.wait_for(_pump(self.dead_letters, done), timeout=30)
        except TimeoutError:
            err = "timeout"
        if err is not None:
            log.error("a refused body could not be dead-lettered (%s)", err)
        log.info("refused an LMS event body: %s", "; ".join(exc.reasons[:3]))

    async def healthz(self, request: web.Request) -> web.Response:
        healthy = self.last_error is None
        return web.json_response(
            {"healthy": healthy, "counts": self.counts, "last_error": self.last_error},
            status=200 if healthy else 503,
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _pump(dead_letters: DeadLetterPublisher, done: asyncio.Future[Any]) -> Any:
    """Serve the dead-letter producer's delivery reports until ours arrives."""
    while not done.done():
        dead_letters.producer.poll(0)
        await asyncio.sleep(0.005)
    return done.result()
