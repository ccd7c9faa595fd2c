"""Builds the LMS side from settings: the Canvas simulator, the provisioning sink, the event
receiver and the events processor."""

from __future__ import annotations

import threading
from pathlib import Path

from connectors.lms_events.receiver import EventReceiver
from connectors.oneroster.auth import ClientCredentials
from connectors.sinks.canvas.apply import Provisioner
from connectors.sinks.canvas.client import CanvasClient
from connectors.sinks.canvas.sink import CanvasSink, load_id_map
from connectors.sinks.oneroster_gradebook.passback import Passback
from connectors.sinks.oneroster_gradebook.sink import GradebookSink
from connectors.sources.oneroster_rest.client import OneRosterClient
from simulators.lms.app import Throttle
from simulators.lms.server import LmsConfig, LmsSimulator
from simulators.serving import AppServer
from sislms.local_secrets import local_secret
from sislms.wiring import Kernel, run_with_health
from streams.confirmed import ConfirmedProducer
from streams.dlq import DeadLetterPublisher
from streams.errors import ConfigError
from streams.kafka import client_config, consumer_config, producer_config
from streams.lms.processor import EventsProcessor
from streams.serde import Serdes
from streams.settings import Settings

__all__ = [
    "build_events_processor",
    "build_lms_simulator",
    "build_passback",
    "build_receiver",
    "build_sink",
    "events_token",
    "lms_token",
    "lms_url",
    "run_events_processor",
    "run_passback",
    "run_sink",
]

COMMANDS = "lms.provisioning.v1"
RESULTS = "lms.provisioning.results.v1"


def lms_token(settings: Settings) -> str:
    """The Canvas access token: from the environment, or (local simulator only) made once."""
    if settings.lms_token is not None:
        return settings.lms_token.get_secret_value()
    if settings.lms_url is not None:
        raise ConfigError("SISLMS_LMS_URL is set but SISLMS_LMS_TOKEN is not")
    return local_secret(settings.state_dir, "lms-token")


def lms_url(settings: Settings) -> str:
    return settings.lms_url or f"http://127.0.0.1:{settings.lms_simulator_port}"


def build_lms_simulator(
    settings: Settings,
    *,
    port: int | None = None,
    throttle: Throttle | None = None,
    state_file: Path | None = None,
    truth: bool = True,
) -> LmsSimulator:
    events = settings.lms_simulator_events
    config = LmsConfig(
        port=settings.lms_simulator_port if port is None else port,
        token=lms_token(settings),
        throttle=throttle or Throttle(),
        events_url=f"http://127.0.0.1:{settings.lms_events_port}/events" if events else None,
        events_token=events_token(settings) if events else "",
        events_format=settings.lms_simulator_events_format,
        events_senders=settings.lms_simulator_event_senders,
        state_file=state_file,
        truth=truth,
    )
    return LmsSimulator(config)


def build_sink(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    commands: str = COMMANDS,
    results: str = RESULTS,
    group: str = "sislms-canvas-sink",
    stage: str = "lms_sink",
) -> CanvasSink:
    """The provisioning sink, its id map loaded from the results topic."""
    kernel = kernel or Kernel(settings)
    catalog = kernel.catalog
    for name in (commands, results):
        catalog.topic(name)  # declared (ConfigError otherwise)
    serdes = kernel.serdes
    conf = client_config(settings, kernel.endpoints.kafka_bootstrap)
    ids = load_id_map(conf, serdes, results)
    client = CanvasClient(
        lms_url(settings),
        lms_token(settings),
        timeout_s=settings.lms_http_timeout_s,
        max_retries=settings.lms_max_retries,
    )
    provisioner = Provisioner(
        client, ids, root_account=settings.lms_root_account, unenroll_task=settings.lms_unenroll_task,
        holders=ids.holders,
    )  # fmt: skip
    producer = kernel.producer()
    return CanvasSink(
        consumer_conf={**conf, "group.id": group},
        producer=producer,
        serdes=serdes,
        dead_letters=DeadLetterPublisher(producer, serdes, catalog),
        provisioner=provisioner,
        ids=ids,
        commands_topic=commands,
        results_topic=results,
        lanes=settings.lms_sink_lanes,
        dependency_wait_s=settings.lms_sink_dependency_wait_s,
        stage=stage,
        bulk_min_backlog=settings.lms_sink_bulk_min_backlog,
        bulk_max_rows=settings.lms_sink_bulk_max_rows,
        bulk_max_wait_s=settings.lms_sink_bulk_max_wait_s,
    )


