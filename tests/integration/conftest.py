"""The real stack for integration tests: Kafka, the schema registry and PostgreSQL.

The session fixture starts the local stack (or uses the services the environment names through
SISLMS_KAFKA_BOOTSTRAP, SISLMS_SCHEMA_REGISTRY_URL, SISLMS_POSTGRES_DSN) and stops at the end
what it started itself. Factory fixtures make uuid-named topics so tests never share state.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sislms.stack import Stack
from sislms.wiring import Kernel
from streams.catalog import Catalog, load_catalog
from streams.settings import Settings
from streams.topology import apply


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    s = Stack(settings)
    was_running = {name: c.proc.pid() is not None for name, c in s.components.items()}
    s.up()
    yield s
    started = [n for n, c in s.components.items() if not c.external and not was_running[n]]
    if started:
        s.down(started)


@pytest.fixture(scope="session")
def kernel(stack: Stack, settings: Settings) -> Kernel:
    """The project's real topology, applied once per session."""
    k = Kernel(settings)
    result = apply(k.catalog, k.admin, k.registry, settings.replication_factor_cap)
    assert result.ok, result.failed
    return k


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_catalog(settings: Settings, tmp_path: Path, uid: str) -> Callable[..., Catalog]:
    """Write a topology file of uuid-named topics (and optional extra schemas); load it.

    ``topics`` are dicts as in deploy/topology.yaml; ``{uid}`` in a name is replaced by a fresh
    id, so every test has its own topics and subjects.
    """

    def make(
        topics: list[dict[str, Any]], extra_schemas: dict[str, str] | None = None, name: str = "topology.yaml"
    ) -> Catalog:
        schemas = tmp_path / "schemas"
        if not schemas.exists():
            shutil.copytree(settings.schemas_dir, schemas)
        for rel, text in (extra_schemas or {}).items():
            (schemas / rel).parent.mkdir(parents=True, exist_ok=True)
            (schemas / rel).write_text(text)
        doc = {
            "version": 1,
            "defaults": {"partitions": 3, "replication_factor": 1},
            "topics": [
                {
                    "description": "test topic",
                    "owner": "tests",
                    "cleanup_policy": "delete",
                    **t,
                    "name": t["name"].format(uid=uid),
                }
                for t in topics
            ],
        }
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return load_catalog(path, schemas)

    return make
