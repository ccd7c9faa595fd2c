"""Runs the simulated LMS (``sislms lms serve``, or in a background thread for tests), with the
control endpoints that need more than the store: activity runs and the ground truth for
reconciliation and latency (see :mod:`simulators.lms.app` for the list)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.lms.activity import ActivityGenerator, WallClock
from simulators.lms.app import LmsState, Throttle, build_app
from simulators.lms.store import CanvasStore
from simulators.lms.truth import WriteLog
from simulators.lms.webhook import LiveEventsEmitter
from simulators.serving import AppServer, StateSaver

__all__ = ["LmsConfig", "LmsSimulator"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LmsConfig:
    """The simulator's settings; with ``events_url``, it also sends Canvas Live Events there
    (``events_format`` ``canvas`` or ``caliper``, Bearer ``events_token``) from
    ``events_senders`` concurrent sender threads."""

    host: str = "127.0.0.1"
    port: int = 18092
    token: str = field(default="", repr=False)
    root_name: str = "Simulated District"
    throttle: Throttle = field(default_factory=Throttle)
    events_url: str | None = None
    events_token: str = field(default="", repr=False)
    events_format: str = "canvas"
    events_senders: int = 1
    #: where the store is kept across restarts (None: in memory only); read at start when it exists
    state_file: Path | None = None
    #: seconds between saves of a changed store to ``state_file``
    save_every_s: float = 30.0
    #: record the ground truth (write log, Live Events delivered) for ``GET /_sim/truth``; it
    #: grows with every change, so a simulator that runs for days (``make run``) turns it off
    truth: bool = True


class LmsSimulator:
    """A Canvas-compatible LMS in memory; ``store.ground_truth()`` is what it holds and
    ``writes`` (a :class:`~simulators.lms.truth.WriteLog`) when each of it changed."""

    def __init__(self, config: LmsConfig) -> None:
        if not config.token:
            raise ValueError("the LMS simulator needs an access token")
        self.config = config
        path = config.state_file
        self.restored = path is not None and path.exists()
        if path is not None and self.restored:
            started = time.monotonic()
            self.store = CanvasStore.load(path)
            log.info(
                "LMS state restored from %s in %.1f s: %s",
                path,
                time.monotonic() - started,
                self.store.sizes(),
            )
        else:
            self.store = CanvasStore(config.root_name)
        self.saver = (
            StateSaver(
                "lms-simulator",
                path,
                self.store.save,
                lambda: self.store.version,
                every_s=config.save_every_s,
                saved=self.store.version if self.restored else None,
            )
            if path is not None
            else None
        )
        # First listener: its times are taken before the emitter builds its payload.
        self.writes = WriteLog(self.store) if config.truth else None
        self.state = LmsState(self.store, frozenset({config.token}), throttle=config.throttle)
        self.server = AppServer("lms-simulator", config.host, config.port, self._app)
        self.activity: list[ActivityGenerator] = []
        self._runs: list[threading.Thread] = []
        self._stop_activity = threading.Event()
        self.emitter: LiveEventsEmitter | None = None
        if config.events_url:
            self.emitter = LiveEventsEmitter(
                config.events_url,
                config.events_token,
                config.events_format,
                store=self.store,
                base_url=f"http://{config.host}:{config.port}",
                senders=config.events_senders,
                record=config.truth,
            )

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def activity_running(self) -> bool:
        """Whether an activity run is still playing."""
        return any(t.is_alive() for t in self._runs)

    def truth(self) -> dict[str, Any]:
        """What ``GET /_sim/truth`` answers (see :mod:`simulators.lms.app`)."""
        emitter = self.emitter
        writes = self.writes
        return {
            "recorded": writes is not None,
            "writes": writes.as_json() if writes is not None else {},
            "grades": writes.grades() if writes is not None else [],
            "events": {
                "counts": emitter.counts() if emitter is not None else {},
                "delivered": emitter.delivered() if emitter is not None else [],
            },
            "activity": [g.truth.totals() for g in list(self.activity)],
            "running": self.activity_running,
        }

    def _app(self) -> web.Application:
        app = build_app(self.state)
        app.router.add_post("/_sim/activity", self._play)
        app.router.add_get("/_sim/activity", self._played)
        app.router.add_get("/_sim/activity/status", self._status)
        app.router.add_get("/_sim/truth", self._truth)
        return app

    async def _play(self, request: web.Request) -> web.Response:
        """``POST /_sim/activity``: ``{"days": 5, "seed": 7}`` plays that many simulated school
        days (a simulated clock, done in seconds); ``{"duration_s": 60, "speed": 120, "seed": 7}``
        plays live for that many wall-clock seconds, simulated time running ``speed`` times
        faster from now; ``"max_steps": N`` caps either (a share of the courses is played).
        Over the courses the store holds now, in a thread; its Live Events go out. 400 with the
        reason for a bad body."""
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return _bad("the body is not JSON")
        try:
            run, answer = _activity_request(body)
        except ValueError as exc:
            return _bad(str(exc))
        clock = WallClock(speed=answer["speed"]) if "duration_s" in run else None
        generator = ActivityGenerator(
            self.store, self.emitter, seed=answer["seed"], clock=clock, max_steps=answer.get("max_steps")
        )
        self.activity.append(generator)
        thread = threading.Thread(
            target=self._run_activity, args=(generator, run), name="lms-activity", daemon=True
        )
        self._runs.append(thread)
        thread.start()
        return web.json_response({"started": True, **answer}, status=202)

    def _run_activity(self, generator: ActivityGenerator, run: dict[str, Any]) -> None:
        try:
            generator.run(**run, stop=self._stop_activity)
        except Exception:
            log.exception("activity run (seed %d) failed", generator.seed)

    async def _played(self, request: web.Request) -> web.Response:
        """``GET /_sim/activity``: the totals of every activity run (the ground truth's counts)."""
        return web.json_response([g.truth.totals() for g in list(self.activity)])

    async def _status(self, request: web.Request) -> web.Response:
        """``GET /_sim/activity/status``: ``{"runs": [totals, ...], "course_shares": [share, ...],
        "running": bool, "events": the emitter's counts}``; small, to poll until everything is
        played and answered. A run's course share is below 1 when ``max_steps`` capped it."""
        generators = list(self.activity)
        runs = [g.truth.totals() for g in generators]
        events = self.emitter.counts() if self.emitter is not None else {}
        return web.json_response(
            {
                "runs": runs,
                "course_shares": [g.course_share for g in generators],
                "running": self.activity_running,
                "events": events,
            }
        )

    async def _truth(self, request: web.Request) -> web.Response:
        """``GET /_sim/truth``: :meth:`truth`, built and encoded off the event loop (it can be tens
        of MB, and the API keeps serving meanwhile)."""
        body = await asyncio.to_thread(lambda: json.dumps(self.truth(), separators=(",", ":")).encode())
        return web.Response(body=body, content_type="application/json")

    def serve_forever(self) -> None:
        """Run in the foreground until SIGTERM or SIGINT; the state is saved a last time."""
        self._stop_activity.clear()
        if self.emitter is not None:
            self.emitter.start()
        if self.saver is not None:
            self.saver.start()
        try:
            self.server.serve_forever()
        finally:
            self._stop_activity.set()
            self._save_last()
            if self.emitter is not None:
                self.emitter.stop()

    def start(self) -> LmsSimulator:
        self._stop_activity.clear()
        if self.emitter is not None:
            self.emitter.start()
        self.server.start()
        if self.saver is not None:
            self.saver.start()
        return self

    def stop(self) -> None:
        """Stop serving and playing, save the state a last time (with a ``state_file``), then
        stop sending events."""
        self._stop_activity.set()
        self.server.stop()
        self._save_last()
        if self.emitter is not None:
            self.emitter.stop()

    def save(self) -> bool:
        """Save the state now if it changed since the last save (True when it saved)."""
        return self.saver.save_now() if self.saver is not None else False

    def _save_last(self) -> None:
        if self.saver is None:
            return
        for run in list(self._runs):  # told to stop: let them finish their step first
            run.join(timeout=5)
        self.saver.stop()


def _bad(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


def _number(body: dict[str, Any], name: str, *, integer: bool = False) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if integer and not number.is_integer():
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def _activity_request(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``POST /_sim/activity`` body checked: (the run's arguments, the answer's fields);
    ValueError with the reason."""
    if not isinstance(body, dict):
        raise ValueError('expected {"days": N, "seed": S} or {"duration_s": S, "speed": K, "seed": N}')
    unknown = sorted(set(body) - {"days", "duration_s", "speed", "seed", "max_steps"})
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)}: expected days or duration_s, speed, seed, max_steps"
        )
    if ("days" in body) == ("duration_s" in body):
        raise ValueError("give either days (simulated school days) or duration_s (a live run), not both")
    seed = int(_number(body, "seed", integer=True)) if "seed" in body else 7
    max_steps = int(_number(body, "max_steps", integer=True)) if "max_steps" in body else None
    if max_steps is not None and max_steps < 1:
        raise ValueError("max_steps must be >= 1")
    capped = {} if max_steps is None else {"max_steps": max_steps}
    if "days" in body:
        if "speed" in body:
            raise ValueError("speed goes with duration_s (a live run), not with days")
        days = int(_number(body, "days", integer=True))
        if days < 1:
            raise ValueError("days must be >= 1")
        return {"days": days}, {"days": days, "seed": seed, **capped}
    duration_s = _number(body, "duration_s")
    if duration_s <= 0:
        raise ValueError("duration_s must be > 0")
    speed = _number(body, "speed") if "speed" in body else 1.0
    if speed <= 0:
        raise ValueError("speed must be > 0")
    return {"duration_s": duration_s}, {"duration_s": duration_s, "speed": speed, "seed": seed, **capped}
