"""Canvas SIS Imports in the simulated LMS: Canvas's CSV format (users, accounts, terms, courses,
sections and enrollments files, alone or several in a zip), applied in the background through the
store's own methods, so an import makes the same objects, Live Events and ground truth as the REST
calls that would make them.

A file's kind comes from its header row, as in Canvas (never from its name). An import applies
its files in the order of :data:`KINDS`, each file's rows in order, one row at a time under the
store's lock. Rows are upserts by SIS id and a row that would change nothing calls nothing, so
importing the same data again makes no object, change or event. Deleted, completed and inactive
enrollment rows end the matching enrollment; when there is none, nothing happens.

An import's ``processing_warnings`` and ``processing_errors`` are ``[file name, message]`` pairs.
A row's warning reads ``(row N) <subject>: <problem>; skipped``, N counting the header as row 1 (the
first data row is row 2, as in a spreadsheet), the subject and problem naming SIS ids only (never
a name, email or login id): ``(row 4) enrollment of user U9 in section S1: user U9 not found;
skipped``. A file with a header Canvas would not recognise, or without a required column, is an
error and is skipped whole; the other files are still applied.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from connectors.canvas.protocol import ENROLLMENT_TYPES, sis_ref
from simulators.lms.store import CanvasError, CanvasStore, Obj

__all__ = ["KINDS", "SisDataError", "SisFile", "SisImports", "read_upload"]

log = logging.getLogger(__name__)

#: The kinds of file an import applies, in the order it applies them.
KINDS = ("account", "term", "user", "course", "section", "enrollment")
#: The columns a file of each kind must have (a file without one is skipped whole).
_REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "account": ("account_id", "parent_account_id", "name", "status"),
    "term": ("term_id", "name", "status"),
    "user": ("user_id", "login_id", "status"),
    "course": ("course_id", "short_name", "long_name", "status"),
    "section": ("section_id", "course_id", "name", "status"),
    "enrollment": ("user_id", "status"),
}
_STATUSES: dict[str, tuple[str, ...]] = {
    "account": ("active", "deleted"),
    "term": ("active", "deleted"),
    "user": ("active", "deleted"),
    "course": ("active", "deleted", "completed"),
    "section": ("active", "deleted"),
    "enrollment": ("active", "deleted", "completed", "inactive"),
}
#: What an ending enrollment row asks of ``end_enrollment`` and the state it leaves.
_ENDINGS = {
    "deleted": ("delete", "deleted"),
    "completed": ("conclude", "completed"),
    "inactive": ("inactivate", "inactive"),
}
_ALL_ENROLLMENT_STATES = ("active", "invited", "inactive", "completed", "deleted")
_COURSE_ROLES = frozenset(ENROLLMENT_TYPES.values())
#: Canvas's ``data.counts`` keys; the ones this simulator never imports stay 0.
_COUNT_KEYS = (
    "accounts", "terms", "abstract_courses", "courses", "sections", "xlists", "users", "enrollments",
    "groups", "group_memberships", "grade_publishing_results", "batch_courses_deleted",
    "batch_sections_deleted", "batch_enrollments_deleted", "error_count", "warning_count",
)  # fmt: skip
_UNRECOGNISED = "Couldn't find Canvas CSV import headers"
#: store field names as the CSV columns call them (a warning names columns)
_COLUMN_OF_FIELD = {"unique_id": "login_id", "sis_user_id": "user_id"}


class SisDataError(ValueError):
    """The uploaded data cannot be an SIS import (an unreadable zip, one without CSV files)."""


@dataclass(frozen=True)
class SisFile:
    """One CSV of an import: its name (in the zip, or ``<kind>s.csv`` for a lone CSV), its kind
    (None: the header was not recognised) and text; ``problem`` says why it cannot be applied."""

    name: str
    kind: str | None
    text: str = field(repr=False)
    problem: str | None = None


def _kind_of(header: frozenset[str]) -> str | None:
    """The kind of CSV a header row makes, by the columns it has (as Canvas tells them apart)."""
    if {"user_id", "login_id"} <= header:
        return "user"
    if "user_id" in header and header & {"role", "role_id"} and header & {"course_id", "section_id"}:
        return "enrollment"
    if {"section_id", "course_id", "name"} <= header:
        return "section"
    if {"course_id", "short_name", "long_name"} <= header:
        return "course"
    if {"account_id", "parent_account_id"} <= header:
        return "account"
    if {"term_id", "name"} <= header:
        return "term"
    return None


def _header(values: list[str]) -> list[str]:
    return [v.strip().lower() for v in values]


def _sis_file(name: str | None, raw: bytes) -> SisFile:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return SisFile(name or "sis_import.csv", None, "", "the file is not UTF-8 text")
    kind = _kind_of(frozenset(_header(next(csv.reader(io.StringIO(text)), []))))
    default = f"{kind}s.csv" if kind is not None else "sis_import.csv"
    return SisFile(name or default, kind, text, None if kind is not None else _UNRECOGNISED)


def _zip_entries(data: bytes) -> list[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = [
                (info.filename, archive.read(info))
                for info in archive.infolist()
                if not info.is_dir()
                and info.filename.lower().endswith(".csv")
                and not info.filename.startswith("__MACOSX/")
                and not PurePosixPath(info.filename).name.startswith(".")
            ]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, zlib.error) as exc:
        raise SisDataError(f"the zip file could not be read ({type(exc).__name__})") from None
    if not entries:
        raise SisDataError("the zip file holds no CSV files")
    return entries


def read_upload(data: bytes, extension: str, name: str | None = None) -> list[SisFile]:
    """The CSV files of an upload: a zip of CSVs (``extension`` ``zip``) or one CSV, named
    ``name`` or after its kind. Raises :class:`SisDataError` for a zip that cannot be one."""
    if extension == "zip":
        return [_sis_file(entry, raw) for entry, raw in _zip_entries(data)]
    return [_sis_file(name, data)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- rows ------------------------------------------------------------------------------------


class _Skip(Exception):
    """A row that cannot be applied: the problem, naming SIS ids only."""


def _value(row: Mapping[str, str], column: str) -> str | None:
    return row.get(column) or None


def _needed(row: Mapping[str, str], column: str) -> str:
    value = _value(row, column)
    if value is None:
        raise _Skip(f"{column} is blank")
    return value


def _subject(kind: str, row: Mapping[str, str]) -> str:
    """What a warning is about, by the row's SIS ids."""

    def named(column: str) -> str:
        return row.get(column) or "(blank)"

    if kind == "section":
        return f"section {named('section_id')} of course {named('course_id')}"
    if kind == "enrollment":
        where = f"section {row['section_id']}" if row.get("section_id") else f"course {named('course_id')}"
        return f"enrollment of user {named('user_id')} in {where}"
    return f"{kind} {named(f'{kind}_id')}"


