"""The simulated LMS's data: a Canvas root account and everything in it, in memory.

Objects keep Canvas's shapes and rules where the provisioning sink meets them:

- users have one login (pseudonym) with ``unique_id`` and ``sis_user_id``, both unique in the
  root account; a suspended login cannot sign in; a user removed from the account is ``deleted``;
- courses, sections, accounts and terms carry ``sis_*_id`` values unique per kind, and are found
  by them (``sis_course_id:<id>``);
- enrolling a user again in the same section with the same role (and the same observed student)
  returns the existing enrollment, made active: Canvas's own idempotence, which the sink relies on;
- account admins are (account, user, role) and re-granting one returns it;
- assignments have ``due_at`` and ``points_possible``; a submission per (assignment, student)
  carries the score, grade, ``submitted_at``, late, missing and excused flags.

Every change is also told to ``listeners`` as ``(event name, object)``: the Live Events the
simulator emits are built from these, and its write log (:mod:`simulators.lms.truth`) times
them. Granting an admin (again) is ``admin_created``, removing one ``admin_deleted``; Canvas has
no Live Event for either, so the builder skips them.

:meth:`CanvasStore.save` writes everything to a file and :meth:`CanvasStore.load` reads it back,
so a restarted simulator still holds what the sink made; ``version`` counts the calls that may
have changed something, for a saver to tell whether there is anything new to save.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import unquote

from connectors.canvas.protocol import ENROLLMENT_TYPES
from simulators.serving import read_state, write_state

__all__ = ["BUILT_IN_ROLES", "CanvasError", "CanvasStore"]

Obj = dict[str, Any]
Listener = Callable[[str, Obj], None]

#: Canvas's built-in roles: (id, name, base role type).
BUILT_IN_ROLES: tuple[tuple[int, str, str], ...] = (
    (1, "AccountAdmin", "AccountMembership"),
    (3, "StudentEnrollment", "StudentEnrollment"),
    (4, "TeacherEnrollment", "TeacherEnrollment"),
    (5, "TaEnrollment", "TaEnrollment"),
    (6, "DesignerEnrollment", "DesignerEnrollment"),
    (7, "ObserverEnrollment", "ObserverEnrollment"),
)
_COURSE_BASES = frozenset(ENROLLMENT_TYPES.values())
_ENROLLMENT_STATES = frozenset({"active", "invited", "inactive"})
_TASKS = {"conclude": "completed", "delete": "deleted", "inactivate": "inactive", "deactivate": "inactive"}
_STATE_KIND = "sislms.canvas-store"
#: The object tables, saved and loaded as they are.
_TABLES = (
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
_P = ParamSpec("_P")
_R = TypeVar("_R")


#: the SIS id and login fields looked up by value (``sis_user_id:...`` refs, "already in use")
_INDEXED_FIELDS = (
    "sis_account_id", "sis_term_id", "sis_user_id", "unique_id", "sis_course_id", "sis_section_id",
)  # fmt: skip


class CanvasError(Exception):
    """An API error: the HTTP status and Canvas's error body."""

    def __init__(self, status: int, message: str, field: str | None = None, kind: str = "invalid") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.kind = kind


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def _not_found() -> CanvasError:
    return CanvasError(404, "The specified resource does not exist.")


