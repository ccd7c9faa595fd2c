"""A first load through Canvas SIS Imports: thousands of creates in one upload.

Canvas's REST API makes one object a call, and its rate limit (a bucket of 700 per token) holds a
district's first load (users, courses, sections, and ten enrollments a user) to about a hundred
calls a second: 54 minutes at 25,000 users. Canvas's own way to load in bulk is the SIS Import
(``POST /accounts/:id/sis_imports``): a zip of ``users.csv``, ``courses.csv``, ``sections.csv``
and ``enrollments.csv``, uploaded in one call and applied by Canvas.

While the sink is far behind (``SISLMS_LMS_SINK_BULK_MIN_BACKLOG`` commands or more unread on its
topic, or taken and not yet applied),
a command that makes a target the sink has never handled goes to :class:`SisImportLoader`
instead of a lane, if an import can say it (:func:`importable`): an active user, an active
course that is not a blueprint (one that follows a blueprint names it in ``blueprint_course_id``),
an active section, an active enrollment (base roles by name, custom roles by ``role_id``). Then:

1. Rows gather until ``SISLMS_LMS_SINK_BULK_MAX_ROWS``, for ``SISLMS_LMS_SINK_BULK_MAX_WAIT_S``,
   or until the sink has read its topic to the end. One import runs at a time; the next gathers
   meanwhile.
2. A row goes into an import only when what it needs has a Canvas id or is in the same import
   (Canvas applies users and sections before enrollments): in a first load most enrollments
   come before their user's command, and would fail. The others wait for a later import.
3. The zip is posted and the import's state polled until Canvas has finished it.
4. Canvas ids are read back, since the results topic is the SIS-to-LMS id map (analytics joins
   Canvas activity to SIS classes by it, unenrolling needs the enrollment's id): users and
   courses from the account's lists (one call a hundred) or one by one for a few, sections from
   their course, enrollments from their section (matched by user, role and observed user).
5. Each row found in Canvas gets its outcome on the results topic, as a REST one does. Every row
   that is not (Canvas warned about it, the import failed or never finished, a dependency never
   came) goes back to its lane and is applied through the REST API as before; a REST create
   that finds the SIS id taken looks up and updates, so a row the import made after all is
   not made twice.

A later command for a target still held here waits in its lane until the row is done.
Nothing is committed before its outcome is on the broker: a sink that stops mid-import reads
the commands again, and an import of rows Canvas has already made changes nothing (SIS
imports are upserts by SIS id).
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter as PromCounter

from connectors.canvas.protocol import ENROLLMENT_TYPES
from connectors.sinks.canvas.apply import Command, IdMap, Provisioner
from connectors.sinks.canvas.client import PER_PAGE, CanvasRejected
from streams.errors import RetriableError

__all__ = ["BulkRow", "SisImportLoader", "importable"]

log = logging.getLogger(__name__)

#: the kinds an import makes, in the order Canvas applies its files
KINDS = ("user", "course", "section", "enrollment")
#: an import's states once Canvas is done with it
_DONE = frozenset(
    {"imported", "imported_with_messages", "failed", "failed_with_messages", "aborted", "restored",
     "partially_restored"}
)  # fmt: skip
_HEADERS = {
    "user": ["user_id", "integration_id", "login_id", "first_name", "last_name", "full_name",
             "sortable_name", "short_name", "email", "status"],
    "course": ["course_id", "short_name", "long_name", "account_id", "term_id", "blueprint_course_id",
               "status"],
    "section": ["section_id", "course_id", "name", "status"],
    "enrollment": ["course_id", "section_id", "user_id", "role", "role_id", "associated_user_id",
                   "start_date", "end_date", "status"],
}  # fmt: skip
_ROWS = PromCounter(
    "sislms_lms_sink_bulk_rows", "Commands handled through Canvas SIS Imports, by outcome", ["outcome"]
)
_IMPORTS = PromCounter("sislms_lms_sink_bulk_imports", "Canvas SIS Imports posted, by final state", ["state"])


def importable(command: Command) -> bool:
    """Whether an SIS import can make this command's target as the REST path would."""
    a = command.attributes
    if a.get("status") != "active":
        return False
    kind = command.target_type
    if kind == "user":
        return True
    if kind == "course":
        return a.get("blueprint") != "true" and bool(a.get("long_name")) and bool(a.get("short_name"))
    if kind == "section":
        return bool(a.get("name"))
    if kind == "enrollment":
        role = a.get("role") or ""
        return bool(a.get("course_id") and a.get("user_id")) and (
            role in ENROLLMENT_TYPES or (a.get("base_role") or "") in ENROLLMENT_TYPES
        )
    return False


