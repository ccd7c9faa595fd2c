"""The whole district pipeline on one machine: its programs, and how far each flow has got.

:func:`programs` lists the processes ``make run`` and ``sislms demo`` supervise, in start order:
the two simulators, the LMS event receiver, the roster worker, the sinks and processors, the
dashboard and, last, the OneRoster REST source (so that everything downstream is there when the
snapshot starts). Every program reads its settings from the environment, so one environment
(:func:`child_env`) places them all: the local stack's ports, the state directory, the shared
local secrets.

:class:`Watch` reads each flow's progress from Kafka alone (no program is asked): for each
consumer group, the records it has committed against the records on the topics it reads, with a
rate from the difference between two reads; for the SIS source, the records on the ``sis.*``
topics against the SIS simulator's counts.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from connectors.oneroster.models import entity
from sislms.stack import Stack
from sislms.supervisor import Program
from sislms.wiring import Kernel
from streams.kafka import client_config
from streams.settings import Settings
from streams.topology import apply

__all__ = [
    "Flow", "FlowState", "Latencies", "Watch", "child_env", "flows", "programs", "roster_workers",
    "start_stack",
]  # fmt: skip

_LOCAL = "http://127.0.0.1"


def programs(
    settings: Settings,
    *,
    users: int,
    sis_rate: float = 0.0,
    state: tuple[Path, Path] | None = None,
    webhook: bool = True,
    lms_rate_limit: float | None = None,
) -> list[Program]:
    """The pipeline's programs over a generated district of ``users`` (start order); with
    ``state``, the SIS and LMS simulators keep their state in those files between runs; without
    ``webhook``, the SIS announces no change and the source finds them by polling alone;
    ``lms_rate_limit`` sets the LMS simulator's throttle bucket (None: Canvas's 700; 0: off)."""
    s = settings
    sis_state = ("--state", str(state[0])) if state else ()
    # a pipeline with state runs for days: its LMS simulator keeps no growing ground truth
    lms_state = ("--state", str(state[1]), "--no-truth") if state else ()
    if lms_rate_limit is not None:
        lms_state = (*lms_state, "--rate-limit", f"{lms_rate_limit:g}")

    def at(port: int, path: str = "/healthz") -> str:
        return f"{_LOCAL}:{port}{path}"

    return [
        Program(
            "sis-simulator",
            (
                "sis",
                "serve",
                "--users",
                str(users),
                "--rate",
                f"{sis_rate:g}",
                *(("--webhook", at(s.sis_trigger_port, "/trigger")) if webhook else ()),
                *sis_state,
            ),
            ready_url=at(s.simulator_port, "/_sim/health"),
            ready_timeout_s=600.0,
        ),
        Program(
            "lms-simulator", ("lms", "serve", *lms_state), ready_url=at(s.lms_simulator_port, "/_sim/health")
        ),
        Program("lms-receiver", ("lms", "receive"), ready_url=at(s.lms_events_port)),
        *(
            Program(
                name,
                ("worker", "--name", worker, "--port", str(port)),
                ready_url=at(port),
                ready_timeout_s=180.0,
            )
            for name, worker, port in roster_workers(s)
        ),
        Program("lms-sink", ("lms", "sink"), ready_url=at(s.lms_sink_port)),
        Program("lms-events", ("lms", "events"), ready_url=at(s.lms_events_processor_port)),
        Program("grade-passback", ("lms", "passback"), ready_url=at(s.passback_port)),
        Program("engagement", ("analytics", "engagement"), ready_url=at(s.analytics_engagement_port)),
        Program("assignment-work", ("analytics", "work"), ready_url=at(s.analytics_work_port)),
        Program("analytics-sink", ("analytics", "sink"), ready_url=at(s.analytics_port)),
        Program("dashboard", ("dashboard",), ready_url=at(s.dashboard_port)),
        Program("sis-source", ("sis", "sync"), ready_url=at(s.sis_trigger_port)),
    ]


def roster_workers(settings: Settings) -> list[tuple[str, str, int]]:
    """The roster workers the pipeline runs: (program name, worker name, web port) each; the
    first is ``sislms worker``'s default, worker k > 1 listens on the web port + 10 + k."""
    out = [("roster-worker", "worker-1", settings.roster_web_port)]
    for k in range(2, settings.roster_workers + 1):
        out.append((f"roster-worker-{k}", f"worker-{k}", settings.roster_web_port + 10 + k))
    return out