def _writes(method: Callable[Concatenate[CanvasStore, _P], _R]) -> Callable[Concatenate[CanvasStore, _P], _R]:
    """A method that may change the store: it runs under the lock and counts in ``version``
    (also when it fails: it may have changed something first)."""

    @functools.wraps(method)
    def write(self: CanvasStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock:
            try:
                return method(self, *args, **kwargs)
            finally:
                self.version += 1

    return write


class CanvasStore:
    """One Canvas root account (id 1) and its sub-accounts, terms, users, courses, sections,
    enrollments, admins, roles, assignments and submissions."""

    def __init__(self, root_name: str = "Simulated District") -> None:
        self.lock = threading.RLock()
        self.listeners: list[Listener] = []
        #: calls that may have changed something (see :meth:`save`)
        self.version = 0
        self._next_id = 100
        #: indexed field -> value -> ids of the objects that held it (see _sis_index)
        self._by_sis: dict[str, dict[str, set[int]]] = {}
        #: user id -> the id of their first login
        self._login_by_user: dict[int, int] = {}
        self.accounts: dict[int, Obj] = {}
        self.terms: dict[int, Obj] = {}
        self.users: dict[int, Obj] = {}
        self.logins: dict[int, Obj] = {}
        self.courses: dict[int, Obj] = {}
        self.sections: dict[int, Obj] = {}
        self.enrollments: dict[int, Obj] = {}
        self.admins: dict[int, Obj] = {}
        self.roles: dict[int, Obj] = {}
        self.assignments: dict[int, Obj] = {}
        self.submissions: dict[tuple[int, int], Obj] = {}
        # Indexes (enrollments are never removed, and their user, section, course and role never
        # change): a district's first load makes tens of thousands, and scans would make it slow.
        self._enrollment_of_key: dict[tuple[int, int, int, int | None], int] = {}
        self._enrollments_by: dict[tuple[str, int], list[int]] = {}
        #: blueprint course id -> ids of the courses that follow it
        self.associations: dict[int, set[int]] = {}
        self.accounts[1] = {
            "id": 1,
            "name": root_name,
            "parent_account_id": None,
            "root_account_id": None,
            "sis_account_id": None,
            "integration_id": None,
            "workflow_state": "active",
        }
        for rid, name, base in BUILT_IN_ROLES:
            self.roles[rid] = {
                "id": rid,
                "role": name,
                "label": name.removesuffix("Enrollment") or name,
                "base_role_type": base,
                "account_id": 1,
                "workflow_state": "built_in",
            }

    # --- plumbing ----------------------------------------------------------------------------

    def _new_id(self) -> int:
        with self.lock:
            value = self._next_id
            self._next_id += 1
            return value

    def _tell(self, event: str, obj: Obj) -> None:
        for listener in self.listeners:
            listener(event, obj)

    def _sis_index(self, objs: Mapping[int, Obj], field: str, value: str) -> Obj | None:
        """The first live object of ``objs`` whose ``field`` is ``value`` (by id order), through
        :attr:`_by_sis`: the ids an indexed field ever held that value (a changed value leaves
        its old entry behind, so each candidate is checked); a scan for a field not indexed."""
        if field not in _INDEXED_FIELDS:
            for obj in objs.values():
                if obj.get(field) == value and obj.get("workflow_state") != "deleted":
                    return obj
            return None
        for oid in sorted(self._by_sis.get(field, {}).get(value, ())):
            found = objs.get(oid)
            if found is not None and found.get(field) == value and found.get("workflow_state") != "deleted":
                return found
        return None

    def _index(self, obj: Obj) -> None:
        """Note the SIS ids and login an object holds now (call after creating or changing one)."""
        for field in _INDEXED_FIELDS:
            value = obj.get(field)
            if isinstance(value, str):
                self._by_sis.setdefault(field, {}).setdefault(value, set()).add(obj["id"])
        if "unique_id" in obj and "user_id" in obj:  # a login
            self._login_by_user.setdefault(obj["user_id"], obj["id"])

    def _reindex(self) -> None:
        self._by_sis = {}
        self._login_by_user = {}
        for name in ("accounts", "terms", "logins", "courses", "sections"):
            for obj in getattr(self, name).values():
                self._index(obj)

    def _resolve(self, objs: Mapping[int, Obj], kind: str, ref: str | int) -> Obj:
        """An object by id (``42``) or SIS id (``sis_<kind>_id:<id>``); 404 otherwise."""
        ref = str(ref)
        if ref.isdigit():
            obj = objs.get(int(ref))
        else:
            prefix = f"sis_{kind}_id:"
            if not ref.startswith(prefix):
                raise _not_found()
            obj = self._sis_index(objs, f"sis_{kind}_id", unquote(ref[len(prefix) :]))
        if obj is None:
            raise _not_found()
        return obj

    def _taken(self, objs: Mapping[int, Obj], field: str, value: str | None, but: int | None = None) -> None:
        if value is None:
            return
        other = self._sis_index(objs, field, value)
        if other is not None and other["id"] != but:
            raise CanvasError(400, f'{field.replace("_", " ")} "{value}" is already in use', field, "taken")

    # --- accounts ----------------------------------------------------------------------------

    def account(self, ref: str | int) -> Obj:
        return self._resolve(self.accounts, "account", ref)

    def sub_accounts(self, ref: str | int, recursive: bool = False) -> list[Obj]:
        parent = self.account(ref)
        out: list[Obj] = []
        todo = [parent["id"]]
        while todo:
            pid = todo.pop(0)
            children = [a for a in self.accounts.values() if a["parent_account_id"] == pid]
            children = [a for a in children if a["workflow_state"] != "deleted"]
            out += children
            if recursive:
                todo += [a["id"] for a in children]
        return out

    @_writes
    def create_sub_account(self, parent_ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            parent = self.account(parent_ref)
            name = _text(params.get("name"))
            if name is None:
                raise CanvasError(400, "name is required", "name", "blank")
            sis_id = _text(params.get("sis_account_id"))
            self._taken(self.accounts, "sis_account_id", sis_id)
            account = {
                "id": self._new_id(),
                "name": name,
                "parent_account_id": parent["id"],
                "root_account_id": 1,
                "sis_account_id": sis_id,
                "integration_id": _text(params.get("integration_id")),
                "workflow_state": "active",
            }
            self.accounts[account["id"]] = account
            self._index(account)
            self._tell("account_created", account)
            return account

    @_writes
    def update_account(self, ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            account = self.account(ref)
            if "name" in params:
                name = _text(params["name"])
                if name is None:
                    raise CanvasError(400, "name can't be blank", "name", "blank")
                account["name"] = name
            if "sis_account_id" in params:
                if account["id"] == 1:
                    raise CanvasError(400, "a root account has no SIS id", "sis_account_id", "invalid")
                sis_id = _text(params["sis_account_id"])
                self._taken(self.accounts, "sis_account_id", sis_id, but=account["id"])
                account["sis_account_id"] = sis_id
                self._index(account)
            if "integration_id" in params:
                account["integration_id"] = _text(params["integration_id"])
            if "parent_account_id" in params and account["id"] != 1:
                parent = self.account(params["parent_account_id"])
                account["parent_account_id"] = parent["id"]
            self._tell("account_updated", account)
            return account

    @_writes
    def delete_sub_account(self, parent_ref: str | int, ref: str | int) -> Obj:
        with self.lock:
            parent = self.account(parent_ref)
            account = self.account(ref)
            if account["parent_account_id"] != parent["id"]:
                raise _not_found()
            live = [c for c in self.courses.values() if c["account_id"] == account["id"]]
            if any(c["workflow_state"] != "deleted" for c in live) or self.sub_accounts(account["id"]):
                raise CanvasError(
                    409, "You can't delete a sub-account that has courses or sub-accounts in it."
                )
            account["workflow_state"] = "deleted"
            return account

    # --- terms -------------------------------------------------------------------------------

    def term(self, ref: str | int) -> Obj:
        return self._resolve(self.terms, "term", ref)

    @_writes
    def create_term(self, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            sis_id = _text(params.get("sis_term_id"))
            self._taken(self.terms, "sis_term_id", sis_id)
            term: Obj = {
                "id": self._new_id(),
                "name": _text(params.get("name")) or "Term",
                "sis_term_id": sis_id,
                "start_at": _text(params.get("start_at")),
                "end_at": _text(params.get("end_at")),
                "workflow_state": "active",
            }
            self.terms[term["id"]] = term
            self._index(term)
            return term

    @_writes
    def update_term(self, ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            term = self.term(ref)
            for field in ("name", "start_at", "end_at"):
                if field in params:
                    term[field] = _text(params[field])
            if "sis_term_id" in params:
                sis_id = _text(params["sis_term_id"])
                self._taken(self.terms, "sis_term_id", sis_id, but=term["id"])
                term["sis_term_id"] = sis_id
                self._index(term)
            return term

    @_writes
    def delete_term(self, ref: str | int) -> Obj:
        with self.lock:
            term = self.term(ref)
            term["workflow_state"] = "deleted"
            return term

    # --- users and logins --------------------------------------------------------------------

    def user(self, ref: str | int) -> Obj:
        ref = str(ref)
        if ref.startswith("sis_user_id:"):
            login = self._sis_index(self.logins, "sis_user_id", unquote(ref[len("sis_user_id:") :]))
            if login is None:
                raise _not_found()
            return self.users[login["user_id"]]
        if not ref.isdigit() or int(ref) not in self.users:
            raise _not_found()
        return self.users[int(ref)]

    def login_of(self, user: Obj) -> Obj:
        login = self.login_for(user["id"])
        if login is not None:
            return login
        return next(login for login in self.logins.values() if login["user_id"] == user["id"])

    def login_for(self, user_id: int) -> Obj | None:
        """A user's first login by user id (None: no such user, or the root admin), indexed."""
        lid = self._login_by_user.get(user_id)
        return self.logins.get(lid) if lid is not None else None

    @_writes
    def create_user(self, account_ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            self.account(account_ref)
            u, p = params.get("user") or {}, params.get("pseudonym") or {}
            channel = params.get("communication_channel") or {}
            name = _text(u.get("name"))
            unique_id = _text(p.get("unique_id"))
            if unique_id is None:
                raise CanvasError(400, "unique_id can't be blank", "unique_id", "blank")
            sis_id = _text(p.get("sis_user_id"))
            existing = self._sis_index(self.logins, "unique_id", unique_id)
            if existing is not None:
                raise CanvasError(400, f'ID "{unique_id}" is already in use', "unique_id", "taken")
            self._taken(self.logins, "sis_user_id", sis_id)
            user: Obj = {
                "id": self._new_id(),
                "name": name or unique_id,
                "short_name": _text(u.get("short_name")) or name or unique_id,
                "sortable_name": _text(u.get("sortable_name")) or name or unique_id,
                "email": _text(channel.get("address"))
                if (channel.get("type") or "email") == "email"
                else None,
                "workflow_state": "registered",
                "created_at": _now(),
            }
            login: Obj = {
                "id": self._new_id(),
                "user_id": user["id"],
                "account_id": 1,
                "unique_id": unique_id,
                "sis_user_id": sis_id,
                "integration_id": _text(p.get("integration_id")),
                "workflow_state": "active",
            }
            self.users[user["id"]] = user
            self.logins[login["id"]] = login
            self._index(login)
            self._tell("user_created", user)
            return user

    @_writes
    def update_user(self, ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            user = self.user(ref)
            if user["workflow_state"] == "deleted":
                raise _not_found()
            u = params.get("user") or {}
            for field in ("name", "short_name", "sortable_name", "email"):
                if field in u:
                    user[field] = _text(u[field])
            event = u.get("event")
            if event in ("suspend", "unsuspend"):
                self.login_of(user)["workflow_state"] = "suspended" if event == "suspend" else "active"
            elif event is not None:
                raise CanvasError(400, f"unknown event {event!r}", "event", "inclusion")
            self._tell("user_updated", user)
            return user

    def logins_of(self, ref: str | int) -> list[Obj]:
        user = self.user(ref)
        return [login for login in self.logins.values() if login["user_id"] == user["id"]]

    @_writes
    def update_login(self, login_id: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            if not str(login_id).isdigit() or int(login_id) not in self.logins:
                raise _not_found()
            login = self.logins[int(login_id)]
            if "unique_id" in params:
                unique_id = _text(params["unique_id"])
                if unique_id is None:
                    raise CanvasError(400, "unique_id can't be blank", "unique_id", "blank")
                other = self._sis_index(self.logins, "unique_id", unique_id)
                if other is not None and other["id"] != login["id"]:
                    raise CanvasError(400, f'ID "{unique_id}" is already in use', "unique_id", "taken")
                login["unique_id"] = unique_id
                self._index(login)
            if "sis_user_id" in params:
                sis_id = _text(params["sis_user_id"])
                self._taken(self.logins, "sis_user_id", sis_id, but=login["id"])
                login["sis_user_id"] = sis_id
                self._index(login)
            if "integration_id" in params:
                login["integration_id"] = _text(params["integration_id"])
            if "workflow_state" in params:
                if params["workflow_state"] not in ("active", "suspended"):
                    raise CanvasError(400, "workflow_state must be active or suspended", "workflow_state")
                login["workflow_state"] = params["workflow_state"]
            return login

    @_writes
    def remove_user(self, account_ref: str | int, ref: str | int) -> Obj:
        """Removes a user from the root account: deleted, their logins and enrollments with them."""
        with self.lock:
            self.account(account_ref)
            user = self.user(ref)
            user["workflow_state"] = "deleted"
            for login in self.logins_of(user["id"]):
                login["workflow_state"] = "deleted"
            for e in self.enrollments.values():
                if e["user_id"] == user["id"] and e["enrollment_state"] != "deleted":
                    e["enrollment_state"] = "deleted"
                    self._tell("enrollment_updated", e)
            self._tell("user_updated", user)
            return user

    def account_users(self, account_ref: str | int) -> list[Obj]:
        self.account(account_ref)
        return [u for u in self.users.values() if u["workflow_state"] != "deleted"]

    # --- courses and sections ----------------------------------------------------------------

    def course(self, ref: str | int) -> Obj:
        return self._resolve(self.courses, "course", ref)

    def _course_fields(self, course: Obj, c: Mapping[str, Any]) -> None:
        if "name" in c:
            course["name"] = _text(c["name"]) or course.get("name") or "Unnamed course"
        if "course_code" in c:
            course["course_code"] = _text(c["course_code"])
        if "integration_id" in c:
            course["integration_id"] = _text(c["integration_id"])
        for field in ("start_at", "end_at"):
            if field in c:
                course[field] = _text(c[field])
        if "term_id" in c:
            term = _text(c["term_id"])
            course["enrollment_term_id"] = None if term is None else self.term(term)["id"]
        if "account_id" in c:
            course["account_id"] = self.account(c["account_id"])["id"]
        if "blueprint" in c:
            course["blueprint"] = _flag(c["blueprint"])

    @_writes
    def create_course(self, account_ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            account = self.account(account_ref)
            c = params.get("course") or {}
            sis_id = _text(c.get("sis_course_id"))
            self._taken(self.courses, "sis_course_id", sis_id)
            course: Obj = {
                "id": self._new_id(),
                "name": "Unnamed course",
                "course_code": None,
                "sis_course_id": sis_id,
                "integration_id": None,
                "account_id": account["id"],
                "root_account_id": 1,
                "enrollment_term_id": None,
                "start_at": None,
                "end_at": None,
                "blueprint": False,
                "workflow_state": "available" if _flag(params.get("offer")) else "unpublished",
                "created_at": _now(),
            }
            self._course_fields(course, c)
            self.courses[course["id"]] = course
            self._index(course)
            self._tell("course_created", course)
            return course

    @_writes
    def update_course(self, ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            course = self.course(ref)
            c = params.get("course") or {}
            if "sis_course_id" in c:
                sis_id = _text(c["sis_course_id"])
                self._taken(self.courses, "sis_course_id", sis_id, but=course["id"])
                course["sis_course_id"] = sis_id
                self._index(course)
            self._course_fields(course, c)
            event = c.get("event")
            states = {
                "offer": "available",
                "claim": "unpublished",
                "conclude": "completed",
                "delete": "deleted",
                "undelete": "unpublished",
            }
            if event is not None:
                if event not in states:
                    raise CanvasError(400, f"unknown event {event!r}", "event", "inclusion")
                course["workflow_state"] = states[event]
            self._tell("course_updated", course)
            return course

    @_writes
    def delete_course(self, ref: str | int, event: str) -> Obj:
        with self.lock:
            course = self.course(ref)
            if event not in ("delete", "conclude"):
                raise CanvasError(400, "event must be delete or conclude", "event", "inclusion")
            course["workflow_state"] = "deleted" if event == "delete" else "completed"
            self._tell("course_updated", course)
            return course

    def account_courses(self, account_ref: str | int) -> list[Obj]:
        account = self.account(account_ref)
        ids = {account["id"], *(a["id"] for a in self.sub_accounts(account["id"], recursive=True))}
        return [
            c for c in self.courses.values() if c["account_id"] in ids and c["workflow_state"] != "deleted"
        ]

    @_writes
    def update_associations(self, template_ref: str | int, add: Iterable[Any], remove: Iterable[Any]) -> None:
        with self.lock:
            template = self.course(template_ref)
            if not template["blueprint"]:
                raise CanvasError(400, "the course is not a blueprint", "blueprint", "invalid")
            followers = self.associations.setdefault(template["id"], set())
            adding = [self.course(r) for r in add]
            for course in adding:
                if course["blueprint"]:
                    raise CanvasError(400, "a blueprint cannot follow a blueprint", "course_ids_to_add")
                for other in self.associations.values():
                    other.discard(course["id"])  # a course follows one blueprint at most
                followers.add(course["id"])
            for r in remove:
                followers.discard(self.course(r)["id"])

    def blueprint_of(self, course_id: int) -> int | None:
        return next((t for t, followers in self.associations.items() if course_id in followers), None)

    def section(self, ref: str | int) -> Obj:
        return self._resolve(self.sections, "section", ref)

    @_writes
    def create_section(self, course_ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            course = self.course(course_ref)
            s = params.get("course_section") or {}
            sis_id = _text(s.get("sis_section_id"))
            self._taken(self.sections, "sis_section_id", sis_id)
            section = {
                "id": self._new_id(),
                "course_id": course["id"],
                "name": _text(s.get("name")) or course["name"],
                "sis_section_id": sis_id,
                "integration_id": _text(s.get("integration_id")),
                "start_at": _text(s.get("start_at")),
                "end_at": _text(s.get("end_at")),
                "workflow_state": "active",
            }
            self.sections[section["id"]] = section
            self._index(section)
            return section

    @_writes
    def update_section(self, ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            section = self.section(ref)
            s = params.get("course_section") or {}
            for field in ("name", "integration_id", "start_at", "end_at"):
                if field in s:
                    section[field] = _text(s[field])
            if "sis_section_id" in s:
                sis_id = _text(s["sis_section_id"])
                self._taken(self.sections, "sis_section_id", sis_id, but=section["id"])
                section["sis_section_id"] = sis_id
                self._index(section)
            return section

    @_writes
    def delete_section(self, ref: str | int) -> Obj:
        with self.lock:
            section = self.section(ref)
            live = [e for e in self.enrollments.values() if e["course_section_id"] == section["id"]]
            if any(e["enrollment_state"] not in ("deleted", "completed") for e in live):
                raise CanvasError(400, "A section with active enrollments cannot be deleted", "base")
            section["workflow_state"] = "deleted"
            return section

    def course_sections(self, course_ref: str | int) -> list[Obj]:
        course = self.course(course_ref)
        return [
            s
            for s in self.sections.values()
            if s["course_id"] == course["id"] and s["workflow_state"] != "deleted"
        ]

    # --- roles -------------------------------------------------------------------------------

    def role(self, ref: str | int | None = None, name: str | None = None) -> Obj:
        if ref is not None and str(ref).isdigit() and int(ref) in self.roles:
            role = self.roles[int(ref)]
            if role["workflow_state"] != "deleted":
                return role
        if name is not None:
            for role in self.roles.values():
                if role["workflow_state"] != "deleted" and name in (role["role"], role["label"]):
                    return role
        raise CanvasError(400, f"role {ref or name!r} does not exist", "role_id", "invalid")

    @_writes
    def create_role(self, account_ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            account = self.account(account_ref)
            label = _text(params.get("label") or params.get("role"))
            if label is None:
                raise CanvasError(400, "label is required", "label", "blank")
            base = params.get("base_role_type") or "AccountMembership"
            if base not in _COURSE_BASES and base != "AccountMembership":
                raise CanvasError(
                    400, f"base_role_type {base!r} is not a role type", "base_role_type", "inclusion"
                )
            if any(r["label"] == label and r["workflow_state"] != "deleted" for r in self.roles.values()):
                raise CanvasError(400, f'role "{label}" is already in use', "label", "taken")
            role = {
                "id": self._new_id(),
                "role": label,
                "label": label,
                "base_role_type": base,
                "account_id": account["id"],
                "workflow_state": "active",
            }
            self.roles[role["id"]] = role
            return role

    def account_roles(self, account_ref: str | int) -> list[Obj]:
        self.account(account_ref)
        return [r for r in self.roles.values() if r["workflow_state"] != "deleted"]

    # --- enrollments -------------------------------------------------------------------------

    @_writes
    def enroll(
        self, *, course_ref: str | int | None, section_ref: str | int | None, params: Mapping[str, Any]
    ) -> Obj:
        """POST .../enrollments: a new enrollment, or the same one (user, section, role,
        observed user) made active again."""
        with self.lock:
            e = params.get("enrollment") or {}
            if section_ref is not None:
                section = self.section(section_ref)
                course = self.courses[section["course_id"]]
            else:
                course = self.course(course_ref if course_ref is not None else "")
                ref = e.get("course_section_id")
                section = self.section(ref) if ref else self._default_section(course)
            if e.get("user_id") is None:
                raise CanvasError(400, "user_id is required", "user_id", "blank")
            user = self.user(e["user_id"])
            if user["workflow_state"] == "deleted":
                raise CanvasError(400, "the user is deleted", "user_id", "invalid")
            role = self._enrollment_role(e)
            observed = None
            if e.get("associated_user_id") is not None:
                if role["base_role_type"] != "ObserverEnrollment":
                    raise CanvasError(400, "only observers observe a user", "associated_user_id", "invalid")
                observed = self.user(e["associated_user_id"])["id"]
            state = e.get("enrollment_state") or "invited"
            if state not in _ENROLLMENT_STATES:
                raise CanvasError(
                    400, f"enrollment_state {state!r} is not allowed", "enrollment_state", "inclusion"
                )
            key = (section["id"], user["id"], role["id"], observed)
            found = self._enrollment_of_key.get(key)
            if found is not None:
                existing = self.enrollments[found]
                existing.update(enrollment_state=state, updated_at=_now())
                self._enrollment_dates(existing, e)
                self._tell("enrollment_updated", existing)
                return existing
            enrollment = {
                "id": self._new_id(),
                "course_id": course["id"],
                "course_section_id": section["id"],
                "user_id": user["id"],
                "type": role["base_role_type"],
                "role": role["role"],
                "role_id": role["id"],
                "associated_user_id": observed,
                "enrollment_state": state,
                "limit_privileges_to_course_section": _flag(e.get("limit_privileges_to_course_section")),
                "start_at": None,
                "end_at": None,
                "root_account_id": 1,
                "created_at": _now(),
                "updated_at": _now(),
            }
            self._enrollment_dates(enrollment, e)
            self.enrollments[enrollment["id"]] = enrollment
            self._enrollment_of_key[key] = enrollment["id"]
            for by in (("user", user["id"]), ("section", section["id"]), ("course", course["id"])):
                self._enrollments_by.setdefault(by, []).append(enrollment["id"])
            self._tell("enrollment_created", enrollment)
            return enrollment

    @staticmethod
    def _enrollment_dates(enrollment: Obj, e: Mapping[str, Any]) -> None:
        for field in ("start_at", "end_at"):
            if field in e:
                enrollment[field] = _text(e[field])

    def _enrollment_role(self, e: Mapping[str, Any]) -> Obj:
        if e.get("role_id") is not None:
            role = self.role(e["role_id"])
        else:
            kind = e.get("type")
            if kind not in _COURSE_BASES:
                raise CanvasError(400, f"type {kind!r} is not an enrollment type", "type", "inclusion")
            role = self.role(name=kind)
        if role["base_role_type"] not in _COURSE_BASES:
            raise CanvasError(400, f"role {role['label']!r} is not a course role", "role_id", "invalid")
        if e.get("type") is not None and e["type"] != role["base_role_type"]:
            raise CanvasError(400, "type and role_id disagree", "type", "invalid")
        return role

    def _default_section(self, course: Obj) -> Obj:
        sections = [
            s
            for s in self.sections.values()
            if s["course_id"] == course["id"] and s["workflow_state"] != "deleted"
        ]
        if sections:
            return sections[0]
        return self.create_section(course["id"], {"course_section": {"name": course["name"]}})

    @_writes
    def end_enrollment(self, course_ref: str | int, enrollment_id: str | int, task: str) -> Obj:
        with self.lock:
            course = self.course(course_ref)
            enrollment = self.enrollments.get(int(enrollment_id)) if str(enrollment_id).isdigit() else None
            if (
                enrollment is None
                or enrollment["course_id"] != course["id"]
                or enrollment["enrollment_state"] == "deleted"
            ):
                raise _not_found()
            if task not in _TASKS:
                raise CanvasError(400, f"task {task!r} is not one of {sorted(_TASKS)}", "task", "inclusion")
            enrollment.update(enrollment_state=_TASKS[task], updated_at=_now())
            self._tell("enrollment_updated", enrollment)
            return enrollment

    @_writes
    def reactivate(self, course_ref: str | int, enrollment_id: str | int) -> Obj:
        with self.lock:
            course = self.course(course_ref)
            enrollment = self.enrollments.get(int(enrollment_id)) if str(enrollment_id).isdigit() else None
            if enrollment is None or enrollment["course_id"] != course["id"]:
                raise _not_found()
            if enrollment["enrollment_state"] != "inactive":
                raise CanvasError(400, "only an inactive enrollment can be reactivated", "enrollment_state")
            enrollment.update(enrollment_state="active", updated_at=_now())
            self._tell("enrollment_updated", enrollment)
            return enrollment

    def list_enrollments(
        self,
        *,
        course_ref: str | int | None = None,
        section_ref: str | int | None = None,
        user_ref: str | int | None = None,
        types: Iterable[str] = (),
        states: Iterable[str] = (),
        user_id: str | int | None = None,
    ) -> list[Obj]:
        """Enrollments of a course, section or user; by default the live ones (not deleted, not
        completed), as Canvas lists them."""
        rows: list[Obj] | None = None

        def narrow(by: str, oid: int) -> list[Obj]:
            ids = self._enrollments_by.get((by, oid), [])
            field = {"user": "user_id", "section": "course_section_id", "course": "course_id"}[by]
            if rows is None:
                return [self.enrollments[i] for i in ids]
            return [e for e in rows if e[field] == oid]

        if course_ref is not None:
            rows = narrow("course", self.course(course_ref)["id"])
        if section_ref is not None:
            rows = narrow("section", self.section(section_ref)["id"])
        if user_ref is not None:
            rows = narrow("user", self.user(user_ref)["id"])
        if user_id is not None:
            rows = narrow("user", self.user(user_id)["id"])
        if rows is None:
            rows = list(self.enrollments.values())
        wanted_types = set(types)
        if wanted_types:
            rows = [e for e in rows if e["type"] in wanted_types or e["role"] in wanted_types]
        wanted_states = set(states) or {"active", "invited", "inactive"}
        return [e for e in rows if e["enrollment_state"] in wanted_states]

    # --- account admins ----------------------------------------------------------------------

    @_writes
    def add_admin(self, account_ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            account = self.account(account_ref)
            if params.get("user_id") is None:
                raise CanvasError(400, "user_id is required", "user_id", "blank")
            user = self.user(params["user_id"])
            if params.get("role_id") is not None:
                role = self.role(params["role_id"])
            else:
                role = self.role(name=params.get("role") or "AccountAdmin")
            if role["base_role_type"] != "AccountMembership":
                raise CanvasError(400, f"role {role['label']!r} is not an account role", "role_id", "invalid")
            for admin in self.admins.values():
                if (
                    admin["account_id"] == account["id"]
                    and admin["user_id"] == user["id"]
                    and admin["role_id"] == role["id"]
                ):
                    admin["workflow_state"] = "active"
                    self._tell("admin_created", admin)
                    return admin
            admin = {
                "id": self._new_id(),
                "account_id": account["id"],
                "user_id": user["id"],
                "role": role["role"],
                "role_id": role["id"],
                "workflow_state": "active",
            }
            self.admins[admin["id"]] = admin
            self._tell("admin_created", admin)
            return admin

    @_writes
    def remove_admin(
        self, account_ref: str | int, user_ref: str | int, role: str | None, role_id: Any
    ) -> Obj:
        with self.lock:
            account = self.account(account_ref)
            user = self.user(user_ref)
            wanted = self.role(role_id) if role_id is not None else self.role(name=role or "AccountAdmin")
            for admin in self.admins.values():
                if (
                    admin["account_id"] == account["id"]
                    and admin["user_id"] == user["id"]
                    and admin["role_id"] == wanted["id"]
                    and admin["workflow_state"] == "active"
                ):
                    admin["workflow_state"] = "deleted"
                    self._tell("admin_deleted", admin)
                    return admin
            raise _not_found()

    def account_admins(self, account_ref: str | int, user_ids: Iterable[Any] = ()) -> list[Obj]:
        account = self.account(account_ref)
        rows = [
            a
            for a in self.admins.values()
            if a["account_id"] == account["id"] and a["workflow_state"] == "active"
        ]
        wanted = {self.user(u)["id"] for u in user_ids}
        return [a for a in rows if a["user_id"] in wanted] if wanted else rows

    # --- assignments and submissions ---------------------------------------------------------

    @_writes
    def create_assignment(
        self, course_ref: str | int, params: Mapping[str, Any], at: str | None = None
    ) -> Obj:
        """A new assignment; ``at`` (default now) stamps ``created_at`` and ``updated_at``."""
        with self.lock:
            when = at or _now()
            course = self.course(course_ref)
            a = params.get("assignment") or {}
            name = _text(a.get("name"))
            if name is None:
                raise CanvasError(400, "name can't be blank", "name", "blank")
            assignment = {
                "id": self._new_id(),
                "course_id": course["id"],
                "name": name,
                "due_at": _text(a.get("due_at")),
                "points_possible": float(a.get("points_possible") or 0),
                "grading_type": a.get("grading_type") or "points",
                "published": _flag(a.get("published", True)),
                "created_at": when,
                "updated_at": when,
                "workflow_state": "published" if _flag(a.get("published", True)) else "unpublished",
            }
            self.assignments[assignment["id"]] = assignment
            self._tell("assignment_created", assignment)
            return assignment

    def assignment(self, course_ref: str | int, ref: str | int) -> Obj:
        course = self.course(course_ref)
        a = self.assignments.get(int(ref)) if str(ref).isdigit() else None
        if a is None or a["course_id"] != course["id"] or a["workflow_state"] == "deleted":
            raise _not_found()
        return a

    @_writes
    def update_assignment(self, course_ref: str | int, ref: str | int, params: Mapping[str, Any]) -> Obj:
        with self.lock:
            assignment = self.assignment(course_ref, ref)
            a = params.get("assignment") or {}
            if "name" in a:
                assignment["name"] = _text(a["name"]) or assignment["name"]
            if "due_at" in a:
                assignment["due_at"] = _text(a["due_at"])
            if "points_possible" in a:
                assignment["points_possible"] = float(a["points_possible"] or 0)
            assignment["updated_at"] = _now()
            self._tell("assignment_updated", assignment)
            return assignment

    def course_assignments(self, course_ref: str | int) -> list[Obj]:
        course = self.course(course_ref)
        return [
            a
            for a in self.assignments.values()
            if a["course_id"] == course["id"] and a["workflow_state"] != "deleted"
        ]

    def _submission(self, assignment: Obj, user: Obj) -> Obj:
        key = (assignment["id"], user["id"])
        sub = self.submissions.get(key)
        if sub is None:
            sub = self.submissions[key] = {
                "id": self._new_id(),
                "assignment_id": assignment["id"],
                "course_id": assignment["course_id"],
                "user_id": user["id"],
                "submitted_at": None,
                "score": None,
                "grade": None,
                "graded_at": None,
                "grader_id": None,
                "excused": False,
                "late": False,
                "missing": False,
                "late_policy_status": None,
                "workflow_state": "unsubmitted",
                "attempt": None,
            }
        return sub

    @_writes
    def submit(
        self, course_ref: str | int, assignment_ref: str | int, user_ref: str | int, at: str | None = None
    ) -> Obj:
        """A student hands in (another attempt); late when after the due date."""
        with self.lock:
            assignment = self.assignment(course_ref, assignment_ref)
            user = self.user(user_ref)
            sub = self._submission(assignment, user)
            created = sub["submitted_at"] is None
            when = at or _now()
            sub.update(
                submitted_at=when,
                attempt=(sub["attempt"] or 0) + 1,
                missing=False,
                late=bool(assignment["due_at"]) and when > assignment["due_at"],
                workflow_state="submitted" if sub["graded_at"] is None else "pending_review",
            )
            self._tell("submission_created" if created else "submission_updated", sub)
            return sub

    @_writes
    def grade(
        self,
        course_ref: str | int,
        assignment_ref: str | int,
        user_ref: str | int,
        params: Mapping[str, Any],
        at: str | None = None,
    ) -> Obj:
        """A teacher grades: ``posted_grade`` (points, "85%", or a letter passed through),
        ``excuse``, ``late_policy_status`` (late, missing, extended, none); ``at`` (default now)
        stamps ``graded_at``."""
        with self.lock:
            when = at or _now()
            assignment = self.assignment(course_ref, assignment_ref)
            user = self.user(user_ref)
            s = params.get("submission") or {}
            sub = self._submission(assignment, user)
            before = (sub["score"], sub["grade"], sub["excused"])
            if "posted_grade" in s:
                sub["score"], sub["grade"] = self._posted(assignment, s["posted_grade"])
                sub.update(graded_at=when, workflow_state="graded", excused=False)
            if "excuse" in s:
                sub["excused"] = _flag(s["excuse"])
                if sub["excused"]:
                    sub.update(score=None, grade=None, graded_at=when, workflow_state="graded")
            if "late_policy_status" in s:
                status = s["late_policy_status"]
                if status not in ("late", "missing", "extended", "none", None):
                    raise CanvasError(
                        400, f"late_policy_status {status!r} is not allowed", "late_policy_status"
                    )
                sub["late_policy_status"] = None if status in ("none", None) else status
                sub["missing"] = status == "missing"
                sub["late"] = status == "late" or (status not in ("none", "extended") and sub["late"])
            if (sub["score"], sub["grade"], sub["excused"]) != before:
                self._tell("grade_change", {**sub, "previous_score": before[0], "previous_grade": before[1]})
            self._tell("submission_updated", sub)
            return sub

    @staticmethod
    def _posted(assignment: Obj, value: Any) -> tuple[float | None, str | None]:
        text = _text(value)
        if text is None:
            return None, None
        points = float(assignment["points_possible"] or 0)
        try:
            if text.endswith("%"):
                score = round(float(text[:-1]) * points / 100, 2)
                return score, text
            score = float(text)
            return score, f"{score:g}"
        except ValueError:
            raise CanvasError(
                400, f"posted_grade {text!r} is not a score or a percentage", "posted_grade"
            ) from None

    def assignment_submissions(self, course_ref: str | int, assignment_ref: str | int) -> list[Obj]:
        assignment = self.assignment(course_ref, assignment_ref)
        return [s for (aid, _), s in self.submissions.items() if aid == assignment["id"]]

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: Path) -> int:
        """Write the whole store to ``path`` atomically (see :func:`simulators.serving.write_state`):
        every table, the next id, the enrollment indexes and the blueprint associations, as of one
        instant. Returns :attr:`version` at that instant.

        Objects are changed in place, so they are copied under the lock (one dict each: their
        values are scalars) and pickled after it, while writers go on."""
        with self.lock:
            state: dict[str, Any] = {
                name: {key: dict(obj) for key, obj in getattr(self, name).items()} for name in _TABLES
            }
            state["next_id"] = self._next_id
            state["enrollment_of_key"] = dict(self._enrollment_of_key)
            state["enrollments_by"] = {by: list(ids) for by, ids in self._enrollments_by.items()}
            state["associations"] = {bp: set(followers) for bp, followers in self.associations.items()}
            version = self.version
        write_state(path, _STATE_KIND, state)
        return version

    @classmethod
    def load(cls, path: Path) -> CanvasStore:
        """A store as :meth:`save` wrote it to ``path``, without listeners; new objects get ids
        after every saved one. Raises :class:`~simulators.serving.StateFileError` for a file that
        is not a Canvas store's state."""
        state = read_state(path, _STATE_KIND)
        store = cls()
        for name in _TABLES:
            setattr(store, name, state[name])
        store._next_id = int(state["next_id"])
        store._enrollment_of_key = state["enrollment_of_key"]
        store._enrollments_by = state["enrollments_by"]
        store.associations = state["associations"]
        store._reindex()
        return store

    def sizes(self) -> dict[str, int]:
        """Objects per table, deleted ones included (cheap, unlike :meth:`counts`)."""
        with self.lock:
            return {name: len(getattr(self, name)) for name in _TABLES}

    # --- ground truth ------------------------------------------------------------------------

    def ground_truth(self) -> dict[str, Any]:
        """Everything the provisioning sink manages, named by SIS ids (as the tests compare it):
        live objects only, with the attributes a sync sets."""
        with self.lock:
            acc_sis = {a["id"]: a["sis_account_id"] for a in self.accounts.values()}
            user_sis = {login["user_id"]: login["sis_user_id"] for login in self.logins.values()}
            course_sis = {c["id"]: c["sis_course_id"] for c in self.courses.values()}
            section_sis = {s["id"]: s["sis_section_id"] for s in self.sections.values()}
            term_sis = {t["id"]: t["sis_term_id"] for t in self.terms.values()}
            first_login: dict[int, Obj] = {}  # login_of per user would scan the logins each time
            for login in self.logins.values():
                first_login.setdefault(login["user_id"], login)
            users = []
            for user in self.users.values():
                if user["workflow_state"] == "deleted":
                    continue
                login = first_login[user["id"]]
                users.append(
                    {
                        "sis_user_id": login["sis_user_id"],
                        "login_id": login["unique_id"],
                        "name": user["name"],
                        "sortable_name": user["sortable_name"],
                        "email": user["email"],
                        "integration_id": login["integration_id"],
                        "state": login["workflow_state"],
                    }
                )
            return {
                "accounts": [
                    {
                        "sis_account_id": a["sis_account_id"],
                        "name": a["name"],
                        "parent": acc_sis.get(a["parent_account_id"]),
                        "root": a["id"] == 1,
                    }
                    for a in self.accounts.values()
                    if a["workflow_state"] != "deleted"
                ],
                "terms": [
                    {
                        "sis_term_id": t["sis_term_id"],
                        "name": t["name"],
                        "start_at": t["start_at"],
                        "end_at": t["end_at"],
                    }
                    for t in self.terms.values()
                    if t["workflow_state"] != "deleted"
                ],
                "users": users,
                "courses": [
                    {
                        "sis_course_id": c["sis_course_id"],
                        "name": c["name"],
                        "course_code": c["course_code"],
                        "account": acc_sis.get(c["account_id"]),
                        "term": term_sis.get(c["enrollment_term_id"]),
                        "blueprint": c["blueprint"],
                        "blueprint_course": course_sis.get(self.blueprint_of(c["id"]) or -1),
                        "state": c["workflow_state"],
                    }
                    for c in self.courses.values()
                    if c["workflow_state"] != "deleted"
                ],
                "sections": [
                    {
                        "sis_section_id": s["sis_section_id"],
                        "course": course_sis.get(s["course_id"]),
                        "name": s["name"],
                    }
                    for s in self.sections.values()
                    if s["workflow_state"] != "deleted"
                ],
                "enrollments": [
                    {
                        "user": user_sis.get(e["user_id"]),
                        "course": course_sis.get(e["course_id"]),
                        "section": section_sis.get(e["course_section_id"]),
                        "type": e["type"],
                        "role": e["role"],
                        "observed": user_sis.get(e["associated_user_id"] or -1),
                        "state": e["enrollment_state"],
                        "id": e["id"],
                    }
                    for e in self.enrollments.values()
                    if e["enrollment_state"] != "deleted"
                ],
                "admins": [
                    {
                        "user": user_sis.get(a["user_id"]),
                        "account": acc_sis.get(a["account_id"]) if a["account_id"] != 1 else "root",
                        "role": a["role"],
                    }
                    for a in self.admins.values()
                    if a["workflow_state"] == "active"
                ],
            }

    def counts(self) -> dict[str, int]:
        truth = self.ground_truth()
        return {name: len(rows) for name, rows in truth.items()} | {
            "assignments": len(self.assignments),
            "submissions": len(self.submissions),
        }
