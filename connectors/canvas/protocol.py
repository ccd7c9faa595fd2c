"""The Canvas REST API's conventions, once for our client (the provisioning sink) and our server
(the LMS simulator).

What Canvas does, from its API documentation (canvas.instructure.com/doc/api):

- **Parameters** come form-encoded or as JSON, with Rails-style nesting: ``user[name]=Ann``,
  ``course[term_id]=3``, ``type[]=StudentEnrollment`` (:func:`nested_params`).
- **Objects are named by id or by SIS id**: ``/api/v1/users/42`` or
  ``/api/v1/users/sis_user_id:s-1001`` (:func:`sis_ref`).
- **Pagination**: ``page`` and ``per_page`` (10 by default; servers cap it, 100 here), and a
  ``Link`` header with ``current``, ``next``, ``prev``, ``first`` and ``last`` (:func:`page_links`).
  Clients follow ``next`` and must treat the URLs as opaque.
- **Throttling**: a leaky bucket per access token. Every response says what the request cost
  (``X-Request-Cost``) and what is left (``X-Rate-Limit-Remaining``); an empty bucket answers
  ``403 Forbidden (Rate Limit Exceeded)`` as plain text (:func:`is_rate_limited`).
- **Errors**: ``{"errors": [{"message": ...}]}``, or for validation
  ``{"errors": {"<field>": [{"attribute", "type", "message"}]}}`` (:func:`error_body`,
  :func:`validation_body`, :func:`error_message`). A missing or wrong token is 401 with
  ``WWW-Authenticate``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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

PER_PAGE_DEFAULT = 10
PER_PAGE_MAX = 100
RATE_LIMIT_REMAINING = "X-Rate-Limit-Remaining"
REQUEST_COST = "X-Request-Cost"
RATE_LIMITED_BODY = "403 Forbidden (Rate Limit Exceeded)\n"

#: Canvas's base course roles (enrollment types), by the short names our role rules use.
ENROLLMENT_TYPES: dict[str, str] = {
    "student": "StudentEnrollment",
    "teacher": "TeacherEnrollment",
    "ta": "TaEnrollment",
    "designer": "DesignerEnrollment",
    "observer": "ObserverEnrollment",
}

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def nested_params(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Rails-style keys to nested values: ``a[b]=1`` -> ``{"a": {"b": "1"}}``, ``t[]=x`` -> a list.

    A key that is not well formed is kept as it is. A later value for the same key wins, as in
    Rails, except for ``[]`` keys, which collect every value in order.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            out[key] = value
            continue
        head, rest = match.groups()
        path = [head, *re.findall(r"\[([^\[\]]*)\]", rest)]
        node: dict[str, Any] = out
        for i, part in enumerate(path):
            last = i == len(path) - 1
            nxt = path[i + 1] if not last else None
            if last:
                node[part] = value
            elif nxt == "":
                node.setdefault(part, [])
                if not isinstance(node[part], list):
                    node[part] = []
                node[part].append(value)
                break
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return out


def sis_ref(kind: str, sis_id: str) -> str:
    """The path segment naming an object by its SIS id: ``sis_user_id:<id>``, URL-encoded."""
    return f"sis_{kind}_id:{quote(sis_id, safe='')}"


def page_links(request_url: str, *, page: int, per_page: int, total: int) -> str:
    """The ``Link`` header for page ``page`` (1-based) of ``total`` objects."""
    parts = urlsplit(request_url)
    kept = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("page", "per_page")
    ]
    last = max(1, -(-total // per_page))
    rels: list[tuple[str, int]] = [("current", page)]
    if page < last:
        rels.append(("next", page + 1))
    if page > 1:
        rels.append(("prev", min(page - 1, last)))
    rels += [("first", 1), ("last", last)]
    links = []
    for rel, number in rels:
        query = urlencode([*kept, ("page", str(number)), ("per_page", str(per_page))])
        links.append(f'<{urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))}>; rel="{rel}"')
    return ",".join(links)


def error_body(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message}]}


def validation_body(problems: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """``{"errors": {field: [{"attribute", "type", "message"}]}}`` from ``{field: (type, message)}``."""
    return {
        "errors": {
            field: [{"attribute": field, "type": kind, "message": message}]
            for field, (kind, message) in problems.items()
        }
    }


def error_message(body: Any) -> str:
    """One line saying what a Canvas error body says, whatever its shape."""
    if isinstance(body, str):
        return body.strip()[:300]
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list):
            return "; ".join(str(e.get("message", e)) if isinstance(e, Mapping) else str(e) for e in errors)
        if isinstance(errors, Mapping):
            parts = []
            for field, items in errors.items():
                for item in items if isinstance(items, list) else [items]:
                    text = item.get("message", item) if isinstance(item, Mapping) else item
                    parts.append(f"{field}: {text}")
            return "; ".join(parts)
        if "message" in body:
            return str(body["message"])
    return str(body)[:300]


def error_types(body: Any) -> frozenset[str]:
    """The ``type`` of each validation error in a Canvas error body (``taken``, ``blank``...)."""
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if not isinstance(errors, Mapping):
        return frozenset()
    out = set()
    for items in errors.values():
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, Mapping) and isinstance(item.get("type"), str):
                out.add(item["type"])
    return frozenset(out)


def is_rate_limited(status: int, text: str) -> bool:
    """A Canvas throttle answer: 403 with "Rate Limit Exceeded" (not a permission problem)."""
    return status == 403 and "rate limit exceeded" in text.lower()
