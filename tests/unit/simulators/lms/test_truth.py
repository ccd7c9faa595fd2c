"""The LMS simulator's write log: every sync-made change stamped with the wall-clock time, named
by SIS ids, cheaply enough for a district's first load."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from simulators.lms.live_events import LiveEventBuilder
from simulators.lms.store import CanvasStore, Obj
from simulators.lms.truth import WriteLog
from tests.unit.simulators.lms.school import school


class Ticks:
    """A wall clock that says 1000.0, 1001.0, ... (one tick per change stamped)."""

    def __init__(self) -> None:
        self._next = itertools.count(1000)

    def __call__(self) -> float:
        return float(next(self._next))


def _user(store: CanvasStore, sis_id: str | None, login: str) -> Obj:
    pseudonym = {"unique_id": login, **({"sis_user_id": sis_id} if sis_id else {})}
    return store.create_user(1, {"user": {"name": login}, "pseudonym": pseudonym})


def _enroll(store: CanvasStore, user: Obj, *, section: Obj | None = None, course: Obj | None = None) -> Obj:
    params = {
        "enrollment": {"user_id": user["id"], "type": "StudentEnrollment", "enrollment_state": "active"}
    }
    if section is not None:
        return store.enroll(course_ref=None, section_ref=section["id"], params=params)
    assert course is not None
    return store.enroll(course_ref=course["id"], section_ref=None, params=params)


def test_users_and_enrollments_are_keyed_by_sis_ids_with_every_time() -> None:
    store = CanvasStore()
    log = WriteLog(store, clock=Ticks())
    ada = _user(store, "S-1", "ada")  # 1000
    _user(store, None, "nosis")  # no SIS id: not recorded (no tick either)
    store.update_user(ada["id"], {"user": {"name": "Ada L."}})  # 1001
    course = store.create_course(1, {"course": {"name": "Algebra", "sis_course_id": "alg"}})
    section = store.create_section(
        course["id"], {"course_section": {"name": "P1", "sis_section_id": "alg-p1"}}
    )
    enrolled = _enroll(store, ada, section=section)  # 1002
    _enroll(store, ada, section=section)  # 1003: Canvas's idempotent re-enrollment is a write too
    store.end_enrollment(course["id"], enrolled["id"], "conclude")  # 1004
    # a section without a SIS id (Canvas's default section): the course names it
    bare = store.create_course(1, {"course": {"name": "Art", "sis_course_id": "art"}})
    _enroll(store, ada, course=bare)  # 1005
    # neither has one: not recorded
    _enroll(store, ada, course=store.create_course(1, {"course": {"name": "Club"}}))

    assert log.as_json() == {
        "user|S-1": [1000.0, 1001.0],
        "enrollment|S-1|alg-p1": [1002.0, 1003.0, 1004.0],
        "enrollment|S-1|art": [1005.0],
    }
    assert log.times("enrollment|S-1|art") == [1005.0] and log.times("user|nobody") == []
    assert log.grades() == [] and log.errors == 0


def test_removing_a_user_times_the_user_and_each_enrollment() -> None:
    s = school(courses=2, students=1)
    log = WriteLog(s.store, clock=Ticks())
    s.store.remove_user(1, s.students[0]["id"])
    assert log.as_json() == {
        "enrollment|S0|course-0": [1000.0],
        "enrollment|S0|course-1": [1001.0],
        "user|S0": [1002.0],
    }


def test_a_changed_sis_id_names_later_changes() -> None:
    store = CanvasStore()
    log = WriteLog(store, clock=Ticks())
    user = _user(store, "S-1", "ada")
    login = store.logins_of(user["id"])[0]
    store.update_login(login["id"], {"sis_user_id": "S-1b"})  # no event of its own
    store.update_user(user["id"], {"user": {"name": "Ada"}})
    assert log.as_json() == {"user|S-1": [1000.0], "user|S-1b": [1001.0]}


def test_admins_granted_and_removed_are_told_and_logged() -> None:
    store = CanvasStore()
    told: list[str] = []
    store.listeners.append(lambda name, obj: told.append(name))
    log = WriteLog(store, clock=Ticks())
    user = _user(store, "T-1", "tess")
    school_account = store.create_sub_account(1, {"name": "HS", "sis_account_id": "org-hs"})
    unnamed = store.create_sub_account(1, {"name": "Office"})
    store.add_admin(1, {"user_id": user["id"]})  # 1001
    store.add_admin(school_account["id"], {"user_id": user["id"]})  # 1002
    store.add_admin(school_account["id"], {"user_id": user["id"]})  # 1003: granted again, the same admin
    store.remove_admin(school_account["id"], user["id"], None, None)  # 1004
    store.add_admin(unnamed["id"], {"user_id": user["id"]})  # no SIS id for the account: not logged
    assert told.count("admin_created") == 4 and told.count("admin_deleted") == 1
    assert log.as_json() == {
        "user|T-1": [1000.0],
        "admin|T-1|root": [1001.0],
        "admin|T-1|org-hs": [1002.0, 1003.0, 1004.0],
    }


@pytest.mark.parametrize("fmt", ["canvas", "caliper"])
def test_the_live_events_builder_skips_admin_events(fmt: str) -> None:
    store = CanvasStore()
    builder = LiveEventBuilder(store, fmt)
    user = _user(store, "T-1", "tess")
    admin = store.add_admin(1, {"user_id": user["id"]})
    assert builder.build("admin_created", admin) is None
    assert builder.build("admin_deleted", admin) is None


def test_grade_changes_are_kept_with_their_scores_in_order() -> None:
    s = school(courses=1, students=2)
    store, course = s.store, s.courses[0]
    log = WriteLog(store, clock=Ticks())
    a = store.create_assignment(course["id"], {"assignment": {"name": "Quiz", "points_possible": 20}})
    first, second = s.students
    store.submit(course["id"], a["id"], first["id"])
    store.grade(course["id"], a["id"], first["id"], {"submission": {"posted_grade": "85%"}})  # 1000
    store.grade(course["id"], a["id"], first["id"], {"submission": {"posted_grade": "85%"}})  # no change
    store.grade(course["id"], a["id"], second["id"], {"submission": {"posted_grade": 0}})  # 1001
    store.grade(course["id"], a["id"], first["id"], {"submission": {"excuse": True}})  # 1002
    aid, u1, u2 = str(a["id"]), str(first["id"]), str(second["id"])
    assert log.grades() == [
        {"assignment_id": aid, "user_id": u1, "score": 17.0, "grade": "85%", "at": 1000.0},
        {"assignment_id": aid, "user_id": u2, "score": 0.0, "grade": "0", "at": 1001.0},
        {"assignment_id": aid, "user_id": u1, "score": None, "grade": None, "at": 1002.0},
    ]
    assert log.as_json() == {f"grade|{aid}|{u1}": [1000.0, 1002.0], f"grade|{aid}|{u2}": [1001.0]}


def test_answers_are_copies_and_the_default_clock_is_the_wall_clock() -> None:
    store = CanvasStore()
    log = WriteLog(store)
    before = time.time()
    _user(store, "S-1", "ada")
    writes = log.as_json()
    assert before <= writes["user|S-1"][0] <= time.time()
    writes["user|S-1"].append(0.0)
    writes["user|S-2"] = [0.0]
    assert log.as_json() == {"user|S-1": [writes["user|S-1"][0]]}
    log.detach()
    _user(store, "S-2", "bo")
    assert "user|S-2" not in log.as_json()


def test_a_change_it_cannot_name_is_counted_never_raised_into_the_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CanvasStore()
    log = WriteLog(store)
    user = _user(store, "S-1", "ada")
    broken: dict[str, Any] = {"id": 999, "user_id": user["id"]}  # an enrollment without its section
    log("enrollment_updated", broken)
    log("account_created", {"id": 5})  # not a kind it keeps
    assert log.errors == 1 and "enrollment_updated" in caplog.text
    assert list(log.as_json()) == ["user|S-1"]


def test_it_finds_sis_ids_without_scanning_the_logins() -> None:
    """A district's first load (25,000 users, ~300,000 enrollments) would take minutes through a
    scan of every login for each change: the log reads the store's login index instead."""
    store = CanvasStore()
    for n in range(50):  # users from before the log: indexed on first need
        _user(store, f"S-{n}", f"u{n}")
    log = WriteLog(store, clock=Ticks())

    def no_scan(user: Obj) -> Obj:
        raise AssertionError("login_of scans every login")

    store.login_of = no_scan  # type: ignore[method-assign]
    course = store.create_course(1, {"course": {"name": "Algebra", "sis_course_id": "alg"}})
    section = store.create_section(course["id"], {"course_section": {"sis_section_id": "alg-p1"}})
    for n in range(50, 100):
        _user(store, f"S-{n}", f"u{n}")
    for user in list(store.users.values()):
        _enroll(store, user, section=section)
    writes = log.as_json()
    assert len(writes) == 50 + 100 and writes["enrollment|S-0|alg-p1"] and writes["user|S-99"]
    assert log.errors == 0
