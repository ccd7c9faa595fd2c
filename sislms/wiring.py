"""Builds the kernel's objects from settings: the one place they are wired together."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from connectors.control import ControlServer
from streams.catalog import Catalog, load_catalog
from streams.dlq import DeadLetterPublisher
from streams.endpoints import Endpoints, resolve_endpoints
from streams.kafka import admin_config, consumer_config, producer_config
from streams.registry import Registry
from streams.serde import Serdes
from streams.settings import Settings

__all__ = ["Kernel", "Worker", "run_with_health"]


@dataclass
class Kernel:
    settings: Settings

    @cached_property
    def endpoints(self) -> Endpoints:
        return resolve_endpoints(self.settings)

    @cached_property
    def catalog(self) -> Catalog:
        return load_catalog(self.settings.topology_file, self.settings.schemas_dir)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.endpoints.schema_registry_url, self.settings)

    @cached_property
    def admin(self) -> AdminClient:
        conf = admin_config(self.settings, self.endpoints.kafka_bootstrap)
        conf["log_level"] = 3
        return AdminClient(conf)

    @cached_property
    def serdes(self) -> Serdes:
        return Serdes(self.registry, self.catalog)

    def close(self) -> None:
        """Let the cached Kafka admin client go (its threads end with it): before the stack it
        talks to stops, or librdkafka logs each refused reconnection to standard error."""
        if self.__dict__.pop("admin", None) is not None:
            gc.collect()

    def producer(self, **extra: object) -> Producer:
        return Producer(producer_config(self.settings, self.endpoints.kafka_bootstrap, **extra))

    def processor_parts(self, group: str) -> dict[str, Any]:
        """The keyword arguments every consumer-group processor that builds its own records is
        made with: ``consumer_conf`` for ``group``, a ``producer``, non-validating ``serdes``
        (the records are built in code) and the ``dead_letters`` publisher on that producer."""
        producer = self.producer()
        serdes = Serdes(self.registry, self.catalog, validate=False)
        return {
            "consumer_conf": consumer_config(self.settings, self.endpoints.kafka_bootstrap, group),
            "producer": producer,
            "serdes": serdes,
            "dead_letters": DeadLetterPublisher(producer, serdes, self.catalog),
        }


class Worker(Protocol):
    """A long-running consumer: runs until ``stop`` is set and says how it is."""

    def run(self, stop: threading.Event) -> None: ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...


def run_with_health(worker: Worker, port: int, stop: threading.Event) -> None:
    """Run ``worker`` with its ``/healthz`` and ``/metrics`` on ``port`` (127.0.0.1) until
    ``stop`` is set."""
    control = ControlServer("127.0.0.1", port, health=worker.health).start()
    try:
        worker.run(stop)
    finally:
        control.stop()
