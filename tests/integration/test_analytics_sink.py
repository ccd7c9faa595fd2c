"""The analytics sink on the real stack: a generated district's SIS records, its provisioning, and
the LMS records real Canvas and Caliper payloads make, upserted into a real PostgreSQL.

What is checked against figures computed here from the input, not by the sink's code: every row
and its columns; the newest version wins whatever the order; a replay from the start changes no
row; a row the database refuses goes to the dead-letter topic with its bytes and the rest commits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from psycopg import sql
from psycopg.rows import dict_row

from connectors.oneroster.models import ENTITIES, to_record
from connectors.sinks.postgres.migrate import Migration, load_migrations, migrate
from connectors.sinks.postgres.sink import AnalyticsSink
from simulators.district import DistrictSpec, generate
from sislms.analytics import build_analytics_sink, build_work_tracker, rebuild_store
from sislms.wiring import Kernel
from streams.analytics.work import WorkTracker
from streams.catalog import Catalog
from streams.compacted import group_caught_up, read_to_end
from streams.errors import ConfigError, PlanRefused
from streams.kafka import client_config
from streams.lms.events import read_request
from streams.replay import apply_replay, parse_target, plan_replay
from streams.roles.engine import RuleSet
from streams.roster.commands import diff
from streams.roster.plan import plan_district
from streams.serde import encode_key
from streams.settings import Settings
from streams.topology import apply
from tests.integration.running import Running
from tests.integration.sis_support import wait_for

SIS = {
    "orgs": "sis.orgs.v1",
    "academicSessions": "sis.academic_sessions.v1",
    "courses": "sis.courses.v1",
    "classes": "sis.classes.v1",
    "users": "sis.users.v1",
    "enrollments": "sis.enrollments.v1",
}
LMS = (
    "lms.assignments.v1",
    "lms.submissions.v1",
    "lms.grades.v1",
    "lms.activity.v1",
    "lms.provisioning.v1",
    "lms.provisioning.results.v1",
    "lms.grades.passback.v1",
)
SCHEMAS = {
    "sis.orgs.v1": "sis/orgs.v1.avsc",
    "sis.academic_sessions.v1": "sis/academic_sessions.v1.avsc",
    "sis.courses.v1": "sis/courses.v1.avsc",
    "sis.classes.v1": "sis/classes.v1.avsc",
    "sis.users.v1": "sis/users.v1.avsc",
    "sis.enrollments.v1": "sis/enrollments.v1.avsc",
    "lms.assignments.v1": "lms/assignments.v1.avsc",
    "lms.submissions.v1": "lms/submissions.v1.avsc",
    "lms.grades.v1": "lms/grades.v1.avsc",
    "lms.activity.v1": "lms/activity.v1.avsc",
    "lms.provisioning.v1": "lms/provisioning.v1.avsc",
    "lms.provisioning.results.v1": "lms/provisioning_results.v1.avsc",
    "lms.grades.passback.v1": "lms/grades_passback.v1.avsc",
}
T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
WORK = "analytics.assignment_work.v1"


def renamed(topic: str, uid: str) -> str:
    return topic.replace(".v1", f"_{uid}.v1")


@dataclass
class Rig:
    kernel: Kernel
    settings: Settings
    uid: str
    producer: Producer

    @property
    def schema(self) -> str:
        return f"a_{self.uid}"

    @property
    def stage(self) -> str:
        return f"analytics_{self.uid}"

    @property
    def other_dlq(self) -> str:
        return f"dlq.other_{self.uid}.v1"

    def topics(self) -> dict[str, str]:
        out = {t: renamed(t, self.uid) for t in SCHEMAS}
        out["dlq.other.v1"] = self.other_dlq
        out["dlq.analytics.v1"] = f"dlq.{self.stage}.v1"
        return out

    def sink(self, group: str) -> AnalyticsSink:
        return build_analytics_sink(
            self.settings,
            self.kernel,
            group=group,
            topics=self.topics(),
            schema=self.schema,
            stage=self.stage,
        )

    def send(self, topic: str, key: str, value: dict[str, Any] | None) -> bytes | None:
        """Produce one record to the renamed ``topic``; returns the value's bytes."""
        actual = self.topics()[topic]
        data = None if value is None else self.kernel.serdes[actual].encode(value)
        self.producer.produce(actual, key=encode_key(key), value=data)
        return data

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def caught_up(self, group: str) -> bool:
        conf = client_config(self.settings, self.kernel.endpoints.kafka_bootstrap)
        done, _ = group_caught_up(conf, group, list(self.topics().values()))
        return done

    def rows(self, table: str, *order: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.kernel.endpoints.postgres_dsn, row_factory=dict_row) as conn:
            ident = sql.Identifier(self.schema, table)
            by = sql.SQL(", ").join(sql.Identifier(c) for c in order) if order else sql.SQL("1")
            got = conn.execute(sql.SQL("select * from {} order by {}").format(ident, by)).fetchall()
        for r in got:
            r.pop("written_at", None)
        return got

    def run_until_caught_up(self, group: str) -> AnalyticsSink:
        running = Running(self.sink(group))
        try:
            # caught up, and who owes which work refreshed after the last batch that changed it
            wait_for(lambda: self.caught_up(group) and not running.worker.stale, timeout=120)
        finally:
            running.close()
        return running.worker


