"""``imsx_StatusInfo`` payloads and the errors that carry them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from connectors.oneroster.errors import (
    CodeMajor,
    CodeMinor,
    CodeMinorField,
    Forbidden,
    InvalidQuery,
    InvalidSelection,
    OneRosterError,
    RequestRejected,
    ResponseError,
    ServerBusy,
    ServerError,
    Severity,
    StatusInfo,
    Unauthorised,
    UnknownObject,
    code_minor_for_status,
    error_body,
    error_from_response,
    raise_for_status,
)
from streams.errors import FatalError, RetriableError, SislmsError, SkippableError

# The 1.2 schema (imsx_StatusInfoDType et al.): these keys and no others (additionalProperties: false).
STATUS_KEYS = {"imsx_codeMajor", "imsx_severity", "imsx_description", "imsx_CodeMinor"}
REQUIRED_STATUS_KEYS = {"imsx_codeMajor", "imsx_severity"}
FIELD_KEYS = {"imsx_codeMinorFieldName", "imsx_codeMinorFieldValue"}
ROSTERING_CODE_MINORS = {
    "fullsuccess",
    "invalid_filter_field",
    "invalid_selection_field",
    "invaliddata",
    "unauthorisedrequest",
    "forbidden",
    "server_busy",
    "unknownobject",
    "internal_server_error",
}


def assert_schema_shape(body: dict[str, Any]) -> None:
    assert REQUIRED_STATUS_KEYS <= set(body) <= STATUS_KEYS
    assert body["imsx_codeMajor"] in {"success", "processing", "failure", "unsupported"}
    assert body["imsx_severity"] in {"status", "warning", "error"}
    if "imsx_CodeMinor" in body:
        assert set(body["imsx_CodeMinor"]) == {"imsx_codeMinorField"}
        entries = body["imsx_CodeMinor"]["imsx_codeMinorField"]
        assert isinstance(entries, list) and len(entries) >= 1
        for entry in entries:
            assert set(entry) == FIELD_KEYS
            assert all(isinstance(v, str) for v in entry.values())


@pytest.mark.parametrize(
    ("status", "minor", "description"),
    [
        (400, "invaliddata", "Bad request"),
        (401, "unauthorisedrequest", "The request was not correctly authorised"),
        (403, "forbidden", "Forbidden"),
        (404, "unknownobject", "Unknown Object"),
        (422, "invaliddata", "The request body is well formed but semantically erroneous"),
        (429, "server_busy", "The server is receiving too many requests; retry at a later time"),
        (500, "internal_server_error", "Internal server error"),
        (503, "internal_server_error", "HTTP 503"),
    ],
)
def test_error_body_for_each_status(status: int, minor: str, description: str) -> None:
    body = error_body(status)
    assert body == {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {"imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": minor}
            ]
        },
    }
    assert minor in ROSTERING_CODE_MINORS
    assert_schema_shape(body)
    json.dumps(body)  # plain JSON


def test_error_body_with_explicit_code_minor_and_description() -> None:
    body = error_body(400, CodeMinor.INVALID_FILTER_FIELD, "unknown field 'shoeSize'")
    assert (
        body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"] == "invalid_filter_field"
    )
    assert body["imsx_description"] == "unknown field 'shoeSize'"


@pytest.mark.parametrize(
    ("status", "minor"),
    [
        (200, "fullsuccess"),
        (201, "fullsuccess"),
        (400, "invaliddata"),
        (409, "invaliddata"),
        (401, "unauthorisedrequest"),
        (403, "forbidden"),
        (404, "unknownobject"),
        (429, "server_busy"),
        (502, "internal_server_error"),
    ],
)
def test_code_minor_for_status(status: int, minor: str) -> None:
    assert code_minor_for_status(status) == minor


def test_status_info_round_trip_and_warning_shape() -> None:
    info = StatusInfo(
        CodeMajor.SUCCESS,
        Severity.WARNING,
        "two problems",
        (CodeMinorField("invalid_sort_field"), CodeMinorField("invalid_selection_field", "sis")),
    )
    body = info.to_json()
    assert_schema_shape(body)
    assert StatusInfo.from_json(body) == info
    assert StatusInfo.from_json(json.loads(json.dumps(body))) == info
    assert info.code_minors == ("invalid_sort_field", "invalid_selection_field")
    assert StatusInfo.warning(CodeMinor.INVALID_SORT_FIELD).to_json() == {
        "imsx_codeMajor": "success",
        "imsx_severity": "warning",
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {
                    "imsx_codeMinorFieldName": "TargetEndSystem",
                    "imsx_codeMinorFieldValue": "invalid_sort_field",
                }
            ]
        },
    }


def test_status_without_code_minor_omits_it() -> None:
    body = StatusInfo(CodeMajor.PROCESSING, Severity.STATUS).to_json()
    assert body == {"imsx_codeMajor": "processing", "imsx_severity": "status"}


@pytest.mark.parametrize(
    "payload",
    [
        # 1.1 spelling of the key, single object instead of a list
        {
            "imsx_codeMajor": "failure",
            "imsx_severity": "error",
            "imsx_codeMinor": {
                "imsx_codeMinorField": {
                    "imsx_codeMinorFieldName": "x",
                    "imsx_codeMinorFieldValue": "unknownobject",
                }
            },
        },
        # wrapped, upper-case values, no field name
        {
            "imsx_StatusInfo": {
                "imsx_codeMajor": "FAILURE",
                "imsx_severity": "Error",
                "imsx_CodeMinor": {"imsx_codeMinorField": [{"imsx_codeMinorFieldValue": "unknownobject"}]},
            }
        },
    ],
)
def test_status_info_reads_common_variants(payload: dict[str, Any]) -> None:
    info = StatusInfo.from_json(payload)
    assert (info.code_major, info.severity) == (CodeMajor.FAILURE, Severity.ERROR)
    assert info.code_minors == ("unknownobject",)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "text",
        [],
        {},
        {"imsx_codeMajor": "failure"},
        {"imsx_codeMajor": "kaput", "imsx_severity": "error"},
        {"error": "nope"},
    ],
)
def test_status_info_refuses_what_is_not_one(payload: Any) -> None:
    with pytest.raises(ValueError, match="not an imsx_StatusInfo"):
        StatusInfo.from_json(payload)


def test_server_side_errors_build_their_body() -> None:
    error = InvalidQuery("limit must be at least 1, got 0", parameter="limit")
    assert error.http_status == 400
    body = error.to_body()
    assert_schema_shape(body)
    assert body["imsx_description"] == "limit must be at least 1, got 0"
    assert body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"] == "invaliddata"
    selection = InvalidSelection("fields has a blank field name").to_body()
    assert (
        selection["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]
        == "invalid_selection_field"
    )


# --- the client side -------------------------------------------------------------------------


def provider_body(minor: str, description: str = "from the provider") -> bytes:
    return json.dumps(StatusInfo.failure(minor, description).to_json()).encode()


@pytest.mark.parametrize(
    ("status", "kind", "next_step"),
    [
        (429, ServerBusy, RetriableError),
        (500, ServerError, RetriableError),
        (502, ServerError, RetriableError),
        (503, ServerError, RetriableError),
        (401, Unauthorised, FatalError),
        (403, Forbidden, FatalError),
        (404, UnknownObject, SkippableError),
        (400, RequestRejected, SkippableError),
        (409, RequestRejected, SkippableError),
        (422, RequestRejected, SkippableError),
    ],
)
def test_error_class_says_what_to_do_next(
    status: int, kind: type[ResponseError], next_step: type[Exception]
) -> None:
    error = error_from_response(status, provider_body(code_minor_for_status(status)))
    assert type(error) is kind
    assert isinstance(error, next_step)
    assert isinstance(error, OneRosterError) and isinstance(error, SislmsError)
    others = {RetriableError, FatalError, SkippableError} - {next_step}
    assert not any(isinstance(error, other) for other in others)
    assert error.status == status == error.http_status
    assert error.info is not None and error.code_minor == code_minor_for_status(status)


def test_provider_details_are_kept() -> None:
    error = error_from_response(400, provider_body("invalid_filter_field", "unknown field shoeSize"))
    assert error.code_minor == "invalid_filter_field"
    assert str(error) == "OneRoster provider answered HTTP 400 (invalid_filter_field): unknown field shoeSize"
    assert error.status_info() == error.info


def test_a_body_that_is_not_a_status_still_classifies() -> None:
    for body in (b"<html>Bad Gateway</html>", b"", None, "{not json", {"error": "x"}):
        error = error_from_response(502, body)
        assert isinstance(error, ServerError) and error.info is None
        assert error.code_minor == "internal_server_error"
        assert str(error) == "OneRoster provider answered HTTP 502"
    assert isinstance(error_from_response(404, b"Not Found"), UnknownObject)


def test_non_standard_code_minor_survives() -> None:
    error = error_from_response(
        404,
        {
            "imsx_codeMajor": "failure",
            "imsx_severity": "error",
            "imsx_codeMinor": {
                "imsx_codeMinorField": [
                    {
                        "imsx_codeMinorFieldName": "TargetEndSystem",
                        "imsx_codeMinorFieldValue": "unknown object",
                    }
                ]
            },
        },
    )
    assert isinstance(error, UnknownObject)
    assert error.code_minor == "unknown object"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    busy = error_from_response(429, provider_body("server_busy"), {"Retry-After": "120"})
    assert isinstance(busy, ServerBusy) and busy.retry_after == 120.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    down = error_from_response(503, None, {"retry-after": later})
    assert isinstance(down, ServerError)
    assert down.retry_after is not None and 80 <= down.retry_after <= 90
    assert error_from_response(429, None, {"Retry-After": "soon"}).retry_after is None  # type: ignore[attr-defined]
    assert error_from_response(429, None).retry_after is None  # type: ignore[attr-defined]


def test_raise_for_status() -> None:
    raise_for_status(200, b"{}")
    raise_for_status(204)
    with pytest.raises(UnknownObject) as caught:
        raise_for_status(404, provider_body("unknownobject", "Unknown Object"))
    assert caught.value.reason == "unknown_object"
