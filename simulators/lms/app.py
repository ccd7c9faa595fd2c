"""The simulated LMS's HTTP face: the subset of the Canvas REST API that the provisioning sink
and the tests use, with Canvas's pagination, throttling and error shapes
(:mod:`connectors.canvas.protocol`), behind a Bearer access token.

SIS Imports (:mod:`simulators.lms.sis_import`), on the root account (``1`` or ``self``):

- ``POST /api/v1/accounts/1/sis_imports``: ``import_type`` (``instructure_csv``, the default) and
  ``extension`` (``csv`` or ``zip``) in the query string or form; the data as the raw body
  (``application/zip``, ``text/csv`` or ``application/octet-stream``; without ``extension`` the
  type decides, else zip, as in Canvas) or as the multipart file field ``attachment`` (its file
  name's extension decides). 200 with the SIS import, ``workflow_state`` ``created``; it is applied
  in the background (``importing``, then ``imported``, ``imported_with_messages`` or
  ``failed_with_messages``). 400 for another import type or extension, no data, a zip that cannot
  be read, or a sub-account.
- ``GET /api/v1/accounts/1/sis_imports/:id``: that import (404 unknown);
  ``GET /api/v1/accounts/1/sis_imports``: ``{"sis_imports": [...]}``, the newest first, paged.

An import's POST and GETs are API requests like any other (token, faults, throttling); applying
it is not throttled, but ``import_rows_per_s`` (see below) paces it like Canvas's own importer.

Control API (no token; bind the simulator to loopback):

- ``GET /_sim/health``: object counts and request counters.
- ``GET /_sim/state``: the ground truth, named by SIS ids (:meth:`CanvasStore.ground_truth`).
- ``POST /_sim/faults``: ``{"status": 503, "times": 2, "path": "enrollments", "retry_after": 1}``
  answers the next matching API requests with that status; ``DELETE /_sim/faults`` clears them.
- ``POST /_sim/throttle``: ``{"capacity": 700, "leak_per_s": 10, "cost": 1, "preflight": 50}``
  retunes the rate limit (a throttling storm is a small capacity); ``{"capacity": 0}`` turns it off;
  ``{"import_rows_per_s": 200}`` paces SIS imports (0, the default: as fast as the store goes).
  Answers the settings.

Served by :class:`~simulators.lms.server.LmsSimulator` (they need its activity runs, write log
and Live Events emitter):

- ``POST /_sim/activity``: ``{"days": 5, "seed": 7}`` plays that many simulated school days (in
  seconds); ``{"duration_s": 60, "speed": 120, "seed": 7}`` plays live for 60 wall-clock seconds,
  simulated time running 120 times faster from now; ``"max_steps": N`` caps a run's steps (about one
  Live Event each) by playing a share of the courses. 202 ``{"started": true, ...the run}``; 400
  ``{"error": reason}`` for a bad body (both or neither of days and duration_s, a non-number,
  days < 1, duration_s or speed <= 0, max_steps < 1, an unknown field).
- ``GET /_sim/activity``: ``[totals, ...]``, one per run
  (:meth:`~simulators.lms.activity.GroundTruth.totals`).
- ``GET /_sim/activity/status``: ``{"runs": [totals, ...], "running": bool, "events": {...}}``
  (``events``: the Live Events emitter's counts, ``{}`` without an events URL).
- ``GET /_sim/truth``: the ground truth for reconciliation and latency, wall-clock times in epoch
  seconds: ``{"writes": {key: [time, ...]}, "grades": [{"assignment_id", "user_id", "score",
  "grade", "at"}], "events": {"counts": {...}, "delivered": [{"id", "name", "sent_at",
  "acked_at", "copy"}]}, "activity": [totals, ...], "running": bool}`` (keys in
  :mod:`simulators.lms.truth`; ``events`` is empty without an events URL).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from aiohttp import web

from connectors.canvas.protocol import (
    PER_PAGE_DEFAULT,
    PER_PAGE_MAX,
    RATE_LIMIT_REMAINING,
    RATE_LIMITED_BODY,
    REQUEST_COST,
    error_body,
    nested_params,
    page_links,
    validation_body,
)
from simulators.lms.sis_import import SisDataError, SisImports, read_upload
from simulators.lms.store import CanvasError, CanvasStore, Obj

__all__ = ["Fault", "LmsState", "Throttle", "build_app"]

log = logging.getLogger(__name__)

API = "/api/v1"
#: the largest request body accepted (an SIS import's zip of a whole district)
MAX_BODY = 256 * 1024 * 1024
#: a raw SIS import body's extension by its Content-Type (otherwise zip, as in Canvas)
_SIS_EXTENSIONS = {"application/zip": "zip", "application/x-zip-compressed": "zip", "text/csv": "csv"}
_THROTTLE_SETTINGS = ("capacity", "leak_per_s", "cost", "preflight", "import_rows_per_s")


@dataclass
class Fault:
    status: int = 500
    times: int = 1
    path: str = ""
    retry_after: float | None = None


@dataclass
class Throttle:
    """Canvas's leaky bucket, per access token: a request adds ``preflight`` while it runs and
    ``cost`` when done; the bucket drains ``leak_per_s`` a second; a request that finds it over
    ``capacity`` is refused with 403. ``capacity`` 0 turns throttling off.

    ``import_rows_per_s`` is no request limit but Canvas's own pace applying an SIS import's rows
    (0: as fast as the store goes)."""

    capacity: float = 700.0
    leak_per_s: float = 10.0
    cost: float = 0.1
    preflight: float = 50.0
    import_rows_per_s: float = 0.0
    _level: dict[str, float] = field(default_factory=dict)
    _at: dict[str, float] = field(default_factory=dict)

    def _drain(self, token: str) -> float:
        now = time.monotonic()
        level = max(0.0, self._level.get(token, 0.0) - (now - self._at.get(token, now)) * self.leak_per_s)
        self._level[token], self._at[token] = level, now
        return level

    def enter(self, token: str) -> bool:
        if self.capacity <= 0:
            return True
        level = self._drain(token)
        if level + self.preflight > self.capacity:
            return False
        self._level[token] = level + self.preflight
        return True

    def leave(self, token: str) -> float:
        """Ends a request: the preflight charge back, the real cost in; returns what is left."""
        if self.capacity <= 0:
            return 0.0
        level = self._drain(token) - self.preflight + self.cost
        self._level[token] = max(0.0, level)
        return max(0.0, self.capacity - self._level[token])

    def remaining(self, token: str) -> float:
        return max(0.0, self.capacity - self._drain(token)) if self.capacity > 0 else 0.0


@dataclass
class LmsState:
    store: CanvasStore
    tokens: frozenset[str]
    throttle: Throttle = field(default_factory=Throttle)
    faults: list[Fault] = field(default_factory=list)
    requests: int = 0
    throttled: int = 0
    faulted: int = 0
    sis_imports: SisImports = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # the pace is read through the state: tests swap in a new Throttle
        self.sis_imports = SisImports(self.store, pace=lambda: self.throttle.import_rows_per_s)


Handler = Callable[[web.Request, dict[str, Any]], Any]


# --- rendering -------------------------------------------------------------------------------


def _user_json(store: CanvasStore, user: Obj) -> Obj:
    login = store.login_of(user)
    return {
        "id": user["id"],
        "name": user["name"],
        "sortable_name": user["sortable_name"],
        "short_name": user["short_name"],
        "sis_user_id": login["sis_user_id"],
        "integration_id": login["integration_id"],
        "login_id": login["unique_id"],
        "email": user["email"],
        "created_at": user["created_at"],
    }


def _enrollment_json(store: CanvasStore, e: Obj) -> Obj:
    user = store.users[e["user_id"]]
    course = store.courses[e["course_id"]]
    section = store.sections[e["course_section_id"]]
    return {
        **e,
        "sis_user_id": store.login_of(user)["sis_user_id"],
        "sis_course_id": course["sis_course_id"],
        "sis_section_id": section["sis_section_id"],
        "user": {"id": user["id"], "name": user["name"], "sis_user_id": store.login_of(user)["sis_user_id"]},
    }


def _admin_json(store: CanvasStore, a: Obj) -> Obj:
    return {
        "id": a["id"],
        "role": a["role"],
        "role_id": a["role_id"],
        "workflow_state": a["workflow_state"],
        "user": _user_json(store, store.users[a["user_id"]]),
    }


def _role_json(r: Obj) -> Obj:
    return {**r, "account": {"id": r["account_id"]}}


def _section_json(store: CanvasStore, s: Obj) -> Obj:
    return {**s, "sis_course_id": store.courses[s["course_id"]]["sis_course_id"]}


# --- the app ---------------------------------------------------------------------------------


async def _params(request: web.Request) -> dict[str, Any]:
    """Query string and body (form-encoded or JSON) as one nested mapping; the body wins."""
    params = nested_params(request.query.items())
    if request.body_exists:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise CanvasError(400, "the body is not valid JSON") from None
            if not isinstance(body, dict):
                raise CanvasError(400, "the body must be a JSON object")
            params.update(body)
        else:
            form = await request.post()
            params.update(nested_params((k, v) for k, v in form.items() if isinstance(v, str)))
    return params


def _error(exc: CanvasError) -> web.Response:
    if exc.field is not None and exc.status == 400:
        body = validation_body({exc.field: (exc.kind, exc.message)})
    else:
        body = error_body(exc.message)
    return web.json_response(body, status=exc.status)


def _paged(
    request: web.Request, rows: list[Any], render: Callable[[Any], Any], wrap: str | None = None
) -> web.Response:
    try:
        page = max(1, int(request.query.get("page", "1")))
        per_page = min(PER_PAGE_MAX, max(1, int(request.query.get("per_page", str(PER_PAGE_DEFAULT)))))
    except ValueError:
        raise CanvasError(400, "page and per_page must be numbers", "page") from None
    chunk = rows[(page - 1) * per_page : page * per_page]
    body: Any = [render(r) for r in chunk]
    if wrap is not None:
        body = {wrap: body}
    headers = {"Link": page_links(str(request.url), page=page, per_page=per_page, total=len(rows))}
    return web.json_response(body, headers=headers)


def _root_account(store: CanvasStore, ref: str) -> None:
    account = store.account(1 if ref == "self" else ref)
    if account["id"] != 1:
        raise CanvasError(400, "SIS imports are made on the root account", "account_id", "invalid")


async def _sis_upload(request: web.Request, params: dict[str, Any]) -> tuple[bytes, str, str | None]:
    """An SIS import POST's data: (the bytes, ``csv`` or ``zip``, a lone CSV's file name)."""
    extension = str(params.get("extension") or "").lower().lstrip(".")
    name = None
    if request.content_type == "multipart/form-data":
        attachment = (await request.post()).get("attachment")
        if isinstance(attachment, web.FileField):
            data = await asyncio.to_thread(attachment.file.read)
            name = PurePosixPath(attachment.filename or "").name or None
            extension = PurePosixPath(name or "").suffix.lstrip(".").lower() or extension or "zip"
        elif isinstance(attachment, str):
            data, extension = attachment.encode(), extension or "csv"
        else:
            raise CanvasError(400, "attachment is required", "attachment", "blank")
    else:
        data = await request.read()
        extension = extension or _SIS_EXTENSIONS.get(request.content_type, "zip")
    if extension not in ("csv", "zip"):
        raise CanvasError(400, "extension must be csv or zip", "extension", "inclusion")
    if not data.strip():
        raise CanvasError(400, "no SIS data: send a CSV or a zip of CSVs", "attachment", "blank")
    return data, extension, name


def build_app(state: LmsState) -> web.Application:
    """The aiohttp application serving ``state``."""
    store = state.store

    @web.middleware
    async def canvas(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(API):
            return await handler(request)
        state.requests += 1
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if token not in state.tokens:
            return web.json_response(
                error_body("Invalid access token." if token else "user authorization required"),
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="canvas-lms"'},
            )
        for fault in state.faults:
            if fault.times > 0 and fault.path in request.path:
                fault.times -= 1
                state.faulted += 1
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                return web.json_response(error_body("simulated fault"), status=fault.status, headers=headers)
        state.faults = [f for f in state.faults if f.times > 0]
        throttle = state.throttle
        if not throttle.enter(token):
            state.throttled += 1
            headers = {RATE_LIMIT_REMAINING: f"{throttle.remaining(token):.1f}", REQUEST_COST: "0"}
            return web.Response(status=403, text=RATE_LIMITED_BODY, headers=headers)
        try:
            try:
                response = await handler(request)
            except CanvasError as exc:
                response = _error(exc)
        finally:
            left = throttle.leave(token)
        if throttle.capacity > 0:
            response.headers[REQUEST_COST] = f"{throttle.cost:g}"
            response.headers[RATE_LIMIT_REMAINING] = f"{left:.1f}"
        return response

    app = web.Application(middlewares=[canvas], client_max_size=MAX_BODY)

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            async def handle(request: web.Request) -> web.StreamResponse:
                params = await _params(request)
                with store.lock:  # SIS imports and activity runs write from their own threads
                    result = fn(request, params)
                if isinstance(result, web.StreamResponse):
                    return result
                return web.json_response(result)

            app.router.add_route(method, API + path, handle)
            return fn

        return register

    def arg(request: web.Request, name: str) -> str:
        return request.match_info[name]

    # accounts
    route("GET", "/accounts/{account}")(lambda r, p: store.account(arg(r, "account")))
    route("PUT", "/accounts/{account}")(
        lambda r, p: store.update_account(arg(r, "account"), p.get("account") or {})
    )
    route("GET", "/accounts/{account}/sub_accounts")(
        lambda r, p: _paged(r, store.sub_accounts(arg(r, "account"), str(p.get("recursive")) == "true"), dict)
    )
    route("POST", "/accounts/{account}/sub_accounts")(
        lambda r, p: store.create_sub_account(arg(r, "account"), p.get("account") or {})
    )
    route("DELETE", "/accounts/{account}/sub_accounts/{id}")(
        lambda r, p: store.delete_sub_account(arg(r, "account"), arg(r, "id"))
    )

    # terms
    def terms(r: web.Request, p: dict[str, Any]) -> Any:
        store.account(arg(r, "account"))
        live = [t for t in store.terms.values() if t["workflow_state"] != "deleted"]
        return _paged(r, live, dict, "enrollment_terms")

    def create_term(r: web.Request, p: dict[str, Any]) -> Any:
        store.account(arg(r, "account"))
        return store.create_term(p.get("enrollment_term") or {})

    def update_login(r: web.Request, p: dict[str, Any]) -> Any:
        store.account(arg(r, "account"))
        return store.update_login(arg(r, "login"), p.get("login") or {})

    def delete_course(r: web.Request, p: dict[str, Any]) -> Any:
        event = str(p.get("event") or "")
        store.delete_course(arg(r, "course"), event)
        return {event: True}

    route("GET", "/accounts/{account}/terms")(terms)
    route("GET", "/accounts/{account}/terms/{term}")(lambda r, p: store.term(arg(r, "term")))
    route("POST", "/accounts/{account}/terms")(create_term)
    route("PUT", "/accounts/{account}/terms/{term}")(
        lambda r, p: store.update_term(arg(r, "term"), p.get("enrollment_term") or {})
    )
    route("DELETE", "/accounts/{account}/terms/{term}")(lambda r, p: store.delete_term(arg(r, "term")))
    # users and logins
    route("GET", "/accounts/{account}/users")(
        lambda r, p: _paged(r, store.account_users(arg(r, "account")), lambda u: _user_json(store, u))
    )
    route("POST", "/accounts/{account}/users")(
        lambda r, p: _user_json(store, store.create_user(arg(r, "account"), p))
    )
    route("DELETE", "/accounts/{account}/users/{user}")(
        lambda r, p: {"user": _user_json(store, store.remove_user(arg(r, "account"), arg(r, "user")))}
    )
    route("GET", "/users/{user}")(lambda r, p: _user_json(store, _live_user(store, arg(r, "user"))))
    route("PUT", "/users/{user}")(lambda r, p: _user_json(store, store.update_user(arg(r, "user"), p)))
    route("GET", "/users/{user}/logins")(lambda r, p: _paged(r, store.logins_of(arg(r, "user")), dict))
    route("PUT", "/accounts/{account}/logins/{login}")(update_login)
    # courses and blueprints
    route("GET", "/accounts/{account}/courses")(
        lambda r, p: _paged(r, store.account_courses(arg(r, "account")), dict)
    )
    route("POST", "/accounts/{account}/courses")(lambda r, p: store.create_course(arg(r, "account"), p))
    route("GET", "/courses/{course}")(lambda r, p: store.course(arg(r, "course")))
    route("PUT", "/courses/{course}")(lambda r, p: store.update_course(arg(r, "course"), p))
    route("DELETE", "/courses/{course}")(delete_course)

    def associations(r: web.Request, p: dict[str, Any]) -> Any:
        if arg(r, "template") != "default":
            raise CanvasError(404, "The specified resource does not exist.")
        store.update_associations(
            arg(r, "course"), _list(p.get("course_ids_to_add")), _list(p.get("course_ids_to_remove"))
        )
        return {"success": True}

    def associated(r: web.Request, p: dict[str, Any]) -> Any:
        template = store.course(arg(r, "course"))
        ids = store.associations.get(template["id"], set())
        return _paged(r, [store.courses[i] for i in sorted(ids)], dict)

    route("PUT", "/courses/{course}/blueprint_templates/{template}/update_associations")(associations)
    route("GET", "/courses/{course}/blueprint_templates/{template}/associated_courses")(associated)
    # sections
    route("GET", "/courses/{course}/sections")(
        lambda r, p: _paged(r, store.course_sections(arg(r, "course")), lambda s: _section_json(store, s))
    )
    route("POST", "/courses/{course}/sections")(
        lambda r, p: _section_json(store, store.create_section(arg(r, "course"), p))
    )
    route("GET", "/sections/{section}")(lambda r, p: _section_json(store, store.section(arg(r, "section"))))
    route("PUT", "/sections/{section}")(
        lambda r, p: _section_json(store, store.update_section(arg(r, "section"), p))
    )
    route("DELETE", "/sections/{section}")(
        lambda r, p: _section_json(store, store.delete_section(arg(r, "section")))
    )

    # enrollments
    def list_enrollments(**where: Any) -> Handler:
        def handle(r: web.Request, p: dict[str, Any]) -> Any:
            refs = {k: arg(r, v) for k, v in where.items()}
            rows = store.list_enrollments(
                **refs,
                types=[*_list(p.get("type")), *_list(p.get("role"))],
                states=_list(p.get("state")),
                user_id=p.get("user_id"),
            )
            return _paged(r, rows, lambda e: _enrollment_json(store, e))

        return handle

    route("GET", "/courses/{course}/enrollments")(list_enrollments(course_ref="course"))
    route("GET", "/sections/{section}/enrollments")(list_enrollments(section_ref="section"))
    route("GET", "/users/{user}/enrollments")(list_enrollments(user_ref="user"))
    route("POST", "/courses/{course}/enrollments")(
        lambda r, p: _enrollment_json(
            store, store.enroll(course_ref=arg(r, "course"), section_ref=None, params=p)
        )
    )
    route("POST", "/sections/{section}/enrollments")(
        lambda r, p: _enrollment_json(
            store, store.enroll(course_ref=None, section_ref=arg(r, "section"), params=p)
        )
    )
    route("DELETE", "/courses/{course}/enrollments/{id}")(
        lambda r, p: _enrollment_json(
            store, store.end_enrollment(arg(r, "course"), arg(r, "id"), str(p.get("task") or "conclude"))
        )
    )
    route("PUT", "/courses/{course}/enrollments/{id}/reactivate")(
        lambda r, p: _enrollment_json(store, store.reactivate(arg(r, "course"), arg(r, "id")))
    )
    # account admins and roles
    route("GET", "/accounts/{account}/admins")(
        lambda r, p: _paged(
            r,
            store.account_admins(arg(r, "account"), _list(p.get("user_id"))),
            lambda a: _admin_json(store, a),
        )
    )
    route("POST", "/accounts/{account}/admins")(
        lambda r, p: _admin_json(store, store.add_admin(arg(r, "account"), p))
    )
    route("DELETE", "/accounts/{account}/admins/{user}")(
        lambda r, p: _admin_json(
            store, store.remove_admin(arg(r, "account"), arg(r, "user"), p.get("role"), p.get("role_id"))
        )
    )
    route("GET", "/accounts/{account}/roles")(
        lambda r, p: _paged(r, store.account_roles(arg(r, "account")), _role_json)
    )
    route("POST", "/accounts/{account}/roles")(
        lambda r, p: _role_json(store.create_role(arg(r, "account"), p))
    )

    # SIS imports
    async def create_sis_import(request: web.Request) -> web.Response:
        _root_account(store, arg(request, "account"))
        params = await _params(request)
        if str(params.get("import_type") or "instructure_csv") != "instructure_csv":
            raise CanvasError(400, "invalid import_type parameter", "import_type", "inclusion")
        data, extension, name = await _sis_upload(request, params)
        try:
            files = await asyncio.to_thread(read_upload, data, extension, name)
        except SisDataError as exc:
            raise CanvasError(400, str(exc), "attachment", "invalid") from None
        return web.json_response(state.sis_imports.submit(files))

    def sis_imports(r: web.Request, p: dict[str, Any]) -> Any:
        _root_account(store, arg(r, "account"))
        return _paged(r, state.sis_imports.listed(), dict, "sis_imports")

    def sis_import(r: web.Request, p: dict[str, Any]) -> Any:
        _root_account(store, arg(r, "account"))
        return state.sis_imports.get(arg(r, "id"))

    app.router.add_post(API + "/accounts/{account}/sis_imports", create_sis_import)
    route("GET", "/accounts/{account}/sis_imports")(sis_imports)
    route("GET", "/accounts/{account}/sis_imports/{id}")(sis_import)
    # assignments and submissions
    route("GET", "/courses/{course}/assignments")(
        lambda r, p: _paged(r, store.course_assignments(arg(r, "course")), dict)
    )
    route("POST", "/courses/{course}/assignments")(lambda r, p: store.create_assignment(arg(r, "course"), p))
    route("GET", "/courses/{course}/assignments/{a}")(
        lambda r, p: store.assignment(arg(r, "course"), arg(r, "a"))
    )
    route("PUT", "/courses/{course}/assignments/{a}")(
        lambda r, p: store.update_assignment(arg(r, "course"), arg(r, "a"), p)
    )
    route("GET", "/courses/{course}/assignments/{a}/submissions")(
        lambda r, p: _paged(r, store.assignment_submissions(arg(r, "course"), arg(r, "a")), dict)
    )

    def submit(r: web.Request, p: dict[str, Any]) -> Any:
        student = p.get("as_user_id")
        if student is None:
            raise CanvasError(
                400, "as_user_id is required (the simulator submits for a student)", "as_user_id", "blank"
            )
        return store.submit(arg(r, "course"), arg(r, "a"), str(student))

    route("POST", "/courses/{course}/assignments/{a}/submissions")(submit)
    route("PUT", "/courses/{course}/assignments/{a}/submissions/{user}")(
        lambda r, p: store.grade(arg(r, "course"), arg(r, "a"), arg(r, "user"), p)
    )

    # control API
    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "counts": store.counts(),
                "requests": state.requests,
                "throttled": state.throttled,
                "faulted": state.faulted,
            }
        )

    async def ground_truth(request: web.Request) -> web.Response:
        return web.json_response(store.ground_truth())

    async def faults(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            state.faults.clear()
            return web.json_response({"faults": 0})
        try:
            body = await request.json()
            state.faults.append(Fault(**body))
        except (ValueError, TypeError) as exc:
            return web.json_response(error_body(f"bad fault: {exc}"), status=400)
        return web.json_response({"faults": len(state.faults)})

    async def throttle(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            for name in _THROTTLE_SETTINGS:
                if name in body:
                    setattr(state.throttle, name, float(body[name]))
        except (ValueError, TypeError) as exc:
            return web.json_response(error_body(f"bad throttle: {exc}"), status=400)
        return web.json_response({name: getattr(state.throttle, name) for name in _THROTTLE_SETTINGS})

    app.router.add_get("/_sim/health", health)
    app.router.add_get("/_sim/state", ground_truth)
    app.router.add_post("/_sim/faults", faults)
    app.router.add_delete("/_sim/faults", faults)
    app.router.add_post("/_sim/throttle", throttle)
    return app


def _live_user(store: CanvasStore, ref: str) -> Obj:
    user = store.user(ref)
    if user["workflow_state"] == "deleted":
        raise CanvasError(404, "The specified resource does not exist.")
    return user


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        return parsed if isinstance(parsed, list) else [value]
    return [value]