@pytest.fixture
def rig(settings: Settings, kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str) -> Iterator[Rig]:
    specs = [
        {
            "name": renamed(t, "{uid}"),
            "value_schema": s,
            "cleanup_policy": "compact" if t.startswith("sis.") else "delete",
        }
        for t, s in SCHEMAS.items()
    ]
    specs += [
        *(
            {"name": f"dlq.{stage}.v1", "value_schema": "dlq/dead_letter.v1.avsc", "partitions": 1}
            for stage in ("other_{uid}", "analytics_{uid}", "analytics_{uid}_rebuild")
        ),
        {
            "name": renamed(WORK, "{uid}"),
            "value_schema": "analytics/assignment_work.v1.avsc",
            "cleanup_policy": "compact",
        },
    ]
    catalog = make_catalog(specs)
    assert apply(catalog, kernel.admin, kernel.registry, 1).ok
    private = Kernel(kernel.settings)
    private.__dict__["catalog"] = catalog
    r = Rig(private, settings, uid, private.producer())
    yield r
    with psycopg.connect(private.endpoints.postgres_dsn, autocommit=True) as conn:
        mine = "select nspname from pg_namespace where nspname = %s or nspname like %s"
        for (name,) in conn.execute(mine, (r.schema, f"{r.schema}\\_%")).fetchall():
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


def _meta(at: datetime) -> dict[str, Any]:
    return {"source": "test", "sourceChangedAt": at, "ingestedAt": at, "traceId": "t", "sourceVersion": None}


def _district(rig: Rig, users: int) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """A generated district: its OneRoster objects and their records (as the sources make them)."""
    district = generate(DistrictSpec(users=users, seed=11))
    objects: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for ent in ENTITIES:
        if ent.name not in SIS:
            continue
        schema = rig.kernel.catalog.contract(renamed(SIS[ent.name], rig.uid)).schema
        live = {s: o for s, o in district.collections[ent.name].items() if o.get("status") != "tobedeleted"}
        objects[ent.name] = live
        records[ent.name] = {s: to_record(ent.name, o, schema, meta=_meta(T0)) for s, o in live.items()}
    return objects, records


