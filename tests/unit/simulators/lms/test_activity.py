"""The activity generator: reproducible from its seed, realistic enough (late and missing work,
sessions with page views 30 s to 10 min apart), driving the store so that its listeners see the
acting user and the simulated time, and keeping a ground truth that matches what it emitted."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from simulators.lms.activity import ActivityConfig, ActivityGenerator, GroundTruth, SimClock, WallClock
from simulators.lms.live_events import Asset, LiveEventBuilder, event_time
from simulators.lms.store import CanvasStore
from tests.unit.simulators.lms.school import School, school

MONDAY = datetime(2024, 3, 4, 5, 0, tzinfo=UTC)  # local midnight at UTC-5


class Sink:
    """Records the session events as (name, user, time, session, asset)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str, str | None, Asset | None]] = []

    def logged_in(self, user_id: int, *, at: datetime | None = None, session_id: str | None = None) -> None:
        assert at is not None
        self.events.append(("logged_in", user_id, event_time(at), session_id, None))

    def logged_out(self, user_id: int, *, at: datetime | None = None, session_id: str | None = None) -> None:
        assert at is not None
        self.events.append(("logged_out", user_id, event_time(at), session_id, None))

    def asset_accessed(
        self,
        user_id: int,
        asset: Asset,
        *,
        at: datetime | None = None,
        session_id: str | None = None,
        referrer: str | None = None,
    ) -> None:
        assert at is not None
        self.events.append(("asset_accessed", user_id, event_time(at), session_id, asset))


def play(seed: int = 11, days: int = 8, students: int = 12) -> tuple[GroundTruth, Sink, School, list[Any]]:
    s = school(courses=2, students=students)
    builder = LiveEventBuilder(s.store, "canvas")
    changes: list[Any] = []
    s.store.listeners.append(lambda name, obj: changes.append(builder.build(name, obj)))
    sink = Sink()
    truth = ActivityGenerator(s.store, sink, seed=seed, clock=SimClock(MONDAY)).run(days=days)
    return truth, sink, s, [c for c in changes if c is not None]


def test_the_same_seed_gives_the_same_activity_and_ground_truth() -> None:
    first, sink1, _, _ = play(seed=11)
    second, sink2, _, _ = play(seed=11)
    assert first.as_dict() == second.as_dict()
    assert first.by_user_day() == second.by_user_day()
    assert sink1.events == sink2.events
    other, _, _, _ = play(seed=12)
    assert other.as_dict() != first.as_dict()


def test_work_is_on_time_late_or_missing_and_graded() -> None:
    truth, _, s, _ = play()
    totals = truth.totals()
    assert totals["on_time"] > totals["late"] > 0
    assert totals["missing"] > 0
    assert totals["grades"] > 0
    assert any(g.missing for g in truth.grades)  # some never-submitted work got a zero
    due = {a.assignment_id: a.due_at for a in truth.assignments}
    assert any(d < "2024-03-14" for d in due.values()) and any(d > "2024-03-14" for d in due.values())
    for sub in truth.submissions:
        stored = s.store.submissions.get((sub.assignment_id, sub.user_id))
        if sub.status == "missing":
            assert stored is None or stored["submitted_at"] is None
            assert sub.due_at < "2024-03-14T05:00:00Z"  # due before the end of the run
        else:
            assert stored is not None and stored["late"] == (sub.status == "late")
            assert (sub.submitted_at is not None) and (sub.submitted_at > due[sub.assignment_id]) == stored[
                "late"
            ]
    for g in truth.grades:  # graded after handing in, by the course's teacher
        stored = s.store.submissions[(g.assignment_id, g.user_id)]
        teacher = s.teachers[[c["id"] for c in s.courses].index(g.course_id)]
        assert g.grader_id == teacher["id"]
        if not g.missing:
            assert stored["submitted_at"] < g.graded_at
    last_grade = {(g.assignment_id, g.user_id): g.score for g in truth.grades}
    for key, score in last_grade.items():
        assert s.store.submissions[key]["score"] == score


