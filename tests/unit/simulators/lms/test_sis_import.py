"""SIS Imports in the LMS simulator: CSVs and zips of them, recognised by their headers, applied in
the background through the store (so findable by SIS id through the REST API), idempotent, with
Canvas's workflow states, counts, and warnings that name SIS ids only."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient

from simulators.lms.store import CanvasStore
from tests.unit.simulators.lms.test_app import API, AUTH, call, run

ACCOUNTS = "account_id,parent_account_id,name,status\nA1,,North High,active\n"
TERMS = "term_id,name,status,start_date,end_date\nT1,Fall,active,2025-09-01T00:00:00Z,2026-01-31T00:00:00Z\n"
USERS = (
    "user_id,login_id,first_name,last_name,email,status\n"
    "U1,ada@school.example,Ada,Lovelace,ada@school.example,active\n"
    "U2,bob@school.example,Bob,Babbage,bob@school.example,active\n"
    "P1,pat@home.example,Pat,Parent,pat@home.example,active\n"
    "C9,cy@school.example,Cy,Coach,,active\n"
)
COURSES = (
    "course_id,short_name,long_name,account_id,term_id,status\n"
    "C1,ALG1,Algebra I,A1,T1,active\n"
    "C2,BIO,Biology,,,active\n"
)
SECTIONS = "section_id,course_id,name,status\nS1,C1,Period 1,active\n"
#: role_id 200 is a custom role the tests make first (the store's first new id is 100)
ENROLLMENTS = (
    "course_id,user_id,role,role_id,section_id,status,associated_user_id\n"
    "C1,U1,student,,S1,active,\n"
    "C1,U2,teacher,,S1,active,\n"
    "C1,P1,observer,,S1,active,U1\n"
    "C1,C9,,{coach},S1,active,\n"
    "C2,U1,student,,,active,\n"
)
TERMINAL = ("imported", "imported_with_messages", "failed_with_messages", "failed")


def _zip(**files: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(f"{name}.csv", text)
    return buffer.getvalue()


async def _raw(
    client: TestClient, path: str, data: bytes, status: int = 200, content_type: str = "application/zip"
) -> Any:
    """``call`` with a raw body of ``content_type``."""
    response = await client.post(API + path, data=data, headers={**AUTH, "Content-Type": content_type})
    body = await response.json()
    assert response.status == status, (path, response.status, body)
    return body


async def _post(client: TestClient, data: bytes, status: int = 200, extension: str = "zip") -> Any:
    path = f"/accounts/1/sis_imports?import_type=instructure_csv&extension={extension}"
    return await _raw(client, path, data, status, "application/octet-stream")


async def _finished(client: TestClient, import_id: int, timeout: float = 3.0) -> dict[str, Any]:
    """Polls the import until it ends (the test fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = await call(client, "GET", f"/accounts/1/sis_imports/{import_id}")
        if body["workflow_state"] in TERMINAL:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.01)


async def _imported(client: TestClient, data: bytes, extension: str = "zip") -> dict[str, Any]:
    created = await _post(client, data, extension=extension)
    return await _finished(client, created["id"])


def _school(store: CanvasStore) -> bytes:
    """A custom course role, and a zip of every kind of file (named oddly and listed enrollments
    first: a file's kind is its header's and the import orders them)."""
    coach = store.create_role(1, {"label": "Coach", "base_role_type": "TeacherEnrollment"})
    return _zip(
        roster=ENROLLMENTS.format(coach=coach["id"]),
        people=USERS,
        classes=COURSES,
        periods=SECTIONS,
        schools=ACCOUNTS,
        calendar=TERMS,
    )


