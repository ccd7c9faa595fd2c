"""Canvas Live Events built from the simulated LMS, in Canvas's two formats.

A change in :class:`~simulators.lms.store.CanvasStore` (told to its listeners as ``(event name,
object)``) or a session step of the activity generator (``logged_in``, ``asset_accessed``,
``logged_out``) becomes one payload shaped like Instructure's documented examples:

- ``canvas``: ``{"metadata": {...}, "body": {...}}``; ids are strings; each payload has a fresh
  ``metadata.request_id``;
- ``caliper``: a Caliper 1.1 envelope ``{"sensor", "sendTime", "dataVersion", "data": [event]}``;
  each event has a fresh ``id`` (``urn:uuid:...``) and ``extensions.com.instructure.canvas``.

Which events are built (:data:`BUILT`):

=========================== ========= =========
event                       canvas    caliper
=========================== ========= =========
assignment_created/updated  yes       yes
submission_created/updated  yes       yes
grade_change                yes       yes
enrollment_created/updated  yes       yes
course_created              yes       yes
course_updated              yes       no example: skipped
user_created/updated        yes       no example: skipped
logged_in, logged_out       yes       yes
asset_accessed              yes       yes (course, assignment and file pages)
account_created/updated     skipped   skipped
admin_created/deleted       skipped   skipped
=========================== ========= =========

Who made the change: the store does not know, so the caller says it with :func:`acting` (the
acting user, the event time and the session), which every builder reads; without it the actor is
the root admin (``"1"``), the time is now and the session one per actor. The metadata keys of each
event follow its documented example; where that example was a background job or an LTI grade
passback (``enrollment_updated``, ``course_updated``, ``submission_created``), a user's request
in the UI or the API is modelled instead, with the keys of the sibling example.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from simulators.lms.store import CanvasStore, Obj

__all__ = [
    "BUILT",
    "CALIPER_VERSION",
    "FORMATS",
    "SESSION_EVENTS",
    "Acting",
    "Asset",
    "Format",
    "LiveEventBuilder",
    "Payload",
    "acting",
    "event_time",
]

Payload = dict[str, Any]
Format = Literal["canvas", "caliper"]
FORMATS: tuple[Format, ...] = ("canvas", "caliper")
CALIPER_VERSION = "http://purl.imsglobal.org/ctx/caliper/v1p1"
SESSION_EVENTS = ("logged_in", "logged_out", "asset_accessed")
ROOT_ADMIN_ID = 1

_STORE_EVENTS_BOTH = (
    "assignment_created",
    "assignment_updated",
    "submission_created",
    "submission_updated",
    "grade_change",
    "enrollment_created",
    "enrollment_updated",
    "course_created",
)
#: format -> the event names it builds (store changes and session events)
BUILT: dict[str, frozenset[str]] = {
    "canvas": frozenset(
        (*_STORE_EVENTS_BOTH, "course_updated", "user_created", "user_updated", *SESSION_EVENTS)
    ),
    "caliper": frozenset((*_STORE_EVENTS_BOTH, *SESSION_EVENTS)),
}

_CANVAS_ROLE_TO_CALIPER = {
    "TeacherEnrollment": "Instructor",
    "TaEnrollment": "Instructor#TeachingAssistant",
    "DesignerEnrollment": "ContentDeveloper",
    "StudentEnrollment": "Learner",
    "ObserverEnrollment": "Mentor",
}
_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)
_API_AGENT = "sis-lms-sync/0.1 (httpx)"


# --- who is acting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Acting:
    """The request a change happens in: Canvas's Live Events context."""

    user_id: int | None = None  #: None: the root admin (an API token)
    at: datetime | None = None  #: the event time; None: now
    session_id: str | None = None  #: None: one per actor
    referrer: str | None = None


_ACTING: contextvars.ContextVar[Acting | None] = contextvars.ContextVar(
    "lms_live_events_acting", default=None
)


