"""The topic catalog: ``deploy/topology.yaml`` read into frozen ``TopicSpec`` objects.

Topic names appear once, in the topology file; code asks the catalog for them. A file that does
not validate raises ``TopologyFileError`` naming the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.errors import ConfigError, TopologyFileError
from streams.schemas import Contract, SchemaSet
from streams.yamlfile import load_yaml

__all__ = ["Catalog", "TopicSpec", "load_catalog"]

TOPIC_NAME = re.compile(r"^[a-z][a-z0-9]*(\.[a-z][a-z0-9_]*)+\.v[1-9][0-9]*$")
Compatibility = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    partitions: int = Field(6, ge=1, le=10000)
    replication_factor: int = Field(3, ge=1, le=16)
    compatibility: Compatibility = "BACKWARD"
    config: dict[str, str] = Field(default_factory=dict)

    @field_validator("config", mode="before")
    @classmethod
    def _stringify(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v


class TopicSpec(_Strict):
    """One topic as declared: name, sizing, cleanup, contract, owner."""

    name: str
    description: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    cleanup_policy: Literal["compact", "delete", "compact,delete"]
    value_schema: str = Field(min_length=1, description="path under schemas/")
    key: Literal["string"] = "string"
    partitions: int | None = Field(None, ge=1, le=10000)
    replication_factor: int | None = Field(None, ge=1, le=16)
    retention_ms: int | None = Field(None, ge=-1)
    compatibility: Compatibility | None = None
    config: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TOPIC_NAME.match(v):
            raise ValueError(
                "must look like <domain>.<entity>.v<major> "
                "(lower case, e.g. sis.users.v1 or lms.events.raw.v1)"
            )
        return v

    @field_validator("config", mode="before")
    @classmethod
    def _stringify(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("config")
    @classmethod
    def _no_duplicated_knobs(cls, v: dict[str, str]) -> dict[str, str]:
        for key in ("cleanup.policy", "retention.ms"):
            if key in v:
                raise ValueError(f"set {key.replace('.', '_')} instead of config[{key!r}]")
        return v

    @property
    def subject(self) -> str:
        """The registry subject of the value schema (TopicNameStrategy)."""
        return f"{self.name}-value"

    @property
    def domain(self) -> str:
        return self.name.split(".", 1)[0]


class TopologyDoc(_Strict):
    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    topics: list[TopicSpec]


class Catalog:
    """The declared topics, each with its resolved sizing, config and contract."""

    def __init__(self, doc: TopologyDoc, schemas: SchemaSet, path: Path) -> None:
        self.path = path
        self.defaults = doc.defaults
        self.schemas = schemas
        self._topics = {t.name: t for t in doc.topics}

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self._topics.values())

    def __len__(self) -> int:
        return len(self._topics)

    def __contains__(self, name: object) -> bool:
        return name in self._topics

    def topic(self, name: str) -> TopicSpec:
        try:
            return self._topics[name]
        except KeyError:
            raise ConfigError(f"topic {name!r} is not declared in {self.path}") from None

    def dead_letter_topic(self, stage: str) -> TopicSpec:
        return self.topic(f"dlq.{stage}.v1")

    def contract(self, topic: TopicSpec | str) -> Contract:
        spec = self.topic(topic) if isinstance(topic, str) else topic
        return self.schemas.for_file(spec.value_schema)

    def partitions(self, t: TopicSpec) -> int:
        return t.partitions or self.defaults.partitions

    def replication_factor(self, t: TopicSpec) -> int:
        return t.replication_factor or self.defaults.replication_factor

    def compatibility(self, t: TopicSpec) -> str:
        return t.compatibility or self.defaults.compatibility

    def config(self, t: TopicSpec) -> dict[str, str]:
        """The topic-level configs to enforce on the cluster."""
        conf = dict(self.defaults.config)
        conf.update(t.config)
        conf["cleanup.policy"] = t.cleanup_policy
        if t.retention_ms is not None:
            conf["retention.ms"] = str(t.retention_ms)
        return conf


def load_catalog(path: Path, schemas_dir: Path) -> Catalog:
    """Read and validate the topology file against the contracts in ``schemas_dir``."""
    doc_file = load_yaml(path, TopologyFileError, "topology file")
    doc = doc_file.validate(TopologyDoc)

    schemas = SchemaSet.load(schemas_dir)
    seen: set[str] = set()
    for i, t in enumerate(doc.topics):
        line = doc_file.line_at(("topics", i, "name"))
        if t.name in seen:
            raise TopologyFileError(str(path), line, f"topics[{t.name}].name", "declared twice")
        seen.add(t.name)
        try:
            schemas.for_file(t.value_schema)
        except KeyError:
            raise TopologyFileError(
                str(path),
                doc_file.line_at(("topics", i, "value_schema")),
                f"topics[{t.name}].value_schema",
                f"no schema file {schemas_dir}/{t.value_schema}",
            ) from None
        if t.domain == "dlq" and not t.value_schema.startswith("dlq/"):
            raise TopologyFileError(
                str(path),
                line,
                f"topics[{t.name}].value_schema",
                "dead-letter topics use dlq/dead_letter.v1.avsc",
            )
    return Catalog(doc, schemas, path)
