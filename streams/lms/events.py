"""LMS events in, typed records out: Canvas Live Events (Canvas and Caliper 1.1 formats) and
Caliper 1.2 Sensor API envelopes.

:func:`read_request` takes a request body as the receiver got it and returns one
:class:`LmsEvent` per event or entity it carries, or raises :class:`InvalidEvents` with every
reason, naming the item (``data[2]: eventTime is missing``). Nothing of a request is accepted
unless all of it is: the sender gets one answer for one body.

Each event carries what the events processor needs:

- ``event_id``: the Caliper ``id``; for the Canvas format, which has no event id, a digest of the
  payload (a redelivered event is the same payload, so the same id);
- ``subject``: the key its order and deduplication are kept by, and the key of its raw record:
  ``assignment:<id>``, ``submission:<id>``, ``grade:<assignment>|<user>`` for the state it changes,
  ``user:<id>`` for activity alone, ``event:<id>`` for the rest;
- ``outputs``: the typed records it becomes (topic, key, value without ``meta``). An event whose
  typed record would lack a field that record cannot do without is kept raw only (``untyped``
  says why): real payloads are messier than the documentation, and the raw topic keeps them all.
- ``body``: the bytes kept in ``lms.events.raw.v1``. A request with one event keeps its body byte
  for byte; an envelope with several is kept as one single-event envelope per event (same
  ``sensor``, ``sendTime`` and ``dataVersion``), so that the raw topic reads back through this
  same function.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.errors import SkippableError
from streams.lms.caliper import caliper_problems, is_event

__all__ = [
    "ACTIVITY",
    "ASSIGNMENTS",
    "GRADES",
    "SUBMISSIONS",
    "InvalidEvents",
    "LmsEvent",
    "Output",
    "parse_time",
    "read_request",
]

ASSIGNMENTS = "lms.assignments.v1"
SUBMISSIONS = "lms.submissions.v1"
GRADES = "lms.grades.v1"
ACTIVITY = "lms.activity.v1"

#: Topics whose records are states (latest per key wins, by event time); the rest are appends.
STATE_TOPICS = frozenset({ASSIGNMENTS, SUBMISSIONS, GRADES})

Obj = dict[str, Any]


class InvalidEvents(SkippableError):
    """A body that is not a readable batch of LMS events; ``reasons`` lists every problem
    (a 400 at the edge, a dead letter either way)."""

    reason = "invalid_event"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(
            "; ".join(reasons[:20]) + (f" (+{len(reasons) - 20} more)" if len(reasons) > 20 else "")
        )
        self.reasons = reasons


@dataclass(frozen=True)
class Output:
    topic: str
    key: str
    value: Obj  # the record without ``meta``

    @property
    def is_state(self) -> bool:
        return self.topic in STATE_TOPICS


@dataclass(frozen=True)
class LmsEvent:
    event_id: str
    format: str  # "canvas" | "caliper"
    version: str  # "canvas" | "caliper-1.1" | "caliper-1.2"
    event_type: str  # the name as sent: "grade_change", "NavigationEvent", "Person"...
    event_time_ms: int | None  # None for an entity
    subject: str
    body: bytes
    outputs: tuple[Output, ...] = ()
    untyped: str | None = None  # why an event that could have had a typed record has none
    source: str = "lms-events"
    sender: str = field(default="")  # the Caliper sensor or the Canvas host, for the meta source


# --- values ----------------------------------------------------------------------------------

_CANVAS_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")


def parse_time(text: Any) -> int | None:
    """Milliseconds since the epoch from ISO 8601 (``Z``, an offset, or none: UTC), or from the
    ``2019-11-05 07:38:00 -0800`` form some Canvas events use; None when unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        if _CANVAS_TIME.match(text):
            when = datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")
        else:
            when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when.year < 1000:  # "019-11-01" reads as year 19: a typo, not a date
        return None
    return int(when.timestamp() * 1000)