def run_sink(settings: Settings, stop: threading.Event) -> None:
    """Run the provisioning sink with its health/metrics endpoint until ``stop`` is set."""
    sink = build_sink(settings)
    try:
        run_with_health(sink, settings.lms_sink_port, stop)
    finally:
        sink.provisioner.client.close()


def events_token(settings: Settings) -> str:
    """The Bearer token LMS event senders present: from the environment, or made once locally."""
    if settings.lms_events_token is not None:
        return settings.lms_events_token.get_secret_value()
    return local_secret(settings.state_dir, "lms-events-token")


def build_receiver(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    port: int | None = None,
    raw_topic: str = "lms.events.raw.v1",
    stage: str = "lms_ingest",
) -> tuple[AppServer, EventReceiver, ConfirmedProducer]:
    """The event receiver and the server that runs it (not started)."""
    kernel = kernel or Kernel(settings)
    producer = ConfirmedProducer(
        producer_config(settings, kernel.endpoints.kafka_bootstrap, **{"message.max.bytes": 2_097_152}),
        name="lms-events-producer",
    )
    # The records are built here, not taken from outside: no per-record validation (5x faster).
    serdes = Serdes(kernel.registry, kernel.catalog, validate=False)
    receiver = EventReceiver(
        producer=producer,
        serdes=serdes,
        dead_letters=DeadLetterPublisher(kernel.producer(), kernel.serdes, kernel.catalog),
        token=events_token(settings),
        raw_topic=raw_topic,
        max_body_bytes=settings.lms_events_max_body_bytes,
        stage=stage,
        source=settings.lms_events_source,
    )
    server = AppServer(
        "lms-event-receiver",
        settings.lms_events_host,
        settings.lms_events_port if port is None else port,
        receiver.app,
    )
    return server, receiver, producer


def build_events_processor(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    group: str = "sislms-lms-events",
    raw_topic: str = "lms.events.raw.v1",
    dedup_topic: str = "lms.events.dedup.v1",
    topics: dict[str, str] | None = None,
    stage: str = "lms_ingest",
) -> EventsProcessor:
    """The events processor: raw LMS events deduplicated and ordered into the typed topics."""
    kernel = kernel or Kernel(settings)
    return EventsProcessor(
        **kernel.processor_parts(group),
        raw_topic=raw_topic,
        dedup_topic=dedup_topic,
        topics=topics,
        window_ms=int(settings.lms_events_dedup_window_s * 1000),
        max_ids=settings.lms_events_dedup_max_ids,
        stage=stage,
    )


def run_events_processor(settings: Settings, stop: threading.Event) -> None:
    """Run the events processor with its health/metrics endpoint until ``stop`` is set."""
    run_with_health(build_events_processor(settings), settings.lms_events_processor_port, stop)


def build_passback(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    group: str = "sislms-grade-passback",
    assignments: str = "lms.assignments.v1",
    grades: str = "lms.grades.v1",
    outcomes: str = "lms.grades.passback.v1",
    stage: str = "sis_gradebook",
) -> GradebookSink:
    """The grade passback: LMS assignments and grades written to the SIS gradebook."""
    from sislms.sis import client_secret, sis_url

    kernel = kernel or Kernel(settings)
    base = sis_url(settings)
    auth = ClientCredentials(
        settings.sis_token_url or f"{base}/oauth/token",
        settings.sis_client_id,
        client_secret(settings),
        ["roster-core.readonly", "gradebook.createput"],
    )
    sis = OneRosterClient(
        base, auth, timeout_s=settings.sis_http_timeout_s, max_retries=settings.sis_max_retries
    )
    lms = CanvasClient(
        lms_url(settings), lms_token(settings), timeout_s=settings.lms_http_timeout_s,
        max_retries=settings.lms_max_retries,
    )  # fmt: skip
    producer = kernel.producer()
    return GradebookSink(
        consumer_conf=consumer_config(settings, kernel.endpoints.kafka_bootstrap, group),
        producer=producer,
        serdes=kernel.serdes,
        dead_letters=DeadLetterPublisher(producer, kernel.serdes, kernel.catalog),
        passback=Passback(
            sis,
            lms,
            prefix=settings.passback_id_prefix,
            category_id=settings.passback_category_id,
            category_title=settings.passback_category_title,
        ),
        assignments_topic=assignments,
        grades_topic=grades,
        outcomes_topic=outcomes,
        stage=stage,
    )


def run_passback(settings: Settings, stop: threading.Event) -> None:
    """Run the grade passback with its health/metrics endpoint until ``stop`` is set."""
    run_with_health(build_passback(settings), settings.passback_port, stop)
