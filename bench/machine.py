"""The machine and the software the numbers were measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import confluent_kafka
import fastavro
import psutil

from sislms.stack.jars import JarSet
from streams.endpoints import Endpoints
from streams.settings import Settings

__all__ = ["describe", "render"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _first(version: Any) -> str:
    """confluent-kafka gives ``(str, int)`` pairs in some releases, a plain string in others."""
    return str(version[0] if isinstance(version, tuple) else version)


def describe(settings: Settings, endpoints: Endpoints) -> dict[str, Any]:
    if endpoints.kafka_external:
        kafka = f"external cluster at {endpoints.kafka_bootstrap} (version not probed)"
    else:
        kafka = f"{JarSet(settings.cache_dir).kafka_version} (local stack: 1 KRaft broker, loopback)"
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kafka": kafka,
        "confluent_kafka": _first(confluent_kafka.version()),
        "librdkafka": _first(confluent_kafka.libversion()),
        "fastavro": fastavro.__version__,
    }


def render(machine: dict[str, Any]) -> str:
    """One Markdown line naming the machine."""
    cores = f"{machine['logical_cpus']} logical CPUs"
    if machine.get("physical_cores"):
        cores += f" ({machine['physical_cores']} physical)"
    return (
        f"Machine: {machine['cpu_model']}, {cores}, {machine['memory_gib']} GiB RAM, {machine['os']}; "
        f"{machine['python']}; Kafka {machine['kafka']}; confluent-kafka {machine['confluent_kafka']} "
        f"(librdkafka {machine['librdkafka']}); fastavro {machine['fastavro']}."
    )
