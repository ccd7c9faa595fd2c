"""`sislms roles reapply` on the real stack: a rule change re-applied to a running district emits
exactly the differences between the two rule sets, checked against the states computed without
Kafka from the SIS simulator's ground truth under each rule set (``streams.roster.plan``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.roles import DEFAULT_RULES, RuleSet
from streams.roster.reapply import roster_members
from tests.integration.roster_support import (
    RosterRig,
    Worker,
    commands,
    diff_summary,
    expected_state,
    roster_rig,
    settle,
)
from tests.integration.sis_support import read_topic, rest_source, start_simulator, wait_for

RULES_A = RuleSet.load(DEFAULT_RULES)


@pytest.fixture
def rig(
    kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str, tmp_path: Path
) -> Iterator[RosterRig]:
    yield roster_rig(kernel, make_catalog, uid, tmp_path)


def rules_b(tmp_path: Path) -> Path:
    """The reference rules changed: teachers who are not a class's primary teacher assist as TAs,
    aides design, counselors lose their read-only account role."""
    text = DEFAULT_RULES.read_text()
    co_teachers = (
        "  - id: co-teachers\n    applies_to: enrollment\n    priority: 60\n"
        "    when: {role: teacher, primary: false}\n    then: {course_role: ta}\n\n  - id: aides\n"
    )
    for old, new in (
        ('version: "2026.11-1"', 'version: "2026.12-reapply-test"'),
        ("  - id: aides\n", co_teachers),
        ("then: {course_role: ta}\n\n  - id: proctors", "then: {course_role: designer}\n\n  - id: proctors"),
        (
            'then: {account_role: {role: "Counselor (read-only)", account: org}}',
            'then: {skip: "counselors get no LMS role in this district"}',
        ),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "rules-b.yaml"
    path.write_text(text)
    return path


def reapply(rig: RosterRig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sislms.cli", "roles", "reapply", "--topic-map", str(rig.map_file), *args],
        env=rig.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def differing(a: dict, b: dict) -> set[tuple[str, str]]:
    """The targets whose state differs between two planned states (new, gone or changed)."""
    return {t for t in a.keys() | b.keys() if a.get(t) != b.get(t)}


def test_a_rule_change_reapplied_emits_exactly_the_differences(
    rig: RosterRig, kernel: Kernel, tmp_path: Path
) -> None:
    sim = start_simulator(kernel.settings, kernel, users=300, seed=41)
    b_file = rules_b(tmp_path)
    rules_b_set = RuleSet.load(b_file)
    worker = Worker(rig, "w1")  # the reference rules (SISLMS_ROLES_FILE)
    try:
        rest_source(rig.sis, sim, tmp_path / "source").sync_once()
        want_a = expected_state(sim, kernel, RULES_A)
        want_b = expected_state(sim, kernel, rules_b_set)
        changed = differing(want_a, want_b)
        kinds = Counter(kind for kind, _ in changed)
        assert kinds["enrollment"] > 0 and kinds["account_admin"] > 0, kinds  # the test means something
        before = settle(rig, want_a, [worker])

        # the dry run, while the worker still runs the old rules: the plan, nothing published
        dry = reapply(rig, "--rules", str(b_file), "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert (plan["rules"], plan["previous"]) == (rules_b_set.version, RULES_A.version)
        assert sum(plan["commands"].values()) == len(changed)
        assert plan["commands"].get("revoke_admin") == kinds["account_admin"]
        assert "run other rules" in plan["refused"]
        assert [w["rules"] for w in plan["workers"]] == [RULES_A.version]
        assert read_topic(rig.sis, rig.names["roster.reapply.v1"]) == []

        # refused: the worker runs other rules; a rule file that does not validate
        refused = reapply(rig, "--rules", str(b_file))
        assert refused.returncode == 1 and "run other rules" in refused.stderr, refused.stderr
        bad = tmp_path / "bad.yaml"
        bad.write_text(b_file.read_text().replace("applies_to: enrollment", "applies_to: enrolment", 1))
        invalid = reapply(rig, "--rules", str(bad))
        assert invalid.returncode == 1 and f"{bad}:" in invalid.stderr and "applies_to" in invalid.stderr
        assert read_topic(rig.sis, rig.names["roster.reapply.v1"]) == []
        assert commands(rig).records == before.records

        # the new rules deployed: a restart alone decides nobody again
        worker.stop()
        worker = Worker(rig, "w1", rules=b_file)
        wait_for(
            lambda: [m.rules for m in roster_members(kernel.admin, rig.app_id)] == [rules_b_set.version],
            timeout=120,
            every=1.0,
        )
        run = reapply(rig, "--rules", str(b_file), "--json")
        assert run.returncode == 0, run.stderr
        done = json.loads(run.stdout)
        assert done["previous"] == RULES_A.version  # read back from the rule sets topic
        assert done["outcome"]["decided"] and done["outcome"]["deadLetters"] == 0
        assert done["outcome"]["commands"] == plan["commands"]
        after = settle(rig, want_b, [worker])
        new_ids = {t: after.ids[t] - before.ids.get(t, set()) for t in after.ids}
        touched = {t for t, ids in new_ids.items() if ids}
        assert touched == changed, diff_summary({t: 1 for t in changed}, {t: 1 for t in touched})
        assert all(len(new_ids[t]) == 1 for t in touched)
        assert after.records - before.records == len(changed)  # nothing re-sent
        decisions = [v for _, v, _ in read_topic(rig.sis, rig.names["roster.role_decisions.v1"])]
        assert any(d["ruleSetVersion"] == rules_b_set.version for d in decisions)

        # again: resumable and idempotent; the workers emit nothing more
        again = reapply(rig, "--rules", str(b_file), "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["outcome"]["commands"] == {}
        assert commands(rig).records == after.records
    finally:
        worker.stop()
        sim.stop()
