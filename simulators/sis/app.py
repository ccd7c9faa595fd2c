"""The simulated SIS's HTTP face: a OneRoster 1.2 provider (rostering and gradebook services)
behind OAuth 2 client credentials, plus a ``/_sim`` control API for tests and demos.

Query parameters, paging headers and error bodies come from the product's protocol code in
``connectors/oneroster``; this module only routes.

Control API (no token; bind the simulator to loopback):

- ``GET /_sim/health``: counts and the last change sequence.
- ``GET /_sim/changes?since=N&limit=M``: the ground-truth change log.
- ``GET /_sim/state?collections=users,enrollments``: ``{"<collection>": [record, ...]}``, the
  records as stored (every collection without the parameter; 400 naming an unknown one); the
  ``X-Sim-Last-Seq`` header is the last change the answer includes.
- ``POST /_sim/mutate``: ``{"op": "create|update|delete|hard_delete", "collection", "sourcedId",
  "record" | "set"}``; answers the change.
- ``POST /_sim/faults``: queue faults for the next matching requests: ``{"status": 429,
  "times": 2, "retry_after": 1, "path": "users", "body": "json|html|malformed|truncated",
  "short_page": 7}``; ``DELETE /_sim/faults`` clears them.
- ``POST /_sim/tokens/revoke``: expire every token now (a token lost mid-sync).
- ``POST /_sim/generator``: ``{"rate": 5.0}`` starts or retunes the change generator (0 stops it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.oneroster.auth import (
    GRADEBOOK_CREATEPUT,
    GRADEBOOK_DELETE,
    GRADEBOOK_READONLY,
    ROSTER_CORE_READONLY,
    ROSTER_DEMOGRAPHICS_READONLY,
    ROSTER_READONLY,
    TokenIssuer,
)
from connectors.oneroster.errors import CodeMinor, OneRosterError, error_body
from connectors.oneroster.models import GRADEBOOK_PATH, ROSTERING_PATH, entity
from connectors.oneroster.paging import paging_headers
from connectors.oneroster.query import Query
from simulators.sis.store import SisStore

__all__ = ["Fault", "SimState", "build_app"]

log = logging.getLogger(__name__)


Where = Callable[[dict[str, Any]], bool] | None


@dataclass
class Fault:
    """A fault served instead of (or on top of) the next ``times`` matching answers."""

    status: int = 500
    times: int = 1
    path: str = ""
    retry_after: float | None = None
    body: str = "json"  # json | html | malformed | truncated
    short_page: int | None = None  # serve at most this many records (status 200)


@dataclass
class SimState:
    store: SisStore
    issuer: TokenIssuer
    known_fields: dict[str, frozenset[str]]
    faults: list[Fault] = field(default_factory=list)
    requests: int = 0
    on_generator: Callable[[float], None] | None = None


def _ref_is(path: str, sourced_id: str) -> Callable[[dict[str, Any]], bool]:
    def where(record: dict[str, Any]) -> bool:
        value = record.get(path)
        if isinstance(value, list):
            return any(isinstance(v, dict) and v.get("sourcedId") == sourced_id for v in value)
        return isinstance(value, dict) and value.get("sourcedId") == sourced_id

    return where


def _has_role(*roles: str) -> Callable[[dict[str, Any]], bool]:
    wanted = set(roles)
    return lambda user: any(r.get("role") in wanted for r in user.get("roles") or [])


def _all(*checks: Where) -> Where:
    live = [c for c in checks if c is not None]
    if not live:
        return None
    return lambda record: all(check(record) for check in live)


def _error(status: int, minor: CodeMinor | str | None = None, text: str | None = None) -> web.Response:
    return web.json_response(error_body(status, minor, text), status=status)


class _Routes:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.store = state.store

    # --- plumbing -----------------------------------------------------------------------
    def _authorise(self, request: web.Request, *scopes: str) -> web.Response | None:
        grant = self.state.issuer.check(request.headers.get("Authorization"))
        if grant is None:
            return _error(401, CodeMinor.UNAUTHORISED_REQUEST, "missing, invalid or expired bearer token")
        if not grant.scopes.intersection(scopes):
            return _error(
                403, CodeMinor.FORBIDDEN, f"this endpoint needs one of the scopes {', '.join(scopes)}"
            )
        return None

    def _fault(self, request: web.Request) -> Fault | None:
        for fault in self.state.faults:
            if fault.path in request.path:
                fault.times -= 1
                if fault.times <= 0:
                    self.state.faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: Fault) -> web.Response:
        headers = {} if fault.retry_after is None else {"Retry-After": str(int(fault.retry_after))}
        if fault.body == "html":
            html = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
            return web.Response(status=fault.status, text=html, content_type="text/html", headers=headers)
        if fault.body == "malformed":
            return web.Response(
                status=fault.status,
                text='{"users": [{"sourcedId": ',
                headers=headers,
                content_type="application/json",
            )
        return web.json_response(error_body(fault.status), status=fault.status, headers=headers)

    def collection(
        self,
        request: web.Request,
        name: str,
        where: Where,
        scopes: tuple[str, ...],
        wrapper: str | None = None,
    ) -> web.Response:
        self.state.requests += 1
        denied = self._authorise(request, *scopes)
        if denied is not None:
            return denied
        fault = self._fault(request)
        if fault is not None and fault.short_page is None:
            return self._fault_response(fault)
        try:
            query, _warnings = Query.parse(request.query).check(self.state.known_fields[name])
        except OneRosterError as exc:
            return web.json_response(exc.to_body(), status=400)
        page, total = self.store.query(name, query, where)
        if fault is not None and fault.short_page is not None:
            page = page[: fault.short_page]
        headers = paging_headers(str(request.url), offset=query.offset, limit=query.limit, total=total)
        body = json.dumps({wrapper or name: page}, separators=(",", ":"))
        if fault is not None and fault.body == "truncated":
            body = body[: len(body) // 2]
        return web.Response(text=body, content_type="application/json", headers=headers)

    def single(
        self, request: web.Request, name: str, scopes: tuple[str, ...], where: Where = None
    ) -> web.Response:
        self.state.requests += 1
        denied = self._authorise(request, *scopes)
        if denied is not None:
            return denied
        fault = self._fault(request)
        if fault is not None:
            return self._fault_response(fault)
        sid = request.match_info["id"]
        record = self.store.get(name, sid)
        if record is None or (where is not None and not where(record)):
            return _error(404, CodeMinor.UNKNOWN_OBJECT, f"no {entity(name).singular} with sourcedId {sid!r}")
        try:
            query = Query.parse(request.query)
        except OneRosterError as exc:
            return web.json_response(exc.to_body(), status=400)
        if query.fields is not None:
            record = {k: record[k] for k in query.fields if k in record}
        return web.json_response({entity(name).singular: record})

    # --- nested helpers -------------------------------------------------------------------
    def _users_of_class(self, class_id: str, role: str | None) -> Callable[[dict[str, Any]], bool]:
        ids = {
            e["user"]["sourcedId"]
            for e in self.store.records("enrollments", _ref_is("class", class_id))
            if role is None or e.get("role") == role
        }
        return lambda user: user["sourcedId"] in ids

    def _classes_of_user(self, user_id: str) -> Callable[[dict[str, Any]], bool]:
        ids = {e["class"]["sourcedId"] for e in self.store.records("enrollments", _ref_is("user", user_id))}
        return lambda cls: cls["sourcedId"] in ids

    def _users_at_school(self, school_id: str, role: str | None) -> Callable[[dict[str, Any]], bool]:
        def where(user: dict[str, Any]) -> bool:
            return any(
                r.get("org", {}).get("sourcedId") == school_id and (role is None or r.get("role") == role)
                for r in user.get("roles") or []
            )

        return where

    # --- gradebook writes -----------------------------------------------------------------
    async def put(self, request: web.Request, name: str) -> web.Response:
        denied = self._authorise(request, GRADEBOOK_CREATEPUT)
        if denied is not None:
            return denied
        sid = request.match_info["id"]
        try:
            payload = await request.json()
            record = payload[entity(name).singular]
            if not isinstance(record, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            text = f'body must be JSON {{"{entity(name).singular}": {{...}}}}'
            return _error(400, CodeMinor.INVALID_DATA, text)
        if record.get("sourcedId", sid) != sid:
            return _error(400, CodeMinor.INVALID_DATA, "sourcedId in the body differs from the URL")
        missing = [f for f in _REQUIRED_ON_PUT.get(name, ()) if f not in record]
        if missing:
            return _error(400, CodeMinor.INVALID_DATA, f"missing required field(s): {', '.join(missing)}")
        existed = self.store.get(name, sid) is not None
        self.store.put(
            name, {**record, "sourcedId": sid, "status": record.get("status", "active")}, kind="gradebook_put"
        )
        return web.json_response(
            {entity(name).singular: self.store.get(name, sid)}, status=200 if existed else 201
        )

    async def delete(self, request: web.Request, name: str) -> web.Response:
        denied = self._authorise(request, GRADEBOOK_DELETE)
        if denied is not None:
            return denied
        sid = request.match_info["id"]
        if self.store.get(name, sid) is None:
            return _error(404, CodeMinor.UNKNOWN_OBJECT, f"no {entity(name).singular} with sourcedId {sid!r}")
        self.store.delete(name, sid, kind="gradebook_delete")
        return web.Response(status=204)


_REQUIRED_ON_PUT = {
    "categories": ("title",),
    "lineItems": ("title", "assignDate", "dueDate", "class", "school", "category"),
    "results": ("lineItem", "student", "scoreStatus"),
}

_CORE = (ROSTER_CORE_READONLY, ROSTER_READONLY)
_DEMOGRAPHICS = (ROSTER_READONLY, ROSTER_DEMOGRAPHICS_READONLY)
_GRADES = (GRADEBOOK_READONLY, GRADEBOOK_CREATEPUT)


def build_app(state: SimState) -> web.Application:
    """The aiohttp application serving ``state``."""
    r = _Routes(state)
    app = web.Application()
    add = app.router.add_route

    def coll(
        path: str,
        name: str,
        make_where: Callable[[web.Request], Where] = lambda _: None,
        scopes: tuple[str, ...] = _CORE,
        wrapper: str | None = None,
    ) -> None:
        async def handler(request: web.Request) -> web.Response:
            return r.collection(request, name, make_where(request), scopes, wrapper)

        add("GET", path, handler)

    def one(path: str, name: str, scopes: tuple[str, ...] = _CORE, where: Where = None) -> None:
        async def handler(request: web.Request) -> web.Response:
            return r.single(request, name, scopes, where)

        add("GET", path, handler)

    def mid(request: web.Request, key: str = "id") -> str:
        return request.match_info[key]

    schools = lambda o: o.get("type") == "school"  # noqa: E731
    is_term = lambda s: s.get("type") == "term"  # noqa: E731
    is_period = lambda s: s.get("type") == "gradingPeriod"  # noqa: E731
    student = _has_role("student")
    teacher = _has_role("teacher")

    ro = ROSTERING_PATH
    # orgs and schools
    coll(f"{ro}/orgs", "orgs")
    one(f"{ro}/orgs/{{id}}", "orgs")
    coll(f"{ro}/schools", "orgs", lambda q: schools)
    one(f"{ro}/schools/{{id}}", "orgs", where=schools)
    coll(f"{ro}/schools/{{id}}/classes", "classes", lambda q: _ref_is("school", mid(q)))
    coll(f"{ro}/schools/{{id}}/courses", "courses", lambda q: _ref_is("org", mid(q)))
    coll(f"{ro}/schools/{{id}}/enrollments", "enrollments", lambda q: _ref_is("school", mid(q)))
    coll(f"{ro}/schools/{{id}}/students", "users", lambda q: r._users_at_school(mid(q), "student"))
    coll(f"{ro}/schools/{{id}}/teachers", "users", lambda q: r._users_at_school(mid(q), "teacher"))
    coll(f"{ro}/schools/{{id}}/terms", "academicSessions", lambda q: is_term)
    coll(
        f"{ro}/schools/{{sid}}/classes/{{cid}}/enrollments",
        "enrollments",
        lambda q: _all(_ref_is("school", mid(q, "sid")), _ref_is("class", mid(q, "cid"))),
    )
    coll(
        f"{ro}/schools/{{sid}}/classes/{{cid}}/students",
        "users",
        lambda q: r._users_of_class(mid(q, "cid"), "student"),
    )
    coll(
        f"{ro}/schools/{{sid}}/classes/{{cid}}/teachers",
        "users",
        lambda q: r._users_of_class(mid(q, "cid"), "teacher"),
    )
    # academic sessions
    coll(f"{ro}/academicSessions", "academicSessions")
    one(f"{ro}/academicSessions/{{id}}", "academicSessions")
    coll(f"{ro}/terms", "academicSessions", lambda q: is_term)
    one(f"{ro}/terms/{{id}}", "academicSessions", where=is_term)
    coll(f"{ro}/terms/{{id}}/classes", "classes", lambda q: _ref_is("terms", mid(q)))
    coll(
        f"{ro}/terms/{{id}}/gradingPeriods",
        "academicSessions",
        lambda q: _all(is_period, _ref_is("parent", mid(q))),
    )
    coll(f"{ro}/gradingPeriods", "academicSessions", lambda q: is_period)
    one(f"{ro}/gradingPeriods/{{id}}", "academicSessions", where=is_period)
    # courses and classes
    coll(f"{ro}/courses", "courses")
    one(f"{ro}/courses/{{id}}", "courses")
    coll(f"{ro}/courses/{{id}}/classes", "classes", lambda q: _ref_is("course", mid(q)))
    coll(f"{ro}/classes", "classes")
    one(f"{ro}/classes/{{id}}", "classes")
    coll(f"{ro}/classes/{{id}}/students", "users", lambda q: r._users_of_class(mid(q), "student"))
    coll(f"{ro}/classes/{{id}}/teachers", "users", lambda q: r._users_of_class(mid(q), "teacher"))
    # users
    coll(f"{ro}/users", "users")
    one(f"{ro}/users/{{id}}", "users")
    coll(f"{ro}/users/{{id}}/classes", "classes", lambda q: r._classes_of_user(mid(q)))
    coll(f"{ro}/students", "users", lambda q: student)
    one(f"{ro}/students/{{id}}", "users", where=student)
    coll(f"{ro}/students/{{id}}/classes", "classes", lambda q: r._classes_of_user(mid(q)))
    coll(f"{ro}/teachers", "users", lambda q: teacher)
    one(f"{ro}/teachers/{{id}}", "users", where=teacher)
    coll(f"{ro}/teachers/{{id}}/classes", "classes", lambda q: r._classes_of_user(mid(q)))
    # enrollments, demographics
    coll(f"{ro}/enrollments", "enrollments")
    one(f"{ro}/enrollments/{{id}}", "enrollments")
    coll(f"{ro}/demographics", "demographics", scopes=_DEMOGRAPHICS)
    one(f"{ro}/demographics/{{id}}", "demographics", scopes=_DEMOGRAPHICS)

    gb = GRADEBOOK_PATH
    for name in ("categories", "lineItems", "results"):
        coll(f"{gb}/{name}", name, scopes=_GRADES)
        one(f"{gb}/{name}/{{id}}", name, scopes=_GRADES)

        def bind(name: str) -> None:
            async def put(request: web.Request) -> web.Response:
                return await r.put(request, name)

            async def delete(request: web.Request) -> web.Response:
                return await r.delete(request, name)

            add("PUT", f"{gb}/{name}/{{id}}", put)
            add("DELETE", f"{gb}/{name}/{{id}}", delete)

        bind(name)
    coll(f"{gb}/classes/{{id}}/lineItems", "lineItems", lambda q: _ref_is("class", mid(q)), _GRADES)
    coll(f"{gb}/classes/{{id}}/results", "results", lambda q: _ref_is("class", mid(q)), _GRADES)
    coll(
        f"{gb}/classes/{{cid}}/lineItems/{{lid}}/results",
        "results",
        lambda q: _ref_is("lineItem", mid(q, "lid")),
        _GRADES,
    )
    coll(
        f"{gb}/classes/{{cid}}/students/{{sid}}/results",
        "results",
        lambda q: _all(_ref_is("class", mid(q, "cid")), _ref_is("student", mid(q, "sid"))),
        _GRADES,
    )

    # OAuth 2 token endpoint
    async def token(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        status, body = state.issuer.issue(form, request.headers.get("Authorization"))
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    add("POST", "/oauth/token", token)
    _control_routes(app, state)

    async def not_found(request: web.Request) -> web.Response:
        return _error(404, CodeMinor.UNKNOWN_OBJECT, f"no endpoint {request.path}")

    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def _control_routes(app: web.Application, state: SimState) -> None:
    add = app.router.add_route
    store = state.store

    async def health(request: web.Request) -> web.Response:
        counts = {name: store.count(name) for name in store.collections}
        return web.json_response(
            {"status": "ok", "counts": counts, "lastSeq": store.last_seq, "requests": state.requests}
        )

    async def changes(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        limit = int(request.query["limit"]) if "limit" in request.query else None
        found = store.changes(since, limit)
        return web.json_response({"changes": [c.to_json() for c in found], "lastSeq": store.last_seq})

    async def current(request: web.Request) -> web.Response:
        wanted = [n.strip() for n in request.query.get("collections", "").split(",") if n.strip()]
        unknown = [n for n in wanted if n not in store.collections]
        if unknown:
            known = ", ".join(sorted(store.collections))
            return web.json_response(
                {"error": f"unknown collection(s) {', '.join(unknown)}; known: {known}"}, status=400
            )
        # Encoded off the event loop: a district's state is tens of MB.
        last_seq, state = store.snapshot(wanted or None)
        body = await asyncio.to_thread(lambda: json.dumps(state, separators=(",", ":")).encode())
        return web.Response(
            body=body, content_type="application/json", headers={"X-Sim-Last-Seq": str(last_seq)}
        )

    async def mutate(request: web.Request) -> web.Response:
        body = await request.json()
        op, name = body.get("op"), body.get("collection")
        kind = body.get("kind", "manual")
        try:
            if op == "create" or (op == "update" and "record" in body):
                change = store.put(name, body["record"], kind=kind)
            elif op == "update":
                change = store.update(name, body["sourcedId"], body.get("set", {}), kind=kind)
            elif op in ("delete", "hard_delete"):
                change = store.delete(name, body["sourcedId"], kind=kind, hard=op == "hard_delete")
            else:
                return web.json_response({"error": f"unknown op {op!r}"}, status=400)
        except KeyError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response(change.to_json())

    async def add_faults(request: web.Request) -> web.Response:
        body = await request.json()
        items = body if isinstance(body, list) else [body]
        for item in items:
            state.faults.append(Fault(**item))
        return web.json_response({"queued": len(state.faults)})

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"queued": 0})

    async def revoke(request: web.Request) -> web.Response:
        return web.json_response({"revoked": state.issuer.revoke_all()})

    async def generator(request: web.Request) -> web.Response:
        body = await request.json()
        if state.on_generator is None:
            return web.json_response({"error": "no change generator"}, status=409)
        state.on_generator(float(body.get("rate", 0)))
        return web.json_response({"rate": float(body.get("rate", 0))})

    add("GET", "/_sim/health", health)
    add("GET", "/_sim/changes", changes)
    add("GET", "/_sim/state", current)
    add("POST", "/_sim/mutate", mutate)
    add("POST", "/_sim/faults", add_faults)
    add("DELETE", "/_sim/faults", clear_faults)
    add("POST", "/_sim/tokens/revoke", revoke)
    add("POST", "/_sim/generator", generator)
