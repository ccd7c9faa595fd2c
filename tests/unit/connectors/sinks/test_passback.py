"""The passback's decisions, with fake SIS and LMS clients: what is written where, what is
skipped and why, and that nothing is written twice for nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from connectors.sinks.oneroster_gradebook.passback import Passback


class FakeSis:
    def __init__(self) -> None:
        self.puts: list[tuple[str, str, dict[str, Any]]] = []
        self.classes = {"class-1": {"sourcedId": "class-1", "school": {"sourcedId": "school-1"}}}

    def put_one(self, entity: Any, sourced_id: str, record: dict[str, Any]) -> int:
        self.puts.append((entity.name, sourced_id, record))
        return 200

    def get_one(self, entity: Any, sourced_id: str) -> dict[str, Any]:
        return self.classes[sourced_id]


class FakeLms:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.data: dict[str, Any] = {
            "/courses/10": {"id": 10, "sis_course_id": "class-1"},
            "/courses/11": {"id": 11, "sis_course_id": None},
            "/users/7": {"id": 7, "sis_user_id": "stu-7"},
            "/users/8": {"id": 8, "sis_user_id": None},
            "/courses/10/assignments/5": {
                "id": 5,
                "name": "Essay",
                "due_at": "2024-03-08T23:59:00Z",
                "points_possible": 20,
            },
        }

    def call(self, method: str, path: str, *, missing_ok: bool = False) -> Any:
        self.calls.append(path)
        return self.data.get(path)


def grade(**over: Any) -> dict[str, Any]:
    base = {
        "assignmentId": "5",
        "courseId": "10",
        "userId": "7",
        "sisUserId": None,
        "score": 15.0,
        "grade": "15",
        "gradedAt": datetime(2024, 3, 9, 12, tzinfo=UTC),
    }
    return base | over


def test_a_grade_writes_its_line_item_once_and_its_result() -> None:
    sis, lms = FakeSis(), FakeLms()
    p = Passback(sis, lms, prefix="t")
    out = p.write_grade(grade())
    assert out.status == "written" and out.result_id == "t-5-7" and out.student_id == "stu-7"
    kinds = [(name, sid) for name, sid, _ in sis.puts]
    assert kinds == [("categories", "lms-assignments"), ("lineItems", "t-5"), ("results", "t-5-7")]
    item = sis.puts[1][2]
    assert item["class"]["sourcedId"] == "class-1" and item["school"]["sourcedId"] == "school-1"
    assert (
        item["title"] == "Essay"
        and item["resultValueMax"] == 20.0
        and item["dueDate"] == "2024-03-08T23:59:00.000Z"
    )
    result = sis.puts[2][2]
    assert result["score"] == 15.0 and result["scoreStatus"] == "fully graded"
    assert result["scoreDate"] == "2024-03-09T12:00:00.000Z"
    # a second grade on the same assignment, a moment later: only its result (the assign date
    # the first one chose stands); the LMS is not asked again
    time.sleep(0.01)
    calls = len(lms.calls)
    p.write_grade(grade(score=18.0))
    assert [name for name, _, _ in sis.puts[3:]] == ["results"] and len(lms.calls) == calls


def test_a_removed_grade_is_not_submitted() -> None:
    sis = FakeSis()
    out = Passback(sis, FakeLms()).write_grade(grade(score=None, grade=None))
    assert out.score_status == "not submitted" and "score" not in sis.puts[-1][2]


def test_what_has_no_place_in_the_sis_is_skipped_with_the_reason() -> None:
    sis = FakeSis()
    p = Passback(sis, FakeLms())
    assert (p.write_grade(grade(courseId="11")).status, p.write_grade(grade(courseId="11")).reason) == (
        "skipped",
        "no_sis_class",
    )
    assert p.write_grade(grade(userId="8")).reason == "no_sis_student"
    assert p.write_grade(grade(assignmentId="99")).reason == "assignment_unknown"
    assert p.write_grade(grade(courseId=None, assignmentId="98")).reason == "no_course"
    assert sis.puts == []


def test_an_assignment_change_rewrites_its_line_item_only_when_it_changed() -> None:
    sis = FakeSis()
    p = Passback(sis, FakeLms())
    record = {
        "assignmentId": "5",
        "courseId": "10",
        "title": "Essay",
        "dueAt": datetime(2024, 3, 8, 23, 59, tzinfo=UTC),
        "unlockAt": None,
        "pointsPossible": 20.0,
        "meta": {"sourceChangedAt": datetime(2024, 3, 1, tzinfo=UTC)},
    }
    p.write_assignment(record)
    p.write_assignment(record)  # a redelivery: nothing
    extension = {
        "dueAt": datetime(2024, 3, 15, 23, 59, tzinfo=UTC),
        "meta": {"sourceChangedAt": datetime(2024, 3, 7, tzinfo=UTC)},
    }
    p.write_assignment(record | extension)
    items = [r for name, _, r in sis.puts if name == "lineItems"]
    assert [i["dueDate"] for i in items] == ["2024-03-08T23:59:00.000Z", "2024-03-15T23:59:00.000Z"]
    assert [i["assignDate"] for i in items] == ["2024-03-01T00:00:00.000Z"] * 2  # the update kept it
