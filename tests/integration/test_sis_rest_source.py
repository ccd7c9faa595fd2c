"""The OneRoster REST source against the SIS simulator, on the real Kafka and registry."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from connectors.control import ControlServer
from connectors.oneroster.models import ENTITIES
from connectors.sources.holds import HoldBook, MassChangeGuard
from simulators.sis.server import SisSimulator
from sislms.sis import run_backfill
from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.kafka import client_config
from streams.settings import Settings
from tests.integration.sis_support import (
    SisTopics,
    active,
    read_topic,
    rest_source,
    sis_topics,
    start_simulator,
    table,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def topics(kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str) -> SisTopics:
    return sis_topics(kernel, make_catalog, uid)


@pytest.fixture
def sim(settings: Settings, kernel: Kernel) -> Iterator[SisSimulator]:
    simulator = start_simulator(settings, kernel, users=700)
    yield simulator
    simulator.stop()


def test_snapshot_lands_every_record_with_exact_counts(
    topics: SisTopics, sim: SisSimulator, tmp_path: Path
) -> None:
    source = rest_source(topics, sim, tmp_path)
    report = source.sync_once()
    for ent in ENTITIES:
        expected = active(sim, ent.name)
        assert expected, f"the generated district has no {ent.name}"
        got = table(topics, ent.name)
        assert set(got) == set(expected), ent.name
        assert report.upserts.get(ent.name, 0) == len(expected)
        assert report.kind[ent.name] == "snapshot"
    users = table(topics, "users")
    some_id, some = next(iter(active(sim, "users").items()))
    assert users[some_id]["givenName"] == some["givenName"]
    assert users[some_id]["meta"]["source"] == "oneroster-rest:test"
    assert [r["role"] for r in users[some_id]["roles"]] == [r["role"] for r in some["roles"]]
    # A second run right away is a delta that publishes nothing.
    again = source.sync_once()
    assert again.total("upserts") == 0 and again.total("deletes") == 0
    assert set(again.kind.values()) == {"delta"}


def test_delta_creates_updates_and_deletes_and_restart_neither_misses_nor_repeats(
    topics: SisTopics, sim: SisSimulator, tmp_path: Path
) -> None:
    rest_source(topics, sim, tmp_path).sync_once()
    counts_after_snapshot = {
        e.name: len(read_topic(topics, topics.topics[e.name], decode=False)) for e in ENTITIES
    }

    # Changes of every kind, through the simulator's change generator.
    made = []
    for kind in (
        "enrollment",
        "withdrawal",
        "schedule_change",
        "teacher_reassignment",
        "role_change",
        "new_hire",
        "new_student",
        "profile_update",
        "grade_entry",
    ):
        made += sim.generator.step(kind)
    assert made

    restarted = rest_source(topics, sim, tmp_path)  # a new process: same state file, nothing in memory
    report = restarted.sync_once()
    changed = {(c.collection, c.sourcedId) for c in made}
    upserted = {(c.collection, c.sourcedId) for c in made if c.op != "delete"}
    deleted = {(c.collection, c.sourcedId) for c in made if c.op == "delete"}
    assert report.total("upserts") == len(upserted)
    assert report.total("deletes") == len(deleted)
    for ent in ENTITIES:
        assert set(table(topics, ent.name)) == set(active(sim, ent.name)), ent.name
    # Each change was published once: the topics grew by exactly the number of changed keys.
    grown = sum(
        len(read_topic(topics, topics.topics[e.name], decode=False)) - counts_after_snapshot[e.name]
        for e in ENTITIES
    )
    assert grown == len(changed)

    # Restart again: nothing new at the SIS, nothing published (the margin re-reads are skipped).
    quiet = rest_source(topics, sim, tmp_path).sync_once()
    assert quiet.total("upserts") == 0 and quiet.total("deletes") == 0
    assert quiet.total("skipped") >= 1  # the changes inside the clock-skew margin were read again

    # A change made while the source is down arrives with the next start.
    later = sim.generator.step("profile_update")
    resumed = rest_source(topics, sim, tmp_path).sync_once()
    assert resumed.upserts == {"users": 1}
    assert (
        table(topics, "users")[later[0].sourcedId]["email"]
        == sim.store.get("users", later[0].sourcedId)["email"]
    )


def test_changes_arrive_by_the_next_poll_and_at_once_through_the_webhook(
    settings: Settings, kernel: Kernel, topics: SisTopics, tmp_path: Path
) -> None:
    # A long interval: anything that lands before it elapsed was pulled by the trigger.
    source_box: dict[str, object] = {}
    control = ControlServer(
        "127.0.0.1",
        0,
        on_trigger=lambda: source_box["source"].trigger(),  # type: ignore[attr-defined]
        health=lambda: (True, {}),
    )
    control.start()
    sim = start_simulator(settings, kernel, users=500, webhook_url=f"http://127.0.0.1:{control.port}/trigger")
    stop = threading.Event()
    try:
        source = rest_source(topics, sim, tmp_path, poll_interval_s=120.0)
        source_box["source"] = source
        runner = threading.Thread(target=source.run, args=(stop,), daemon=True)
        runner.start()
        wait_for(lambda: source.runs >= 1 and source.last_report is not None, timeout=120)
        runs_before = source.runs
        change = sim.generator.step("profile_update")[0]
        email = sim.store.get("users", change.sourcedId)["email"]
        latency = wait_for(
            lambda: table(topics, "users").get(change.sourcedId, {}).get("email") == email, timeout=60
        )
        assert source.runs == runs_before + 1  # exactly one run, started by the webhook
        assert control.triggers >= 1 and sim.notifier is not None and sim.notifier.sent >= 1
        print(f"webhook-triggered change latency: {latency:.2f} s")
    finally:
        stop.set()
        source_box["source"].trigger()  # type: ignore[attr-defined]
        sim.stop()
        control.stop()

    # Without the webhook, a change lands with the next poll.
    sim2 = start_simulator(settings, kernel, users=500)
    stop2 = threading.Event()
    try:
        polling = rest_source(topics, sim2, tmp_path / "poll", poll_interval_s=1.0)
        runner = threading.Thread(target=polling.run, args=(stop2,), daemon=True)
        runner.start()
        wait_for(lambda: polling.runs >= 1 and polling.last_report is not None, timeout=120)
        change = sim2.generator.step("profile_update")[0]
        runs_before = polling.runs
        email = sim2.store.get("users", change.sourcedId)["email"]
        wait_for(lambda: table(topics, "users").get(change.sourcedId, {}).get("email") == email, timeout=60)
        assert polling.runs - runs_before <= 2  # the run in flight (maybe) and the next one
    finally:
        stop2.set()
        sim2.stop()


def test_bad_records_and_pages_are_dead_lettered_and_nothing_is_lost(
    topics: SisTopics, sim: SisSimulator, tmp_path: Path
) -> None:
    source = rest_source(topics, sim, tmp_path)
    source.sync_once()
    good = sim.generator.step("profile_update")[0]
    bad_user = dict(next(iter(active(sim, "users").values())))
    bad_user["roles"] = [{**bad_user["roles"][0], "role": "wizard"}]
    sim.store.put("users", bad_user, kind="manual")
    report = source.sync_once()
    assert report.dead_letters == {"users": 1}
    assert report.upserts.get("users") == (0 if good.sourcedId == bad_user["sourcedId"] else 1)
    letters = read_topic(topics, topics.dead_letters)
    assert len(letters) == 1
    letter = letters[0][1]
    assert letter["reason"] == "validation_failed"
    assert "roles[0].role" in letter["errorMessage"] and "wizard" in letter["errorMessage"]
    assert b"wizard" in letter["value"] and letter["headers"]["origin.field"] == b"roles[0].role"

    # An HTML page in place of JSON, on every retry: dead-lettered, the run fails, the bookmark stays.
    bookmark = source.state.entity("users")["bookmark"]
    changed = sim.generator.step("profile_update")[0]
    httpx.post(f"{sim.url}/_sim/faults", json={"status": 200, "body": "html", "times": 10, "path": "/users"})
    with pytest.raises(Exception, match="not JSON"):
        source.sync_once()
    assert source.state.entity("users")["bookmark"] == bookmark
    assert source.health()[0] is False
    html = [v for _, v, _ in read_topic(topics, topics.dead_letters) if v["reason"] == "malformed_response"]
    assert html and b"502 Bad Gateway" in html[0]["value"]
    # The provider recovers (and is busy once first): the change is not lost.
    httpx.delete(f"{sim.url}/_sim/faults")
    httpx.post(f"{sim.url}/_sim/faults", json={"status": 429, "retry_after": 1, "times": 1, "path": "/users"})
    recovered = source.sync_once()
    assert recovered.upserts.get("users", 0) >= 1
    assert (
        table(topics, "users")[changed.sourcedId]["email"]
        == sim.store.get("users", changed.sourcedId)["email"]
    )
    assert source.health()[0] is True


def test_token_expiring_mid_snapshot_is_renewed(
    settings: Settings, kernel: Kernel, topics: SisTopics, tmp_path: Path
) -> None:
    sim = start_simulator(settings, kernel, users=500)
    try:
        source = rest_source(topics, sim, tmp_path)
        revoke = threading.Timer(0.3, lambda: httpx.post(f"{sim.url}/_sim/tokens/revoke"))
        revoke.start()
        source.sync_once()
        revoke.join()
        assert source.client.http.auth.fetched >= 2  # type: ignore[union-attr]
        assert set(table(topics, "enrollments")) == set(active(sim, "enrollments"))
    finally:
        sim.stop()


def test_mass_deletion_is_held_until_approved(topics: SisTopics, sim: SisSimulator, tmp_path: Path) -> None:
    source = rest_source(topics, sim, tmp_path, guard=MassChangeGuard(threshold=0.10, min_records=10))
    source.sync_once()
    enrollments = list(active(sim, "enrollments"))
    doomed = enrollments[: len(enrollments) // 4]  # a broken SIS export loses a quarter of them
    for sid in doomed:
        sim.store.delete("enrollments", sid, kind="broken_export", hard=True)
    report = source.sync_once(force_snapshot=True)
    assert "enrollments" in report.held
    assert set(table(topics, "enrollments")) == set(enrollments)  # nothing deleted yet
    book = HoldBook(tmp_path / "holds")
    [hold] = book.list(status="pending")
    assert sorted(hold.deletions) == sorted(doomed) and hold.live_before == len(enrollments)
    assert source.health()[1]["holdsPending"] == 1

    book.decide(hold.id, approve=True)
    source.sync_once()  # the running source applies the approval
    assert set(table(topics, "enrollments")) == set(enrollments) - set(doomed)
    assert book.get(hold.id).status == "applied"


def test_rejected_hold_deletes_nothing_and_small_deletions_pass(
    topics: SisTopics, sim: SisSimulator, tmp_path: Path
) -> None:
    source = rest_source(topics, sim, tmp_path)
    source.sync_once()
    users = list(active(sim, "users"))
    for sid in users[: len(users) // 2]:
        sim.store.delete("users", sid, kind="broken_export")
    report = source.sync_once()
    book = HoldBook(tmp_path / "holds")
    [hold] = book.list(status="pending")
    assert report.held == {"users": hold.id}
    book.decide(hold.id, approve=False)
    source.sync_once()
    assert set(table(topics, "users")) == set(users)
    # A normal withdrawal is not a mass change: it is published at once.
    withdrawal = sim.generator.step("withdrawal")[0]
    assert source.sync_once().deletes == {"enrollments": 1}
    assert withdrawal.sourcedId not in table(topics, "enrollments")


def test_a_backfill_publishes_only_what_differs_and_its_dry_run_nothing(
    topics: SisTopics, sim: SisSimulator, tmp_path: Path
) -> None:
    """``sislms backfill sis``: a full snapshot compared with the compacted topics. Changes the
    source missed (its poller was down) are published, each once, deletions included; the rest
    is not. The dry run counts the same and publishes nothing; a second backfill publishes
    nothing; ``--all`` publishes every record."""
    conf = client_config(topics.kernel.settings, topics.kernel.endpoints.kafka_bootstrap)
    names = tuple(e.name for e in ENTITIES)
    rest_source(topics, sim, tmp_path).sync_once()

    def sizes() -> dict[str, int]:
        return {e.name: len(read_topic(topics, topics.topics[e.name], decode=False)) for e in ENTITIES}

    before = sizes()
    made = []
    for kind in ("profile_update", "new_student", "withdrawal", "schedule_change", "grade_entry"):
        made += sim.generator.step(kind)
    last = {(c.collection, c.sourcedId): c for c in made}  # a key changed twice counts once, as it is now
    upserted = Counter(k[0] for k, c in last.items() if c.op != "delete")
    deleted = Counter(k[0] for k, c in last.items() if c.op == "delete")
    assert upserted and deleted

    dry = run_backfill(rest_source(topics, sim, tmp_path / "dry"), names, conf=conf, dry_run=True)
    assert sizes() == before  # nothing published
    assert {n: c for n, c in dry.published.items() if c} == dict(upserted)
    assert {n: c for n, c in dry.deleted.items() if c} == dict(deleted)
    assert sum(dry.unchanged.values()) > 1000

    done = run_backfill(rest_source(topics, sim, tmp_path), names, conf=conf)
    assert (done.published, done.deleted, done.dry_run) == (dry.published, dry.deleted, False)
    after = sizes()
    assert sum(after.values()) - sum(before.values()) == sum(upserted.values()) + sum(deleted.values())
    for ent in ENTITIES:  # the topics hold exactly the SIS, the changed records as they are now
        got, want = table(topics, ent.name), active(sim, ent.name)
        assert set(got) == set(want), ent.name
    users = table(topics, "users")
    for (collection, sid), c in last.items():
        if collection == "users" and c.op != "delete":
            assert users[sid]["email"] == sim.store.get("users", sid)["email"]

    again = run_backfill(rest_source(topics, sim, tmp_path), names, conf=conf)
    assert sum(again.published.values()) == sum(again.deleted.values()) == 0 and sizes() == after

    every = run_backfill(rest_source(topics, sim, tmp_path), names, conf=conf, publish_all=True)
    assert every.published == {e.name: len(active(sim, e.name)) for e in ENTITIES}
