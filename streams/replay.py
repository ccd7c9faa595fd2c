"""Rewinding a consumer group: ``sislms replay --group G --to ...``.

A replay moves a group's committed offsets and lets the group's own workers read again from
there; every sink is idempotent and version-guarded, so reading a record twice changes nothing
and an older record never overwrites a newer one. The plan is made from the broker: the group's
committed offsets, each partition's first and next offset, and for a time the broker's
offsets-for-times lookup (the first record at or after that instant). Nothing changes until
``apply``, which refuses while the group has active members (the broker would refuse too, but
later and less clearly) and checks again right before it writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.errors import ConfigError, PlanRefused, ServiceUnavailable

__all__ = [
    "GroupMove",
    "PartitionMove",
    "ReplayTarget",
    "apply_replay",
    "group_members",
    "hand_over",
    "parse_target",
    "plan_replay",
]

_TIMEOUT_S = 30.0
_IDLE_STATES = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN}


@dataclass(frozen=True)
class ReplayTarget:
    """Where to move the group: its first or next offsets, an instant, or one partition's offset."""

    kind: Literal["earliest", "latest", "time", "offset"]
    time_ms: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        if self.kind == "time":
            return datetime.fromtimestamp((self.time_ms or 0) / 1000, UTC).isoformat()
        if self.kind == "offset":
            return f"{self.topic}:{self.partition}:{self.offset}"
        return self.kind


_OFFSET = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+):(?P<partition>\d+):(?P<offset>\d+)$")


def parse_target(text: str) -> ReplayTarget:
    """``earliest``, ``latest``, an ISO 8601 time (with a zone; ``Z`` for UTC) or
    ``topic:partition:offset``."""
    text = text.strip()
    if text in ("earliest", "latest"):
        return ReplayTarget(text)  # type: ignore[arg-type]
    try:
        at = datetime.fromisoformat(text)  # first: 2026-12-04T06:00:00 also looks like t:p:o
    except ValueError:
        m = _OFFSET.match(text)
        if m:
            return ReplayTarget(
                "offset", topic=m["topic"], partition=int(m["partition"]), offset=int(m["offset"])
            )
        raise ConfigError(
            f"--to {text!r}: expected earliest, latest, an ISO time such as 2026-12-01T06:00:00Z, "
            "or topic:partition:offset"
        ) from None
    if at.tzinfo is None:
        raise ConfigError(f"--to {text!r}: give the time zone (Z for UTC, or +01:00 ...): it is ambiguous")
    return ReplayTarget("time", time_ms=int(at.timestamp() * 1000))


@dataclass(frozen=True)
class PartitionMove:
    topic: str
    partition: int
    current: int | None  #: the committed offset; None when the group never committed here
    target: int
    low: int  #: the partition's first offset
    high: int  #: the partition's next offset (its end)

    @property
    def messages(self) -> int:
        """Offsets the group will read from its new position to the end (compaction and
        transaction markers make the records fewer)."""
        return max(0, self.high - self.target)

    @property
    def change(self) -> int:
        """How far the position moves: negative is a rewind (records read again)."""
        start = self.current if self.current is not None else self.high
        return self.target - start

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "from": self.current,
            "to": self.target,
            "first": self.low,
            "end": self.high,
            "messages": self.messages,
        }


@dataclass(frozen=True)
class GroupMove:
    """The plan: every partition's move, and the group's state when it was made."""

    group: str
    target: ReplayTarget
    state: str
    members: int
    moves: tuple[PartitionMove, ...]

    @property
    def messages(self) -> int:
        return sum(m.messages for m in self.moves)

    @property
    def reread(self) -> int:
        """Records the group will read again (it read them before)."""
        return sum(-m.change for m in self.moves if m.change < 0)

    def refusal(self) -> str | None:
        if self.members:
            return (
                f"group {self.group} has {self.members} active member(s) (state {self.state}): "
                "stop its workers first, then replay; their offsets cannot move under them"
            )
        return None

    def lines(self) -> list[str]:
        out = [f"group {self.group} ({self.state}, {self.members} member(s)) to {self.target}:"]
        width = max([len(f"{m.topic}[{m.partition}]") for m in self.moves] + [9])
        out.append(f"  {'partition':<{width}} {'from':>10} {'to':>10} {'end':>10} {'messages':>10}")
        for m in self.moves:
            current = "-" if m.current is None else str(m.current)
            out.append(
                f"  {f'{m.topic}[{m.partition}]':<{width}} {current:>10} {m.target:>10} {m.high:>10} "
                f"{m.messages:>10}"
            )
        out.append(f"  {self.messages} message(s) to read from the new positions, {self.reread} again")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "to": str(self.target),
            "state": self.state,
            "members": self.members,
            "partitions": [m.as_dict() for m in self.moves],
            "messages": self.messages,
            "reread": self.reread,
        }


def _result(futures: dict[Any, Any], what: str) -> dict[Any, Any]:
    try:
        return {k: f.result(timeout=_TIMEOUT_S) for k, f in futures.items()}
    except Exception as exc:  # KafkaException, TimeoutError: the broker did not answer
        raise ServiceUnavailable(f"{what}: {exc}") from None


