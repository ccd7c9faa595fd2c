"""The provisioning sink's waiters: a command that misses an object waits for the lane that
makes it, and is not lost when that lane made it between the look-up and the wait."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from typing import Any

from confluent_kafka import TopicPartition

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
    sink._queued = Counter()
    sink._queued_lock = threading.Lock()
    sink._current = threading.local()
    sink._behind = False
    sink._starts = {}
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


def test_an_object_is_awaited_while_a_command_for_it_is_taken_and_not_finished() -> None:
    sink = _sink()
    user, enrollment = _item(b"u1", lane=1), _item(b"enrollment-1", lane=0)
    for item in (user, enrollment):
        sink._queued[item.key] += 1
    assert sink._awaited("user", "u1") and not sink._awaited("user", "u2")
    sink._current.key = b"u1"  # the lane applying u1's own command does not wait for itself
    assert not sink._awaited("user", "u1")
    sink._current.key = b"enrollment-1"
    assert sink._park(enrollment, DependencyMissing("user", "u1")) is not None
    sink._unqueue(user.key)  # u1's command finished, whatever its outcome: its waiters look again
    assert not sink._awaited("user", "u1")
    woken = sink._lanes[0].inbox.get_nowait()
    assert isinstance(woken, _Wake) and woken.key == b"enrollment-1"
    sink._unqueue(enrollment.key)
    assert not sink._queued


def test_two_commands_for_one_object_keep_it_awaited_until_both_are_finished() -> None:
    sink = _sink()
    sink._queued[b"u1"] += 2
    sink._park(_item(b"enrollment-1", lane=0), DependencyMissing("user", "u1"))
    sink._unqueue(b"u1")
    assert sink._awaited("user", "u1") and sink._lanes[0].inbox.empty()
    sink._unqueue(b"u1")
    assert not sink._awaited("user", "u1") and not sink._lanes[0].inbox.empty()


class _Consumer:
    """Positions and the watermarks the last fetches saw, as confluent-kafka gives them."""

    def __init__(self, marks: dict[int, tuple[int, int, int]]) -> None:
        self.marks = marks  # partition -> (position, low, high); position -1001: nothing taken yet
        self.committed_at = 0

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("cmds", p) for p in self.marks]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.marks[tp.partition][0]) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached  # no broker round trip every second
        return self.marks[tp.partition][1:]

    def committed(self, tps: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.committed_at) for tp in tps]


def test_while_the_sink_is_behind_its_topic_a_missing_object_is_not_looked_up() -> None:
    sink = _sink()
    sink.consumer = _Consumer({0: (40, 0, 100), 1: (-1001, 0, 0)})  # type: ignore[assignment]
    sink._note_backlog()
    assert sink._behind and sink._awaited("user", "u9")  # its command may be among the 60 left
    enrollment = _item(b"enrollment-1", lane=1)
    sink._current.key = enrollment.key
    assert sink._park(enrollment, DependencyMissing("user", "u9")) is not None
    sink.consumer.marks[0] = (100, 0, 100)  # type: ignore[attr-defined]
    sink._note_backlog()  # caught up: u9 is not on the broker; whatever waits asks Canvas once
    assert not sink._behind and not sink._awaited("user", "u9")
    woken = sink._lanes[1].inbox.get_nowait()
    assert isinstance(woken, _Wake) and woken.key == b"enrollment-1"
    assert not sink._waiters


def test_a_partition_not_read_yet_counts_from_its_committed_offset() -> None:
    sink = _sink()
    consumer = _Consumer({0: (-1001, 0, 500)})
    sink.consumer = consumer  # type: ignore[assignment]
    consumer.committed_at = 500  # a restarted sink that had done it all
    sink._note_backlog()
    assert not sink._behind
    sink._starts.clear()
    consumer.committed_at = 120  # a restarted sink with 380 commands to go
    sink._note_backlog()
    assert sink._behind


def test_the_intake_counts_only_the_commands_of_its_window() -> None:
    from connectors.sinks.canvas.sink import _Intake

    intake = _Intake(window_s=10.0)
    assert intake.add(400, now=100.0) == 400
    assert intake.add(400, now=105.0) == 800
    assert intake.add(300, now=109.9) == 1100  # a first load's pace: 1,100 in 10 s
    assert intake.add(5, now=115.5) == 305  # the first two have left the window
    assert intake.add(0, now=200.0) == 0
