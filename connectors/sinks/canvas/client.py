"""A Canvas REST client for the provisioning sink: Bearer token, retries that honour Canvas's
throttling, and answers sorted by what to do next.

- ``403 Forbidden (Rate Limit Exceeded)`` (Canvas's throttle, no ``Retry-After``), 429, 5xx,
  timeouts and dropped connections are retried with exponential backoff and jitter
  (``Retry-After`` wins when sent), up to ``max_retries``; then :class:`CanvasUnavailable`
  (retriable: the sink tries the command again later, it never drops it).
- While ``X-Rate-Limit-Remaining`` is below ``low_share`` of the most it has been (Canvas's
  bucket is 700), calls are spaced out before Canvas has to refuse them.
- 404 is an answer (``None``) for lookups; any other 4xx is :class:`CanvasRejected` (skippable:
  the command goes to the dead-letter topic with Canvas's reason).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.canvas.protocol import RATE_LIMIT_REMAINING, error_message, error_types, is_rate_limited
from connectors.oneroster.paging import next_url
from connectors.retry import backoff_delay
from streams.errors import RetriableError, SkippableError

__all__ = ["PER_PAGE", "CanvasClient", "CanvasRejected", "CanvasUnavailable"]

#: objects asked for in each page of a paginated list (Canvas caps most lists at 100)
PER_PAGE = 100

log = logging.getLogger(__name__)


class CanvasRejected(SkippableError):
    """Canvas refused the request (4xx other than 404 and throttling): this command, not later."""

    reason = "lms_rejected"

    def __init__(
        self, status: int, message: str, method: str, path: str, types: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message
        self.types = types  #: the validation errors' types (``taken``: a SIS id in use)


class CanvasUnavailable(RetriableError):
    """Canvas did not answer usefully after every retry (throttled, 5xx, unreachable)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, retry_after=None)
        self.status = status


class CanvasClient:
    """Calls one Canvas instance's REST API (``<base_url>/api/v1``).

    Args:
        base_url: the instance's root URL.
        token: the API access token (never logged).
        max_retries: attempts after the first for a transient failure.
        low_share: below this share of the highest ``X-Rate-Limit-Remaining`` seen, calls are
            spaced out (0 turns pacing off).
        transport: an ``httpx`` transport (``MockTransport`` in unit tests).
        sleep: injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 8,
        max_backoff_s: float = 30.0,
        low_share: float = 0.15,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = base_url.rstrip("/") + "/api/v1"
        self.http = httpx.Client(
            timeout=timeout_s,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        self.max_retries = max_retries
        self.max_backoff_s = max_backoff_s
        self.low_share = low_share
        self._peak = 0.0
        self.sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        #: counters for metrics and logs
        self.calls = 0
        self.retries = 0
        self.throttled = 0
        self.remaining: float | None = None
        self.last_status: int | None = None

    def close(self) -> None:
        self.http.close()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return backoff_delay(attempt, retry_after, self.max_backoff_s, self._rng)

    def _pace(self) -> None:
        remaining = self.remaining
        if remaining is None or self.low_share <= 0:
            return
        self._peak = max(self._peak, remaining)
        low = self._peak * self.low_share
        if remaining < low:
            # let the bucket drain a little; the emptier, the longer
            self.sleep(0.05 + 0.45 * (1 - remaining / low))

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
        """One API call; the decoded JSON body, or ``None`` for a 404 when ``missing_ok``.
        ``content`` is sent as the raw body (an SIS import's file), typed ``content_type``."""
        upload = None if content is None else (content, content_type or "application/octet-stream")
        return self._call(method, path, json, params, missing_ok, upload).body

    def _call(
        self,
        method: str,
        path: str,
        json: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        missing_ok: bool,
        upload: tuple[bytes, str] | None = None,
    ) -> _Answer:
        attempt = 0
        while True:
            self._pace()
            answer = self._once(method, path, json, params, upload)
            if answer.problem is None:
                if answer.status == 404 and not missing_ok:
                    raise CanvasRejected(404, error_message(answer.body), method, path)
                return answer
            if attempt >= self.max_retries:
                raise CanvasUnavailable(
                    f"{method} {path}: {answer.problem} after {attempt} retries", answer.status
                )
            delay = self._backoff(attempt, answer.retry_after)
            attempt += 1
            with self._lock:
                self.retries += 1
            log.warning(
                "canvas %s %s: %s; retry %d/%d in %.1f s",
                method,
                path,
                answer.problem,
                attempt,
                self.max_retries,
                delay,
            )
            self.sleep(delay)

    def _once(
        self,
        method: str,
        path: str,
        json: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        upload: tuple[bytes, str] | None = None,
    ) -> _Answer:
        try:
            if upload is None:
                response = self.http.request(method, self.api + path, json=json, params=params)
            else:
                response = self.http.request(
                    method, self.api + path, params=params, content=upload[0],
                    headers={"Content-Type": upload[1]},
                )  # fmt: skip
        except httpx.TransportError as exc:
            return _Answer(exc.__class__.__name__, None, None, None, {})
        status = response.status_code
        with self._lock:
            self.calls += 1
            self.last_status = status
            remaining = _number(response.headers.get(RATE_LIMIT_REMAINING))
            if remaining is not None:
                self.remaining = remaining
        retry_after = _number(response.headers.get("Retry-After"))
        if is_rate_limited(status, response.text):
            with self._lock:
                self.throttled += 1
            return _Answer("throttled (403 Rate Limit Exceeded)", retry_after, status, None, {})
        if status == 429 or status >= 500:
            return _Answer(f"HTTP {status}", retry_after, status, None, {})
        body: Any
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text
        if 400 <= status < 500 and status != 404:
            raise CanvasRejected(status, error_message(body), method, path, error_types(body))
        return _Answer(None, None, status, None if status == 404 else body, response.headers)

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every object of a paginated list, following ``Link: rel="next"``."""
        out: list[Any] = []
        url: str | None = self.api + path
        query: Mapping[str, Any] | None = {"per_page": PER_PAGE, **(params or {})}
        while url is not None:
            answer = self._call("GET", url[len(self.api) :], None, query, False)
            out += answer.body if isinstance(answer.body, list) else []
            url = next_url(answer.headers)
            if url is not None and not url.startswith(self.api):
                raise CanvasUnavailable(f"GET {path}: a next link outside the API: {url[:100]}")
            query = None  # the next link carries the query
        return out


@dataclass(frozen=True)
class _Answer:
    problem: str | None  # a transient failure to retry, or None
    retry_after: float | None
    status: int | None
    body: Any
    headers: Mapping[str, str]


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
