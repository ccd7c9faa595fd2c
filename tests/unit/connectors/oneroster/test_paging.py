"""Paging headers: built by our server, read by our client, and the two agree."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from connectors.oneroster.filter import parse
from connectors.oneroster.paging import (
    encode_query,
    link_header,
    next_offset,
    next_url,
    page_offsets,
    paging_headers,
    parse_link_header,
    total_count,
)
from connectors.oneroster.query import Query

BASE = "https://sis.example.org/ims/oneroster/rostering/v1p2/users"


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


@pytest.mark.parametrize(
    ("offset", "limit", "total", "expected"),
    [
        (0, 10, 35, {"next": 10, "last": 30, "first": 0}),  # first page: no prev
        (10, 10, 35, {"next": 20, "last": 30, "first": 0, "prev": 0}),
        (20, 10, 35, {"next": 30, "last": 30, "first": 0, "prev": 10}),
        (30, 10, 35, {"last": 30, "first": 0, "prev": 20}),  # last page: no next
        (0, 10, 30, {"next": 10, "last": 20, "first": 0}),  # an exact multiple
        (20, 10, 30, {"last": 20, "first": 0, "prev": 10}),
        (0, 100, 0, {"last": 0, "first": 0}),  # empty collection
        (0, 100, 7, {"last": 0, "first": 0}),  # one page
        (5, 10, 35, {"next": 15, "last": 30, "first": 0, "prev": 0}),  # off-grid offset: prev clamps at 0
        (90, 10, 35, {"last": 30, "first": 0, "prev": 30}),  # past the end: prev is the last page
    ],
)
def test_page_offsets(offset: int, limit: int, total: int, expected: dict[str, int]) -> None:
    got = page_offsets(offset=offset, limit=limit, total=total)
    assert got == expected
    assert list(got) == [r for r in ("next", "last", "first", "prev") if r in expected]


def test_page_offsets_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="limit"):
        page_offsets(offset=0, limit=0, total=5)


def test_link_header_middle_page_keeps_the_other_parameters() -> None:
    request = (
        f"{BASE}?filter=status%3D%27active%27%20AND%20familyName~%27O%27%27Brien%27"
        "&limit=10&offset=10&fields=sourcedId,familyName&sort=familyName"
    )
    links = parse_link_header(link_header(request, offset=10, limit=10, total=35))
    assert set(links) == {"next", "last", "first", "prev"}
    for rel, offset in {"next": 20, "last": 30, "first": 0, "prev": 0}.items():
        url = links[rel]
        assert url.startswith(BASE + "?")
        params = query_of(url)
        assert params == {
            "filter": "status='active' AND familyName~'O''Brien'",
            "fields": "sourcedId,familyName",
            "sort": "familyName",
            "limit": "10",
            "offset": str(offset),
        }
    # encoded as the binding's example is: %27 quotes, %3D equals, %20 spaces; commas kept
    assert "filter=status%3D%27active%27%20AND%20familyName~%27O%27%27Brien%27" in links["next"]
    assert "fields=sourcedId,familyName" in links["next"]
    assert "+" not in links["next"]


def test_link_header_uses_the_limit_served_and_drops_the_fragment() -> None:
    header = link_header(BASE + "?limit=5000#frag", offset=0, limit=1000, total=2500)
    links = parse_link_header(header)
    assert query_of(links["next"]) == {"limit": "1000", "offset": "1000"}
    assert query_of(links["last"]) == {"limit": "1000", "offset": "2000"}
    assert "#" not in header


def test_link_header_first_and_last_pages() -> None:
    first = parse_link_header(link_header(BASE, offset=0, limit=10, total=35))
    assert set(first) == {"next", "last", "first"}
    last = parse_link_header(link_header(BASE + "?offset=30&limit=10", offset=30, limit=10, total=35))
    assert set(last) == {"last", "first", "prev"}
    assert next_url({"Link": link_header(BASE, offset=30, limit=10, total=35)}) is None


def test_link_header_format() -> None:
    header = link_header(BASE + "?limit=2", offset=0, limit=2, total=3)
    assert header == (
        f'<{BASE}?limit=2&offset=2>; rel="next", '
        f'<{BASE}?limit=2&offset=2>; rel="last", '
        f'<{BASE}?limit=2&offset=0>; rel="first"'
    )


def test_paging_headers() -> None:
    headers = paging_headers(BASE, offset=0, limit=10, total=35)
    assert headers["X-Total-Count"] == "35"
    assert 'rel="next"' in headers["Link"]
    assert total_count(headers) == 35


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://a/x?offset=2>; rel="next"', {"next": "https://a/x?offset=2"}),
        ("<https://a/x?offset=2>;rel=next", {"next": "https://a/x?offset=2"}),
        (
            '<https://a/x?f=a,b&o=2>; rel="next", <https://a/x?o=0>; rel="first"',
            {"next": "https://a/x?f=a,b&o=2", "first": "https://a/x?o=0"},
        ),
        (
            '<https://a/x?o=0>; title="start"; rel="first prev"',
            {"first": "https://a/x?o=0", "prev": "https://a/x?o=0"},
        ),
        ('<https://a/1>; rel="next", <https://a/2>; rel="next"', {"next": "https://a/1"}),
        ('<https://a/1>; rel="NEXT"', {"next": "https://a/1"}),
        ("garbage", {}),
        ("", {}),
    ],
)
def test_parse_link_header(header: str, expected: dict[str, str]) -> None:
    assert parse_link_header(header) == expected


def test_next_url_reads_headers_in_any_case_and_resolves_relative_links() -> None:
    assert next_url({"link": '</v1p2/users?offset=2>; rel="next"'}, BASE) == (
        "https://sis.example.org/v1p2/users?offset=2"
    )
    assert next_url(httpx.Headers({"LINK": f'<{BASE}?offset=4>; rel="next"'})) == f"{BASE}?offset=4"
    assert next_url({}) is None
    assert next_url({"Link": f'<{BASE}>; rel="first"'}) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-total-count": "42"}, 42),
        ({"X-Total-Count": " 0 "}, 0),
        ({"X-Total-Count": "-1"}, None),
        ({"X-Total-Count": "many"}, None),
        ({}, None),
    ],
)
def test_total_count(headers: dict[str, str], expected: int | None) -> None:
    assert total_count(headers) == expected


@pytest.mark.parametrize(
    ("offset", "returned", "total", "expected"),
    [
        (0, 100, 250, 100),
        (200, 50, 250, None),  # reached the total
        (0, 0, None, None),  # an empty page ends the walk
        (0, 40, None, 40),  # short page without a total: maybe a lowered limit, keep going
        (0, 40, 40, None),
    ],
)
def test_next_offset(offset: int, returned: int, total: int | None, expected: int | None) -> None:
    assert next_offset(offset=offset, returned=returned, total=total) == expected


def test_encode_query() -> None:
    assert encode_query({"filter": "a='1' AND b>'2'", "fields": "a,b"}) == (
        "filter=a%3D%271%27%20AND%20b%3E%272%27&fields=a,b"
    )


def test_server_and_client_walk_every_page_exactly_once() -> None:
    """Our server answers with the query module and these headers; our client follows ``next``."""
    records: list[dict[str, Any]] = [
        {"sourcedId": f"u{i:03}", "status": "active" if i % 4 else "tobedeleted", "familyName": f"F{i % 7}"}
        for i in range(1, 101)
    ]

    def serve(url: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        query = Query.parse(query_of(url), max_limit=10)
        page, total = query.apply(records)
        return page, paging_headers(url, offset=query.offset, limit=query.limit, total=total)

    start = Query(limit=25, sort="familyName", filter=parse("status='active'"), fields=("sourcedId",))
    url: str | None = f"{BASE}?{encode_query(start.to_params())}&vendorParam=kept"
    seen: list[str] = []
    requests = 0
    while url is not None:
        requests += 1
        page, headers = serve(url)
        assert total_count(headers) == 75
        seen.extend(r["sourcedId"] for r in page)
        url = next_url(headers, BASE)
        if url is not None:
            followed = Query.parse(query_of(url), max_limit=10)
            assert followed.filter == start.filter and followed.sort == "familyName"
            assert followed.fields == ("sourcedId",) and followed.limit == 10
            assert query_of(url)["vendorParam"] == "kept"
    assert requests == 8  # 75 records, limit lowered from 25 to 10
    assert len(seen) == 75 and len(set(seen)) == 75
    expected, _ = Query(limit=1000, sort="familyName", filter=parse("status='active'")).apply(records)
    assert seen == [r["sourcedId"] for r in expected]
