"""Reconciliation: what the targets hold against ground truth taken from the simulators.

Pure functions over plain data (the simulators' ``/_sim`` answers, rows of the analytics store),
used by ``sislms demo`` and by the tests:

- **rostering**: the SIS simulator's records run through the role rules (:func:`plan_district`)
  give the LMS state to expect; :func:`expected_lms` and :func:`held_lms` put the plan and the
  LMS simulator's state in the same shape, a multiset of identities per kind (a user is its SIS
  id, login, sortable name and e-mail; an enrollment its user, course, role and observed user;
  ...), so that a duplicate shows as a count of two;
- **grades**: every grade entered in the LMS (the LMS simulator's write log, the last grade per
  assignment and student) against the results in the SIS simulator's gradebook;
- **activity**: every learning-activity event the LMS simulator delivered (answered 2xx by the
  receiver) against the rows of the analytics store.

Each flow gets a :class:`FlowReport`: expected, applied, missing, unexpected and duplicated
counts, a few ids of each problem (ids only, never names) and the latency from the source's
change to the target's effect where the simulators recorded both times.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.canvas import ENROLLMENT_TYPES
from streams.roster.desired import Target, target_id

__all__ = [
    "ACTIVITY_EVENTS",
    "FlowReport",
    "Latency",
    "activity_report",
    "compare",
    "expected_lms",
    "grades_report",
    "held_lms",
    "iso_epoch",
    "roster_latency",
]

KINDS = ("users", "accounts", "courses", "sections", "enrollments", "admins")
#: The Live Events that are a user's learning activity (the rest change state: assignments,
#: grades, courses...), as the LMS simulator names them.
ACTIVITY_EVENTS = frozenset({"logged_in", "logged_out", "asset_accessed", "submission_created"})
_EXAMPLES = 5


@dataclass
class Latency:
    """Seconds from the source's change to the target's effect, over ``samples`` changes."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(max(0.0, seconds))

    def percentile(self, p: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        rank = max(0, math.ceil(p / 100 * len(ordered)) - 1)
        return ordered[rank]

    def as_dict(self) -> dict[str, Any]:
        p50, p99 = self.percentile(50), self.percentile(99)
        return {
            "samples": len(self.samples),
            "p50_ms": None if p50 is None else round(p50 * 1000),
            "p99_ms": None if p99 is None else round(p99 * 1000),
            "max_ms": round(max(self.samples) * 1000) if self.samples else None,
        }


@dataclass
class FlowReport:
    expected: int = 0
    applied: int = 0
    missing: int = 0
    unexpected: int = 0
    duplicated: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    latency: Latency = field(default_factory=Latency)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.missing == 0 and self.unexpected == 0 and self.duplicated == 0

    def note(self, what: str, key: object) -> None:
        found = self.examples.setdefault(what, [])
        if len(found) < _EXAMPLES:
            found.append(str(key))

    def add(self, other: FlowReport) -> None:
        for name in ("expected", "applied", "missing", "unexpected", "duplicated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for what, keys in other.examples.items():
            for key in keys:
                self.note(what, key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "applied": self.applied,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "duplicated": self.duplicated,
            "latency": self.latency.as_dict(),
            **({"examples": self.examples} if self.examples else {}),
            **self.detail,
        }


def compare(want: Counter[Any], got: Counter[Any]) -> FlowReport:
    """Multisets of identities: applied = held as often as wanted; a wanted identity held less
    is missing, one never wanted is unexpected (once per identity), every extra copy of an
    identity is duplicated."""
    report = FlowReport(expected=sum(want.values()))
    for key, w in want.items():
        g = got.get(key, 0)
        report.applied += min(w, g)
        if g < w:
            report.missing += w - g
            report.note("missing", key)
        elif g > w:
            report.duplicated += g - w
            report.note("duplicated", key)
    for key, g in got.items():
        if key not in want:
            report.unexpected += 1
            report.note("unexpected", key)
            if g > 1:
                report.duplicated += g - 1
    return report


# --- rostering -------------------------------------------------------------------------------


def expected_lms(targets: Mapping[str, Target]) -> dict[str, Counter[Any]]:
    """What the LMS must hold for these planned targets, per kind, as multisets. Canvas keeps one
    enrollment per user, course, role and observed user (and one admin role per user and
    account): two SIS enrollments of a student in one class (a schedule change back into a class)
    are one LMS enrollment, wanted once."""
    roots = (t for t in targets.values() if t.kind == "account" and t.attrs["root"] == "true")
    root = next((t.attrs["account_id"] for t in roots), None)
    want: dict[str, Counter[Any]] = {k: Counter() for k in KINDS}
    for key, t in targets.items():
        a, tid = t.attrs, target_id(key)
        if t.kind == "user":
            want["users"][(tid, a["login_id"], a["sortable_name"], a["email"])] += 1
        elif t.kind == "account" and a["root"] != "true":
            parent = a["parent_account_id"]
            want["accounts"][(tid, None if parent in (None, root, "root") else parent)] += 1
        elif t.kind == "course":
            want["courses"][(tid, a["term_id"], a["blueprint_course_id"])] += 1
        elif t.kind == "section":
            want["sections"][(tid, a["course_id"])] += 1
        elif t.kind == "enrollment":
            role = ENROLLMENT_TYPES.get(a["role"] or "", a["role"])
            want["enrollments"][(a["user_id"], a["course_id"], role, a.get("associated_user_id"))] = 1
        elif t.kind == "account_admin":
            want["admins"][(a["user_id"], a["account_id"], a["role"])] = 1
    return want


def held_lms(state: Mapping[str, Any]) -> dict[str, Counter[Any]]:
    """The LMS simulator's ground truth (``GET /_sim/state``) in :func:`expected_lms`'s shape."""
    return {
        "users": Counter(
            (u["sis_user_id"], u["login_id"], u["sortable_name"], u["email"]) for u in state["users"]
        ),
        "accounts": Counter((a["sis_account_id"], a["parent"]) for a in state["accounts"] if not a["root"]),
        "courses": Counter((c["sis_course_id"], c["term"], c["blueprint_course"]) for c in state["courses"]),
        # Canvas makes a default section (no SIS id) for enrollments given by course: not ours
        "sections": Counter(
            (s["sis_section_id"], s["course"]) for s in state["sections"] if s["sis_section_id"]
        ),
        "enrollments": Counter(
            (e["user"], e["course"], e["role"], e["observed"]) for e in state["enrollments"]
        ),
        "admins": Counter((a["user"], a["account"], a["role"]) for a in state["admins"]),
    }


def roster_report(targets: Mapping[str, Target], lms_state: Mapping[str, Any]) -> FlowReport:
    """Every kind compared; the total, with each kind's counts under ``by_kind``."""
    want, got = expected_lms(targets), held_lms(lms_state)
    total = FlowReport()
    by_kind = {}
    for kind in KINDS:
        r = compare(want[kind], got[kind])
        by_kind[kind] = {
            "expected": r.expected, "applied": r.applied, "missing": r.missing,
            "unexpected": r.unexpected, "duplicated": r.duplicated,
        }  # fmt: skip
        total.add(r)
        for what, keys in r.examples.items():
            total.examples[what] = [*total.examples.get(what, [])[: _EXAMPLES - 1], f"{kind}: {keys[0]}"]
    total.detail["by_kind"] = by_kind
    return total


def iso_epoch(value: str) -> float:
    """An ISO 8601 instant (``...Z`` allowed) as epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def roster_latency(
    changes: Iterable[Mapping[str, Any]],
    sis_state: Mapping[str, Mapping[str, Mapping[str, Any]]],
    writes: Mapping[str, list[float]],
    since: float,
) -> tuple[Latency, int]:
    """For each SIS change to a user or an enrollment at or after ``since`` (epoch s), the first
    LMS write to what it names at or after the change: a user's own record or any enrollment of
    theirs; an enrollment's user in its class. Returns the latency and how many changes had no
    LMS effect to time (a change the rules ignore, or one undone before it reached the LMS)."""
    by_user: dict[str, list[float]] = {}
    for key, times in writes.items():
        parts = key.split("|")
        if parts[0] in ("user", "enrollment", "admin") and len(parts) > 1:
            by_user.setdefault(parts[1], []).extend(times)
    latency, without = Latency(), 0
    for change in changes:
        at = iso_epoch(change["at"])
        if at < since:
            continue
        collection, sid = change["collection"], change["sourcedId"]
        if collection == "users":
            candidates = by_user.get(sid, [])
        elif collection == "enrollments":
            record = sis_state.get("enrollments", {}).get(sid) or {}
            user = (record.get("user") or {}).get("sourcedId")
            klass = (record.get("class") or {}).get("sourcedId")
            candidates = writes.get(f"enrollment|{user}|{klass}", [])
        else:
            continue
        after = [t for t in candidates if t >= at]
        if after:
            latency.add(min(after) - at)
        else:
            without += 1
    return latency, without


# --- grades ----------------------------------------------------------------------------------


def grades_report(
    grades: Iterable[Mapping[str, Any]],
    results: Iterable[Mapping[str, Any]],
    result_changes: Iterable[Mapping[str, Any]],
    prefix: str,
    delivered: Iterable[Mapping[str, Any]] = (),
) -> FlowReport:
    """``grades``: the LMS's grade changes in order (``assignment_id``, ``user_id``, ``score``,
    ``at`` epoch s); ``results``: the SIS gradebook's results; ``result_changes``: the SIS change
    log's entries for results (``sourcedId``, ``at``). A grade is applied when the result
    ``<prefix>-<assignment>-<user>`` holds its last score. With the LMS's ``delivered`` Live
    Events, the latency from each grade event's first send is reported too (the pipeline's part,
    without the LMS's own queue)."""
    last: dict[str, Mapping[str, Any]] = {}
    firsts: dict[str, list[float]] = {}
    for g in grades:
        rid = f"{prefix}-{g['assignment_id']}-{g['user_id']}"
        last[rid] = g
        firsts.setdefault(rid, []).append(float(g["at"]))
    ours = [r for r in results if str(r.get("sourcedId", "")).startswith(f"{prefix}-")]
    held = {r["sourcedId"]: r for r in ours if r.get("status") != "tobedeleted"}
    report = FlowReport(expected=len(last))
    for rid, g in last.items():
        r = held.get(rid)
        if r is None:
            report.missing += 1
            report.note("missing", rid)
        elif not _same_score(g.get("score"), r.get("score")):
            report.missing += 1
            report.note("stale", rid)
        else:
            report.applied += 1
    for rid in held:
        if rid not in last:
            report.unexpected += 1
            report.note("unexpected", rid)
    pairs = Counter(
        ((r.get("lineItem") or {}).get("sourcedId"), (r.get("student") or {}).get("sourcedId"))
        for r in held.values()
    )
    for pair, n in pairs.items():
        if n > 1:
            report.duplicated += n - 1
            report.note("duplicated", pair)
    written: dict[str, list[float]] = {}
    for c in result_changes:
        written.setdefault(str(c["sourcedId"]), []).append(iso_epoch(c["at"]))
    for rid, times in firsts.items():
        writes = sorted(written.get(rid, []))
        for at in times:
            after = [t for t in writes if t >= at]
            if after:
                report.latency.add(after[0] - at)
    report.detail["results_written"] = sum(len(v) for k, v in written.items() if k.startswith(f"{prefix}-"))
    # the pipeline's part: from the LMS's first send of each grade's Live Event to the result
    sends: dict[str, list[float]] = {}
    for d in delivered:
        if d.get("name") == "grade_change" and d.get("subject") and not d.get("copy"):
            assignment, user = str(d["subject"]).split("|", 1)
            sends.setdefault(f"{prefix}-{assignment}-{user}", []).append(float(d["sent_at"]))
    from_send = Latency()
    for rid, times in sends.items():
        writes = sorted(written.get(rid, []))
        for at in times:
            after = [t for t in writes if t >= at]
            if after:
                from_send.add(after[0] - at)
    if sends:
        report.detail["latency_from_first_send"] = from_send.as_dict()
    return report


def _same_score(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) < 1e-6


# --- activity --------------------------------------------------------------------------------


def activity_report(delivered: Iterable[Mapping[str, Any]], rows: Iterable[tuple[str, float]]) -> FlowReport:
    """``delivered``: the emitter's record (``id``, ``name``, ``queued_at``, ``sent_at``, ``copy``);
    the latency runs from the event's making (``queued_at``) to its row. ``rows``:
    (event id, written-at epoch s) of the analytics store's activity events. Redelivered copies
    are expected once: a second row for one event would be a duplicate."""
    sent: dict[str, float] = {}
    first_send: dict[str, float] = {}
    for d in delivered:
        if d.get("name") in ACTIVITY_EVENTS and d.get("id"):
            eid = str(d["id"])
            made = d.get("queued_at", d["sent_at"])  # the LMS's change: when the event was made
            sent[eid] = min(sent.get(eid, math.inf), float(made))
            first_send[eid] = min(first_send.get(eid, math.inf), float(d["sent_at"]))
    stored: Counter[str] = Counter()
    written: dict[str, float] = {}
    for eid, at in rows:
        stored[eid] += 1
        written[eid] = min(written.get(eid, math.inf), at)
    report = compare(Counter(dict.fromkeys(sent, 1)), stored)
    delivery = Latency()  # the pipeline's part: from the LMS's first send of the event
    for eid, at in sent.items():
        if eid in written:
            report.latency.add(written[eid] - at)
            delivery.add(written[eid] - first_send[eid])
    report.detail["latency_from_first_send"] = delivery.as_dict()
    return report
