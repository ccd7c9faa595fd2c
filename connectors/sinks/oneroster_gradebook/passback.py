"""One LMS grade or assignment written to the SIS gradebook (OneRoster 1.2 ``PUT``).

- An LMS **assignment** becomes a OneRoster line item ``<prefix>-<assignment id>`` in the class
  its course was provisioned from (the course's ``sis_course_id``), in that class's school, in
  the passback category (made once), with the title, the assign and due dates and the points.
- An LMS **grade** becomes a OneRoster result ``<prefix>-<assignment id>-<student id>`` on that
  line item for the student (the LMS user's SIS id): the score, ``scoreStatus`` ``fully graded``
  (``not submitted`` when the grade was removed), and the time it was graded.

Both are ``PUT`` with ids derived from the LMS ids, so writing one again changes nothing: a
redelivery or a replay is harmless. What the grade needs and the event does not carry (the
course's SIS id, the student's SIS id, the assignment's title and dates) is asked from the LMS
once and kept.

A course with no SIS id (a teacher's sandbox) or a student with none has nowhere to go in the
SIS: the grade is ``skipped`` with that reason, never an error.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from connectors.oneroster.models import entity
from streams.errors import SkippableError
from streams.lms.events import parse_time

__all__ = ["LmsLookup", "Passback", "PassbackOutcome", "SisGradebook"]

log = logging.getLogger(__name__)

LINE_ITEMS = entity("lineItems")
RESULTS = entity("results")
CATEGORIES = entity("categories")
CLASSES = entity("classes")


class SisGradebook(Protocol):
    """The SIS side (``OneRosterClient``)."""

    def put_one(self, entity: Any, sourced_id: str, record: dict[str, Any]) -> int: ...

    def get_one(self, entity: Any, sourced_id: str) -> dict[str, Any]: ...


class LmsLookup(Protocol):
    """The LMS side (``CanvasClient``)."""

    def call(self, method: str, path: str, *, missing_ok: bool = False) -> Any: ...


@dataclass(frozen=True)
class PassbackOutcome:
    status: str  # written | skipped
    reason: str | None = None
    class_id: str | None = None
    student_id: str | None = None
    line_item_id: str | None = None
    result_id: str | None = None
    score_status: str | None = None


class NotInSis(SkippableError):
    reason = "not_in_sis"


def _date(ms: Any) -> str | None:
    """An ISO date (OneRoster's ``assignDate`` and ``dueDate`` are date-times) from a decoded
    timestamp (datetime or ms)."""
    if ms is None:
        return None
    when = ms if isinstance(ms, datetime) else datetime.fromtimestamp(int(ms) / 1000, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Passback:
    """Writes grades and assignments to the SIS; thread-safe caches of what it learnt.

    Args:
        sis: the OneRoster client (with the ``gradebook.createput`` scope).
        lms: the Canvas client (reads courses, users and assignments).
        prefix: the first part of every sourcedId it makes.
        category_id, category_title: the OneRoster category its line items go in.
    """

    def __init__(
        self,
        sis: SisGradebook,
        lms: LmsLookup,
        *,
        prefix: str = "lms",
        category_id: str = "lms-assignments",
        category_title: str = "LMS assignments",
    ) -> None:
        self.sis = sis
        self.lms = lms
        self.prefix = prefix
        self.category_id = category_id
        self.category_title = category_title
        self._lock = threading.Lock()
        self._course_class: dict[str, str | None] = {}
        self._class_school: dict[str, str] = {}
        self._user_sis: dict[str, str | None] = {}
        self._assignments: dict[str, dict[str, Any]] = {}  # assignment id -> the last one seen
        self._written: dict[str, tuple[Any, ...]] = {}  # line item id -> what was written
        self._category_made = False

    # --- what the LMS knows ------------------------------------------------------------------

    def class_of(self, course_id: str) -> str | None:
        with self._lock:
            if course_id in self._course_class:
                return self._course_class[course_id]
        course = self.lms.call("GET", f"/courses/{course_id}", missing_ok=True)
        sis_id = (course or {}).get("sis_course_id") or None
        with self._lock:
            self._course_class[course_id] = sis_id
        return sis_id

    def sis_user(self, user_id: str) -> str | None:
        with self._lock:
            if user_id in self._user_sis:
                return self._user_sis[user_id]
        user = self.lms.call("GET", f"/users/{user_id}", missing_ok=True)
        sis_id = (user or {}).get("sis_user_id") or None
        with self._lock:
            self._user_sis[user_id] = sis_id
        return sis_id

    def assignment(self, assignment_id: str, course_id: str | None) -> dict[str, Any] | None:
        """The assignment as last seen on ``lms.assignments.v1``, or asked from the LMS."""
        with self._lock:
            known = self._assignments.get(assignment_id)
        if known is not None or course_id is None:
            return known
        a = self.lms.call("GET", f"/courses/{course_id}/assignments/{assignment_id}", missing_ok=True)
        if a is None:
            return None
        record = {
            "assignmentId": assignment_id,
            "courseId": course_id,
            "title": a.get("name") or a.get("title") or assignment_id,
            "dueAt": _date(parse_time(a.get("due_at"))),
            "unlockAt": _date(parse_time(a.get("unlock_at"))),
            "createdAt": _date(parse_time(a.get("created_at"))),
            "pointsPossible": a.get("points_possible"),
        }
        with self._lock:
            self._assignments.setdefault(assignment_id, record)
        return record

    def school_of(self, class_id: str) -> str:
        with self._lock:
            if class_id in self._class_school:
                return self._class_school[class_id]
        klass = self.sis.get_one(CLASSES, class_id)
        school = (klass.get("school") or {}).get("sourcedId")
        if not school:
            raise NotInSis(f"class {class_id} names no school")
        with self._lock:
            self._class_school[class_id] = school
        return str(school)

    # --- writes ------------------------------------------------------------------------------

    def line_item_id(self, assignment_id: str) -> str:
        return f"{self.prefix}-{assignment_id}"

    def result_id(self, assignment_id: str, user_id: str) -> str:
        return f"{self.prefix}-{assignment_id}-{user_id}"

    def _category(self) -> None:
        if self._category_made:
            return
        self.sis.put_one(CATEGORIES, self.category_id, {"title": self.category_title, "status": "active"})
        self._category_made = True

    def write_assignment(self, record: dict[str, Any]) -> PassbackOutcome:
        """An assignment from ``lms.assignments.v1``: its line item, written when it changed."""
        aid = str(record["assignmentId"])
        with self._lock:
            before = self._assignments.get(aid) or {}
            self._assignments[aid] = {
                **record,
                "dueAt": _date(record.get("dueAt")),
                "unlockAt": _date(record.get("unlockAt")),
                # the first event's time stands for the assign date; an update does not move it
                "createdAt": before.get("createdAt")
                or _date((record.get("meta") or {}).get("sourceChangedAt")),
                "firstSeen": before.get("firstSeen"),
            }
        class_id = self.class_of(str(record["courseId"]))
        if class_id is None:
            return PassbackOutcome("skipped", "no_sis_class")
        return self._line_item(aid, class_id)

    def _line_item(self, assignment_id: str, class_id: str) -> PassbackOutcome:
        """The assignment's line item, written when what it says changed (or is new to us)."""
        a = self.assignment(assignment_id, None) or {}
        lid = self.line_item_id(assignment_id)
        if not (a.get("unlockAt") or a.get("createdAt")):
            # OneRoster needs an assign date; the first time seen stands for it, once and for all
            with self._lock:
                a.setdefault("firstSeen", _date(datetime.now(UTC)))
        assign = a.get("unlockAt") or a.get("createdAt") or a.get("firstSeen")
        due = a.get("dueAt") or assign
        item = {
            "title": str(a.get("title") or assignment_id),
            "assignDate": assign,
            "dueDate": due,
            "class": {"sourcedId": class_id, "type": "class"},
            "school": {"sourcedId": self.school_of(class_id), "type": "org"},
            "category": {"sourcedId": self.category_id, "type": "category"},
            "resultValueMin": 0.0,
            "resultValueMax": float(a.get("pointsPossible") or 0.0),
            "status": "active",
        }
        signature = tuple(sorted((k, str(v)) for k, v in item.items()))
        with self._lock:
            same = self._written.get(lid) == signature
        if not same:
            self._category()
            self.sis.put_one(LINE_ITEMS, lid, item)
            with self._lock:
                self._written[lid] = signature
        return PassbackOutcome("written", class_id=class_id, line_item_id=lid)

    def write_grade(self, grade: dict[str, Any]) -> PassbackOutcome:
        """A grade from ``lms.grades.v1``: its result (and the line item first, if new)."""
        aid, uid = str(grade["assignmentId"]), str(grade["userId"])
        course = grade.get("courseId")
        if course is None:
            known = self.assignment(aid, None)
            course = known.get("courseId") if known else None
        if course is None:
            return PassbackOutcome("skipped", "no_course")
        class_id = self.class_of(str(course))
        if class_id is None:
            return PassbackOutcome("skipped", "no_sis_class")
        student = grade.get("sisUserId") or self.sis_user(uid)
        if student is None:
            return PassbackOutcome("skipped", "no_sis_student", class_id=class_id)
        if self.assignment(aid, str(course)) is None:
            return PassbackOutcome("skipped", "assignment_unknown", class_id=class_id, student_id=student)
        item = self._line_item(aid, class_id)
        score = grade.get("score")
        status = "fully graded" if score is not None else "not submitted"
        rid = self.result_id(aid, uid)
        result: dict[str, Any] = {
            "lineItem": {"sourcedId": item.line_item_id, "type": "lineItem"},
            "student": {"sourcedId": student, "type": "user"},
            "class": {"sourcedId": class_id, "type": "class"},
            "scoreStatus": status,
            "scoreDate": _date(grade.get("gradedAt")),
            "status": "active",
        }
        if score is not None:
            result["score"] = float(score)
        if grade.get("grade") is not None:
            result["textScore"] = str(grade["grade"])
        self.sis.put_one(RESULTS, rid, result)
        return PassbackOutcome(
            "written",
            class_id=class_id,
            student_id=student,
            line_item_id=item.line_item_id,
            result_id=rid,
            score_status=status,
        )