def test_sessions_have_durations_and_reading_paced_page_views() -> None:
    truth, sink, _, _ = play()
    assert truth.sessions and all(r.end is not None for r in truth.sessions)
    by_session: dict[str | None, list[tuple[str, str]]] = defaultdict(list)
    for name, _, at, sid, _ in sink.events:
        by_session[sid].append((name, at))
    for record in truth.sessions:
        events = by_session[record.session_id]
        assert events[0] == ("logged_in", record.start)
        assert events[-1] == ("logged_out", record.end)
        assert record.events == len(events) == record.page_views + 2
        assert record.duration_s is not None and record.duration_s > 0
        assert (
            record.duration_s
            == (
                datetime.fromisoformat(record.end or "") - datetime.fromisoformat(record.start)
            ).total_seconds()
        )
        if record.role == "student":
            times = [datetime.fromisoformat(at) for _, at in events]
            gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
            assert all(g >= 30.0 for g in gaps)
            assert all(g <= 600.0 * 2 for g in gaps)  # a page, then the submission
    students = [r for r in truth.sessions if r.role == "student"]
    durations = sorted(r.duration_s or 0 for r in students)
    assert 5 * 60 < durations[len(durations) // 2] < 90 * 60  # a median session of minutes
    kinds = Counter(e[4].kind for e in sink.events if e[4] is not None)
    assert kinds["course"] and kinds["assignment"] and kinds["file"]
    per_day = truth.by_user_day()
    s0 = per_day["S0"]
    assert all(day.startswith("2024-03-") for day in s0)
    assert sum(c["time_on_task_s"] for c in s0.values()) == sum(
        r.duration_s or 0 for r in truth.sessions if r.sis_user_id == "S0"
    )
    assert sum(c["grades_given"] for c in per_day["T0"].values()) == sum(
        1 for g in truth.grades if g.grader_sis_id == "T0"
    )


def test_store_events_carry_the_acting_user_and_the_simulated_time() -> None:
    truth, _, s, changes = play(days=5, students=6)
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in changes:
        by_name[c["metadata"]["event_name"]].append(c)
    submitted = {(r.assignment_id, r.user_id): r for r in truth.submissions if r.submitted_at}
    assert len(by_name["submission_created"]) == len(submitted)
    for event in by_name["submission_created"]:
        body, meta = event["body"], event["metadata"]
        record = submitted[(int(body["assignment_id"]), int(body["user_id"]))]
        assert meta["user_id"] == body["user_id"]
        assert meta["event_time"].startswith(body["submitted_at"][:-1])  # ...Z vs ...mmmZ
        assert meta["session_id"] in {r.session_id for r in truth.sessions if r.user_id == record.user_id}
    teachers = {str(t["id"]) for t in s.teachers}
    assert by_name["grade_change"] and all(
        e["metadata"]["user_id"] in teachers for e in by_name["grade_change"]
    )
    assert all(e["metadata"]["user_id"] in teachers for e in by_name["assignment_created"])
    assert len(by_name["assignment_created"]) == len(truth.assignments)
    played = [
        e for name in ("assignment_created", "submission_created", "grade_change") for e in by_name[name]
    ]
    assert all("2024-03-04" < e["metadata"]["event_time"] < "2024-03-12" for e in played)


def test_store_methods_take_the_simulated_time() -> None:
    store = CanvasStore()
    course = store.create_course(1, {"course": {"name": "C", "sis_course_id": "c"}})
    user = store.create_user(1, {"pseudonym": {"unique_id": "u", "sis_user_id": "u"}})
    a = store.create_assignment(
        course["id"], {"assignment": {"name": "A", "points_possible": 10}}, at="2024-01-02T03:04:05Z"
    )
    assert a["created_at"] == a["updated_at"] == "2024-01-02T03:04:05Z"
    sub = store.grade(
        course["id"], a["id"], user["id"], {"submission": {"posted_grade": "7"}}, at="2024-01-03T00:00:00Z"
    )
    assert sub["graded_at"] == "2024-01-03T00:00:00Z"
    later = store.grade(course["id"], a["id"], user["id"], {"submission": {"posted_grade": "8"}})
    assert later["graded_at"] > "2024-01-03T00:00:00Z"  # default: now


def test_wall_clock_mode_plays_live_and_closes_its_sessions() -> None:
    s = school(courses=1, students=4)
    sink = Sink()
    # a day every 0.3 s from a Monday 07:00 local: the teachers' morning, the students' day
    clock = WallClock(speed=86400 / 0.3, start=MONDAY + timedelta(hours=7))
    config = ActivityConfig(study_rate=1.0)
    truth = ActivityGenerator(s.store, sink, seed=5, clock=clock, config=config).run(duration_s=0.3)
    assert truth.assignments and truth.sessions
    assert all(r.end is not None for r in truth.sessions)
    names = Counter(e[0] for e in sink.events)
    assert names["logged_in"] == names["logged_out"] == len(truth.sessions)


def test_a_live_run_whose_planning_takes_long_still_plays_its_whole_window() -> None:
    s = school(courses=1, students=4)
    sink = Sink()
    clock = WallClock(speed=86400 / 0.3, start=MONDAY + timedelta(hours=7))
    generator = ActivityGenerator(s.store, sink, seed=5, clock=clock, config=ActivityConfig(study_rate=1.0))
    plan = generator._plan

    def slow_plan(dates):  # type: ignore[no-untyped-def]
        steps = plan(dates)
        time.sleep(0.5)  # a large district: the plan is ready after the whole window has passed
        return steps

    generator._plan = slow_plan  # type: ignore[method-assign]
    truth = generator.run(duration_s=0.3)
    assert truth.assignments and truth.sessions  # played from where the plan began, not skipped
    assert Counter(e[0] for e in sink.events)["logged_in"] == len(truth.sessions)


def _steps(days: int = 5, **kw: Any) -> tuple[ActivityGenerator, list[Any], School]:
    s = school(courses=20, students=60, per_student=3)
    builder = LiveEventBuilder(s.store, "canvas")
    changes: list[Any] = []
    s.store.listeners.append(lambda name, obj: changes.append(builder.build(name, obj)))
    sink = Sink()
    gen = ActivityGenerator(s.store, sink, seed=3, clock=SimClock(MONDAY), **kw)
    gen.run(days=days)
    return gen, [*sink.events, *(c for c in changes if c is not None)], s


def test_max_steps_plays_whole_days_in_a_share_of_the_courses() -> None:
    full, full_events, _ = _steps()
    assert full.course_share == 1.0
    cap = len(full_events) // 4
    capped, events, s = _steps(max_steps=cap)
    assert 0 < capped.course_share < 0.5
    # about the cap (a step is about one event), far below the whole district's
    assert 0.3 * cap < len(events) < 1.2 * cap
    played = {a.course_id for a in capped.truth.assignments}
    assert 0 < len(played) < len(s.courses)
    # still whole school days in the courses played: work set, handed in, graded
    totals = capped.truth.totals()
    assert totals["assignments"] > 0 and totals["on_time"] > 0 and totals["grades"] > 0
    assert {g.course_id for g in capped.truth.grades} <= played
    # the same cap and seed give the same run
    again, events_again, _ = _steps(max_steps=cap)
    assert again.truth.as_dict() == capped.truth.as_dict() and len(events_again) == len(events)
    # a cap above the plan changes nothing
    roomy, _, _ = _steps(max_steps=10 * len(full_events))
    assert roomy.course_share == 1.0 and roomy.truth.as_dict() == full.truth.as_dict()


def test_max_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        ActivityGenerator(CanvasStore(), max_steps=0)