def start_stack(settings: Settings) -> tuple[Stack, Kernel]:
    """The local stack up (what runs already is left alone) and the topology applied; raises
    :class:`RuntimeError` when the topology cannot be applied."""
    stack = Stack(settings)
    stack.up()
    kernel = Kernel(settings)
    result = apply(kernel.catalog, kernel.admin, kernel.registry, settings.replication_factor_cap)
    if not result.ok:
        raise RuntimeError(f"topology apply failed: {result.failed}")
    return stack, kernel


#: Settings that point a program at services elsewhere: a demo on its own stack drops them.
EXTERNAL = (
    "SISLMS_KAFKA_BOOTSTRAP", "SISLMS_SCHEMA_REGISTRY_URL", "SISLMS_POSTGRES_DSN", "SISLMS_SIS_URL",
    "SISLMS_SIS_TOKEN_URL", "SISLMS_SIS_CLIENT_SECRET", "SISLMS_LMS_URL", "SISLMS_LMS_TOKEN",
    "SISLMS_LMS_EVENTS_TOKEN", "SISLMS_REPLICATION_FACTOR_CAP",
)  # fmt: skip


def child_env(overrides: Mapping[str, str], *, drop_external: bool = False) -> dict[str, str]:
    """This process's environment with ``overrides``; without the external endpoints when asked."""
    env = {k: v for k, v in os.environ.items() if not (drop_external and k in EXTERNAL)}
    env.update(overrides)
    return env


# --- progress --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """A stage of the pipeline as the watch shows it: a consumer group (its topics are the ones it
    has committed offsets on), or the SIS source (``group`` None)."""

    name: str
    group: str | None


def flows(settings: Settings) -> list[Flow]:
    return [
        Flow("SIS snapshot -> sis.*", None),
        Flow("roster: rules, diff", settings.roster_app_id),
        Flow("LMS provisioning", "sislms-canvas-sink"),
        Flow("LMS events", "sislms-lms-events"),
        Flow("grade passback", "sislms-grade-passback"),
        Flow("engagement", "sislms-engagement"),
        Flow("assignment work", "sislms-work"),
        Flow("analytics store", "sislms-analytics"),
    ]


@dataclass
class FlowState:
    name: str
    done: int = 0  #: records committed (source: records published)
    total: int = 0  #: records on its topics (source: the SIS simulator's records)
    rate: float = 0.0  #: records a second since the last read
    started: bool = False  #: the group has committed something (source: records published)

    @property
    def lag(self) -> int:
        return max(0, self.total - self.done)


def windowed_rate(reads: deque[tuple[float, int]], now: float, done: int, window_s: float) -> float:
    """Items a second over about the last ``window_s`` seconds: ``reads`` keeps the (time, done)
    reads, the oldest dropped once a newer one spans the window."""
    reads.append((now, done))
    while len(reads) > 2 and now - reads[1][0] >= window_s:
        reads.popleft()
    first_at, first_done = reads[0]
    return max(0.0, (done - first_done) / (now - first_at)) if now > first_at else 0.0


@dataclass
class Watch:
    """Reads every flow's position from Kafka (and the SIS simulator's counts)."""

    settings: Settings
    bootstrap: str
    sis_url: str
    _admin: AdminClient | None = None
    _http: httpx.Client | None = None
    #: recent (time, done) reads of each flow: rates over the last ``window_s`` (commits come in
    #: steps of a second or more, so the rate between two reads a second apart jumps)
    _reads: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    window_s: float = 10.0

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            conf = client_config(self.settings, self.bootstrap)
            self._admin = AdminClient({**conf, "log_level": 3})
        return self._admin

    def close(self) -> None:
        """Let the admin client go (see :meth:`Kernel.close`)."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._admin is not None:
            self._admin = None
            gc.collect()

    def read(self) -> list[FlowState]:
        out: list[FlowState] = []
        for flow in flows(self.settings):
            state = self._source(flow) if flow.group is None else self._group(flow)
            reads = self._reads.setdefault(flow.name, deque())
            state.rate = windowed_rate(reads, time.monotonic(), state.done, self.window_s)
            out.append(state)
        return out

    def _ends(self, parts: list[TopicPartition]) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) watermarks of each partition."""
        if not parts:
            return {}
        lows = self.admin.list_offsets({tp: OffsetSpec.earliest() for tp in parts}, request_timeout=10)
        highs = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in parts}, request_timeout=10)
        out = {}
        for tp in parts:
            out[(tp.topic, tp.partition)] = (lows[tp].result().offset, highs[tp].result().offset)
        return out

    def records(self, topic: str) -> int:
        """How many records ``topic`` holds now (0 when it does not exist)."""
        try:
            meta = self.admin.list_topics(topic, timeout=10)
        except Exception:
            return 0
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            return 0
        ends = self._ends([TopicPartition(topic, p) for p in info.partitions])
        return sum(high - low for low, high in ends.values())

    def _group(self, flow: Flow) -> FlowState:
        state = FlowState(flow.name)
        assert flow.group is not None
        try:
            req = [ConsumerGroupTopicPartitions(flow.group)]
            result = self.admin.list_consumer_group_offsets(req, request_timeout=10)[flow.group].result()
        except Exception:  # the coordinator is loading, the group does not exist yet
            return state
        committed = [tp for tp in result.topic_partitions or [] if tp.offset >= 0]
        if not committed:
            return state
        ends = self._ends([TopicPartition(tp.topic, tp.partition) for tp in committed])
        state.started = True
        for tp in committed:
            low, high = ends[(tp.topic, tp.partition)]
            state.total += max(0, high - low)
            state.done += max(0, min(tp.offset, high) - low)
        return state

    def _source(self, flow: Flow) -> FlowState:
        state = FlowState(flow.name)
        names = [n.strip() for n in self.settings.sis_entities.split(",") if n.strip()]
        topics = [entity(n).topic for n in names]
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if self._http is None:  # one client: a new one per read costs an SSL context
                self._http = httpx.Client(timeout=5)
            counts = self._http.get(f"{self.sis_url}/_sim/health").json()["counts"]
            state.total = sum(int(counts.get(n, 0)) for n in names)
        try:
            meta = self.admin.list_topics(timeout=10)
        except Exception:
            return state
        parts = [TopicPartition(t, p) for t in topics if t in meta.topics for p in meta.topics[t].partitions]
        ends = self._ends(parts)
        state.done = sum(high - low for low, high in ends.values())
        state.started = state.done > 0
        state.total = max(state.total, state.done)
        return state


def health(url: str) -> tuple[bool, Any]:
    """A program's ``/healthz``: (healthy, its JSON or the error)."""
    try:
        r = httpx.get(url, timeout=3)
        return r.is_success, r.json()
    except (httpx.HTTPError, ValueError) as exc:
        return False, str(exc)


