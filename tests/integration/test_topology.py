"""Topology as code against the real broker and registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.errors import PlanRefused
from streams.topology import apply, plan

USERS = {"value_schema": "sis/users.v1.avsc", "cleanup_policy": "compact"}


def _config(admin: AdminClient, topic: str) -> dict[str, str]:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return {k: v.value for k, v in admin.describe_configs([res])[res].result(30).items()}


def _partitions(admin: AdminClient, topic: str) -> int:
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def test_project_topology_is_applied_and_plan_is_then_empty(kernel: Kernel) -> None:
    p = plan(kernel.catalog, kernel.admin, kernel.registry)
    assert p.empty, p.render()
    md = kernel.admin.list_topics(timeout=10)
    for spec in kernel.catalog:
        assert spec.name in md.topics
        assert kernel.registry.lookup(spec.subject, kernel.catalog.contract(spec).schema)


def test_apply_twice_changes_nothing_the_second_time(
    kernel: Kernel, make_catalog: Callable[..., Catalog]
) -> None:
    cat = make_catalog(
        [
            {"name": "t{uid}.users.v1", **USERS, "partitions": 4, "config": {"min.compaction.lag.ms": 1000}},
            {
                "name": "t{uid}.events.v1",
                "value_schema": "lms/activity.v1.avsc",
                "cleanup_policy": "delete",
                "retention_ms": 86_400_000,
            },
        ]
    )
    first = plan(cat, kernel.admin, kernel.registry)
    kinds = sorted(a.kind for a in first.actions)
    assert kinds.count("create_topic") == 2 and kinds.count("register_schema") == 2
    result = apply(cat, kernel.admin, kernel.registry, the_plan=first)
    assert result.ok and len(result.applied) == len(first.actions)

    second = plan(cat, kernel.admin, kernel.registry)
    assert second.empty, second.render()
    assert apply(cat, kernel.admin, kernel.registry).applied == []

    users = cat.topic(next(t.name for t in cat if t.name.endswith(".users.v1")))
    assert _partitions(kernel.admin, users.name) == 4
    conf = _config(kernel.admin, users.name)
    assert conf["cleanup.policy"] == "compact"
    assert conf["min.compaction.lag.ms"] == "1000"
    assert kernel.registry.compatibility(users.subject) == "BACKWARD"


def test_config_drift_is_corrected_and_partitions_can_grow(
    kernel: Kernel, make_catalog: Callable[..., Catalog]
) -> None:
    cat = make_catalog([{"name": "t{uid}.users.v1", **USERS, "partitions": 2}])
    apply(cat, kernel.admin, kernel.registry)
    name = next(iter(cat)).name

    # someone changes the cluster by hand
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    kernel.admin.incremental_alter_configs([res])[res].result(30)

    drift = plan(cat, kernel.admin, kernel.registry)
    assert [a.kind for a in drift.actions] == ["alter_config"]
    assert "cleanup.policy: delete -> compact" in drift.actions[0].detail
    apply(cat, kernel.admin, kernel.registry)
    assert _config(kernel.admin, name)["cleanup.policy"] == "compact"

    grown = make_catalog([{"name": "t{uid}.users.v1", **USERS, "partitions": 5}], name="grown.yaml")
    p = plan(grown, kernel.admin, kernel.registry)
    assert [(a.kind, a.detail) for a in p.actions] == [("add_partitions", "2 -> 5")]
    apply(grown, kernel.admin, kernel.registry)
    assert _partitions(kernel.admin, name) == 5
    assert plan(grown, kernel.admin, kernel.registry).empty


def test_partition_decrease_is_refused_and_nothing_is_applied(
    kernel: Kernel, make_catalog: Callable[..., Catalog]
) -> None:
    cat = make_catalog([{"name": "t{uid}.users.v1", **USERS, "partitions": 4}])
    apply(cat, kernel.admin, kernel.registry)
    name = next(iter(cat)).name
    shrunk = make_catalog(
        [
            {"name": "t{uid}.users.v1", **USERS, "partitions": 2},
            {"name": "t{uid}.other.v1", **USERS},  # would be created, if anything were applied
        ],
        name="shrunk.yaml",
    )
    p = plan(shrunk, kernel.admin, kernel.registry)
    assert p.refusals and "decrease" in p.refusals[0]
    with pytest.raises(PlanRefused, match="nothing was applied"):
        apply(shrunk, kernel.admin, kernel.registry)
    md = kernel.admin.list_topics(timeout=10)
    assert _partitions(kernel.admin, name) == 4
    assert name.replace(".users.", ".other.") not in md.topics


def test_incompatible_schema_is_refused_for_its_subject_only(
    kernel: Kernel, make_catalog: Callable[..., Catalog], settings, tmp_path: Path
) -> None:
    v1 = make_catalog(
        [
            {"name": "t{uid}.orgs.v1", "value_schema": "sis/orgs.v1.avsc", "cleanup_policy": "compact"},
            {"name": "t{uid}.users.v1", **USERS},
        ]
    )
    apply(v1, kernel.admin, kernel.registry)

    # a new required field without a default: old records could not be read
    orgs = json.loads((settings.schemas_dir / "sis" / "orgs.v1.avsc").read_text())
    orgs["fields"].append({"name": "mandatoryNewField", "type": "string"})
    # a compatible change to the other subject: a new optional field
    users = json.loads((settings.schemas_dir / "sis" / "users.v1.avsc").read_text())
    users["fields"].append({"name": "nickname", "type": ["null", "string"], "default": None})
    v2 = make_catalog(
        [
            {"name": "t{uid}.orgs.v1", "value_schema": "sis/orgs2.v1.avsc", "cleanup_policy": "compact"},
            {"name": "t{uid}.users.v1", "value_schema": "sis/users2.v1.avsc", "cleanup_policy": "compact"},
        ],
        extra_schemas={"sis/orgs2.v1.avsc": json.dumps(orgs), "sis/users2.v1.avsc": json.dumps(users)},
        name="v2.yaml",
    )
    result = apply(v2, kernel.admin, kernel.registry)
    orgs_subject = next(t.subject for t in v2 if ".orgs." in t.name)
    users_subject = next(t.subject for t in v2 if ".users." in t.name)
    assert not result.ok, [a.line() for a in result.applied]
    assert list(result.failed) == [orgs_subject]
    assert "mandatoryNewField" in result.failed[orgs_subject]
    assert kernel.registry.latest_version(orgs_subject) == 1
    assert kernel.registry.latest_version(users_subject) == 2  # the other subject moved on

    # the command line says so and exits non-zero
    env = {"SISLMS_TOPOLOGY_FILE": str(v2.path), "SISLMS_SCHEMAS_DIR": str(v2.schemas.origin)}
    r = _cli("topology", "apply", env=env)
    assert r.returncode == 1
    assert f"FAILED {orgs_subject}" in r.stderr and "mandatoryNewField" in r.stderr


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sislms.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_cli_plan_and_apply_exit_codes(kernel: Kernel, tmp_path: Path) -> None:
    r = _cli("topology", "plan", "--json", env={})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["empty"] is True

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ntopics:\n  - name: sis.users.v1\n    partitions: many\n")
    r = _cli("topology", "apply", env={"SISLMS_TOPOLOGY_FILE": str(bad)})
    assert r.returncode == 1
    assert f"{bad}:4: topics[sis.users.v1].partitions" in r.stderr
    assert "Traceback" not in r.stderr

    r = _cli("topology", "plan", env={"SISLMS_SCHEMA_REGISTRY_URL": "http://127.0.0.1:9/apis/ccompat/v7"})
    assert r.returncode == 1
    assert "schema registry at http://127.0.0.1:9/apis/ccompat/v7 did not answer" in r.stderr
    assert "Traceback" not in r.stderr
