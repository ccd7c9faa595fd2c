"""A long-running connector's small HTTP face: health, metrics and (sources) the change trigger.

- ``POST /trigger``: the SIS announces a change (its webhook): a delta pull starts at once.
  With a webhook secret set, the caller must send ``Authorization: Bearer <secret>``. Only for
  a connector that takes triggers (``on_trigger``); 404 otherwise.
- ``GET /healthz``: the source's state as JSON (200 while its last run succeeded, 503 otherwise).
- ``GET /metrics``: Prometheus text format.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["ControlServer"]

log = logging.getLogger(__name__)


class ControlServer:
    """Serves ``/trigger``, ``/healthz`` and ``/metrics`` from a daemon thread.

    Args:
        host, port: where to listen (port 0 picks a free one; see :attr:`port`).
        on_trigger: called for every accepted trigger (None: no ``/trigger``).
        health: returns (healthy, details) for ``/healthz``.
        secret: the webhook's bearer secret; None accepts any caller (bind to loopback then).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_trigger: Callable[[], None] | None = None,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        secret: str | None = None,
    ) -> None:
        outer = self
        self.triggers = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # requests are counted, not logged one by one

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)  # the payload only says "something changed"
                if self.path.rstrip("/") != "/trigger" or on_trigger is None:
                    self._send(404, b'{"error": "POST /trigger"}')
                    return
                if secret is not None:
                    given = self.headers.get("Authorization", "")
                    if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
                        self._send(401, b'{"error": "missing or wrong bearer secret"}')
                        return
                outer.triggers += 1
                on_trigger()
                self._send(202, b'{"accepted": true}')

            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    healthy, details = health()
                    self._send(200 if healthy else 503, json.dumps(details, default=str).encode())
                else:
                    self._send(404, b'{"error": "GET /healthz or /metrics"}')

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="connector-control", daemon=True
        )

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
