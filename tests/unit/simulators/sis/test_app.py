"""The simulated SIS's HTTP behaviour on a tiny hand-made district (aiohttp's test client)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from connectors.oneroster.auth import SCOPES, TokenIssuer
from simulators.sis.app import SimState, build_app
from simulators.sis.store import SisStore

RO = "/ims/oneroster/rostering/v1p2"
GB = "/ims/oneroster/gradebook/v1p2"


def _ref(sid: str, kind: str) -> dict[str, str]:
    return {"href": f"/x/{sid}", "sourcedId": sid, "type": kind}


def _district() -> dict[str, dict[str, dict[str, Any]]]:
    def user(sid: str, role: str, stamp: str, email: str | None = None) -> dict[str, Any]:
        u = {
            "sourcedId": sid,
            "status": "active",
            "dateLastModified": stamp,
            "username": sid,
            "enabledUser": True,
            "givenName": sid.upper(),
            "familyName": "Doe",
            "roles": [{"roleType": "primary", "role": role, "org": _ref("s1", "org")}],
        }
        if email:
            u["email"] = email
        return u

    users = [user(f"u{i}", "student", f"2026-08-0{i}T00:00:00.000Z", f"u{i}@x.example") for i in range(1, 8)]
    users.append(user("t1", "teacher", "2026-08-09T00:00:00.000Z"))
    enrollments = [
        {
            "sourcedId": f"e{i}",
            "status": "active",
            "dateLastModified": "2026-08-01T00:00:00.000Z",
            "user": _ref(f"u{i}", "user"),
            "class": _ref("c1" if i < 4 else "c2", "class"),
            "school": _ref("s1", "org"),
            "role": "student",
        }
        for i in range(1, 8)
    ]
    enrollments.append(
        {
            "sourcedId": "e9",
            "status": "active",
            "dateLastModified": "2026-08-01T00:00:00.000Z",
            "user": _ref("t1", "user"),
            "class": _ref("c1", "class"),
            "school": _ref("s1", "org"),
            "role": "teacher",
        }
    )
    return {
        "orgs": {
            "s1": {
                "sourcedId": "s1",
                "status": "active",
                "dateLastModified": "2026-08-01T00:00:00.000Z",
                "name": "School",
                "type": "school",
            }
        },
        "users": {u["sourcedId"]: u for u in users},
        "enrollments": {e["sourcedId"]: e for e in enrollments},
        "results": {},
    }


FIELDS = {
    "users": frozenset(
        {
            "sourcedId",
            "status",
            "dateLastModified",
            "email",
            "givenName",
            "familyName",
            "roles",
            "username",
            "enabledUser",
        }
    ),
    "orgs": frozenset({"sourcedId", "name", "type", "status", "dateLastModified"}),
    "enrollments": frozenset({"sourcedId", "user", "class", "school", "role", "status", "dateLastModified"}),
    "results": frozenset(
        {"sourcedId", "lineItem", "student", "scoreStatus", "score", "status", "dateLastModified"}
    ),
    "classes": frozenset({"sourcedId"}),
}


def run(
    test: Callable[[TestClient, SisStore, TokenIssuer], Awaitable[None]],
    scopes: frozenset[str] = frozenset(SCOPES),
) -> None:
    async def main() -> None:
        store = SisStore(_district())
        issuer = TokenIssuer({"c": ("s", scopes)})
        client = TestClient(TestServer(build_app(SimState(store, issuer, dict(FIELDS)))))
        await client.start_server()
        try:
            await test(client, store, issuer)
        finally:
            await client.close()

    asyncio.run(main())


async def _token(client: TestClient, scope: str | None = None) -> dict[str, str]:
    basic = base64.b64encode(b"c:s").decode()
    data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    response = await client.post("/oauth/token", data=data, headers={"Authorization": f"Basic {basic}"})
    assert response.status == 200
    return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


def test_no_token_is_401_in_the_spec_form() -> None:
    async def check(client: TestClient, store: SisStore, issuer: TokenIssuer) -> None:
        response = await client.get(f"{RO}/users")
        assert response.status == 401
        body = await response.json()
        assert body["imsx_codeMajor"] == "failure" and body["imsx_severity"] == "error"
        assert (
            body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]
            == "unauthorisedrequest"
        )

    run(check)


def test_scope_is_enforced() -> None:
    async def check(client: TestClient, store: SisStore, issuer: TokenIssuer) -> None:
        headers = await _token(client, "roster-core.readonly")
        assert (await client.get(f"{RO}/users", headers=headers)).status == 200
        assert (await client.get(f"{RO}/demographics", headers=headers)).status == 403
        assert (await client.get(f"{GB}/results", headers=headers)).status == 403

    run(check)


def test_filter_paging_sort_fields() -> None:
    async def check(client: TestClient, store: SisStore, issuer: TokenIssuer) -> None:
        h = await _token(client)
        params = {
            "filter": "dateLastModified>='2026-08-03T00:00:00Z' AND status='active'",
            "limit": "2",
            "offset": "1",
            "sort": "dateLastModified",
            "orderBy": "desc",
            "fields": "sourcedId,email",
        }
        response = await client.get(f"{RO}/users", params=params, headers=h)
        assert response.status == 200
        assert response.headers["X-Total-Count"] == "6"  # u3..u7 and t1, counted after the filter
        body = await response.json()
        assert [u["sourcedId"] for u in body["users"]] == ["u7", "u6"]
        assert set(body["users"][0]) == {"sourcedId", "email"}
        assert 'rel="next"' in response.headers["Link"]
        one = await client.get(
            f"{RO}/users", params={"filter": "email='u2@x.example' OR email='u5@x.example'"}, headers=h
        )
        assert sorted(u["sourcedId"] for u in (await one.json())["users"]) == ["u2", "u5"]
        bad = await client.get(f"{RO}/users", params={"filter": "givenName~"}, headers=h)
        assert bad.status == 400
        assert "invalid_filter_field" in await bad.text()

    run(check)


def test_nested_collections_and_single_records() -> None:
    async def check(client: TestClient, store: SisStore, issuer: TokenIssuer) -> None:
        h = await _token(client)
        students = await (await client.get(f"{RO}/classes/c1/students", headers=h)).json()
        assert sorted(u["sourcedId"] for u in students["users"]) == ["u1", "u2", "u3"]
        teachers = await (await client.get(f"{RO}/classes/c1/teachers", headers=h)).json()
        assert [u["sourcedId"] for u in teachers["users"]] == ["t1"]
        assert (await (await client.get(f"{RO}/schools", headers=h)).json())["orgs"][0]["sourcedId"] == "s1"
        assert (await (await client.get(f"{RO}/users/u1", headers=h)).json())["user"]["givenName"] == "U1"
        missing = await client.get(f"{RO}/users/nobody", headers=h)
        assert missing.status == 404 and "unknownobject" in await missing.text()
        assert (await client.get(f"{RO}/students/t1", headers=h)).status == 404

    run(check)


def test_gradebook_put_and_delete_are_logged_changes() -> None:
    async def check(client: TestClient, store: SisStore, issuer: TokenIssuer) -> None:
        h = await _token(client)
        result = {
            "lineItem": _ref("li1", "lineItem"),
            "student": _ref("u1", "user"),
            "scoreStatus": "fully graded",
            "score": 91,
        }
        created = await client.put(f"{GB}/results/r1", json={"result": result}, headers=h)
        assert created.status == 201
        assert (
            await client.put(f"{GB}/results/r1", json={"result": {**result, "score": 95}}, headers=h)
        ).status == 200
        assert store.get("results", "r1")["score"] == 95
        assert (await client.put(f"{GB}/results/r2", json={"result": {"score": 1}}, headers=h)).status == 400
        assert (await client.delete(f"{GB}/results/r1", headers=h)).status == 204
        assert store.get("results", "r1")["status"] == "tobedeleted"
        assert [c.op for c in store.changes()] == ["create", "update", "delete"]

    run(check)


def test_faults_are_served_then_cleared() -> None:
    async def check(client: TestClient, store: SisStore, issuer: TokenIssuer) -> None:
        h = await _token(client)
        await client.post(
            "/_sim/faults", json={"status": 429, "retry_after": 3, "times": 1, "path": "/users"}
        )
        busy = await client.get(f"{RO}/users", headers=h)
        assert busy.status == 429 and busy.headers["Retry-After"] == "3"
        assert (await client.get(f"{RO}/users", headers=h)).status == 200
        await client.post("/_sim/faults", json={"status": 200, "short_page": 2, "path": "/users"})
        short = await client.get(f"{RO}/users", headers=h)
        assert len((await short.json())["users"]) == 2 and short.headers["X-Total-Count"] == "8"
        await client.post("/_sim/tokens/revoke")
        assert (await client.get(f"{RO}/users", headers=h)).status == 401

    run(check)


def test_delta_index_sees_every_change_in_order() -> None:
    store = SisStore(_district())
    before = store.now()
    store.update("users", "u1", {"email": "new@x.example"}, kind="profile_update")
    store.delete("enrollments", "e2", kind="withdrawal")
    from connectors.oneroster.query import Query

    page, total = store.query("users", Query(filter=f"dateLastModified>'{before}'"))
    assert [u["sourcedId"] for u in page] == ["u1"] and total == 1
    page, _ = store.query("enrollments", Query(filter=f"dateLastModified>='{before}'"))
    assert page[0]["status"] == "tobedeleted"
    assert [(c.collection, c.op, c.kind) for c in store.changes()] == [
        ("users", "update", "profile_update"),
        ("enrollments", "delete", "withdrawal"),
    ]


def test_state_answers_the_records_as_stored_by_collection() -> None:
    async def check(client: TestClient, store: SisStore, issuer: TokenIssuer) -> None:
        store.update("users", "u1", {"email": "new@x.example"}, kind="profile_update")
        store.delete("enrollments", "e2", kind="withdrawal")
        everything = await client.get("/_sim/state")  # no token: a control endpoint
        assert everything.status == 200
        assert everything.headers["X-Sim-Last-Seq"] == "2"
        state = await everything.json()
        assert sorted(state) == ["enrollments", "orgs", "results", "users"]
        assert state["users"] == store.records("users") and state["results"] == []
        u1 = next(u for u in state["users"] if u["sourcedId"] == "u1")
        assert u1["email"] == "new@x.example" and u1["dateLastModified"] == store.changes()[0].at
        e2 = next(e for e in state["enrollments"] if e["sourcedId"] == "e2")
        assert e2["status"] == "tobedeleted"  # soft-deleted records are still there, as stored

        some = await (await client.get("/_sim/state", params={"collections": "users, enrollments"})).json()
        assert sorted(some) == ["enrollments", "users"]
        assert len(some["enrollments"]) == store.count("enrollments")

        unknown = await client.get("/_sim/state", params={"collections": "users,classrooms"})
        assert unknown.status == 400
        assert "classrooms" in (await unknown.json())["error"]
        # the change log is still there beside it
        changes = await (await client.get("/_sim/changes")).json()
        assert changes["lastSeq"] == 2

    run(check)


def test_a_snapshot_is_one_instant_of_the_store() -> None:
    store = SisStore(_district())
    seq, state = store.snapshot(["users", "nothing"])
    assert seq == 0 and state["nothing"] == [] and len(state["users"]) == store.count("users")
    store.update("users", "u1", {"email": "later@x.example"}, kind="profile_update")
    assert all(u.get("email") != "later@x.example" for u in state["users"])  # records are replaced
    seq, everything = store.snapshot()
    assert seq == 1 and sorted(everything) == sorted(store.collections)
