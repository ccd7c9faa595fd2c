"""The LMS simulator on loopback, for the Canvas sink's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.lms.app import Throttle
from simulators.lms.server import LmsConfig, LmsSimulator

TOKEN = "unit-token"


@pytest.fixture
def lms() -> Iterator[LmsSimulator]:
    sim = LmsSimulator(LmsConfig(port=0, token=TOKEN, throttle=Throttle(capacity=0))).start()
    yield sim
    sim.stop()
