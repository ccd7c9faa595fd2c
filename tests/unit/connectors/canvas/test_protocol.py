"""Canvas protocol helpers: Rails-style parameters, page links, error bodies, throttle answers."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.canvas import error_message, is_rate_limited, nested_params, page_links, sis_ref
from connectors.oneroster import parse_link_header


def test_nested_params_build_dicts_and_lists() -> None:
    pairs = [
        ("user[name]", "Ann Lee"),
        ("pseudonym[unique_id]", "ann"),
        ("pseudonym[sis_user_id]", "s-1"),
        ("type[]", "StudentEnrollment"),
        ("type[]", "TeacherEnrollment"),
        ("a[b][c]", "deep"),
        ("plain", "x"),
        ("broken[", "kept"),
    ]
    assert nested_params(pairs) == {
        "user": {"name": "Ann Lee"},
        "pseudonym": {"unique_id": "ann", "sis_user_id": "s-1"},
        "type": ["StudentEnrollment", "TeacherEnrollment"],
        "a": {"b": {"c": "deep"}},
        "plain": "x",
        "broken[": "kept",
    }


def test_a_later_value_wins() -> None:
    assert nested_params([("user[name]", "a"), ("user[name]", "b")]) == {"user": {"name": "b"}}


def test_sis_refs_are_url_encoded() -> None:
    assert sis_ref("user", "s 1/2") == "sis_user_id:s%201%2F2"
    assert sis_ref("course", "c-1") == "sis_course_id:c-1"


@pytest.mark.parametrize(("page", "total", "rels"), [
    (1, 25, {"current": 1, "next": 2, "first": 1, "last": 3}),
    (2, 25, {"current": 2, "next": 3, "prev": 1, "first": 1, "last": 3}),
    (3, 25, {"current": 3, "prev": 2, "first": 1, "last": 3}),
    (1, 0, {"current": 1, "first": 1, "last": 1}),
])  # fmt: skip
def test_page_links_name_every_relation_and_keep_the_query(
    page: int, total: int, rels: dict[str, int]
) -> None:
    url = f"http://lms/api/v1/x?type%5B%5D=T&page={page}&per_page=10"
    header = page_links(url, page=page, per_page=10, total=total)
    links = parse_link_header(header)
    assert set(links) == set(rels)
    for rel, number in rels.items():
        query = parse_qs(urlsplit(links[rel]).query)
        assert query["page"] == [str(number)] and query["per_page"] == ["10"] and query["type[]"] == ["T"]


def test_error_messages_of_every_shape() -> None:
    assert error_message({"errors": [{"message": "The specified resource does not exist."}]}) == (
        "The specified resource does not exist."
    )
    body = {"errors": {"sis_user_id": [{"attribute": "sis_user_id", "type": "taken", "message": "in use"}]}}
    assert error_message(body) == "sis_user_id: in use"
    assert error_message({"message": "nope"}) == "nope"
    assert error_message("403 Forbidden (Rate Limit Exceeded)\n") == "403 Forbidden (Rate Limit Exceeded)"


def test_rate_limited_is_a_403_that_says_so() -> None:
    assert is_rate_limited(403, "403 Forbidden (Rate Limit Exceeded)\n")
    assert not is_rate_limited(403, '{"errors":[{"message":"user not authorized"}]}')
    assert not is_rate_limited(429, "Rate Limit Exceeded")
