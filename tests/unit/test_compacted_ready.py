"""A topic created a moment ago may not answer at once: reading it waits (briefly) for its leader."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams import compacted


class _Consumer:
    """Answers a watermark request with ``errors`` first, then (0, 5)."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.calls = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 0, 5


def test_a_partition_without_a_leader_yet_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compacted.time, "sleep", lambda s: None)
    fake = _Consumer([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART])
    assert compacted._watermarks(fake, TopicPartition("t", 0)) == (0, 5)  # type: ignore[arg-type]
    assert fake.calls == 3


def test_other_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compacted.time, "sleep", lambda s: None)
    fake = _Consumer([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        compacted._watermarks(fake, TopicPartition("t", 0))  # type: ignore[arg-type]
    assert fake.calls == 1


def test_a_leader_that_never_comes_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    clock: dict[str, Any] = {"t": 0.0}
    monkeypatch.setattr(compacted.time, "sleep", lambda s: clock.update(t=clock["t"] + s))
    monkeypatch.setattr(compacted.time, "monotonic", lambda: clock["t"])
    fake = _Consumer([KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    with pytest.raises(KafkaException):
        compacted._watermarks(fake, TopicPartition("t", 0))  # type: ignore[arg-type]
    assert 100 < fake.calls < 1000


class _GroupConsumer:
    """A group's coordinator answering ``error`` to a committed-offsets request."""

    def __init__(self, *_: Any, error: int) -> None:
        self.error = error

    def list_topics(self, topic: str, timeout: float) -> Any:
        part = type("P", (), {})()
        return type("M", (), {"topics": {topic: type("T", (), {"partitions": {0: part}})()}})()

    def committed(self, parts: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        raise KafkaException(KafkaError(self.error))

    def close(self) -> None:
        pass


def test_a_coordinator_still_loading_means_not_caught_up_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    for code in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS):
        monkeypatch.setattr(compacted, "Consumer", lambda conf, code=code: _GroupConsumer(error=code))
        assert compacted.group_caught_up({}, "g", ["t"]) == (False, 0)
    monkeypatch.setattr(
        compacted, "Consumer", lambda conf: _GroupConsumer(error=KafkaError.GROUP_AUTHORIZATION_FAILED)
    )
    with pytest.raises(KafkaException):
        compacted.group_caught_up({}, "g", ["t"])
