"""Small shared pieces of OneRoster 1.2 JSON: sourcedIds, GUIDRefs, instants, the school calendar.

Everything random takes the caller's ``random.Random``, so output depends on the seed alone.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from connectors.oneroster.models import GRADEBOOK_PATH, ROSTERING_PATH

__all__ = [
    "COLLECTIONS",
    "GRADEBOOK_BASE",
    "ROSTERING_BASE",
    "Calendar",
    "DistrictContext",
    "Json",
    "Session",
    "Weighted",
    "format_instant",
    "guid_ref",
    "instant_ms",
    "new_id",
    "uuid4_text",
]

#: A OneRoster JSON object as served (a plain dict).
Json = dict[str, Any]

ROSTERING_BASE = ROSTERING_PATH
GRADEBOOK_BASE = GRADEBOOK_PATH

#: Collection names, in dependency order (referenced before referencing).
COLLECTIONS = (
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "users",
    "enrollments",
    "demographics",
    "categories",
    "lineItems",
    "results",
)

# GUIDRef type -> the URL path of its collection.
_PATHS = {
    "org": f"{ROSTERING_BASE}/orgs",
    "academicSession": f"{ROSTERING_BASE}/academicSessions",
    "course": f"{ROSTERING_BASE}/courses",
    "class": f"{ROSTERING_BASE}/classes",
    "user": f"{ROSTERING_BASE}/users",
    "enrollment": f"{ROSTERING_BASE}/enrollments",
    "demographics": f"{ROSTERING_BASE}/demographics",
    "category": f"{GRADEBOOK_BASE}/categories",
    "lineItem": f"{GRADEBOOK_BASE}/lineItems",
    "result": f"{GRADEBOOK_BASE}/results",
}

_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_BITS = (4 << 76) | (0x8000 << 48)


def uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))``, about three times faster (it runs millions of times)."""
    h = ((bits & _VERSION_MASK) | _VERSION_BITS).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id(rng: random.Random) -> str:
    """A random version-4 UUID string drawn from ``rng`` (deterministic for a seeded ``rng``)."""
    return uuid4_text(rng.getrandbits(128))


def guid_ref(kind: str, sourced_id: str) -> Json:
    """A GUIDRef to the record ``sourced_id`` of GUIDRef type ``kind`` (``org``, ``user``, ...)."""
    return {"href": f"{_PATHS[kind]}/{sourced_id}", "sourcedId": sourced_id, "type": kind}


def instant_ms(text: str) -> int:
    """Milliseconds since the epoch of ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (or any ISO 8601 UTC instant)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def format_instant(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC) of epoch milliseconds: one format, so strings sort as times."""
    value = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


_T = TypeVar("_T")


class Weighted(Generic[_T]):
    """Items with weights, drawn from faster than ``rng.choices`` (cumulative weights computed
    once, not on every draw)."""

    def __init__(self, items: Sequence[_T], weights: Sequence[float]) -> None:
        if len(items) != len(weights) or not items:
            raise ValueError("Weighted needs as many weights as items, and at least one item")
        self._items = tuple(items)
        self._cum = tuple(itertools.accumulate(weights))
        self._total = self._cum[-1]

    def draw(self, rng: random.Random) -> _T:
        """One item, with probability proportional to its weight."""
        return self._items[bisect.bisect(self._cum, rng.random() * self._total)]


@dataclass(frozen=True)
class Session:
    """An academic session's dates (ISO ``YYYY-MM-DD``) and title."""

    title: str
    kind: str  # schoolYear | term | gradingPeriod
    start: str
    end: str


