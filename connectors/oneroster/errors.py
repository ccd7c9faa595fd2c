"""OneRoster 1.2 status payloads (``imsx_StatusInfo``) and the errors that carry them.

The wire shape is the one in 1EdTech's published OpenAPI 3 files for the 1.2 Rostering,
Gradebook and Resources services (``imsx_StatusInfoDType``, ``imsx_CodeMinorDType``,
``imsx_CodeMinorFieldDType``)::

    {
      "imsx_codeMajor": "failure",              # success | processing | failure | unsupported
      "imsx_severity": "error",                 # status | warning | error
      "imsx_description": "...",                # optional
      "imsx_CodeMinor": {                       # capital C in 1.2; optional
        "imsx_codeMinorField": [                # minItems 1
          {"imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": "unknownobject"}
        ]
      }
    }

We write exactly that. We read it leniently, because providers in the field differ: the 1.1-style
``imsx_codeMinor`` key, a single field object instead of a list, and an ``imsx_StatusInfo`` wrapper
are all accepted.

The errors, by what to do next::

    SislmsError
    └── OneRosterError                 a OneRoster exchange went wrong; knows its HTTP status
        ├── InvalidQuery               our server: the request's query parameters are wrong (400)
        │   ├── InvalidFilter          the ``filter`` does not parse or names an unknown field
        │   └── InvalidSelection       the ``fields`` parameter is blank or has a blank entry
        └── ResponseError              our client: the provider answered 4xx/5xx
            ├── ServerBusy             429 server_busy               (also RetriableError)
            ├── ServerError            5xx                           (also RetriableError)
            ├── Unauthorised           401 unauthorisedrequest       (also FatalError)
            ├── Forbidden              403 forbidden                 (also FatalError)
            ├── UnknownObject          404 unknownobject             (also SkippableError)
            └── RequestRejected        any other 4xx, e.g. 400, 422  (also SkippableError)

Other 4xx are "fatal for that record" in the house rules, hence skippable: a gradebook write the
SIS refuses goes to a dead-letter topic and the sink goes on. A 401 reaches this layer only after
the OAuth layer has already fetched a fresh token, so it is fatal here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from streams.errors import FatalError, RetriableError, SislmsError, SkippableError

__all__ = [
    "CodeMajor",
    "CodeMinor",
    "CodeMinorField",
    "Forbidden",
    "InvalidFilter",
    "InvalidQuery",
    "InvalidSelection",
    "OneRosterError",
    "RequestRejected",
    "ResponseError",
    "ServerBusy",
    "ServerError",
    "Severity",
    "StatusInfo",
    "Unauthorised",
    "UnknownObject",
    "code_minor_for_status",
    "error_body",
    "error_from_response",
    "raise_for_status",
]

TARGET_END_SYSTEM = "TargetEndSystem"
"""The ``imsx_codeMinorFieldName`` the 1.2 schema gives as default: the system that reports."""

_DESCRIPTION_LIMIT = 300


class CodeMajor(StrEnum):
    """``imsx_codeMajor``: the outcome class."""

    SUCCESS = "success"
    PROCESSING = "processing"
    FAILURE = "failure"
    UNSUPPORTED = "unsupported"


class Severity(StrEnum):
    """``imsx_severity``."""

    STATUS = "status"
    WARNING = "warning"
    ERROR = "error"


class CodeMinor(StrEnum):
    """``imsx_codeMinorFieldValue`` values of the three 1.2 services (their union).

    ``invalid_sort_field`` and ``unsupported`` appear only in the Resources service's vocabulary
    (and ``invalid_sort_field`` in 1.1); ``deletefailure`` only in the Gradebook service's.
    """

    FULL_SUCCESS = "fullsuccess"
    INVALID_FILTER_FIELD = "invalid_filter_field"
    INVALID_SELECTION_FIELD = "invalid_selection_field"
    INVALID_SORT_FIELD = "invalid_sort_field"
    INVALID_DATA = "invaliddata"
    UNAUTHORISED_REQUEST = "unauthorisedrequest"
    FORBIDDEN = "forbidden"
    SERVER_BUSY = "server_busy"
    UNKNOWN_OBJECT = "unknownobject"
    INTERNAL_SERVER_ERROR = "internal_server_error"
    DELETE_FAILURE = "deletefailure"
    UNSUPPORTED = "unsupported"


_STATUS_FOR_MINOR: dict[CodeMinor, int] = {
    CodeMinor.FULL_SUCCESS: 200,
    CodeMinor.INVALID_FILTER_FIELD: 400,
    CodeMinor.INVALID_SELECTION_FIELD: 400,
    CodeMinor.INVALID_SORT_FIELD: 400,
    CodeMinor.INVALID_DATA: 400,
    CodeMinor.UNAUTHORISED_REQUEST: 401,
    CodeMinor.FORBIDDEN: 403,
    CodeMinor.UNKNOWN_OBJECT: 404,
    CodeMinor.SERVER_BUSY: 429,
    CodeMinor.INTERNAL_SERVER_ERROR: 500,
    CodeMinor.DELETE_FAILURE: 500,
    CodeMinor.UNSUPPORTED: 501,
}

# The descriptions the 1.2 OpenAPI gives each response code, shortened.
_DEFAULT_DESCRIPTION: dict[int, str] = {
    400: "Bad request",
    401: "The request was not correctly authorised",
    403: "Forbidden",
    404: "Unknown Object",
    422: "The request body is well formed but semantically erroneous",
    429: "The server is receiving too many requests; retry at a later time",
    500: "Internal server error",
}


def code_minor_for_status(status: int) -> CodeMinor:
    """The code minor the 1.2 binding pairs with an HTTP status (``invaliddata`` for other 4xx)."""
    by_status = {
        200: CodeMinor.FULL_SUCCESS,
        401: CodeMinor.UNAUTHORISED_REQUEST,
        403: CodeMinor.FORBIDDEN,
        404: CodeMinor.UNKNOWN_OBJECT,
        429: CodeMinor.SERVER_BUSY,
    }
    if status in by_status:
        return by_status[status]
    if 200 <= status < 300:
        return CodeMinor.FULL_SUCCESS
    if status >= 500:
        return CodeMinor.INTERNAL_SERVER_ERROR
    return CodeMinor.INVALID_DATA


@dataclass(frozen=True)
class CodeMinorField:
    """One ``imsx_codeMinorField`` entry. ``value`` stays a plain string so that a provider's
    non-standard code (``"unknown object"``, ``"invalid_blank_selection_field"``) survives parsing."""

    value: str
    name: str = TARGET_END_SYSTEM

    def to_json(self) -> dict[str, str]:
        return {"imsx_codeMinorFieldName": self.name, "imsx_codeMinorFieldValue": str(self.value)}


@dataclass(frozen=True)
class StatusInfo:
    """An ``imsx_StatusInfo`` payload."""

    code_major: CodeMajor
    severity: Severity
    description: str | None = None
    code_minor: tuple[CodeMinorField, ...] = field(default=())

    @classmethod
    def failure(cls, code_minor: CodeMinor | str, description: str | None = None) -> StatusInfo:
        """A ``failure``/``error`` status with one code minor, as every 1.2 error response carries."""
        return cls(CodeMajor.FAILURE, Severity.ERROR, description, (CodeMinorField(str(code_minor)),))

    @classmethod
    def warning(cls, code_minor: CodeMinor | str, description: str | None = None) -> StatusInfo:
        """A ``success``/``warning`` status: the request was served, with a caveat."""
        return cls(CodeMajor.SUCCESS, Severity.WARNING, description, (CodeMinorField(str(code_minor)),))

    @property
    def code_minors(self) -> tuple[str, ...]:
        """The code minor values, in order."""
        return tuple(f.value for f in self.code_minor)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys spelled and nested as the 1.2 binding spells them."""
        out: dict[str, Any] = {
            "imsx_codeMajor": self.code_major.value,
            "imsx_severity": self.severity.value,
        }
        if self.description is not None:
            out["imsx_description"] = self.description
        if self.code_minor:
            out["imsx_CodeMinor"] = {"imsx_codeMinorField": [f.to_json() for f in self.code_minor]}
        return out

    @classmethod
    def from_json(cls, payload: Any) -> StatusInfo:
        """Read a status payload, tolerating the variants providers send.

        Raises:
            ValueError: the payload is not a status object (no valid ``imsx_codeMajor`` and
                ``imsx_severity``).
        """
        if isinstance(payload, Mapping):
            for wrapper in ("imsx_StatusInfo", "imsx_statusInfo"):
                if isinstance(payload.get(wrapper), Mapping):
                    payload = payload[wrapper]
                    break
        if not isinstance(payload, Mapping):
            raise ValueError("not an imsx_StatusInfo object")
        try:
            major = CodeMajor(str(payload["imsx_codeMajor"]).strip().lower())
            severity = Severity(str(payload["imsx_severity"]).strip().lower())
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not an imsx_StatusInfo object: {exc}") from None
        description = payload.get("imsx_description")
        minor = payload.get("imsx_CodeMinor", payload.get("imsx_codeMinor"))
        entries: Any = minor.get("imsx_codeMinorField", ()) if isinstance(minor, Mapping) else ()
        if isinstance(entries, Mapping):
            entries = [entries]
        fields: list[CodeMinorField] = []
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, Mapping) and entry.get("imsx_codeMinorFieldValue") is not None:
                name = entry.get("imsx_codeMinorFieldName") or TARGET_END_SYSTEM
                fields.append(CodeMinorField(str(entry["imsx_codeMinorFieldValue"]), str(name)))
        return cls(major, severity, None if description is None else str(description), tuple(fields))