# --- latency ---------------------------------------------------------------------------------

#: (label, port setting, histogram): what the status line shows, from the programs' /metrics
LATENCIES = (
    ("SIS->LMS", "lms_sink_port", "sislms_lms_sink_latency_seconds"),
    ("grade->SIS", "passback_port", "sislms_passback_pipeline_seconds"),
)


def _buckets(text: str, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound, from Prometheus text."""
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                out[float(sample.labels["le"])] = out.get(float(sample.labels["le"]), 0.0) + sample.value
    return out


def bucket_percentile(buckets: Mapping[float, float], p: float) -> float | None:
    """The upper bound of the bucket holding the ``p``-th percentile (cumulative counts)."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = p / 100 * total
    for bound in bounds:
        if buckets[bound] >= rank:
            return bound
    return bounds[-1]


@dataclass
class Latencies:
    """p50 and p99 of each of :data:`LATENCIES` over the window since the previous read (the
    bucket bounds: "p99 <= 0.5 s"), from the programs' ``/metrics``."""

    settings: Settings
    _last: dict[str, dict[float, float]] = field(default_factory=dict)
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=2))

    def line(self) -> str:
        parts = []
        for label, port_setting, metric in LATENCIES:
            port = getattr(self.settings, port_setting)
            try:
                text = self._http.get(f"{_LOCAL}:{port}/metrics").text
            except httpx.HTTPError:
                continue
            now = _buckets(text, metric)
            before = self._last.get(label, {})
            self._last[label] = now
            window = {b: n - before.get(b, 0.0) for b, n in now.items()}
            p50, p99 = bucket_percentile(window, 50), bucket_percentile(window, 99)
            if p50 is None or p99 is None:
                continue
            parts.append(f"{label} p50{_bound(p50)} p99{_bound(p99)}")
        return " | ".join(parts)


def _bound(bound: float) -> str:
    return " >1 day" if math.isinf(bound) else f" <={bound:g} s"