def _lms_records(fixtures_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(topic, key, value) of the typed records every valid Canvas and Caliper fixture makes."""
    out = []
    bodies = [p.read_bytes() for p in sorted((fixtures_dir / "canvas_live_events").glob("*.json"))]
    for p in sorted((fixtures_dir / "caliper" / "events").glob("*.json")):
        event = json.loads(p.read_bytes())
        bodies.append(json.dumps({"sensor": "https://example.edu/s", "sendTime": "2024-01-01T00:00:00Z",
                                  "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
                                  "data": [event]}).encode())  # fmt: skip
    for body in bodies:
        for event in read_request(body):
            at = datetime.fromtimestamp((event.event_time_ms or 0) / 1000, tz=UTC)
            for o in event.outputs:
                out.append((o.topic, o.key, {**o.value, "meta": _meta(at)}))
    return out


def test_a_district_and_its_lms_records_land_newest_first_and_a_replay_changes_nothing(
    rig: Rig, settings: Settings
) -> None:
    objects, records = _district(rig, 300)
    for name, topic in SIS.items():
        for sid, rec in records[name].items():
            rig.send(topic, sid, rec)
    # A user renamed later, then an older version of them replayed: the newer name stays.
    some_user = sorted(records["users"])[0]
    newer = {**records["users"][some_user], "familyName": "Renamed", "meta": _meta(T0 + timedelta(hours=1))}
    older = {**records["users"][some_user], "familyName": "Older", "meta": _meta(T0 - timedelta(hours=1))}
    rig.send("sis.users.v1", some_user, newer)
    rig.send("sis.users.v1", some_user, older)
    # An enrollment deleted at the source (a tombstone): kept, marked deleted.
    gone = sorted(records["enrollments"])[0]
    rig.send("sis.enrollments.v1", gone, None)

    # The provisioning of that district, and a result for each user command.
    rules = RuleSet.load(settings.roles_file)
    targets = plan_district(
        orgs=records["orgs"], sessions=records["academicSessions"], courses=records["courses"],
        classes=records["classes"], users=records["users"], enrollments=records["enrollments"],
        rules=rules, today=T0.date(),
    )  # fmt: skip
    commands = []
    for key, target in sorted(targets.items()):
        made, _ = diff({}, {key: target})
        commands += [c.to_value("test", _meta(T0)) for c in made]
    for c in commands:
        rig.send("lms.provisioning.v1", f"{c['targetType']}:{c['targetSisId']}", c)
    user_commands = [c for c in commands if c["targetType"] == "user"]
    for i, c in enumerate(user_commands):
        result = {
            "commandId": c["commandId"], "action": c["action"], "targetType": "user",
            "targetSisId": c["targetSisId"], "status": "applied", "lmsId": str(1000 + i), "httpStatus": 200,
            "error": None, "sequence": c["sequence"], "attempt": 1, "appliedAt": T0, "meta": _meta(T0),
        }  # fmt: skip
        rig.send("lms.provisioning.results.v1", f"user:{c['targetSisId']}", result)

    # The LMS records of every valid real payload, each sent twice, the second time reversed.
    lms = _lms_records(settings.fixtures_dir)
    for topic, key, value in lms + lms[::-1]:
        rig.send(topic, key, value)
    # A dead letter of another stage.
    letter = {
        "stage": "other", "reason": "undecodable", "errorType": "DecodeError", "errorMessage": "bad",
        "sourceTopic": "x", "sourcePartition": 0, "sourceOffset": 7, "sourceTimestamp": None, "key": None,
        "value": b"\x01", "headers": {}, "failedAt": T0, "attempt": 1, "traceId": "t",
    }  # fmt: skip
    rig.send("dlq.other.v1", "k", letter)
    rig.flush()

    sink = rig.run_until_caught_up(f"g1-{rig.uid}")
    assert sink.counts["users.written"] >= len(records["users"])

    # --- SIS dimensions: computed here from the generator's OneRoster objects ---------------
    users = {r["sourced_id"]: r for r in rig.rows("users")}
    assert set(users) == set(objects["users"])
    for sid, obj in objects["users"].items():
        primary = next(r for r in obj["roles"] if r["roleType"] == "primary")
        want_family = "Renamed" if sid == some_user else obj["familyName"]
        got = users[sid]
        assert (got["given_name"], got["family_name"], got["role"], got["enabled"]) == (
            obj["givenName"], want_family, primary["role"], obj["enabledUser"] in (True, "true"),
        ), sid  # fmt: skip
        assert set(got["org_sourced_ids"]) == {r["org"]["sourcedId"] for r in obj["roles"]}
        assert not {"email", "phone", "sms", "username", "identifier"} & set(got)
    enrollments = {r["sourced_id"]: r for r in rig.rows("enrollments")}
    assert set(enrollments) == set(objects["enrollments"])
    for sid, obj in objects["enrollments"].items():
        got = enrollments[sid]
        assert (got["class_sourced_id"], got["user_sourced_id"], got["role"], got["deleted"]) == (
            obj["class"]["sourcedId"],
            obj["user"]["sourcedId"],
            obj["role"],
            sid == gone,
        )
    classes = {r["sourced_id"]: r for r in rig.rows("classes")}
    assert {s: (c["course_sourced_id"], c["school_sourced_id"], sorted(c["term_sourced_ids"]))
            for s, c in classes.items()} == {
        s: (o["course"]["sourcedId"], o["school"]["sourcedId"], sorted(t["sourcedId"] for t in o["terms"]))
        for s, o in objects["classes"].items()
    }  # fmt: skip
    assert {r["sourced_id"] for r in rig.rows("orgs")} == set(objects["orgs"])
    assert {r["sourced_id"] for r in rig.rows("terms")} == set(objects["academicSessions"])
    assert {r["sourced_id"] for r in rig.rows("courses")} == set(objects["courses"])

    # --- provisioning: each target's latest command; users applied, the rest pending --------
    status = {(r["target_type"], r["target_sis_id"]): r for r in rig.rows("provisioning_status")}
    latest = {}
    for c in commands:
        k = (c["targetType"], c["targetSisId"])
        if k not in latest or c["sequence"] >= latest[k]["sequence"]:
            latest[k] = c
    assert set(status) == set(latest)
    lms_ids = {c["targetSisId"]: str(1000 + i) for i, c in enumerate(user_commands)}
    for k, c in latest.items():
        want = "applied" if k[0] == "user" else "pending"
        assert (status[k]["action"], status[k]["status"]) == (c["action"], want), k
        assert status[k]["lms_id"] == (lms_ids[k[1]] if k[0] == "user" else None)
    granted = {
        (r["sourced_id"], r["lms_target_sis_id"]): (r["lms_user_sourced_id"], r["lms_role"])
        for r in rig.rows("enrollment_roles")
    }
    want_granted = {
        (c["attributes"]["enrollment_id"], k[1]): (c["attributes"]["user_id"], c["attributes"]["role"])
        for k, c in latest.items()
        if k[0] == "enrollment" and c["attributes"].get("enrollment_id")
    }
    assert want_granted and {k: v for k, v in granted.items() if k[1] is not None} == want_granted

    # --- LMS facts: the newest record of each key, each activity event once -----------------
    def newest(topic: str, key: Callable[[dict[str, Any]], Any], version: str = "meta") -> dict[Any, Any]:
        out: dict[Any, dict[str, Any]] = {}
        for t, _, v in lms + lms[::-1]:  # as sent: among equal versions the last sent wins
            if t != topic:
                continue
            at = v["gradedAt"] if version == "gradedAt" else v["meta"]["sourceChangedAt"]
            if key(v) not in out or at >= out[key(v)][0]:
                out[key(v)] = (at, v)
        return {k: v for k, (_, v) in out.items()}

    want_assignments = newest("lms.assignments.v1", lambda v: v["assignmentId"])
    got_assignments = {r["assignment_id"]: r for r in rig.rows("assignments")}
    assert set(got_assignments) == set(want_assignments) and want_assignments
    for aid, v in want_assignments.items():
        assert (got_assignments[aid]["title"], got_assignments[aid]["workflow_state"]) == (
            v["title"],
            v["workflowState"],
        )
    want_grades = newest("lms.grades.v1", lambda v: (v["assignmentId"], v["userId"]), "gradedAt")
    got_grades = {(r["assignment_id"], r["user_id"]): r["score"] for r in rig.rows("grades")}
    assert got_grades == {k: v["score"] for k, v in want_grades.items()} and want_grades
    want_subs = newest("lms.submissions.v1", lambda v: v["submissionId"])
    got_subs = {r["submission_id"]: r["workflow_state"] for r in rig.rows("submissions")}
    assert got_subs == {k: v["workflowState"] for k, v in want_subs.items()} and want_subs
    activity = [v for t, _, v in lms if t == "lms.activity.v1"]
    got_events = [r["event_id"] for r in rig.rows("activity_events", "event_id")]
    assert got_events == sorted({v["eventId"] for v in activity}) and activity
    letters = rig.rows("dead_letters")
    assert [(r["dlq_topic"], r["stage"], r["reason"], r["source_offset"]) for r in letters] == [
        (rig.other_dlq, "other", "undecodable", 7)
    ]

    # --- the group rewound to the start (sislms replay) reads everything again: no row changes
    tables = (
        *("orgs", "terms", "courses", "classes", "users", "enrollments"),
        *("provisioning_commands", "provisioning_results"),
        *("assignments", "submissions", "grades", "activity_events", "dead_letters"),
    )
    before = {t: rig.rows(t, *_key(t)) for t in tables}
    plan = plan_replay(rig.kernel.admin, f"g1-{rig.uid}", parse_target("earliest"))
    assert {rig.topics()[t] for t in ("sis.users.v1", "lms.grades.v1")} <= {m.topic for m in plan.moves}
    assert plan.reread == plan.messages > len(records["users"]) + len(lms) * 2  # everything, again
    apply_replay(rig.kernel.admin, plan)
    again = rig.run_until_caught_up(f"g1-{rig.uid}")
    assert again.counts["users.written"] >= len(records["users"])  # it did read them all again
    after = {t: rig.rows(t, *_key(t)) for t in tables}
    for t in tables:
        assert after[t] == before[t], t
    positions = rig.rows("sink_positions", "topic", "kafka_partition")
    assert {p["topic"] for p in positions} >= {rig.topics()[t] for t in ("sis.users.v1", "lms.grades.v1")}


def _key(table: str) -> tuple[str, ...]:
    return {
        "provisioning_commands": ("target_type", "target_sis_id"),
        "provisioning_results": ("target_type", "target_sis_id"),
        "assignments": ("assignment_id",),
        "submissions": ("submission_id",),
        "grades": ("assignment_id", "user_id"),
        "activity_events": ("event_id",),
        "dead_letters": ("dlq_topic", "dlq_partition", "dlq_offset"),
    }.get(table, ("sourced_id",))


def test_rows_the_store_refuses_are_dead_lettered_with_their_bytes_and_the_rest_commits(rig: Rig) -> None:
    _, records = _district(rig, 100)
    terms = sorted(records["academicSessions"].values(), key=lambda r: r["sourcedId"])
    users = sorted(records["users"].values(), key=lambda r: r["sourcedId"])
    backwards = {**terms[0], "startDate": terms[0]["endDate"], "endDate": terms[0]["startDate"]}
    assert backwards["startDate"] > backwards["endDate"]
    nul = {**users[0], "givenName": "A\x00B"}  # PostgreSQL text cannot hold a NUL
    refused = {
        rig.send("sis.academic_sessions.v1", backwards["sourcedId"], backwards): "terms_dates_in_order",
        rig.send("sis.users.v1", nul["sourcedId"], nul): "NUL",
    }
    for t in terms[1:]:
        rig.send("sis.academic_sessions.v1", t["sourcedId"], t)
    for u in users[1:]:
        rig.send("sis.users.v1", u["sourcedId"], u)
    rig.flush()

    sink = rig.run_until_caught_up(f"g-{rig.uid}")

    assert [r["sourced_id"] for r in rig.rows("terms")] == [t["sourcedId"] for t in terms[1:]]
    assert [r["sourced_id"] for r in rig.rows("users")] == [u["sourcedId"] for u in users[1:]]
    conf = client_config(rig.settings, rig.kernel.endpoints.kafka_bootstrap)
    dlq = rig.topics()["dlq.analytics.v1"]
    letters = [rig.kernel.serdes[dlq].decode(m.value()) for m in read_to_end(conf, dlq, timeout_s=60)]
    assert len(letters) == 2
    for letter in letters:
        assert letter is not None and letter["reason"] == "row_refused"
        assert refused[letter["value"]] in letter["errorMessage"]
        assert "A\x00B" not in letter["errorMessage"] and "DETAIL" not in letter["errorMessage"]
    assert sink.counts["terms.dead_lettered"] == 1 and sink.counts["users.dead_lettered"] == 1
    assert sink.counts["terms.written"] == len(terms) - 1
    # The store's own dead letters land in its dead-letter table as well (the sink reads them).
    stored = rig.rows("dead_letters", "dlq_offset")
    assert [(r["dlq_topic"], r["stage"], r["reason"]) for r in stored] == [
        (dlq, rig.stage, "row_refused")
    ] * 2


def test_migrations_apply_once_and_an_edited_one_is_refused(rig: Rig) -> None:
    dsn = rig.kernel.endpoints.postgres_dsn
    first = migrate(dsn, rig.schema)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert migrate(dsn, rig.schema) == []
    edited = [Migration(m.version, m.name, m.text + "\n-- edited") for m in load_migrations()]
    with pytest.raises(ConfigError, match="has changed since"):
        migrate(dsn, rig.schema, edited)
    with pytest.raises(ConfigError, match="newer sislms"):
        migrate(dsn, rig.schema, [])


def _enrollment(sid: str, klass: str, user: str, begin: date | None = None, end: date | None = None) -> dict:
    ref = {"href": None, "type": "x"}
    return {
        "sourcedId": sid, "status": "active", "dateLastModified": T0, "metadata": {},
        "user": {**ref, "sourcedId": user}, "class": {**ref, "sourcedId": klass},
        "school": {**ref, "sourcedId": "school-1"}, "role": "student", "primary": None,
        "beginDate": begin, "endDate": end, "meta": _meta(T0),
    }  # fmt: skip


def _result(target_type: str, sis_id: str, lms_id: str) -> dict:
    return {
        "commandId": f"c-{sis_id}", "action": f"create_{target_type}", "targetType": target_type,
        "targetSisId": sis_id, "status": "applied", "lmsId": lms_id, "httpStatus": 200, "error": None,
        "sequence": 1, "attempt": 1, "appliedAt": T0, "meta": _meta(T0),
    }  # fmt: skip


def _assignment(aid: str, due: datetime | None, state: str = "published") -> dict:
    return {
        "assignmentId": aid, "courseId": "900", "sectionIds": [], "sisCourseId": None,
        "sisSourcedIdOfLineItem": None, "assignmentGroupId": None, "title": f"Work {aid}",
        "description": None, "dueAt": due, "unlockAt": None, "lockAt": None, "pointsPossible": 10.0,
        "workflowState": state, "published": state == "published", "submissionTypes": [], "meta": _meta(T0),
    }  # fmt: skip


def _submission(
    aid: str, user: str, at: datetime | None, sis: str | None = None, excused: bool = False
) -> dict:
    return {
        "submissionId": f"{aid}-{user}", "assignmentId": aid, "courseId": "900", "userId": user,
        "sisUserId": sis, "attempt": 1 if at else None, "submissionType": None, "submittedAt": at,
        "workflowState": "submitted" if at else "unsubmitted", "late": None, "missing": None,
        "excused": excused, "secondsLate": None, "score": None, "grade": None, "gradedAt": None,
        "meta": _meta(T0),
    }  # fmt: skip


#: The statuses of the boundary cases sent by ``_send_work_cases``.
WORK_EXPECTED = {
    ("A1", "s1"): "on_time", ("A1", "s2"): "late", ("A1", "s3"): "missing",
    ("A1", "s6"): "on_time", ("A1", "s7"): "excused",
    # due next week: s3 and s5 will have left by then, s4 has joined
    ("A2", "s1"): "on_time", ("A2", "s2"): "pending", ("A2", "s4"): "pending",
    ("A2", "s6"): "pending", ("A2", "s7"): "pending",
    # no due date: whoever is enrolled today
    ("A4", "s1"): "pending", ("A4", "s2"): "pending", ("A4", "s4"): "pending",
    ("A4", "s6"): "pending", ("A4", "s7"): "pending",
}  # fmt: skip


def _send_work_cases(rig: Rig) -> None:
    """A class, seven students at the edges of a due date, four assignments, their submissions."""
    due = datetime(2026, 9, 10, 23, 59, tzinfo=UTC)
    later = datetime.now(UTC) + timedelta(days=7)
    day = due.date()
    # The class and its LMS course; seven students and the LMS ids of all but s6.
    rig.send("lms.provisioning.results.v1", "course:K", _result("course", "K", "900"))
    enrollments = {
        "s1": _enrollment("e1", "K", "s1"),
        "s2": _enrollment("e2", "K", "s2", begin=date(2026, 8, 20)),
        "s3": _enrollment("e3", "K", "s3", end=day),  # leaves on the due date: still owes it
        "s4": _enrollment("e4", "K", "s4", begin=day + timedelta(days=1)),  # joined after: owes nothing
        "s5": _enrollment("e5", "K", "s5", end=day - timedelta(days=1)),  # left before: owes nothing
        "s6": _enrollment("e6", "K", "s6"),
        "s7": _enrollment("e7", "K", "s7"),
    }
    for user, e in enrollments.items():
        rig.send("sis.enrollments.v1", e["sourcedId"], e)
        if user != "s6":
            rig.send("lms.provisioning.results.v1", f"user:{user}", _result("user", user, f"10{user[1]}"))
    rig.send("sis.enrollments.v1", "t1", {**_enrollment("t1", "K", "teacher"), "role": "teacher"})
    for a in (_assignment("A1", due), _assignment("A2", later), _assignment("A3", due, "unpublished"),
              _assignment("A4", None)):  # fmt: skip
        rig.send("lms.assignments.v1", a["assignmentId"], a)
    for sub in (
        _submission("A1", "101", due),  # exactly at the due time: on time
        _submission("A1", "102", due + timedelta(seconds=1)),  # one second after: late
        _submission("A1", "L6", due - timedelta(hours=2), sis="s6"),  # no LMS id known: by SIS id
        _submission("A1", "107", None, excused=True),
        _submission("A1", "104", due),  # s4 joined after the due date: not expected, not shown
        _submission("A2", "101", due),
    ):
        rig.send("lms.submissions.v1", sub["submissionId"], sub)
    rig.flush()


def test_assignment_status_is_right_at_the_due_date_and_at_enrollment_boundaries(rig: Rig) -> None:
    _send_work_cases(rig)
    rig.run_until_caught_up(f"g-{rig.uid}")

    got = {
        (a, u): status
        for a, u, status in _query(
            rig, "select assignment_id, user_sourced_id, status from assignment_status"
        )
    }
    assert got == WORK_EXPECTED
    # The rollup the sink refreshed with it counts the same work.
    kinds = {"on_time": "on_time", "late": "late", "excused": "excused", "missing": "none", "pending": "none"}
    want_counts: dict[tuple[str, str], int] = {}
    for (aid, _), status in got.items():
        want_counts[(aid, kinds[status])] = want_counts.get((aid, kinds[status]), 0) + 1
    counts = _query(rig, "select assignment_id, kind, sum(n)::int from work_counts group by 1, 2")
    assert {(a, k): n for a, k, n in counts} == want_counts


def _query(rig: Rig, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(rig.kernel.endpoints.postgres_dsn) as conn:
        conn.execute("set time zone 'UTC'")
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(rig.schema)))
        return conn.execute(query).fetchall()  # type: ignore[call-overload]


def _tracker(rig: Rig, group: str) -> WorkTracker:
    inputs = ("assignments", "submissions", "enrollments", "results")
    names = ("lms.assignments.v1", "lms.submissions.v1", "sis.enrollments.v1", "lms.provisioning.results.v1")
    tracker = build_work_tracker(
        rig.settings, rig.kernel, group=group, out_topic=renamed(WORK, rig.uid), stage=rig.stage,
        topics={k: renamed(t, rig.uid) for k, t in zip(inputs, names, strict=True)},
    )  # fmt: skip
    tracker.tick_s = 0.5
    return tracker


def _work_topic(rig: Rig) -> tuple[dict[str, dict[str, Any]], int]:
    """The work topic folded to its latest row per key (tombstones remove), and its record count."""
    conf = client_config(rig.settings, rig.kernel.endpoints.kafka_bootstrap)
    serde = rig.kernel.serdes[renamed(WORK, rig.uid)]
    folded: dict[str, dict[str, Any]] = {}
    n = 0
    for m in read_to_end(conf, renamed(WORK, rig.uid)):
        n += 1
        key = m.key().decode()
        value = serde.decode(m.value())
        if value is None:
            folded.pop(key, None)
        else:
            folded[key] = value
    return folded, n


def _statuses(folded: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(v["assignmentId"], v["userSourcedId"]): v["status"] for v in folded.values()}


def test_the_work_tracker_publishes_each_students_status_missing_as_the_due_time_passes_and_nothing_twice(
    rig: Rig,
) -> None:
    """The same boundary cases through the work tracker: its topic holds the statuses the view
    gives; work due in a few seconds turns from pending to missing with no new input; a student
    who leaves is removed; a restart publishes nothing; and the store's view agrees at the end."""
    _send_work_cases(rig)
    first = Running(_tracker(rig, f"w-{rig.uid}"))
    try:
        wait_for(lambda: _statuses(_work_topic(rig)[0]) == WORK_EXPECTED, timeout=60)
        folded, _ = _work_topic(rig)
        row = folded["A1|s6"]  # matched by SIS id: no LMS id known
        assert (row["userId"], row["submissionId"], row["classSourcedId"]) == (None, "A1-L6", "K")
        assert folded["A1|s1"]["userId"] == "101" and folded["A1|s1"]["schoolSourcedId"] == "school-1"

        # Work due in three seconds: pending now, missing once the due time passes, no input between.
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        rig.send("lms.assignments.v1", "A5", _assignment("A5", due))
        rig.flush()
        owers = {"s1", "s2", "s4", "s6", "s7"}  # enrolled today
        wait_for(lambda: {u for (a, u), st in _statuses(_work_topic(rig)[0]).items()
                          if a == "A5" and st == "pending"} == owers, timeout=30)  # fmt: skip
        wait_for(lambda: {u for (a, u), st in _statuses(_work_topic(rig)[0]).items()
                          if a == "A5" and st == "missing"} == owers, timeout=30)  # fmt: skip
        decided = _work_topic(rig)[0]["A5|s1"]["decidedAt"]
        assert decided >= due

        # s7 leaves the class: every row of s7 is removed.
        rig.send("sis.enrollments.v1", "e7", None)
        rig.flush()
        wait_for(lambda: not any(u == "s7" for _, u in _statuses(_work_topic(rig)[0])), timeout=30)
    finally:
        first.close()
    expected = {k: v for k, v in WORK_EXPECTED.items() if k[1] != "s7"}
    expected.update({("A5", u): "missing" for u in ("s1", "s2", "s4", "s6")})
    folded, count = _work_topic(rig)
    assert _statuses(folded) == expected

    # A restart (a new group: everything read again) publishes nothing new.
    again = Running(_tracker(rig, f"w2-{rig.uid}"))
    try:
        wait_for(lambda: again.worker.ready, timeout=60)
        time.sleep(2)  # a few ticks
        assert again.worker.counts["removed"] == 0
        assert sum(again.worker.counts[s] for s in ("on_time", "late", "missing", "pending", "excused")) == 0
    finally:
        again.close()
    assert _work_topic(rig)[1] == count

    # The analytics store's view, computed in SQL from the same topics, agrees.
    rig.run_until_caught_up(f"g-{rig.uid}")
    view = {
        (a, u): st
        for a, u, st in _query(rig, "select assignment_id, user_sourced_id, status from assignment_status")
    }
    assert view == expected


def test_a_rebuild_fills_a_new_schema_while_the_live_one_serves_then_swaps_it_in(rig: Rig) -> None:
    """``sislms analytics rebuild``: a new schema made from the topics by a sink of its own while
    the live sink runs; the swap is refused until the live sink stops, then done in one
    transaction; the live sink goes on from the rebuild's offsets, with nothing to do."""
    _, records = _district(rig, 120)
    for name, topic in SIS.items():
        for sid, rec in records[name].items():
            rig.send(topic, sid, rec)
    rig.flush()
    live = f"live-{rig.uid}"
    rig.run_until_caught_up(live)
    tables = ("orgs", "terms", "courses", "classes", "users", "enrollments")
    before = {t: rig.rows(t, *_key(t)) for t in tables}
    some = sorted(records["users"])[0]
    renamed_user = {**records["users"][some], "familyName": "Renamed", "meta": _meta(T0 + timedelta(hours=1))}
    rig.send("sis.users.v1", some, renamed_user)
    rig.flush()

    def rebuild() -> dict[str, Any]:
        return rebuild_store(
            rig.settings, rig.kernel, resume="t1", topics=rig.topics(), schema=rig.schema, group=live,
            stage=f"{rig.stage}_rebuild",
        )  # fmt: skip

    running = Running(rig.sink(live))  # the live store keeps being written and served meanwhile
    try:
        with pytest.raises(PlanRefused, match="--resume t1"):
            rebuild()
        new = f"{rig.schema}_rebuild_t1"
        got = _query(rig, f"select count(*) from {new}.users")
        assert got == [(len(records["users"]),)]  # built in full beside the live store
        assert _query(rig, f"select family_name from {rig.schema}.users where sourced_id = '{some}'") in (
            [(records["users"][some]["familyName"],)], [("Renamed",)],
        )  # fmt: skip
    finally:
        running.close()
    doc = rebuild()
    assert doc["swapped"] and doc["previous"] == f"{rig.schema}_before_t1"
    after = {t: rig.rows(t, *_key(t)) for t in tables}  # now the rebuilt schema
    for t in tables:
        if t != "users":
            assert after[t] == before[t], t
    users = {r["sourced_id"]: r for r in after["users"]}
    assert set(users) == {r["sourced_id"] for r in before["users"]}
    assert users[some]["family_name"] == "Renamed"
    assert _query(rig, f"select count(*) from {rig.schema}_before_t1.users") == [(len(records["users"]),)]
    again = rig.run_until_caught_up(live)  # the live group took the rebuild's offsets
    assert sum(v for k, v in again.counts.items() if k.endswith(".written")) == 0