@dataclass
class BulkRow:
    """One command held for an import."""

    item: Any  # the sink's record of the command (its offsets, lane and key)
    value: Mapping[str, Any]
    command: Command
    since: float = field(default_factory=time.monotonic)

    @property
    def kind(self) -> str:
        return self.command.target_type

    @property
    def sis_id(self) -> str:
        """The SIS id Canvas knows the target by."""
        return self.command.attributes.get(f"{self.kind}_id") or self.command.target

    def needs(self) -> list[tuple[str, str]]:
        """The objects this row's target refers to: (kind, SIS id)."""
        a = self.command.attributes
        out: list[tuple[str, str | None]] = []
        if self.kind == "course":
            account = a.get("account_id")
            out = [("term", a.get("term_id")), ("account", None if account == "root" else account)]
            out.append(("course", a.get("blueprint_course_id")))
        elif self.kind == "section":
            out = [("course", a.get("course_id") or self.sis_id)]
        elif self.kind == "enrollment":
            section = a.get("section_id")
            place = ("section", section) if section else ("course", a.get("course_id"))
            out = [("user", a.get("user_id")), place, ("user", a.get("associated_user_id"))]
        return [(kind, sis_id) for kind, sis_id in out if sis_id]


class SisImportLoader(threading.Thread):
    """Applies held first-load creates through SIS imports (see the module docs).

    Args:
        provisioner: its client calls Canvas; custom role ids come from it.
        ids: the sink's id map (what has a Canvas id).
        applied: called with each row Canvas made and its Canvas id.
        fall_back: called with each row to apply through the REST API instead.
        behind: whether the sink has not read its topic to the end.
        pending: whether a command for (kind, SIS id) is taken and not finished anywhere in the sink.
    """

    def __init__(
        self,
        provisioner: Provisioner,
        ids: IdMap,
        *,
        applied: Callable[[BulkRow, str], None],
        fall_back: Callable[[BulkRow], None],
        behind: Callable[[], bool],
        pending: Callable[[str, str], bool],
        max_rows: int = 50_000,
        max_wait_s: float = 30.0,
        poll_s: float = 1.0,
        timeout_s: float = 3600.0,
        list_from: int = 100,
    ) -> None:
        super().__init__(name="canvas-sis-import", daemon=True)
        self.provisioner = provisioner
        self.client = provisioner.client
        self.ids = ids
        self._applied = applied
        self._fall_back = fall_back
        self._behind = behind
        self._pending = pending
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        #: from this many rows of a kind (and no fewer than the list's pages), ids are read from
        #: the account's list rather than one by one
        self.list_from = list_from
        self._lock = threading.Condition()
        self._rows: list[BulkRow] = []
        #: key -> the target types of the rows held for it (a class's course and section share one)
        self._held: dict[bytes | None, list[str]] = {}
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.counts: Counter[str] = Counter()

    # --- the sink's side ---------------------------------------------------------------------

    def offer(self, row: BulkRow) -> None:
        with self._lock:
            self._rows.append(row)
            self._held.setdefault(row.item.key, []).append(row.kind)
            if len(self._rows) >= self.max_rows:
                self._lock.notify()

    def holds(self, key: bytes | None) -> bool:
        """Whether a command for this key is held here (a later one must wait for it)."""
        with self._lock:
            return key in self._held

    def kinds_held(self, key: bytes | None) -> list[str]:
        """The target types of the rows held for this key."""
        with self._lock:
            return list(self._held.get(key, ()))

    def held(self) -> int:
        with self._lock:
            return sum(len(kinds) for kinds in self._held.values())

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            self._lock.notify()

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                rows = self._next_batch()
                if rows:
                    self._load(rows)
        except BaseException as exc:  # a bug: the sink stops (what is held is read again)
            self.failure = exc
            log.exception("canvas sis import loader failed")

    def _next_batch(self) -> list[BulkRow]:
        """The rows to import now (what they need is in Canvas or among them); [] for none yet."""
        with self._lock:
            self._lock.wait(timeout=min(1.0, self.max_wait_s))
            if not self._rows or self.stopping.is_set():
                return []
            oldest = min(r.since for r in self._rows)
            behind = self._behind()
            due = len(self._rows) >= self.max_rows or time.monotonic() - oldest >= self.max_wait_s
            if not due and behind:
                return []
            rows, self._rows = self._rows, []
        ready, later = self._split(rows)
        if not behind:
            # read to the end: what a row waits for is not on its way through an import, so it
            # goes through the REST API (which waits for, looks up or dead-letters it)
            stuck = [r for r in later if not any(self._pending(k, s) for k, s in self._missing(r, set()))]
            later = [r for r in later if r not in stuck]
            self._give_back(stuck, "dependency")
        with self._lock:
            self._rows[:0] = later
        if len(ready) > self.max_rows:
            with self._lock:
                self._rows[:0] = ready[self.max_rows :]
            ready = ready[: self.max_rows]
        elif not ready:
            self.stopping.wait(min(1.0, self.max_wait_s))  # nothing importable yet
        return ready

    def _missing(self, row: BulkRow, batch: set[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, s) for k, s in row.needs() if (k, s) not in batch and self.ids.get(k, s) is None]

    def _split(self, rows: list[BulkRow]) -> tuple[list[BulkRow], list[BulkRow]]:
        """(rows whose needs are met in Canvas or in the batch, the others), kinds in import order."""
        batch: set[tuple[str, str]] = set()
        ready: list[BulkRow] = []
        later: list[BulkRow] = []
        for kind in KINDS:
            for row in rows:
                if row.kind != kind:
                    continue
                if self._missing(row, batch):
                    later.append(row)
                else:
                    ready.append(row)
                    batch.add((kind, row.sis_id))
        return ready, later

    # --- one import --------------------------------------------------------------------------

    def _load(self, rows: list[BulkRow]) -> None:
        started = time.monotonic()
        files, refused = self._files(rows)
        self._give_back(refused, "role")
        rows = [r for r in rows if r not in refused]
        if not rows:
            return
        state = "not_posted"
        try:
            made = self.client.call(
                "POST",
                f"/accounts/{self.provisioner.root}/sis_imports",
                params={"import_type": "instructure_csv", "extension": "zip"},
                content=_zip(files),
                content_type="application/zip",
            )
            state = self._await(made)
            if self.stopping.is_set():
                return  # nothing committed: the commands come again to the next sink
            found = self._read_back(rows)
        except (CanvasRejected, RetriableError) as exc:
            log.warning("canvas sis import of %d rows: %s; the rows go through the REST API", len(rows), exc)
            found = {}
        _IMPORTS.labels(state).inc()
        done = 0
        for row in rows:
            lms_id = found.get(id(row))
            if lms_id is None:
                continue
            self._release(row)
            self._applied(row, lms_id)
            done += 1
        self._give_back([r for r in rows if id(r) not in found], "not_in_canvas")
        self.counts["imports"] += 1
        self.counts["applied"] += done
        _ROWS.labels("applied").inc(done)
        by_kind = Counter(r.kind for r in rows)
        log.info(
            "canvas sis import (%s) of %s: %d made, %d through the REST API, %.1f s; %d held",
            state, ", ".join(f"{n} {k}s" for k, n in by_kind.items()), done, len(rows) - done,
            time.monotonic() - started, self.held(),
        )  # fmt: skip

    def _files(self, rows: list[BulkRow]) -> tuple[dict[str, list[dict[str, Any]]], list[BulkRow]]:
        files: dict[str, list[dict[str, Any]]] = {}
        refused: list[BulkRow] = []
        for row in rows:
            try:
                line = self._line(row)
            except (CanvasRejected, RetriableError):
                refused.append(row)  # a custom role Canvas would not give: the REST path says why
                continue
            files.setdefault(row.kind, []).append(line)
        return files, refused

    def _line(self, row: BulkRow) -> dict[str, Any]:
        a = row.command.attributes
        if row.kind == "user":
            name = " ".join(p for p in (a.get("first_name"), a.get("last_name")) if p) or row.sis_id
            return {
                "user_id": row.sis_id, "integration_id": a.get("integration_id"),
                "login_id": a.get("login_id") or row.sis_id, "first_name": a.get("first_name"),
                "last_name": a.get("last_name"), "full_name": name,
                "sortable_name": a.get("sortable_name") or name, "short_name": a.get("first_name") or name,
                "email": a.get("email"), "status": "active",
            }  # fmt: skip
        if row.kind == "course":
            account = a.get("account_id")
            return {
                "course_id": row.sis_id, "short_name": a.get("short_name"), "long_name": a.get("long_name"),
                "account_id": None if account in (None, "root") else account, "term_id": a.get("term_id"),
                "blueprint_course_id": a.get("blueprint_course_id"), "status": "active",
            }  # fmt: skip
        if row.kind == "section":
            course = a.get("course_id") or row.sis_id
            return {"section_id": row.sis_id, "course_id": course, "name": a.get("name"), "status": "active"}
        role = a.get("role") or ""
        line = {
            "course_id": a.get("course_id"), "section_id": a.get("section_id"), "user_id": a.get("user_id"),
            "associated_user_id": a.get("associated_user_id"), "start_date": a.get("start_date"),
            "end_date": a.get("end_date"), "status": "active",
        }  # fmt: skip
        custom = self.provisioner.course_role(role, a.get("base_role")).get("role_id")
        return line | ({"role": role} if custom is None else {"role_id": custom})

    def _await(self, made: Mapping[str, Any]) -> str:
        """Polls the import until Canvas is done with it; its last state."""
        path = f"/accounts/{self.provisioner.root}/sis_imports/{made['id']}"
        answer, deadline, pause = made, time.monotonic() + self.timeout_s, 0.2
        while answer.get("workflow_state") not in _DONE:
            if time.monotonic() > deadline or self.stopping.is_set():
                return "unfinished"
            self.stopping.wait(pause)
            pause = min(self.poll_s, pause * 2)
            answer = self.client.call("GET", path)
        warnings = len(answer.get("processing_warnings") or ()) + len(answer.get("processing_errors") or ())
        if warnings:
            state = answer["workflow_state"]
            log.info("canvas sis import %s: %s with %d message(s)", made["id"], state, warnings)
        return str(answer["workflow_state"])

    # --- Canvas ids --------------------------------------------------------------------------

    def _read_back(self, rows: list[BulkRow]) -> dict[int, str]:
        """id(row) -> the Canvas id of what the row made, for the rows Canvas has."""
        found: dict[int, str] = {}
        by_kind: dict[str, list[BulkRow]] = {k: [r for r in rows if r.kind == k] for k in KINDS}
        account = f"/accounts/{self.provisioner.root}"
        users = self._ids_of("user", by_kind["user"], f"{account}/users", "sis_user_id")
        courses = self._ids_of("course", by_kind["course"], f"{account}/courses", "sis_course_id")
        for row in by_kind["user"]:
            if row.sis_id in users:
                found[id(row)] = users[row.sis_id]
        for row in by_kind["course"]:
            if row.sis_id in courses:
                found[id(row)] = courses[row.sis_id]
        sections: dict[str, str] = {}
        for course in sorted({r.command.attributes.get("course_id") or r.sis_id for r in by_kind["section"]}):
            cid = courses.get(course) or self._known("course", course)
            if cid is None:
                continue
            for s in self.client.pages(f"/courses/{cid}/sections"):
                if s.get("sis_section_id"):
                    sections[s["sis_section_id"]] = str(s["id"])
        for row in by_kind["section"]:
            if row.sis_id in sections:
                found[id(row)] = sections[row.sis_id]
        found |= self._enrollment_ids(by_kind["enrollment"], users, courses, sections)
        return found

    def _known(self, kind: str, sis_id: str) -> str | None:
        """A Canvas id from the id map, else by SIS id (None: Canvas has none)."""
        mapped = self.ids.get(kind, sis_id)
        if mapped is not None:
            return mapped
        got = self.client.call("GET", self.provisioner.lookup_path(kind, sis_id), missing_ok=True)
        return None if got is None else str(got["id"])

    def _ids_of(self, kind: str, rows: list[BulkRow], listing: str, field_name: str) -> dict[str, str]:
        """SIS id -> Canvas id for these rows' targets: from the account's list when there are
        many, else one look-up each."""
        wanted = {r.sis_id for r in rows}
        if not wanted:
            return {}
        # The list costs a call a page of the whole account (the objects the sink knows, and
        # these): a later, smaller import into a big account is cheaper one by one.
        pages = -(-(self.ids.count(kind) + len(wanted)) // PER_PAGE)
        if len(wanted) < max(self.list_from, pages):
            out = {}
            for sis_id in sorted(wanted):
                got = self._known(kind, sis_id)
                if got is not None:
                    out[sis_id] = got
            return out
        return {
            str(o[field_name]): str(o["id"])
            for o in self.client.pages(listing)
            if o.get(field_name) in wanted
        }

    def _enrollment_ids(
        self,
        rows: list[BulkRow],
        users: Mapping[str, str],
        courses: Mapping[str, str],
        sections: Mapping[str, str],
    ) -> dict[int, str]:
        """Enrollments from their section's list (their course's, without a section), matched
        by user, role and observed user."""
        found: dict[int, str] = {}
        by_place: dict[tuple[str, str], list[BulkRow]] = {}
        for row in rows:
            a = row.command.attributes
            section = a.get("section_id")
            place = ("section", section) if section else ("course", a.get("course_id") or "")
            by_place.setdefault(place, []).append(row)
        user_ids = dict(users)

        def user(sis_id: str | None) -> str | None:
            if sis_id is None:
                return None
            if sis_id not in user_ids:
                mapped = self.ids.get("user", sis_id)
                if mapped is not None:
                    user_ids[sis_id] = mapped
            return user_ids.get(sis_id)

        for (kind, sis_id), here in sorted(by_place.items()):
            place_id = (sections if kind == "section" else courses).get(sis_id) or self._known(kind, sis_id)
            if place_id is None:
                continue
            listed: dict[tuple[str, str, str | None], str] = {}
            for e in self.client.pages(f"/{kind}s/{place_id}/enrollments"):
                observed = e.get("associated_user_id")
                role = str(e.get("role_id")) if e.get("role") != e.get("type") else str(e.get("type"))
                user_ids.setdefault(str(e.get("sis_user_id")), str(e["user_id"]))
                listed[(str(e["user_id"]), role, None if observed is None else str(observed))] = str(e["id"])
            for row in here:
                a = row.command.attributes
                uid, observed = user(a.get("user_id")), user(a.get("associated_user_id"))
                if uid is None or (a.get("associated_user_id") and observed is None):
                    continue
                wanted = self.provisioner.course_role(a.get("role") or "", a.get("base_role"))
                key = str(wanted.get("role_id", wanted["type"]))
                lms_id = listed.get((uid, key, observed))
                if lms_id is not None:
                    found[id(row)] = lms_id
        return found

    # --- rows that leave ---------------------------------------------------------------------

    def _release(self, row: BulkRow) -> None:
        with self._lock:
            kinds = self._held[row.item.key]
            kinds.remove(row.kind)
            if not kinds:
                del self._held[row.item.key]

    def _give_back(self, rows: Iterable[BulkRow], why: str) -> None:
        n = 0
        for row in rows:
            self._release(row)
            self._fall_back(row)
            n += 1
        if n:
            self.counts[f"rest_{why}"] += n
            _ROWS.labels(f"rest_{why}").inc(n)


def _zip(files: Mapping[str, list[dict[str, Any]]]) -> bytes:
    """The import's zip: one CSV a kind (columns as Canvas documents them)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for kind in KINDS:
            lines = files.get(kind)
            if not lines:
                continue
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=_HEADERS[kind], lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in line.items()} for line in lines)
            archive.writestr(f"{kind}s.csv", text.getvalue())
    return out.getvalue()
