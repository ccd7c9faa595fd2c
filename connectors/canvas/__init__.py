"""Canvas LMS REST protocol code, once for every side: our client (the provisioning sink) and
our server (the LMS simulator). Pure logic, no I/O (:mod:`.protocol`)."""

from connectors.canvas.protocol import (
    ENROLLMENT_TYPES,
    PER_PAGE_DEFAULT,
    PER_PAGE_MAX,
    RATE_LIMIT_REMAINING,
    RATE_LIMITED_BODY,
    REQUEST_COST,
    error_body,
    error_message,
    is_rate_limited,
    nested_params,
    page_links,
    sis_ref,
    validation_body,
)

__all__ = [
    "ENROLLMENT_TYPES",
    "PER_PAGE_DEFAULT",
    "PER_PAGE_MAX",
    "RATE_LIMITED_BODY",
    "RATE_LIMIT_REMAINING",
    "REQUEST_COST",
    "error_body",
    "error_message",
    "is_rate_limited",
    "nested_params",
    "page_links",
    "sis_ref",
    "validation_body",
]
