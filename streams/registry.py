"""The schema registry, through confluent-kafka's ``SchemaRegistryClient``.

Any Confluent-compatible registry serves (Confluent, Apicurio's ``/apis/ccompat/v7``,
Karapace). This wrapper only turns the client's failures into errors that say what to do:
``ServiceUnavailable`` when the registry does not answer, ``SchemaIncompatible`` when it refuses
a version, ``ConfigError`` for anything else it rejects.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.errors import ConfigError, SchemaIncompatible, ServiceUnavailable
from streams.settings import Settings

__all__ = ["Registered", "Registry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registered:
    schema_id: int
    version: int


class Registry:
    def __init__(self, url: str, settings: Settings | None = None, timeout_s: float = 10) -> None:
        self.url = url
        conf: dict[str, Any] = {"url": url, "timeout": timeout_s}
        if settings and settings.schema_registry_basic_auth:
            conf["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
        self.client = SchemaRegistryClient(conf)
        self._by_id: dict[int, str] = {}

    # --- error translation -----------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except SchemaRegistryError:
            raise
        except Exception as exc:
            raise ServiceUnavailable(
                f"schema registry at {self.url} did not answer ({what}): {exc.__class__.__name__}: {exc}"
            ) from None

    # --- reads -------------------------------------------------------------------------------
    def subjects(self) -> list[str]:
        return list(self._call("list subjects", self.client.get_subjects))

    def lookup(self, subject: str, schema: dict[str, Any] | str) -> Registered | None:
        """The id and version of this exact schema under ``subject``; None if not registered."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        try:
            reg = self._call("lookup", self.client.lookup_schema, subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise ConfigError(f"registry refused the lookup in {subject}: {exc}") from None
        return Registered(int(reg.schema_id), int(reg.version))

    def latest_version(self, subject: str) -> int | None:
        """The newest version number under ``subject`` (read fresh: the client caches
        ``get_latest_version``, which would hide a version registered since)."""
        try:
            versions = self._call("list versions", self.client.get_versions, subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise ConfigError(f"registry refused to read {subject}: {exc}") from None
        return max(int(v) for v in versions) if versions else None

    def schema_text(self, schema_id: int) -> str:
        """The writer schema of ``schema_id`` (cached: ids are immutable)."""
        if schema_id not in self._by_id:
            try:
                s = self._call("schema by id", self.client.get_schema, schema_id)
            except SchemaRegistryError as exc:
                raise LookupError(f"schema id {schema_id} is unknown to the registry: {exc}") from None
            self._by_id[schema_id] = s.schema_str
        return self._by_id[schema_id]

    def compatibility(self, subject: str) -> str | None:
        """The subject's own compatibility level; None when it has none of its own."""
        try:
            return str(self._call("read config", self.client.get_compatibility, subject))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise ConfigError(f"registry refused to read the config of {subject}: {exc}") from None

    # --- writes ------------------------------------------------------------------------------
    def set_compatibility(self, subject: str, level: str) -> None:
        try:
            self._call("set config", self.client.set_compatibility, subject, level)
        except SchemaRegistryError as exc:
            raise ConfigError(f"registry refused compatibility {level} for {subject}: {exc}") from None

    def register(self, subject: str, schema: dict[str, Any] | str) -> Registered:
        """Register a version (or find the identical one); SchemaIncompatible if refused."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        try:
            schema_id = self._call("register", self.client.register_schema, subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise SchemaIncompatible(subject, exc.error_message) from None
            raise ConfigError(f"registry refused the schema for {subject}: {exc}") from None
        found = self.lookup(subject, text)
        version = found.version if found else -1
        log.info("registered %s version %s (id %s)", subject, version, schema_id)
        return Registered(int(schema_id), version)
