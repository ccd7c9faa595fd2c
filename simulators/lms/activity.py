"""Simulated classroom activity in a provisioned LMS, with the ground truth it produced.

Over a :class:`~simulators.lms.store.CanvasStore` that already holds courses with teachers and
students (the provisioning sink fills it), :class:`ActivityGenerator` plays school days:

- teachers sign in in the morning and create assignments (due one to six days later, so by the
  end some are past due and some are not);
- students run sessions: ``logged_in``, page views of their courses (course pages, assignments,
  files) 30 s to 10 min apart, ``logged_out``; a session on a day something is to be handed in
  includes the assignment's page and the submission (most on time, some late, some never);
- teachers sign in in the afternoon and grade submissions a day or more after they came in, and
  mark some never-submitted work missing (a zero).

Store changes go through the store's public methods (``create_assignment``, ``submit``,
``grade``) inside :func:`~simulators.lms.live_events.acting`, so listeners (the Live Events
emitter) see the acting user, the simulated time and the session; session events go to the
``events`` sink directly. The whole plan is drawn from the seed before anything runs, so a seed, a
start and the same store give the same activity and the same :class:`GroundTruth`.

Two clocks: :class:`SimClock` (default) jumps from step to step, so a week of activity takes
seconds with event times in the past; :class:`WallClock` waits for real time (``speed`` times
faster), for a live feed of ``duration_s`` seconds.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from simulators.lms.live_events import Asset, acting, event_time
from simulators.lms.store import CanvasStore, Obj

__all__ = [
    "ActivityConfig",
    "ActivityGenerator",
    "AssignmentRecord",
    "Clock",
    "GradeRecord",
    "GroundTruth",
    "SessionEvents",
    "SessionRecord",
    "SimClock",
    "SubmissionRecord",
    "WallClock",
]

log = logging.getLogger(__name__)

_LIVE = ("active", "invited")
_COURSE_PAGES = ("modules", "assignments", "announcements", "grades", "files", "home")
_FILE_NAMES = ("Syllabus.pdf", "Unit Notes.pdf", "Reading List.docx", "Practice Problems.pdf", "Rubric.pdf")
_KINDS = (("Homework", 10.0), ("Quiz", 20.0), ("Lab Report", 50.0), ("Essay", 100.0))


def _store_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _draw(seed: int, course_id: int) -> float:
    """A course's place in [0, 1) for a seed, the same on every plan of a run."""
    return zlib.crc32(f"{seed}/{course_id}".encode()) / 2**32


def _secs(seconds: float) -> timedelta:
    """Whole milliseconds, as event times carry them (so durations add up exactly)."""
    return timedelta(milliseconds=round(seconds * 1000))


# --- clocks ----------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime: ...

    def wait_until(self, at: datetime, stop: threading.Event | None = None) -> bool:
        """Return at ``at`` (False when ``stop`` was set first)."""
        ...


