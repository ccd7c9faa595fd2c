"""Runs the simulated LMS (``sislms lms serve``, or in a background thread for tests)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from simulators.lms.app import LmsState, Throttle, build_app
from simulators.lms.store import CanvasStore
from simulators.serving import AppServer

__all__ = ["LmsConfig", "LmsSimulator"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LmsConfig:
    host: str = "127.0.0.1"
    port: int = 18092
    token: str = field(default="", repr=False)
    root_name: str = "Simulated District"
    throttle: Throttle = field(default_factory=Throttle)


class LmsSimulator:
    """A Canvas-compatible LMS in memory; ``store.ground_truth()`` is what it holds."""

    def __init__(self, config: LmsConfig) -> None:
        if not config.token:
            raise ValueError("the LMS simulator needs an access token")
        self.config = config
        self.store = CanvasStore(config.root_name)
        self.state = LmsState(self.store, frozenset({config.token}), throttle=config.throttle)
        self.server = AppServer("lms-simulator", config.host, config.port, lambda: build_app(self.state))

    @property
    def url(self) -> str:
        return self.server.url

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def start(self) -> LmsSimulator:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
