"""Topology as code: ``plan`` diffs the catalog against the cluster and the registry,
``apply`` makes the difference true, idempotently.

A second ``apply`` changes nothing. A partition decrease is refused before anything is changed.
Config drift is corrected. Each subject is registered on its own: a schema the registry refuses
as incompatible fails that subject only, and ``apply`` reports it (the CLI exits non-zero).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from streams.catalog import Catalog, TopicSpec
from streams.errors import PlanRefused, SchemaIncompatible, ServiceUnavailable
from streams.registry import Registry

__all__ = ["Action", "ApplyResult", "Plan", "apply", "plan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    kind: str  # create_topic | add_partitions | alter_config | set_compatibility | register_schema
    target: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    def line(self) -> str:
        sign = {"create_topic": "+", "register_schema": "+"}.get(self.kind, "~")
        return f"{sign} {self.kind:<18} {self.target:<36} {self.detail}"


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.actions and not self.refusals

    def render(self) -> str:
        lines = [f"! refused: {r}" for r in self.refusals]
        lines += [a.line() for a in self.actions]
        lines += [f"  note: {n}" for n in self.notes]
        if self.empty:
            lines.insert(0, "no changes: the cluster and the registry match the topology")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "empty": self.empty,
            "actions": [{"kind": a.kind, "target": a.target, "detail": a.detail} for a in self.actions],
            "refusals": self.refusals,
            "notes": self.notes,
        }


@dataclass
class ApplyResult:
    applied: list[Action] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # target -> reason

    @property
    def ok(self) -> bool:
        return not self.failed


def _admin_call(what: str, fut: Any, timeout: float = 30) -> Any:
    try:
        return fut.result(timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnavailable(f"Kafka refused or failed to {what}: {exc}") from None


def plan(
    catalog: Catalog, admin: AdminClient, registry: Registry, replication_factor_cap: int | None = None
) -> Plan:
    """What ``apply`` would change; refusals for what it must not."""
    out = Plan()
    try:
        md = admin.list_topics(timeout=10)
    except KafkaException as exc:
        raise ServiceUnavailable(f"Kafka does not answer a metadata request: {exc}") from None
    brokers = len(md.brokers)
    cap = min(brokers, replication_factor_cap or brokers)
    existing = {name: t for name, t in md.topics.items()}

    to_describe: list[TopicSpec] = []
    for spec in catalog:
        want_parts = catalog.partitions(spec)
        rf = _rf(catalog, spec, cap, out)
        conf = _effective_config(catalog, spec, rf)
        have = existing.get(spec.name)
        if have is None or (have.error is not None and not have.partitions):
            out.actions.append(
                Action(
                    "create_topic",
                    spec.name,
                    f"partitions={want_parts} rf={rf} "
                    + " ".join(f"{k}={v}" for k, v in sorted(conf.items())),
                    {"partitions": want_parts, "rf": rf, "config": conf},
                )
            )
            continue
        n = len(have.partitions)
        if n > want_parts:
            out.refusals.append(
                f"{spec.name}: partitions {n} -> {want_parts} is a decrease; Kafka cannot remove "
                "partitions (it would break per-key ordering). Create a new major version instead."
            )
        elif n < want_parts:
            out.actions.append(
                Action("add_partitions", spec.name, f"{n} -> {want_parts}", {"partitions": want_parts})
            )
        have_rf = len(next(iter(have.partitions.values())).replicas) if have.partitions else rf
        if have_rf != rf:
            out.notes.append(
                f"{spec.name}: replication factor is {have_rf}, declared {rf}; "
                "change it with a partition reassignment (not done automatically)"
            )
        to_describe.append(spec)

    if to_describe:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in to_describe]
        futures = admin.describe_configs(resources)
        for spec, res in zip(to_describe, resources, strict=True):
            current = _admin_call(f"describe {spec.name}", futures[res])
            rf = _rf(catalog, spec, cap, None)
            want = _effective_config(catalog, spec, rf)
            drift = {k: v for k, v in want.items() if k not in current or str(current[k].value) != v}
            if drift:
                detail = ", ".join(
                    f"{k}: {current[k].value if k in current else '?'} -> {v}"
                    for k, v in sorted(drift.items())
                )
                out.actions.append(Action("alter_config", spec.name, detail, {"config": drift}))

    for spec in catalog:
        _plan_schema(catalog, spec, registry, out)
    return out


def _rf(catalog: Catalog, spec: TopicSpec, cap: int, out: Plan | None) -> int:
    declared = catalog.replication_factor(spec)
    if declared > cap:
        if out is not None and not any("capped" in n for n in out.notes):
            out.notes.append(
                f"replication factor capped to {cap} (the cluster has {cap} broker(s) or "
                "SISLMS_REPLICATION_FACTOR_CAP says so); min.insync.replicas capped with it"
            )
        return cap
    return declared


def _effective_config(catalog: Catalog, spec: TopicSpec, rf: int) -> dict[str, str]:
    conf = catalog.config(spec)
    if "min.insync.replicas" in conf:
        conf["min.insync.replicas"] = str(min(int(conf["min.insync.replicas"]), rf))
    return conf


def _plan_schema(catalog: Catalog, spec: TopicSpec, registry: Registry, out: Plan) -> None:
    subject = spec.subject
    level = catalog.compatibility(spec)
    if registry.compatibility(subject) != level:
        out.actions.append(Action("set_compatibility", subject, level, {"level": level}))
    contract = catalog.contract(spec)
    if registry.lookup(subject, contract.schema) is None:
        latest = registry.latest_version(subject)
        detail = f"schemas/{spec.value_schema} as version {(latest or 0) + 1}"
        out.actions.append(Action("register_schema", subject, detail, {"topic": spec.name}))


def _await_config(admin: AdminClient, topic: str, wanted: dict[str, str], timeout_s: float = 15.0) -> None:
    """Wait until the broker describes the topic with ``wanted``: a changed configuration is
    accepted before the broker serves it, and a ``plan`` right after would see the old one."""
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            now = {k: v.value for k, v in admin.describe_configs([res])[res].result(timeout=10).items()}
        except KafkaException:
            now = {}
        if all(now.get(k) == str(v) for k, v in wanted.items()):
            return
        if time.monotonic() > deadline:
            log.warning(
                "topology apply: %s does not show its new configuration after %.0f s", topic, timeout_s
            )
            return
        time.sleep(0.2)


def apply(
    catalog: Catalog,
    admin: AdminClient,
    registry: Registry,
    replication_factor_cap: int | None = None,
    the_plan: Plan | None = None,
) -> ApplyResult:
    """Make the plan true. Refusals stop everything before any change."""
    p = the_plan or plan(catalog, admin, registry, replication_factor_cap)
    if p.refusals:
        raise PlanRefused("nothing was applied:\n" + "\n".join(f"  - {r}" for r in p.refusals))
    result = ApplyResult()

    creates = [a for a in p.actions if a.kind == "create_topic"]
    if creates:
        new = [
            NewTopic(
                a.target,
                num_partitions=a.data["partitions"],
                replication_factor=a.data["rf"],
                config=a.data["config"],
            )
            for a in creates
        ]
        futures = admin.create_topics(new, operation_timeout=30)
        for a in creates:
            try:
                futures[a.target].result(timeout=60)
                result.applied.append(a)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):  # a concurrent apply made it: fine
                    result.applied.append(a)
                else:
                    result.failed[a.target] = str(exc)

    grows = [a for a in p.actions if a.kind == "add_partitions"]
    if grows:
        futures = admin.create_partitions([NewPartitions(a.target, a.data["partitions"]) for a in grows])
        for a in grows:
            try:
                futures[a.target].result(timeout=60)
                result.applied.append(a)
            except KafkaException as exc:
                result.failed[a.target] = str(exc)

    for a in (a for a in p.actions if a.kind == "alter_config"):
        res = ConfigResource(
            ConfigResource.Type.TOPIC,
            a.target,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in a.data["config"].items()
            ],
        )
        try:
            admin.incremental_alter_configs([res])[res].result(timeout=60)
            result.applied.append(a)
        except KafkaException as exc:
            result.failed[a.target] = str(exc)
        else:
            _await_config(admin, a.target, a.data["config"])

    # Compatibility first, so the registry checks the new version against the declared level.
    for a in (a for a in p.actions if a.kind == "set_compatibility"):
        registry.set_compatibility(a.target, a.data["level"])
        result.applied.append(a)
    for a in (a for a in p.actions if a.kind == "register_schema"):
        spec = catalog.topic(a.data["topic"])
        try:
            registry.register(spec.subject, catalog.contract(spec).schema)
            result.applied.append(a)
        except SchemaIncompatible as exc:
            result.failed[a.target] = exc.detail
            log.error("refused by the registry: %s", exc)
    log.info("topology apply: %d change(s) applied, %d failed", len(result.applied), len(result.failed))
    return result
