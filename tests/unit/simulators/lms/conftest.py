"""Fixtures of the LMS simulator's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.simulators.lms.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
