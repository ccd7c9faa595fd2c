"""Helpers for the SIS integration tests: uuid-named sis topics, an in-process simulator, a
source wired to both, and a reader of a topic's final state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.oneroster.auth import ClientCredentials
from connectors.oneroster.models import ENTITIES
from connectors.sources.base import SourceState, TopicWriter
from connectors.sources.holds import HoldBook, MassChangeGuard
from connectors.sources.oneroster_rest.client import OneRosterClient
from connectors.sources.oneroster_rest.source import RestSource, RestSourceConfig
from simulators.district import DistrictSpec
from simulators.sis.server import SimulatorConfig, SisSimulator
from sislms.sis import known_fields
from sislms.wiring import Kernel
from streams.catalog import Catalog
from streams.compacted import read_live_keys, read_to_end
from streams.kafka import client_config
from streams.serde import Serdes, decode_key
from streams.settings import Settings
from streams.topology import apply

SECRET = "integration-test-secret"


@dataclass
class SisTopics:
    """One private copy of every sis.* topic plus a dead-letter topic."""

    catalog: Catalog
    topics: dict[str, str]  # entity -> topic
    stage: str
    kernel: Kernel

    @property
    def dead_letters(self) -> str:
        return f"dlq.{self.stage}.v1"


def sis_topics(kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str, tag: str = "t") -> SisTopics:
    specs = []
    topics: dict[str, str] = {}
    for ent in ENTITIES:
        base = kernel.catalog.topic(ent.topic)
        name = f"{ent.topic[:-3]}_{tag}{uid}.v1"
        topics[ent.name] = name
        specs.append({"name": name, "cleanup_policy": "compact", "value_schema": base.value_schema})
    stage = f"sis_ingest_{tag}{uid}"
    specs.append({"name": f"dlq.{stage}.v1", "value_schema": "dlq/dead_letter.v1.avsc", "partitions": 1})
    catalog = make_catalog(specs, name=f"topology-{tag}.yaml")
    result = apply(catalog, kernel.admin, kernel.registry, 1)
    assert result.ok, result.failed
    private = Kernel(kernel.settings)
    private.__dict__["catalog"] = catalog  # the same services, our own topics
    return SisTopics(catalog, topics, stage, private)


def start_simulator(
    settings: Settings,
    kernel: Kernel,
    *,
    users: int,
    seed: int = 11,
    webhook_url: str | None = None,
    token_ttl_s: float = 3600.0,
) -> SisSimulator:
    config = SimulatorConfig(
        port=0,
        client_secret=SECRET,
        token_ttl_s=token_ttl_s,
        district=DistrictSpec(users=users, seed=seed),
        webhook_url=webhook_url,
        known_fields=known_fields(kernel),
    )
    return SisSimulator(config).start()


def writer(t: SisTopics, source: str) -> TopicWriter:
    serdes = Serdes(t.kernel.registry, t.catalog, validate=False)
    return TopicWriter(t.kernel.producer(), serdes, t.catalog, source=source, stage=t.stage)


def live_keys(t: SisTopics) -> Callable[[str], set[str]]:
    conf = client_config(t.kernel.settings, t.kernel.endpoints.kafka_bootstrap)
    return lambda topic: read_live_keys(conf, topic)


def rest_source(
    t: SisTopics,
    sim: SisSimulator,
    state_dir: Path,
    *,
    poll_interval_s: float = 10.0,
    guard: MassChangeGuard | None = None,
    name: str = "test",
) -> RestSource:
    auth = ClientCredentials(
        f"{sim.url}/oauth/token", "sislms", SECRET, ["roster.readonly", "gradebook.readonly"]
    )
    client = OneRosterClient(sim.url, auth, max_retries=3, max_backoff_s=0.5)
    config = RestSourceConfig(name=name, page_size=500, poll_interval_s=poll_interval_s, clock_skew_s=2.0)
    return RestSource(
        config, client=client, writer=writer(t, config.source), catalog=t.catalog,
        state=SourceState(state_dir / "rest-state.json"), holds=HoldBook(state_dir / "holds"),
        guard=guard or MassChangeGuard(), live_keys=live_keys(t), topics=t.topics,
    )  # fmt: skip


def csv_source(t: SisTopics, state_dir: Path, *, guard: MassChangeGuard | None = None) -> Any:
    from connectors.sources.oneroster_csv.source import CsvSource

    return CsvSource(
        name="test", writer=writer(t, "oneroster-csv:test"), catalog=t.catalog,
        holds=HoldBook(state_dir / "holds"), guard=guard or MassChangeGuard(), live_keys=live_keys(t),
        topics=t.topics,
    )  # fmt: skip


def read_topic(
    t: SisTopics, topic: str, *, decode: bool = True
) -> list[tuple[str | None, Any, dict[str, bytes]]]:
    """Every record of ``topic`` in partition order: (key, value or None, headers)."""
    conf = client_config(t.kernel.settings, t.kernel.endpoints.kafka_bootstrap)
    serde = t.kernel.serdes[topic] if decode else None
    return [
        (decode_key(m.key()), serde.decode(m.value()) if serde is not None else m.value(),
         {k: v for k, v in (m.headers() or [])})
        for m in read_to_end(conf, topic, timeout_s=60)
    ]  # fmt: skip


def table(t: SisTopics, entity: str) -> dict[str, dict[str, Any]]:
    """The topic's state: latest value per key, tombstoned keys removed."""
    state: dict[str, Any] = {}
    for key, value, _ in read_topic(t, t.topics[entity]):
        assert key is not None
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def active(sim: SisSimulator, entity: str) -> dict[str, dict[str, Any]]:
    return {
        sid: r for sid, r in sim.store.collections.get(entity, {}).items() if r.get("status") != "tobedeleted"
    }


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A topic record without what legitimately differs between sources: meta and GUIDRef hrefs."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("meta", "href")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(record)


def wait_for(check: Callable[[], bool], timeout: float = 30.0, every: float = 0.2) -> float:
    """Seconds until ``check()`` held; fails the test after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - started