def _duration_ms(text: Any) -> int | None:
    """ISO 8601 duration (``PT50M12S``, ``P1DT2H``) in milliseconds; None when absent or odd."""
    if not isinstance(text, str):
        return None
    m = re.fullmatch(
        r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?", text
    )
    if not m or text in ("P", "PT"):
        return None
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return int(((d * 24 + h) * 60 + mi) * 60_000 + s * 1000)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


_CANVAS_URN = re.compile(r"^urn:instructure:canvas:([a-z_]+):(.+)$")


def _canvas_id(iri: Any, kind: str | None = None) -> str | None:
    """``urn:instructure:canvas:user:42`` -> ``42`` (when of ``kind``); other IRIs unchanged."""
    if not isinstance(iri, str):
        return None
    m = _CANVAS_URN.match(iri)
    if m is None:
        return iri
    if kind is not None and m.group(1) != kind:
        return None
    return m.group(2).split(":")[0]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _digest(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# --- the request -----------------------------------------------------------------------------


def read_request(body: bytes) -> list[LmsEvent]:
    """Every event and entity of one request body, or :class:`InvalidEvents`."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvents([f"the body is not JSON: {exc}"]) from None
    if (
        isinstance(payload, Mapping)
        and "data" in payload
        and ("sensor" in payload or "dataVersion" in payload)
    ):
        return _envelope(payload, body)
    if isinstance(payload, Mapping) and "metadata" in payload and "body" in payload:
        return [_canvas(payload, body)]
    if isinstance(payload, Mapping) and is_event(payload):
        raise InvalidEvents(
            ["a bare Caliper event: send it in an envelope (sensor, sendTime, dataVersion, data)"]
        )
    raise InvalidEvents(
        [
            "neither a Caliper envelope (sensor, sendTime, dataVersion, data) "
            "nor a Canvas Live Event (metadata, body)"
        ]
    )


def _version(data_version: Any) -> str:
    text = str(data_version or "")
    return "caliper-1.1" if "v1p1" in text else "caliper-1.2"


def _envelope(envelope: Mapping[str, Any], body: bytes) -> list[LmsEvent]:
    problems: list[str] = []
    for name in ("sensor", "sendTime", "dataVersion"):
        if not envelope.get(name):
            problems.append(f"envelope: {name} is missing")
    if envelope.get("sendTime") and parse_time(envelope["sendTime"]) is None:
        problems.append("envelope: sendTime is not an ISO 8601 date-time")
    data = envelope.get("data")
    if not isinstance(data, list) or not data:
        problems.append("envelope: data is not a non-empty array")
        raise InvalidEvents(problems)
    for i, item in enumerate(data):
        for problem in caliper_problems(item, timestamp_ok=lambda t: parse_time(t) is not None):
            problems.append(f"data[{i}]: {problem}")
    if problems:
        raise InvalidEvents(problems)
    version = _version(envelope.get("dataVersion"))
    sensor = str(envelope.get("sensor"))
    events = []
    for item in data:
        if len(data) == 1:
            raw = body
        else:
            single = {k: v for k, v in envelope.items() if k != "data"} | {"data": [item]}
            raw = json.dumps(single, separators=(",", ":"), ensure_ascii=False).encode()
        events.append(_caliper(item, raw, version, sensor))
    return events


# --- Caliper ---------------------------------------------------------------------------------


def _node_id(node: Any) -> str | None:
    if isinstance(node, str):
        return node
    if isinstance(node, Mapping):
        return _text(node.get("id"))
    return None


def _node_type(node: Any) -> str | None:
    return _text(node.get("type")) if isinstance(node, Mapping) else None


def _canvas_ext(node: Any) -> Mapping[str, Any]:
    if isinstance(node, Mapping):
        ext = (node.get("extensions") or {}).get("com.instructure.canvas")
        if isinstance(ext, Mapping):
            return ext
    return {}


def _sis_id(person: Any) -> str | None:
    """The SIS id of a Caliper person: Canvas's extension, or a 1.2 ``otherIdentifiers`` entry."""
    ext = _canvas_ext(person)
    for name in ("user_sis_id", "sis_id"):
        if _text(ext.get(name)):
            return _text(ext.get(name))
    if isinstance(person, Mapping):
        for other in person.get("otherIdentifiers") or ():
            if isinstance(other, Mapping) and other.get("identifierType") in ("SisSourcedId", "LisSourcedId"):
                return _text(other.get("identifier"))
    return None


def _course_of(item: Mapping[str, Any]) -> str | None:
    group = item.get("group")
    gid = _node_id(group)
    if gid is None:
        return None
    ext = _canvas_ext(group)
    if ext.get("entity_id") is not None and ext.get("context_type", "Course") == "Course":
        return _text(ext["entity_id"])
    return _canvas_id(gid, "course") if gid.startswith("urn:instructure:") else gid


def _entity_id(node: Any, kind: str) -> str | None:
    ext = _canvas_ext(node)
    if ext.get("entity_id") is not None and str(_node_id(node) or "").startswith(
        f"urn:instructure:canvas:{kind}:"
    ):
        return _text(ext["entity_id"])
    nid = _node_id(node)
    return _canvas_id(nid, kind) if nid and nid.startswith("urn:instructure:") else nid


def _caliper(item: Any, raw: bytes, version: str, sensor: str) -> LmsEvent:
    if isinstance(item, str) or not is_event(item):  # an entity the envelope describes
        eid = _node_id(item) or _digest(item)
        return LmsEvent(
            event_id=eid,
            format="caliper",
            version=version,
            event_type=_node_type(item) or "Entity",
            event_time_ms=None,
            subject=f"entity:{eid}",
            body=raw,
            sender=sensor,
        )
    kind = str(item["type"])
    action = str(item["action"])
    event_id = str(item["id"])
    when = parse_time(item["eventTime"])
    assert when is not None  # checked by caliper_problems
    actor = item.get("actor")
    actor_id = _node_id(actor)
    user = _canvas_id(actor_id, "user") or actor_id
    obj = item.get("object")
    generated = item.get("generated")
    course = _course_of(item)
    canvas = bool(_canvas_ext(item)) or str(actor_id or "").startswith("urn:instructure:")
    outputs: list[Output] = []
    untyped: str | None = None
    subject = f"user:{user}" if user else f"event:{event_id}"

    def attempt_of() -> Any:
        if _node_type(obj) == "Attempt":
            return obj
        if _node_type(generated) == "Attempt":
            return generated
        return None

    if kind in ("GradeEvent", "OutcomeEvent"):
        attempt = attempt_of() or obj
        score = generated if _node_type(generated) in ("Score", "Result") else None
        assignee = attempt.get("assignee") if isinstance(attempt, Mapping) else None
        assignable = attempt.get("assignable") if isinstance(attempt, Mapping) else None
        student = _entity_id(assignee, "user")
        assignment = _entity_id(assignable, "assignment")
        if student and assignment:
            grade_text = _text(_canvas_ext(score).get("grade")) or _text(_canvas_ext(attempt).get("grade"))
            given = _number(score.get("scoreGiven")) if isinstance(score, Mapping) else None
            scored_by = score.get("scoredBy") if isinstance(score, Mapping) else None
            grader = _node_id(scored_by) or actor_id
            outputs.append(
                Output(
                    GRADES,
                    f"{assignment}|{student}",
                    {
                        "gradeId": event_id,
                        "assignmentId": assignment,
                        "courseId": course,
                        "userId": student,
                        "sisUserId": _sis_id(assignee),
                        "submissionId": _entity_id(attempt, "submission"),
                        "sisSourcedIdOfLineItem": None,
                        "score": given,
                        "grade": grade_text
                        if grade_text is not None
                        else (None if given is None else f"{given:g}"),
                        "pointsPossible": _number(score.get("maxScore"))
                        if isinstance(score, Mapping)
                        else None,
                        "gradedAt": when,
                        "graderId": _canvas_id(grader, "user") or grader,
                        "muted": None,
                        "posted": None,
                    },
                )
            )
            subject = f"grade:{assignment}|{student}"
        else:
            untyped = "the graded attempt names no assignee or no assignable"
    elif _node_type(obj) == "AssignableDigitalResource" and (
        (
            kind in ("Event", "ResourceManagementEvent")
            and action in ("Created", "Modified", "Published", "Unpublished")
        )
        or (kind == "AssignableEvent" and action in ("Activated", "Deactivated"))
    ):
        assignment = _entity_id(obj, "assignment")
        if assignment and course:
            assert isinstance(obj, Mapping)
            published = {
                "Activated": True,
                "Published": True,
                "Deactivated": False,
                "Unpublished": False,
            }.get(action)
            outputs.append(
                Output(
                    ASSIGNMENTS,
                    assignment,
                    {
                        "assignmentId": assignment,
                        "courseId": course,
                        "sectionIds": [],
                        "sisCourseId": None,
                        "sisSourcedIdOfLineItem": None,
                        "assignmentGroupId": None,
                        "title": _text(obj.get("name")) or assignment,
                        "description": _text(obj.get("description")),
                        "dueAt": parse_time(obj.get("dateToSubmit")),
                        "unlockAt": parse_time(obj.get("dateToShow")),
                        "lockAt": parse_time(_canvas_ext(obj).get("lock_at")),
                        "pointsPossible": _number(obj.get("maxScore")),
                        "workflowState": "published"
                        if published
                        else ("unpublished" if published is False else "unknown"),
                        "published": published,
                        "submissionTypes": [],
                    },
                )
            )
            subject = f"assignment:{assignment}"
        else:
            untyped = "the assignment event names no assignment or no course"

    attempt = attempt_of()
    if action == "Submitted" and attempt is not None and kind == "AssignableEvent":
        assert isinstance(attempt, Mapping)
        submission = _entity_id(attempt, "submission")
        assignment = _entity_id(
            attempt.get("assignable") or (obj if attempt is not obj else None), "assignment"
        )
        student = _entity_id(attempt.get("assignee"), "user") or user
        if submission and assignment and student:
            outputs.append(
                Output(
                    SUBMISSIONS,
                    submission,
                    {
                        "submissionId": submission,
                        "assignmentId": assignment,
                        "courseId": course,
                        "userId": student,
                        "sisUserId": _sis_id(attempt.get("assignee")) or _sis_id(actor),
                        "attempt": _int(attempt.get("count")),
                        "submissionType": _text(_canvas_ext(attempt).get("submission_type")),
                        "submittedAt": parse_time(attempt.get("dateCreated")) or when,
                        "workflowState": "submitted",
                        "late": None,
                        "missing": None,
                        "excused": None,
                        "secondsLate": None,
                        "score": None,
                        "grade": None,
                        "gradedAt": None,
                    },
                )
            )
            subject = f"submission:{submission}"
        else:
            untyped = "the submitted attempt names no submission, assignment or student"

    is_lifecycle = kind == "Event" and canvas  # Canvas's entity changes (course_created...)
    if user and kind not in ("GradeEvent", "OutcomeEvent") and not is_lifecycle:
        outputs.append(
            Output(
                ACTIVITY,
                user,
                {
                    "eventId": event_id,
                    "userId": user,
                    "sisUserId": _sis_id(actor),
                    "courseId": course,
                    "action": _snake(action),
                    "eventType": kind,
                    "objectType": _node_type(obj),
                    "objectId": (_entity_id(obj, _canvas_kind(obj) or "") if canvas else _node_id(obj)),
                    "eventTime": when,
                    "sessionId": _canvas_id(_node_id(item.get("session")), "session"),
                    "durationMs": _duration_of(item),
                    "format": "caliper",
                },
            )
        )
    if not outputs:
        subject = f"event:{event_id}"
    return LmsEvent(
        event_id=event_id,
        format="caliper",
        version=version,
        event_type=kind,
        event_time_ms=when,
        subject=subject,
        body=raw,
        outputs=tuple(outputs),
        untyped=untyped,
        sender=sensor,
    )


def _canvas_kind(node: Any) -> str | None:
    m = _CANVAS_URN.match(_node_id(node) or "")
    return m.group(1) if m else None


def _duration_of(item: Mapping[str, Any]) -> int | None:
    for name in ("object", "generated", "target"):
        node = item.get(name)
        if isinstance(node, Mapping) and node.get("duration") is not None:
            return _duration_ms(node.get("duration"))
    session = item.get("session")
    if isinstance(session, Mapping):
        return _duration_ms(session.get("duration"))
    return None


# --- Canvas format ---------------------------------------------------------------------------

#: Canvas events that are a user's learning activity, with their normalised action.
CANVAS_ACTIVITY = {
    "logged_in": "logged_in",
    "logged_out": "logged_out",
    "asset_accessed": "navigated_to",
    "submission_created": "submitted",
    "quiz_submitted": "submitted",
    "discussion_entry_created": "posted",
    "submission_comment_created": "commented",
}


def _canvas(payload: Mapping[str, Any], raw: bytes) -> LmsEvent:
    meta = payload.get("metadata")
    body = payload.get("body")
    problems = []
    if not isinstance(meta, Mapping):
        raise InvalidEvents(["metadata is not an object"])
    if not isinstance(body, Mapping):
        problems.append("body is not an object")
    name = _text(meta.get("event_name"))
    if name is None:
        problems.append("metadata.event_name is missing")
    when = parse_time(meta.get("event_time"))
    if meta.get("event_time") is None:
        problems.append("metadata.event_time is missing")
    elif when is None:
        problems.append("metadata.event_time is not a date-time")
    if problems:
        raise InvalidEvents(problems)
    assert isinstance(body, Mapping) and name is not None and when is not None
    event_id = f"canvas:{_digest(payload)}"
    course = _text(meta.get("context_id")) if meta.get("context_type") == "Course" else None
    outputs: list[Output] = []
    untyped: str | None = None
    subject: str | None = None

    if name in ("assignment_created", "assignment_updated"):
        assignment = _text(body.get("assignment_id"))
        course_id = _text(body.get("context_id")) if body.get("context_type", "Course") == "Course" else None
        course_id = course_id or course
        if assignment and course_id:
            state = _text(body.get("workflow_state")) or "unknown"
            types = body.get("submission_types")
            if isinstance(types, str):
                types = [t.strip() for t in types.split(",") if t.strip()]
            outputs.append(
                Output(
                    ASSIGNMENTS,
                    assignment,
                    {
                        "assignmentId": assignment,
                        "courseId": course_id,
                        "sectionIds": [],
                        "sisCourseId": _text(meta.get("context_sis_source_id"))
                        if course_id == course
                        else None,
                        "sisSourcedIdOfLineItem": None,
                        "assignmentGroupId": _text(body.get("assignment_group_id")),
                        "title": _text(body.get("title")) or assignment,
                        "description": _text(body.get("description")),
                        "dueAt": parse_time(body.get("due_at")),
                        "unlockAt": parse_time(body.get("unlock_at")),
                        "lockAt": parse_time(body.get("lock_at")),
                        "pointsPossible": _number(body.get("points_possible")),
                        "workflowState": state,
                        "published": state == "published" if state != "unknown" else None,
                        "submissionTypes": [str(t) for t in types] if isinstance(types, list) else [],
                    },
                )
            )
            subject = f"assignment:{assignment}"
        else:
            untyped = "the assignment event names no assignment or no course"
    elif name in ("submission_created", "submission_updated"):
        submission = _text(body.get("submission_id"))
        assignment = _text(body.get("assignment_id"))
        student = _text(body.get("user_id"))
        if submission and assignment and student:
            outputs.append(
                Output(
                    SUBMISSIONS,
                    submission,
                    {
                        "submissionId": submission,
                        "assignmentId": assignment,
                        "courseId": course,
                        "userId": student,
                        "sisUserId": None,
                        "attempt": _int(body.get("attempt")),
                        "submissionType": _text(body.get("submission_type")),
                        "submittedAt": parse_time(body.get("submitted_at")),
                        "workflowState": _text(body.get("workflow_state")) or "unknown",
                        "late": _bool(body.get("late")),
                        "missing": _bool(body.get("missing")),
                        "excused": _bool(body.get("excused")),
                        "secondsLate": _int(body.get("seconds_late")),
                        "score": _number(body.get("score")),
                        "grade": _text(body.get("grade")),
                        "gradedAt": parse_time(body.get("graded_at")),
                    },
                )
            )
            subject = f"submission:{submission}"
        else:
            untyped = "the submission event names no submission, assignment or student"
    elif name == "grade_change":
        assignment = _text(body.get("assignment_id"))
        student = _text(body.get("student_id")) or _text(body.get("user_id"))
        if assignment and student:
            outputs.append(
                Output(
                    GRADES,
                    f"{assignment}|{student}",
                    {
                        "gradeId": event_id,
                        "assignmentId": assignment,
                        "courseId": course,
                        "userId": student,
                        "sisUserId": _text(body.get("student_sis_id")),
                        "submissionId": _text(body.get("submission_id")),
                        "sisSourcedIdOfLineItem": None,
                        "score": _number(body.get("score")),
                        "grade": _text(body.get("grade")),
                        "pointsPossible": _number(body.get("points_possible")),
                        "gradedAt": when,
                        "graderId": _text(body.get("grader_id")),
                        "muted": _bool(body.get("muted")),
                        "posted": None,
                    },
                )
            )
            subject = f"grade:{assignment}|{student}"
        else:
            untyped = "the grade change names no assignment or no student"

    action = CANVAS_ACTIVITY.get(name)
    actor = _text(meta.get("user_id")) or (
        _text(body.get("user_id")) if name == "submission_created" else None
    )
    if action is not None and actor:
        obj_type, obj_id = _canvas_object(name, body)
        outputs.append(
            Output(
                ACTIVITY,
                actor,
                {
                    "eventId": event_id,
                    "userId": actor,
                    "sisUserId": _text(meta.get("user_sis_id")) if meta.get("user_id") else None,
                    "courseId": course,
                    "action": action,
                    "eventType": name,
                    "objectType": obj_type,
                    "objectId": obj_id,
                    "eventTime": when,
                    "sessionId": _text(meta.get("session_id")),
                    "durationMs": None,
                    "format": "canvas",
                },
            )
        )
        subject = subject or f"user:{actor}"
    elif action is not None:
        untyped = "an activity event with no user (anonymous access)"
    return LmsEvent(
        event_id=event_id,
        format="canvas",
        version="canvas",
        event_type=name,
        event_time_ms=when,
        subject=subject or f"event:{event_id}",
        body=raw,
        outputs=tuple(outputs),
        untyped=untyped,
        sender=_text(meta.get("hostname")) or "canvas",
    )


def _canvas_object(name: str, body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if name == "asset_accessed":
        kind = _text(body.get("asset_type"))
        sub = _text(body.get("asset_subtype"))
        return (f"{kind}/{sub}" if kind and sub else kind), _text(body.get("asset_id"))
    if name == "submission_created":
        return "submission", _text(body.get("submission_id"))
    if name == "quiz_submitted":
        return "quiz_submission", _text(body.get("submission_id"))
    if name == "discussion_entry_created":
        return "discussion_entry", _text(body.get("discussion_entry_id"))
    if name == "submission_comment_created":
        return "submission_comment", _text(body.get("submission_comment_id"))
    return None, None
