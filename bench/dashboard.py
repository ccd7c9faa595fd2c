"""The analytics side at district scale: the analytics sink's rows/s, and the dashboard's page times.

1. **Sink.** A generated district's SIS records are produced to fresh ``bench.*`` topics; the raw
   limit is a plain consume + Avro decode of them; then the analytics sink stores them all in a
   fresh schema, from the topics' start to caught up (rows/s, one process).
2. **Pages.** A fresh schema is seeded with the same district's analytics store
   (:mod:`simulators.analytics_store`: SIS records, LMS ids, four weeks of engagement,
   assignments, submissions, grades); the dashboard serves it in this process and each page is
   asked ``requests`` times by a signed-in client. The server time of each answer (its
   ``Server-Timing``) is what is reported: p50, with p95 and max in the note.
3. **Screenshot.** With Chromium at hand, the district overview is saved as
   ``docs/dashboard-overview.png``.
"""

from __future__ import annotations

import logging
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import yaml
from psycopg import sql
from pydantic import SecretStr

from bench.measure import Measurement, Run
from connectors.oneroster.models import ENTITIES, to_record
from connectors.sinks.postgres.migrate import migrate
from simulators.analytics_store import seed_store
from simulators.district import DistrictSpec, generate
from simulators.serving import AppServer
from sislms.analytics import build_analytics_sink
from sislms.dashboard import build_dashboard
from sislms.wiring import Kernel
from streams.catalog import load_catalog
from streams.compacted import group_caught_up, read_to_end
from streams.kafka import client_config
from streams.serde import Serdes, encode_key
from streams.settings import PROJECT_ROOT
from streams.topology import apply

__all__ = ["run_dashboard"]

log = logging.getLogger("bench.dashboard")

SIS = {
    "orgs": "sis.orgs.v1",
    "academicSessions": "sis.academic_sessions.v1",
    "courses": "sis.courses.v1",
    "classes": "sis.classes.v1",
    "users": "sis.users.v1",
    "enrollments": "sis.enrollments.v1",
}
PASSWORD = "bench-dashboard"


def _ms_measurement(name: str, times_ms: list[float], note: str) -> Measurement:
    p50 = statistics.median(times_ms)
    q = statistics.quantiles(times_ms, n=20, method="inclusive") if len(times_ms) >= 2 else [p50] * 19
    m = Measurement("dashboard", name, "ms (p50)", len(times_ms),
                    note=f"{note}; p50 {p50:.0f} ms, p95 {q[18]:.0f} ms, max {max(times_ms):.0f} ms, "
                         f"n={len(times_ms)}")  # fmt: skip
    m.runs.append(Run(round(p50), 1.0))
    return m


def _sink_throughput(kernel: Kernel, users: int, tag: str, workdir: Path) -> list[Measurement]:
    names = {c: c.replace(".v1", f"_{tag}.v1").replace("sis.", "bench.sis_") for c in SIS.values()}
    names["dlq.analytics.v1"] = f"dlq.bench_analytics_{tag}.v1"
    topics = [
        {"name": actual, "description": "bench", "owner": "bench", "cleanup_policy": "compact",
         "value_schema": kernel.catalog.topic(canonical).value_schema, "partitions": 6}
        for canonical, actual in names.items() if not canonical.startswith("dlq.")
    ]  # fmt: skip
    topics.append({"name": names["dlq.analytics.v1"], "description": "bench", "owner": "bench",
                   "cleanup_policy": "delete", "value_schema": "dlq/dead_letter.v1.avsc",
                   "partitions": 1})  # fmt: skip
    doc = {"version": 1, "defaults": {"partitions": 6, "replication_factor": 1}, "topics": topics}
    path = workdir / f"topology-{tag}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    catalog = load_catalog(path, kernel.settings.schemas_dir)
    assert apply(catalog, kernel.admin, kernel.registry, 1).ok
    private = Kernel(kernel.settings)
    private.__dict__["catalog"] = catalog
    serdes = Serdes(private.registry, catalog, validate=False)

    district = generate(DistrictSpec(users=users, seed=11))
    now = datetime.now(UTC)
    meta = {"source": "bench", "sourceChangedAt": now, "ingestedAt": now, "traceId": "b"}
    meta["sourceVersion"] = None
    producer = private.producer()
    total = 0
    for ent in ENTITIES:
        if ent.name not in SIS:
            continue
        topic = names[SIS[ent.name]]
        contract = catalog.contract(topic).schema
        serde = serdes[topic]
        for sid, obj in district.collections[ent.name].items():
            rec = to_record(ent.name, obj, contract, meta=meta)
            producer.produce(topic, key=encode_key(sid), value=serde.encode(rec))
            producer.poll(0)
            total += 1
    producer.flush(120)
    log.info("dashboard bench: %d SIS records on the bench topics", total)

    conf = client_config(kernel.settings, kernel.endpoints.kafka_bootstrap)
    t = time.perf_counter()
    decoded = 0
    for canonical, actual in names.items():
        if canonical.startswith("dlq."):
            continue
        serde = serdes[actual]
        for msg in read_to_end(conf, actual, timeout_s=600):
            serde.decode(msg.value())
            decoded += 1
    raw = Measurement("dashboard", "Raw limit: consume + Avro decode of the SIS topics", "records/s", decoded,
                      note="plain confluent-kafka + fastavro, this process")  # fmt: skip
    raw.runs.append(Run(decoded, time.perf_counter() - t))
    log.info("dashboard bench: %s: %.0f records/s", raw.name, raw.median)

    schema = f"bench_sink_{tag}"
    group = f"bench-analytics-{tag}"
    sink = build_analytics_sink(kernel.settings, private, group=group, topics=names, schema=schema,
                                stage=f"bench_analytics_{tag}")  # fmt: skip
    stop = threading.Event()
    migrate(private.endpoints.postgres_dsn, schema)
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    t = time.perf_counter()
    thread.start()
    inputs = [a for c, a in names.items() if not c.startswith("dlq.")]
    while not group_caught_up(conf, group, inputs)[0]:
        time.sleep(0.5)
    spent = time.perf_counter() - t
    stop.set()
    thread.join(60)
    share = 100 * total / spent / raw.median if raw.median else 0.0
    note = (
        f"a {users:,}-user district's {total:,} records, 1 process, batches of "
        f"{kernel.settings.analytics_batch_size:,}; {share:.0f} % of the raw limit"
    )
    name = "Analytics sink: SIS records upserted into PostgreSQL"
    m = Measurement("dashboard", name, "rows/s", total, note=note)
    m.runs.append(Run(total, spent))
    log.info("dashboard bench: %s: %.0f rows/s", m.name, m.median)
    with psycopg.connect(private.endpoints.postgres_dsn, autocommit=True) as c:
        c.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
    return [raw, m]