@dataclass(frozen=True)
class Calendar:
    """The school year ``school_year - 1``/``school_year``: two terms, each of two grading periods.

    The year starts on the Monday on or after 14 August and ends on the second Friday of June;
    Fall ends on the Friday on or before 15 January and Spring starts the Monday after.
    """

    year: Session
    terms: tuple[Session, Session]
    grading_periods: tuple[Session, Session, Session, Session]

    @classmethod
    def for_school_year(cls, school_year: int) -> Calendar:
        first = _on_or_after(date(school_year - 1, 8, 14), 0)
        last = _on_or_after(date(school_year, 6, 1), 4) + timedelta(days=7)
        fall_end = _on_or_before(date(school_year, 1, 15), 4)
        spring_start = fall_end + timedelta(days=3)
        q1_end = _on_or_before(first + (fall_end - first) / 2, 4)
        q3_end = _on_or_before(spring_start + (last - spring_start) / 2, 4)
        label = f"{school_year - 1}-{school_year}"
        return cls(
            year=Session(label, "schoolYear", first.isoformat(), last.isoformat()),
            terms=(
                Session(f"Fall {school_year - 1}", "term", first.isoformat(), fall_end.isoformat()),
                Session(f"Spring {school_year}", "term", spring_start.isoformat(), last.isoformat()),
            ),
            grading_periods=(
                Session(f"Quarter 1 {label}", "gradingPeriod", first.isoformat(), q1_end.isoformat()),
                Session(
                    f"Quarter 2 {label}",
                    "gradingPeriod",
                    (q1_end + timedelta(days=3)).isoformat(),
                    fall_end.isoformat(),
                ),
                Session(f"Quarter 3 {label}", "gradingPeriod", spring_start.isoformat(), q3_end.isoformat()),
                Session(
                    f"Quarter 4 {label}",
                    "gradingPeriod",
                    (q3_end + timedelta(days=3)).isoformat(),
                    last.isoformat(),
                ),
            ),
        )

    @staticmethod
    def school_days(start: str, end: str) -> list[str]:
        """The weekdays from ``start`` to ``end`` inclusive, as ``YYYY-MM-DD``."""
        day, stop = date.fromisoformat(start), date.fromisoformat(end)
        days = []
        while day <= stop:
            if day.weekday() < 5:
                days.append(day.isoformat())
            day += timedelta(days=1)
        return days


def _on_or_after(day: date, weekday: int) -> date:
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def _on_or_before(day: date, weekday: int) -> date:
    return day - timedelta(days=(day.weekday() - weekday) % 7)


@dataclass(frozen=True)
class DistrictContext:
    """What a generated district's records share, for building more of them later.

    Attributes:
        domain: the district's email domain.
        district_id: sourcedId of the district org.
        calendar: the school year's dates.
        year_id: sourcedId of the schoolYear session.
        term_ids: sourcedIds of the Fall and Spring terms.
        grading_period_ids: sourcedIds of the four grading periods, in date order.
        category_ids: sourcedIds of the gradebook categories.
        school_levels: school sourcedId -> ``elementary`` | ``middle`` | ``high``.
        next_numbers: the next free district numbers (``student``, ``staff``, ``guardian``,
            ``state``), so later records do not reuse an identifier.
    """

    domain: str
    district_id: str
    calendar: Calendar
    year_id: str
    term_ids: tuple[str, str]
    grading_period_ids: tuple[str, str, str, str]
    category_ids: tuple[str, ...]
    school_levels: dict[str, str]
    next_numbers: dict[str, int]

    def term_dates(self, term_ids: list[str]) -> tuple[str, str]:
        """First and last day covered by the given terms (the whole year when none is known)."""
        spans = [
            (session.start, session.end)
            for sid, session in zip(self.term_ids, self.calendar.terms, strict=True)
            if sid in term_ids
        ]
        if not spans:
            return self.calendar.year.start, self.calendar.year.end
        return min(s for s, _ in spans), max(e for _, e in spans)

    def grading_periods_of(self, term_ids: list[str]) -> list[tuple[str, Session]]:
        """(sourcedId, session) of the grading periods inside the given terms (all when none match)."""
        pairs = list(zip(self.grading_period_ids, self.calendar.grading_periods, strict=True))
        inside = [(gid, gp) for i, (gid, gp) in enumerate(pairs) if self.term_ids[i // 2] in term_ids]
        return inside or pairs
