"""Engagement on the real stack: a simulated school week's Live Events go through the receiver and
the events processor; the engagement processor turns the activity into time on task per user,
course and local day; the analytics sink stores it. The figures must equal two independent
computations: the activity generator's own sessions, and SQL over the stored events. A replay
changes nothing."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from sislms.analytics import build_analytics_sink, build_engagement_processor
from sislms.wiring import Kernel
from streams.analytics.engagement import EngagementProcessor
from streams.compacted import group_caught_up
from streams.kafka import client_config
from streams.lms.events import ACTIVITY
from streams.settings import Settings
from tests.integration.lms_support import Rig, caught_up, open_rig, play_school_week
from tests.integration.running import Running
from tests.integration.sis_support import wait_for

ZONE = "Etc/GMT+5"  # the activity generator's school: UTC-5 (POSIX signs: GMT+5 is five hours west)
DAILY = "analytics.engagement_daily.v1"
STATE = "analytics.engagement_state.v1"


@pytest.fixture
def rig(settings: Settings, kernel: Kernel, make_catalog: Any, uid: str) -> Iterator[Rig]:
    with open_rig(settings, kernel, make_catalog, uid) as r:
        r.settings = r.settings.model_copy(update={"analytics_timezone": ZONE})
        yield r
    with psycopg.connect(kernel.endpoints.postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(f"e_{uid}")))


def engagement(rig: Rig, group: str) -> EngagementProcessor:
    return build_engagement_processor(
        rig.settings, rig.kernel, group=group, activity_topic=rig.topic(ACTIVITY),
        state_topic=rig.topic(STATE), out_topic=rig.topic(DAILY), stage=f"analytics_{rig.uid}",
    )  # fmt: skip


def group_done(rig: Rig, group: str, topic: str) -> bool:
    conf = client_config(rig.settings, rig.kernel.endpoints.kafka_bootstrap)
    return group_caught_up(conf, group, [topic])[0]


def run_until_done(rig: Rig, worker: Any, group: str, topics: list[str]) -> Any:
    running = Running(worker)
    try:
        wait_for(lambda: all(group_done(rig, group, t) for t in topics), timeout=180)
    finally:
        running.close()
    return running.worker


def stored(rig: Rig, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(rig.kernel.endpoints.postgres_dsn) as conn:
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(f"e_{rig.uid}")))
        return conn.execute(query).fetchall()  # type: ignore[call-overload]


#: Time on task per (user, local day) from the stored events, in SQL: each event counts until the
#: next event of the user if that comes within the gap, else its own duration.
INDEPENDENT = """
with e as (
    select user_id, event_time, duration_ms,
           lead(event_time) over (partition by user_id order by event_time, event_id) as next_time
    from activity_events
)
select user_id, (event_time at time zone 'Etc/GMT+5')::date as day, count(*) as events,
       round(sum(case when next_time - event_time <= interval '30 minutes'
                      then extract(epoch from next_time - event_time)
                      else coalesce(duration_ms, 0) / 1000.0 end)::numeric, 3) as seconds
from e group by 1, 2
"""


@pytest.mark.parametrize("fmt", ["canvas", "caliper"])
def test_time_on_task_equals_the_generators_sessions_and_sql_over_the_events_and_a_replay_changes_nothing(
    rig: Rig, fmt: str
) -> None:
    _, truth, _ = play_school_week(rig, fmt)
    run_until_done(rig, rig.processor(), rig.group, [rig.raw])
    assert caught_up(rig)

    first = run_until_done(rig, engagement(rig, f"eng-{rig.uid}"), f"eng-{rig.uid}", [rig.topic(ACTIVITY)])
    assert first.counts["counted"] > 0 and first.counts["too_late"] == 0
    topics = {
        "lms.activity.v1": rig.topic(ACTIVITY),
        DAILY: rig.topic(DAILY),
        "dlq.analytics.v1": f"dlq.analytics_{rig.uid}.v1",
    }
    sink = build_analytics_sink(
        rig.settings, rig.kernel, group=f"sink-{rig.uid}", topics=topics, schema=f"e_{rig.uid}",
        stage=f"analytics_{rig.uid}",
    )  # fmt: skip
    run_until_done(rig, sink, f"sink-{rig.uid}", list(topics.values()))

    # 1. The generator's sessions: per (SIS user, local day), the sum of end - start.
    want: dict[tuple[str, str], float] = defaultdict(float)
    sessions: dict[tuple[str, str], int] = defaultdict(int)
    for rec in truth.sessions:
        assert rec.sis_user_id is not None and rec.duration_s is not None
        want[(rec.sis_user_id, rec.day)] += rec.duration_s
        sessions[(rec.sis_user_id, rec.day)] += 1
    assert len(want) > 20  # students and teachers on five school days
    _no_two_sessions_closer_than_the_gap(truth)
    got = {
        (sis, day.isoformat()): (float(seconds), n)
        for sis, day, seconds, n in stored(
            rig, "select sis_user_id, day, seconds, sessions from engagement_daily where course_key = '*'"
        )
    }
    assert set(got) == set(want)
    for k, seconds in want.items():
        assert got[k][0] == pytest.approx(seconds, abs=0.01), k
        assert got[k][1] == sessions[k], k

    # 2. SQL over the stored events: per user and day, the same time and the same event count.
    independent = {(u, d): (int(n), float(sec)) for u, d, n, sec in stored(rig, INDEPENDENT)}
    daily = {
        (u, d): (n, float(sec))
        for u, d, n, sec in stored(
            rig, "select user_id, day, events, seconds from engagement_daily where course_key = '*'"
        )
    }
    assert daily.keys() == independent.keys()
    for k, (n, sec) in independent.items():
        assert daily[k][0] == n and daily[k][1] == pytest.approx(sec, abs=0.01), k
    # Per course: the course rows add up to at most the day's total (signing in is in no course).
    per_course = stored(
        rig,
        "select user_id, day, sum(seconds) from engagement_daily where course_key <> '*' group by 1, 2",
    )
    assert per_course and all(float(total) <= daily[(u, d)][1] + 0.01 for u, d, total in per_course)

    # 3. A replay: the engagement processor reads the activity again with its state: nothing new.
    before = stored(rig, "select * from engagement_daily order by 1, 2, 3")
    again = run_until_done(rig, engagement(rig, f"eng2-{rig.uid}"), f"eng2-{rig.uid}", [rig.topic(ACTIVITY)])
    assert again.counts["counted"] == 0 and again.counts["duplicate"] == first.counts["counted"]
    assert again.counts["records"] == 0
    # ... and the sink reads everything again from the start: no row changes.
    sink2 = build_analytics_sink(
        rig.settings, rig.kernel, group=f"sink2-{rig.uid}", topics=topics, schema=f"e_{rig.uid}",
        stage=f"analytics_{rig.uid}",
    )  # fmt: skip
    run_until_done(rig, sink2, f"sink2-{rig.uid}", list(topics.values()))
    after = stored(rig, "select * from engagement_daily order by 1, 2, 3")
    strip = lambda rows: [r[:-1] for r in rows]  # noqa: E731 (written_at changes, nothing else)
    assert strip(after) == strip(before)


def _no_two_sessions_closer_than_the_gap(truth: Any) -> None:
    """The generator's sessions of a user are more than the gap apart: they are the sessions the
    pipeline must find (if not, the comparison above would not be fair)."""
    by_user: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for rec in truth.sessions:
        by_user[rec.sis_user_id].append((datetime.fromisoformat(rec.start), datetime.fromisoformat(rec.end)))
    for spans in by_user.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start - end > timedelta(minutes=30)
