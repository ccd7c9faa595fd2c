"""The engagement state (pure): repeats, late events, closed days, revisions."""

from __future__ import annotations

from datetime import UTC, date, datetime

from streams.analytics.engagement import UserActivity, take_in
from streams.analytics.sessions import ALL

GAP = 30 * 60 * 1000


def event(eid: str, day: int, hh: int, mm: int, course: str | None = "c1") -> dict:
    at = datetime(2026, 9, day, hh, mm, tzinfo=UTC)
    return {"eventId": eid, "eventTime": at, "courseId": course, "durationMs": None, "sisUserId": "s-1"}


def step(state: UserActivity, *events: dict, horizon: int = 3):
    return take_in(state, list(events), gap_ms=GAP, tz=UTC, horizon_days=horizon)


def test_a_repeated_event_changes_nothing_and_a_new_one_raises_the_revision() -> None:
    s1, changed, n = step(UserActivity("u"), event("a", 7, 9, 0), event("b", 7, 9, 5))
    assert n == {"counted": 2, "duplicate": 0, "too_late": 0} and s1.revision == 2
    assert changed[(ALL, date(2026, 9, 7))].seconds == 300 and s1.sis_user_id == "s-1"
    s2, changed, n = step(s1, event("a", 7, 9, 0))
    assert s2 is s1 and changed == {} and n["duplicate"] == 1


def test_a_late_event_inside_a_session_changes_only_the_figures_it_touches() -> None:
    s1, _, _ = step(UserActivity("u"), event("a", 7, 9, 0, "c1"), event("b", 7, 9, 10, "c2"))
    s2, changed, _ = step(s1, event("late", 7, 9, 4, "c3"))
    day = date(2026, 9, 7)
    assert changed[("c1", day)].seconds == 240  # until the late event, no longer until b
    assert changed[("c3", day)].seconds == 360
    assert ("c2", day) not in changed  # b is the session's last event either way
    assert s2.revision == 3


def test_days_before_the_horizon_close_and_their_events_are_too_late() -> None:
    s1, _, _ = step(UserActivity("u"), event("a", 1, 9, 0), event("b", 1, 9, 5))
    s2, changed, _ = step(s1, event("c", 7, 9, 0))  # horizon 3: the 5th, 6th and 7th are open
    assert s2.first_open_day == date(2026, 9, 5)
    assert [h.event_id for h in s2.hits] == ["c"]
    assert all(day == date(2026, 9, 7) for _, day in changed)  # the closed day is not rewritten
    s3, changed, n = step(s2, event("old", 2, 9, 0))
    assert n["too_late"] == 1 and s3 is s2 and changed == {}


def test_the_state_survives_its_record() -> None:
    s1, _, _ = step(UserActivity("u"), event("a", 7, 9, 0), event("b", 7, 9, 5, None))
    assert UserActivity.from_record(s1.to_record()) == s1
