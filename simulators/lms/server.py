"""Runs the simulated LMS (``sislms lms serve``, or in a background thread for tests)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from aiohttp import web

from simulators.lms.activity import ActivityGenerator
from simulators.lms.app import LmsState, Throttle, build_app
from simulators.lms.store import CanvasStore
from simulators.lms.webhook import LiveEventsEmitter
from simulators.serving import AppServer

__all__ = ["LmsConfig", "LmsSimulator"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LmsConfig:
    """The simulator's settings; with ``events_url``, it also sends Canvas Live Events there
    (``events_format`` ``canvas`` or ``caliper``, Bearer ``events_token``)."""

    host: str = "127.0.0.1"
    port: int = 18092
    token: str = field(default="", repr=False)
    root_name: str = "Simulated District"
    throttle: Throttle = field(default_factory=Throttle)
    events_url: str | None = None
    events_token: str = field(default="", repr=False)
    events_format: str = "canvas"


class LmsSimulator:
    """A Canvas-compatible LMS in memory; ``store.ground_truth()`` is what it holds."""

    def __init__(self, config: LmsConfig) -> None:
        if not config.token:
            raise ValueError("the LMS simulator needs an access token")
        self.config = config
        self.store = CanvasStore(config.root_name)
        self.state = LmsState(self.store, frozenset({config.token}), throttle=config.throttle)
        self.server = AppServer("lms-simulator", config.host, config.port, self._app)
        self.activity: list[ActivityGenerator] = []
        self.emitter: LiveEventsEmitter | None = None
        if config.events_url:
            self.emitter = LiveEventsEmitter(
                config.events_url,
                config.events_token,
                config.events_format,
                store=self.store,
                base_url=f"http://{config.host}:{config.port}",
            )

    @property
    def url(self) -> str:
        return self.server.url

    def _app(self) -> web.Application:
        app = build_app(self.state)
        app.router.add_post("/_sim/activity", self._play)
        app.router.add_get("/_sim/activity", self._played)
        return app

    async def _play(self, request: web.Request) -> web.Response:
        """``POST /_sim/activity`` ``{"days": 5, "seed": 7}``: play that many simulated school
        days over the courses the store holds now (in a thread); its Live Events go out."""
        try:
            body = await request.json() if request.can_read_body else {}
            days, seed = int(body.get("days", 5)), int(body.get("seed", 7))
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"error": 'expected {"days": N, "seed": S}'}, status=400)
        generator = ActivityGenerator(self.store, self.emitter, seed=seed)
        self.activity.append(generator)
        threading.Thread(
            target=generator.run, kwargs={"days": days}, name="lms-activity", daemon=True
        ).start()
        return web.json_response({"started": True, "days": days, "seed": seed}, status=202)

    async def _played(self, request: web.Request) -> web.Response:
        """``GET /_sim/activity``: the totals of every activity run (the ground truth's counts)."""
        return web.json_response([g.truth.totals() for g in self.activity])

    def serve_forever(self) -> None:
        if self.emitter is not None:
            self.emitter.start()
        try:
            self.server.serve_forever()
        finally:
            if self.emitter is not None:
                self.emitter.stop()

    def start(self) -> LmsSimulator:
        if self.emitter is not None:
            self.emitter.start()
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        if self.emitter is not None:
            self.emitter.stop()
