"""Sessions and time on task (pure): the rules, their edges, and order independence."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone

from streams.analytics.sessions import ALL, Hit, daily_figures, sessions

GAP = 30 * 60 * 1000
UTC5 = timezone(timedelta(hours=-5))


def at(hh: int, mm: int, ss: int = 0, day: int = 7) -> int:
    return int(datetime(2026, 9, day, hh, mm, ss, tzinfo=UTC).timestamp() * 1000)


def test_a_gap_longer_than_the_limit_starts_a_new_session() -> None:
    hits = [Hit(at(14, 0), "a"), Hit(at(14, 10), "b"), Hit(at(14, 40), "c"), Hit(at(15, 10, 1), "d")]
    runs = sessions(hits, GAP)
    assert [[h.event_id for h in r] for r in runs] == [["a", "b", "c"], ["d"]]


def test_time_goes_to_each_events_course_until_the_next_event_and_the_last_adds_its_duration() -> None:
    hits = [
        Hit(at(14, 0), "login"),  # no course: counts in the day's total only
        Hit(at(14, 2), "p1", "c1"),
        Hit(at(14, 7), "p2", "c2"),
        Hit(at(14, 9), "p3", "c1", duration_ms=45_000),  # last of the session
        Hit(at(16, 0), "p4", "c2"),  # alone: no next event, no duration
    ]
    figures = daily_figures(hits, GAP, UTC)
    day = date(2026, 9, 7)
    assert figures[(ALL, day)].seconds == 120 + 300 + 120 + 45 + 0
    assert figures[("c1", day)].seconds == 300 + 45
    assert figures[("c2", day)].seconds == 120
    assert (figures[(ALL, day)].events, figures[(ALL, day)].sessions) == (5, 2)
    assert (figures[("c2", day)].events, figures[("c2", day)].sessions) == (2, 2)
    assert (figures[("c1", day)].first_ms, figures[("c1", day)].last_ms) == (at(14, 2), at(14, 9))


def test_days_are_local_days() -> None:
    # 02:00 UTC on the 8th is 21:00 on the 7th five hours west of Greenwich.
    hits = [Hit(at(2, 0, day=8), "a", "c1"), Hit(at(2, 10, day=8), "b", "c1")]
    assert set(daily_figures(hits, GAP, UTC)) == {(ALL, date(2026, 9, 8)), ("c1", date(2026, 9, 8))}
    assert set(daily_figures(hits, GAP, UTC5)) == {(ALL, date(2026, 9, 7)), ("c1", date(2026, 9, 7))}


def test_the_figures_do_not_depend_on_the_order_the_events_came_in() -> None:
    rng = random.Random(7)
    hits = []
    t = at(8, 0)
    for n in range(300):
        t += rng.choice([20_000, 90_000, 600_000, 2_400_000])
        hits.append(Hit(t, f"e{n}", rng.choice([None, "c1", "c2", "c3"]), rng.choice([None, 5000])))
    want = daily_figures(hits, GAP, UTC5)
    for _ in range(5):
        rng.shuffle(hits)
        assert daily_figures(hits, GAP, UTC5) == want
    total = sum(f.seconds for (c, _), f in want.items() if c == ALL)
    assert total > 0 and sum(f.events for (c, _), f in want.items() if c == ALL) == 300
