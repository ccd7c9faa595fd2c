"""The Live Events emitter against a tiny local receiver (http.server in a thread): the Bearer
token, one event per POST, retries on 503/429 and connection errors, 4xx rejected, nothing lost
uncounted, duplicates and out-of-order delivery on request, and the record of what was delivered
when."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from simulators.lms.activity import ActivityGenerator, SimClock
from simulators.lms.server import LmsConfig, LmsSimulator
from simulators.lms.store import CanvasStore
from simulators.lms.webhook import LiveEventsEmitter
from tests.unit.simulators.lms.receiver import Receiver
from tests.unit.simulators.lms.school import school

TOKEN = "s3cret-token"


def emitter(url: str, **kw: Any) -> LiveEventsEmitter:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("max_backoff_s", 0.05)
    kw.setdefault("timeout_s", 5.0)
    return LiveEventsEmitter(url, TOKEN, **kw)


def payload(n: int) -> dict[str, Any]:
    return {"metadata": {"event_name": "logged_in", "request_id": f"r{n}"}, "body": {}}


def test_sends_each_event_in_its_own_post_with_the_bearer_token(receiver: Receiver) -> None:
    e = emitter(receiver.url).start()
    try:
        for n in range(5):
            e.emit(payload(n), "logged_in")
        assert e.flush(10)
    finally:
        e.stop()
    assert [b["metadata"]["request_id"] for b in receiver.bodies] == [f"r{n}" for n in range(5)]
    for headers, _ in receiver.requests:
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["Content-Type"] == "application/json"
    counts = e.counts()
    assert (counts["queued"], counts["sent"], counts["retried"], counts["failed"], counts["dropped"]) == (
        5,
        5,
        0,
        0,
        0,
    )
    assert TOKEN not in repr(e)


def test_retries_after_503_and_429(receiver: Receiver) -> None:
    receiver.script = [503, 503, (429, {"Retry-After": "0"})]
    e = emitter(receiver.url).start()
    try:
        e.emit(payload(1))
        assert e.flush(10)
    finally:
        e.stop()
    assert len(receiver.requests) == 4
    assert {b["metadata"]["request_id"] for b in receiver.bodies} == {"r1"}
    counts = e.counts()
    assert (counts["sent"], counts["retried"], counts["failed"], counts["rejected"]) == (1, 3, 0, 0)


def test_gives_up_after_max_attempts_and_counts_it_failed(receiver: Receiver) -> None:
    receiver.script = [500] * 10
    e = emitter(receiver.url, max_attempts=3).start()
    try:
        e.emit(payload(1))
        e.emit(payload(2))
        assert e.flush(10)
    finally:
        e.stop()
    counts = e.counts()
    assert (counts["sent"], counts["failed"], counts["retried"]) == (0, 2, 4)
    assert len(receiver.requests) == 6


def test_retries_connection_errors() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = emitter(f"http://127.0.0.1:{port}/events", max_attempts=3, timeout_s=1.0).start()
    try:
        e.emit(payload(1))
        assert e.flush(10)
    finally:
        e.stop()
    counts = e.counts()
    assert (counts["failed"], counts["retried"], counts["sent"]) == (1, 2, 0)


def test_a_4xx_is_rejected_without_retry_and_logged_without_student_data(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [400, 401]
    store = CanvasStore()
    e = emitter(receiver.url, store=store).start()
    try:
        with caplog.at_level(logging.DEBUG, logger="simulators.lms.webhook"):
            store.create_user(
                1,
                {
                    "user": {"name": "Ada Student"},
                    "pseudonym": {"unique_id": "ada@example.org", "sis_user_id": "S-42"},
                },
            )
            store.create_user(
                1, {"user": {"name": "Bo Student"}, "pseudonym": {"unique_id": "bo", "sis_user_id": "S-43"}}
            )
            store.create_user(
                1, {"user": {"name": "Cy Student"}, "pseudonym": {"unique_id": "cy", "sis_user_id": "S-44"}}
            )
            assert e.flush(10)
    finally:
        e.stop()
    counts = e.counts()
    assert (counts["rejected"], counts["sent"], counts["retried"]) == (2, 1, 0)
    assert len(receiver.requests) == 3
    text = caplog.text
    assert "rejected: HTTP 400" in text and "user_created" in text
    for personal in ("Ada", "ada@example.org", "S-42", "S-43", "Student", TOKEN):
        assert personal not in text


def test_duplicate_rate_one_sends_every_event_twice(receiver: Receiver) -> None:
    e = emitter(receiver.url, duplicate_rate=1.0, seed=1).start()
    try:
        for n in range(3):
            e.emit(payload(n))
        assert e.flush(10)
    finally:
        e.stop()
    ids = [b["metadata"]["request_id"] for b in receiver.bodies]
    assert sorted(ids) == ["r0", "r0", "r1", "r1", "r2", "r2"]
    counts = e.counts()
    assert (counts["queued"], counts["duplicated"], counts["sent"]) == (6, 3, 6)


def test_shuffle_window_delivers_out_of_order_but_complete(receiver: Receiver) -> None:
    e = emitter(receiver.url, shuffle_window=5, seed=3)
    for n in range(30):  # queued before the sender starts: one burst
        e.emit(payload(n))
    e.start()
    try:
        assert e.flush(10)
    finally:
        e.stop()
    ids = [int(b["metadata"]["request_id"][1:]) for b in receiver.bodies]
    assert sorted(ids) == list(range(30))
    assert ids != list(range(30))
    # never further ahead than the window allows
    assert all(ids.index(n) >= n - 5 for n in range(30))


def test_as_a_store_listener_it_posts_the_stores_changes(receiver: Receiver) -> None:
    store = CanvasStore()
    e = emitter(receiver.url, store=store, fmt="caliper").start()
    try:
        school(store, courses=1, students=2)
        assert e.flush(10)
    finally:
        e.stop()
    counts = e.counts()
    # account_created and (in Caliper) user_created have no documented example: skipped
    assert counts["skipped"] == 1 + 3
    assert counts["sent"] == len(receiver.requests) == 1 + 3  # course_created, 3 enrollments
    kinds = sorted(b["data"][0]["object"]["type"] for b in receiver.bodies)
    assert kinds == ["CourseOffering", "Entity", "Entity", "Entity"]


def test_stopping_with_undelivered_events_counts_them_dropped() -> None:
    e = emitter("http://127.0.0.1:9/events")  # never started
    for n in range(3):
        e.emit(payload(n))
    assert not e.flush(0.05)
    e.stop(timeout=0.1)
    counts = e.counts()
    assert (counts["queued"], counts["dropped"], counts["sent"]) == (3, 3, 0)


def test_generated_activity_arrives_complete_despite_duplicates_and_shuffling(receiver: Receiver) -> None:
    s = school(courses=1, students=4)
    e = emitter(receiver.url, store=s.store, fmt="caliper", duplicate_rate=0.2, shuffle_window=8, seed=2)
    e.start()
    try:
        truth = ActivityGenerator(
            s.store, e, seed=3, clock=SimClock(datetime(2024, 3, 4, 5, tzinfo=UTC))
        ).run(days=2)
        assert e.flush(30)
    finally:
        e.stop()
    counts = e.counts()
    events = [b["data"][0] for b in receiver.bodies]
    unique = {ev["id"]: ev for ev in events}
    assert len(events) == counts["sent"] == len(unique) + counts["duplicated"]
    assert counts["duplicated"] > 0 and counts["failed"] == counts["dropped"] == counts["rejected"] == 0
    kinds = Counter(f"{ev['type']}/{ev['action']}" for ev in unique.values())
    assert kinds["SessionEvent/LoggedIn"] == kinds["SessionEvent/LoggedOut"] == len(truth.sessions)
    assert kinds["NavigationEvent/NavigatedTo"] == sum(r.page_views for r in truth.sessions)
    assert kinds["Event/Created"] == len(truth.assignments)
    assert kinds["AssignableEvent/Submitted"] == sum(1 for r in truth.submissions if r.submitted_at)
    assert kinds["GradeEvent/Graded"] == len(truth.grades)
    assert all("2024-03-04" < ev["eventTime"] < "2024-03-07" for ev in unique.values())


def test_the_simulator_sends_its_live_events_when_given_an_events_url(receiver: Receiver) -> None:
    config = LmsConfig(
        port=0, token="api-token", events_url=receiver.url, events_token=TOKEN, events_format="canvas"
    )
    assert TOKEN not in repr(config)
    sim = LmsSimulator(config).start()
    try:
        assert sim.emitter is not None and sim.emitter.running
        sim.store.create_course(1, {"course": {"name": "Algebra", "sis_course_id": "alg"}})
        assert sim.emitter.flush(10)
    finally:
        sim.stop()
    assert not sim.emitter.running
    assert [b["metadata"]["event_name"] for b in receiver.bodies] == ["course_created"]
    assert receiver.requests[0][0]["Authorization"] == f"Bearer {TOKEN}"
    assert LmsSimulator(LmsConfig(port=0, token="api-token")).emitter is None


def test_delivered_records_each_2xx_with_the_wall_times_of_its_first_post_and_its_answer(
    receiver: Receiver,
) -> None:
    receiver.script = [503, 200, 400]  # the first event answered 503 then 200; the second rejected
    e = emitter(receiver.url, backoff_s=0.2, max_backoff_s=0.2)
    e.emit(payload(1), "logged_in")
    e.emit(payload(2), "asset_accessed")
    e.emit(payload(3), "grade_change")
    before = time.time()
    e.start()
    try:
        assert e.flush(10)
    finally:
        e.stop()
    after = time.time()
    rows = e.delivered()
    assert [(r["id"], r["name"], r["copy"]) for r in rows] == [
        (None, "logged_in", False),
        (None, "grade_change", False),
    ]
    retried, straight = rows
    assert before <= retried["sent_at"] and retried["acked_at"] <= after
    assert retried["acked_at"] - retried["sent_at"] >= 0.1  # from the first POST, across the backoff
    assert retried["acked_at"] <= straight["sent_at"] <= straight["acked_at"]
    assert len(rows) == e.counts()["sent"] == 2
    rows.clear()
    assert len(e.delivered()) == 2  # a copy


def test_delivered_ids_are_the_caliper_event_ids_and_copies_are_flagged(receiver: Receiver) -> None:
    store = CanvasStore()
    e = emitter(receiver.url, store=store, fmt="caliper", duplicate_rate=0.5, seed=4).start()
    try:
        school(store, courses=1, students=6)
        e.emit({"id": "urn:uuid:single", "type": "SessionEvent"}, "logged_in")  # a bare event
        assert e.flush(10)
    finally:
        e.stop()
    rows = e.delivered()
    sent_ids = [b["data"][0]["id"] if "data" in b else b["id"] for b in receiver.bodies]
    assert sorted(r["id"] for r in rows) == sorted(sent_ids)
    assert "urn:uuid:single" in sent_ids and all(i.startswith("urn:uuid:") for i in sent_ids)
    copies = [r for r in rows if r["copy"]]
    assert len(copies) == e.counts()["duplicated"] > 0
    originals = {r["id"]: r for r in rows if not r["copy"]}
    assert len(originals) == len(rows) - len(copies)  # one original per event id
    for copy in copies:
        assert copy["id"] in originals and copy["name"] == originals[copy["id"]]["name"]
    assert {r["name"] for r in rows} == {"course_created", "enrollment_created", "logged_in"}


def test_admin_changes_are_skipped_by_the_emitter_without_error(receiver: Receiver) -> None:
    store = CanvasStore()
    e = emitter(receiver.url, store=store).start()
    try:
        user = store.create_user(1, {"pseudonym": {"unique_id": "t1", "sis_user_id": "T1"}})
        store.add_admin(1, {"user_id": user["id"]})
        store.remove_admin(1, user["id"], None, None)
        assert e.flush(10)
    finally:
        e.stop()
    counts = e.counts()
    assert (counts["skipped"], counts["errors"], counts["sent"]) == (2, 0, 1)  # user_created sent
    assert [r["name"] for r in e.delivered()] == ["user_created"]


# --- several sender threads ------------------------------------------------------------------


def test_senders_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="senders"):
        emitter("http://127.0.0.1:9/events", senders=0)


def test_four_senders_deliver_every_event_exactly_once_and_the_counts_add_up(receiver: Receiver) -> None:
    receiver.script = [503, (429, {"Retry-After": "0"}), 503]  # retried by whichever thread got them
    e = emitter(receiver.url, senders=4).start()
    try:
        names = {t.name for t in threading.enumerate() if t.name.startswith("lms-live-events")}
        assert names == {f"lms-live-events-{n}" for n in range(1, 5)}
        for n in range(200):
            e.emit(payload(n), "logged_in")
        assert e.flush(30)
    finally:
        e.stop()
    assert not e.running
    assert len(receiver.requests) == 200 + 3
    counts = e.counts()
    assert (counts["queued"], counts["sent"], counts["retried"]) == (200, 200, 3)
    assert counts["rejected"] == counts["failed"] == counts["dropped"] == counts["duplicated"] == 0
    rows = e.delivered()
    assert len(rows) == 200 and {r["name"] for r in rows} == {"logged_in"}
    # each event answered 2xx exactly once: the receiver saw it once, or once more per retry
    seen = Counter(b["metadata"]["request_id"] for b in receiver.bodies)
    assert set(seen) == {f"r{n}" for n in range(200)}
    assert sum(seen.values()) - len(seen) == 3


def test_four_senders_with_duplicates_and_shuffling_deliver_everything(receiver: Receiver) -> None:
    e = emitter(receiver.url, senders=4, duplicate_rate=0.5, shuffle_window=3, seed=7)
    for n in range(100):  # queued before the senders start: one burst they share
        e.emit(payload(n))
    e.start()
    try:
        assert e.flush(30)
    finally:
        e.stop()
    counts = e.counts()
    seen = Counter(b["metadata"]["request_id"] for b in receiver.bodies)
    assert set(seen) == {f"r{n}" for n in range(100)} and set(seen.values()) <= {1, 2}
    assert sum(1 for times in seen.values() if times == 2) == counts["duplicated"] > 0
    assert counts["queued"] == counts["sent"] == 100 + counts["duplicated"] == len(receiver.requests)
    assert counts["failed"] == counts["dropped"] == counts["rejected"] == 0
    rows = e.delivered()
    assert sum(r["copy"] for r in rows) == counts["duplicated"]


def test_flush_waits_for_every_sender() -> None:
    gate = threading.Event()
    answered: list[str] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        assert gate.wait(30)
        with lock:
            answered.append(json.loads(request.content)["metadata"]["request_id"])
        return httpx.Response(200)

    e = emitter("http://receiver.test/events", senders=4, transport=httpx.MockTransport(handler)).start()
    try:
        for n in range(40):
            e.emit(payload(n))
        assert not e.flush(0.05)  # every sender is held at the gate
        gate.set()
        assert e.flush(30)
        counts = e.counts()  # read before stop(): flush alone settled everything
        assert (counts["queued"], counts["sent"]) == (40, 40)
        assert sorted(answered) == sorted(f"r{n}" for n in range(40))
        assert len(e.delivered()) == 40
    finally:
        e.stop()


def test_stopping_four_busy_senders_counts_what_is_left_dropped(caplog: pytest.LogCaptureFixture) -> None:
    # Each sender takes one event, is answered 503 and backs off for >= 15 s: all four are busy
    # when stop() comes, so exactly four are in flight and the rest still queued.
    entered = threading.Condition()
    threads: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        with entered:
            threads.append(threading.current_thread().name)
            entered.notify_all()
        return httpx.Response(503)

    e = emitter(
        "http://receiver.test/events",
        senders=4,
        max_attempts=2,
        backoff_s=30.0,
        max_backoff_s=30.0,
        transport=httpx.MockTransport(handler),
    )
    for n in range(20):
        e.emit(payload(n))
    e.start()
    with entered:
        assert entered.wait_for(lambda: len(threads) == 4, timeout=30)
    with caplog.at_level(logging.INFO, logger="simulators.lms.webhook"):
        e.stop(timeout=0.1)
    assert not e.running
    assert sorted(threads) == [f"lms-live-events-{n}" for n in range(1, 5)]
    counts = e.counts()
    assert (counts["queued"], counts["sent"], counts["retried"], counts["failed"], counts["dropped"]) == (
        20,
        0,
        4,
        4,
        16,
    )
    assert "16 live events dropped unsent (stopped)" in caplog.text
    assert caplog.text.count("stopped while retrying") == 4


def test_delivered_records_when_each_event_was_queued(receiver: Receiver) -> None:
    e = emitter(receiver.url, senders=4, duplicate_rate=0.5, seed=5)
    before = time.time()
    for n in range(50):
        e.emit(payload(n))
    started = time.time()
    e.start()
    try:
        assert e.flush(30)
    finally:
        e.stop()
    rows = e.delivered()
    assert len(rows) == e.counts()["sent"] == 50 + e.counts()["duplicated"]
    assert all(r["queued_at"] <= r["sent_at"] <= r["acked_at"] for r in rows)
    originals = [r for r in rows if not r["copy"]]
    copies = [r for r in rows if r["copy"]]
    assert len(originals) == 50 and copies
    # queued before the senders started; a copy is made when its original leaves the queue
    assert all(before <= r["queued_at"] <= started for r in originals)
    assert all(started <= r["queued_at"] for r in copies)


def test_the_simulator_passes_its_events_senders_to_the_emitter(receiver: Receiver) -> None:
    config = LmsConfig(port=0, token="api-token", events_url=receiver.url, events_senders=3)
    default = LmsSimulator(LmsConfig(port=0, token="api-token", events_url=receiver.url)).emitter
    sim = LmsSimulator(config)
    assert sim.emitter is not None and sim.emitter.senders == 3
    assert default is not None and default.senders == 1
