"""The provisioning sink's waiters: a command that misses an object waits for the lane that
makes it, and is not lost when that lane made it between the look-up and the wait."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from connectors.sinks.canvas.apply import DependencyMissing
from connectors.sinks.canvas.sink import CanvasSink, ResultsIdMap, _Item, _Wake


class _Lane:
    def __init__(self) -> None:
        self.inbox: queue.Queue[Any] = queue.Queue()


def _sink(lanes: int = 2) -> CanvasSink:
    """The sink's waiter bookkeeping alone (no broker, no Canvas)."""
    sink = CanvasSink.__new__(CanvasSink)
    sink.ids = ResultsIdMap()
    sink.dependency_wait_s = 300.0
    sink._busy_at = time.monotonic()
    sink._waiters = {}
    sink._waiters_lock = threading.Lock()
    sink._lanes = [_Lane() for _ in range(lanes)]  # type: ignore[misc]
    return sink


def _item(key: bytes, lane: int) -> _Item:
    return _Item("t", 0, 0, key, b"", None, [], lane=lane)


def test_a_command_missing_its_user_waits_and_is_woken_when_the_user_is_made() -> None:
    sink = _sink()
    item = _item(b"enrollment-1", lane=0)
    wait = sink._park(item, DependencyMissing("user", "u1"))
    assert wait is not None and wait >= 30.0  # nothing to do but wait
    sink.ids.put("user", "u1", "501")
    sink._wake("user", "u1")
    woken = sink._lanes[0].inbox.get_nowait()
    assert isinstance(woken, _Wake) and woken.key == b"enrollment-1"


def test_a_user_made_between_the_look_up_and_the_wait_is_seen_at_once() -> None:
    sink = _sink()
    item = _item(b"enrollment-1", lane=0)
    # lane 1 makes the user and wakes its waiters (none yet) before lane 0 parks its command
    sink.ids.put("user", "u1", "501")
    sink._wake("user", "u1")
    assert sink._park(item, DependencyMissing("user", "u1")) == 0.0


def test_a_command_that_waited_too_long_is_refused() -> None:
    sink = _sink()
    item = _item(b"enrollment-1", lane=0)
    item.first_seen -= 10 * sink.dependency_wait_s + 1
    assert sink._park(item, DependencyMissing("user", "u1")) is None
