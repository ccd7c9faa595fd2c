"""A generated district's analytics store, filled directly (not through Kafka): for the dashboard's
browser tests, its bench and a demo.

The SIS part is the district generator's records, mapped by the analytics sink's own table map.
On top, what the pipeline would have stored after some weeks: the LMS ids provisioning gave
(every class a course, every user a user), assignments due around ``today`` with submissions on
time, late or never, grades and their passback outcomes, daily engagement, provisioning commands
(a few dead-lettered) and dead letters. :class:`Seeded` keeps what was made, so a test can compute
every figure without the dashboard's SQL.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import sql

from connectors.oneroster.models import ENTITIES, to_record
from connectors.sinks.postgres.migrate import migrate
from connectors.sinks.postgres.sink import DERIVED
from connectors.sinks.postgres.tables import TABLES, Source
from simulators.district import DistrictSpec, generate
from streams.catalog import Catalog

__all__ = ["Seeded", "seed_store"]

_TOPICS = {
    "orgs": "sis.orgs.v1",
    "academicSessions": "sis.academic_sessions.v1",
    "courses": "sis.courses.v1",
    "classes": "sis.classes.v1",
    "users": "sis.users.v1",
    "enrollments": "sis.enrollments.v1",
}


@dataclass
class Seeded:
    """What :func:`seed_store` wrote, as plain data."""

    today: date
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)  # sourcedId -> class row
    students: dict[str, list[str]] = field(default_factory=dict)  # class -> students enrolled today
    #: every active student enrollment: class, user, school, begin, end (dates or None)
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    course_of: dict[str, str] = field(default_factory=dict)  # class -> LMS course id
    lms_user: dict[str, str] = field(default_factory=dict)  # SIS user -> LMS user id
    assignments: list[dict[str, Any]] = field(default_factory=list)  # id, class, due_at, title
    submitted: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (assignment, student)
    engagement: list[dict[str, Any]] = field(default_factory=list)  # rows of engagement_daily
    dead_letters: dict[str, int] = field(default_factory=dict)  # stage -> count
    provisioning: dict[str, int] = field(default_factory=dict)  # status -> count
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written


def _copy(conn: psycopg.Connection, schema: str, table: str, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    cols = list(rows[0])
    stmt = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for r in rows:
            copy.write_row([r[c] for c in cols])
    return len(rows)


def seed_store(
    dsn: str,
    schema: str,
    catalog: Catalog,
    *,
    users: int = 300,
    seed: int = 7,
    today: date | None = None,
    days: int = 28,
    assignments_per_class: int = 6,
) -> Seeded:
    """Migrate ``schema`` (which must be empty) and fill it; see the module docstring."""
    rng = random.Random(seed)
    today = today or datetime.now(UTC).date()
    out = Seeded(today)
    migrate(dsn, schema)
    now = datetime.combine(today, time(12), tzinfo=UTC)
    meta = {
        "source": "seed",
        "sourceChangedAt": now,
        "ingestedAt": now,
        "traceId": "seed",
        "sourceVersion": None,
    }
    district = generate(DistrictSpec(users=users, seed=seed))
    tables: dict[str, list[dict[str, Any]]] = {}
    live: dict[str, dict[str, dict[str, Any]]] = {}
    for ent in ENTITIES:
        if ent.name not in _TOPICS:
            continue
        topic = _TOPICS[ent.name]
        schema_json = catalog.contract(topic).schema
        table = TABLES[topic]
        live[ent.name] = {}
        for sid, obj in district.collections[ent.name].items():
            if obj.get("status") == "tobedeleted":
                continue
            rec = to_record(ent.name, obj, schema_json, meta=meta)
            live[ent.name][sid] = rec
            tables.setdefault(table.name, []).append(table.row(Source(topic, 0, 0, sid, rec)))
    results: list[dict[str, Any]] = []
    commands: list[dict[str, Any]] = []

    def provisioned(target_type: str, sis_id: str, lms_id: str, status: str = "applied") -> None:
        common = {
            "target_type": target_type,
            "target_sis_id": sis_id,
            "command_id": f"seed:{target_type}:{sis_id}",
            "action": f"create_{target_type}",
            "version": 1,
            "ingested_at": now,
        }
        commands.append(common | {"attributes": json.dumps({}), "reason": None})
        results.append(
            common
            | {
                "status": status,
                "lms_id": lms_id if status == "applied" else None,
                "http_status": 200 if status == "applied" else 400,
                "error": None if status == "applied" else "refused by the LMS (seeded)",
                "attempt": 1,
                "applied_at": now,
            }
        )
        out.provisioning[status] = out.provisioning.get(status, 0) + 1

    for n, sid in enumerate(live["users"]):
        lms = str(100_000 + n)
        out.lms_user[sid] = lms
        provisioned("user", sid, lms)
    for n, (sid, c) in enumerate(live["classes"].items()):
        course = str(500_000 + n)
        out.course_of[sid] = course
        out.classes[sid] = {"title": c["title"], "school": c["school"]["sourcedId"]}
        provisioned("course", sid, course)
    for e in live["enrollments"].values():
        current = (e.get("beginDate") is None or e["beginDate"] <= today) and (
            e.get("endDate") is None or e["endDate"] >= today
        )
        if e["role"] != "student" or e["status"] != "active":
            continue
        out.enrollments.append(
            {
                "class": e["class"]["sourcedId"],
                "user": e["user"]["sourcedId"],
                "school": e["school"]["sourcedId"],
                "begin": e.get("beginDate"),
                "end": e.get("endDate"),
            }
        )
        if current:
            out.students.setdefault(e["class"]["sourcedId"], []).append(e["user"]["sourcedId"])
    for i in range(max(3, users // 200)):
        provisioned("enrollment", f"refused-{i}", "", status="dead_lettered")

    # Assignments due in the last two weeks and the next one; submissions on time, late or never.
    assignments, submissions, grades, passback = [], [], [], []
    for klass, studs in out.students.items():
        course = out.course_of[klass]
        for k in range(assignments_per_class):
            aid = f"{course}-{k}"
            due = now + timedelta(days=rng.randint(-14, 7), hours=11, minutes=59)
            title = f"Assignment {k + 1}"
            out.assignments.append({"assignment_id": aid, "class": klass, "due_at": due, "title": title})
            assignments.append(
                {
                    "assignment_id": aid,
                    "course_id": course,
                    "sis_course_id": None,
                    "title": title,
                    "due_at": due,
                    "unlock_at": None,
                    "lock_at": None,
                    "points_possible": 10.0,
                    "workflow_state": "published",
                    "published": True,
                    "version": 1,
                    "ingested_at": now,
                }
            )
            for st in studs:
                roll = rng.random()
                if roll < 0.75:
                    at = due - timedelta(hours=rng.randint(1, 48))
                elif roll < 0.87:
                    at = due + timedelta(hours=rng.randint(1, 72))
                else:
                    continue
                if at > now:
                    continue  # not yet handed in
                out.submitted[(aid, st)] = at
                user = out.lms_user[st]
                submissions.append(
                    {
                        "submission_id": f"{aid}-{user}",
                        "assignment_id": aid,
                        "course_id": course,
                        "user_id": user,
                        "sis_user_id": st,
                        "attempt": 1,
                        "submitted_at": at,
                        "workflow_state": "graded",
                        "late": at > due,
                        "missing": False,
                        "excused": False,
                        "seconds_late": max(0, int((at - due).total_seconds())),
                        "score": float(rng.randint(4, 10)),
                        "graded_at": at + timedelta(hours=20),
                        "version": 1,
                        "ingested_at": now,
                    }
                )
                graded = at + timedelta(hours=20)
                grades.append(
                    {
                        "assignment_id": aid,
                        "user_id": user,
                        "course_id": course,
                        "sis_user_id": st,
                        "score": submissions[-1]["score"],
                        "grade": None,
                        "points_possible": 10.0,
                        "graded_at": graded,
                        "version": int(graded.timestamp() * 1000),
                        "ingested_at": now,
                    }
                )
                if rng.random() < 0.9:
                    passback.append(
                        {
                            "assignment_id": aid,
                            "user_id": user,
                            "status": "written",
                            "reason": None,
                            "class_sourced_id": klass,
                            "student_sourced_id": st,
                            "line_item_sourced_id": f"lms-{aid}",
                            "result_sourced_id": f"lms-{aid}-{user}",
                            "score": submissions[-1]["score"],
                            "graded_at": graded,
                            "passed_back_at": graded + timedelta(seconds=1),
                            "version": int(graded.timestamp() * 1000),
                            "ingested_at": now,
                        }
                    )

    # Daily engagement: most students on most school days, in some of their classes.
    classes_of: dict[str, list[str]] = {}
    for klass, studs in out.students.items():
        for st in studs:
            classes_of.setdefault(st, []).append(klass)
    engagement = []
    for st, klasses in classes_of.items():
        user = out.lms_user[st]
        for d in range(days):
            day = today - timedelta(days=d)
            if day.weekday() >= 5 or rng.random() < 0.2:
                continue
            total, events, first = 0.0, 0, datetime.combine(day, time(14), tzinfo=UTC)
            for klass in rng.sample(klasses, k=min(len(klasses), rng.randint(1, 3))):
                seconds = float(rng.randint(120, 2400))
                n = rng.randint(3, 40)
                total += seconds
                events += n
                engagement.append(_day(user, st, out.course_of[klass], day, seconds, n, first, now))
            total += 30.0  # signing in belongs to no course
            events += 1
            engagement.append(_day(user, st, None, day, total, events, first, now))
    out.engagement = engagement

    letters = []
    for stage, n in (("sis_ingest", 3), ("lms_ingest", 2), ("lms_sink", len(results) and 4)):
        out.dead_letters[stage] = n
        for i in range(n):
            letters.append(
                {
                    "dlq_topic": f"dlq.{stage}.v1",
                    "dlq_partition": 0,
                    "dlq_offset": i,
                    "stage": stage,
                    "reason": "seeded",
                    "error_type": "SkippableError",
                    "error_message": "seeded",
                    "source_topic": "seed",
                    "source_partition": 0,
                    "source_offset": i,
                    "failed_at": now - timedelta(hours=i * 13),
                    "trace_id": None,
                }
            )

    tables |= {
        "provisioning_commands": commands,
        "provisioning_results": results,
        "assignments": assignments,
        "submissions": submissions,
        "grades": grades,
        "grade_passback": passback,
        "engagement_daily": engagement,
        "dead_letters": letters,
    }
    with psycopg.connect(dsn) as conn:
        for name, rows in tables.items():
            out.rows[name] = _copy(conn, schema, name, rows)
        conn.commit()
        views = tuple(view for view, _ in DERIVED)  # as the analytics sink refreshes them
        for view in views:
            conn.execute(sql.SQL("refresh materialized view {}").format(sql.Identifier(schema, view)))
        for name in (*tables, *views):
            conn.execute(sql.SQL("analyze {}").format(sql.Identifier(schema, name)))
        conn.commit()
    return out


def _day(
    user: str,
    st: str,
    course: str | None,
    day: date,
    seconds: float,
    events: int,
    first: datetime,
    now: datetime,
) -> dict[str, Any]:
    first = first.replace(year=day.year, month=day.month, day=day.day)
    return {
        "user_id": user,
        "course_key": course or "*",
        "day": day,
        "course_id": course,
        "sis_user_id": st,
        "seconds": seconds,
        "events": events,
        "sessions": 1,
        "first_activity_at": first,
        "last_activity_at": first + timedelta(seconds=seconds),
        "version": events,
        "ingested_at": now,
    }
