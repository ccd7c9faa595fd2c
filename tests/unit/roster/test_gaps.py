"""Faust takes any jump in a partition's fetch for a compaction gap and commits past it. The
roster worker refuses such gaps in its never-compacted inputs (the records exist: they were
skipped by the fetch after a flow stop) and keeps them in the compacted ones."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.types import TP

from streams.catalog import load_catalog
from streams.roles.engine import RuleSet
from streams.roster.app import Roster
from streams.serde import Serdes


def test_gaps_are_refused_in_topics_that_are_never_compacted(tmp_path, settings) -> None:
    catalog = load_catalog(settings.topology_file, settings.schemas_dir)
    roster = Roster(
        bootstrap="127.0.0.1:1",
        catalog=catalog,
        serdes=Serdes(cast(Any, None), catalog),
        dead_letters=cast(Any, None),
        rules=RuleSet.load(settings.roles_file),
        reference=cast(Any, None),
        data_dir=tmp_path / "state",
        producer=cast(Any, object()),
    )
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
