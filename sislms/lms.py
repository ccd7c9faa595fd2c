"""Builds the LMS side from settings: the Canvas simulator and the provisioning sink."""

from __future__ import annotations

import threading

from connectors.control import ControlServer
from connectors.sinks.canvas.apply import Provisioner
from connectors.sinks.canvas.client import CanvasClient
from connectors.sinks.canvas.sink import CanvasSink, load_id_map
from simulators.lms.app import Throttle
from simulators.lms.server import LmsConfig, LmsSimulator
from sislms.local_secrets import local_secret
from sislms.wiring import Kernel
from streams.dlq import DeadLetterPublisher
from streams.errors import ConfigError
from streams.kafka import client_config
from streams.settings import Settings

__all__ = ["build_lms_simulator", "build_sink", "lms_token", "lms_url", "run_sink"]

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
    settings: Settings, *, port: int | None = None, throttle: Throttle | None = None
) -> LmsSimulator:
    config = LmsConfig(
        port=settings.lms_simulator_port if port is None else port,
        token=lms_token(settings),
        throttle=throttle or Throttle(),
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
        client, ids, root_account=settings.lms_root_account, unenroll_task=settings.lms_unenroll_task
    )
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
    )


def run_sink(settings: Settings, stop: threading.Event) -> None:
    """Run the provisioning sink with its health/metrics endpoint until ``stop`` is set."""
    sink = build_sink(settings)
    control = ControlServer("127.0.0.1", settings.lms_sink_port, health=sink.health).start()
    try:
        sink.run(stop)
    finally:
        control.stop()
        sink.provisioner.client.close()
