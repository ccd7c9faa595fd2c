"""Paging across a OneRoster collection: the ``X-Total-Count`` and ``Link`` headers.

The 1.2 OpenAPI files declare, on every collection read's 200 response, an ``X-Total-Count``
header ("the total number of resources that are available to be returned") and four links:
``next`` (offset + limit), ``last``, ``first`` and ``prev``; 1.1 recommended the same, as an
RFC 5988/8288 ``Link`` header. Our server sends both; our client follows ``next`` when it is there
and counts offsets itself when it is not (:func:`next_offset`).

Choices where the binding is silent:

- ``first`` is offset 0 and ``last`` the last page on the grid of ``limit`` from 0; ``next`` and
  ``prev`` step from the request's own offset (``prev`` never before 0, nor past ``last``).
  ``next`` is left out on the last page and ``prev`` on the first.
- Every other query parameter of the request (``filter``, ``sort``, ``fields``, anything else) is
  kept, in order; ``limit`` and ``offset`` go last, with the limit actually served.
- Links are absolute URLs, their query encoded as the binding's example is: ``%20`` for a space,
  ``%27`` for a quote, ``%3D`` for ``=``; commas stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

__all__ = [
    "encode_query",
    "link_header",
    "next_offset",
    "next_url",
    "page_offsets",
    "paging_headers",
    "parse_link_header",
    "total_count",
]

TOTAL_COUNT = "X-Total-Count"
LINK = "Link"
RELS = ("next", "last", "first", "prev")
_LINK_SPLIT = re.compile(r",\s*(?=<)")
_LINK_VALUE = re.compile(r"\s*<([^>]*)>(.*)", re.DOTALL)


def encode_query(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """A query string encoded as the binding's examples are (``%20`` for space, not ``+``)."""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    return urlencode(pairs, quote_via=quote, safe=",")


def page_offsets(*, offset: int, limit: int, total: int) -> dict[str, int]:
    """The offset of each page link that applies, keyed by relation, in the OpenAPI's order."""
    if limit < 1 or offset < 0 or total < 0:
        raise ValueError("limit must be at least 1, offset and total at least 0")
    last = ((total - 1) // limit) * limit if total else 0
    out: dict[str, int] = {}
    if offset + limit < total:
        out["next"] = offset + limit
    out["last"] = last
    out["first"] = 0
    if offset > 0:
        out["prev"] = min(max(offset - limit, 0), last)
    return out


def link_header(request_url: str, *, offset: int, limit: int, total: int) -> str:
    """The ``Link`` header value for the page served at ``request_url``.

    Args:
        request_url: the absolute URL of the request, with its query string.
        offset: the offset served.
        limit: the limit served (after any lowering to the server's maximum).
        total: the number of records the query matches.
    """
    parts = urlsplit(request_url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("limit", "offset")]
    links = []
    for rel, page in page_offsets(offset=offset, limit=limit, total=total).items():
        query = encode_query([*kept, ("limit", str(limit)), ("offset", str(page))])
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        links.append(f'<{url}>; rel="{rel}"')
    return ", ".join(links)


def paging_headers(request_url: str, *, offset: int, limit: int, total: int) -> dict[str, str]:
    """``X-Total-Count`` and ``Link`` for a collection response."""
    return {
        TOTAL_COUNT: str(total),
        LINK: link_header(request_url, offset=offset, limit=limit, total=total),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    values = [v for k, v in headers.items() if k.lower() == wanted]
    return ", ".join(values) if values else None


def parse_link_header(value: str) -> dict[str, str]:
    """Relation -> URL, from a ``Link`` header (the first link of each relation wins)."""
    out: dict[str, str] = {}
    for part in _LINK_SPLIT.split(value.strip()):
        match = _LINK_VALUE.match(part)
        if match is None:
            continue
        url, params = match.groups()
        for param in params.split(";"):
            key, _, raw = param.partition("=")
            if key.strip().lower() != "rel":
                continue
            for rel in raw.strip().strip('"').split():
                out.setdefault(rel.lower(), url.strip())
    return out


def next_url(headers: Mapping[str, str], base_url: str | None = None) -> str | None:
    """The ``next`` link of a response, made absolute against ``base_url``; ``None`` on the last page
    or when the provider sends no ``Link`` header."""
    value = _header(headers, LINK)
    if not value:
        return None
    url = parse_link_header(value).get("next")
    if url is None:
        return None
    return urljoin(base_url, url) if base_url else url


def total_count(headers: Mapping[str, str]) -> int | None:
    """``X-Total-Count`` as a number, or ``None`` when absent or not a count."""
    value = _header(headers, TOTAL_COUNT)
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def next_offset(*, offset: int, returned: int, total: int | None = None) -> int | None:
    """The next page's offset when a provider sends no ``next`` link.

    Steps by the number of records returned, not by the limit asked, because a provider may serve
    fewer than asked (its own maximum). Without a total, only an empty page ends the walk: a short
    page might be a lowered limit, and stopping there could lose records.
    """
    if returned <= 0:
        return None
    following = offset + returned
    if total is not None and following >= total:
        return None
    return following
