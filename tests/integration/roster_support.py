"""Helpers for the roster integration tests: private sis and roster topics in one topology file,
roster workers as real processes, the expected LMS state from the simulator's ground truth, and
the state the provisioning commands add up to."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from connectors.oneroster.models import ENTITIES, to_record
from simulators.sis.server import SisSimulator
from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.compacted import group_caught_up
from streams.kafka import client_config
from streams.roles.engine import RuleSet
from streams.roster.app import RosterTopics
from streams.roster.plan import Folded, fold_commands, plan_district, planned_state
from streams.topology import apply
from tests.integration.sis_support import SisTopics, read_topic

#: Roles and enrollments are judged at this date in every roster test (the generator's school
#: year runs 2026-08-17 to 2027-06-11).
AS_OF = date(2026, 11, 28)
ROSTER_OUT = (
    "roster.enrollments_by_user.v1",
    "roster.enrollments_by_class.v1",
    "roster.class_facts_by_user.v1",
    "lms.provisioning.v1",
    "roster.role_decisions.v1",
    "roster.reapply.v1",
    "roster.rule_sets.v1",
)


@dataclass
class RosterRig:
    """Private copies of every topic the roster reads and writes, and where workers keep state."""

    sis: SisTopics
    names: dict[str, str]  # catalog name -> private name
    app_id: str
    state_dir: Path
    map_file: Path
    logs: list[Path] = field(default_factory=list)

    @property
    def topics(self) -> RosterTopics:
        return RosterTopics.renamed(self.names)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SISLMS_TOPOLOGY_FILE": str(self.sis.catalog.path),
            "SISLMS_ROSTER_APP_ID": self.app_id,
            "SISLMS_STATE_DIR": str(self.state_dir),
            "SISLMS_ROSTER_AS_OF": AS_OF.isoformat(),
            "SISLMS_LOG_LEVEL": "INFO",
        }


def roster_rig(kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str, tmp_path: Path) -> RosterRig:
    specs: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    sis: dict[str, str] = {}
    for ent in ENTITIES:
        base = kernel.catalog.topic(ent.topic)
        name = f"{ent.topic[:-3]}_r{uid}.v1"
        names[ent.topic], sis[ent.name] = name, name
        specs.append({"name": name, "cleanup_policy": "compact", "value_schema": base.value_schema})
    for topic in ROSTER_OUT:
        base = kernel.catalog.topic(topic)
        name = f"{topic[:-3]}_r{uid}.v1"
        names[topic] = name
        specs.append({"name": name, "cleanup_policy": "delete", "value_schema": base.value_schema})
    stage = f"sis_ingest_r{uid}"
    dlq = {"value_schema": "dlq/dead_letter.v1.avsc", "partitions": 1}
    specs += [{"name": f"dlq.{stage}.v1", **dlq}, {"name": "dlq.roster.v1", **dlq}]
    catalog = make_catalog(specs, name="topology-roster.yaml")
    result = apply(catalog, kernel.admin, kernel.registry, 1)
    assert result.ok, result.failed
    private = Kernel(kernel.settings)
    private.__dict__["catalog"] = catalog
    map_file = tmp_path / "topic-map.json"
    map_file.write_text(json.dumps(names))
    return RosterRig(
        SisTopics(catalog, sis, stage, private), names, f"roster-test-{uid}", tmp_path / "state", map_file
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """``sislms worker`` as a child process, its output in a log file under the test's folder."""

    def __init__(self, rig: RosterRig, name: str, rules: Path | None = None) -> None:
        self.rig, self.name, self.port = rig, name, free_port()
        self.log = rig.state_dir.parent / f"{name}-{len(rig.logs)}.log"
        rig.logs.append(self.log)
        rig.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "sislms.cli", "worker", "--name", name, "--port", str(self.port),
            "--topic-map", str(rig.map_file), *(["--rules", str(rules)] if rules else []),
        ]  # fmt: skip
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, env=rig.env(), stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def change_meta() -> dict[str, Any]:
    """The change metadata (``ChangeMeta``) of records a test makes itself."""
    now = datetime.now(UTC)
    return {
        "source": "test",
        "sourceChangedAt": now,
        "ingestedAt": now,
        "traceId": "t",
        "sourceVersion": None,
    }


def ground_truth(sim: SisSimulator, kernel: Kernel) -> dict[str, dict[str, Any]]:
    """The simulator's live records of each rostering collection, converted to their contract."""
    meta = change_meta()
    out: dict[str, dict[str, Any]] = {}
    for ent in ENTITIES:
        if ent.name not in ("orgs", "academicSessions", "courses", "classes", "users", "enrollments"):
            continue
        schema = kernel.catalog.contract(ent.topic).schema
        out[ent.name] = {
            sid: to_record(ent.name, obj, schema, meta=meta)
            for sid, obj in sim.store.collections[ent.name].items()
            if obj.get("status") != "tobedeleted"
        }
    return out


def expected_state(
    sim: SisSimulator, kernel: Kernel, rules: RuleSet
) -> dict[tuple[str, str], dict[str, Any]]:
    """(targetType, targetSisId) -> attributes, computed without Kafka from the ground truth."""
    g = ground_truth(sim, kernel)
    targets = plan_district(
        orgs=g["orgs"], sessions=g["academicSessions"], courses=g["courses"], classes=g["classes"],
        users=g["users"], enrollments=g["enrollments"], rules=rules, today=AS_OF,
    )  # fmt: skip
    return planned_state(targets)


Commands = Folded


def commands(rig: RosterRig) -> Commands:
    records = read_topic(rig.sis, rig.names["lms.provisioning.v1"])
    for key, value, _ in records:
        assert value is not None and key == value["targetSisId"]
    return fold_commands(value for _, value, _ in records)


def diff_summary(want: dict[tuple[str, str], Any], got: dict[tuple[str, str], Any], n: int = 5) -> str:
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    changed = [k for k in want if k in got and want[k] != got[k]]
    lines = [f"missing {len(missing)}, extra {len(extra)}, different {len(changed)}"]
    lines += [f"  missing {k}" for k in missing[:n]] + [f"  extra {k}: {got[k]}" for k in extra[:n]]
    lines += [f"  different {k}: want {want[k]} got {got[k]}" for k in changed[:n]]
    return "\n".join(lines)


def caught_up(rig: RosterRig) -> bool:
    """Whether the workers' group has committed every record of every topic the agents read."""
    conf = client_config(rig.sis.kernel.settings, rig.sis.kernel.endpoints.kafka_bootstrap)
    return group_caught_up(conf, rig.app_id, list(rig.topics.inputs()))[0]


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