@contextlib.contextmanager
def acting(
    user_id: int | None = None,
    *,
    at: datetime | None = None,
    session_id: str | None = None,
    referrer: str | None = None,
) -> Iterator[Acting]:
    """Store changes made inside are events by ``user_id`` at ``at`` in ``session_id``."""
    token = _ACTING.set(Acting(user_id, at, session_id, referrer))
    try:
        yield _ACTING.get() or Acting()
    finally:
        _ACTING.reset(token)


@dataclass(frozen=True)
class Asset:
    """A page a user views: a course page (``subtype`` assignments, modules, grades, files,
    announcements, ...), an assignment, or a file of a course."""

    kind: Literal["course", "assignment", "file"]
    course_id: int
    id: int | None = None  #: the assignment's or file's id
    name: str | None = None  #: the file's display name
    subtype: str | None = None  #: the course page


# --- formatting helpers ----------------------------------------------------------------------


def event_time(at: datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``, as Canvas writes ``event_time``."""
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _ms(value: str | None) -> str | None:
    """A store time (``...Z``) in Caliper's form (milliseconds)."""
    if value is None:
        return None
    return event_time(datetime.fromisoformat(value))


def _sid(value: Any) -> str | None:
    return None if value is None else str(value)


def _digest(*parts: Any) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()  # noqa: S324 - an id, not a secret


def _urn(kind: str, *ids: Any) -> str:
    return "urn:instructure:canvas:" + ":".join([kind, *map(str, ids)])


_CALIPER_EXT = "com.instructure.canvas"


def _ext(**fields: Any) -> dict[str, Any]:
    return {_CALIPER_EXT: fields}


# --- metadata profiles -----------------------------------------------------------------------

_BASE = (
    "client_ip",
    "event_name",
    "event_time",
    "hostname",
    "http_method",
    "producer",
    "referrer",
    "request_id",
    "root_account_id",
    "root_account_lti_guid",
    "root_account_uuid",
    "session_id",
    "url",
    "user_agent",
)
_USER = ("user_account_id", "user_id", "user_login", "user_sis_id")
_TZ = ("time_zone",)
_CONTEXT = ("context_account_id", "context_id", "context_sis_source_id", "context_type")
_ROLE = ("context_role",)
_DEVKEY = ("developer_key_id",)

#: event -> the metadata keys its documented example has (see the module docstring for the three
#: events modelled on a sibling example)
_METADATA_KEYS: dict[str, tuple[str, ...]] = {
    "logged_in": _BASE + _USER,
    "logged_out": _BASE + _USER + _TZ,
    "asset_accessed": _BASE + _USER + _TZ + _CONTEXT + _ROLE,
    "assignment_created": _BASE + _USER + _TZ + _CONTEXT + _ROLE + _DEVKEY,
    "assignment_updated": _BASE + _USER + _TZ + _CONTEXT + _ROLE + _DEVKEY,
    "course_created": _BASE + _USER + _TZ + _DEVKEY,
    "course_updated": _BASE + _USER + _TZ + _DEVKEY,
    "enrollment_created": _BASE + _USER + _TZ + _CONTEXT + _DEVKEY,
    "enrollment_updated": _BASE + _USER + _TZ + _CONTEXT + _DEVKEY,
    "grade_change": _BASE + _USER + _TZ + _CONTEXT + _ROLE,
    "submission_created": _BASE + _USER + _TZ + _CONTEXT + _ROLE,
    "submission_updated": _BASE + _USER + _TZ + _CONTEXT + _ROLE,
    "user_created": _BASE + _USER + _TZ + _CONTEXT + _DEVKEY,
    "user_updated": _BASE + _USER + _TZ + _CONTEXT + _ROLE,
}


@dataclass
class _Req:
    """One simulated request: what both formats need to describe it."""

    name: str
    actor: int
    at: datetime
    session_id: str
    request_id: str
    method: str
    url: str
    referrer: str | None
    course: Obj | None = None
    account: Obj | None = None  # the context when it is an account
    section_id: int | None = None


class LiveEventBuilder:
    """Builds Live Events for one store in one format.

    Args:
        store: the simulated Canvas.
        fmt: ``"canvas"`` or ``"caliper"``.
        base_url: the simulated Canvas's address (``hostname``, ``url``, ``sensor``).
        time_zone: the users' time zone in the metadata.
        developer_key_id: the key the API calls (provisioning, teachers' tools) are made with.
        new_uuid: makes event ids and request ids (a seeded one makes payloads reproducible).
        now: the clock used when no :func:`acting` time is given.
    """

    def __init__(
        self,
        store: CanvasStore,
        fmt: str = "canvas",
        *,
        base_url: str = "https://canvas.sim.test",
        time_zone: str = "America/New_York",
        developer_key_id: str = "10000000000001",
        new_uuid: Callable[[], str] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown Live Events format {fmt!r}; one of {FORMATS}")
        self.store = store
        self.fmt: Format = "canvas" if fmt == "canvas" else "caliper"
        self.base_url = base_url.rstrip("/")
        self.hostname = self.base_url.split("://", 1)[-1].split("/", 1)[0]
        self.time_zone = time_zone
        self.developer_key_id = developer_key_id
        self.root_account_uuid = _digest("root", self.hostname)[:40]
        self.root_account_lti_guid = f"{self.root_account_uuid}.{self.hostname}"
        self._new_uuid = new_uuid or (lambda: str(uuid.uuid4()))
        self._now = now or (lambda: datetime.now(UTC))

    # --- public ------------------------------------------------------------------------------

    def builds(self, event_name: str) -> bool:
        return event_name in BUILT[self.fmt]

    def build(self, event_name: str, obj: Obj) -> Payload | None:
        """The payload for a store change; None for an event this format does not build."""
        if not self.builds(event_name) or event_name in SESSION_EVENTS:
            return None
        kind = event_name.rsplit("_", 1)[0] if event_name != "grade_change" else "grade"
        method: Callable[[str, Obj], Payload] = getattr(self, f"_{kind}")
        return method(event_name, obj)

    def logged_in(
        self, user_id: int, *, at: datetime | None = None, session_id: str | None = None
    ) -> Payload:
        req = self._req("logged_in", "POST", f"{self.base_url}/login/canvas", user_id, at, session_id)
        req.referrer = f"{self.base_url}/login/canvas"
        if self.fmt == "canvas":
            return self._canvas(req, {"redirect_url": f"{self.base_url}/"})
        obj = {
            "id": f"{self._app_id()}",
            "type": "SoftwareApplication",
            "extensions": _ext(redirect_url=f"{self.base_url}/"),
        }
        return self._caliper(req, "SessionEvent", "LoggedIn", obj, group=False, membership=False)

    def logged_out(
        self, user_id: int, *, at: datetime | None = None, session_id: str | None = None
    ) -> Payload:
        req = self._req("logged_out", "POST", f"{self.base_url}/logout", user_id, at, session_id)
        req.referrer = f"{self.base_url}/"
        if self.fmt == "canvas":
            return self._canvas(req, {})
        obj = {"id": self._app_id(), "type": "SoftwareApplication"}
        return self._caliper(req, "SessionEvent", "LoggedOut", obj, group=False, membership=False)

    def asset_accessed(
        self,
        user_id: int,
        asset: Asset,
        *,
        at: datetime | None = None,
        session_id: str | None = None,
        referrer: str | None = None,
    ) -> Payload:
        """A page view: ``asset_accessed`` (Canvas) or ``NavigationEvent/NavigatedTo`` (Caliper)."""
        course = self.store.courses[asset.course_id]
        cid = course["id"]
        subtype: str | None = None
        if asset.kind == "course":
            subtype = asset.subtype or "home"
            path, asset_id, name, category = f"/courses/{cid}/{subtype}", cid, course["name"], subtype
        elif asset.kind == "assignment":
            a = self.store.assignments[int(asset.id or 0)]
            path, asset_id, name, category = (
                f"/courses/{cid}/assignments/{a['id']}",
                a["id"],
                a["name"],
                "assignments",
            )
        else:
            path, asset_id, name, category = f"/courses/{cid}/files/{asset.id}", asset.id, asset.name, "files"
        req = self._req("asset_accessed", "GET", self.base_url + path, user_id, at, session_id, course=course)
        req.referrer = referrer
        role = self._context_role(req)
        if self.fmt == "canvas":
            body = {
                "asset_name": name,
                "asset_type": "attachment" if asset.kind == "file" else asset.kind,
                "asset_id": _sid(asset_id),
                "asset_subtype": subtype,
                "category": category,
                "role": role,
                "level": None,
            }
            return self._canvas(req, body)
        common = {
            "asset_name": name,
            "asset_type": "attachment" if asset.kind == "file" else asset.kind,
        }
        if asset.kind == "course":
            obj = {
                "id": _urn("course", cid),
                "type": "Entity",
                "name": subtype,
                "extensions": _ext(
                    **common,
                    asset_subtype=subtype,
                    entity_id=str(cid),
                    context_account_id=str(course["account_id"]),
                    http_method="GET",
                ),
            }
            return self._caliper(req, "NavigationEvent", "NavigatedTo", obj)
        if asset.kind == "assignment":
            obj = {
                "id": _urn("assignment", asset_id),
                "type": "AssignableDigitalResource",
                "extensions": _ext(
                    **common,
                    entity_id=str(asset_id),
                    context_account_id=str(course["account_id"]),
                    http_method="GET",
                    developer_key_id=self.developer_key_id,
                ),
            }
            return self._caliper(req, "NavigationEvent", "NavigatedTo", obj, referrer=False)
        obj = {
            "id": _urn("attachment", asset_id),
            "type": "Entity",
            "name": "attachment",
            "extensions": _ext(
                **common,
                entity_id=str(asset_id),
                context_account_id=str(course["account_id"]),
                http_method="GET",
                filename=(name or "").replace(" ", "+"),
                display_name=(name or "").replace(" ", "+"),
            ),
        }
        return self._caliper(req, "NavigationEvent", "NavigatedTo", obj, membership=False)

    # --- the request -------------------------------------------------------------------------

    def _req(
        self,
        name: str,
        method: str,
        url: str,
        user_id: int | None = None,
        at: datetime | None = None,
        session_id: str | None = None,
        *,
        course: Obj | None = None,
        account: Obj | None = None,
        section_id: int | None = None,
    ) -> _Req:
        ctx = _ACTING.get() or Acting()
        actor = user_id if user_id is not None else ctx.user_id
        actor = ROOT_ADMIN_ID if actor is None else actor
        when = at or ctx.at or self._now()
        sid = session_id or ctx.session_id or _digest("session", self.hostname, actor)[:32]
        return _Req(
            name=name,
            actor=actor,
            at=when,
            session_id=sid,
            request_id=self._new_uuid(),
            method=method,
            url=url,
            referrer=ctx.referrer,
            course=course,
            account=account,
            section_id=section_id,
        )

    def _login(self, user_id: int) -> Obj | None:
        return self.store.login_for(user_id)

    def _course_enrollments(self, user_id: int, course_id: int) -> list[Obj]:
        if user_id not in self.store.users:
            return []  # the root admin, who is no store user
        rows = self.store.list_enrollments(user_id=user_id, states=("active", "invited"))
        return [e for e in rows if e["course_id"] == course_id]

    def _context_role(self, req: _Req) -> str | None:
        """The actor's role in the context: their enrollment type, or AccountAdmin for the root
        admin."""
        if req.course is not None:
            rows = self._course_enrollments(req.actor, req.course["id"])
            if rows:
                order = list(_CANVAS_ROLE_TO_CALIPER)
                return str(min((e["type"] for e in rows), key=order.index))
        return "AccountAdmin" if req.actor == ROOT_ADMIN_ID else None

    def _actor_ids(self, user_id: int) -> tuple[str | None, str | None]:
        """(login, SIS id) of a user; the root admin's are ("admin", None)."""
        login = self._login(user_id)
        if login is None:
            return ("admin", None) if user_id == ROOT_ADMIN_ID else (None, None)
        return login["unique_id"], login["sis_user_id"]

    def _client_ip(self, user_id: int) -> str:
        return f"203.0.113.{int(_digest('ip', user_id)[:4], 16) % 254 + 1}"  # TEST-NET-3

    def _user_agent(self, req: _Req) -> str:
        return _API_AGENT if "developer_key_id" in _METADATA_KEYS[req.name] else _USER_AGENT

    def _app_id(self) -> str:
        return f"http://{self.hostname}/"

    # --- Canvas format -----------------------------------------------------------------------

    def _canvas(self, req: _Req, body: Obj) -> Payload:
        login, sis_id = self._actor_ids(req.actor)
        meta: dict[str, Any] = {
            "client_ip": self._client_ip(req.actor),
            "event_name": req.name,
            "event_time": event_time(req.at),
            "hostname": self.hostname,
            "http_method": req.method,
            "producer": "canvas",
            "referrer": req.referrer,
            "request_id": req.request_id,
            "root_account_id": "1",
            "root_account_lti_guid": self.root_account_lti_guid,
            "root_account_uuid": self.root_account_uuid,
            "session_id": req.session_id,
            "url": req.url,
            "user_agent": self._user_agent(req),
            "user_account_id": "1",
            "user_id": str(req.actor),
            "user_login": login,
            "user_sis_id": sis_id,
            "time_zone": self.time_zone,
            "developer_key_id": self.developer_key_id,
            "context_role": self._context_role(req),
        }
        if req.course is not None:
            meta.update(
                context_account_id=_sid(req.course["account_id"]),
                context_id=str(req.course["id"]),
                context_sis_source_id=req.course["sis_course_id"],
                context_type="Course",
            )
        else:
            account = req.account or self.store.accounts[1]
            meta.update(
                context_account_id=str(account["id"]),
                context_id=str(account["id"]),
                context_sis_source_id=account["sis_account_id"],
                context_type="Account",
            )
        return {"metadata": {k: meta[k] for k in _METADATA_KEYS[req.name]}, "body": body}

    # --- Caliper format ----------------------------------------------------------------------

    def _caliper(
        self,
        req: _Req,
        type_: str,
        action: str,
        obj: Obj,
        *,
        group: bool = True,
        membership: bool = True,
        referrer: bool = True,
        generated: Obj | None = None,
    ) -> Payload:
        login, sis_id = self._actor_ids(req.actor)
        event: dict[str, Any] = {
            "@context": CALIPER_VERSION,
            "id": f"urn:uuid:{self._new_uuid()}",
            "type": type_,
            "actor": {
                "id": _urn("user", req.actor),
                "type": "Person",
                "extensions": _ext(
                    user_login=login,
                    user_sis_id=sis_id,
                    root_account_id="1",
                    root_account_lti_guid=self.root_account_lti_guid,
                    root_account_uuid=self.root_account_uuid,
                    entity_id=str(req.actor),
                ),
            },
            "action": action,
            "object": obj,
            "eventTime": event_time(req.at),
        }
        if generated is not None:
            event["generated"] = generated
        if referrer:
            event["referrer"] = req.referrer
        event["edApp"] = {"id": self._app_id(), "type": "SoftwareApplication"}
        if group and req.course is not None:
            event["group"] = self._group(req)
        if membership and req.course is not None:
            event["membership"] = self._membership(req)
        event["session"] = {"id": _urn("session", req.session_id), "type": "Session"}
        event["extensions"] = _ext(
            hostname=self.hostname,
            request_id=req.request_id,
            user_agent=self._user_agent(req),
            client_ip=self._client_ip(req.actor),
            request_url=req.url,
            version="1.0.0",
        )
        return {
            "sensor": self._app_id(),
            "sendTime": event_time(self._now()),
            "dataVersion": CALIPER_VERSION,
            "data": [event],
        }

    def _org(self, req: _Req) -> Obj:
        assert req.course is not None
        course = {"id": _urn("course", req.course["id"]), "type": "CourseOffering"}
        if req.section_id is None:
            return course
        return {
            "id": _urn("course", req.course["id"], "section", req.section_id),
            "type": "CourseSection",
            "subOrganizationOf": course,
        }

    def _group(self, req: _Req) -> Obj:
        assert req.course is not None
        org = self._org(req)
        return {
            "id": org["id"],
            "type": org["type"],
            "extensions": _ext(context_type="Course", entity_id=str(req.course["id"])),
        }

    def _membership(self, req: _Req) -> Obj:
        org = self._org(req)
        role = _CANVAS_ROLE_TO_CALIPER.get(self._context_role(req) or "")
        membership: dict[str, Any] = {
            "id": f"{org['id']}:{role or 'user'}:{req.actor}",
            "type": "Membership",
            "member": {"id": _urn("user", req.actor), "type": "Person"},
            "organization": org,
        }
        if role is not None:
            membership["roles"] = [role]
        return membership

    # --- store changes -----------------------------------------------------------------------

    def _assignment(self, name: str, a: Obj) -> Payload:
        course = self.store.courses[a["course_id"]]
        created = name == "assignment_created"
        path = f"/api/v1/courses/{course['id']}/assignments" + ("" if created else f"/{a['id']}")
        req = self._req(name, "POST" if created else "PUT", self.base_url + path, course=course)
        submission_types = a.get("submission_types") or ["online_text_entry", "online_upload"]
        if self.fmt == "canvas":
            body = {
                "assignment_group_id": _sid(a.get("assignment_group_id")),
                "assignment_id": str(a["id"]),
                "context_id": str(course["id"]),
                "context_type": "Course",
                "context_uuid": _digest("course", self.hostname, course["id"]),
                "created_on_blueprint_sync": False,
                "description": a.get("description"),
                "due_at": a["due_at"],
                "lock_at": a.get("lock_at"),
                "lti_assignment_id": self._lti_assignment_id(a),
                "lti_resource_link_id": _digest("link", self.hostname, a["id"]),
                "lti_resource_link_id_duplicated_from": None,
                "assignment_id_duplicated_from": None,
                "domain_duplicated_from": None,
                "domain": self.hostname,
                "points_possible": a["points_possible"],
                "submission_types": ",".join(submission_types),
                "title": a["name"],
                "unlock_at": a.get("unlock_at"),
                "updated_at": a["updated_at"],
                "workflow_state": a["workflow_state"],
            }
            return self._canvas(req, body)
        obj: dict[str, Any] = {
            "id": _urn("assignment", a["id"]),
            "type": "AssignableDigitalResource",
            "name": a["name"],
            "description": a.get("description"),
        }
        if created:
            obj["dateCreated"] = _ms(a["created_at"])
            obj["extensions"] = _ext(lock_at=_ms(a.get("lock_at")), entity_id=str(a["id"]))
        else:
            obj["dateModified"] = _ms(a["updated_at"])
            obj["extensions"] = _ext(
                lock_at=_ms(a.get("lock_at")), workflow_state=a["workflow_state"], entity_id=str(a["id"])
            )
        obj.update(
            dateToShow=_ms(a.get("unlock_at")), dateToSubmit=_ms(a["due_at"]), maxScore=a["points_possible"]
        )
        return self._caliper(req, "Event", "Created" if created else "Modified", obj, referrer=False)

    def _lti_assignment_id(self, a: Obj) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.base_url}/assignments/{a['id']}"))

    def _submission(self, name: str, sub: Obj) -> Payload:
        course = self.store.courses[sub["course_id"]]
        ctx = _ACTING.get() or Acting()
        by_student = (ctx.user_id or ROOT_ADMIN_ID) == sub["user_id"]
        base = f"{self.base_url}/api/v1/courses/{course['id']}/assignments/{sub['assignment_id']}/submissions"
        url = base if by_student else f"{base}/{sub['user_id']}"
        req = self._req(name, "POST" if by_student else "PUT", url, course=course)
        if not by_student and req.referrer is None:
            req.referrer = self._speed_grader(sub)
        submission_type = sub.get("submission_type") or "online_text_entry"
        body_text = sub.get("body") or (
            None if sub["submitted_at"] is None else "<p>(simulated submission)</p>"
        )
        if self.fmt == "canvas":
            body = {
                "assignment_id": str(sub["assignment_id"]),
                "attempt": sub["attempt"],
                "body": body_text,
                "grade": sub["grade"],
                "graded_at": sub["graded_at"],
                "group_id": None,
                "late": sub["late"],
                "lti_assignment_id": self._lti_assignment_id({"id": sub["assignment_id"]}),
                "lti_user_id": _digest("lti_user", self.hostname, sub["user_id"]),
                "missing": sub["missing"],
                "score": sub["score"],
                "submission_id": str(sub["id"]),
                "submission_type": submission_type,
                "submitted_at": sub["submitted_at"],
                "updated_at": event_time(req.at),
                "url": sub.get("url"),
                "user_id": str(sub["user_id"]),
                "workflow_state": sub["workflow_state"],
            }
            return self._canvas(req, body)
        created = name == "submission_created"
        obj: dict[str, Any] = {"id": _urn("submission", sub["id"]), "type": "Attempt"}
        if created:
            obj["dateCreated"] = _ms(sub["submitted_at"]) or event_time(req.at)
            obj["extensions"] = _ext(
                submission_type=submission_type, url=sub.get("url"), entity_id=str(sub["id"])
            )
        else:
            obj["dateModified"] = event_time(req.at)
            obj["extensions"] = _ext(submission_type=submission_type, entity_id=str(sub["id"]))
        obj["assignee"] = {"id": _urn("user", sub["user_id"]), "type": "Person"}
        obj["assignable"] = {
            "id": _urn("assignment", sub["assignment_id"]),
            "type": "AssignableDigitalResource",
        }
        obj["count"] = sub["attempt"]
        if created:
            obj["body"] = body_text
        if created:
            return self._caliper(req, "AssignableEvent", "Submitted", obj)
        return self._caliper(req, "Event", "Modified", obj)

    def _speed_grader(self, sub: Obj) -> str:
        return (
            f"{self.base_url}/courses/{sub['course_id']}/gradebook/speed_grader"
            f"?assignment_id={sub['assignment_id']}&student_id={sub['user_id']}"
        )

    def _grade(self, name: str, sub: Obj) -> Payload:
        course = self.store.courses[sub["course_id"]]
        assignment = self.store.assignments[sub["assignment_id"]]
        url = (
            f"{self.base_url}/api/v1/courses/{course['id']}/assignments/{sub['assignment_id']}"
            f"/submissions/{sub['user_id']}"
        )
        req = self._req(name, "PUT", url, course=course)
        if req.referrer is None:
            req.referrer = self._speed_grader(sub)
        _, student_sis = self._actor_ids(sub["user_id"])
        points = assignment["points_possible"]
        if self.fmt == "canvas":
            body = {
                "assignment_id": str(sub["assignment_id"]),
                "grade": sub["grade"],
                "grader_id": str(req.actor),
                "grading_complete": sub["score"] is not None or bool(sub["excused"]),
                "muted": False,
                "old_grade": sub["previous_grade"],
                "old_points_possible": points,
                "old_score": sub["previous_score"],
                "points_possible": points,
                "score": sub["score"],
                "student_id": str(sub["user_id"]),
                "student_sis_id": student_sis,
                "submission_id": str(sub["id"]),
                "user_id": str(sub["user_id"]),
            }
            return self._canvas(req, body)

        def attempt(with_entity: bool) -> Obj:
            ext = (
                {"grade": sub["grade"], "entity_id": str(sub["id"])}
                if with_entity
                else {"grade": sub["grade"]}
            )
            return {
                "id": _urn("submission", sub["id"]),
                "type": "Attempt",
                "extensions": {_CALIPER_EXT: ext},
                "assignee": {
                    "id": _urn("user", sub["user_id"]),
                    "type": "Person",
                    "extensions": _ext(sis_id=student_sis),
                },
                "assignable": {
                    "id": _urn("assignment", sub["assignment_id"]),
                    "type": "AssignableDigitalResource",
                },
            }

        generated = {
            "id": _urn("submission", sub["id"]),
            "type": "Score",
            "extensions": _ext(grade=sub["grade"], entity_id=str(sub["id"])),
            "attempt": attempt(False),
            "maxScore": points,
            "scoreGiven": sub["score"],
            "scoredBy": _urn("user", req.actor),
        }
        return self._caliper(req, "GradeEvent", "Graded", attempt(True), generated=generated)

    def _enrollment(self, name: str, e: Obj) -> Payload:
        course = self.store.courses[e["course_id"]]
        created = name == "enrollment_created"
        if created:
            url = f"{self.base_url}/api/v1/sections/{e['course_section_id']}/enrollments"
        else:
            url = f"{self.base_url}/api/v1/courses/{course['id']}/enrollments/{e['id']}"
        req = self._req(
            name, "POST" if created else "PUT", url, course=course, section_id=e["course_section_id"]
        )
        user = self.store.users.get(e["user_id"]) or {}
        if self.fmt == "canvas":
            body = {
                "associated_user_id": _sid(e["associated_user_id"]),
                "course_id": str(course["id"]),
                "course_section_id": str(e["course_section_id"]),
                "created_at": e["created_at"],
                "enrollment_id": str(e["id"]),
                "limit_privileges_to_course_section": e["limit_privileges_to_course_section"],
                "type": e["type"],
                "updated_at": e["updated_at"],
                "user_id": str(e["user_id"]),
                "user_name": user.get("name"),
                "workflow_state": e["enrollment_state"],
            }
            return self._canvas(req, body)
        obj: dict[str, Any] = {
            "id": _urn("enrollment", e["id"]),
            "type": "Entity",
            "dateCreated": _ms(e["created_at"]),
        }
        if not created:
            obj["dateModified"] = _ms(e["updated_at"])
        obj["extensions"] = _ext(
            course_id=_urn("course", course["id"]),
            course_section_id=_urn("course", course["id"], "section", e["course_section_id"]),
            limit_privileges_to_course_section=e["limit_privileges_to_course_section"],
            type=e["type"],
            user_id=_urn("user", e["user_id"]),
            user_name=user.get("name"),
            workflow_state=e["enrollment_state"],
            entity_id=str(e["id"]),
        )
        return self._caliper(req, "Event", "Created" if created else "Modified", obj, referrer=not created)

    def _course(self, name: str, c: Obj) -> Payload:
        created = name == "course_created"
        if created:
            url = f"{self.base_url}/api/v1/accounts/{c['account_id']}/courses"
        else:
            url = f"{self.base_url}/api/v1/courses/{c['id']}"
        req = self._req(name, "POST" if created else "PUT", url)
        if self.fmt == "canvas":
            body = {
                "account_id": str(c["account_id"]),
                "course_id": str(c["id"]),
                "created_at": c["created_at"],
                "name": c["name"],
                "updated_at": c.get("updated_at") or event_time(req.at),
                "uuid": _digest("course", self.hostname, c["id"]),
                "workflow_state": c["workflow_state"],
            }
            return self._canvas(req, body)
        obj = {
            "id": _urn("course", c["id"]),
            "type": "CourseOffering",
            "name": c["name"],
            "extensions": _ext(entity_id=str(c["id"])),
        }
        return self._caliper(req, "Event", "Created", obj, group=False, membership=False, referrer=False)

    def _user(self, name: str, u: Obj) -> Payload:
        created = name == "user_created"
        url = f"{self.base_url}/api/v1/" + ("accounts/1/users" if created else f"users/{u['id']}")
        req = self._req(name, "POST" if created else "PUT", url, account=self.store.accounts[1])
        login, sis_id = self._actor_ids(u["id"])
        body = {
            "created_at": u["created_at"],
            "name": u["name"],
            "short_name": u["short_name"],
            "updated_at": u.get("updated_at") or event_time(req.at),
            "user_id": str(u["id"]),
            "user_login": login,
            "user_sis_id": sis_id,
            "uuid": _digest("user", self.hostname, u["id"])[:40],
            "workflow_state": u["workflow_state"],
        }
        return self._canvas(req, body)
