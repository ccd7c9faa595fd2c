"""Gradebook records: categories, line items and results as OneRoster 1.2 JSON."""

from __future__ import annotations

import functools
import random
from datetime import date, timedelta

from simulators.district.records import Json, Weighted

__all__ = [
    "CATEGORIES",
    "CATEGORY_DRAW",
    "GUARDIAN_ROLE_DRAW",
    "SCORE_STATUSES",
    "add_days",
    "item_title",
    "line_item_record",
    "result_record",
]

#: District-wide categories: (title, weight in the final grade, share of line items).
CATEGORIES = (
    ("Homework", 0.20, 35),
    ("Quizzes", 0.15, 25),
    ("Tests", 0.35, 20),
    ("Projects", 0.20, 12),
    ("Participation", 0.10, 8),
)
#: OneRoster 1.2 scoreStatus values (with spaces, as the 1.2 binding spells them).
SCORE_STATUSES = ("fully graded", "submitted", "partially graded", "not submitted", "exempt")
_STATUS_DRAW = Weighted(SCORE_STATUSES, (72, 8, 4, 11, 5))
#: Draws a category index with each category's share of line items.
CATEGORY_DRAW = Weighted(range(len(CATEGORIES)), [share for _, _, share in CATEGORIES])
#: Draws the role of a new guardian.
GUARDIAN_ROLE_DRAW = Weighted(("guardian", "parent", "relative"), (70, 24, 6))
_COMMENTS = (
    "Great work!",
    "Please see me about revisions.",
    "Missing the last section.",
    "Excellent effort on this one.",
    "Late, but well done.",
    "Show your work next time.",
    "Resubmission accepted.",
)


def item_title(category: str, n: int) -> str:
    """A line item title that fits its category: ``Unit 3 Quiz``, ``Homework 7``, ..."""
    titles = {
        "Homework": f"Homework {n}",
        "Quizzes": f"Unit {n} Quiz",
        "Tests": f"Chapter {n} Test",
        "Projects": f"Project {n}",
        "Participation": f"Participation - Week {n}",
    }
    return titles.get(category, f"{category} {n}")


@functools.cache
def add_days(day: str, n: int) -> str:
    """``YYYY-MM-DD`` plus ``n`` calendar days."""
    return (date.fromisoformat(day) + timedelta(days=n)).isoformat()


def line_item_record(
    *,
    sourced_id: str,
    stamp: str,
    title: str,
    course_title: str,
    assigned: str,
    due: str,
    class_ref: Json,
    school_ref: Json,
    category_ref: Json,
    grading_period_ref: Json,
    term_ref: Json,
) -> Json:
    """A line item worth 0-100 points; ``assigned``/``due`` are instants ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return {
        "sourcedId": sourced_id,
        "status": "active",
        "dateLastModified": stamp,
        "title": title,
        "description": f"{title} for {course_title}.",
        "assignDate": assigned,
        "dueDate": due,
        "class": class_ref,
        "school": school_ref,
        "category": category_ref,
        "gradingPeriod": grading_period_ref,
        "academicSession": term_ref,
        "resultValueMin": 0.0,
        "resultValueMax": 100.0,
    }


def result_record(
    rng: random.Random,
    *,
    sourced_id: str,
    stamp: str,
    line_item_ref: Json,
    student_ref: Json,
    class_ref: Json,
    score_date: str,
) -> Json:
    """One student's result: a random status, a score when graded (0 when not submitted), flags."""
    status = _STATUS_DRAW.draw(rng)
    record: Json = {
        "sourcedId": sourced_id,
        "status": "active",
        "dateLastModified": stamp,
        "lineItem": line_item_ref,
        "student": student_ref,
        "class": class_ref,
        "scoreStatus": status,
    }
    if status in ("fully graded", "partially graded"):
        record["score"] = round(min(100.0, max(0.0, rng.gauss(84.0, 11.0))), 1)
    elif status == "not submitted":
        record["score"] = 0.0
    record["scoreDate"] = score_date
    if rng.random() < 0.12:
        record["comment"] = rng.choice(_COMMENTS)
    record["late"] = status not in ("not submitted", "exempt") and rng.random() < 0.08
    record["missing"] = status == "not submitted"
    return record
