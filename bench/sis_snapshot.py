"""Full-district snapshot through the OneRoster REST source, on the real stack.

For each district size: generate the district, serve it with the SIS simulator (in this process,
on loopback), and run one snapshot of every entity into fresh ``bench.*`` copies of the ``sis.*``
topics: HTTP paging, JSON parsing, contract conversion, Avro encoding, idempotent produce and the
final flush. Beside it, in the same run:

* **read only**: the same pages fetched and parsed, nothing converted or produced (what the SIS
  and HTTP cost on their own);
* **consume + decode**: the topics the snapshot filled, read back and decoded (the pipeline's
  floor for any consumer of these topics).

The simulator runs as its own process (``sislms sis serve``) on the same machine, as a SIS on
another host would run beside the source; on two cores the two share the machine, so the figures
are a floor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from confluent_kafka.admin import AdminClient

from bench.measure import Measurement, Run
from connectors.oneroster.auth import ClientCredentials
from connectors.oneroster.models import ENTITIES
from connectors.oneroster.query import Query
from connectors.sources.base import SourceState, TopicWriter
from connectors.sources.holds import HoldBook, MassChangeGuard
from connectors.sources.oneroster_rest.client import OneRosterClient
from connectors.sources.oneroster_rest.source import RestSource, RestSourceConfig
from sislms.wiring import Kernel
from streams.catalog import load_catalog
from streams.compacted import read_live_keys, read_to_end
from streams.kafka import client_config
from streams.serde import Serdes
from streams.topology import apply

__all__ = ["run_sis_snapshot"]

log = logging.getLogger("bench.sis")

SECRET = "bench-secret"


def _topics(kernel: Kernel, tag: str, workdir: Path) -> tuple[Any, dict[str, str]]:
    specs: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for ent in ENTITIES:
        base = kernel.catalog.topic(ent.topic)
        name = f"bench.{ent.topic.split('.')[1]}_{tag}.v1"
        names[ent.name] = name
        specs.append(
            {
                "name": name,
                "description": "bench",
                "owner": "bench",
                "cleanup_policy": "compact",
                "value_schema": base.value_schema,
            }
        )
    specs.append(
        {
            "name": f"dlq.bench_{tag}.v1",
            "description": "bench",
            "owner": "bench",
            "cleanup_policy": "delete",
            "value_schema": "dlq/dead_letter.v1.avsc",
            "partitions": 1,
        }
    )
    path = workdir / f"topology-{tag}.yaml"
    doc = {"version": 1, "defaults": {"partitions": 6, "replication_factor": 1}, "topics": specs}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    catalog = load_catalog(path, kernel.settings.schemas_dir)
    result = apply(catalog, kernel.admin, kernel.registry, 1)
    if not result.ok:
        raise SystemExit(f"bench topology failed: {result.failed}")
    return catalog, names


def _delete(kernel: Kernel, names: list[str]) -> None:
    admin: AdminClient = kernel.admin
    for future in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # best effort clean-up
            future.result()


def _read_only(url: str, page_size: int) -> tuple[int, float]:
    auth = ClientCredentials(
        f"{url}/oauth/token", "sislms", SECRET, ["roster.readonly", "gradebook.readonly"]
    )
    client = OneRosterClient(url, auth)
    count, started = 0, time.perf_counter()
    for ent in ENTITIES:
        for page in client.pages(ent, Query(limit=page_size)):
            count += len(page.records)
    client.close()
    return count, time.perf_counter() - started


def _consume_decode(kernel: Kernel, catalog: Any, names: dict[str, str]) -> tuple[int, float]:
    serdes = Serdes(kernel.registry, catalog)
    conf = client_config(kernel.settings, kernel.endpoints.kafka_bootstrap)
    count, started = 0, time.perf_counter()
    for topic in names.values():
        serde = serdes[topic]
        for message in read_to_end(conf, topic, timeout_s=3600):
            serde.decode(message.value())
            count += 1
    return count, time.perf_counter() - started


def _serve(users: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "SISLMS_SIS_CLIENT_SECRET": SECRET, "SISLMS_STATE_DIR": str(workdir / "state")}
    log_file = (workdir / "simulator.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sislms.cli", "sis", "serve", "--users", str(users), "--port", str(port)],
        env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the simulator exited: see {workdir / 'simulator.log'}")
        try:
            health = httpx.get(f"{url}/_sim/health", timeout=5)
            if health.status_code == 200:
                return proc, url, dict(health.json()["counts"])
        except httpx.TransportError:
            pass
        time.sleep(1)
    proc.terminate()
    raise SystemExit("the simulator did not start within 15 minutes")


def rest_source(
    kernel: Kernel,
    url: str,
    catalog: Any,
    names: dict[str, str],
    workdir: Path,
    stage: str,
    page_size: int = 1000,
    entities: tuple[str, ...] | None = None,
) -> RestSource:
    """A OneRoster REST source from the simulator at ``url`` into the bench topics ``names``."""
    serdes = Serdes(kernel.registry, catalog, validate=False)
    config = RestSourceConfig(name="bench", page_size=page_size)
    if entities is not None:
        config = dataclasses.replace(config, entities=entities)
    writer = TopicWriter(kernel.producer(), serdes, catalog, source=config.source, stage=stage)
    auth = ClientCredentials(
        f"{url}/oauth/token", "sislms", SECRET, ["roster.readonly", "gradebook.readonly"]
    )
    conf = client_config(kernel.settings, kernel.endpoints.kafka_bootstrap)
    return RestSource(
        config, client=OneRosterClient(url, auth), writer=writer, catalog=catalog,
        state=SourceState(workdir / "state.json"), holds=HoldBook(workdir / "holds"), guard=MassChangeGuard(),
        live_keys=lambda topic: read_live_keys(conf, topic), topics=names,
    )  # fmt: skip


def run_sis_snapshot(kernel: Kernel, sizes: list[int], page_size: int = 1000) -> list[Measurement]:
    """One snapshot per district size (a few minutes at 250,000 users)."""
    out: list[Measurement] = []
    for users in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc, url, counts = _serve(users, Path(tmp))
            total = sum(counts.get(e.name, 0) for e in ENTITIES)
            up_s = time.perf_counter() - t0
            log.info("simulator of %d users up in %.0f s: %d records %s", users, up_s, total, counts)
            tag = uuid.uuid4().hex[:8]
            catalog, names = _topics(kernel, tag, Path(tmp))
            try:
                read_n, read_s = _read_only(url, page_size)
                source = rest_source(kernel, url, catalog, names, Path(tmp), f"bench_{tag}", page_size)
                started = time.perf_counter()
                report = source.sync_once()
                snap_s = time.perf_counter() - started
                published = report.total("upserts")
                if published != total:
                    log.warning("snapshot published %d of %d records", published, total)
                decoded, dec_s = _consume_decode(kernel, catalog, names)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                _delete(kernel, [*names.values(), f"dlq.bench_{tag}.v1"])
        label = f"{users:,} users, {total:,} records"
        out.append(
            Measurement(
                "sis",
                f"snapshot: OneRoster REST -> sis topics ({label})",
                "records/s",
                published,
                [Run(published, snap_s)],
                note=f"{snap_s:.0f} s for the district",
            )
        )
        out.append(
            Measurement(
                "sis",
                f"read only: the same pages fetched and parsed ({label})",
                "records/s",
                read_n,
                [Run(read_n, read_s)],
            )
        )
        out.append(Measurement("sis", f"consume + decode the snapshot's topics ({label})", "records/s",
                               decoded, [Run(decoded, dec_s)]))  # fmt: skip
    return out
