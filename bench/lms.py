"""LMS side benchmarks on the real stack: event ingest and grade passback.

Each process runs as it would in production, in its own OS process (``bench.lms_role``): the
event receiver, the events processor, the grade passback, and the SIS and LMS simulators.
Topics are made per run (``bench.*_<tag>.v1``) so runs never share state.

- **Raw limit**: a plain confluent-kafka consumer plus fastavro decode of the raw topic, in this
  process: the ceiling any consumer of that topic has on this machine.
- **Events processor**: one worker process reads the raw topic from its start (realistic Canvas
  Live Events from the LMS simulator's activity generator, 30 % redelivered) and writes the typed
  topics; events per second until its group has committed the whole topic.
- **Receiver**: events per second accepted over HTTP (each a POST, 32 in flight, acknowledged once
  on the broker); the client runs on the same machine.
- **Event latency**: events posted at a fixed rate while the processor runs; from the POST to the
  typed record's broker timestamp.
- **Provisioning sink**: the commands of a generated district's first load (computed from the
  district and the shipped rules, in dependency order) applied to the LMS simulator over its REST
  API, throttle off; commands per second until the sink's group has committed them all.
- **Grade passback latency**: a teacher grades through the LMS simulator's REST API at a fixed
  rate; from the call to the result readable in the SIS simulator's OneRoster gradebook API
  (polled every 20 ms), through Live Events, the receiver, the processor and the passback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from confluent_kafka import Consumer

from bench.measure import Measurement, Run
from connectors.oneroster.auth import ClientCredentials
from simulators.lms.activity import ActivityGenerator, SimClock
from simulators.lms.live_events import Asset, LiveEventBuilder
from simulators.lms.store import CanvasStore
from sislms.wiring import Kernel
from streams.catalog import load_catalog
from streams.compacted import group_caught_up
from streams.kafka import client_config
from streams.serde import Serdes
from streams.topology import apply

__all__ = ["run_lms"]

log = logging.getLogger("bench.lms")

TOKEN = "bench-events-token"
LMS_TOKEN = "bench-lms-token"
SIS_SECRET = "bench-sis-secret"
TOPICS = (
    ("lms.events.raw.v1", "lms/events_raw.v1.avsc", "delete"),
    ("lms.events.dedup.v1", "lms/events_dedup.v1.avsc", "compact"),
    ("lms.assignments.v1", "lms/assignments.v1.avsc", "compact"),
    ("lms.submissions.v1", "lms/submissions.v1.avsc", "compact"),
    ("lms.grades.v1", "lms/grades.v1.avsc", "compact"),
    ("lms.activity.v1", "lms/activity.v1.avsc", "delete"),
    ("lms.grades.passback.v1", "lms/grades_passback.v1.avsc", "compact"),
    ("lms.provisioning.v1", "lms/provisioning.v1.avsc", "delete"),
    ("lms.provisioning.results.v1", "lms/provisioning_results.v1.avsc", "compact"),
)
KIND_ORDER = ("account", "term", "user", "course", "section", "enrollment", "account_admin")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LmsRun:
    """One run's topics, work dir and processes."""

    def __init__(self, kernel: Kernel, work: Path) -> None:
        self.kernel = kernel
        self.tag = uuid.uuid4().hex[:8]
        self.work = work
        self.names = {t: f"bench.{t.split('.', 1)[1].replace('.v1', '')}_{self.tag}.v1" for t, _, _ in TOPICS}
        self.stage = f"bench_{self.tag}"
        specs = [
            {
                "name": self.names[t],
                "value_schema": schema,
                "cleanup_policy": policy,
                "description": "bench",
                "owner": "bench",
            }
            for t, schema, policy in TOPICS
        ]
        for stage in (self.stage, f"{self.stage}_gb", f"{self.stage}_sink", f"{self.stage}_an"):
            specs.append(
                {
                    "name": f"dlq.{stage}.v1",
                    "value_schema": "dlq/dead_letter.v1.avsc",
                    "cleanup_policy": "delete",
                    "partitions": 1,
                    "description": "bench",
                    "owner": "bench",
                }
            )
        self.topology = work / f"topology-{self.tag}.yaml"
        doc = {"version": 1, "defaults": {"partitions": 6, "replication_factor": 1}, "topics": specs}
        self.topology.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.catalog = load_catalog(self.topology, kernel.settings.schemas_dir)
        result = apply(self.catalog, kernel.admin, kernel.registry, 1)
        if not result.ok:
            raise SystemExit(f"bench topology failed: {result.failed}")
        self.serdes = Serdes(kernel.registry, self.catalog, validate=False)
        self.conf = client_config(kernel.settings, kernel.endpoints.kafka_bootstrap)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.ports = {
            name: _free_port()
            for name in ("receiver", "processor", "passback", "sis", "lms", "sink", "analytics")
        }
        (work / f"names-{self.tag}.json").write_text(json.dumps({**self.names, "stage": self.stage}))

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SISLMS_TOPOLOGY_FILE": str(self.topology),
            "SISLMS_LMS_EVENTS_TOKEN": TOKEN,
            "SISLMS_LMS_EVENTS_PORT": str(self.ports["receiver"]),
            "SISLMS_LMS_EVENTS_PROCESSOR_PORT": str(self.ports["processor"]),
            "SISLMS_PASSBACK_PORT": str(self.ports["passback"]),
            "SISLMS_LMS_SINK_PORT": str(self.ports["sink"]),
            "SISLMS_ANALYTICS_PORT": str(self.ports["analytics"]),
            "SISLMS_SIMULATOR_PORT": str(self.ports["sis"]),
            "SISLMS_SIS_URL": f"http://127.0.0.1:{self.ports['sis']}",
            "SISLMS_SIS_CLIENT_SECRET": SIS_SECRET,
            "SISLMS_LMS_SIMULATOR_PORT": str(self.ports["lms"]),
            "SISLMS_LMS_URL": f"http://127.0.0.1:{self.ports['lms']}",
            "SISLMS_LMS_TOKEN": LMS_TOKEN,
            "SISLMS_STATE_DIR": str(self.work / "state"),
        }

    def start(self, role: str, *args: str) -> None:
        out = open(self.work / f"{role}-{self.tag}.log", "wb")  # noqa: SIM115 (the process keeps it)
        cmd = [sys.executable, "-m", "bench.lms_role", role, str(self.work / f"names-{self.tag}.json"), *args]
        if role in ("sis", "lms"):
            cmd = [
                sys.executable,
                "-m",
                "sislms.cli",
                *(
                    ["sis", "serve", "--users", args[0]]
                    if role == "sis"
                    else ["lms", "serve", "--rate-limit", "0"]
                ),
            ]
        env = self.env()
        if role in ("sis", "lms"):  # the simulators read the project's own topology
            env.pop("SISLMS_TOPOLOGY_FILE")
        self.procs.append((role, subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)))

    def wait_http(self, url: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            for role, proc in self.procs:
                if proc.poll() is not None:
                    raise SystemExit(
                        f"bench: {role} exited ({proc.returncode}); see {self.work}/{role}-{self.tag}.log"
                    )
            time.sleep(0.2)
        raise SystemExit(f"bench: {url} did not answer within {timeout:.0f} s")

    def stop(self, role: str | None = None) -> None:
        for name, proc in list(self.procs):
            if role is None or name == role:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                self.procs.remove((name, proc))

    def caught_up(self, group: str, topic: str) -> bool:
        done, _ = group_caught_up(self.conf, group, [self.names[topic]])
        return done

    def wait_caught_up(self, group: str, topic: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not self.caught_up(group, topic):
            for role, proc in self.procs:
                if proc.poll() is not None:
                    raise SystemExit(f"bench: {role} exited ({proc.returncode}); see {self.work}")
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {what} did not catch up within {timeout:.0f} s")
            time.sleep(0.5)


# --- payloads --------------------------------------------------------------------------------


class _Collect:
    def __init__(self, builder: LiveEventBuilder, out: list[bytes]) -> None:
        self.builder, self.out = builder, out

    def logged_in(self, user_id: int, *, at: datetime | None = None, session_id: str | None = None) -> None:
        self.out.append(json.dumps(self.builder.logged_in(user_id, at=at, session_id=session_id)).encode())

    def logged_out(self, user_id: int, *, at: datetime | None = None, session_id: str | None = None) -> None:
        self.out.append(json.dumps(self.builder.logged_out(user_id, at=at, session_id=session_id)).encode())

    def asset_accessed(
        self,
        user_id: int,
        asset: Asset,
        *,
        at: datetime | None = None,
        session_id: str | None = None,
        referrer: str | None = None,
    ) -> None:
        payload = self.builder.asset_accessed(user_id, asset, at=at, session_id=session_id, referrer=referrer)
        self.out.append(json.dumps(payload).encode())


def payloads(n: int, seed: int = 7) -> list[bytes]:
    """About ``n`` Canvas-format Live Events of a simulated school (sessions, assignments,
    submissions, grades), plus 30 % of them again (Canvas redelivers), shuffled in bursts."""
    store = CanvasStore()
    account = store.create_sub_account(1, {"name": "School", "sis_account_id": "school"})
    students = [
        store.create_user(
            1, {"user": {"name": "S"}, "pseudonym": {"unique_id": f"s{i}", "sis_user_id": f"s{i}"}}
        )
        for i in range(200)
    ]
    for c in range(8):
        course = store.create_course(
            account["id"], {"course": {"name": f"C{c}", "sis_course_id": f"class-{c}"}, "offer": True}
        )
        teacher = store.create_user(
            1, {"user": {"name": "T"}, "pseudonym": {"unique_id": f"t{c}", "sis_user_id": f"t{c}"}}
        )
        store.enroll(
            course_ref=course["id"],
            section_ref=None,
            params={
                "enrollment": {
                    "user_id": teacher["id"],
                    "type": "TeacherEnrollment",
                    "enrollment_state": "active",
                }
            },
        )
        for s in students[c * 25 : c * 25 + 50]:
            store.enroll(
                course_ref=course["id"],
                section_ref=None,
                params={
                    "enrollment": {
                        "user_id": s["id"],
                        "type": "StudentEnrollment",
                        "enrollment_state": "active",
                    }
                },
            )
    out: list[bytes] = []
    builder = LiveEventBuilder(store, "canvas")
    store.listeners.append(
        lambda name, obj: out.append(json.dumps(p).encode()) if (p := builder.build(name, obj)) else None
    )
    day = datetime(2024, 3, 4, 5, tzinfo=UTC)
    rounds = 0
    while len(out) < n and rounds < 50:
        ActivityGenerator(store, _Collect(builder, out), seed=seed + rounds, clock=SimClock(day)).run(days=5)
        rounds += 1
    out = out[:n]
    rng = random.Random(seed)
    out += rng.sample(out, int(len(out) * 0.3))
    rng.shuffle(out)
    return out


# --- measurements ----------------------------------------------------------------------------


async def _post_all(url: str, bodies: list[bytes], concurrency: int = 32) -> tuple[int, float]:
    """POST every body (``concurrency`` in flight, aiohttp: a lighter client than httpx, so that
    the receiver rather than the client is measured); (events accepted, seconds)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    accepted = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            for _ in range(20):
                async with session.post(url, data=body, headers=headers) as r:
                    if r.status == 200:
                        accepted += (await r.json())["accepted"]
                        break
                    if r.status != 503:
                        raise SystemExit(f"bench: the receiver answered {r.status}: {(await r.text())[:200]}")
                await asyncio.sleep(0.5)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return accepted, time.perf_counter() - started


TYPED = ("lms.activity.v1", "lms.assignments.v1", "lms.submissions.v1", "lms.grades.v1")


def _records(run: LmsRun, topics: list[str]) -> int:
    """Records on ``topics`` now (end minus start offsets)."""
    from confluent_kafka import TopicPartition

    consumer = Consumer({**run.conf, "group.id": f"bench-count-{uuid.uuid4().hex[:6]}"})
    try:
        total = 0
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high - low
        return total
    finally:
        consumer.close()


def _raw_limit(run: LmsRun, expected: int, canonical: tuple[str, ...] = ("lms.events.raw.v1",)) -> Run:
    """Plain consume + fastavro decode of the topics (the raw topic by default), from their start."""
    topics = [run.names[t] for t in canonical]
    consumer = Consumer(
        {
            **run.conf,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    n, nbytes = 0, 0
    started = time.perf_counter()
    deadline = time.monotonic() + 600
    try:
        while n < expected and time.monotonic() < deadline:
            for m in consumer.consume(10_000, timeout=1.0):
                if m.error() is None and m.value() is not None:
                    run.serdes[str(m.topic())].decode(m.value())
                    n += 1
                    nbytes += len(m.value())
    finally:
        consumer.close()
    return Run(n, time.perf_counter() - started, nbytes)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency_measurement(name: str, note: str, samples: list[float]) -> Measurement:
    """A latency line: per run the p50 and p99 in ms are kept in the note and the JSON."""
    m = Measurement("lms", name, "ms (p50)", len(samples), note=note)
    if samples:
        p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
        m.note = f"{note}; p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(samples):.0f} ms, n={len(samples)}"
        m.runs.append(Run(int(p50), 1.0))
    return m


def _event_latency(
    run: LmsRun, url: str, bodies: list[bytes], rate: float
) -> tuple[list[float], dict[str, float]]:
    """POST ``bodies`` one by one at ``rate``/s while the processor runs; ms from each POST to its
    typed records on the broker, and each event id's POST time (epoch ms)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    sent: dict[str, float] = {}
    started = time.perf_counter()
    with httpx.Client(timeout=30) as client:
        for i, body in enumerate(bodies):
            at = time.time() * 1000
            r = client.post(url, content=body, headers=headers)
            if r.status_code == 200:
                for eid in r.json()["events"]:
                    sent.setdefault(eid, at)
            pause = started + (i + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    got: dict[str, float] = {}
    topics = [run.names[t] for t in TYPED]
    consumer = Consumer(
        {**run.conf, "group.id": f"bench-lat-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(topics)
    deadline = time.monotonic() + 120
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            for m in consumer.consume(5000, timeout=1.0):
                if m.error() is not None or m.value() is None:
                    continue
                value = run.serdes[str(m.topic())].decode(m.value())
                eid = value["meta"]["sourceVersion"] if value else None
                if eid in sent and eid not in got:
                    got[eid] = float(m.timestamp()[1])
    finally:
        consumer.close()
    return [got[e] - sent[e] for e in got], sent


def _store_latency(run: LmsRun, sent: dict[str, float], timeout: float = 120.0) -> list[float]:
    """ms from each event's POST to its row in the analytics store's ``activity_events`` (the
    events that are activity: page views, logins; work and grades go to their own tables)."""
    import psycopg
    from psycopg import sql

    query = sql.SQL(
        "select event_id, extract(epoch from written_at) * 1000 from {} where event_id = any(%s)"
    ).format(sql.Identifier(run.stage, "activity_events"))
    ids = list(sent)
    rows: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    with psycopg.connect(run.kernel.endpoints.postgres_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            before = len(rows)
            rows = {str(e): float(at) for e, at in conn.execute(query, (ids,)).fetchall()}
            if rows and len(rows) == before:
                break  # no more coming in 2 s: the others are not activity
            time.sleep(2.0)
    return [rows[e] - sent[e] for e in rows]


def _drop_schema(run: LmsRun) -> None:
    """The analytics sink's schema of this run, if it made one."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(run.kernel.endpoints.postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(run.stage)))


def _analytics_throughput(run: LmsRun) -> list[Measurement]:
    """The analytics sink from the typed topics' start (what the processor wrote) until its group
    has committed them all, beside the raw limit of the same topics."""
    import psycopg
    from psycopg import sql

    typed = [run.names[t] for t in TYPED]
    records = _records(run, typed)
    limit = Measurement(
        "lms", "Raw limit: consume + Avro decode of the typed LMS topics", "records/s", records,
        note="lms.activity, assignments, submissions, grades; plain confluent-kafka + fastavro, this process",
    )  # fmt: skip
    limit.runs.append(_raw_limit(run, records, TYPED))
    started = time.perf_counter()
    run.start("analytics")
    deadline = time.monotonic() + 1800
    while not group_caught_up(run.conf, "bench-analytics", typed)[0]:
        if time.monotonic() > deadline:
            raise SystemExit("bench: the analytics sink did not catch up within 1800 s")
        for role, proc in run.procs:
            if proc.poll() is not None:
                raise SystemExit(f"bench: {role} exited ({proc.returncode}); see {run.work}")
        time.sleep(0.5)
    spent = time.perf_counter() - started
    with psycopg.connect(run.kernel.endpoints.postgres_dsn, autocommit=True) as conn:
        table = sql.Identifier(run.stage, "activity_events")
        row = conn.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()
        activity = int(row[0]) if row else 0
    sink = Measurement(
        "lms", "Analytics sink: typed LMS records into PostgreSQL", "records/s", records,
        note=f"1 worker process, from the topics' start (its start and partition assignment included); "
        f"{activity:,} of them activity events",
    )  # fmt: skip
    sink.runs.append(Run(records, spent))
    ratio = sink.median / limit.median if limit.median else float("nan")
    sink.note += f"; {ratio:.0%} of the raw limit"
    events = Measurement(
        "lms", "Learning-activity events into the analytics store, per worker", "events/s", activity,
        note="the activity events among the records above, over the same time",
    )  # fmt: skip
    events.runs.append(Run(activity, spent))
    return [limit, sink, events]


def _passback_latency(run: LmsRun, users: int, grades: int, rate: float) -> tuple[list[float], int]:
    """Grades entered through the LMS simulator's API at ``rate``/s; ms from each call to its
    result readable in the SIS (OneRoster API, polled every 20 ms). Returns (samples, missing)."""
    sis = f"http://127.0.0.1:{run.ports['sis']}"
    lms = f"http://127.0.0.1:{run.ports['lms']}/api/v1"
    auth = ClientCredentials(
        f"{sis}/oauth/token", "sislms", SIS_SECRET, ["roster.readonly", "gradebook.readonly"]
    )
    oneroster = httpx.Client(auth=auth, timeout=30)
    canvas = httpx.Client(headers={"Authorization": f"Bearer {LMS_TOKEN}"}, timeout=30)
    try:
        r = oneroster.get(
            f"{sis}/ims/oneroster/rostering/v1p2/enrollments",
            params={"filter": "role='student'", "limit": 5000},
        )
        members: dict[str, list[str]] = {}
        for e in r.json()["enrollments"]:
            members.setdefault(e["class"]["sourcedId"], []).append(e["user"]["sourcedId"])
        class_id, students = max(members.items(), key=lambda kv: len(kv[1]))
        course = canvas.post(
            f"{lms}/accounts/1/courses", json={"course": {"name": "Bench", "sis_course_id": class_id}}
        ).json()
        lms_users = []
        for sid in students[:20]:
            u = canvas.post(
                f"{lms}/accounts/1/users",
                json={"user": {"name": "S"}, "pseudonym": {"unique_id": sid, "sis_user_id": sid}},
            ).json()
            canvas.post(
                f"{lms}/courses/{course['id']}/enrollments",
                json={
                    "enrollment": {
                        "user_id": u["id"],
                        "type": "StudentEnrollment",
                        "enrollment_state": "active",
                    }
                },
            )
            lms_users.append(u)
        per = max(1, grades // len(lms_users))
        work = [
            canvas.post(
                f"{lms}/courses/{course['id']}/assignments",
                json={
                    "assignment": {"name": f"A{i}", "points_possible": 100, "due_at": "2024-03-08T23:59:00Z"}
                },
            ).json()
            for i in range(per)
        ]
        # Before grading: the LMS simulator sends its events one at a time, and the provisioning
        # before this left it thousands behind; wait until the receiver hears nothing new, so that
        # the grades do not queue behind them (that would measure the backlog, not the path).
        receiver = f"http://127.0.0.1:{run.ports['receiver']}/healthz"
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 3.0:
            seen = httpx.get(receiver, timeout=10).json()["counts"].get("events", 0)
            if seen != last:
                last, quiet_since = seen, time.monotonic()
            time.sleep(0.5)
        time.sleep(2)  # the assignments' events reach the passback first, as in a classroom
        pending: dict[str, tuple[float, float]] = {}
        samples: list[float] = []
        lock = threading.Lock()
        done = threading.Event()

        def poll() -> None:
            while not done.is_set() or pending:
                with lock:
                    items = list(pending.items())
                for rid, (t0, score) in items:
                    resp = oneroster.get(f"{sis}/ims/oneroster/gradebook/v1p2/results/{rid}")
                    if resp.status_code == 200 and resp.json()["result"].get("score") == score:
                        with lock:
                            pending.pop(rid, None)
                            samples.append((time.perf_counter() - t0) * 1000)
                    elif time.perf_counter() - t0 > 60:
                        with lock:
                            pending.pop(rid, None)
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        started = time.perf_counter()
        n = 0
        for a in work:
            for u in lms_users:
                score = float(random.randint(50, 100))
                t0 = time.perf_counter()
                canvas.put(
                    f"{lms}/courses/{course['id']}/assignments/{a['id']}/submissions/{u['id']}",
                    json={"submission": {"posted_grade": f"{score:g}"}},
                )
                with lock:
                    pending[f"lms-{a['id']}-{u['id']}"] = (t0, score)
                n += 1
                pause = started + n / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        done.set()
        poller.join(120)
        return samples, n - len(samples)
    finally:
        oneroster.close()
        canvas.close()


def _commands(kernel: Kernel, users: int) -> list[dict[str, Any]]:
    """The provisioning commands of a generated district's first load, in dependency order."""
    from connectors.oneroster.models import ENTITIES, to_record
    from simulators.district import DistrictSpec, generate
    from streams.roles.engine import RuleSet
    from streams.roster.commands import diff
    from streams.roster.plan import plan_district

    now = datetime.now(UTC)
    meta = {
        "source": "bench",
        "sourceChangedAt": now,
        "ingestedAt": now,
        "traceId": "bench",
        "sourceVersion": None,
    }
    district = generate(DistrictSpec(users=users, seed=5))
    g: dict[str, dict[str, Any]] = {}
    for ent in ENTITIES:
        if ent.name in ("orgs", "academicSessions", "courses", "classes", "users", "enrollments"):
            schema = kernel.catalog.contract(ent.topic).schema
            g[ent.name] = {
                sid: to_record(ent.name, obj, schema, meta=meta)
                for sid, obj in district.collections[ent.name].items()
                if obj.get("status") != "tobedeleted"
            }
    targets = plan_district(
        orgs=g["orgs"],
        sessions=g["academicSessions"],
        courses=g["courses"],
        classes=g["classes"],
        users=g["users"],
        enrollments=g["enrollments"],
        rules=RuleSet.load(kernel.settings.roles_file),
        today=now.date(),
    )
    out: list[dict[str, Any]] = []
    ordered = sorted(targets.items(), key=lambda kv: (KIND_ORDER.index(kv[1].kind), kv[0]))
    for key, target in ordered:
        commands, _ = diff({}, {key: target})
        out += [c.to_value("bench", meta) for c in commands]
    return out


def _sink_throughput(run: LmsRun, users: int) -> Measurement:
    from streams.serde import encode_key

    commands = _commands(run.kernel, users)
    topic = run.names["lms.provisioning.v1"]
    producer = run.kernel.producer()
    serde = run.serdes[topic]
    for v in commands:
        producer.produce(topic, key=encode_key(v["targetSisId"]), value=serde.encode(v))
        producer.poll(0)
    producer.flush(120)
    run.start("sink")
    started = time.perf_counter()
    run.wait_caught_up("bench-sink", "lms.provisioning.v1", 3600, "the provisioning sink")
    m = Measurement(
        "lms",
        "Provisioning sink: commands applied to the LMS simulator",
        "commands/s",
        len(commands),
        note=f"first load of a {users:,}-user district, 1 process, 4 lanes, throttle off",
    )
    m.runs.append(Run(len(commands), time.perf_counter() - started))
    run.stop("sink")
    return m


class _Logged(list[Measurement]):
    """The run's measurements, each logged when made (a run stopped half-way keeps them)."""

    def append(self, m: Measurement) -> None:
        super().append(m)
        rate = f"{m.median:,.0f} {m.unit}" if m.runs else "no sample"
        log.info("lms bench: %s: %s (%s)", m.name, rate, m.note)


def run_lms(
    kernel: Kernel, events: int, *, event_rate: float = 200.0, grade_rate: float = 5.0, sis_users: int = 2000
) -> list[Measurement]:
    work = Path(tempfile.mkdtemp(prefix="bench-lms-"))
    log.info("lms bench: building %d events", events)
    bodies = payloads(events)
    run = LmsRun(kernel, work)
    out = _Logged()
    try:
        run.start("receiver")
        receiver = f"http://127.0.0.1:{run.ports['receiver']}"
        run.wait_http(f"{receiver}/healthz")
        accepted, seconds = asyncio.run(_post_all(f"{receiver}/events", bodies))
        m = Measurement(
            "lms",
            "Event receiver: Canvas Live Events accepted over HTTP",
            "events/s",
            len(bodies),
            note="1 process, 32 requests in flight, each acknowledged once on the broker",
        )
        m.runs.append(Run(accepted, seconds, sum(len(b) for b in bodies)))
        out.append(m)

        raw = Measurement(
            "lms",
            "Raw limit: consume + Avro decode of lms.events.raw.v1",
            "events/s",
            accepted,
            note="plain confluent-kafka + fastavro, this process",
        )
        raw.runs.append(_raw_limit(run, accepted))
        out.append(raw)

        started = time.perf_counter()
        run.start("processor")
        run.wait_caught_up("bench-events", "lms.events.raw.v1", 1800, "the events processor")
        proc = Measurement(
            "lms",
            "Events processor: raw to typed topics (dedup, order)",
            "events/s",
            accepted,
            note="1 worker process, from the topic's start, 30 % redeliveries",
        )
        proc.runs.append(Run(accepted, time.perf_counter() - started))
        out.append(proc)
        ratio = proc.median / raw.median if raw.median else float("nan")
        proc.note += f"; {ratio:.0%} of the raw limit"

        out.extend(_analytics_throughput(run))

        fresh = payloads(max(200, int(event_rate * 20)), seed=99)
        samples, sent = _event_latency(run, f"{receiver}/events", fresh, event_rate)
        out.append(
            _latency_measurement(
                "Event latency: POST to typed record", f"{event_rate:.0f} events/s, one sender", samples
            )
        )
        out.append(
            _latency_measurement(
                "Activity latency: POST to its row in the analytics store",
                f"{event_rate:.0f} events/s, one sender; receiver, processor, analytics sink",
                _store_latency(run, sent),
            )
        )

        run.start("sis", str(sis_users))
        run.wait_http(f"http://127.0.0.1:{run.ports['sis']}/_sim/health")
        run.start("lms")
        run.wait_http(f"http://127.0.0.1:{run.ports['lms']}/_sim/health")
        out.append(_sink_throughput(run, sis_users))
        run.start("passback")
        run.wait_http(f"http://127.0.0.1:{run.ports['passback']}/healthz")
        grades, missing = _passback_latency(run, sis_users, 200, grade_rate)
        out.append(
            _latency_measurement(
                "Grade passback: LMS grade to SIS result",
                f"{grade_rate:.0f} grades/s through Live Events, receiver, processor, passback; "
                f"{missing} not seen within 60 s",
                grades,
            )
        )
    finally:
        run.stop()
        _drop_schema(run)
        log.info("lms bench: work dir %s", work)
    return out
