"""One provisioning command applied to Canvas through its REST API, idempotently.

Every command looks its target up by SIS id before creating it, so applying a command twice (a
redelivery after a crash) finds what the first one made and changes nothing. What Canvas does
by itself helps: enrolling a user again in the same section and role returns the same
enrollment; re-granting an admin role returns the same admin.

How targets map to Canvas (the attributes are those of ``streams.roster.desired``):

===============  ==========================================================================
target           Canvas
===============  ==========================================================================
account          the district (``root`` true): the root account (only remembered, never
                 renamed); any other org: a sub-account of its parent, ``sis_account_id``
term             an enrollment term of the root account, ``sis_term_id``
user             a user with one login: ``unique_id`` = login_id, ``sis_user_id``; status
                 suspended suspends the login, deleted removes the user from the account
course           a course in its school's sub-account, ``sis_course_id``, in its term;
                 templates are blueprint courses and class courses follow their template
section          a section of its course, ``sis_section_id``
enrollment       a course enrollment in the section (a template role: in the course):
                 base roles by type, custom roles by ``role_id``; observers carry
                 ``associated_user_id``; unenroll ends it (``SISLMS_CANVAS_UNENROLL_TASK``)
account_admin    an account admin on the root or a school's sub-account, by role
===============  ==========================================================================

Custom roles (a read-only counselor course role, "Counselor (read-only)" as an account role) are
found by label and created once when missing. Objects a command depends on (the user of an
enrollment, the course of a section, a sub-account's parent) may arrive later, since commands
for different targets are not ordered: :class:`DependencyMissing` is retriable, and the sink
waits for it a while before dead-lettering the command.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.canvas.protocol import ENROLLMENT_TYPES, sis_ref
from connectors.sinks.canvas.client import CanvasClient, CanvasRejected
from streams.errors import RetriableError

__all__ = ["Command", "DependencyMissing", "EnrollmentHolders", "IdMap", "Outcome", "Provisioner"]

log = logging.getLogger(__name__)

UNENROLL_TASKS = ("delete", "conclude", "inactivate")


class DependencyMissing(RetriableError):
    """An object the command needs is not in Canvas yet (its own command may still come)."""

    def __init__(self, kind: str, sis_id: str) -> None:
        super().__init__(f"waiting for {kind} {sis_id}", retry_after=None)
        self.kind = kind
        self.sis_id = sis_id


class IdMap(Protocol):
    """SIS target -> Canvas id, fed by the results topic (``lms.provisioning.results.v1``)."""

    def get(self, kind: str, sis_id: str) -> str | None: ...

    def put(self, kind: str, sis_id: str, lms_id: str) -> None: ...

    def count(self, kind: str) -> int:
        """How many targets of this kind have a Canvas id."""
        ...


class EnrollmentHolders:
    """Canvas enrollment id -> the enrollment targets it stands for now.

    Canvas keeps one enrollment per user, section, role and observed user, and enrolling again
    returns the one it has: two SIS enrollments of a student in one class (a schedule change back
    into the class, a record the SIS holds twice) are one Canvas enrollment, and so are their
    guardians' observer enrollments. Ending it for one of them would take the student out of a
    class the other still has them in, so an unenroll ends it only when no other target holds it
    (:meth:`Provisioner._enrollment`). Learnt from the results topic at start, kept up to date as
    commands are applied."""

    def __init__(self) -> None:
        self._of: dict[str, str] = {}  # target -> the Canvas enrollment it holds
        self._by_lms: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def hold(self, target: str, lms_id: str) -> None:
        with self._lock:
            self._release(target)
            self._of[target] = lms_id
            self._by_lms.setdefault(lms_id, set()).add(target)

    def release(self, target: str) -> None:
        with self._lock:
            self._release(target)

    def _release(self, target: str) -> None:
        old = self._of.pop(target, None)
        if old is not None:
            holders = self._by_lms[old]
            holders.discard(target)
            if not holders:
                del self._by_lms[old]

    def others(self, target: str, lms_id: str) -> set[str]:
        """The targets other than ``target`` that hold this Canvas enrollment."""
        with self._lock:
            return self._by_lms.get(lms_id, set()) - {target}

    def learn(self, result: Mapping[str, Any]) -> None:
        """One outcome from ``lms.provisioning.results.v1`` (read in order)."""
        if result.get("targetType") != "enrollment" or result.get("status") not in ("applied", "unchanged"):
            return
        if result.get("action") == "unenroll":
            self.release(result["targetSisId"])
        elif result.get("lmsId") is not None:
            self.hold(result["targetSisId"], str(result["lmsId"]))

    def __len__(self) -> int:
        with self._lock:
            return len(self._of)


@dataclass(frozen=True)
class Command:
    action: str
    target_type: str
    target: str
    attributes: Mapping[str, str | None]

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Command:
        return cls(value["action"], value["targetType"], value["targetSisId"], value["attributes"])


@dataclass(frozen=True)
class Outcome:
    status: str  # applied | unchanged
    lms_id: str | None


def _unchanged(lms_id: Any = None) -> Outcome:
    return Outcome("unchanged", None if lms_id is None else str(lms_id))


def _applied(lms_id: Any = None) -> Outcome:
    return Outcome("applied", None if lms_id is None else str(lms_id))


def _changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if current.get(k) != v}


class Provisioner:
    """Applies commands to one Canvas root account through ``client``."""

    def __init__(
        self,
        client: CanvasClient,
        ids: IdMap,
        *,
        root_account: str = "1",
        unenroll_task: str = "delete",
        holders: EnrollmentHolders | None = None,
    ) -> None:
        if unenroll_task not in UNENROLL_TASKS:
            raise ValueError(f"unenroll task must be one of {UNENROLL_TASKS}, not {unenroll_task!r}")
        self.client = client
        self.ids = ids
        self.holders = holders if holders is not None else EnrollmentHolders()
        #: enrolling and ending one (user, course) are done under one of these, so that an
        #: unenroll never ends a Canvas enrollment another lane has just been given back
        self._stripes = [threading.Lock() for _ in range(64)]
        self.root = root_account
        self.unenroll_task = unenroll_task
        #: (kind, SIS id) -> whether that object's own command is on its way (the sink sets it):
        #: then a command needing it waits without a look-up
        self.awaited: Callable[[str, str], bool] | None = None
        #: (kind, SIS id) -> whether this sink has never handled that target (the sink sets it):
        #: then an upsert creates without looking first (see :meth:`_existing`)
        self.never_handled: Callable[[str, str], bool] | None = None
        #: (kind, SIS id) -> when Canvas last answered that it has no such object: the commands
        #: waiting for one object (a student's seven enrollments) look it up once between them
        self._absent: dict[tuple[str, str], float] = {}
        self.absent_ttl_s = 30.0
        self._roles: dict[tuple[str, str], int] = {}
        self._roles_lock = threading.Lock()

    def apply(self, command: Command) -> Outcome:
        handler = {
            "account": self._account,
            "term": self._term,
            "user": self._user,
            "course": self._course,
            "section": self._section,
            "enrollment": self._enrollment,
            "account_admin": self._admin,
        }.get(command.target_type)
        if handler is None:
            raise CanvasRejected(400, f"unknown target type {command.target_type!r}", "APPLY", command.target)
        outcome = handler(command)
        if outcome.lms_id is not None:
            self.ids.put(command.target_type, command.target, outcome.lms_id)
        return outcome

    # --- lookups -------------------------------------------------------------------------

    def _get(self, path: str) -> Any:
        return self.client.call("GET", path, missing_ok=True)

    def _account_ref(self, sis_id: str | None) -> str:
        """The Canvas id of an account named by SIS id (``root``/None: the root account)."""
        if sis_id is None or sis_id == "root":
            return self.root
        return self._need("account", sis_id)

    def _existing(self, kind: str, sis_id: str, path: str, *, creating: bool) -> Any:
        """The object by SIS id (None: Canvas has none). Not asked when the command would create
        an object this sink has never handled, as in a first load, where the look-up is a 404
        spent from Canvas's rate limit: :meth:`_create` then looks only if Canvas answers that
        the SIS id is taken."""
        if creating and self.never_handled is not None and self.never_handled(kind, sis_id):
            return None
        return self._get(path)

    def _create(self, path: str, body: dict[str, Any], lookup: str) -> tuple[Any, Any]:
        """POST ``body``: (what was made, None); or, when Canvas answers that the SIS id is taken
        (made before, by another tool or by this sink before a crash lost its outcome), (None,
        the object ``lookup`` finds), to be brought up to date instead."""
        try:
            return self.client.call("POST", path, json=body), None
        except CanvasRejected as exc:
            if exc.status != 400 or "taken" not in exc.types:
                raise
            found = self._get(lookup)
            if found is None:
                raise  # taken by another object (a login, say): the refusal stands
            return None, found

    def lookup_path(self, kind: str, sis_id: str) -> str:
        ref = sis_ref(kind, sis_id)
        if kind == "term":
            return f"/accounts/{self.root}/terms/{ref}"
        return f"/{kind}s/{ref}"

    def _need(self, kind: str, sis_id: str) -> str:
        """The Canvas id of an object this command depends on: from the id map (what this sink
        made) or by SIS id; :class:`DependencyMissing` while Canvas has none."""
        mapped = self.ids.get(kind, sis_id)
        if mapped is not None:
            return mapped
        if self.awaited is not None and self.awaited(kind, sis_id):
            raise DependencyMissing(kind, sis_id)  # its own command is on its way: no look-up
        key = (kind, sis_id)
        if time.monotonic() - self._absent.get(key, -math.inf) < self.absent_ttl_s:
            raise DependencyMissing(kind, sis_id)  # just looked up by another waiting command
        found = self._get(self.lookup_path(kind, sis_id))
        if found is None:
            self._absent[key] = time.monotonic()
            if len(self._absent) > 100_000:  # forget the old answers now and then
                now = time.monotonic()
                self._absent = {k: t for k, t in self._absent.items() if now - t < self.absent_ttl_s}
            raise DependencyMissing(kind, sis_id)
        self._absent.pop(key, None)
        return str(found["id"])

    def role_id(self, label: str, base: str) -> int:
        """A custom role's id by label; created (with base role type ``base``) when missing."""
        key = (label, base)
        with self._roles_lock:
            if key in self._roles:
                return self._roles[key]
            for role in self.client.pages(f"/accounts/{self.root}/roles"):
                self._roles[(role.get("label") or role["role"], role["base_role_type"])] = role["id"]
                self._roles[(role["role"], role["base_role_type"])] = role["id"]
            if key not in self._roles:
                made = self.client.call(
                    "POST", f"/accounts/{self.root}/roles", json={"label": label, "base_role_type": base}
                )
                log.info("canvas: created the %s role %r", base, label)
                self._roles[key] = made["id"]
            return self._roles[key]

    # --- accounts and terms ---------------------------------------------------------------

    def _account(self, c: Command) -> Outcome:
        a = c.attributes
        sis_id = a.get("account_id") or c.target
        if a.get("root") == "true":
            return _unchanged(self.root)  # the root account is the district's own: never renamed
        lookup = f"/accounts/{sis_ref('account', sis_id)}"
        existing = self._existing("account", sis_id, lookup, creating=a.get("status") == "active")
        if a.get("status") != "active":
            if existing is None:
                return _unchanged()
            parent = existing["parent_account_id"]
            self.client.call("DELETE", f"/accounts/{parent}/sub_accounts/{existing['id']}")
            return _applied(existing["id"])
        parent = self._account_ref(a.get("parent_account_id"))
        wanted = {"name": a.get("name"), "integration_id": a.get("integration_id")}
        if existing is None:
            body = {"account": {**wanted, "sis_account_id": sis_id}}
            made, existing = self._create(f"/accounts/{parent}/sub_accounts", body, lookup)
            if made is not None:
                return _applied(made["id"])
        change = _changed(existing, wanted)
        if str(existing.get("parent_account_id")) != parent:
            change["parent_account_id"] = parent
        if not change:
            return _unchanged(existing["id"])
        self.client.call("PUT", f"/accounts/{existing['id']}", json={"account": change})
        return _applied(existing["id"])

    def _term(self, c: Command) -> Outcome:
        a = c.attributes
        sis_id = a.get("term_id") or c.target
        path = f"/accounts/{self.root}/terms"
        lookup = f"{path}/{sis_ref('term', sis_id)}"
        existing = self._existing("term", sis_id, lookup, creating=a.get("status") == "active")
        if a.get("status") != "active":
            if existing is None:
                return _unchanged()
            self.client.call("DELETE", f"{path}/{existing['id']}")
            return _applied(existing["id"])
        wanted = {"name": a.get("name"), "start_at": a.get("start_date"), "end_at": a.get("end_date")}
        if existing is None:
            body = {"enrollment_term": {**wanted, "sis_term_id": sis_id}}
            made, existing = self._create(path, body, lookup)
            if made is not None:
                return _applied(made["id"])
        change = _changed(existing, wanted)
        if not change:
            return _unchanged(existing["id"])
        self.client.call("PUT", f"{path}/{existing['id']}", json={"enrollment_term": change})
        return _applied(existing["id"])

    # --- users ----------------------------------------------------------------------------

    def _user(self, c: Command) -> Outcome:
        a = c.attributes
        sis_id = a.get("user_id") or c.target
        status = a.get("status")
        lookup = f"/users/{sis_ref('user', sis_id)}"
        existing = self._existing("user", sis_id, lookup, creating=status != "deleted")
        if status == "deleted":
            if existing is None:
                return _unchanged()
            self.client.call("DELETE", f"/accounts/{self.root}/users/{existing['id']}")
            return _applied(existing["id"])
        name = " ".join(p for p in (a.get("first_name"), a.get("last_name")) if p) or sis_id
        wanted = {"name": name, "sortable_name": a.get("sortable_name") or name, "email": a.get("email")}
        login = {"unique_id": a.get("login_id") or sis_id, "integration_id": a.get("integration_id")}
        if existing is None:
            body: dict[str, Any] = {
                "user": {
                    "name": name,
                    "short_name": a.get("first_name") or name,
                    "sortable_name": wanted["sortable_name"],
                },
                "pseudonym": {**login, "sis_user_id": sis_id, "send_confirmation": False},
                "enable_sis_reactivation": True,
            }
            if a.get("email"):
                body["communication_channel"] = {
                    "type": "email",
                    "address": a["email"],
                    "skip_confirmation": True,
                }
            made, existing = self._create(f"/accounts/{self.root}/users", body, lookup)
            if made is not None:
                if status == "suspended":
                    self.client.call("PUT", f"/users/{made['id']}", json={"user": {"event": "suspend"}})
                return _applied(made["id"])
        uid = existing["id"]
        changed = False
        change = _changed(existing, wanted)
        if change:
            self.client.call("PUT", f"/users/{uid}", json={"user": change})
            changed = True
        current = {"unique_id": existing.get("login_id"), "integration_id": existing.get("integration_id")}
        login_change = _changed(current, login)
        logins = None
        if login_change or status in ("active", "suspended"):
            logins = [x for x in self.client.pages(f"/users/{uid}/logins") if x.get("sis_user_id") == sis_id]
        if logins:
            mine = logins[0]
            state = "suspended" if status == "suspended" else "active"
            if mine.get("workflow_state") != state:
                login_change["workflow_state"] = state
            if login_change:
                self.client.call(
                    "PUT", f"/accounts/{self.root}/logins/{mine['id']}", json={"login": login_change}
                )
                changed = True
        return _applied(uid) if changed else _unchanged(uid)

    # --- courses and sections -------------------------------------------------------------

    def _course(self, c: Command) -> Outcome:
        a = c.attributes
        sis_id = a.get("course_id") or c.target
        lookup = f"/courses/{sis_ref('course', sis_id)}"
        existing = self._existing("course", sis_id, lookup, creating=a.get("status") == "active")
        if a.get("status") != "active":
            if existing is None or existing.get("workflow_state") == "deleted":
                return _unchanged()
            self.client.call("DELETE", f"/courses/{existing['id']}", params={"event": "delete"})
            return _applied(existing["id"])
        account = self._account_ref(a.get("account_id"))
        term = a.get("term_id")
        term_id = None
        if term is not None:
            term_id = int(self._need("term", term))
        blueprint = a.get("blueprint") == "true"
        wanted = {
            "name": a.get("long_name"),
            "course_code": a.get("short_name"),
            "account_id": int(account) if account.isdigit() else account,
            "enrollment_term_id": term_id,
            "blueprint": blueprint,
        }
        template = a.get("blueprint_course_id")
        template_id = None
        if template is not None:
            template_id = self._need("course", template)
        made = None
        if existing is None:
            body = {k: v for k, v in wanted.items() if k not in ("account_id", "enrollment_term_id")}
            body |= {"sis_course_id": sis_id, "term_id": term_id}
            made, existing = self._create(f"/accounts/{account}/courses", {"course": body}, lookup)
        if made is not None:
            course_id, changed = made["id"], True
            if blueprint and not made.get("blueprint"):  # Canvas may take it on update only
                self.client.call("PUT", f"/courses/{course_id}", json={"course": {"blueprint": True}})
        else:
            course_id = existing["id"]
            change = _changed(existing, wanted)
            if "enrollment_term_id" in change:
                change["term_id"] = change.pop("enrollment_term_id")
            changed = bool(change)
            if change:
                self.client.call("PUT", f"/courses/{course_id}", json={"course": change})
        if template_id is not None and changed:
            self.client.call(
                "PUT",
                f"/courses/{template_id}/blueprint_templates/default/update_associations",
                json={"course_ids_to_add": [course_id]},
            )
        return _applied(course_id) if changed else _unchanged(course_id)

    def _section(self, c: Command) -> Outcome:
        a = c.attributes
        sis_id = a.get("section_id") or c.target
        lookup = f"/sections/{sis_ref('section', sis_id)}"
        existing = self._existing("section", sis_id, lookup, creating=a.get("status") == "active")
        if a.get("status") != "active":
            if existing is None:
                return _unchanged()
            # a section goes only without enrollments: those of a deleted class go with it
            for e in self.client.pages(f"/sections/{existing['id']}/enrollments"):
                self.client.call(
                    "DELETE", f"/courses/{e['course_id']}/enrollments/{e['id']}", params={"task": "delete"}
                )
            self.client.call("DELETE", f"/sections/{existing['id']}")
            return _applied(existing["id"])
        course = a.get("course_id") or sis_id
        if existing is None:
            course_id = self._need("course", course)
            body = {"course_section": {"name": a.get("name"), "sis_section_id": sis_id}}
            made, existing = self._create(f"/courses/{course_id}/sections", body, lookup)
            if made is not None:
                return _applied(made["id"])
        if existing.get("name") == a.get("name"):
            return _unchanged(existing["id"])
        self.client.call(
            "PUT", f"/sections/{existing['id']}", json={"course_section": {"name": a.get("name")}}
        )
        return _applied(existing["id"])

    # --- enrollments and admins -----------------------------------------------------------

    def course_role(self, role: str, base: str | None) -> dict[str, Any]:
        kind = ENROLLMENT_TYPES.get(role)
        if kind is not None:
            return {"type": kind}
        base_type = ENROLLMENT_TYPES.get(base or "")
        if base_type is None:
            raise CanvasRejected(400, f"course role {role!r} has no base role", "APPLY", role)
        return {"type": base_type, "role_id": self.role_id(role, base_type)}

    def _stripe(self, user: str, course: str) -> threading.Lock:
        return self._stripes[zlib.crc32(f"{user}|{course}".encode()) % len(self._stripes)]

    def _enrollment(self, c: Command) -> Outcome:
        a = c.attributes
        previous = self.ids.get("enrollment", c.target)
        course = a.get("course_id")
        if course is None:
            raise CanvasRejected(400, "an enrollment without course_id", "APPLY", c.target)
        user_sis = a.get("user_id") or ""
        if a.get("status") != "active":
            if previous is None:
                return _unchanged()
            with self._stripe(user_sis, course):
                self.holders.release(c.target)
                if self.holders.others(c.target, previous):
                    return _unchanged(previous)  # another SIS enrollment still holds it
                return self._end(course, previous)
        body: dict[str, Any] = {
            "user_id": int(self._need("user", user_sis)),
            **self.course_role(a.get("role") or "", a.get("base_role")),
            "enrollment_state": "active",
            "start_at": a.get("start_date"),
            "end_at": a.get("end_date"),
            "notify": False,
        }
        observed = a.get("associated_user_id")
        if observed is not None:
            body["associated_user_id"] = int(self._need("user", observed))
        section = a.get("section_id")
        if section is not None:
            path = f"/sections/{self._need('section', section)}/enrollments"
        else:
            path = f"/courses/{self._need('course', course)}/enrollments"
        with self._stripe(user_sis, course):
            made = self.client.call("POST", path, json={"enrollment": body})
            self.holders.hold(c.target, str(made["id"]))
            if (
                previous is not None
                and previous != str(made["id"])
                and not self.holders.others(c.target, previous)
            ):
                self._end(course, previous)  # change_role: the enrollment in the old role goes
        return _applied(made["id"])

    def _end(self, course: str, enrollment_id: str) -> Outcome:
        found = self._get(f"/courses/{sis_ref('course', course)}")
        if found is None:
            return _unchanged()  # the course is gone, and its enrollments with it
        try:
            self.client.call(
                "DELETE",
                f"/courses/{found['id']}/enrollments/{enrollment_id}",
                params={"task": self.unenroll_task},
            )
        except CanvasRejected as exc:
            if exc.status == 404:
                return _unchanged()
            raise
        return _applied(enrollment_id)

    def _admin(self, c: Command) -> Outcome:
        a = c.attributes
        role = a.get("role") or "AccountAdmin"
        role_id = self.role_id(role, "AccountMembership")
        account = self._account_ref(a.get("account_id"))
        user_sis = a.get("user_id") or ""
        path = f"/accounts/{account}/admins"
        if a.get("status") != "active":
            gone = self.client.call(
                "DELETE", f"{path}/{sis_ref('user', user_sis)}", params={"role_id": role_id}, missing_ok=True
            )
            return _unchanged() if gone is None else _applied(gone["id"])
        user = int(self._need("user", user_sis))
        made = self.client.call(
            "POST", path, json={"user_id": user, "role_id": role_id, "send_confirmation": False}
        )
        return _applied(made["id"])
