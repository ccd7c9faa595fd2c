"""Faust's livelock detector must not crash a worker on a partition that has no fetch position."""

from __future__ import annotations

from typing import Any

import pytest
from faust.transport.drivers import aiokafka as driver

from streams.roster import app as roster_app


def test_a_partition_without_a_position_is_skipped_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def asserting(thread: Any, now: float, tp: Any) -> None:
        calls.append(tp)
        assert None is not None  # what aiokafka's position does while a partition is being reset

    monkeypatch.setattr(driver.AIOKafkaConsumerThread, "verify_event_path", asserting)
    roster_app._guard_livelock_detector()
    guarded = driver.AIOKafkaConsumerThread.verify_event_path
    tp = type("TP", (), {"topic": "t", "partition": 3})()
    assert guarded(object(), 0.0, tp) is None and calls == [tp]
    roster_app._guard_livelock_detector()  # a second app in the process: not wrapped twice
    assert driver.AIOKafkaConsumerThread.verify_event_path is guarded
