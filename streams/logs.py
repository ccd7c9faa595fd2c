"""Logging set-up: one call at the entry point.

Log lines carry counts and ids of batches, never a student's personal data and never a
secret: modules log with ``logging.getLogger(__name__)`` and %-style arguments.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["configure_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Send logs to stderr, as text or as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request lines of the HTTP clients say nothing an operator needs (and can carry ids).
    for noisy in ("httpx", "httpx2", "httpcore", "faust.transport", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
