"""The roster agents on the real stack: a full district's initial load, then change latency.

For each district size: serve the district with the SIS simulator, snapshot its rostering
collections into fresh ``bench.*`` copies of the ``sis.*`` topics (as ``bench.sis_snapshot``
does), then start one roster worker (``sislms worker``, a process of its own; ``--roster-workers`` for
more) on them and time:

* **initial load**: from the worker being ready until its group has committed every input record
  (``sis.*`` and the internal re-keyed topics): provisioning commands per second, agent records
  per second;
* **change latency**: user email changes written to ``sis.users`` at a steady rate once the load
  is done; latency is the provisioning command's broker timestamp minus the ``sis.users`` record's
  (both CreateTime, same machine clock): p50 and p99;
* **consume + decode**: the same ``sis.*`` records read back and decoded, the floor any consumer
  of these topics starts from (in the same run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from confluent_kafka import Consumer, TopicPartition

from bench.measure import Measurement, Run
from bench.sis_snapshot import _delete, _serve, rest_source
from connectors.oneroster.models import ENTITIES
from sislms.wiring import Kernel
from streams.catalog import load_catalog
from streams.compacted import group_caught_up, read_to_end
from streams.kafka import client_config
from streams.roles.engine import RuleSet
from streams.roster.app import RosterTopics
from streams.roster.plan import attrs_digest, fold_digests, plan_district, planned_state
from streams.serde import Serdes, decode_key
from streams.topology import apply

__all__ = ["run_roster"]

log = logging.getLogger("bench.roster")

ROSTERING = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments")
INTERNAL = (
    "roster.enrollments_by_user.v1",
    "roster.enrollments_by_class.v1",
    "roster.class_facts_by_user.v1",
    "roster.reapply.v1",
)
OUTPUTS = ("lms.provisioning.v1", "roster.role_decisions.v1", "roster.rule_sets.v1")
AS_OF = "2026-11-28"


def _topics(kernel: Kernel, tag: str, workdir: Path) -> tuple[Any, dict[str, str], dict[str, str], Path]:
    specs: list[dict[str, Any]] = []
    sis: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for ent in ENTITIES:
        if ent.name not in ROSTERING:
            continue
        name = f"bench.{ent.topic.split('.')[1]}_{tag}.v1"
        sis[ent.name], renamed[ent.topic] = name, name
        specs.append(
            {
                "name": name,
                "cleanup_policy": "compact",
                "value_schema": kernel.catalog.topic(ent.topic).value_schema,
            }
        )
    for topic in (*INTERNAL, *OUTPUTS):
        name = f"bench.{topic.split('.')[1]}_{tag}.v1"
        renamed[topic] = name
        specs.append(
            {
                "name": name,
                "cleanup_policy": "delete",
                "value_schema": kernel.catalog.topic(topic).value_schema,
            }
        )
    for spec in specs:
        spec.update(description="bench", owner="bench")
    dlq = {
        "description": "bench",
        "owner": "bench",
        "cleanup_policy": "delete",
        "partitions": 1,
        "value_schema": "dlq/dead_letter.v1.avsc",
    }
    specs += [{"name": f"dlq.bench_{tag}.v1", **dlq}, {"name": "dlq.roster.v1", **dlq}]
    path = workdir / f"topology-{tag}.yaml"
    doc = {"version": 1, "defaults": {"partitions": 6, "replication_factor": 1}, "topics": specs}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    catalog = load_catalog(path, kernel.settings.schemas_dir)
    result = apply(catalog, kernel.admin, kernel.registry, 1)
    if not result.ok:
        raise SystemExit(f"bench topology failed: {result.failed}")
    map_file = workdir / "topic-map.json"
    map_file.write_text(json.dumps(renamed))
    return catalog, sis, renamed, map_file


def _count(conf: dict[str, Any], topic: str) -> int:
    consumer = Consumer({**conf, "group.id": "bench-count"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def _latency(
    kernel: Kernel, catalog: Any, sis: dict[str, str], renamed: dict[str, str], changes: int, rate: float
) -> tuple[list[float], float]:
    """Write ``changes`` email changes at ``rate``/s; return each one's record-to-command latency (ms)."""
    conf = client_config(kernel.settings, kernel.endpoints.kafka_bootstrap)
    serdes = Serdes(kernel.registry, catalog, validate=False)
    users_topic = sis["users"]
    students: list[dict[str, Any]] = []
    for m in read_to_end(conf, users_topic, timeout_s=3600):
        if m.value() is not None and len(students) < changes:
            v = serdes[users_topic].decode(m.value())
            if v and v["status"] == "active" and v["enabledUser"]:
                students.append(v)
    sent: dict[str, int] = {}
    producer = kernel.producer()

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            sent[decode_key(msg.key()) or ""] = msg.timestamp()[1]

    started = time.perf_counter()
    for i, user in enumerate(students):
        now = datetime.now(UTC)
        user = {
            **user,
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.invalid",
            "dateLastModified": now,
            "meta": {**user["meta"], "sourceChangedAt": now, "ingestedAt": now},
        }
        producer.produce(
            users_topic,
            key=user["sourcedId"].encode(),
            value=serdes[users_topic].encode(user),
            on_delivery=delivered,
        )
        producer.poll(0)
        pause = started + (i + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    producer.flush(60)
    span = time.perf_counter() - started
    out = renamed["lms.provisioning.v1"]
    consumer = Consumer(
        {**conf, "group.id": f"bench-latency-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([out])
    got: dict[str, int] = {}
    deadline = time.monotonic() + 600
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            for m in consumer.consume(1000, timeout=1.0):
                if m.error() or m.value() is None:
                    continue
                v = serdes[out].decode(m.value())
                if v and v["action"] == "update_user" and v["targetSisId"] in sent:
                    got[v["targetSisId"]] = m.timestamp()[1]
    finally:
        consumer.close()
    if len(got) < len(sent):
        log.warning("latency: %d of %d changes came out", len(got), len(sent))
    return [float(got[k] - sent[k]) for k in got], span


def _latest(conf: dict[str, Any], serdes: Serdes, topic: str) -> dict[str, Any]:
    """A compacted topic's live records: key -> decoded value (the last one; tombstones remove)."""
    out: dict[str, Any] = {}
    for m in read_to_end(conf, topic, timeout_s=3600):
        key = decode_key(m.key())
        if key is None:
            continue
        value = serdes[topic].decode(m.value())
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _end_state_check(
    conf: dict[str, Any], serdes: Serdes, sis: dict[str, str], provisioning: str, rules: Path
) -> str:
    """The provisioning topic folded to its end state, compared with the state computed at once
    from the same ``sis.*`` records without Kafka or agents (``streams.roster.plan``)."""
    g = {name: _latest(conf, serdes, topic) for name, topic in sis.items()}
    plan = plan_district(
        orgs=g["orgs"], sessions=g["academicSessions"], courses=g["courses"], classes=g["classes"],
        users=g["users"], enrollments=g["enrollments"], rules=RuleSet.load(rules),
        today=date.fromisoformat(AS_OF),
    )  # fmt: skip
    g.clear()  # the records, then the plan, are let go as soon as they are used (250,000 users)
    want = {t: attrs_digest(a) for t, a in planned_state(plan).items()}
    plan.clear()
    values = (serdes[provisioning].decode(m.value()) for m in read_to_end(conf, provisioning, timeout_s=3600))
    folded = fold_digests(v for v in values if v is not None)
    got = folded.state
    missing_ = [k for k in want if k not in got]
    extra, different = (
        sum(1 for k in got if k not in want),
        sum(1 for k in want if k in got and want[k] != got[k]),
    )
    missing = len(missing_)
    verdict = "equal" if missing == extra == different == 0 else "NOT EQUAL"
    for k in missing_[:5]:
        log.warning("end state: missing %s %s", *k)  # ids only
    return (
        f"end state {verdict} to the plan ({len(want):,} targets): missing {missing}, extra {extra}, "
        f"different {different}; repeated commands {folded.duplicates}"
    )


#: A load whose workers process nothing for this long, without the group at the end, stalled.
STALL_S = 180
#: Before their first record, workers may be restoring their tables (a resumed run): that long.
RECOVERY_S = 1800


class _Stalled(SystemExit):
    """The load stopped short of the end (kept with --roster-keep for a post-mortem)."""


def _check_alive(procs: list[subprocess.Popen[bytes]], work: Path) -> None:
    for i, w in enumerate(procs):
        if w.poll() is not None:
            raise SystemExit(f"worker {i} exited with {w.returncode}: see {work / f'worker-{i}.log'}")


def _processed(ports: list[int]) -> int:
    """Input records the workers have processed so far (their /metrics), for progress lines."""
    total = 0
    for port in ports:
        with contextlib.suppress(httpx.HTTPError):
            for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
                if line.startswith("sislms_roster_records_total{"):
                    total += int(float(line.rsplit(" ", 1)[1]))
    return total


@dataclass
class _Progress:
    """Where a roster run is, saved in its work dir every minute (``progress.json``), so that a
    load stopped by a session's end can be resumed (``--roster-resume DIR``)."""

    work: Path
    tag: str
    users: int
    elapsed_s: float = 0.0  # load time before this process took the run over
    seen: int = 0
    resumed: int = 0

    def save(self) -> None:
        data = {
            "tag": self.tag,
            "users": self.users,
            "elapsed_s": round(self.elapsed_s, 1),
            "seen": self.seen,
        }
        (self.work / "progress.json").write_text(json.dumps({**data, "resumed": self.resumed}))

    @classmethod
    def load(cls, work: Path, users: int | None, elapsed_s: float | None) -> _Progress:
        saved = json.loads((work / "progress.json").read_text()) if (work / "progress.json").exists() else {}
        [topology] = sorted(work.glob("topology-*.yaml"))
        tag = saved.get("tag") or topology.stem.removeprefix("topology-")
        users = saved.get("users") or users  # the run's own size wins over the default sizes
        elapsed_s = elapsed_s if elapsed_s is not None else saved.get("elapsed_s")
        if users is None or elapsed_s is None:
            raise SystemExit(f"{work}: no progress.json; give --roster-users and --roster-resumed-after")
        return cls(
            work,
            tag,
            int(users),
            float(elapsed_s),
            int(saved.get("seen", 0)),
            int(saved.get("resumed", 0)) + 1,
        )


def run_roster(
    kernel: Kernel,
    sizes: list[int],
    changes: int = 500,
    rate: float = 50.0,
    workers: int = 1,
    keep: str | None = None,
    resume: str | None = None,
    resumed_after: float | None = None,
) -> list[Measurement]:
    """One roster run per size; with ``resume``, the run whose work dir that is, taken up where
    its load stopped (the load time adds what it had before)."""
    out: list[Measurement] = []
    if resume is not None:
        progress = _Progress.load(Path(resume), sizes[0] if sizes else None, resumed_after)
        out += _load_and_measure(kernel, progress, None, changes, rate, workers, keep)
        return out
    for users in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            proc, url, counts = _serve(users, work)
            progress = _Progress(work, uuid.uuid4().hex[:8], users)
            try:
                catalog, sis, _, _ = _topics(kernel, progress.tag, work)
                source = rest_source(
                    kernel, url, catalog, sis, work, f"bench_{progress.tag}", entities=ROSTERING
                )
                t = time.perf_counter()
                report = source.sync_once()
                log.info(
                    "snapshot of %d users: %d records in %.0f s (work dir %s)",
                    users, report.total("upserts"), time.perf_counter() - t, work,
                )  # fmt: skip
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            progress.save()
            sis_records = sum(counts.get(e, 0) for e in ROSTERING)
            out += _load_and_measure(kernel, progress, sis_records, changes, rate, workers, keep)
    return out


def _load_and_measure(
    kernel: Kernel,
    progress: _Progress,
    sis_records: int | None,
    changes: int,
    rate: float,
    workers: int,
    keep: str | None,
) -> list[Measurement]:
    out: list[Measurement] = []
    conf = client_config(kernel.settings, kernel.endpoints.kafka_bootstrap)
    work, tag, users = progress.work, progress.tag, progress.users
    catalog = load_catalog(work / f"topology-{tag}.yaml", kernel.settings.schemas_dir)
    map_file = work / "topic-map.json"
    renamed: dict[str, str] = json.loads(map_file.read_text())
    sis = {ent.name: renamed[ent.topic] for ent in ENTITIES if ent.name in ROSTERING}
    if sis_records is None:
        sis_records = sum(_count(conf, topic) for topic in sis.values())
    serdes = Serdes(kernel.registry, catalog, validate=False)
    decoded, t = 0, time.perf_counter()
    for topic in sis.values():
        serde = serdes[topic]
        for m in read_to_end(conf, topic, timeout_s=3600):
            serde.decode(m.value())
            decoded += 1
    dec_s = time.perf_counter() - t
    group = f"bench-roster-{tag}"
    procs: list[subprocess.Popen[bytes]] = []
    ports = [19400 + int(tag[:3], 16) % 500 + i for i in range(workers)]
    try:
        procs = _start_workers(work, tag, group, ports, map_file, verbose=keep is not None)
        records, load_s = _wait_for_load(
            conf, group, list(RosterTopics.renamed(renamed).inputs()), procs, ports, progress
        )
        commands = _count(conf, renamed["lms.provisioning.v1"])
        log.info("initial load: %d commands from %d agent records in %.0f s", commands, records, load_s)
        check = _end_state_check(
            conf, serdes, sis, renamed["lms.provisioning.v1"], kernel.settings.roles_file
        )
        log.info("initial load: %s", check)
        lat, span = _latency(kernel, catalog, sis, renamed, changes, rate)
    finally:
        for w in procs:
            w.terminate()
        for w in procs:
            with contextlib.suppress(Exception):
                w.wait(60)
        if keep:
            kept = Path(keep) / tag
            shutil.copytree(work, kept, ignore=shutil.ignore_patterns("*.sqlite*"), dirs_exist_ok=True)
            log.info("kept the worker logs and state in %s and the topics (tag %s)", kept, tag)
        else:
            _delete(kernel, [t for t in renamed.values() if t.startswith("bench.")] + [f"dlq.bench_{tag}.v1"])
    if progress.resumed:
        check += f"; resumed {progress.resumed} time(s), load time summed over the runs"
    label = f"{users:,} users" + (f", {workers} workers" if workers > 1 else "")
    out.append(
        Measurement(
            "roster",
            f"initial load: provisioning commands ({label}, {sis_records:,} sis records)",
            "commands/s",
            commands,
            [Run(commands, load_s)],
            note=f"{load_s:.0f} s; {check}",
        )
    )
    out.append(
        Measurement(
            "roster",
            f"initial load: agent records, sis and internal ({label})",
            "records/s",
            records,
            [Run(records, load_s)],
        )
    )
    out.append(
        Measurement(
            "roster",
            f"consume + decode the sis topics ({label})",
            "records/s",
            decoded,
            [Run(decoded, dec_s)],
        )
    )
    if lat:
        q = statistics.quantiles(lat, n=100)
        p50, p99 = statistics.median(lat), q[98]
        note = f"p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(lat)} changes at {rate:.0f}/s"
        out.append(
            Measurement(
                "roster",
                f"change latency: sis.users record -> update_user ({label})",
                "changes/s",
                len(lat),
                [Run(len(lat), span)],
                note=note,
            )
        )
    return out


def _start_workers(
    work: Path, tag: str, group: str, ports: list[int], map_file: Path, *, verbose: bool
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "SISLMS_TOPOLOGY_FILE": str(work / f"topology-{tag}.yaml"),
        "SISLMS_ROSTER_APP_ID": group,
        "SISLMS_STATE_DIR": str(work / "state"),
        "SISLMS_ROSTER_AS_OF": AS_OF,
        "SISLMS_LOG_LEVEL": "INFO" if verbose else "WARNING",
    }
    procs = []
    for i, p in enumerate(ports):
        log_file = (work / f"worker-{i}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "sislms.cli", "worker", "--name", f"w{i}"),
                    *("--port", str(p), "--topic-map", str(map_file)),
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        )
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{ports[0]}/healthz", timeout=2).json()["assigned_partitions"]:
                return procs
        _check_alive(procs, work)
        time.sleep(0.5)


def _wait_for_load(
    conf: dict[str, Any],
    group: str,
    topics: list[str],
    procs: list[subprocess.Popen[bytes]],
    ports: list[int],
    progress: _Progress,
) -> tuple[int, float]:
    """Until the group has committed every input record: (records, load seconds, with the time
    of the runs before a resume). Logs progress every minute and saves it for a resume."""
    t = time.perf_counter()
    before = progress.elapsed_s
    shown = t
    last_seen, moved = -1, t
    while True:
        done, records = group_caught_up(conf, group, topics)
        if done:
            return records, before + time.perf_counter() - t
        _check_alive(procs, progress.work)
        if time.perf_counter() - shown >= 60:
            shown = time.perf_counter()
            seen = _processed(ports)
            if seen != last_seen:
                last_seen, moved = seen, shown
            elif shown - moved >= (STALL_S if seen else RECOVERY_S):
                raise _Stalled(
                    f"initial load stalled: no record processed for {shown - moved:.0f} s and "
                    f"the group {group} has not committed to the end"
                )
            progress.elapsed_s, progress.seen = before + shown - t, seen
            progress.save()
            log.info(
                "initial load: %d of %d agent records processed by these workers (%.0f/s), %.0f s "
                "(%.0f s with the runs before)",
                seen, records, seen / (shown - t), shown - t, progress.elapsed_s,
            )  # fmt: skip
        time.sleep(2)
