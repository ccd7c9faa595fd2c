"""Faust takes any jump in a partition's fetch for a compaction gap and commits past it. The
roster worker refuses such gaps in its never-compacted inputs (the records exist: they were
skipped by the fetch after a flow stop) and keeps them in the compacted ones."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP


def test_gaps_are_refused_in_topics_that_are_never_compacted(make_roster, catalog) -> None:
    roster = make_roster()
    internal, compacted = roster.topics.by_user, roster.topics.users
    assert catalog.topic(internal).cleanup_policy == "delete"
    assert catalog.topic(compacted).cleanup_policy == "compact"
    roster._wrap_consumer()
    consumer: Any = roster.app.consumer

    async def gaps() -> None:
        await consumer._add_gap(TP(internal, 3), 255, 757)
        await consumer._add_gap(TP(compacted, 3), 10, 12)

    asyncio.run(gaps())
    assert not consumer._gap.get(TP(internal, 3))  # nothing to commit past: read again instead
    assert [(i.begin, i.end) for i in consumer._gap[TP(compacted, 3)]] == [
        (10, 13)
    ]  # Faust keeps its own way
    assert roster.metrics.gaps_refused._value.get() == 1


class _Consumer:
    """The parts of Faust's consumer a re-read touches."""

    def __init__(self, assignment: set[TP], read: dict[TP, int]) -> None:
        self._assignment, self._read_offset = assignment, dict(read)
        self.flow_active, self.seeks, self.flow = True, [], []

    def assignment(self) -> set[TP]:
        return self._assignment

    def stop_flow(self) -> None:
        self.flow_active = False
        self.flow.append("stop")

    def resume_flow(self) -> None:
        self.flow_active = True
        self.flow.append("resume")

    async def wait_for_stopped_flow(self) -> None:
        return None

    async def seek_wait(self, positions: dict[TP, int]) -> None:
        self.seeks.append(dict(positions))


def test_a_re_read_puts_every_other_partition_back_where_faust_stopped_handing_over(
    make_roster, monkeypatch
) -> None:
    from streams.roster.holes import Hole

    roster = make_roster()
    holed, other, fresh = (
        TP(roster.topics.by_class, 4),
        TP(roster.topics.class_facts, 3),
        TP(roster.topics.users, 0),
    )
    fake = _Consumer({holed, other, fresh}, {holed: 900, other: 254})
    monkeypatch.setattr(type(roster.app), "consumer", property(lambda app: fake))
    monkeypatch.setattr(roster, "_first_offset_from", lambda topic, partition, offset: offset)
    hole = Hole(start=767, first=768)

    asyncio.run(roster._look_into(holed, hole))

    assert fake.flow == ["stop", "resume"]
    # the holed partition from the hole; the one cut off mid-batch from the record after the
    # last handed over (not from where the fetch had got to); one never read is left alone
    assert fake.seeks == [{holed: 767, other: 255}]
    assert fake._read_offset[holed] == 767