class SimClock:
    """Simulated time: starts at ``start`` and jumps to each step at once."""

    def __init__(self, start: datetime) -> None:
        self._now = start if start.tzinfo else start.replace(tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def wait_until(self, at: datetime, stop: threading.Event | None = None) -> bool:
        self._now = max(self._now, at)
        return not (stop is not None and stop.is_set())


class WallClock:
    """Real time from ``start`` (default now), ``speed`` times faster."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.start = start or datetime.now(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def rebase(self, at: datetime) -> None:
        """From now on, real time runs from ``at``."""
        self.start, self._t0 = at, time.monotonic()

    def wait_until(self, at: datetime, stop: threading.Event | None = None) -> bool:
        delay = (at - self.now()).total_seconds() / self.speed
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)


class SessionEvents(Protocol):
    """Where session events go (:class:`~simulators.lms.webhook.LiveEventsEmitter` is one)."""

    def logged_in(
        self, user_id: int, *, at: datetime | None = None, session_id: str | None = None
    ) -> None: ...

    def logged_out(
        self, user_id: int, *, at: datetime | None = None, session_id: str | None = None
    ) -> None: ...

    def asset_accessed(
        self,
        user_id: int,
        asset: Asset,
        *,
        at: datetime | None = None,
        session_id: str | None = None,
        referrer: str | None = None,
    ) -> None: ...


# --- configuration and ground truth ----------------------------------------------------------


@dataclass(frozen=True)
class ActivityConfig:
    """How the simulated school behaves (rates are per student per assignment unless said)."""

    utc_offset_h: float = -5.0  #: the school's local time (days, hours of sessions)
    assignments_per_week: float = 2.0  #: per course; every course gets one on the first day
    due_in_days: tuple[int, int] = (1, 6)  #: due at 23:59 local, this many days after creation
    on_time_rate: float = 0.75
    late_rate: float = 0.15  #: the rest never submit (missing)
    late_by_days: tuple[int, int] = (1, 3)
    grade_rate: float = 0.9  #: share of submissions graded
    grade_after_days: tuple[int, int] = (1, 3)
    mark_missing_rate: float = 0.5  #: share of never-submitted work marked missing (a zero)
    study_rate: float = 0.6  #: chance of a session on a school day with nothing due
    weekend_study_rate: float = 0.2
    pages_per_session: tuple[int, int] = (3, 12)
    page_gap_s: tuple[float, float] = (30.0, 600.0)
    median_page_gap_s: float = 120.0
    files_per_course: int = 3


@dataclass
class AssignmentRecord:
    assignment_id: int
    course_id: int
    sis_course_id: str | None
    title: str
    created_at: str
    due_at: str
    points_possible: float


@dataclass
class SessionRecord:
    user_id: int
    sis_user_id: str | None
    role: Literal["student", "teacher"]
    session_id: str
    day: str  #: local date of the start
    start: str
    end: str | None = None
    events: int = 0  #: logged_in, page views, logged_out
    page_views: int = 0
    submissions: int = 0
    grades: int = 0

    @property
    def duration_s(self) -> float | None:
        if self.end is None:
            return None
        return (datetime.fromisoformat(self.end) - datetime.fromisoformat(self.start)).total_seconds()


@dataclass
class SubmissionRecord:
    assignment_id: int
    course_id: int
    sis_course_id: str | None
    user_id: int
    sis_user_id: str | None
    due_at: str
    status: Literal["on_time", "late", "missing"]
    day: str  #: local date of the submission, or of the due date when missing
    submitted_at: str | None = None
    attempt: int | None = None


@dataclass
class GradeRecord:
    assignment_id: int
    course_id: int
    sis_course_id: str | None
    user_id: int
    sis_user_id: str | None
    grader_id: int
    grader_sis_id: str | None
    score: float | None
    grade: str | None
    graded_at: str
    day: str
    missing: bool = False  #: a never-submitted work marked missing


@dataclass
class GroundTruth:
    """What the generator did, to compare the pipeline's figures with."""

    assignments: list[AssignmentRecord] = field(default_factory=list)
    sessions: list[SessionRecord] = field(default_factory=list)
    submissions: list[SubmissionRecord] = field(default_factory=list)
    grades: list[GradeRecord] = field(default_factory=list)

    def by_user_day(self) -> dict[str, dict[str, dict[str, Any]]]:
        """user (SIS id, else ``id:<n>``) -> local day -> sessions (start, end, events,
        duration), time on task, submissions by status, grades received and given."""
        out: dict[str, dict[str, dict[str, Any]]] = {}

        def cell(user_id: int, sis_id: str | None, day: str) -> dict[str, Any]:
            days = out.setdefault(sis_id or f"id:{user_id}", {})
            return days.setdefault(
                day,
                {
                    "sessions": [],
                    "time_on_task_s": 0.0,
                    "page_views": 0,
                    "on_time": 0,
                    "late": 0,
                    "missing": 0,
                    "grades": [],
                    "grades_given": 0,
                },
            )

        for s in self.sessions:
            c = cell(s.user_id, s.sis_user_id, s.day)
            c["sessions"].append(
                {"session_id": s.session_id, "start": s.start, "end": s.end, "events": s.events}
            )
            c["time_on_task_s"] += s.duration_s or 0.0
            c["page_views"] += s.page_views
        for sub in self.submissions:
            cell(sub.user_id, sub.sis_user_id, sub.day)[sub.status] += 1
        for g in self.grades:
            cell(g.user_id, g.sis_user_id, g.day)["grades"].append(
                {"assignment_id": g.assignment_id, "score": g.score, "missing": g.missing}
            )
            cell(g.grader_id, g.grader_sis_id, g.day)["grades_given"] += 1
        return out

    def totals(self) -> dict[str, int]:
        status: defaultdict[str, int] = defaultdict(int)
        for sub in self.submissions:
            status[sub.status] += 1
        return {
            "assignments": len(self.assignments),
            "sessions": len(self.sessions),
            "page_views": sum(s.page_views for s in self.sessions),
            "on_time": status["on_time"],
            "late": status["late"],
            "missing": status["missing"],
            "grades": len(self.grades),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "assignments": [asdict(a) for a in self.assignments],
            "sessions": [asdict(s) | {"duration_s": s.duration_s} for s in self.sessions],
            "submissions": [asdict(s) for s in self.submissions],
            "grades": [asdict(g) for g in self.grades],
        }


# --- the plan --------------------------------------------------------------------------------


@dataclass
class _Course:
    course: Obj
    teacher: int | None
    students: list[int]
    files: list[tuple[int, str]]


@dataclass(eq=False)
class _Assignment:
    key: int
    course: _Course
    title: str
    points: float
    created: datetime
    due: datetime
    missing: list[int] = field(default_factory=list)
    obj: Obj | None = None  #: once created in the store


@dataclass(eq=False)
class _Session:
    user_id: int
    role: Literal["student", "teacher"]
    sid: str
    start: datetime
    record: SessionRecord | None = None  #: once started
    closed: bool = False


@dataclass
class _Step:
    at: datetime
    seq: int
    kind: Literal["login", "page", "create", "submit", "grade", "logout"]
    session: _Session
    asset: Asset | None = None
    assignment: _Assignment | None = None
    student: int | None = None
    score: float | None = None  #: None with kind grade: marked missing


class ActivityGenerator:
    """Plays simulated school days over ``store``; see the module docstring.

    Args:
        store: a provisioned store (courses with teacher and student enrollments).
        events: where ``logged_in``, ``asset_accessed`` and ``logged_out`` go (None: nowhere;
            store changes still reach the store's listeners).
        seed: the whole plan comes from it.
        clock: :class:`SimClock` (default: starting so that the run ends about today) or
            :class:`WallClock`.
        config: the school's rates and rhythms.
        max_steps: a cap on the run's steps (about one Live Event each): when the whole
            district's plan is bigger, the plan is made again over a share of the courses
            (chosen by the seed) sized to fit, so that a bounded run (a demo) plays whole school
            days in fewer classes rather than fewer days. None: no cap.
    """

    def __init__(
        self,
        store: CanvasStore,
        events: SessionEvents | None = None,
        *,
        seed: int = 7,
        clock: Clock | None = None,
        config: ActivityConfig | None = None,
        max_steps: int | None = None,
    ) -> None:
        if max_steps is not None and max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.store = store
        self.events = events
        self.seed = seed
        self.clock = clock
        self.config = config or ActivityConfig()
        self.tz = timezone(timedelta(hours=self.config.utc_offset_h))
        self.truth = GroundTruth()
        self._rng = random.Random(seed)
        self._seq = 0
        self._sis: dict[int, str | None] = {}
        self._submitted: set[tuple[int, int]] = set()
        self._assignments: list[_Assignment] = []
        self._ran = False
        self.max_steps = max_steps
        self.course_share = 1.0  #: the share of the courses played (below 1 when capped)

    # --- public ------------------------------------------------------------------------------

    def run(
        self,
        days: int | None = None,
        *,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
    ) -> GroundTruth:
        """Play ``days`` school days (simulated time), or ``duration_s`` seconds of wall-clock
        time (a :class:`WallClock`); returns the ground truth (also kept in ``truth``). A
        generator runs once: its plan and truth belong to that run."""
        if (days is None) == (duration_s is None):
            raise ValueError("give either days or duration_s")
        if self._ran:
            raise RuntimeError("an ActivityGenerator runs once; make another for more activity")
        self._ran = True
        if days is not None:
            if days < 1:
                raise ValueError("days must be >= 1")
            clock = self.clock or SimClock(self._default_start(days))
            first = clock.now().astimezone(self.tz).date()
            dates = self._dates(first, school_days=days)
            end = self._midnight(dates[-1] + timedelta(days=1))
            deadline = None
        else:
            assert duration_s is not None
            clock = self.clock or WallClock()
            speed = getattr(clock, "speed", 1.0)
            origin = clock.now()
            first = origin.astimezone(self.tz).date()
            end = origin + timedelta(seconds=duration_s * speed)
            dates = self._dates(first, until=end.astimezone(self.tz).date())
            deadline = end
        self.clock = clock
        steps = self._plan(dates)
        if self.max_steps is not None and len(steps) > self.max_steps:
            steps = self._plan_within(dates, len(steps), self.max_steps)
        if deadline is not None and isinstance(clock, WallClock):
            # planning a large district takes minutes of real time, simulated days at speed:
            # the run starts when the plan is ready, at the simulated time it was planned from
            clock.rebase(origin)
        started = clock.now()
        log.info(
            "activity: %d steps planned over %d days (%s clock)", len(steps), len(dates), type(clock).__name__
        )
        self._execute(steps, clock, started, deadline, stop)
        if deadline is not None:
            self._close_open(steps, clock)
            end = min(end, clock.now())
        self._record_missing(end)
        totals = self.truth.totals()
        log.info("activity done: %s", totals)
        return self.truth

    # --- planning ----------------------------------------------------------------------------

    def _plan_within(self, dates: list[date], planned: int, max_steps: int) -> list[_Step]:
        """The plan again over a share of the courses, shrunk until it fits ``max_steps``
        (students' sessions shrink more slowly than the share: a student keeps them while any
        of their courses is played, so a few rounds may be needed)."""
        steps: list[_Step] = []
        size = planned
        for _ in range(6):
            self.course_share *= 0.95 * max_steps / size
            self._rng, self._seq = random.Random(f"{self.seed}/share/{self.course_share}"), 0
            steps = self._plan(dates)
            size = len(steps)
            if size <= max_steps:
                break
        log.info(
            "activity: %d steps planned for the whole district, over max_steps %d: %.2f%% of the "
            "courses played (%d steps)",
            planned, max_steps, 100 * self.course_share, size,
        )  # fmt: skip
        return steps

    def _default_start(self, school_days: int) -> datetime:
        """Local midnight so that ``school_days`` school days end yesterday."""
        day = datetime.now(self.tz).date()
        count = 0
        while count < school_days:
            day -= timedelta(days=1)
            count += day.weekday() < 5
        return self._midnight(day)

    def _midnight(self, day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=self.tz)

    def _at(self, day: date, hour: float) -> datetime:
        return self._midnight(day) + timedelta(seconds=round(hour * 3600))

    @staticmethod
    def _dates(first: date, *, school_days: int | None = None, until: date | None = None) -> list[date]:
        out: list[date] = []
        day, count = first, 0
        while True:
            if school_days is not None and count >= school_days:
                break
            if until is not None and day > until:
                break
            out.append(day)
            count += day.weekday() < 5
            day += timedelta(days=1)
        while out and out[-1].weekday() >= 5 and school_days is not None:
            out.pop()  # end on the last school day
        return out

    def _roster(self) -> list[_Course]:
        teachers: dict[int, list[int]] = defaultdict(list)
        students: dict[int, list[int]] = defaultdict(list)
        for e in sorted(self.store.enrollments.values(), key=lambda e: e["id"]):
            if e["enrollment_state"] not in _LIVE:
                continue
            if e["type"] == "TeacherEnrollment":
                teachers[e["course_id"]].append(e["user_id"])
            elif e["type"] == "StudentEnrollment":
                students[e["course_id"]].append(e["user_id"])
        self._sis = {login["user_id"]: login["sis_user_id"] for login in self.store.logins.values()}
        out = []
        first = min(self.store.courses, key=lambda cid: _draw(self.seed, cid), default=None)
        for cid in sorted(self.store.courses):
            course = self.store.courses[cid]
            if course["workflow_state"] == "deleted" or not students.get(cid):
                continue
            if self.course_share < 1.0 and _draw(self.seed, cid) >= self.course_share and cid != first:
                continue  # not in the share of the courses a capped run plays (never none)
            n = self.config.files_per_course
            files = [(cid * 1000 + k + 1, _FILE_NAMES[k % len(_FILE_NAMES)]) for k in range(n)]
            kids = sorted(set(students[cid]))
            out.append(_Course(course, min(teachers[cid]) if teachers.get(cid) else None, kids, files))
        return out

    def _step(self, at: datetime, kind: Any, session: _Session, **kw: Any) -> _Step:
        self._seq += 1
        return _Step(at, self._seq, kind, session, **kw)

    def _session(self, user_id: int, role: Literal["student", "teacher"], start: datetime) -> _Session:
        return _Session(user_id, role, f"{self._rng.getrandbits(128):032x}", start)

    def _gap(self) -> timedelta:
        low, high = self.config.page_gap_s
        seconds = self.config.median_page_gap_s * math.exp(self._rng.gauss(0.0, 0.8))
        return _secs(min(high, max(low, seconds)))

    def _plan(self, dates: list[date]) -> list[_Step]:
        cfg, rng = self.config, self._rng
        roster = self._roster()
        steps: list[_Step] = []
        in_range = set(dates)
        school = [d for d in dates if d.weekday() < 5]

        # Teachers create assignments in a morning session.
        assignments: list[_Assignment] = []
        creating: dict[tuple[int, date], list[_Assignment]] = defaultdict(list)
        per_day = cfg.assignments_per_week / 5
        for n_day, day in enumerate(school):
            for course in roster:
                if course.teacher is None:
                    continue  # nobody to set work
                count = int(per_day) + (rng.random() < per_day - int(per_day))
                if n_day == 0:
                    count = max(count, 1)
                for _ in range(count):
                    kind, points = rng.choice(_KINDS)
                    number = 1 + sum(a.course is course for a in assignments)
                    due_day = day + timedelta(days=rng.randint(*cfg.due_in_days))
                    a = _Assignment(
                        key=len(assignments),
                        course=course,
                        title=f"{kind} {number}",
                        points=points,
                        created=self._at(day, 7.0),  # set below, with the session
                        due=self._at(due_day, 23 + 59 / 60),
                    )
                    assignments.append(a)
                    creating[(course.teacher, day)].append(a)
        for (teacher, day), made in creating.items():
            session = self._session(teacher, "teacher", self._at(day, 7.0 + rng.uniform(0, 50) / 60))
            t = session.start
            steps.append(self._step(t, "login", session))
            for a in made:
                t += _secs(rng.uniform(30, 120))
                asset = Asset("course", a.course.course["id"], subtype="assignments")
                steps.append(self._step(t, "page", session, asset=asset))
                t += _secs(rng.uniform(60, 240))
                a.created = t
                steps.append(self._step(t, "create", session, assignment=a))
            steps.append(self._step(t + self._gap(), "logout", session))

        # Each student's fate per assignment: the day they hand it in, or never.
        tasks: dict[tuple[int, date], list[_Assignment]] = defaultdict(list)
        for a in assignments:
            created_day, due_day = a.created.astimezone(self.tz).date(), a.due.astimezone(self.tz).date()
            for student in a.course.students:
                u = rng.random()
                if u < cfg.on_time_rate:
                    span = (due_day - created_day).days
                    tasks[(student, created_day + timedelta(days=rng.randint(0, span)))].append(a)
                elif u < cfg.on_time_rate + cfg.late_rate:
                    tasks[(student, due_day + timedelta(days=rng.randint(*cfg.late_by_days)))].append(a)
                else:
                    a.missing.append(student)

        # Students' sessions: one a day when something is due, else now and then.
        set_in: dict[int, list[_Assignment]] = defaultdict(list)  # course id -> its work, in order
        for a in assignments:
            set_in[a.course.course["id"]].append(a)
        courses_of: dict[int, list[_Course]] = defaultdict(list)
        for course in roster:
            for student in course.students:
                courses_of[student].append(course)
        handed_in: list[tuple[_Assignment, int, datetime]] = []
        for day in dates:
            rate = cfg.study_rate if day.weekday() < 5 else cfg.weekend_study_rate
            for student in sorted(courses_of):
                todo = tasks.get((student, day), [])
                if not todo and rng.random() >= rate:
                    continue
                hour = rng.uniform(15.0, 21.0) if todo else rng.uniform(8.0, 21.5)
                session = self._session(student, "student", self._at(day, hour))
                handed_in += self._student_session(session, courses_of[student], set_in, todo, steps)

        # Teachers grade in an afternoon session a day or more later; some missing work gets a zero.
        grading: dict[tuple[int, date], list[tuple[_Assignment, int, float | None]]] = defaultdict(list)

        def grading_day(after: date, lo: int, hi: int) -> date:
            day = after + timedelta(days=max(1, rng.randint(lo, hi)))
            while day.weekday() >= 5:
                day += timedelta(days=1)
            return day

        for a, student, when in handed_in:
            if a.course.teacher is None or rng.random() >= cfg.grade_rate:
                continue
            day = grading_day(when.astimezone(self.tz).date(), *cfg.grade_after_days)
            score = round(a.points * min(1.0, max(0.3, rng.gauss(0.82, 0.12))) * 2) / 2
            if day in in_range:
                grading[(a.course.teacher, day)].append((a, student, score))
        for a in assignments:
            for student in a.missing:
                if a.course.teacher is None or rng.random() >= cfg.mark_missing_rate:
                    continue
                day = grading_day(a.due.astimezone(self.tz).date(), 1, 2)
                if day in in_range:
                    grading[(a.course.teacher, day)].append((a, student, None))
        for (teacher, day), todo_grades in sorted(grading.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            session = self._session(teacher, "teacher", self._at(day, 16.0 + rng.uniform(0, 90) / 60))
            t = session.start
            steps.append(self._step(t, "login", session))
            seen: set[int] = set()
            for a, student, given in todo_grades:
                if a.course.course["id"] not in seen:
                    seen.add(a.course.course["id"])
                    t += _secs(rng.uniform(20, 90))
                    asset = Asset("course", a.course.course["id"], subtype="gradebook")
                    steps.append(self._step(t, "page", session, asset=asset))
                t += _secs(rng.uniform(45, 300))
                steps.append(self._step(t, "grade", session, assignment=a, student=student, score=given))
            steps.append(self._step(t + self._gap(), "logout", session))

        self._assignments = assignments
        steps.sort(key=lambda s: (s.at, s.seq))
        return steps

    def _student_session(
        self,
        session: _Session,
        courses: list[_Course],
        set_in: dict[int, list[_Assignment]],
        todo: list[_Assignment],
        steps: list[_Step],
    ) -> list[tuple[_Assignment, int, datetime]]:
        """One student session's steps; returns the submissions in it."""
        rng, student = self._rng, session.user_id
        n_pages = rng.randint(*self.config.pages_per_session)
        slots: list[_Assignment | None] = [None] * n_pages
        for a in todo:
            slots.insert(rng.randint(0, len(slots)), a)
        main = todo[0].course if todo else rng.choice(courses)
        t = session.start
        steps.append(self._step(t, "login", session))
        out = []
        for slot in slots:
            t += self._gap()
            if slot is not None:
                asset = Asset("assignment", slot.course.course["id"], id=slot.key)
                steps.append(self._step(t, "page", session, asset=asset, assignment=slot))
                t += self._gap()
                steps.append(self._step(t, "submit", session, assignment=slot, student=student))
                out.append((slot, student, t))
                continue
            course = main if rng.random() < 0.8 else rng.choice(courses)
            cid = course.course["id"]
            visible = [a for a in set_in.get(cid, ()) if a.created < t]
            roll = rng.random()
            if visible and roll < 0.35:
                a = rng.choice(visible)
                steps.append(
                    self._step(t, "page", session, asset=Asset("assignment", cid, id=a.key), assignment=a)
                )
            elif course.files and roll < 0.55:
                file_id, name = rng.choice(course.files)
                steps.append(self._step(t, "page", session, asset=Asset("file", cid, id=file_id, name=name)))
            else:
                page = rng.choice(_COURSE_PAGES)
                steps.append(self._step(t, "page", session, asset=Asset("course", cid, subtype=page)))
        steps.append(self._step(t + self._gap(), "logout", session))
        return out

    # --- running -----------------------------------------------------------------------------

    def _execute(
        self,
        steps: list[_Step],
        clock: Clock,
        started: datetime,
        deadline: datetime | None,
        stop: threading.Event | None,
    ) -> None:
        for step in steps:
            if step.session.record is None and (step.kind != "login" or step.at < started):
                continue  # a session that began before the run (wall clock) is not played
            if deadline is not None and step.at > deadline:
                clock.wait_until(deadline, stop)
                break
            if not clock.wait_until(step.at, stop):
                break
            self._do(step)

    def _day(self, at: datetime) -> str:
        return at.astimezone(self.tz).date().isoformat()

    def _do(self, step: _Step) -> None:
        s, at = step.session, step.at
        if step.kind == "login":
            s.record = SessionRecord(
                s.user_id, self._sis.get(s.user_id), s.role, s.sid, self._day(at), event_time(at)
            )
            self.truth.sessions.append(s.record)
            s.record.events += 1
            if self.events is not None:
                self.events.logged_in(s.user_id, at=at, session_id=s.sid)
            return
        record = s.record
        assert record is not None
        if step.kind == "logout":
            self._logout(s, at)
        elif step.kind == "page":
            asset = step.asset
            assert asset is not None
            if step.assignment is not None:
                if step.assignment.obj is None:
                    return  # not created (its session was before the run)
                asset = Asset("assignment", asset.course_id, id=step.assignment.obj["id"])
            record.events += 1
            record.page_views += 1
            if self.events is not None:
                self.events.asset_accessed(s.user_id, asset, at=at, session_id=s.sid)
        elif step.kind == "create":
            self._create(step)
        elif step.kind == "submit":
            self._submit(step)
        elif step.kind == "grade":
            self._grade(step)

    def _logout(self, s: _Session, at: datetime) -> None:
        if s.record is None or s.closed:
            return
        s.closed = True
        s.record.end = event_time(at)
        s.record.events += 1
        if self.events is not None:
            self.events.logged_out(s.user_id, at=at, session_id=s.sid)

    def _close_open(self, steps: list[_Step], clock: Clock) -> None:
        """Wall clock: sessions still open when time is up log out now."""
        seen: set[int] = set()
        for step in steps:
            s = step.session
            if id(s) in seen:
                continue
            seen.add(id(s))
            if s.record is not None and not s.closed:
                self._logout(s, clock.now())

    def _create(self, step: _Step) -> None:
        a, s = step.assignment, step.session
        assert a is not None
        course = a.course.course
        with acting(a.course.teacher, at=step.at, session_id=s.sid):
            a.obj = self.store.create_assignment(
                course["id"],
                {
                    "assignment": {
                        "name": a.title,
                        "due_at": _store_time(a.due),
                        "points_possible": a.points,
                        "published": True,
                    }
                },
                at=_store_time(step.at),
            )
        self.truth.assignments.append(
            AssignmentRecord(
                a.obj["id"],
                course["id"],
                course["sis_course_id"],
                a.title,
                a.obj["created_at"],
                a.obj["due_at"],
                a.points,
            )
        )

    def _submit(self, step: _Step) -> None:
        a, s, student = step.assignment, step.session, step.student
        assert a is not None and student is not None and s.record is not None
        if a.obj is None:
            return
        course = a.course.course
        with acting(student, at=step.at, session_id=s.sid):
            sub = self.store.submit(course["id"], a.obj["id"], student, at=_store_time(step.at))
        self._submitted.add((a.obj["id"], student))
        s.record.submissions += 1
        self.truth.submissions.append(
            SubmissionRecord(
                a.obj["id"],
                course["id"],
                course["sis_course_id"],
                student,
                self._sis.get(student),
                a.obj["due_at"],
                "late" if sub["late"] else "on_time",
                self._day(step.at),
                sub["submitted_at"],
                sub["attempt"],
            )
        )

    def _grade(self, step: _Step) -> None:
        a, s, student = step.assignment, step.session, step.student
        assert a is not None and student is not None and s.record is not None
        if a.obj is None:
            return
        missing = step.score is None
        if missing == ((a.obj["id"], student) in self._submitted):
            return  # the submission it grades did not happen (wall clock), or it did after all
        course = a.course.course
        params: dict[str, Any] = {"posted_grade": 0 if missing else step.score}
        if missing:
            params["late_policy_status"] = "missing"
        with acting(s.user_id, at=step.at, session_id=s.sid):
            sub = self.store.grade(
                course["id"], a.obj["id"], student, {"submission": params}, at=_store_time(step.at)
            )
        s.record.grades += 1
        self.truth.grades.append(
            GradeRecord(
                a.obj["id"],
                course["id"],
                course["sis_course_id"],
                student,
                self._sis.get(student),
                s.user_id,
                self._sis.get(s.user_id),
                sub["score"],
                sub["grade"],
                sub["graded_at"],
                self._day(step.at),
                missing,
            )
        )

    def _record_missing(self, end: datetime) -> None:
        """Work due before ``end`` that never came in (whether marked or not)."""
        for a in self._iter_created():
            assert a.obj is not None
            if a.due > end:
                continue
            for student in a.course.students:
                if (a.obj["id"], student) in self._submitted:
                    continue
                course = a.course.course
                self.truth.submissions.append(
                    SubmissionRecord(
                        a.obj["id"],
                        course["id"],
                        course["sis_course_id"],
                        student,
                        self._sis.get(student),
                        a.obj["due_at"],
                        "missing",
                        self._day(a.due),
                    )
                )

    def _iter_created(self) -> Iterator[_Assignment]:
        return (a for a in self._assignments if a.obj is not None)
