"""OneRoster 1.2 REST protocol code, once for every side: our client (the SIS source, the
gradebook sink) and our server (the simulator, later our own provider).

Pure logic, no I/O: the ``filter`` grammar (:mod:`.filter`), the other query parameters
(:mod:`.query`), paging headers (:mod:`.paging`) and the ``imsx_StatusInfo`` payloads with the
errors that carry them (:mod:`.errors`).
"""

from connectors.oneroster.errors import (
    CodeMajor,
    CodeMinor,
    CodeMinorField,
    Forbidden,
    InvalidFilter,
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
from connectors.oneroster.filter import And, Filter, Operator, Or, Predicate, parse
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
from connectors.oneroster.query import DEFAULT_LIMIT, DEFAULT_MAX_LIMIT, Query, SortOrder

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_LIMIT",
    "And",
    "CodeMajor",
    "CodeMinor",
    "CodeMinorField",
    "Filter",
    "Forbidden",
    "InvalidFilter",
    "InvalidQuery",
    "InvalidSelection",
    "OneRosterError",
    "Operator",
    "Or",
    "Predicate",
    "Query",
    "RequestRejected",
    "ResponseError",
    "ServerBusy",
    "ServerError",
    "Severity",
    "SortOrder",
    "StatusInfo",
    "Unauthorised",
    "UnknownObject",
    "code_minor_for_status",
    "encode_query",
    "error_body",
    "error_from_response",
    "link_header",
    "next_offset",
    "next_url",
    "page_offsets",
    "paging_headers",
    "parse",
    "parse_link_header",
    "raise_for_status",
    "total_count",
]