def error_body(
    status: int, code_minor: CodeMinor | str | None = None, description: str | None = None
) -> dict[str, Any]:
    """The JSON body of an error response, for our own OneRoster server.

    Args:
        status: the HTTP status being answered (4xx or 5xx).
        code_minor: defaults to the one the binding pairs with ``status``.
        description: defaults to the binding's wording for ``status`` (``"Unknown Object"`` for 404).
    """
    minor = code_minor if code_minor is not None else code_minor_for_status(status)
    text = description if description is not None else _DEFAULT_DESCRIPTION.get(status, f"HTTP {status}")
    return StatusInfo.failure(minor, text).to_json()


class OneRosterError(SislmsError):
    """Root of the OneRoster protocol errors. ``http_status`` and ``code_minor`` say how our
    server answers it; :meth:`status_info` builds the body."""

    http_status: int = 500
    code_minor: str = CodeMinor.INTERNAL_SERVER_ERROR

    def status_info(self) -> StatusInfo:
        return StatusInfo.failure(self.code_minor, str(self))

    def to_body(self) -> dict[str, Any]:
        """The ``imsx_StatusInfo`` JSON body for this error."""
        return self.status_info().to_json()


class InvalidQuery(OneRosterError):
    """A request's query parameters (``limit``, ``offset``, ``orderBy``...) are wrong: answer 400."""

    http_status = 400
    code_minor: str = CodeMinor.INVALID_DATA

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class InvalidFilter(InvalidQuery):
    """The ``filter`` parameter does not parse, or names a field the collection does not have.

    Attributes:
        text: the filter as received (``None`` when the error is about a built filter).
        column: 1-based character position of the problem in ``text``, when there is one.
        expected: what the grammar wanted there.
        found: what was there instead.
    """

    code_minor = CodeMinor.INVALID_FILTER_FIELD

    def __init__(
        self,
        message: str,
        *,
        text: str | None = None,
        column: int | None = None,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        super().__init__(message, parameter="filter")
        self.text, self.column, self.expected, self.found = text, column, expected, found


class InvalidSelection(InvalidQuery):
    """The ``fields`` parameter is blank or has a blank entry: an invalid request.

    (1.1 named this ``invalid_blank_selection_field``; 1.2's vocabulary has only
    ``invalid_selection_field``, which is what we send.)
    """

    code_minor = CodeMinor.INVALID_SELECTION_FIELD

    def __init__(self, message: str) -> None:
        super().__init__(message, parameter="fields")


class ResponseError(OneRosterError):
    """A provider answered with an error status.

    Attributes:
        status: the HTTP status.
        info: the parsed ``imsx_StatusInfo``, or ``None`` when the body was not one.
    """

    def __init__(self, message: str, *, status: int, info: StatusInfo | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = status
        self.info = info
        minors = info.code_minors if info is not None else ()
        self.code_minor = minors[0] if minors else code_minor_for_status(status)

    def status_info(self) -> StatusInfo:
        return self.info if self.info is not None else super().status_info()


class ServerBusy(ResponseError, RetriableError):
    """429: back off for ``retry_after`` seconds (from the ``Retry-After`` header) and retry."""


class ServerError(ResponseError, RetriableError):
    """5xx: the provider failed; retry with backoff."""


class Unauthorised(ResponseError, FatalError):
    """401 even with a fresh token: the credentials are wrong. Stop and tell an operator."""


class Forbidden(ResponseError, FatalError):
    """403: the credentials lack a scope or the object is off limits. Stop and tell an operator."""


class UnknownObject(ResponseError, SkippableError):
    """404 on one object: dead-letter that record and go on."""

    reason = "unknown_object"


class RequestRejected(ResponseError, SkippableError):
    """Another 4xx (400 invaliddata, 422...): this request's record is refused; dead-letter it."""

    reason = "rejected"


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _decode(body: bytes | str | Mapping[str, Any] | None) -> Any:
    if body is None or isinstance(body, Mapping):
        return body
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def error_from_response(
    status: int,
    body: bytes | str | Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ResponseError:
    """The exception for a provider's error response; its class says what to do next.

    Args:
        status: the HTTP status (400 or more).
        body: the response body, raw or already decoded; need not be a status payload.
        headers: the response headers, for ``Retry-After`` on 429 and 503.
    """
    try:
        info: StatusInfo | None = StatusInfo.from_json(_decode(body))
    except ValueError:
        info = None
    minor = info.code_minors[0] if info is not None and info.code_minors else None
    message = f"OneRoster provider answered HTTP {status}"
    if minor:
        message += f" ({minor})"
    if info is not None and info.description:
        message += f": {info.description[:_DESCRIPTION_LIMIT]}"
    kind: type[ResponseError]
    if status == 429:
        kind = ServerBusy
    elif status >= 500:
        kind = ServerError
    elif status == 401:
        kind = Unauthorised
    elif status == 403:
        kind = Forbidden
    elif status == 404:
        kind = UnknownObject
    else:
        kind = RequestRejected
    exc = kind(message, status=status, info=info)
    if isinstance(exc, RetriableError):
        exc.retry_after = _retry_after(headers)
    return exc


def raise_for_status(
    status: int,
    body: bytes | str | Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Raise :func:`error_from_response`'s exception when ``status`` is 400 or more."""
    if status >= 400:
        raise error_from_response(status, body, headers)
