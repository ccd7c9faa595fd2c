"""The LMS simulator's own control endpoints, on a real server: activity runs (simulated days or a
live wall-clock run), their status, and the ground truth for reconciliation and latency."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulators.lms.server import LmsConfig, LmsSimulator
from tests.unit.simulators.lms.receiver import Receiver
from tests.unit.simulators.lms.school import school

TOKEN = "api-token"


@pytest.fixture
def sim() -> Iterator[LmsSimulator]:
    s = LmsSimulator(LmsConfig(port=0, token=TOKEN)).start()
    yield s
    s.stop()


def _until_idle(client: httpx.Client, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get("/_sim/activity/status").json()
        if not status["running"] or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "either days"),
        ({"days": 2, "duration_s": 5}, "not both"),
        ({"days": "many"}, "days must be a number"),
        ({"days": 1.5}, "whole number"),
        ({"days": True}, "days must be a number"),
        ({"days": 0}, "days must be >= 1"),
        ({"days": 2, "speed": 10}, "speed goes with duration_s"),
        ({"duration_s": "soon"}, "duration_s must be a number"),
        ({"duration_s": 0}, "duration_s must be > 0"),
        ({"duration_s": 5, "speed": 0}, "speed must be > 0"),
        ({"duration_s": 5, "speed": -2}, "speed must be > 0"),
        ({"duration_s": 5, "speed": None}, "speed must be a number"),
        ({"duration_s": 5, "seed": "x"}, "seed must be a number"),
        ({"duration": 5}, "unknown field(s) duration"),
        ({"duration_s": 5, "max_steps": 0}, "max_steps must be >= 1"),
        ({"days": 1, "max_steps": 2.5}, "whole number"),
        ([3], "expected"),
    ],
)
def test_a_bad_activity_body_is_400_with_the_reason(sim: LmsSimulator, body: Any, reason: str) -> None:
    with httpx.Client(base_url=sim.url) as client:
        response = client.post("/_sim/activity", json=body)
        assert response.status_code == 400
        assert reason in response.json()["error"]
        assert client.post("/_sim/activity", content=b"{nope").json()["error"] == "the body is not JSON"
        assert client.get("/_sim/activity/status").json() == {
            "runs": [], "course_shares": [], "running": False, "events": {}
        }  # fmt: skip
    assert sim.activity == []


def test_days_run_and_the_truth_names_every_write_by_sis_ids(receiver: Receiver) -> None:
    config = LmsConfig(
        port=0, token=TOKEN, events_url=receiver.url, events_token="ev-token", events_format="caliper"
    )
    sim = LmsSimulator(config).start()
    try:
        before = time.time()
        school(sim.store, courses=1, students=4)
        with httpx.Client(base_url=sim.url, timeout=30) as client:
            started = client.post("/_sim/activity", json={"days": 5, "seed": 3})
            assert started.status_code == 202
            assert started.json() == {"started": True, "days": 5, "seed": 3}
            status = _until_idle(client)
            assert status["running"] is False and len(status["runs"]) == 1
            assert client.get("/_sim/activity").json() == status["runs"]  # its answer as before
            assert sim.emitter is not None and sim.emitter.flush(10)
            counts = client.get("/_sim/activity/status").json()["events"]
            truth = client.get("/_sim/truth").json()
    finally:
        sim.stop()
    played = sim.activity[0].truth
    assert truth["activity"] == status["runs"] == [played.totals()] and truth["running"] is False

    writes = truth["writes"]
    assert sorted(k for k in writes if not k.startswith("grade|")) == sorted(
        [f"user|{u}" for u in ("T0", "S0", "S1", "S2", "S3")]
        + [f"enrollment|{u}|course-0" for u in ("T0", "S0", "S1", "S2", "S3")]
    )
    assert all(before <= t <= time.time() for times in writes.values() for t in times)
    grades = truth["grades"]
    assert len(grades) == len(played.grades) > 0
    assert [(g["assignment_id"], g["user_id"], g["score"]) for g in grades] == [
        (str(g.assignment_id), str(g.user_id), g.score) for g in played.grades
    ]
    for g in grades:
        assert g["at"] in writes[f"grade|{g['assignment_id']}|{g['user_id']}"]

    events = truth["events"]
    delivered = events["delivered"]
    assert events["counts"]["sent"] == counts["sent"] == len(delivered) == len(receiver.requests)
    assert counts["queued"] == counts["sent"] > 0
    assert sorted(d["id"] for d in delivered) == sorted(b["data"][0]["id"] for b in receiver.bodies)
    names = Counter(d["name"] for d in delivered)
    assert names["logged_in"] == names["logged_out"] == len(played.sessions)
    assert names["asset_accessed"] == sum(r.page_views for r in played.sessions)
    assert names["submission_created"] == sum(1 for r in played.submissions if r.submitted_at)
    assert names["grade_change"] == len(played.grades)
    assert sorted(d["subject"] for d in delivered if d["name"] == "grade_change") == sorted(
        f"{g.assignment_id}|{g.user_id}" for g in played.grades
    )
    assert all(d["subject"] is None for d in delivered if d["name"] != "grade_change")
    assert all(before <= d["sent_at"] <= d["acked_at"] and d["copy"] is False for d in delivered)


def test_a_live_run_plays_for_its_wall_clock_seconds(sim: LmsSimulator) -> None:
    school(sim.store, courses=1, students=4)
    with httpx.Client(base_url=sim.url) as client:
        speed = 86400 / 0.5  # a simulated day every half second
        t0 = time.monotonic()
        started = client.post("/_sim/activity", json={"duration_s": 1.0, "speed": speed, "seed": 5})
        assert started.status_code == 202
        assert started.json() == {"started": True, "duration_s": 1.0, "speed": speed, "seed": 5}
        assert client.get("/_sim/activity/status").json()["running"] is True
        assert client.get("/_sim/truth").json()["running"] is True
        status = _until_idle(client)
        assert status["running"] is False and 0.9 <= time.monotonic() - t0 < 15
        truth = client.get("/_sim/truth").json()
    assert truth["activity"] == status["runs"] == [sim.activity[0].truth.totals()]
    assert truth["events"] == {"counts": {}, "delivered": []}  # no events URL
    assert all(r.end is not None for r in sim.activity[0].truth.sessions)


def test_stopping_the_simulator_ends_a_live_run() -> None:
    sim = LmsSimulator(LmsConfig(port=0, token=TOKEN)).start()
    school(sim.store, courses=1, students=2)
    with httpx.Client(base_url=sim.url) as client:
        # weeks of school in the run, whatever the time of day: at speed 1 an evening run has no
        # school left to play and ends at once
        live = {"duration_s": 600, "speed": 8640}
        assert client.post("/_sim/activity", json=live).status_code == 202
        assert client.get("/_sim/activity/status").json()["running"] is True
    sim.stop()
    deadline = time.monotonic() + 10
    while sim.activity_running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sim.activity_running


def test_a_simulator_without_truth_records_nothing_but_still_delivers(receiver: Receiver) -> None:
    config = LmsConfig(
        port=0, token=TOKEN, events_url=receiver.url, events_token="ev-token", events_format="caliper",
        truth=False,
    )  # fmt: skip
    sim = LmsSimulator(config).start()
    try:
        school(sim.store, courses=1, students=2)
        with httpx.Client(base_url=sim.url, timeout=30) as client:
            assert client.post("/_sim/activity", json={"days": 2, "seed": 3}).status_code == 202
            _until_idle(client)
            assert sim.emitter is not None and sim.emitter.flush(10)
            truth = client.get("/_sim/truth").json()
    finally:
        sim.stop()
    assert truth["recorded"] is False and truth["writes"] == {} and truth["grades"] == []
    assert truth["events"]["delivered"] == []
    assert truth["events"]["counts"]["sent"] == len(receiver.requests) > 0
