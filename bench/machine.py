"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version

__all__ = ["describe"]


def describe(kafka_version: str) -> dict[str, str]:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f"{pages * size / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "kafka": kafka_version,
        "confluent-kafka": version("confluent-kafka"),
        "fastavro": version("fastavro"),
    }
