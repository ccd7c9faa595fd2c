"""The other query parameters: parsing, checking against a collection, running, sending."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from connectors.oneroster.errors import (
    CodeMajor,
    CodeMinor,
    InvalidFilter,
    InvalidQuery,
    InvalidSelection,
    Severity,
)
from connectors.oneroster.filter import And, Operator, Predicate, parse
from connectors.oneroster.query import DEFAULT_LIMIT, DEFAULT_MAX_LIMIT, Query, SortOrder

USER_FIELDS = (
    "sourcedId",
    "status",
    "dateLastModified",
    "username",
    "givenName",
    "familyName",
    "roles",
    "grades",
    "email",
)


def user(n: int, family: str, modified: str, **extra: Any) -> dict[str, Any]:
    return {
        "sourcedId": f"u{n}",
        "status": "active",
        "dateLastModified": modified,
        "username": f"user{n}",
        "givenName": f"Given{n}",
        "familyName": family,
        **extra,
    }


USERS = [
    user(1, "Smith", "2026-09-01T08:00:00.000Z", grades=["09"]),
    user(2, "Jones", "2026-09-02T08:00:00Z", grades=["10"]),
    user(3, "smith", "2026-08-30T23:00:00.000Z"),
    user(4, "Adams", "2026-09-01T10:00:00+02:00", grades=["09", "10"]),  # 08:00Z, same instant as u1
    user(5, "Smith", "2026-09-03", status="tobedeleted"),
    {"sourcedId": "u6", "status": "active", "dateLastModified": "2026-09-04T00:00:00Z"},  # no familyName
]


# --- parsing ---------------------------------------------------------------------------------


def test_defaults() -> None:
    q = Query.parse({})
    assert q == Query()
    assert (q.limit, q.offset, q.sort, q.order_by, q.filter, q.fields) == (100, 0, None, None, None, None)
    assert DEFAULT_LIMIT == 100


def test_every_parameter_is_read() -> None:
    q = Query.parse(
        {
            "limit": "25",
            "offset": "50",
            "sort": "familyName",
            "orderBy": "desc",
            "filter": "status='active' AND familyName~'smi'",
            "fields": "sourcedId, familyName,givenName",
            "access_token": "ignored",
        }
    )
    assert q.limit == 25 and q.offset == 50
    assert q.sort == "familyName" and q.order_by is SortOrder.DESC
    assert q.filter == And(
        (Predicate("status", Operator.EQ, "active"), Predicate("familyName", Operator.CONTAINS, "smi"))
    )
    assert q.fields == ("sourcedId", "familyName", "givenName")


def test_limit_above_the_maximum_is_lowered() -> None:
    assert Query.parse({"limit": "5000"}).limit == DEFAULT_MAX_LIMIT
    assert Query.parse({"limit": "5000"}, max_limit=250).limit == 250
    assert Query.parse({"limit": "200"}, max_limit=250).limit == 200
    with pytest.raises(ValueError, match="max_limit"):
        Query.parse({}, max_limit=0)


@pytest.mark.parametrize(
    ("params", "parameter", "message"),
    [
        ({"limit": "0"}, "limit", "limit must be at least 1, got 0"),
        ({"limit": "-1"}, "limit", "limit must be at least 1, got -1"),
        ({"limit": "abc"}, "limit", "limit must be a whole number, got 'abc'"),
        ({"limit": "1.5"}, "limit", "limit must be a whole number"),
        ({"limit": "1e3"}, "limit", "limit must be a whole number"),
        ({"limit": ""}, "limit", "limit is empty"),
        ({"limit": ["10", "20"]}, "limit", "limit is given 2 times"),
        ({"limit": "9" * 40}, "limit", "limit must be a whole number"),
        ({"offset": "-1"}, "offset", "offset must be at least 0, got -1"),
        ({"offset": "x"}, "offset", "offset must be a whole number"),
        ({"orderBy": "sideways"}, "orderBy", "orderBy must be 'asc' or 'desc', got 'sideways'"),
        ({"orderBy": ""}, "orderBy", "orderBy is empty"),
        ({"sort": " "}, "sort", "sort is empty"),
    ],
)
def test_malformed_parameters_are_invalid_data(params: dict[str, Any], parameter: str, message: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        Query.parse(params)
    error = caught.value
    assert type(error) is InvalidQuery
    assert message in str(error)
    assert error.parameter == parameter
    assert error.code_minor == CodeMinor.INVALID_DATA == "invaliddata"
    assert error.http_status == 400


def test_order_by_is_read_in_any_case_and_offset_zero_is_fine() -> None:
    q = Query.parse({"orderBy": "ASC", "offset": "0", "sort": "familyName"})
    assert q.order_by is SortOrder.ASC and q.offset == 0


def test_bad_filter_is_invalid_filter_field() -> None:
    with pytest.raises(InvalidFilter) as caught:
        Query.parse({"filter": "familyName='jones' AND"})
    assert caught.value.code_minor == "invalid_filter_field"
    assert caught.value.column == 23
    with pytest.raises(InvalidFilter, match="expected a field name"):
        Query.parse({"filter": ""})
    with pytest.raises(InvalidFilter, match="given 2 times"):
        Query.parse([("filter", "a='1'"), ("filter", "b='2'")])


@pytest.mark.parametrize("fields", ["", " ", "givenName,,familyName", "givenName,", ",givenName"])
def test_blank_selection_is_an_invalid_request(fields: str) -> None:
    with pytest.raises(InvalidSelection) as caught:
        Query.parse({"fields": fields})
    assert caught.value.code_minor == CodeMinor.INVALID_SELECTION_FIELD
    assert caught.value.http_status == 400
    assert caught.value.parameter == "fields"


def test_fields_as_a_repeated_parameter_and_duplicates() -> None:
    q = Query.parse([("fields", "givenName,familyName"), ("fields", "sourcedId"), ("fields", "givenName")])
    assert q.fields == ("givenName", "familyName", "sourcedId")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "10", "offset": "20", "filter": "status='active'"},
        [("limit", "10"), ("offset", "20"), ("filter", "status='active'")],
        parse_qs("limit=10&offset=20&filter=status%3D%27active%27"),
        httpx.QueryParams("limit=10&offset=20&filter=status%3D%27active%27"),
    ],
)
def test_params_in_any_usual_shape(params: Any) -> None:
    assert Query.parse(params) == Query(
        limit=10, offset=20, filter=Predicate("status", Operator.EQ, "active")
    )


def test_direct_construction_is_validated_and_coerced() -> None:
    q = Query(order_by="DESC", filter="a='1'", fields=["a", "b"])  # type: ignore[arg-type]
    assert q.order_by is SortOrder.DESC
    assert q.filter == parse("a='1'")
    assert q.fields == ("a", "b")
    with pytest.raises(InvalidQuery, match="limit must be at least 1"):
        Query(limit=0)
    with pytest.raises(InvalidQuery, match="whole number"):
        Query(limit=True)
    with pytest.raises(InvalidQuery, match="offset must be at least 0"):
        Query(offset=-5)
    with pytest.raises(InvalidSelection):
        Query(fields=())
    with pytest.raises(InvalidSelection):
        Query(fields="givenName")  # type: ignore[arg-type]


# --- the client side -------------------------------------------------------------------------


def test_to_params() -> None:
    q = Query(
        limit=50,
        offset=100,
        sort="dateLastModified",
        order_by=SortOrder.ASC,
        filter=parse("dateLastModified>'2026-09-01T00:00:00Z' AND status='active'"),
        fields=("sourcedId", "dateLastModified"),
    )
    assert q.to_params() == {
        "limit": "50",
        "offset": "100",
        "sort": "dateLastModified",
        "orderBy": "asc",
        "filter": "dateLastModified>'2026-09-01T00:00:00Z' AND status='active'",
        "fields": "sourcedId,dateLastModified",
    }
    assert Query.parse(q.to_params()) == q
    assert Query().to_params() == {"limit": "100", "offset": "0"}


# --- checking against a collection -----------------------------------------------------------


def test_unknown_filter_field_is_an_error_with_no_data() -> None:
    q = Query.parse({"filter": "status='active' AND shoeSize>'40' OR zodiac='leo'"})
    with pytest.raises(InvalidFilter) as caught:
        q.check(USER_FIELDS)
    assert "'shoeSize', 'zodiac'" in str(caught.value)
    assert caught.value.code_minor == "invalid_filter_field"


def test_a_dotted_path_is_known_by_its_first_segment() -> None:
    q = Query.parse({"filter": "roles.org.sourcedId='s1'", "sort": "roles.role"})
    assert q.check(USER_FIELDS) == (q, ())


def test_unknown_sort_field_falls_back_to_the_default_order_with_a_warning() -> None:
    q = Query.parse({"sort": "shoeSize", "orderBy": "desc", "limit": "5"})
    checked, warnings = q.check(USER_FIELDS)
    assert checked == Query(limit=5)
    (warning,) = warnings
    assert (warning.code_major, warning.severity) == (CodeMajor.SUCCESS, Severity.WARNING)
    assert warning.code_minors == ("invalid_sort_field",)
    assert "shoeSize" in (warning.description or "")


def test_unknown_selection_field_returns_all_fields_with_a_warning() -> None:
    q = Query.parse({"fields": "givenName,shoeSize"})
    checked, warnings = q.check(USER_FIELDS)
    assert checked.fields is None
    (warning,) = warnings
    assert warning.code_minors == ("invalid_selection_field",)
    assert warning.severity is Severity.WARNING
    assert "shoeSize" in (warning.description or "")
    page, _ = checked.apply(USERS[:1])
    assert page == [USERS[0]]


# --- the server side -------------------------------------------------------------------------


def ids(page: list[dict[str, Any]]) -> list[str]:
    return [r["sourcedId"] for r in page]


def test_apply_filters_counts_before_paging_then_pages() -> None:
    q = Query.parse({"filter": "status='active'", "limit": "2", "offset": "1"})
    page, total = q.apply(USERS)
    assert total == 5
    assert ids(page) == ["u2", "u3"]


def test_apply_sorts_stably_ascending_and_descending_missing_last() -> None:
    page, total = Query.parse({"sort": "familyName"}).apply(USERS)
    assert total == 6
    assert ids(page) == ["u4", "u2", "u1", "u5", "u3", "u6"]  # code-point order: "S" < "s"; ties keep order
    page, _ = Query.parse({"sort": "familyName", "orderBy": "desc"}).apply(USERS)
    assert ids(page) == ["u3", "u1", "u5", "u2", "u4", "u6"]


def test_apply_sorts_dates_chronologically_whatever_their_spelling() -> None:
    page, _ = Query.parse({"sort": "dateLastModified"}).apply(USERS)
    assert ids(page) == ["u3", "u1", "u4", "u2", "u5", "u6"]


def test_apply_sorts_numeric_text_numerically() -> None:
    rows: list[dict[str, Any]] = [
        {"sourcedId": "a", "n": "10"},
        {"sourcedId": "b", "n": "9"},
        {"sourcedId": "c", "n": 9.5},
    ]
    page, _ = Query.parse({"sort": "n"}).apply(rows)
    assert ids(page) == ["b", "c", "a"]


def test_apply_selects_only_the_requested_fields() -> None:
    page, total = Query.parse({"fields": "familyName,sourcedId", "filter": "grades='09'"}).apply(USERS)
    assert total == 2
    assert page == [
        {"familyName": "Smith", "sourcedId": "u1"},
        {"familyName": "Adams", "sourcedId": "u4"},
    ]


def test_apply_past_the_end_is_an_empty_page_with_the_total() -> None:
    assert Query.parse({"offset": "100"}).apply(USERS) == ([], 6)


def test_apply_returns_copies() -> None:
    page, _ = Query().apply(USERS)
    page[0]["familyName"] = "changed"
    assert USERS[0]["familyName"] == "Smith"


def test_delta_poll_query_against_millisecond_timestamps() -> None:
    q = Query.parse({"filter": "dateLastModified>'2026-09-01T08:00:00Z'", "sort": "dateLastModified"})
    page, total = q.apply(USERS)
    assert ids(page) == ["u2", "u5", "u6"]
    assert total == 3