def _problem(exc: CanvasError) -> str:
    """A store error as a warning: never its message when that may quote a value (a login id)."""
    if exc.status == 404:
        return "not found"
    column = _COLUMN_OF_FIELD.get(exc.field or "", exc.field)
    if exc.kind == "taken":
        return f"{column} already in use"
    if column in (None, "base"):
        return exc.message  # the store's own fixed sentences
    return f"{column} {exc.kind}"


def _dates(row: Mapping[str, str]) -> dict[str, str]:
    given = {"start_at": _value(row, "start_date"), "end_at": _value(row, "end_date")}
    return {k: v for k, v in given.items() if v is not None}


def _changed(obj: Obj, wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if obj.get(k) != v}


class _Rows:
    """Applies rows to a store through its public methods."""

    def __init__(self, store: CanvasStore) -> None:
        self.store = store
        self._apply: dict[str, Callable[[Mapping[str, str], str], None]] = {
            "account": self._account,
            "term": self._term,
            "user": self._user,
            "course": self._course,
            "section": self._section,
            "enrollment": self._enrollment,
        }

    def apply(self, kind: str, row: Mapping[str, str]) -> str | None:
        """Applies one row: None, or why it was skipped (``<subject>: <problem>``)."""
        try:
            status = (row.get("status") or "").lower()
            if status not in _STATUSES[kind]:
                raise _Skip(f"status is not one of {', '.join(_STATUSES[kind])}")
            with self.store.lock:  # look up and write as one step, as a REST call does
                self._apply[kind](row, status)
        except _Skip as skip:
            return f"{_subject(kind, row)}: {skip}"
        except CanvasError as exc:
            return f"{_subject(kind, row)}: {_problem(exc)}"
        return None

    def _find(self, lookup: Callable[[str], Obj], kind: str, sis_id: str) -> Obj | None:
        try:
            return lookup(sis_ref(kind, sis_id))
        except CanvasError:
            return None

    def _need(self, lookup: Callable[[str], Obj], kind: str, sis_id: str, what: str = "") -> Obj:
        found = self._find(lookup, kind, sis_id)
        if found is None:
            raise _Skip(f"{what or kind} {sis_id} not found")
        return found

    # accounts and terms

    def _account(self, row: Mapping[str, str], status: str) -> None:
        store = self.store
        sis_id = _needed(row, "account_id")
        account = self._find(store.account, "account", sis_id)
        if status == "deleted":
            if account is not None:
                store.delete_sub_account(account["parent_account_id"], account["id"])
            return
        name = _needed(row, "name")
        parent_id = _value(row, "parent_account_id")
        parent = self._need(store.account, "account", parent_id, "parent account") if parent_id else None
        wanted = {"name": name, "parent_account_id": parent["id"] if parent is not None else 1}
        if account is None:
            store.create_sub_account(wanted["parent_account_id"], {"name": name, "sis_account_id": sis_id})
            return
        changes = _changed(account, wanted)
        if changes:
            store.update_account(account["id"], changes)

    def _term(self, row: Mapping[str, str], status: str) -> None:
        store = self.store
        sis_id = _needed(row, "term_id")
        term = self._find(store.term, "term", sis_id)
        if status == "deleted":
            if term is not None:
                store.delete_term(term["id"])
            return
        wanted = {"name": _needed(row, "name"), **_dates(row)}
        if term is None:
            store.create_term({**wanted, "sis_term_id": sis_id})
            return
        changes = _changed(term, wanted)
        if changes:
            store.update_term(term["id"], changes)

    # users

    def _user(self, row: Mapping[str, str], status: str) -> None:
        store = self.store
        sis_id = _needed(row, "user_id")
        user = self._find(store.user, "user", sis_id)
        if status == "deleted":
            if user is not None:
                store.remove_user(1, user["id"])
            return
        login_id = _needed(row, "login_id")
        first, last = _value(row, "first_name"), _value(row, "last_name")
        given = {
            "name": _value(row, "full_name") or " ".join(p for p in (first, last) if p) or None,
            "short_name": _value(row, "short_name"),
            "sortable_name": _value(row, "sortable_name") or (f"{last}, {first}" if first and last else None),
            "email": _value(row, "email"),
        }
        names = {k: v for k, v in given.items() if v is not None}
        login_fields = {"unique_id": login_id, "integration_id": _value(row, "integration_id")}
        if user is None:
            email = names.pop("email", None)
            store.create_user(
                1,
                {
                    "user": names,
                    "pseudonym": {**login_fields, "sis_user_id": sis_id},
                    "communication_channel": {"type": "email", "address": email},
                },
            )
            return
        login = next(x for x in store.logins_of(user["id"]) if x["sis_user_id"] == sis_id)
        login_changes = _changed(login, {k: v for k, v in login_fields.items() if v is not None})
        if login_changes:  # first: a login id already in use leaves the row unapplied
            store.update_login(login["id"], login_changes)
        changes = _changed(user, names)
        if changes:
            store.update_user(user["id"], {"user": changes})

    # courses and sections

    def _course(self, row: Mapping[str, str], status: str) -> None:
        store = self.store
        sis_id = _needed(row, "course_id")
        course = self._find(store.course, "course", sis_id)
        if status == "deleted":
            if course is not None:
                store.delete_course(course["id"], "delete")
            return
        wanted: dict[str, Any] = {
            "name": _needed(row, "long_name"),
            "course_code": _needed(row, "short_name"),
            **_dates(row),
        }
        account_id, term_id = _value(row, "account_id"), _value(row, "term_id")
        if account_id is not None:
            wanted["account_id"] = self._need(store.account, "account", account_id)["id"]
        if term_id is not None:
            wanted["enrollment_term_id"] = self._need(store.term, "term", term_id)["id"]
        params = {k: v for k, v in wanted.items() if k != "enrollment_term_id"}
        if "enrollment_term_id" in wanted:
            params["term_id"] = wanted["enrollment_term_id"]
        if course is None:
            course = store.create_course(
                wanted.get("account_id", 1), {"course": {**params, "sis_course_id": sis_id}}
            )
            changed = False
        else:
            changed = bool(_changed(course, wanted))
        event = None
        if status == "completed" and course["workflow_state"] != "completed":
            event = "conclude"
        elif status == "active" and course["workflow_state"] == "completed":
            event = "offer"  # Canvas makes a concluded course available again
        if changed or event is not None:
            store.update_course(course["id"], {"course": {**params, **({"event": event} if event else {})}})
        self._blueprint(course, _value(row, "blueprint_course_id"))

    def _blueprint(self, course: Obj, template_sis_id: str | None) -> None:
        """``blueprint_course_id``: the course follows that blueprint (``dissociate``: none)."""
        store = self.store
        if template_sis_id is None:
            return
        current = store.blueprint_of(course["id"])
        if template_sis_id == "dissociate":
            if current is not None:
                store.update_associations(current, add=[], remove=[course["id"]])
            return
        template = self._need(store.course, "course", template_sis_id, "blueprint course")
        if current != template["id"]:
            store.update_associations(template["id"], add=[course["id"]], remove=[])

    def _section(self, row: Mapping[str, str], status: str) -> None:
        store = self.store
        sis_id = _needed(row, "section_id")
        section = self._find(store.section, "section", sis_id)
        if status == "deleted":
            if section is not None:
                store.delete_section(section["id"])
            return
        course_id = _needed(row, "course_id")
        wanted = {"name": _needed(row, "name"), **_dates(row)}
        course = self._need(store.course, "course", course_id)
        if section is None:
            store.create_section(course["id"], {"course_section": {**wanted, "sis_section_id": sis_id}})
            return
        if section["course_id"] != course["id"]:
            raise _Skip(f"section {sis_id} is in another course (sections are not moved)")
        changes = _changed(section, wanted)
        if changes:
            store.update_section(section["id"], {"course_section": changes})

    # enrollments

    def _role(self, row: Mapping[str, str]) -> Obj:
        """The row's role: ``role_id``, or ``role`` (a base role's short name, else a custom role's
        name or label, as in Canvas)."""
        store = self.store
        role_id, name = _value(row, "role_id"), _value(row, "role")
        try:
            if role_id is not None:
                role = store.role(role_id)
            elif name is not None:
                role = store.role(name=ENROLLMENT_TYPES.get(name.lower(), name))
            else:
                raise _Skip("role and role_id are both blank")
        except CanvasError:
            raise _Skip(f"role_id {role_id} not found" if role_id else f"role {name} not found") from None
        if role["base_role_type"] not in _COURSE_ROLES:
            raise _Skip(f"role {role['id']} is not a course role")
        return role

    def _where(self, row: Mapping[str, str]) -> tuple[Obj | None, Obj]:
        """The row's section (None: the course's default) and course."""
        store = self.store
        section_id, course_id = _value(row, "section_id"), _value(row, "course_id")
        if section_id is not None:
            section = self._need(store.section, "section", section_id)
            course = store.courses[section["course_id"]]
            if course_id is not None and course["sis_course_id"] != course_id:
                self._need(store.course, "course", course_id)
                raise _Skip(f"section {section_id} is not in course {course_id}")
            return section, course
        if course_id is not None:
            return None, self._need(store.course, "course", course_id)
        raise _Skip("course_id and section_id are both blank")

    def _enrollment(self, row: Mapping[str, str], status: str) -> None:
        store = self.store
        user = self._need(store.user, "user", _needed(row, "user_id"))
        section, course = self._where(row)
        role = self._role(row)
        observed_id = _value(row, "associated_user_id")
        observed = self._need(store.user, "user", observed_id, "associated user") if observed_id else None
        matches = [
            e
            for e in store.list_enrollments(
                course_ref=course["id"], user_id=user["id"], states=_ALL_ENROLLMENT_STATES
            )
            if e["role_id"] == role["id"]
            and e["associated_user_id"] == (observed["id"] if observed is not None else None)
            and (section is None or e["course_section_id"] == section["id"])
        ]
        if status != "active":
            task, ended = _ENDINGS[status]
            for e in matches:
                if e["enrollment_state"] not in (ended, "deleted"):
                    store.end_enrollment(course["id"], e["id"], task)
            return
        dates = _dates(row)
        if any(e["enrollment_state"] == "active" and not _changed(e, dates) for e in matches):
            return
        target = (
            section["id"] if section is not None else (matches[0]["course_section_id"] if matches else None)
        )
        enrollment: dict[str, Any] = {
            "user_id": user["id"],
            "role_id": role["id"],
            "enrollment_state": "active",
            "limit_privileges_to_course_section": _value(row, "limit_section_privileges") or "false",
            **dates,
        }
        if observed is not None:
            enrollment["associated_user_id"] = observed["id"]
        store.enroll(
            course_ref=course["id"] if target is None else None,
            section_ref=target,
            params={"enrollment": enrollment},
        )


