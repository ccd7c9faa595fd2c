"""Sessions and time on task from a user's learning activity (pure functions, no Kafka).

A **session** is a run of one user's activity events in which no two consecutive events are more
than ``gap_ms`` apart (30 minutes by default, a common LMS analytics convention). **Time on task**
is the time from each event to the next event of its session; the last event of a session adds
its own measured duration when the LMS sent one (``durationMs``), nothing otherwise, since when
the user stopped is not known. Each event's time goes to the event's course (``None``: outside a
course, such as signing in) and to the local day the event happened on (``tz``).

Figures per (course, day) and per day in total (``course=ALL``): seconds on task, events, sessions
that touched it, first and last activity. Computing them again from the same events gives the same
figures whatever order the events came in: a replay changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo

__all__ = ["ALL", "DayFigures", "Hit", "daily_figures", "sessions"]

#: The course key of a user's daily total over every course (and no course).
ALL = "*"


@dataclass(frozen=True, order=True)
class Hit:
    """One activity event, as the engagement state keeps it."""

    at_ms: int
    event_id: str
    course: str | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class DayFigures:
    seconds: float
    events: int
    sessions: int
    first_ms: int
    last_ms: int


def sessions(hits: Iterable[Hit], gap_ms: int) -> list[list[Hit]]:
    """The user's sessions, each a time-ordered list of hits."""
    out: list[list[Hit]] = []
    for hit in sorted(hits):
        if out and hit.at_ms - out[-1][-1].at_ms <= gap_ms:
            out[-1].append(hit)
        else:
            out.append([hit])
    return out


def local_day(at_ms: int, tz: tzinfo) -> date:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(tz).date()


def daily_figures(hits: Iterable[Hit], gap_ms: int, tz: tzinfo) -> dict[tuple[str, date], DayFigures]:
    """(course or ``ALL``, local day) -> figures; a course of ``None`` appears only in ``ALL``."""
    seconds: dict[tuple[str, date], float] = {}
    events: dict[tuple[str, date], int] = {}
    touched: dict[tuple[str, date], set[int]] = {}
    first: dict[tuple[str, date], int] = {}
    last: dict[tuple[str, date], int] = {}
    for number, run in enumerate(sessions(hits, gap_ms)):
        for i, hit in enumerate(run):
            ends = i + 1 == len(run)
            spent_ms = max(0, hit.duration_ms or 0) if ends else run[i + 1].at_ms - hit.at_ms
            day = local_day(hit.at_ms, tz)
            for course in (ALL, hit.course) if hit.course is not None else (ALL,):
                k = (course, day)
                seconds[k] = seconds.get(k, 0.0) + spent_ms / 1000
                events[k] = events.get(k, 0) + 1
                touched.setdefault(k, set()).add(number)
                first[k] = min(first.get(k, hit.at_ms), hit.at_ms)
                last[k] = max(last.get(k, hit.at_ms), hit.at_ms)
    return {
        k: DayFigures(round(seconds[k], 3), events[k], len(touched[k]), first[k], last[k]) for k in seconds
    }
