"""The roster agents on the real stack, fed by the SIS simulator through the REST source.

Every test checks the LMS state the provisioning commands add up to against the state computed
independently, without Kafka, from the simulator's ground truth and the same rules
(``streams.roster.plan``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.roles import DEFAULT_RULES, RuleSet
from tests.integration.roster_support import (
    Commands,
    RosterRig,
    Worker,
    commands,
    diff_summary,
    expected_state,
    roster_rig,
)
from tests.integration.sis_support import read_topic, rest_source, start_simulator

RULES = RuleSet.load(DEFAULT_RULES)


@pytest.fixture
def rig(kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str, tmp_path: Path) -> Iterator[RosterRig]:
    yield roster_rig(kernel, make_catalog, uid, tmp_path)


def settle(rig: RosterRig, want: dict, workers: list[Worker], timeout: float = 180.0) -> Commands:
    """Wait until the commands add up to ``want`` and stay so; fail with a diff otherwise."""
    deadline = time.monotonic() + timeout
    got = commands(rig)
    while got.state != want:
        for w in workers:
            assert w.alive(), f"worker {w.name} died:\n{w.tail()}"
        if time.monotonic() > deadline:
            raise AssertionError(diff_summary(want, got.state))
        time.sleep(1.0)
        got = commands(rig)
    return got


def test_a_district_becomes_exactly_the_commands_its_ground_truth_and_rules_call_for(
    rig: RosterRig, kernel: Kernel, tmp_path: Path
) -> None:
    sim = start_simulator(kernel.settings, kernel, users=600, seed=31)
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
        assert set(first) <= {"create_user", "upsert_account", "upsert_term", "upsert_course", "upsert_section",
                              "enroll", "grant_admin"}, first  # fmt: skip
        # every decision is audited: each enrollment of the ground truth has its decision
        decisions = [v for _, v, _ in read_topic(rig.sis, rig.names["roster.role_decisions.v1"])]
        subjects = {d["subject"] for d in decisions if d["kind"] == "enrollment"}
        assert set(sim.store.collections["enrollments"]) <= subjects
        assert {d["ruleSetVersion"] for d in decisions} == {RULES.version}
        outcomes = Counter(d["outcome"] for d in decisions)
        assert outcomes["mapped"] > 0 and outcomes["skipped"] > 0
    finally:
        for w in workers:
            w.stop()
        sim.stop()
