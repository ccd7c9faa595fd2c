"""Which topic lands in which table of the analytics store, and how a record becomes a row.

One :class:`Table` per topic: its columns, its primary key, the column that holds the source
version (the upsert guard: a row is only replaced by a record whose version is not older) and a
pure function from the decoded record to the row. ``version=None`` marks an append-only table
(immutable events, dead letters): a row already there is left alone. Entity topics (the SIS's)
also map a tombstone to a soft delete of the row its key names.

What the rows keep is what a view needs: users keep their names and roles, never contact data,
identifiers or demographics (``sis.demographics.v1`` does not land at all).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from streams.serde import timestamp_ms

__all__ = ["DEAD_LETTERS", "TABLES", "Source", "Table", "soft_delete_sql", "table_for", "upsert_sql"]


@dataclass(frozen=True)
class Source:
    """A record as the sink hands it to a row function."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: Mapping[str, Any]


Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    row: Callable[[Source], Row]
    version: str | None = "version"  #: None: append-only, a row already stored is kept
    #: columns an incoming null does not clear (an update that does not carry them)
    keep_when_null: tuple[str, ...] = ()
    #: for entity topics, a tombstone's key soft-deletes the row with that primary key
    soft_delete: bool = False
    columns: tuple[str, ...] = field(default=())


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _ref(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else str(value["sourcedId"])


def _refs(values: list[Mapping[str, Any]] | None) -> list[str]:
    return [str(v["sourcedId"]) for v in values or ()]


def _entity(v: Mapping[str, Any]) -> Row:
    """Columns every SIS entity row has."""
    return {
        "sourced_id": v["sourcedId"],
        "status": v["status"],
        "deleted": v["status"] == "tobedeleted",
        "version": timestamp_ms(v["meta"]["sourceChangedAt"]),
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _org(s: Source) -> Row:
    v = s.value
    return _entity(v) | {
        "name": v["name"],
        "type": v["type"],
        "identifier": v.get("identifier"),
        "parent_sourced_id": _ref(v.get("parent")),
    }


def _term(s: Source) -> Row:
    v = s.value
    return _entity(v) | {
        "title": v["title"],
        "type": v["type"],
        "start_date": v.get("startDate"),
        "end_date": v.get("endDate"),
        "parent_sourced_id": _ref(v.get("parent")),
        "school_year": v.get("schoolYear"),
    }


def _course(s: Source) -> Row:
    v = s.value
    return _entity(v) | {
        "title": v["title"],
        "course_code": v.get("courseCode"),
        "org_sourced_id": _ref(v["org"]),
        "school_year_sourced_id": _ref(v.get("schoolYear")),
    }


def _class(s: Source) -> Row:
    v = s.value
    return _entity(v) | {
        "title": v["title"],
        "class_code": v.get("classCode"),
        "class_type": v["classType"],
        "course_sourced_id": _ref(v["course"]),
        "school_sourced_id": _ref(v["school"]),
        "term_sourced_ids": _refs(v.get("terms")),
        "grades": list(v.get("grades") or ()),
        "subjects": list(v.get("subjects") or ()),
    }


def _user(s: Source) -> Row:
    v = s.value
    roles = list(v.get("roles") or ())
    primary = next((r for r in roles if r["roleType"] == "primary"), roles[0] if roles else None)
    orgs = list(dict.fromkeys(_ref(r["org"]) for r in roles))
    return _entity(v) | {
        "given_name": v["givenName"],
        "family_name": v["familyName"],
        "preferred_given_name": v.get("preferredGivenName"),
        "role": primary["role"] if primary else None,
        "org_sourced_ids": orgs,
        "grades": list(v.get("grades") or ()),
        "enabled": bool(v["enabledUser"]),
    }


def _enrollment(s: Source) -> Row:
    v = s.value
    return _entity(v) | {
        "class_sourced_id": _ref(v["class"]),
        "user_sourced_id": _ref(v["user"]),
        "school_sourced_id": _ref(v["school"]),
        "role": v["role"],
        "is_primary": v.get("primary"),
        "begin_date": v.get("beginDate"),
        "end_date": v.get("endDate"),
    }


def _command(s: Source) -> Row:
    v = s.value
    return {
        "target_type": v["targetType"],
        "target_sis_id": v["targetSisId"],
        "command_id": v["commandId"],
        "action": v["action"],
        "attributes": json.dumps(v.get("attributes") or {}, sort_keys=True),
        "reason": v.get("reason"),
        "version": int(v["sequence"]),
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _result(s: Source) -> Row:
    v = s.value
    return {
        "target_type": v["targetType"],
        "target_sis_id": v["targetSisId"],
        "command_id": v["commandId"],
        "action": v["action"],
        "status": v["status"],
        "lms_id": v.get("lmsId"),
        "http_status": v.get("httpStatus"),
        "error": v.get("error"),
        "attempt": int(v["attempt"]),
        "applied_at": _ts(v["appliedAt"]),
        "version": int(v["sequence"]),
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _assignment(s: Source) -> Row:
    v = s.value
    return {
        "assignment_id": v["assignmentId"],
        "course_id": v["courseId"],
        "sis_course_id": v.get("sisCourseId"),
        "title": v["title"],
        "due_at": _ts(v.get("dueAt")),
        "unlock_at": _ts(v.get("unlockAt")),
        "lock_at": _ts(v.get("lockAt")),
        "points_possible": v.get("pointsPossible"),
        "workflow_state": v["workflowState"],
        "published": v.get("published"),
        "version": timestamp_ms(v["meta"]["sourceChangedAt"]),
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _submission(s: Source) -> Row:
    v = s.value
    return {
        "submission_id": v["submissionId"],
        "assignment_id": v["assignmentId"],
        "course_id": v.get("courseId"),
        "user_id": v["userId"],
        "sis_user_id": v.get("sisUserId"),
        "attempt": v.get("attempt"),
        "submitted_at": _ts(v.get("submittedAt")),
        "workflow_state": v["workflowState"],
        "late": v.get("late"),
        "missing": v.get("missing"),
        "excused": v.get("excused"),
        "seconds_late": v.get("secondsLate"),
        "score": v.get("score"),
        "graded_at": _ts(v.get("gradedAt")),
        "version": timestamp_ms(v["meta"]["sourceChangedAt"]),
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _grade(s: Source) -> Row:
    v = s.value
    return {
        "assignment_id": v["assignmentId"],
        "user_id": v["userId"],
        "course_id": v.get("courseId"),
        "sis_user_id": v.get("sisUserId"),
        "score": v.get("score"),
        "grade": v.get("grade"),
        "points_possible": v.get("pointsPossible"),
        "graded_at": _ts(v["gradedAt"]),
        "version": timestamp_ms(v["gradedAt"]),
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _passback(s: Source) -> Row:
    v = s.value
    return {
        "assignment_id": v["assignmentId"],
        "user_id": v["userId"],
        "status": v["status"],
        "reason": v.get("reason"),
        "class_sourced_id": v.get("classSourcedId"),
        "student_sourced_id": v.get("studentSourcedId"),
        "line_item_sourced_id": v.get("lineItemSourcedId"),
        "result_sourced_id": v.get("resultSourcedId"),
        "score": v.get("score"),
        "graded_at": _ts(v["gradedAt"]),
        "passed_back_at": _ts(v["writtenAt"]),
        "version": timestamp_ms(v["gradedAt"]),
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _activity(s: Source) -> Row:
    v = s.value
    return {
        "event_id": v["eventId"],
        "user_id": v["userId"],
        "sis_user_id": v.get("sisUserId"),
        "course_id": v.get("courseId"),
        "action": v["action"],
        "event_type": v.get("eventType"),
        "object_type": v.get("objectType"),
        "object_id": v.get("objectId"),
        "event_time": _ts(v["eventTime"]),
        "session_id": v.get("sessionId"),
        "duration_ms": v.get("durationMs"),
        "format": v["format"],
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _engagement(s: Source) -> Row:
    v = s.value
    return {
        "user_id": v["userId"],
        "course_key": v["courseId"] if v.get("courseId") is not None else "*",
        "day": v["day"],
        "course_id": v.get("courseId"),
        "sis_user_id": v.get("sisUserId"),
        "seconds": v["timeOnTaskS"],
        "events": v["events"],
        "sessions": v["sessions"],
        "first_activity_at": _ts(v["firstActivityAt"]),
        "last_activity_at": _ts(v["lastActivityAt"]),
        "version": int(v["revision"]),
        "ingested_at": _ts(v["meta"]["ingestedAt"]),
    }


def _dead_letter(s: Source) -> Row:
    v = s.value
    return {
        "dlq_topic": s.topic,
        "dlq_partition": s.partition,
        "dlq_offset": s.offset,
        "stage": v["stage"],
        "reason": v["reason"],
        "error_type": v["errorType"],
        "error_message": v["errorMessage"],
        "source_topic": v.get("sourceTopic"),
        "source_partition": v.get("sourcePartition"),
        "source_offset": v.get("sourceOffset"),
        "failed_at": _ts(v["failedAt"]),
        "trace_id": v.get("traceId"),
    }


def _columns(fn: Callable[[Source], Row], value: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(fn(Source("", 0, 0, None, value)))


_META = {"source": "x", "sourceChangedAt": 0, "ingestedAt": 0, "traceId": "t", "sourceVersion": None}
_REF = {"href": None, "sourcedId": "r", "type": "org"}
_ENTITY = {"sourcedId": "s", "status": "active", "dateLastModified": 0, "metadata": {}, "meta": _META}

#: Canonical topic name -> table. The sink reads the topics a topic map gives (tests and the
#: bench rename them) and lands each in its table.
TABLES: dict[str, Table] = {
    "sis.orgs.v1": Table(
        "orgs", ("sourced_id",), _org, soft_delete=True,
        columns=_columns(_org, _ENTITY | {"name": "", "type": "", "parent": None}),
    ),
    "sis.academic_sessions.v1": Table(
        "terms", ("sourced_id",), _term, soft_delete=True,
        columns=_columns(_term, _ENTITY | {"title": "", "type": "", "parent": None}),
    ),
    "sis.courses.v1": Table(
        "courses", ("sourced_id",), _course, soft_delete=True,
        columns=_columns(_course, _ENTITY | {"title": "", "org": _REF}),
    ),
    "sis.classes.v1": Table(
        "classes", ("sourced_id",), _class, soft_delete=True,
        columns=_columns(_class, _ENTITY | {"title": "", "classType": "", "course": _REF, "school": _REF}),
    ),
    "sis.users.v1": Table(
        "users", ("sourced_id",), _user, soft_delete=True,
        columns=_columns(_user, _ENTITY | {"givenName": "", "familyName": "", "enabledUser": True}),
    ),
    "sis.enrollments.v1": Table(
        "enrollments", ("sourced_id",), _enrollment, soft_delete=True,
        columns=_columns(_enrollment, _ENTITY | {"class": _REF, "user": _REF, "school": _REF, "role": ""}),
    ),
    "lms.provisioning.v1": Table(
        "provisioning_commands", ("target_type", "target_sis_id"), _command,
        columns=_columns(_command, {"targetType": "", "targetSisId": "", "commandId": "", "action": "",
                                    "sequence": 0, "meta": _META}),
    ),
    "lms.provisioning.results.v1": Table(
        "provisioning_results", ("target_type", "target_sis_id"), _result, keep_when_null=("lms_id",),
        columns=_columns(_result, {"targetType": "", "targetSisId": "", "commandId": "", "action": "",
                                   "status": "", "attempt": 0, "appliedAt": 0, "sequence": 0, "meta": _META}),
    ),
    "lms.assignments.v1": Table(
        "assignments", ("assignment_id",), _assignment,
        columns=_columns(_assignment, {"assignmentId": "", "courseId": "", "title": "", "workflowState": "",
                                       "meta": _META}),
    ),
    "lms.submissions.v1": Table(
        "submissions", ("submission_id",), _submission,
        columns=_columns(_submission, {"submissionId": "", "assignmentId": "", "userId": "",
                                       "workflowState": "", "meta": _META}),
    ),
    "lms.grades.v1": Table(
        "grades", ("assignment_id", "user_id"), _grade,
        columns=_columns(_grade, {"assignmentId": "", "userId": "", "gradedAt": 0, "meta": _META}),
    ),
    "lms.grades.passback.v1": Table(
        "grade_passback", ("assignment_id", "user_id"), _passback,
        columns=_columns(_passback, {"assignmentId": "", "userId": "", "status": "", "gradedAt": 0,
                                     "writtenAt": 0, "meta": _META}),
    ),
    "lms.activity.v1": Table(
        "activity_events", ("event_id",), _activity, version=None,
        columns=_columns(_activity, {"eventId": "", "userId": "", "action": "", "eventTime": 0,
                                     "format": "", "meta": _META}),
    ),
    "analytics.engagement_daily.v1": Table(
        "engagement_daily", ("user_id", "course_key", "day"), _engagement,
        columns=_columns(_engagement, {"userId": "", "day": 0, "timeOnTaskS": 0.0, "events": 1,
                                       "sessions": 1, "firstActivityAt": 0, "lastActivityAt": 0,
                                       "revision": 0, "meta": _META}),
    ),
}  # fmt: skip

#: Every dead-letter topic lands in one table (its rows point back to the topic and offset).
DEAD_LETTERS = Table(
    "dead_letters", ("dlq_topic", "dlq_partition", "dlq_offset"), _dead_letter, version=None,
    columns=_columns(_dead_letter, {"stage": "", "reason": "", "errorType": "", "errorMessage": "",
                                    "failedAt": 0}),
)  # fmt: skip


def table_for(topic: str) -> Table:
    """The table a canonical topic name lands in (every ``dlq.*`` topic: dead letters)."""
    if topic.startswith("dlq."):
        return DEAD_LETTERS
    return TABLES[topic]


def upsert_sql(schema: str, table: Table) -> sql.Composed:
    """``insert ... on conflict`` for one row: replaced only by a version that is not older."""
    name = sql.Identifier(schema, table.name)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    values = sql.SQL(", ").join(sql.Placeholder(c) for c in table.columns)
    key = sql.SQL(", ").join(sql.Identifier(c) for c in table.key)
    head = sql.SQL("insert into {} ({}) values ({}) on conflict ({})").format(name, cols, values, key)
    if table.version is None:
        return head + sql.SQL(" do nothing")
    sets: list[sql.Composable] = []
    for c in table.columns:
        if c in table.key:
            continue
        if c in table.keep_when_null:
            sets.append(sql.SQL("{c} = coalesce(excluded.{c}, {t}.{c})").format(c=sql.Identifier(c), t=name))
        else:
            sets.append(sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)))
    sets.append(sql.SQL("written_at = now()"))
    guard = sql.SQL("{t}.{v} <= excluded.{v}").format(t=name, v=sql.Identifier(table.version))
    return head + sql.SQL(" do update set {} where {}").format(sql.SQL(", ").join(sets), guard)


def soft_delete_sql(schema: str, table: Table) -> sql.Composed:
    """A tombstone: the row its key names is marked deleted (kept for history and joins)."""
    name = sql.Identifier(schema, table.name)
    (key,) = table.key
    return sql.SQL("update {} set deleted = true, written_at = now() where {} = %s").format(
        name, sql.Identifier(key)
    )
