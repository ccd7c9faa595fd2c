"""The roster agents on the real stack, fed by the SIS simulator through the REST source.

Every test checks the LMS state the provisioning commands add up to against the state computed
independently, without Kafka, from the simulator's ground truth and the same rules
(``streams.roster.plan``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sislms.roster import explain
from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.roles import DEFAULT_RULES, RuleSet
from tests.integration.roster_support import (
    AS_OF,
    RosterRig,
    Worker,
    caught_up,
    commands,
    expected_state,
    roster_rig,
    settle,
)
from tests.integration.sis_support import read_topic, rest_source, start_simulator, wait_for

RULES = RuleSet.load(DEFAULT_RULES)


@pytest.fixture
def rig(
    kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str, tmp_path: Path
) -> Iterator[RosterRig]:
    yield roster_rig(kernel, make_catalog, uid, tmp_path)


def test_a_district_becomes_exactly_the_commands_its_ground_truth_and_rules_call_for(
    rig: RosterRig, kernel: Kernel, tmp_path: Path
) -> None:
    sim = start_simulator(kernel.settings, kernel, users=400, seed=31)
    workers: list[Worker] = []
    try:
        source = rest_source(rig.sis, sim, tmp_path / "source")
        report = source.sync_once()
        assert not report.dead_letters
        want = expected_state(sim, kernel, RULES)
        kinds = Counter(kind for kind, _ in want)
        assert {"user", "account", "term", "course", "section", "enrollment", "account_admin"} <= set(kinds)
        workers.append(Worker(rig, "w1"))
        got = settle(rig, want, workers)
        # a first load: one command per target, each a creation
        assert all(len(ids) == 1 for ids in got.ids.values())
        first = Counter(actions[0] for actions in got.actions.values())
        creations = {
            "create_user",
            "upsert_account",
            "upsert_term",
            "upsert_course",
            "upsert_section",
            "enroll",
        }
        assert set(first) <= creations | {"grant_admin"}, first
        # every decision is audited: each enrollment of the ground truth has its decision
        decisions = [v for _, v, _ in read_topic(rig.sis, rig.names["roster.role_decisions.v1"])]
        subjects = {d["subject"] for d in decisions if d["kind"] == "enrollment"}
        assert set(sim.store.collections["enrollments"]) <= subjects
        assert {d["ruleSetVersion"] for d in decisions} == {RULES.version}
        outcomes = Counter(d["outcome"] for d in decisions)
        assert outcomes["mapped"] > 0 and outcomes["skipped"] > 0
        # `sislms roles explain` decides again from the topics: a principal, and a student
        settings = kernel.settings.model_copy(
            update={"topology_file": rig.sis.catalog.path, "roster_as_of": AS_OF}
        )
        principal = next(u for u in sim.store.records("users") if u["roles"][0]["role"] == "principal")
        x = explain(settings, principal["sourcedId"], rules=RULES, topics=rig.topics)
        (role,) = [d for d in x.decisions if d.kind == "org_role"]
        assert (role.outcome, [(g.role, g.account) for g in role.grants]) == (
            "mapped",
            [("AccountAdmin", "org")],
        )
        assert "site-administrators" in [c.rule for c in role.checks if c.matched]
        student = next(
            u for u in sim.store.records("users") if u["roles"][0]["role"] == "student" and u["agents"]
        )
        x = explain(settings, student["sourcedId"], rules=RULES, topics=rig.topics)
        mine = {
            e
            for e, r in sim.store.collections["enrollments"].items()
            if r["user"]["sourcedId"] == student["sourcedId"]
        }
        assert {d.subject for d in x.decisions if d.kind == "enrollment"} == mine
        assert len([d for d in x.decisions if d.kind == "observer"]) == len(mine) * len(student["agents"])
    finally:
        for w in workers:
            w.stop()
        sim.stop()


def test_an_update_that_changes_nothing_the_lms_cares_about_emits_nothing(
    rig: RosterRig, kernel: Kernel, tmp_path: Path
) -> None:
    sim = start_simulator(kernel.settings, kernel, users=300, seed=32)
    worker = Worker(rig, "w1")
    try:
        source = rest_source(rig.sis, sim, tmp_path / "source")
        source.sync_once()
        before = settle(rig, expected_state(sim, kernel, RULES), [worker])
        store = sim.store
        student = next(
            u for u in store.records("users") if u["roles"][0]["role"] == "student" and u["agents"]
        )
        enrollment = next(
            e for e in store.records("enrollments") if e["user"]["sourcedId"] == student["sourcedId"]
        )
        klass = store.get("classes", enrollment["class"]["sourcedId"])
        assert klass is not None
        # what the LMS does not hold: a phone number, a room, a sourceVersion bump
        store.update("users", student["sourcedId"], {"phone": "555-0199"}, kind="test")
        store.update("classes", klass["sourcedId"], {"location": "Portable 7"}, kind="test")
        store.update("enrollments", enrollment["sourcedId"], {}, kind="test")
        source.sync_once()
        wait_for(lambda: caught_up(rig), timeout=120)
        assert commands(rig).records == before.records

        # what it does hold: an email, and an enrollment that ends (with its observers)
        store.update("users", student["sourcedId"], {"email": "changed@example.invalid"}, kind="test")
        store.delete("enrollments", enrollment["sourcedId"], kind="test")
        source.sync_once()
        after = settle(rig, expected_state(sim, kernel, RULES), [worker])
        new = {t: acts[len(before.actions.get(t, [])) :] for t, acts in after.actions.items()}
        new = {t: acts for t, acts in new.items() if acts}
        guardians = student["agents"]
        assert new == {
            ("user", student["sourcedId"]): ["update_user"],
            ("enrollment", enrollment["sourcedId"]): ["unenroll"],
            **{
                ("enrollment", f"{enrollment['sourcedId']}/{g['sourcedId']}"): ["unenroll"] for g in guardians
            },
        }
    finally:
        worker.stop()
        sim.stop()


def test_a_worker_killed_mid_stream_loses_nothing_and_duplicates_nothing(
    rig: RosterRig, kernel: Kernel, tmp_path: Path
) -> None:
    sim = start_simulator(kernel.settings, kernel, users=800, seed=33)
    workers: list[Worker] = []
    try:
        rest_source(rig.sis, sim, tmp_path / "source").sync_once()
        want = expected_state(sim, kernel, RULES)
        first = Worker(rig, "w1")
        workers.append(first)
        wait_for(lambda: commands(rig).records >= len(want) // 3, timeout=180, every=0.5)
        first.kill()  # SIGKILL: no flush, no commit, no goodbye
        progress = commands(rig)
        assert len(progress.state) < len(want), "the worker finished before it was killed: nothing tested"
        workers.append(Worker(rig, "w1"))  # the same worker again, with its RocksDB folder
        got = settle(rig, want, workers[1:])
        # nothing lost (the state above) and no command issued twice with different content:
        # a re-sent command carries the same commandId, which the sink deduplicates
        assert all(len(ids) == 1 for ids in got.ids.values()), [
            t for t, ids in got.ids.items() if len(ids) > 1
        ][:5]
        print(f"killed at {len(progress.state)}/{len(want)} targets; {got.duplicates} re-sent duplicates")
    finally:
        for w in workers:
            w.stop()
        sim.stop()


def test_two_workers_produce_what_one_does(rig: RosterRig, kernel: Kernel, tmp_path: Path) -> None:
    """Two workers, started together as the district arrives (the group forms meanwhile), share
    the partitions, and the commands add up to the same state as with one."""
    sim = start_simulator(kernel.settings, kernel, users=500, seed=34)
    workers = [Worker(rig, "w1"), Worker(rig, "w2")]
    try:
        rest_source(rig.sis, sim, tmp_path / "source").sync_once()
        got = settle(rig, expected_state(sim, kernel, RULES), workers)
        assert all(len(ids) == 1 for ids in got.ids.values())
        wait_for(lambda: all(ready(w) for w in workers), timeout=60)
        shares = [health(w)["assigned_partitions"] for w in workers]
        assert all(n > 0 for n in shares), f"a worker had no partitions: {shares}"
    finally:
        for w in workers:
            w.stop()
        sim.stop()


def test_a_worker_joining_a_busy_group_loses_nothing(rig: RosterRig, kernel: Kernel, tmp_path: Path) -> None:
    """A second worker joins while the first is half way through a district: the partitions it
    takes over go on from where the first left them, with nothing skipped.

    A joining worker used to drop the records fetched while its first recovery ran (Faust cleared
    the agents' queues at the end of it), and the commit moved past them (Roster._hold_flow)."""
    sim = start_simulator(kernel.settings, kernel, users=800, seed=35)
    workers: list[Worker] = []
    try:
        rest_source(rig.sis, sim, tmp_path / "source").sync_once()
        want = expected_state(sim, kernel, RULES)
        workers.append(Worker(rig, "w1"))
        wait_for(lambda: commands(rig).records >= len(want) // 4, timeout=180, every=0.2)
        workers.append(Worker(rig, "w2"))
        progress = commands(rig)
        assert len(progress.state) < len(want), "the first worker finished alone: nothing tested"
        got = settle(rig, want, workers)
        assert all(len(ids) == 1 for ids in got.ids.values())
        wait_for(lambda: all(ready(w) for w in workers), timeout=60)
        assert health(workers[1])["assigned_partitions"] > 0, "the second worker never took partitions"
    finally:
        for w in workers:
            w.stop()
        sim.stop()


def ready(worker: Worker) -> bool:
    """The worker answers and holds partitions."""
    try:
        return bool(health(worker)["assigned_partitions"])
    except Exception:
        return False


def health(worker: Worker) -> dict:
    import httpx

    return httpx.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=10).json()