# --- imports ---------------------------------------------------------------------------------


@dataclass
class _Import:
    id: int
    files: list[SisFile]
    created_at: str
    updated_at: str
    ended_at: str | None = None
    workflow_state: str = "created"
    progress: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNT_KEYS, 0))
    warnings: list[list[str]] = field(default_factory=list)
    errors: list[list[str]] = field(default_factory=list)

    def supplied(self) -> list[str]:
        kinds = {f.kind for f in self.files}
        return [k for k in KINDS if k in kinds]

    def as_json(self) -> Obj:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "updated_at": self.updated_at,
            "workflow_state": self.workflow_state,
            "progress": self.progress,
            "data": {
                "import_type": "instructure_csv",
                "supplied_batches": self.supplied(),
                "counts": dict(self.counts),
            },
            "statistics": None,
            "errors_attachment": None,
            "user": None,
            "processing_warnings": [list(w) for w in self.warnings] or None,
            "processing_errors": [list(e) for e in self.errors] or None,
            "batch_mode": False,
            "batch_mode_term_id": None,
            "multi_term_batch_mode": False,
            "skip_deletes": False,
            "override_sis_stickiness": None,
            "add_sis_stickiness": None,
            "clear_sis_stickiness": None,
            "diffing_data_set_identifier": None,
            "diffed_against_import_id": None,
            "csv_attachments": None,
        }


