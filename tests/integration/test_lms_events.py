"""LMS events on the real stack: the receiver takes Canvas Live Events and Caliper envelopes over
HTTP into Kafka, and the events processor writes the typed topics, each event once and each state
in event-time order; refused bodies get 401 or 400 with the reason and a dead letter."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from simulators.lms.app import Throttle
from simulators.lms.server import LmsConfig, LmsSimulator
from simulators.lms.webhook import LiveEventsEmitter
from sislms.lms import build_passback
from sislms.wiring import Kernel
from streams.compacted import group_caught_up
from streams.kafka import client_config
from streams.lms.events import ACTIVITY, ASSIGNMENTS, GRADES, SUBMISSIONS, read_request
from streams.settings import Settings
from tests.integration.lms_support import LMS_TOKEN, TOKEN, V1P2, Rig, caught_up, open_rig, play_school_week
from tests.integration.running import Running
from tests.integration.sis_support import SECRET, start_simulator, wait_for


@pytest.fixture
def rig(settings: Settings, kernel: Kernel, make_catalog: Any, uid: str) -> Iterator[Rig]:
    with open_rig(settings, kernel, make_catalog, uid) as r:
        yield r


def envelope(*items: Any) -> bytes:
    return json.dumps(
        {
            "sensor": "https://example.edu/s",
            "sendTime": "2024-01-01T00:00:00.000Z",
            "dataVersion": V1P2,
            "data": list(items),
        }
    ).encode()


def bodies(fixtures_dir: Path) -> list[bytes]:
    """Every valid real payload, as a sender would POST it."""
    out = [p.read_bytes() for p in sorted((fixtures_dir / "canvas_live_events").glob("*.json"))]
    out += [
        envelope(json.loads(p.read_bytes()))
        for p in sorted((fixtures_dir / "caliper" / "events").glob("*.json"))
    ]
    out += [p.read_bytes() for p in sorted((fixtures_dir / "caliper" / "envelopes").glob("*.json"))]
    return out


def test_every_real_payload_lands_once_however_often_and_in_whatever_order_it_is_sent(
    rig: Rig, fixtures_dir: Path
) -> None:
    payloads = bodies(fixtures_dir)
    sent = payloads * 2  # Canvas neither deduplicates nor orders: every body twice, shuffled
    random.Random(7).shuffle(sent)
    accepted = 0
    for body in sent:
        response = rig.post(body)
        assert response.status_code == 200, response.text
        accepted += response.json()["accepted"]
    # The expectation, from the payloads alone: one record per (topic, event) that has one.
    expected: Counter[tuple[str, str]] = Counter()
    events = [e for body in payloads for e in read_request(body)]
    for event in events:
        for out in event.outputs:
            expected[(out.topic, event.event_id)] += 1
    assert accepted == 2 * len(events)
    assert len(rig.read(rig.raw)) == accepted  # the raw topic keeps every delivery

    running = Running(rig.processor())
    try:
        wait_for(lambda: caught_up(rig), timeout=120)
    finally:
        running.close()
    counts = running.worker.counts
    assert counts["duplicate"] + counts["superseded"] >= sum(1 for e in events if e.outputs)
    # Activity is an append stream: every activity event exactly once.
    activity = Counter(v["eventId"] for _, v in rig.read(rig.topic(ACTIVITY)))
    assert activity == Counter({eid: 1 for (t, eid) in expected if t == ACTIVITY})
    # States: nothing twice, and each key's last record is its newest event (ties: any of them).
    newest: dict[tuple[str, str], int] = {}
    for event in events:
        for out in event.outputs:
            if out.is_state:
                assert event.event_time_ms is not None
                newest[(out.topic, out.key)] = max(newest.get((out.topic, out.key), 0), event.event_time_ms)
    for name in (ASSIGNMENTS, SUBMISSIONS, GRADES):
        records = rig.read(rig.topic(name))
        # (an id reused for another key is another event: the spec's examples reuse ids)
        versions = Counter((v["meta"]["sourceVersion"], k) for k, v in records)
        assert all(n == 1 for n in versions.values()), versions
        assert {eid for eid, _ in versions} <= {eid for (t, eid) in expected if t == name}
        last: dict[str, int] = {}
        for key, value in records:
            assert key is not None
            last[key] = int(value["meta"]["sourceChangedAt"].timestamp() * 1000)
        assert last == {k: t for (topic, k), t in newest.items() if topic == name}, name


def _grade(score: float, at: str) -> bytes:
    return json.dumps(
        {
            "metadata": {
                "event_name": "grade_change",
                "event_time": at,
                "context_type": "Course",
                "context_id": "5",
                "user_id": "1",
            },
            "body": {
                "assignment_id": "77",
                "student_id": "42",
                "score": score,
                "grade": f"{score:g}",
                "points_possible": 10,
            },
        }
    ).encode()


def test_states_are_ordered_by_event_time_and_the_state_survives_a_restart(rig: Rig) -> None:
    newest, older, oldest = (
        _grade(9, "2024-03-01T10:00:03Z"),
        _grade(7, "2024-03-01T10:00:02Z"),
        _grade(5, "2024-03-01T10:00:01Z"),
    )
    for body in (oldest, newest):
        assert rig.post(body).status_code == 200
    first = Running(rig.processor())
    try:
        wait_for(lambda: caught_up(rig), timeout=120)
    finally:
        first.close()
    # A new processor (a restart) reads its state back: a late older grade and a redelivery
    # change nothing.
    for body in (older, newest):
        assert rig.post(body).status_code == 200
    second = Running(rig.processor())
    try:
        wait_for(lambda: caught_up(rig), timeout=120)
    finally:
        second.close()
    grades = rig.read(rig.topic(GRADES))
    assert [k for k, _ in grades] == ["77|42", "77|42"]
    assert [v["score"] for _, v in grades] == [5.0, 9.0]  # the last record is the newest grade
    assert second.worker.counts["superseded"] == 1 and second.worker.counts["duplicate"] == 1


def test_refused_requests_publish_nothing_and_say_why(rig: Rig, fixtures_dir: Path) -> None:
    good = (fixtures_dir / "canvas_live_events" / "canvas__logged_in.json").read_bytes()
    assert rig.post(good, token=None).status_code == 401
    wrong = rig.post(good, token="not-the-token")
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    odd = httpx.post(
        f"{rig.server.url}/events",
        content=good,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
    )
    assert odd.status_code == 415
    assert rig.read(rig.raw) == []

    invalid = sorted((fixtures_dir / "caliper" / "invalid").glob("*.json"))
    refused = []
    for path in invalid:
        body = envelope(json.loads(path.read_bytes()))
        response = rig.post(body, path="/caliper")
        assert response.status_code == 400, path.name
        assert response.json()["error"] == "invalid_event" and response.json()["reasons"], path.name
        refused.append((body, response.json()["reasons"]))
    assert rig.read(rig.raw) == []
    letters = rig.read(f"dlq.{rig.stage}.v1")
    assert len(letters) == len(invalid)
    for (body, reasons), (_, letter) in zip(refused, letters, strict=True):
        assert letter["value"] == body and letter["reason"] == "invalid_event"
        assert all(r in letter["errorMessage"] for r in reasons)
        assert letter["headers"]["origin.path"] == b"/caliper"


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _as_ms(value: Any) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


@pytest.mark.parametrize("fmt", ["canvas", "caliper"])
def test_a_simulated_school_week_arrives_complete_through_duplicates_and_disorder(rig: Rig, fmt: str) -> None:
    """The LMS simulator's activity generator plays a school week; its Live Events go, with
    redeliveries and out of order, through the receiver and the processor. The typed topics must
    hold what the generator did: every assignment with its due date, every submission, the final
    grade of every graded work, and every session event once."""
    s, truth, sent = play_school_week(rig, fmt)
    assert sent["rejected"] == sent["failed"] == sent["dropped"] == 0, sent
    assert sent["duplicated"] > 0

    running = Running(rig.processor())
    try:
        wait_for(lambda: caught_up(rig), timeout=180)
    finally:
        running.close()
    # every redelivery of an event that has typed records was absorbed (all within the window)
    typed = [e for _, v in rig.read(rig.raw) for e in read_request(v["body"]) if e.outputs]
    assert running.worker.counts["duplicate"] == len(typed) - len({e.event_id for e in typed}) > 0

    def latest(name: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in rig.read(rig.topic(name)) if k is not None}

    assignments = latest(ASSIGNMENTS)
    assert {k: _as_ms(v["dueAt"]) for k, v in assignments.items()} == {
        str(a.assignment_id): _ms(a.due_at) for a in truth.assignments
    }
    submitted = [r for r in truth.submissions if r.status != "missing"]
    submissions = latest(SUBMISSIONS)
    by_work = {(v["assignmentId"], v["userId"]): v for v in submissions.values()}
    for r in submitted:
        record = by_work[(str(r.assignment_id), str(r.user_id))]
        if fmt == "canvas":  # the Canvas format says whether it is late; Caliper does not
            assert record["late"] == (r.status == "late")
    assert len(by_work) == len(submitted)
    grades = latest(GRADES)
    final = {
        f"{aid}|{uid}": sub["score"]
        for (aid, uid), sub in s.store.submissions.items()
        if sub["graded_at"] is not None and sub["score"] is not None
    }
    assert {k: v["score"] for k, v in grades.items() if v["score"] is not None} == final
    activity = Counter(v["eventId"] for _, v in rig.read(rig.topic(ACTIVITY)))
    assert all(n == 1 for n in activity.values())
    sessions = [
        v
        for _, v in rig.read(rig.topic(ACTIVITY))
        if v["eventType"] in ("logged_in", "logged_out", "asset_accessed", "SessionEvent", "NavigationEvent")
    ]
    assert len(sessions) == sum(x.events for x in truth.sessions)


def test_grades_entered_in_the_lms_reach_the_sis_gradebook(rig: Rig, kernel: Kernel) -> None:
    """The whole grade loop: a teacher grades in the LMS simulator; its Live Events go, each twice
    and out of order, through the receiver and the events processor to lms.grades.v1; the
    passback writes the line item and the results to the SIS simulator's gradebook over OneRoster
    1.2, with the final score of each student. A course with no SIS class (a sandbox) is skipped
    with that reason."""
    sis = start_simulator(rig.settings, kernel, users=150, seed=5)
    lms = LmsSimulator(LmsConfig(port=0, token=LMS_TOKEN, throttle=Throttle(capacity=0))).start()
    # every event sent twice, and each burst shuffled: Canvas neither deduplicates nor orders
    emitter = LiveEventsEmitter(
        f"{rig.server.url}/events",
        TOKEN,
        "canvas",
        store=lms.store,
        seed=1,
        duplicate_rate=1.0,
        shuffle_window=50,
    )
    try:
        # a class of the SIS, provisioned in the LMS as the sink would
        members: dict[str, list[str]] = {}
        for e in sis.store.records(
            "enrollments", lambda r: r.get("role") == "student" and r.get("status") == "active"
        ):
            members.setdefault(e["class"]["sourcedId"], []).append(e["user"]["sourcedId"])
        class_id, students = max(members.items(), key=lambda kv: len(kv[1]))
        students = sorted(students)[:4]
        klass = sis.store.get("classes", class_id)
        assert klass is not None and len(students) == 4
        store = lms.store
        course = store.create_course(1, {"course": {"name": "Algebra", "sis_course_id": class_id}})
        sandbox = store.create_course(1, {"course": {"name": "Sandbox"}})
        users = []
        for sid in students:
            user = store.create_user(
                1, {"user": {"name": "Student"}, "pseudonym": {"unique_id": sid, "sis_user_id": sid}}
            )
            for c in (course, sandbox):
                store.enroll(
                    course_ref=c["id"],
                    section_ref=None,
                    params={
                        "enrollment": {
                            "user_id": user["id"],
                            "type": "StudentEnrollment",
                            "enrollment_state": "active",
                        }
                    },
                )
            users.append(user)
        work = store.create_assignment(
            course["id"],
            {"assignment": {"name": "Quiz 1", "points_possible": 10, "due_at": "2024-03-08T23:59:00Z"}},
        )
        play = store.create_assignment(sandbox["id"], {"assignment": {"name": "Try", "points_possible": 5}})
        for n, user in enumerate(users):
            store.submit(course["id"], work["id"], user["id"])
            store.grade(course["id"], work["id"], user["id"], {"submission": {"posted_grade": str(5 + n)}})
        time.sleep(0.01)  # a regrade, later (event times have milliseconds)
        store.grade(course["id"], work["id"], users[0]["id"], {"submission": {"posted_grade": "10"}})
        store.grade(sandbox["id"], play["id"], users[1]["id"], {"submission": {"posted_grade": "4"}})
        emitter.start()  # the whole class's events were queued: one burst, shuffled
        assert emitter.flush(60)
        assert emitter.counts()["duplicated"] > 0

        mine = rig.settings.model_copy(
            update={
                "sis_url": sis.url,
                "sis_client_secret": SecretStr(SECRET),
                "lms_url": lms.url,
                "lms_token": SecretStr(LMS_TOKEN),
            }
        )
        passback = build_passback(
            mine,
            rig.kernel,
            group=f"passback-{rig.uid}",
            assignments=rig.topic(ASSIGNMENTS),
            grades=rig.topic(GRADES),
            outcomes=rig.topic("lms.grades.passback.v1"),
            stage=f"sis_gradebook_{rig.uid}",
        )
        processor, sink = Running(rig.processor()), Running(passback)
        conf = client_config(rig.settings, rig.kernel.endpoints.kafka_bootstrap)
        try:
            wait_for(lambda: caught_up(rig), timeout=120)
            wait_for(
                lambda: group_caught_up(
                    conf, f"passback-{rig.uid}", [rig.topic(GRADES), rig.topic(ASSIGNMENTS)]
                )[0],
                timeout=120,
            )
        finally:
            processor.close()
            sink.close()
    finally:
        emitter.stop()
        lms.stop()
        sis.stop()
    line_item = sis.store.get("lineItems", f"lms-{work['id']}")
    assert line_item is not None
    assert line_item["class"]["sourcedId"] == class_id
    assert line_item["school"]["sourcedId"] == klass["school"]["sourcedId"]
    assert line_item["title"] == "Quiz 1" and line_item["resultValueMax"] == 10.0
    assert line_item["dueDate"].startswith("2024-03-08T23:59:00")
    results = {
        r["student"]["sourcedId"]: r
        for r in sis.store.records("results", lambda r: r["lineItem"]["sourcedId"] == line_item["sourcedId"])
    }
    assert {sid: r["score"] for sid, r in results.items()} == {
        students[0]: 10.0,
        students[1]: 6.0,
        students[2]: 7.0,
        students[3]: 8.0,
    }
    assert all(r["scoreStatus"] == "fully graded" for r in results.values())
    assert sis.store.get("lineItems", f"lms-{play['id']}") is None  # the sandbox never reaches the SIS
    outcomes = {k: v for k, v in rig.read(rig.topic("lms.grades.passback.v1"))}
    assert outcomes[f"{play['id']}|{users[1]['id']}"]["status"] == "skipped"
    assert outcomes[f"{play['id']}|{users[1]['id']}"]["reason"] == "no_sis_class"
    assert all(outcomes[f"{work['id']}|{u['id']}"]["status"] == "written" for u in users)
    assert sink.worker.counts["grade.written"] >= 5