def _group_state(admin: AdminClient, group: str) -> tuple[str, int]:
    [description] = _result(admin.describe_consumer_groups([group]), f"describing group {group}").values()
    return description.state.name, len(description.members)


def group_members(admin: AdminClient, group: str) -> int:
    """How many members ``group`` has now."""
    return _group_state(admin, group)[1]


def _committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    [answer] = _result(
        admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]), f"offsets of {group}"
    ).values()
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions or [] if tp.offset >= 0}


def _partitions(admin: AdminClient, topics: Iterable[str]) -> list[tuple[str, int]]:
    meta = admin.list_topics(timeout=_TIMEOUT_S)
    out = []
    for topic in sorted(set(topics)):
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            raise ConfigError(f"topic {topic} does not exist on the cluster")
        out += [(topic, p) for p in sorted(info.partitions)]
    return out


def _offsets(admin: AdminClient, specs: dict[TopicPartition, OffsetSpec]) -> dict[tuple[str, int], int]:
    if not specs:
        return {}
    answers = _result(
        admin.list_offsets(specs, isolation_level=IsolationLevel.READ_COMMITTED), "listing offsets"
    )
    return {(tp.topic, tp.partition): info.offset for tp, info in answers.items()}


def plan_replay(
    admin: AdminClient, group: str, target: ReplayTarget, topics: Iterable[str] | None = None
) -> GroupMove:
    """The moves ``target`` means for ``group`` on ``topics`` (default: the topics it has
    committed offsets in). Reads only; changes nothing."""
    state, members = _group_state(admin, group)
    committed = _committed(admin, group)
    wanted = list(topics or [])
    if target.kind == "offset":
        assert target.topic is not None
        if wanted and target.topic not in wanted:
            raise ConfigError(f"--to names topic {target.topic}, which --topic leaves out")
        wanted = [target.topic]
    if not wanted:
        wanted = sorted({t for t, _ in committed})
        if not wanted:
            raise ConfigError(
                f"group {group} has no committed offsets: name the topics it reads with --topic"
            )
    parts = _partitions(admin, wanted)
    if target.kind == "offset" and (target.topic, target.partition) not in parts:
        raise ConfigError(f"{target.topic} has no partition {target.partition}")
    if target.kind == "offset":
        parts = [(target.topic, target.partition)]  # type: ignore[list-item]
    low = _offsets(admin, {TopicPartition(t, p): OffsetSpec.earliest() for t, p in parts})
    high = _offsets(admin, {TopicPartition(t, p): OffsetSpec.latest() for t, p in parts})
    if target.kind == "time":
        found = _offsets(
            admin, {TopicPartition(t, p): OffsetSpec.for_timestamp(target.time_ms or 0) for t, p in parts}
        )
        # -1: no record at or after that instant, so the group starts at the end
        to = {tp: (off if off >= 0 else high[tp]) for tp, off in found.items()}
    elif target.kind == "earliest":
        to = dict(low)
    elif target.kind == "latest":
        to = dict(high)
    else:
        tp = (str(target.topic), int(target.partition or 0))
        offset = int(target.offset or 0)
        if not low[tp] <= offset <= high[tp]:
            raise PlanRefused(
                f"{tp[0]}:{tp[1]} holds offsets {low[tp]} to {high[tp]}; {offset} is outside them"
            )
        to = {tp: offset}
    moves = tuple(
        PartitionMove(t, p, committed.get((t, p)), to[(t, p)], low[(t, p)], high[(t, p)]) for t, p in parts
    )
    return GroupMove(group, target, state, members, moves)


def apply_replay(admin: AdminClient, plan: GroupMove) -> None:
    """Commit the plan's offsets for its group. Refuses (``PlanRefused``) while the group has
    members, checked again right before the write."""
    refusal = plan.refusal()
    state, members = _group_state(admin, plan.group)
    if refusal is None and (members or ConsumerGroupState[state] not in _IDLE_STATES):
        refusal = (
            f"group {plan.group} has {members} active member(s) (state {state}) now: "
            "stop its workers first, then replay"
        )
    if refusal:
        raise PlanRefused(refusal)
    _commit(admin, plan.group, [TopicPartition(m.topic, m.partition, m.target) for m in plan.moves])


def _commit(admin: AdminClient, group: str, offsets: list[TopicPartition]) -> None:
    request = ConsumerGroupTopicPartitions(group, offsets)
    [answer] = _result(admin.alter_consumer_group_offsets([request]), f"moving {group}").values()
    failed = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in answer.topic_partitions or [] if tp.error]
    if failed:
        raise ServiceUnavailable(f"moving {group}: " + "; ".join(failed[:5]))


def hand_over(admin: AdminClient, source: str, target: str) -> None:
    """Give group ``target`` (which must have no members) the committed offsets of group
    ``source``, then delete ``source``."""
    offsets = [TopicPartition(t, p, o) for (t, p), o in _committed(admin, source).items()]
    if offsets:
        _commit(admin, target, offsets)
    _result(admin.delete_consumer_groups([source]), f"deleting group {source}")