def _page_times(kernel: Kernel, users: int, requests: int, tag: str) -> list[Measurement]:
    settings = kernel.settings.model_copy(
        update={"dashboard_password": SecretStr(PASSWORD), "dashboard_session_key": SecretStr("b" * 32)}
    )
    private = Kernel(settings)
    dsn = private.endpoints.postgres_dsn
    schema = f"bench_dash_{tag}"
    t = time.perf_counter()
    seeded = seed_store(dsn, schema, kernel.catalog, users=users, seed=11)
    log.info("dashboard bench: seeded %s in %.0f s: %s", schema, time.perf_counter() - t, seeded.rows)
    server = AppServer("dashboard", "127.0.0.1", 0, lambda: build_dashboard(settings, private, schema=schema))
    server.start()
    out: list[Measurement] = []
    try:
        client = httpx.Client(base_url=server.url, timeout=120)
        r = client.post("/login", data={"user": settings.dashboard_user, "password": PASSWORD, "next": "/"})
        assert r.status_code in (200, 303), r.status_code
        klass = max(seeded.students, key=lambda c: len(seeded.students[c]))
        school = seeded.classes[klass]["school"]
        student = seeded.students[klass][0]
        pages = {
            "district overview": "/",
            "school": f"/schools/{school}",
            "class (biggest)": f"/classes/{klass}",
            "student": f"/students/{student}",
            "rows: missing work, district": "/rows/assignments?status=missing",
        }
        client.get("/")  # the first answer fills the consumer-lag cache
        for label, path in pages.items():
            times = []
            for _ in range(requests):
                r = client.get(path)
                assert r.status_code == 200, (path, r.status_code)
                match = re.search(r"dur=([0-9.]+)", r.headers.get("Server-Timing", ""))
                assert match, r.headers
                times.append(float(match.group(1)))
            m = _ms_measurement(f"Dashboard page: {label}", times, f"{users:,} users, server time")
            log.info("dashboard bench: %s: %s", m.name, m.note)
            out.append(m)
        _screenshot(server.url, settings.dashboard_user)
    finally:
        server.stop()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
    return out


def _screenshot(url: str, user: str) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        log.info("dashboard bench: no chromium: no screenshot")
        return
    from playwright.sync_api import sync_playwright

    target = PROJECT_ROOT / "docs" / "dashboard-overview.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/login")
        page.fill("input[name=user]", user)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("svg.chart")
        page.screenshot(path=str(target), full_page=True)
        browser.close()
    log.info("dashboard bench: screenshot %s", target)


def run_dashboard(kernel: Kernel, users: int, requests: int = 20) -> list[Measurement]:
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as work:
        out = _sink_throughput(kernel, users, tag, Path(work))
    out += _page_times(kernel, users, requests, tag)
    return out
