"""The dashboard's web app (aiohttp): pages rendered on the server from the analytics store.

Pages: ``/`` the district overview (sync health, engagement trend, work by school),
``/schools/{id}``, ``/classes/{id}``, ``/students/{id}``, and ``/rows/{kind}``: the rows behind
any number. ``?school=`` and ``?term=`` filter. Every page but ``/login`` and ``/healthz`` needs a
signed-in session; each answer carries its server time in ``Server-Timing``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from dashboard import charts
from dashboard.auth import Credential, SessionSigner
from dashboard.health import KafkaLag
from dashboard.queries import ROW_KINDS, Filters, Store

__all__ = ["COOKIE", "build_app"]

log = logging.getLogger(__name__)

COOKIE = "sislms_session"
FILTERS = web.RequestKey("filters", Filters)
USER = web.RequestKey("user", str)
TEMPLATES = Path(__file__).parent / "templates"
OPEN_PATHS = ("/login", "/healthz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _fmt_time(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = max(0.0, time.time() - value.timestamp())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def build_app(
    store: Store,
    credential: Credential,
    signer: SessionSigner,
    *,
    lag: KafkaLag | None = None,
    holds: Callable[[], list[Any]] | None = None,
    secure_cookie: bool = False,
) -> web.Application:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["t"] = _fmt_time
    env.filters["ago"] = _ago
    env.filters["num"] = lambda v, d=0: "—" if v is None else f"{float(v):,.{d}f}"

    def url(path: str, f: Filters | None = None, **extra: Any) -> str:
        q = (f or Filters()).query(**extra)
        return f"{path}?{urlencode(q)}" if q else path

    env.globals["url"] = url

    async def render(request: web.Request, name: str, **ctx: Any) -> web.Response:
        f = request[FILTERS]
        ctx.setdefault("schools", await store.schools())
        ctx.setdefault("terms", await store.terms())
        html = env.get_template(name).render(filters=f, user=request.get(USER), path=request.path, **ctx)
        return web.Response(text=html, content_type="text/html")

    @web.middleware
    async def timing(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        spent = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"app;dur={spent:.1f}"
        return response

    @web.middleware
    async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[FILTERS] = Filters(request.query.get("school") or None, request.query.get("term") or None)
        if request.path in OPEN_PATHS:
            return await handler(request)
        user = signer.check(request.cookies.get(COOKIE))
        if user is None:
            raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}")
        request[USER] = user
        return await handler(request)

    async def login_form(request: web.Request) -> web.Response:
        return await _login_page(request, None)

    async def _login_page(request: web.Request, error: str | None, status: int = 200) -> web.Response:
        html = env.get_template("login.html").render(
            error=error, next=request.query.get("next", "/"), filters=Filters(), user=None
        )
        return web.Response(text=html, content_type="text/html", status=status)

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        user, password = str(form.get("user", "")), str(form.get("password", ""))
        if not credential.matches(user, password):
            log.warning("dashboard: a sign-in was refused")
            return await _login_page(request, "Wrong user name or password.", status=401)
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # only our own pages
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE, signer.make(user), httponly=True, samesite="Strict", secure=secure_cookie,
            max_age=int(signer.ttl_s),
        )  # fmt: skip
        raise response

    async def logout(request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE)
        raise response

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"healthy": True})

    async def overview(request: web.Request) -> web.Response:
        f = request[FILTERS]
        trend = await store.trend(f)
        work = await store.work_by_school(f)
        groups = await lag.groups() if lag else []
        pending_holds = [h for h in (holds() if holds else []) if getattr(h, "status", "") == "pending"]
        return await render(
            request, "overview.html",
            freshness=await store.freshness(), provisioning=await store.provisioning(),
            dead_letters=await store.dead_letters(), passback=await store.passback(), groups=groups,
            lag_error=lag.error if lag else None, holds=pending_holds, trend=trend, work=work,
            trend_chart=charts.line(
                "Hours on task per day", [(str(r["day"]), float(r["hours"])) for r in trend], "hours",
                [url("/rows/engagement", None, course_key="*", day=str(r["day"])) for r in trend],
            ),
            active_chart=charts.line(
                "Active users per day", [(str(r["day"]), float(r["active"])) for r in trend], "users",
            ),
            work_chart=charts.bars(
                "Missing work due in the last 14 days, by school",
                [(r["name"] or r["school_sourced_id"], float(r["missing"])) for r in work], "missing",
                [url("/rows/assignments", None, status="missing", school_sourced_id=r["school_sourced_id"])
                 for r in work],
            ),
        )  # fmt: skip

    async def school_page(request: web.Request) -> web.Response:
        f = request[FILTERS]
        school_id = request.match_info["id"]
        school = await store.school(school_id)
        if school is None:
            raise web.HTTPNotFound(text=f"no school {school_id}")
        classes = await store.classes(school_id, f)
        minutes = await store.minutes_distribution(school_id)
        return await render(
            request, "school.html", school=school, classes=classes,
            distribution=charts.histogram("Students by minutes on task, last 7 days", minutes, "min"),
            trend_chart=charts.line(
                "Hours on task per day",
                [(str(r["day"]), float(r["hours"])) for r in await store.trend(Filters(school_id, f.term))],
                "hours",
            ),
        )  # fmt: skip

    async def class_page(request: web.Request) -> web.Response:
        class_id = request.match_info["id"]
        klass = await store.klass(class_id)
        if klass is None:
            raise web.HTTPNotFound(text=f"no class {class_id}")
        students = await store.class_students(class_id, klass["course_id"])
        return await render(
            request, "class.html", klass=klass, students=students,
            assignments=await store.class_assignments(class_id),
            grades=await store.class_grades(klass["course_id"]),
            minutes_chart=charts.bars(
                "Minutes on task per student, last 7 days",
                [(f"{s['given_name'] or ''} {s['family_name'] or ''}".strip() or s["user_sourced_id"],
                  float(s["minutes"])) for s in students], "min",
                [url(f"/students/{s['user_sourced_id']}") for s in students],
            ),
        )  # fmt: skip

    async def student_page(request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        student = await store.student(user_id)
        if student is None:
            raise web.HTTPNotFound(text=f"no user {user_id}")
        days = await store.student_days(user_id)
        return await render(
            request, "student.html", student=student, days=days,
            courses=await store.student_courses(user_id), work=await store.student_work(user_id),
            grades=await store.student_grades(user_id, student["lms_user_id"]),
            days_chart=charts.line(
                "Minutes on task per day", [(str(r["day"]), float(r["minutes"])) for r in days], "min",
                [url("/rows/engagement", None, sis_user_id=user_id, day=str(r["day"])) for r in days],
            ),
        )  # fmt: skip

    async def rows_page(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in ROW_KINDS:
            raise web.HTTPNotFound(text=f"no such rows: {kind}")
        _, columns, filterable, _ = ROW_KINDS[kind]
        filters = {k: v for k, v in request.query.items() if k in filterable and v}
        if "day" in filters:
            try:
                date.fromisoformat(filters["day"])
            except ValueError:
                raise web.HTTPBadRequest(text=f"day: not a date: {filters['day']!r}") from None
        rows, total = await store.rows(kind, filters)
        return await render(request, "rows.html", kind=kind, columns=columns, rows=rows, total=total,
                            applied=filters)  # fmt: skip

    app = web.Application(middlewares=[timing, signed_in])
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", overview)
    app.router.add_get("/schools/{id}", school_page)
    app.router.add_get("/classes/{id}", class_page)
    app.router.add_get("/students/{id}", student_page)
    app.router.add_get("/rows/{kind}", rows_page)
    return app
