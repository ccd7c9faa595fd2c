"""The work tracker's join and status rules as plain functions (no Kafka)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from streams.analytics.work import WorkBook, status_of

DUE = 1_000_000


@pytest.mark.parametrize(
    ("excused", "submitted", "due", "now", "want"),
    [
        (True, None, DUE, DUE + 1, "excused"),
        (True, DUE + 5, DUE, DUE + 9, "excused"),
        (None, DUE, DUE, DUE + 1, "on_time"),  # exactly at the due time
        (False, DUE + 1, DUE, DUE + 9, "late"),  # a millisecond after
        (None, 5, None, DUE, "on_time"),  # no due date: anything handed in is on time
        (None, None, DUE, DUE, "pending"),  # the due time itself has not passed
        (None, None, DUE, DUE + 1, "missing"),
        (None, None, None, DUE * 9, "pending"),
    ],
)
def test_status_rules(
    excused: bool | None, submitted: int | None, due: int | None, now: int, want: str
) -> None:
    assert status_of(excused=excused, submitted_ms=submitted, due_ms=due, now_ms=now) == want


def _enrollment(user: str, klass: str = "K", role: str = "student", **kw: Any) -> dict[str, Any]:
    status = kw.pop("status", "active")
    return {"user": {"sourcedId": user}, "class": {"sourcedId": klass}, "school": {"sourcedId": "S"},
            "role": role, "status": status, "beginDate": None, "endDate": None, **kw}  # fmt: skip


def _assignment(aid: str, due: datetime | None, course: str = "900", **kw: Any) -> dict[str, Any]:
    return {"assignmentId": aid, "courseId": course, "sisCourseId": None, "title": aid, "dueAt": due,
            "pointsPossible": 1.0, "workflowState": "published", "published": True, **kw}  # fmt: skip


def test_changes_touch_exactly_the_assignments_they_affect() -> None:
    book = WorkBook(UTC)
    assert book.put_assignment("A", _assignment("A", None)) == {"A"}
    assert book.put_assignment("B", _assignment("B", None, course="901")) == {"B"}
    assert book.put_enrollment("e1", _enrollment("u1")) == set()  # class K has no LMS course yet
    assert book.put_result({"targetType": "course", "targetSisId": "K", "lmsId": "900"}) == {"A"}
    assert book.put_result({"targetType": "course", "targetSisId": "K", "lmsId": "900"}) == set()  # known
    assert book.put_enrollment("e2", _enrollment("u2")) == {"A"}
    assert book.put_result({"targetType": "user", "targetSisId": "u2", "lmsId": "7"}) == {"A"}
    assert book.put_result({"targetType": "user", "targetSisId": "u2", "lmsId": None}) == set()  # id kept
    assert book.user_lms["u2"] == "7"
    assert book.put_submission("s", {"submissionId": "s", "assignmentId": "A", "userId": "7"}) == {"A"}
    assert book.put_enrollment("e2", None) == {"A"}


def test_who_owes_work_teachers_inactive_and_dated_enrollments() -> None:
    due = datetime(2026, 9, 10, 23, 0, tzinfo=UTC)
    book = WorkBook(UTC)
    book.put_result({"targetType": "course", "targetSisId": "K", "lmsId": "900"})
    book.put_enrollment("e1", _enrollment("u1"))
    book.put_enrollment("e2", _enrollment("u2", role="teacher"))
    book.put_enrollment("e3", _enrollment("u3", status="tobedeleted"))
    book.put_enrollment("e4", _enrollment("u4", endDate=date(2026, 9, 10)))
    book.put_enrollment("e5", _enrollment("u5", beginDate=date(2026, 9, 11)))
    book.put_enrollment("e6", _enrollment("u1"))  # a second enrollment of u1: one row
    book.put_assignment("A", _assignment("A", due))
    book.put_assignment("U", _assignment("U", due, workflowState="unpublished", published=False))
    rows = book.rows("A", int(due.timestamp() * 1000) + 1)
    assert sorted(rows) == ["A|u1", "A|u4"]
    assert {r["status"] for r in rows.values()} == {"missing"}
    assert book.rows("U", 0) == {}


def test_the_latest_submission_decides_and_a_missing_lms_id_falls_back_to_the_sis_id() -> None:
    due = datetime(2026, 9, 10, 23, 0, tzinfo=UTC)
    book = WorkBook(UTC)
    book.put_result({"targetType": "course", "targetSisId": "K", "lmsId": "900"})
    book.put_result({"targetType": "user", "targetSisId": "u1", "lmsId": "7"})
    book.put_enrollment("e1", _enrollment("u1"))
    book.put_enrollment("e2", _enrollment("u2"))
    book.put_assignment("A", _assignment("A", due))
    early = datetime(2026, 9, 10, 22, 0, tzinfo=UTC)
    late = datetime(2026, 9, 11, 1, 0, tzinfo=UTC)
    book.put_submission(
        "s1", {"submissionId": "s1", "assignmentId": "A", "userId": "7", "submittedAt": early}
    )
    book.put_submission("s2", {"submissionId": "s2", "assignmentId": "A", "userId": "7", "submittedAt": late})
    book.put_submission("s3", {"submissionId": "s3", "assignmentId": "A", "userId": "L", "sisUserId": "u2",
                               "submittedAt": early})  # fmt: skip
    rows = book.rows("A", 0)
    assert (rows["A|u1"]["submissionId"], rows["A|u1"]["status"]) == ("s2", "late")
    assert (rows["A|u2"]["submissionId"], rows["A|u2"]["status"], rows["A|u2"]["userId"]) == (
        "s3",
        "on_time",
        None,
    )