async def _enrollments(client: TestClient, course: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await call(
        client, "GET", f"/courses/sis_course_id:{course}/enrollments?per_page=100"
    )
    return rows


def test_a_zip_of_every_kind_is_imported_and_found_by_sis_id() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        data = _school(store)
        created = await _post(client, data)
        assert created["workflow_state"] == "created" and created["progress"] == 0
        assert created["ended_at"] is None and created["processing_warnings"] is None
        assert created["data"]["import_type"] == "instructure_csv"
        assert created["data"]["supplied_batches"] == [
            "account",
            "term",
            "user",
            "course",
            "section",
            "enrollment",
        ]
        done = await _finished(client, created["id"])
        assert done["workflow_state"] == "imported" and done["progress"] == 100 and done["ended_at"]
        assert done["processing_warnings"] is None and done["processing_errors"] is None
        counts = done["data"]["counts"]
        assert {
            k: counts[k] for k in ("accounts", "terms", "users", "courses", "sections", "enrollments")
        } == {
            "accounts": 1,
            "terms": 1,
            "users": 4,
            "courses": 2,
            "sections": 1,
            "enrollments": 5,
        }
        assert counts["warning_count"] == counts["error_count"] == 0

        ada = await call(client, "GET", "/users/sis_user_id:U1")
        assert (ada["name"], ada["sortable_name"], ada["login_id"]) == (
            "Ada Lovelace",
            "Lovelace, Ada",
            "ada@school.example",
        )
        assert ada["email"] == "ada@school.example"
        algebra = await call(client, "GET", "/courses/sis_course_id:C1")
        school = await call(client, "GET", "/accounts/sis_account_id:A1")
        term = await call(client, "GET", "/accounts/1/terms/sis_term_id:T1")
        assert (algebra["name"], algebra["course_code"]) == ("Algebra I", "ALG1")
        assert (algebra["account_id"], algebra["enrollment_term_id"]) == (school["id"], term["id"])
        assert term["start_at"] == "2025-09-01T00:00:00Z"
        assert (await call(client, "GET", "/sections/sis_section_id:S1"))["course_id"] == algebra["id"]

        rows = await _enrollments(client, "C1")
        got = {
            (e["sis_user_id"], e["sis_section_id"], e["type"], e["role"], e["enrollment_state"]) for e in rows
        }
        assert got == {
            ("U1", "S1", "StudentEnrollment", "StudentEnrollment", "active"),
            ("U2", "S1", "TeacherEnrollment", "TeacherEnrollment", "active"),
            ("P1", "S1", "ObserverEnrollment", "ObserverEnrollment", "active"),
            ("C9", "S1", "TeacherEnrollment", "Coach", "active"),
        }
        [observer] = [e for e in rows if e["sis_user_id"] == "P1"]
        assert observer["associated_user_id"] == ada["id"]
        [biology] = await _enrollments(client, "C2")  # no section_id: the course's default section
        assert biology["sis_user_id"] == "U1" and biology["course_section_id"]
        # the ground truth holds them as it holds REST-made ones
        truth = store.ground_truth()
        assert {"user": "P1", "course": "C1", "section": "S1", "observed": "U1"}.items() <= next(
            e for e in truth["enrollments"] if e["user"] == "P1"
        ).items()
        assert {c["sis_course_id"]: (c["account"], c["term"]) for c in truth["courses"]} == {
            "C1": ("A1", "T1"),
            "C2": (None, None),
        }

    run(check)


def test_importing_the_same_zip_again_changes_nothing() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        data = _school(store)
        assert (await _imported(client, data))["workflow_state"] == "imported"
        counts, version, enrollments = store.counts(), store.version, await _enrollments(client, "C1")
        events: list[str] = []
        store.listeners.append(lambda name, obj: events.append(name))
        again = await _imported(client, data)
        assert again["workflow_state"] == "imported" and again["data"]["counts"]["enrollments"] == 5
        assert store.counts() == counts and await _enrollments(client, "C1") == enrollments
        assert store.version == version and events == []  # not one write, not one Live Event
        listed = await call(client, "GET", "/accounts/self/sis_imports")
        assert [i["id"] for i in listed["sis_imports"]] == [again["id"], again["id"] - 1]  # newest first

    run(check)


def test_a_raw_users_csv_creates_then_updates_users() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        created = await _post(client, USERS.encode(), extension="csv")
        assert created["data"]["supplied_batches"] == ["user"]
        done = await _finished(client, created["id"])
        assert done["workflow_state"] == "imported" and done["data"]["counts"]["users"] == 4
        renamed = (
            "user_id,login_id,full_name,integration_id,status\nU1,ada@school.example,Ada King,X-1,active\n"
        )
        done = await _imported(client, renamed.encode(), extension="csv")
        assert done["workflow_state"] == "imported"
        ada = await call(client, "GET", "/users/sis_user_id:U1")
        assert (ada["name"], ada["integration_id"], ada["email"]) == ("Ada King", "X-1", "ada@school.example")
        assert store.counts()["users"] == 4
        gone = await _imported(client, b"user_id,login_id,status\nU2,bob@school.example,deleted\n", "csv")
        assert gone["data"]["counts"]["users"] == 1
        await call(client, "GET", "/users/sis_user_id:U2", status=404)

    run(check)


def test_an_unknown_user_is_a_warning_naming_ids_only_and_the_other_rows_are_applied() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        data = _school(store)
        await _imported(client, data)
        rows = (
            "course_id,user_id,role,section_id,status\n"
            "C1,U2,ta,S1,active\n"
            "C1,NOBODY,student,S1,active\n"
            "C1,U1,pupil,S1,active\n"
            "C1,U1,student,S1,enrolled\n"
            "C2,U2,student,,active\n"
        )
        done = await _imported(client, _zip(enrollments=rows))
        assert done["workflow_state"] == "imported_with_messages"
        assert done["processing_errors"] is None
        assert done["processing_warnings"] == [
            [
                "enrollments.csv",
                "(row 3) enrollment of user NOBODY in section S1: user NOBODY not found; skipped",
            ],
            ["enrollments.csv", "(row 4) enrollment of user U1 in section S1: role pupil not found; skipped"],
            [
                "enrollments.csv",
                "(row 5) enrollment of user U1 in section S1:"
                " status is not one of active, deleted, completed, inactive; skipped",
            ],
        ]
        assert done["data"]["counts"]["enrollments"] == 2 and done["data"]["counts"]["warning_count"] == 3
        types = {(e["sis_user_id"], e["type"]) for e in await _enrollments(client, "C1")}
        assert ("U2", "TaEnrollment") in types
        assert [e["sis_user_id"] for e in await _enrollments(client, "C2")] == ["U1", "U2"]

    run(check)


def test_warnings_never_hold_personal_data() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        await _imported(client, USERS.encode(), "csv")
        taken = (
            "user_id,login_id,first_name,last_name,email,status\n"
            "U7,ada@school.example,Eve,Evans,eve@x.example,active\n"
        )
        done = await _imported(client, taken.encode(), "csv")
        assert done["processing_warnings"] == [
            ["users.csv", "(row 2) user U7: login_id already in use; skipped"]
        ]
        text = str(done)
        assert not any(secret in text for secret in ("ada@", "Eve", "Evans", "eve@"))

    run(check)


def test_a_file_without_a_required_column_fails_the_import_but_not_the_other_files() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        data = _zip(
            users="user_id,login_id,first_name\nU1,ada@school.example,Ada\n",  # no status
            courses=COURSES,
            notes="when,what\nmonday,nothing\n",
        )
        done = await _imported(client, data)
        assert done["workflow_state"] == "failed_with_messages"
        assert done["processing_errors"] == [
            ["notes.csv", "Couldn't find Canvas CSV import headers"],
            ["users.csv", "missing required column(s): status; file skipped"],
        ]
        assert done["processing_warnings"] == [
            ["courses.csv", "(row 2) course C1: account A1 not found; skipped"]
        ]
        assert done["data"]["counts"]["courses"] == 1 and done["data"]["counts"]["users"] == 0
        assert done["data"]["counts"]["error_count"] == 2
        await call(client, "GET", "/courses/sis_course_id:C2")
        await call(client, "GET", "/users/sis_user_id:U1", status=404)

    run(check)


def test_deleted_completed_and_inactive_rows_end_the_enrollment() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        await _imported(client, _school(store))
        ending = (
            "course_id,user_id,role,section_id,status,associated_user_id\n"
            "C1,U1,student,S1,deleted,\n"
            "C1,U2,teacher,S1,completed,\n"
            "C1,P1,observer,S1,inactive,U1\n"
            "C2,U2,student,,deleted,\n"  # no such enrollment: nothing to do, no warning
        )
        done = await _imported(client, _zip(enrollments=ending))
        assert done["workflow_state"] == "imported" and done["data"]["counts"]["enrollments"] == 4
        states = {e["user"]: e["state"] for e in store.ground_truth()["enrollments"] if e["course"] == "C1"}
        assert states == {"U2": "completed", "P1": "inactive", "C9": "active"}  # U1's is deleted
        listed = {e["sis_user_id"] for e in await _enrollments(client, "C1")}
        assert listed == {"P1", "C9"}
        again = await _imported(client, _zip(enrollments=ending.replace("deleted", "active", 1)))
        assert again["workflow_state"] == "imported"
        assert "U1" in {e["sis_user_id"] for e in await _enrollments(client, "C1")}  # restored

    run(check)


def test_a_multipart_attachment_is_imported() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        form = FormData()
        form.add_field("import_type", "instructure_csv")
        form.add_field(
            "attachment", _zip(users=USERS), filename="nightly.zip", content_type="application/zip"
        )
        created = await call(client, "POST", "/accounts/self/sis_imports", data=form)
        done = await _finished(client, created["id"])
        assert done["workflow_state"] == "imported" and done["data"]["counts"]["users"] == 4
        single = FormData()
        courses = b"course_id,short_name,long_name,status\nC1,ALG1,Algebra I,active\nC2,x,,active\n"
        single.add_field("attachment", courses, filename="courses-today.csv", content_type="text/csv")
        created = await call(client, "POST", "/accounts/1/sis_imports", data=single)
        done = await _finished(client, created["id"])
        assert done["data"]["counts"]["courses"] == 1  # the file keeps its name in warnings
        assert done["processing_warnings"] == [
            ["courses-today.csv", "(row 3) course C2: long_name is blank; skipped"]
        ]
        await call(client, "GET", "/courses/sis_course_id:C1")

    run(check)


def test_bad_requests_are_refused() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        url = "/accounts/1/sis_imports"
        body = await _raw(client, url + "?import_type=ims_xml", _zip(users=USERS), 400)
        assert body["errors"]["import_type"][0]["message"] == "invalid import_type parameter"
        await _raw(client, url + "?extension=xml", b"x", 400)
        await _raw(client, url, b"", 400)  # no data
        await _raw(client, url, b"not a zip", 400)
        await _raw(client, url, _zip(), 400)  # a zip without a CSV
        await call(client, "POST", url, 400, data=FormData({"import_type": "instructure_csv"}))
        await _raw(client, "/accounts/9999/sis_imports", _zip(users=USERS), 404)
        sub = store.create_sub_account(1, {"name": "School"})
        await _raw(client, f"/accounts/{sub['id']}/sis_imports", _zip(users=USERS), 400)
        await call(client, "GET", "/accounts/1/sis_imports/1", status=404)
        await call(client, "GET", "/accounts/1/sis_imports/nope", status=404)
        assert (await call(client, "GET", "/accounts/1/sis_imports"))["sis_imports"] == []
        assert store.counts()["users"] == 0

    run(check)


def test_the_import_is_applied_after_the_post_returns_at_the_paced_speed() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        response = await client.post("/_sim/throttle", json={"import_rows_per_s": 100})
        assert (await response.json())["import_rows_per_s"] == 100
        users = "user_id,login_id,status\n" + "".join(f"U{i},u{i},active\n" for i in range(10))
        started = time.monotonic()
        created = await _post(client, users.encode(), extension="csv")
        assert created["workflow_state"] == "created"
        assert store.counts()["users"] < 10  # not applied inside the request
        seen = await call(client, "GET", f"/accounts/1/sis_imports/{created['id']}")
        assert seen["workflow_state"] in ("created", "importing") and seen["progress"] < 100
        done = await _finished(client, created["id"])
        assert done["workflow_state"] == "imported" and store.counts()["users"] == 10
        assert time.monotonic() - started >= 0.08  # 10 rows at 100 a second
        response = await client.post("/_sim/throttle", json={"import_rows_per_s": 0})
        assert (await response.json())["import_rows_per_s"] == 0

    run(check)


def test_the_import_requests_pass_the_api_middleware() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        response = await client.post(f"{API}/accounts/1/sis_imports", data=_zip(users=USERS))
        assert response.status == 401  # no token
        await client.post("/_sim/faults", json={"status": 503, "path": "sis_imports"})
        await _post(client, _zip(users=USERS), status=503)
        assert (await _imported(client, _zip(users=USERS)))["workflow_state"] == "imported"

    run(check)
