"""A OneRoster 1.2 REST client: one collection page at a time, with retries that honour the
provider, and paging that survives short and empty pages.

- Authentication: :class:`connectors.oneroster.auth.ClientCredentials` (cached token, one
  refresh on 401).
- 429 and 5xx, timeouts and dropped connections are retried with exponential backoff and
  jitter; ``Retry-After`` wins when the provider sends it.
- A 2xx answer that is not the expected JSON (an HTML error page from a proxy, a cut-off body)
  is retried the same way; when it persists, :class:`BadPayload` carries the original bytes so
  the caller can dead-letter them and fail the run without advancing its bookmark.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx

from connectors.oneroster.auth import ClientCredentials
from connectors.oneroster.errors import error_from_response
from connectors.oneroster.models import Entity
from connectors.oneroster.paging import total_count
from connectors.oneroster.query import Query
from connectors.retry import backoff_delay
from streams.errors import RetriableError, SkippableError

__all__ = ["BadPayload", "OneRosterClient", "Page"]

_T = TypeVar("_T")

log = logging.getLogger(__name__)


class BadPayload(SkippableError, RetriableError):
    """A successful status with a body that is not the collection's JSON."""

    reason = "malformed_response"

    def __init__(self, message: str, *, url: str, body: bytes) -> None:
        RetriableError.__init__(self, message, retry_after=None)
        self.url = url
        self.body = body


@dataclass(frozen=True)
class Page:
    records: list[Any]
    total: int | None
    url: str


class OneRosterClient:
    """Reads a OneRoster 1.2 provider.

    Args:
        base_url: the provider's root (the part before ``/ims/oneroster/...``).
        auth: the client-credentials auth.
        timeout_s: per request.
        max_retries: attempts after the first before a retriable failure is raised.
        transport: an ``httpx`` transport (``MockTransport`` in unit tests).
        sleep: injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        auth: ClientCredentials,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 8,
        max_backoff_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            auth=auth, timeout=timeout_s, transport=transport, headers={"Accept": "application/json"}
        )
        self.max_retries = max_retries
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.retries = 0
        self._rng = random.Random()

    def close(self) -> None:
        self.http.close()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return backoff_delay(attempt, retry_after, self.max_backoff_s, self._rng)

    def get_page(self, entity: Entity, query: Query) -> Page:
        """One page of a collection, retried while the failure is transient."""
        url = self.base_url + entity.path
        return self._retrying(entity, lambda: self._get_once(url, entity, query))

    def get_one(self, entity: Entity, sourced_id: str) -> dict[str, Any]:
        """One record by ``sourcedId``; ``UnknownObject`` when the provider has none."""
        url = f"{self.base_url}{entity.path}/{sourced_id}"

        def once() -> dict[str, Any]:
            try:
                response = self.http.get(url)
            except httpx.TransportError as exc:
                raise RetriableError(f"{url}: {exc.__class__.__name__}: {exc}") from None
            if response.status_code >= 400:
                raise error_from_response(response.status_code, response.content, response.headers)
            try:
                record = response.json()[entity.singular]
            except (ValueError, KeyError, TypeError):
                raise BadPayload(
                    f"{entity.name}/{sourced_id}: not a {entity.singular} JSON object",
                    url=url,
                    body=response.content,
                ) from None
            if not isinstance(record, dict):
                raise BadPayload(
                    f"{entity.name}/{sourced_id}: not a JSON object", url=url, body=response.content
                )
            return record

        return self._retrying(entity, once)

    def put_one(self, entity: Entity, sourced_id: str, record: dict[str, Any]) -> int:
        """Create or replace one gradebook record (OneRoster 1.2 ``PUT``); the HTTP status (201
        made, 200 replaced). A 4xx raises a ``SkippableError`` naming the provider's reason."""
        url = f"{self.base_url}{entity.path}/{sourced_id}"
        body = {entity.singular: {**record, "sourcedId": sourced_id}}

        def once() -> int:
            try:
                response = self.http.put(url, json=body)
            except httpx.TransportError as exc:
                raise RetriableError(f"{url}: {exc.__class__.__name__}: {exc}") from None
            if response.status_code >= 400:
                raise error_from_response(response.status_code, response.content, response.headers)
            return response.status_code

        return self._retrying(entity, once)

    def _retrying(self, entity: Entity, call: Callable[[], _T]) -> _T:
        attempt = 0
        while True:
            try:
                return call()
            except RetriableError as exc:
                if attempt >= self.max_retries:
                    raise
                delay = self._backoff(attempt, exc.retry_after)
                attempt += 1
                self.retries += 1
                log.warning(
                    "%s %s: %s; retry %d/%d in %.1f s",
                    entity.name,
                    exc.__class__.__name__,
                    str(exc)[:200],
                    attempt,
                    self.max_retries,
                    delay,
                )
                self.sleep(delay)

    def _get_once(self, url: str, entity: Entity, query: Query) -> Page:
        try:
            response = self.http.get(url, params=query.to_params())
        except httpx.TransportError as exc:
            raise RetriableError(f"{url}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.content, response.headers)
        body = response.content
        try:
            payload = response.json()
        except ValueError:
            kind = response.headers.get("content-type", "?").split(";")[0]
            raise BadPayload(
                f"{entity.name}: HTTP {response.status_code} answer is not JSON ({kind})",
                url=str(response.url),
                body=body,
            ) from None
        records = payload.get(entity.name) if isinstance(payload, dict) else None
        if not isinstance(records, list):
            raise BadPayload(
                f"{entity.name}: the JSON answer has no {entity.name!r} list",
                url=str(response.url),
                body=body,
            )
        return Page(records, total_count(response.headers), str(response.url))

    def pages(self, entity: Entity, query: Query) -> Iterator[Page]:
        """Every page of a query by offset: stops on an empty page, or a short page when the
        provider sent no total; a short page with more to come (a provider's page cap) goes on.

        The next page is fetched while the caller works on the current one (one request ahead),
        so the provider's time and ours overlap.
        """

        def fetch(offset: int) -> Page:
            return self.get_page(entity, replace(query, offset=offset))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="oneroster-prefetch") as pool:
            page = fetch(query.offset)
            offset = query.offset
            while True:
                offset += len(page.records)
                more = bool(page.records) and (
                    offset < page.total if page.total is not None else len(page.records) >= query.limit
                )
                ahead = pool.submit(fetch, offset) if more else None
                try:
                    yield page
                except GeneratorExit:
                    if ahead is not None:
                        ahead.cancel()
                    raise
                if ahead is None:
                    return
                page = ahead.result()
