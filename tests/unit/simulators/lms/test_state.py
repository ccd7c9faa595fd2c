"""The LMS simulator's state across a restart: the Canvas store saved and loaded whole (its
tables, next id, indexes and associations), the write log working on a restored store, and a
simulator started on its state file serving what the first one held."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from simulators.lms.server import LmsConfig, LmsSimulator
from simulators.lms.store import CanvasStore
from simulators.lms.truth import WriteLog
from simulators.serving import StateFileError, write_state

TOKEN = "api-token"
TABLES = (
    "accounts",
    "terms",
    "users",
    "logins",
    "courses",
    "sections",
    "enrollments",
    "admins",
    "roles",
    "assignments",
    "submissions",
)


def _user(store: CanvasStore, sis: str) -> int:
    body = {"user": {"name": sis.title()}, "pseudonym": {"unique_id": sis.lower(), "sis_user_id": sis}}
    return int(store.create_user(1, body)["id"])


def _filled() -> CanvasStore:
    """A store with one of everything the sink makes, made through the public methods."""
    s = CanvasStore()
    s.create_sub_account(1, {"name": "North High", "sis_account_id": "A-N"})
    s.create_term({"name": "Fall", "sis_term_id": "T-F", "start_at": "2026-08-17T00:00:00Z"})
    student, teacher, parent, admin = (_user(s, n) for n in ("S-1", "T-1", "P-1", "AD-1"))
    s.update_user(student, {"user": {"email": "s1@x.example"}})
    blueprint = s.create_course(
        "sis_account_id:A-N", {"course": {"name": "Algebra BP", "sis_course_id": "BP-ALG", "blueprint": True}}
    )
    course = s.create_course(
        "sis_account_id:A-N",
        {
            "course": {"name": "Algebra 1", "sis_course_id": "C-ALG", "term_id": "sis_term_id:T-F"},
            "offer": True,
        },
    )
    s.update_associations(blueprint["id"], [course["id"]], [])
    section = s.create_section(course["id"], {"course_section": {"name": "P1", "sis_section_id": "S-ALG-1"}})
    for user, kind in ((student, "StudentEnrollment"), (teacher, "TeacherEnrollment")):
        s.enroll(
            course_ref=None,
            section_ref=section["id"],
            params={"enrollment": {"user_id": user, "type": kind, "enrollment_state": "active"}},
        )
    s.enroll(
        course_ref=None,
        section_ref=section["id"],
        params={
            "enrollment": {"user_id": parent, "type": "ObserverEnrollment", "associated_user_id": student}
        },
    )
    s.add_admin("sis_account_id:A-N", {"user_id": admin})
    s.create_role(1, {"label": "Registrar", "base_role_type": "AccountMembership"})
    assignment = s.create_assignment(course["id"], {"assignment": {"name": "HW 1", "points_possible": 10}})
    s.submit(course["id"], assignment["id"], student)
    s.grade(course["id"], assignment["id"], student, {"submission": {"posted_grade": "8"}})
    return s


def test_a_store_round_trips_its_ground_truth_tables_and_indexes(tmp_path: Path) -> None:
    store = _filled()
    path = tmp_path / "lms.state"
    assert store.save(path) == store.version > 0

    loaded = CanvasStore.load(path)
    truth = loaded.ground_truth()
    assert truth == store.ground_truth()
    assert all(
        truth[kind] for kind in ("accounts", "terms", "users", "courses", "sections", "enrollments", "admins")
    )
    for table in TABLES:
        assert getattr(loaded, table) == getattr(store, table), table
    assert loaded.associations == store.associations and loaded.blueprint_of(
        store.course("sis_course_id:C-ALG")["id"]
    )
    assert loaded._enrollment_of_key == store._enrollment_of_key
    assert loaded._enrollments_by == store._enrollments_by
    assert loaded.counts() == store.counts()
    assert loaded.listeners == [] and loaded.version == 0


def test_a_loaded_store_goes_on_with_new_ids_and_its_indexes(tmp_path: Path) -> None:
    store = _filled()
    path = tmp_path / "lms.state"
    store.save(path)
    loaded = CanvasStore.load(path)
    old_ids = {oid for table in TABLES for oid in getattr(store, table) if isinstance(oid, int)}
    old_ids |= {s["id"] for s in store.submissions.values()}

    new_user = _user(loaded, "S-2")
    assert new_user > max(old_ids)
    section = loaded.section("sis_section_id:S-ALG-1")
    again = loaded.enroll(
        course_ref=None,
        section_ref=section["id"],
        params={
            "enrollment": {
                "user_id": "sis_user_id:S-1",
                "type": "StudentEnrollment",
                "enrollment_state": "active",
            }
        },
    )
    assert again["id"] in store.enrollments  # Canvas's idempotence, through the restored index
    mine = loaded.list_enrollments(user_ref="sis_user_id:S-1")
    assert [e["id"] for e in mine] == [again["id"]]
    with pytest.raises(Exception, match="already in use"):
        _user(loaded, "S-1")


def test_the_write_log_names_changes_to_restored_objects_by_sis_ids(tmp_path: Path) -> None:
    path = tmp_path / "lms.state"
    _filled().save(path)
    loaded = CanvasStore.load(path)
    writes = WriteLog(loaded, clock=lambda: 42.0)
    loaded.update_user("sis_user_id:S-1", {"user": {"name": "Renamed"}})
    loaded.enroll(
        course_ref=None,
        section_ref="sis_section_id:S-ALG-1",
        params={"enrollment": {"user_id": "sis_user_id:T-1", "type": "TeacherEnrollment"}},
    )
    loaded.add_admin("sis_account_id:A-N", {"user_id": "sis_user_id:AD-1"})
    assert writes.times("user|S-1") == [42.0]
    assert writes.times("enrollment|T-1|S-ALG-1") == [42.0]
    assert writes.times("admin|AD-1|A-N") == [42.0]
    assert writes.errors == 0


def test_every_write_counts_in_the_version() -> None:
    store = CanvasStore()
    before = store.version
    uid = _user(store, "S-1")
    assert store.version > before
    before = store.version
    store.user(uid)
    store.ground_truth()
    assert store.version == before  # reads do not count
    store.update_login(store.login_of(store.user(uid))["id"], {"integration_id": "X"})
    assert store.version == before + 1


def test_a_state_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.state"
    write_state(path, "sislms.sis-store", {})
    with pytest.raises(StateFileError):
        CanvasStore.load(path)


def test_stop_saves_and_a_new_simulator_serves_the_restored_store(tmp_path: Path) -> None:
    path = tmp_path / "lms.state"
    config = LmsConfig(port=0, token=TOKEN, state_file=path)
    first = LmsSimulator(config).start()
    assert not first.restored
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"{first.url}/api/v1", headers=auth) as client:
        body = {"user": {"name": "Ada"}, "pseudonym": {"unique_id": "ada", "sis_user_id": "S-ADA"}}
        client.post("/accounts/1/users", json=body).raise_for_status()
        course = client.post(
            "/accounts/1/courses", json={"course": {"name": "Art", "sis_course_id": "C-ART"}}
        )
        course.raise_for_status()
    first.stop()
    truth = first.store.ground_truth()

    second = LmsSimulator(config).start()
    try:
        assert second.restored and second.store.ground_truth() == truth
        assert not second.save()  # nothing changed since it was read
        with httpx.Client(base_url=f"{second.url}/api/v1", headers=auth) as client:
            ada = client.get("/users/sis_user_id:S-ADA")
            assert ada.status_code == 200 and ada.json()["name"] == "Ada"
            assert client.get("/courses/sis_course_id:C-ART").json()["id"] == course.json()["id"]
            again = client.post(
                "/accounts/1/users",
                json={"user": {"name": "Ada"}, "pseudonym": {"unique_id": "ada", "sis_user_id": "S-ADA"}},
            )
            assert again.status_code == 400  # the restored login still holds its ids
    finally:
        second.stop()


def test_a_changed_store_is_saved_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "lms.state"
    sim = LmsSimulator(LmsConfig(port=0, token=TOKEN, state_file=path, save_every_s=0.05)).start()
    try:
        _user(sim.store, "S-9")
        deadline = time.monotonic() + 10
        while True:
            if path.exists() and CanvasStore.load(path).users:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        sim.stop()
