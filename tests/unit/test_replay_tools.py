"""Pure parts of the replay tools: --to parsing, plan arithmetic, dead-letter summaries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streams.dlq_replay import Letter, ReplayPlan, summarize
from streams.errors import ConfigError
from streams.replay import GroupMove, PartitionMove, ReplayTarget, parse_target


def test_replay_targets_parse_and_an_ambiguous_time_is_refused() -> None:
    assert parse_target("earliest") == ReplayTarget("earliest")
    assert parse_target(" latest ") == ReplayTarget("latest")
    at = parse_target("2026-12-04T06:00:00Z")
    assert at.kind == "time" and at.time_ms == int(datetime(2026, 12, 4, 6, tzinfo=UTC).timestamp() * 1000)
    assert parse_target("2026-12-04T07:00:00+01:00").time_ms == at.time_ms
    want = ReplayTarget("offset", topic="sis.users.v1", partition=3, offset=1200)
    assert parse_target("sis.users.v1:3:1200") == want
    with pytest.raises(ConfigError, match="time zone"):
        parse_target("2026-12-04T06:00:00")
    with pytest.raises(ConfigError, match="expected earliest"):
        parse_target("yesterday")


def test_a_plan_counts_what_is_read_again_and_refuses_a_live_group() -> None:
    moves = (
        PartitionMove("t", 0, current=100, target=40, low=0, high=120),  # rewind: 60 again, 80 to read
        PartitionMove("t", 1, current=None, target=0, low=0, high=10),  # never committed: 10 to read
        PartitionMove("t", 2, current=5, target=9, low=0, high=9),  # forward: skips 4
    )
    plan = GroupMove("g", ReplayTarget("earliest"), "EMPTY", 0, moves)
    assert [m.messages for m in moves] == [80, 10, 0]
    assert [m.change for m in moves] == [-60, -10, 4]
    assert (plan.messages, plan.reread) == (90, 70) and plan.refusal() is None
    assert plan.lines()[-1].strip() == "90 message(s) to read from the new positions, 70 again"
    live = GroupMove("g", ReplayTarget("earliest"), "STABLE", 2, moves)
    assert "2 active member(s)" in (live.refusal() or "")


def _letter(offset: int, reason: str, *, source: str | None = "sis.users.v1", **extra: Any) -> Letter:
    record = {
        "stage": "analytics", "reason": reason, "sourceTopic": source,
        "sourcePartition": 0 if source else None, "sourceOffset": 10 + offset if source else None,
        "failedAt": datetime(2026, 12, 4, 6, offset, tzinfo=UTC), "attempt": 1, "key": b"k", "value": b"v",
        "headers": extra.pop("headers", {}), **extra,
    }  # fmt: skip
    return Letter("dlq.analytics.v1", 0, offset, record)


def test_letters_are_summed_by_stage_and_reason_with_what_replays_did() -> None:
    reasons = ("undecodable", "undecodable", "row_refused", "undecodable")
    letters = [_letter(i, r) for i, r in enumerate(reasons)]
    ledger = {
        letters[0].coordinate: {"outcome": "resubmitted"},
        letters[1].coordinate: {"outcome": "superseded"},
    }
    rows = {r.reason: r for r in summarize(letters, ledger)}
    u = rows["undecodable"]
    assert (u.letters, u.resubmitted, u.superseded, u.pending) == (3, 1, 1, 1)
    assert u.first_failed == datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    assert u.last_failed == datetime(2026, 12, 4, 6, 3, tzinfo=UTC)
    assert (rows["row_refused"].letters, rows["row_refused"].pending) == (1, 1)


def test_a_letter_says_where_its_original_came_from() -> None:
    assert _letter(0, "undecodable").origin == "sis.users.v1:0:10"
    origin = {"origin.file": b"users.csv", "origin.line": b"6", "x": b"y"}
    edge = _letter(1, "invalid_row", source=None, headers=origin)
    assert not edge.from_kafka and edge.origin == "file=users.csv line=6"
    plan = ReplayPlan(resubmit=[_letter(0, "undecodable")], outside=[edge])
    text = "\n".join(plan.lines())
    assert text.startswith("1 to re-submit, 0 superseded") and "analytics/undecodable -> sis.users.v1" in text
    assert "analytics/invalid_row: fix the record at its source" in text
