"""A small provisioned school in a CanvasStore, as the provisioning sink would leave it."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.lms.store import CanvasStore, Obj


@dataclass
class School:
    store: CanvasStore
    account: Obj
    courses: list[Obj] = field(default_factory=list)
    teachers: list[Obj] = field(default_factory=list)
    students: list[Obj] = field(default_factory=list)


def _user(store: CanvasStore, sis_id: str) -> Obj:
    return store.create_user(
        1,
        {
            "user": {"name": f"Person {sis_id}"},
            "pseudonym": {"unique_id": sis_id.lower(), "sis_user_id": sis_id},
        },
    )


def _enroll(store: CanvasStore, course: Obj, user: Obj, kind: str) -> Obj:
    params = {"enrollment": {"user_id": user["id"], "type": kind, "enrollment_state": "active"}}
    return store.enroll(course_ref=course["id"], section_ref=None, params=params)


def school(
    store: CanvasStore | None = None, *, courses: int = 2, students: int = 6, per_student: int | None = None
) -> School:
    """``courses`` courses, each with its own teacher and every student enrolled (or, with
    ``per_student``, each student in that many courses, in turn)."""
    store = store or CanvasStore()
    account = store.create_sub_account(1, {"name": "High School", "sis_account_id": "org-hs"})
    out = School(store, account)
    for c in range(courses):
        course = store.create_course(
            account["id"], {"course": {"name": f"Course {c}", "sis_course_id": f"course-{c}"}, "offer": True}
        )
        teacher = _user(store, f"T{c}")
        _enroll(store, course, teacher, "TeacherEnrollment")
        out.courses.append(course)
        out.teachers.append(teacher)
    for s in range(students):
        student = _user(store, f"S{s}")
        taken = out.courses
        if per_student is not None:
            taken = [out.courses[(s * per_student + k) % courses] for k in range(per_student)]
        for course in taken:
            _enroll(store, course, student, "StudentEnrollment")
        out.students.append(student)
    return out