_Parsed = list[tuple[SisFile, list[tuple[int, dict[str, str]]]]]


def _parse(imp: _Import) -> tuple[_Parsed, list[list[str]]]:
    """The files to apply, in :data:`KINDS` order, with their numbered rows; and the errors of
    the files that cannot be applied."""
    parsed: _Parsed = []
    errors: list[list[str]] = []
    for file in sorted(imp.files, key=lambda f: KINDS.index(f.kind) if f.kind else -1):
        if file.kind is None:
            errors.append([file.name, file.problem or _UNRECOGNISED])
            continue
        reader = csv.reader(io.StringIO(file.text))
        header = _header(next(reader, []))
        missing = [c for c in _REQUIRED_COLUMNS[file.kind] if c not in header]
        if missing:
            errors.append([file.name, f"missing required column(s): {', '.join(missing)}; file skipped"])
            continue
        rows = [
            (n, {k: v.strip() for k, v in zip(header, values, strict=False)})
            for n, values in enumerate(reader, start=2)
            if any(v.strip() for v in values)
        ]
        parsed.append((file, rows))
    return parsed, errors


class SisImports:
    """An account's SIS imports, applied one at a time in a background thread (as Canvas queues
    them); ``pace`` answers the rows a second to apply (0: as fast as the store goes), asked
    before each row so it can change mid-import."""

    def __init__(self, store: CanvasStore, pace: Callable[[], float] = lambda: 0.0) -> None:
        self.store = store
        self.pace = pace
        self._rows = _Rows(store)
        self._lock = threading.Lock()
        self._imports: dict[int, _Import] = {}
        self._queue: deque[_Import] = deque()
        self._worker: threading.Thread | None = None

    def submit(self, files: list[SisFile]) -> Obj:
        """Queues an import of ``files``; answers it as just created."""
        with self._lock:
            now = _now()
            imp = _Import(len(self._imports) + 1, files, now, now)
            self._imports[imp.id] = imp
            self._queue.append(imp)
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, name="lms-sis-imports", daemon=True)
                self._worker.start()
            return imp.as_json()

    def get(self, ref: str | int) -> Obj:
        with self._lock:
            imp = self._imports.get(int(ref)) if str(ref).isdigit() else None
            if imp is None:
                raise CanvasError(404, "The specified resource does not exist.")
            return imp.as_json()

    def listed(self) -> list[Obj]:
        """Every import, the newest first (as Canvas lists them)."""
        with self._lock:
            return [imp.as_json() for imp in sorted(self._imports.values(), key=lambda i: -i.id)]

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                imp = self._queue.popleft()
            try:
                self._run(imp)
            except Exception:
                log.exception("SIS import %d failed", imp.id)
                with self._lock:
                    imp.errors.append(["", "the import failed in the simulator; see its log"])
                    self._end(imp, "failed")
            with self._lock:  # done with: keep the kinds and names, not the data
                imp.files = [replace(f, text="") for f in imp.files]

    def _run(self, imp: _Import) -> None:
        with self._lock:
            imp.workflow_state, imp.updated_at = "importing", _now()
        parsed, errors = _parse(imp)
        with self._lock:
            imp.errors += errors
        total = sum(len(rows) for _, rows in parsed)
        done = 0
        next_at = time.monotonic()
        for file, rows in parsed:
            kind = file.kind or ""
            for n, row in rows:
                next_at = self._wait(next_at)
                warning = self._rows.apply(kind, row)
                done += 1
                with self._lock:
                    if warning is None:
                        imp.counts[f"{kind}s"] += 1
                    else:
                        imp.warnings.append([file.name, f"(row {n}) {warning}; skipped"])
                    imp.progress = min(99, done * 100 // total)
                    imp.updated_at = _now()
        with self._lock:
            if imp.errors:
                self._end(imp, "failed_with_messages")
            else:
                self._end(imp, "imported_with_messages" if imp.warnings else "imported")
        log.info(
            "SIS import %d %s: %d of %d rows applied, %d warnings, %d errors",
            imp.id,
            imp.workflow_state,
            sum(imp.counts[f"{k}s"] for k in KINDS),
            total,
            len(imp.warnings),
            len(imp.errors),
        )

    def _wait(self, next_at: float) -> float:
        """Sleeps until a row may be applied at the pace; the time the next one may."""
        rate = self.pace()
        if rate <= 0:
            return time.monotonic()
        now = time.monotonic()
        if next_at > now:
            time.sleep(next_at - now)
        return max(next_at, now) + 1.0 / rate

    @staticmethod
    def _end(imp: _Import, state: str) -> None:
        imp.counts["warning_count"], imp.counts["error_count"] = len(imp.warnings), len(imp.errors)
        imp.workflow_state, imp.progress = state, 100
        imp.ended_at = imp.updated_at = _now()
