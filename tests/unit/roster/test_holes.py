"""The guard that keeps Faust from committing past records no agent processed."""

from __future__ import annotations

import pytest

from streams.roster.app import _covered
from streams.roster.holes import HoleGuard

TP = ("t", 0)


def nothing_known(a: int, b: int) -> bool:
    return False


def test_acked_offsets_that_start_where_the_last_commit_ended_may_be_committed() -> None:
    guard = HoleGuard()
    guard.start(TP, 10)
    assert guard.check(TP, [10, 11, 12], nothing_known) == ("ok", None)
    guard.committed(TP, 13)
    assert guard.check(TP, [13], nothing_known) == ("ok", None)


def test_a_partition_not_started_yet_is_left_to_faust() -> None:
    assert HoleGuard().check(TP, [5, 6], nothing_known) == ("ok", None)


def test_a_hole_that_stays_is_looked_into_then_waited_for_until_it_is_filled() -> None:
    guard = HoleGuard(grace_s=0.0)
    guard.start(TP, 10)
    verdict, hole = guard.check(TP, [11, 12], nothing_known)  # offset 10 never acked
    assert verdict == "look" and hole is not None and (hole.start, hole.first) == (10, 11)
    assert guard.check(TP, [11, 12], nothing_known)[0] == "wait"  # still looking
    assert guard.found(TP, hole, 10) is True  # the record is in the log: read again
    assert guard.check(TP, [11, 12, 13], nothing_known)[0] == "wait"
    assert guard.check(TP, [10, 11, 12, 13], nothing_known) == ("ok", None)  # read again, acked


def test_a_hole_the_log_does_not_have_is_committed_past() -> None:
    guard = HoleGuard(grace_s=0.0)
    guard.start(TP, 10)
    _, hole = guard.check(TP, [13, 14], nothing_known)
    assert hole is not None
    assert guard.found(TP, hole, 13) is False  # compaction left nothing from 10 to 12
    assert guard.check(TP, [13, 14], nothing_known) == ("ok", None)


def test_a_hole_is_given_time_to_fill_before_it_is_looked_into() -> None:
    guard = HoleGuard(grace_s=3600.0)
    guard.start(TP, 10)
    assert guard.check(TP, [12], nothing_known)[0] == "wait"  # 10 and 11 may be on their way
    assert guard.check(TP, [10, 11, 12], nothing_known) == ("ok", None)


def test_a_hole_faust_knows_as_a_gap_is_no_hole() -> None:
    guard = HoleGuard()
    guard.start(TP, 10)
    assert guard.check(TP, [13], lambda a, b: (a, b) == (10, 13)) == ("ok", None)


def test_a_real_hole_not_filled_in_time_is_looked_into_again() -> None:
    guard = HoleGuard(grace_s=0.0, retry_s=0.0)
    guard.start(TP, 10)
    _, hole = guard.check(TP, [11], nothing_known)
    assert hole is not None
    guard.found(TP, hole, 10)
    assert guard.check(TP, [11], nothing_known)[0] == "look"


def test_a_revoked_partition_is_forgotten() -> None:
    guard = HoleGuard()
    guard.start(TP, 10)
    guard.forget([TP])
    assert guard.check(TP, [20], nothing_known) == ("ok", None)


@pytest.mark.parametrize(
    ("intervals", "begin", "end", "covered"),
    [
        (None, 0, 3, False),
        ([(0, 3)], 0, 3, True),
        ([(0, 2)], 0, 3, False),
        ([(0, 2), (2, 5)], 1, 4, True),
        ([(0, 1), (2, 5)], 0, 3, False),
    ],
)
def test_gaps_cover_a_range_only_without_a_break(
    intervals: list[tuple[int, int]] | None, begin: int, end: int, covered: bool
) -> None:
    from intervaltree import IntervalTree

    tree = IntervalTree.from_tuples(intervals) if intervals is not None else None
    assert _covered(tree, begin, end) is covered
