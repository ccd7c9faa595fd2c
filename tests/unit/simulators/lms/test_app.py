"""The LMS simulator's Canvas REST subset, through aiohttp's test client: auth, lookups by SIS
id, Canvas's idempotent enrollments and admins, pagination, throttling, faults, grades."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from connectors.canvas import is_rate_limited
from connectors.oneroster import parse_link_header
from simulators.lms.app import LmsState, Throttle, build_app
from simulators.lms.store import CanvasStore

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/api/v1"

Check = Callable[[TestClient, CanvasStore], Awaitable[None]]


def run(test: Check, throttle: Throttle | None = None) -> None:
    async def main() -> None:
        store = CanvasStore()
        state = LmsState(store, frozenset({TOKEN}), throttle=throttle or Throttle(capacity=0))
        client = TestClient(TestServer(build_app(state)))
        await client.start_server()
        try:
            await test(client, store)
        finally:
            await client.close()

    asyncio.run(main())


async def call(client: TestClient, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = await client.request(method, API + path, headers=AUTH, **kwargs)
    body = await response.json() if response.content_type == "application/json" else await response.text()
    assert response.status == status, (method, path, response.status, body)
    return body


async def user(client: TestClient, sis_id: str, login: str | None = None) -> dict[str, Any]:
    return await call(
        client,
        "POST",
        "/accounts/1/users",
        json={
            "user": {"name": f"User {sis_id}"},
            "pseudonym": {"unique_id": login or sis_id, "sis_user_id": sis_id},
        },
    )


async def course_with_section(client: TestClient, sis_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    school = await call(
        client,
        "POST",
        "/accounts/1/sub_accounts",
        json={"account": {"name": "School", "sis_account_id": f"org-{sis_id}"}},
    )
    course = await call(
        client,
        "POST",
        f"/accounts/{school['id']}/courses",
        json={"course": {"name": "Algebra", "sis_course_id": sis_id}},
    )
    section = await call(
        client,
        "POST",
        f"/courses/{course['id']}/sections",
        json={"course_section": {"name": "P1", "sis_section_id": sis_id}},
    )
    return course, section


def test_every_api_call_needs_the_token() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = await client.get(f"{API}/accounts/1", headers=headers)
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await response.json())["errors"][0]["message"]
        response = await client.post(f"{API}/accounts/1/users", json={"pseudonym": {"unique_id": "x"}})
        assert response.status == 401
        assert store.counts()["users"] == 0  # nothing was created

    run(check)


def test_users_are_found_by_sis_id_and_sis_ids_are_unique() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        made = await user(client, "s 1/é")  # ids with spaces, slashes and non-ASCII, URL-encoded
        found = await call(client, "GET", "/users/sis_user_id:s%201%2F%C3%A9")
        assert found["id"] == made["id"] and found["sis_user_id"] == "s 1/é" and found["login_id"] == "s 1/é"
        taken = await call(
            client,
            "POST",
            "/accounts/1/users",
            status=400,
            json={"pseudonym": {"unique_id": "other", "sis_user_id": "s 1/é"}},
        )
        assert taken["errors"]["sis_user_id"][0]["type"] == "taken"
        login_taken = await call(
            client, "POST", "/accounts/1/users", status=400, json={"pseudonym": {"unique_id": "s 1/é"}}
        )
        assert login_taken["errors"]["unique_id"][0]["type"] == "taken"
        await call(client, "GET", "/users/sis_user_id:nobody", status=404)
        # form-encoded parameters work too
        form = await call(
            client,
            "POST",
            "/accounts/1/users",
            data={"user[name]": "Bo", "pseudonym[unique_id]": "bo", "pseudonym[sis_user_id]": "s-2"},
        )
        assert form["name"] == "Bo" and form["sis_user_id"] == "s-2"

    run(check)


def test_suspending_and_removing_a_user() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        made = await user(client, "s-1")
        await call(
            client, "PUT", f"/users/{made['id']}", json={"user": {"event": "suspend", "name": "New Name"}}
        )
        [login] = await call(client, "GET", f"/users/{made['id']}/logins")
        assert login["workflow_state"] == "suspended"
        truth = store.ground_truth()["users"]
        assert truth == [{**truth[0], "sis_user_id": "s-1", "name": "New Name", "state": "suspended"}]
        await call(client, "DELETE", f"/accounts/1/users/{made['id']}")
        await call(client, "GET", "/users/sis_user_id:s-1", status=404)
        assert store.ground_truth()["users"] == []
        await user(client, "s-1")  # the SIS id is free again

    run(check)


def test_enrolling_twice_returns_the_same_enrollment() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        student = await user(client, "s-1")
        course, section = await course_with_section(client, "class-1")
        body = {
            "enrollment": {
                "user_id": "sis_user_id:s-1",
                "type": "StudentEnrollment",
                "enrollment_state": "active",
            }
        }
        first = await call(client, "POST", "/sections/sis_section_id:class-1/enrollments", json=body)
        again = await call(client, "POST", f"/sections/{section['id']}/enrollments", json=body)
        assert first["id"] == again["id"] and first["user_id"] == student["id"]
        assert first["sis_section_id"] == "class-1" and first["sis_course_id"] == "class-1"
        teacher = await call(
            client,
            "POST",
            f"/sections/{section['id']}/enrollments",
            json={"enrollment": {**body["enrollment"], "type": "TeacherEnrollment"}},
        )
        assert teacher["id"] != first["id"]  # another role is another enrollment
        listed = await call(
            client, "GET", f"/courses/{course['id']}/enrollments", params={"type[]": "StudentEnrollment"}
        )
        assert [e["id"] for e in listed] == [first["id"]]
        await call(
            client,
            "DELETE",
            f"/courses/{course['id']}/enrollments/{first['id']}",
            params={"task": "deactivate"},
        )
        await call(client, "PUT", f"/courses/{course['id']}/enrollments/{first['id']}/reactivate")
        await call(
            client, "DELETE", f"/courses/{course['id']}/enrollments/{first['id']}", params={"task": "delete"}
        )
        left = await call(client, "GET", f"/sections/{section['id']}/enrollments")
        assert [e["type"] for e in left] == ["TeacherEnrollment"]
        bad = await call(
            client,
            "POST",
            f"/sections/{section['id']}/enrollments",
            status=400,
            json={"enrollment": {"user_id": student["id"], "type": "Principal"}},
        )
        assert "type" in bad["errors"]

    run(check)


def test_observers_observe_a_student_and_only_observers_may() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        await user(client, "s-1")
        await user(client, "g-1")
        await course_with_section(client, "class-1")
        observe = {
            "user_id": "sis_user_id:g-1",
            "type": "ObserverEnrollment",
            "associated_user_id": "sis_user_id:s-1",
        }
        e = await call(
            client, "POST", "/sections/sis_section_id:class-1/enrollments", json={"enrollment": observe}
        )
        assert e["associated_user_id"] == store.user("sis_user_id:s-1")["id"]
        [row] = store.ground_truth()["enrollments"]
        assert row["user"] == "g-1" and row["observed"] == "s-1" and row["type"] == "ObserverEnrollment"
        await call(
            client,
            "POST",
            "/sections/sis_section_id:class-1/enrollments",
            status=400,
            json={"enrollment": {**observe, "type": "StudentEnrollment"}},
        )

    run(check)


def test_account_admins_and_custom_roles() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        await user(client, "p-1")
        school = await call(
            client,
            "POST",
            "/accounts/1/sub_accounts",
            json={"account": {"name": "East HS", "sis_account_id": "org-1"}},
        )
        role = await call(
            client,
            "POST",
            "/accounts/1/roles",
            json={"label": "Counselor", "base_role_type": "AccountMembership"},
        )
        grant = {"user_id": "sis_user_id:p-1", "role_id": role["id"]}
        a = await call(client, "POST", "/accounts/sis_account_id:org-1/admins", json=grant)
        b = await call(client, "POST", f"/accounts/{school['id']}/admins", json=grant)
        assert a["id"] == b["id"] and a["role"] == "Counselor"
        await call(client, "POST", "/accounts/1/admins", json={"user_id": "sis_user_id:p-1"})  # AccountAdmin
        assert sorted((r["account"], r["role"]) for r in store.ground_truth()["admins"]) == [
            ("org-1", "Counselor"),
            ("root", "AccountAdmin"),
        ]
        student_role = store.role(name="StudentEnrollment")
        await call(
            client,
            "POST",
            "/accounts/1/admins",
            status=400,
            json={"user_id": "sis_user_id:p-1", "role_id": student_role["id"]},
        )
        await call(
            client,
            "DELETE",
            "/accounts/sis_account_id:org-1/admins/sis_user_id:p-1",
            params={"role_id": str(role["id"])},
        )
        await call(
            client,
            "DELETE",
            "/accounts/sis_account_id:org-1/admins/sis_user_id:p-1",
            status=404,
            params={"role_id": str(role["id"])},
        )
        assert [r["account"] for r in store.ground_truth()["admins"]] == ["root"]

    run(check)


def test_courses_terms_and_blueprints() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        term = await call(
            client,
            "POST",
            "/accounts/1/terms",
            json={"enrollment_term": {"name": "2026-27", "sis_term_id": "t-1", "start_at": "2026-08-20"}},
        )
        terms = await call(client, "GET", "/accounts/1/terms")
        assert [t["id"] for t in terms["enrollment_terms"]] == [term["id"]]
        template = await call(
            client,
            "POST",
            "/accounts/1/courses",
            json={"course": {"name": "Algebra I", "sis_course_id": "template:c-1", "blueprint": True}},
        )
        course = await call(
            client,
            "POST",
            "/accounts/1/courses",
            json={"course": {"name": "Algebra I P1", "sis_course_id": "k-1", "term_id": "sis_term_id:t-1"}},
        )
        assert course["enrollment_term_id"] == term["id"]
        await call(
            client,
            "PUT",
            "/courses/sis_course_id:template%3Ac-1/blueprint_templates/default/update_associations",
            json={"course_ids_to_add": [course["id"]]},
        )
        followers = await call(
            client, "GET", f"/courses/{template['id']}/blueprint_templates/default/associated_courses"
        )
        assert [c["id"] for c in followers] == [course["id"]]
        await call(
            client,
            "PUT",
            "/courses/sis_course_id:k-1",
            json={"course": {"event": "offer", "name": "Renamed"}},
        )
        truth = {c["sis_course_id"]: c for c in store.ground_truth()["courses"]}
        assert truth["k-1"]["state"] == "available" and truth["k-1"]["name"] == "Renamed"
        assert truth["k-1"]["blueprint_course"] == "template:c-1" and truth["k-1"]["term"] == "t-1"
        await call(client, "DELETE", "/courses/sis_course_id:k-1", params={"event": "delete"})
        assert [c["sis_course_id"] for c in store.ground_truth()["courses"]] == ["template:c-1"]

    run(check)


def test_pages_follow_next_to_every_object_once() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        for i in range(23):
            await user(client, f"s-{i:02d}")
        seen: list[str] = []
        url: str | None = f"{API}/accounts/1/users?per_page=10"
        pages = 0
        while url is not None:
            response = await client.get(url, headers=AUTH)
            assert response.status == 200
            seen += [u["sis_user_id"] for u in await response.json()]
            links = parse_link_header(response.headers["Link"])
            assert links["last"].endswith("page=3&per_page=10")
            nxt = links.get("next")
            url = None if nxt is None else nxt[nxt.index(API) :]  # the test client takes paths
            pages += 1
        assert pages == 3 and sorted(seen) == [f"s-{i:02d}" for i in range(23)]
        big = await call(client, "GET", "/accounts/1/users", params={"per_page": "1000"})
        assert len(big) == 23  # capped at 100 a page, all here

    run(check)


def test_an_empty_bucket_answers_403_rate_limit_exceeded_until_it_drains() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        statuses, remaining = [], []
        for _ in range(20):
            response = await client.get(f"{API}/accounts/1", headers=AUTH)
            statuses.append(response.status)
            remaining.append(float(response.headers["X-Rate-Limit-Remaining"]))
            if response.status == 403:
                assert is_rate_limited(403, await response.text())
        assert 200 in statuses and 403 in statuses
        assert remaining[0] > remaining[statuses.index(403)]
        await asyncio.sleep(0.6)  # drains at 100 units/s
        assert (await client.get(f"{API}/accounts/1", headers=AUTH)).status == 200

    run(check, Throttle(capacity=60, leak_per_s=100, cost=10, preflight=5))


def test_queued_faults_answer_first_then_the_api() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        response = await client.post(
            "/_sim/faults", json={"status": 503, "times": 2, "path": "users", "retry_after": 1}
        )
        assert response.status == 200
        for _ in range(2):
            response = await client.post(
                f"{API}/accounts/1/users", headers=AUTH, json={"pseudonym": {"unique_id": "a"}}
            )
            assert response.status == 503 and response.headers["Retry-After"] == "1"
        await user(client, "a")
        assert store.counts()["users"] == 1
        health = await (await client.get("/_sim/health")).json()
        assert health["faulted"] == 2 and health["counts"]["users"] == 1

    run(check)


def test_assignments_submissions_and_grades_are_told_to_listeners() -> None:
    async def check(client: TestClient, store: CanvasStore) -> None:
        told: list[tuple[str, dict[str, Any]]] = []
        store.listeners.append(lambda event, obj: told.append((event, dict(obj))))
        await user(client, "s-1")
        course, _ = await course_with_section(client, "class-1")
        assignment = await call(
            client,
            "POST",
            f"/courses/{course['id']}/assignments",
            json={"assignment": {"name": "Essay", "due_at": "2026-11-01T23:59:00Z", "points_possible": 20}},
        )
        sub = await call(
            client,
            "POST",
            f"/courses/{course['id']}/assignments/{assignment['id']}/submissions",
            json={"as_user_id": "sis_user_id:s-1"},
        )
        assert sub["late"] is True and sub["attempt"] == 1  # handed in after the due date
        graded = await call(
            client,
            "PUT",
            f"/courses/{course['id']}/assignments/{assignment['id']}/submissions/sis_user_id:s-1",
            json={"submission": {"posted_grade": "85%"}},
        )
        assert graded["score"] == 17.0 and graded["grade"] == "85%" and graded["workflow_state"] == "graded"
        excused = await call(
            client,
            "PUT",
            f"/courses/{course['id']}/assignments/{assignment['id']}/submissions/sis_user_id:s-1",
            json={"submission": {"excuse": True}},
        )
        assert excused["excused"] is True and excused["score"] is None
        await call(
            client,
            "PUT",
            f"/courses/{course['id']}/assignments/{assignment['id']}/submissions/sis_user_id:s-1",
            status=400,
            json={"submission": {"posted_grade": "lots"}},
        )
        events = [e for e, _ in told]
        assert "assignment_created" in events and "submission_created" in events
        changes = [obj for e, obj in told if e == "grade_change"]
        assert [(c["previous_score"], c["score"]) for c in changes] == [(None, 17.0), (17.0, None)]

    run(check)
