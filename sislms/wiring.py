"""Builds the kernel's objects from settings: the one place they are wired together."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streams.catalog import Catalog, load_catalog
from streams.endpoints import Endpoints, resolve_endpoints
from streams.kafka import admin_config, producer_config
from streams.registry import Registry
from streams.serde import Serdes
from streams.settings import Settings

__all__ = ["Kernel"]


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

    def producer(self, **extra: object) -> Producer:
        return Producer(producer_config(self.settings, self.endpoints.kafka_bootstrap, **extra))
