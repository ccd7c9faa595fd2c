"""The query parameters of a OneRoster collection read: paging, sorting, filtering, field selection.

One frozen :class:`Query` serves both sides: our server reads it from a request with
:meth:`Query.parse`, checks it against the collection's fields with :meth:`Query.check` and runs it
over records with :meth:`Query.apply`; our client builds one and sends :meth:`Query.to_params`.

What the 1.2 binding (OpenAPI 3 files and §3 of the REST binding) says, and what we do:

- ``limit``: integer, minimum 1, default 100. Anything else is a 400 ``invaliddata``. A limit
  above the server's maximum (``max_limit``) is lowered to it rather than refused; the ``Link``
  header then shows the limit actually used.
- ``offset``: integer, minimum 0, default 0; past the end gives an empty page, not an error.
- ``sort``: one field name, used with ``orderBy`` (``asc`` or ``desc``; any other value is a 400
  ``invaliddata``; ``ASC`` is read as ``asc``). Without ``orderBy`` we sort ascending. Ties keep the
  provider's order (the sort is stable); records without the field come last either way. For a
  sort on an unknown field the binding says: serve the data in the default order, with a
  ``success``/``warning``/``invalid_sort_field`` status (:meth:`Query.check`).
- ``filter``: see :mod:`connectors.oneroster.filter`; an unknown field is a 400
  ``invalid_filter_field`` with no data.
- ``fields``: comma-separated (also accepted as a repeated parameter, the OpenAPI's form style).
  The response carries those fields and only those. An unknown field: ALL fields of each record
  are returned, with a ``success``/``warning``/``invalid_selection_field`` status. A blank
  ``fields`` or a blank entry is an invalid request: 400 ``invalid_selection_field``.
- Empty values are refused (the OpenAPI sets ``allowEmptyValue: false``); parameters other than
  these six are ignored; any of the six given twice (``fields`` excepted) is a 400.

The 1.2 collection payloads allow no extra members, so the warnings :meth:`Query.check` returns
have no place in the body: a server logs them or sends them in a header.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from connectors.oneroster.errors import (
    CodeMinor,
    InvalidFilter,
    InvalidQuery,
    InvalidSelection,
    StatusInfo,
)
from connectors.oneroster.filter import Filter, parse, resolve, sort_key

__all__ = ["DEFAULT_LIMIT", "DEFAULT_MAX_LIMIT", "Query", "SortOrder"]

DEFAULT_LIMIT = 100
"""The binding's default page size."""

DEFAULT_MAX_LIMIT = 1000
"""The largest page our server hands out unless configured otherwise."""

PARAMETERS = ("limit", "offset", "sort", "orderBy", "filter", "fields")
_INTEGER = re.compile(r"[+-]?\d{1,18}")


class SortOrder(StrEnum):
    """``orderBy``."""

    ASC = "asc"
    DESC = "desc"


class _MultiItems(Protocol):
    def multi_items(self) -> list[tuple[str, str]]: ...


Params = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]] | _MultiItems


def _collect(params: Params) -> dict[str, list[str]]:
    """Every value of every parameter: from a plain mapping (values may be lists, as
    ``urllib.parse.parse_qs`` gives), a list of pairs, or a multi-dict with ``multi_items()``
    (httpx, Starlette)."""
    pairs: Iterable[tuple[str, Any]]
    if hasattr(params, "multi_items"):
        pairs = params.multi_items()
    elif isinstance(params, Mapping):
        pairs = params.items()
    else:
        pairs = params
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        values = [value] if isinstance(value, str) else list(value)
        out.setdefault(str(key), []).extend(str(v) for v in values)
    return out


def _one(values: dict[str, list[str]], name: str) -> str | None:
    given = values.get(name)
    if not given:
        return None
    if len(given) > 1:
        raise InvalidQuery(f"{name} is given {len(given)} times; give it once", parameter=name)
    value = given[0].strip()
    if not value:
        raise InvalidQuery(f"{name} is empty; leave it out or give a value", parameter=name)
    return value


def _integer(name: str, text: str, minimum: int) -> int:
    if not _INTEGER.fullmatch(text):
        raise InvalidQuery(f"{name} must be a whole number, got {text[:40]!r}", parameter=name)
    value = int(text)
    if value < minimum:
        raise InvalidQuery(f"{name} must be at least {minimum}, got {value}", parameter=name)
    return value


def _order(text: str | None) -> SortOrder | None:
    if text is None:
        return None
    try:
        return SortOrder(text.lower())
    except ValueError:
        message = f"orderBy must be 'asc' or 'desc', got {text[:40]!r}"
        raise InvalidQuery(message, parameter="orderBy") from None


def _selection(texts: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for text in texts:
        for part in text.split(","):
            name = part.strip()
            if not name:
                raise InvalidSelection(f"fields {','.join(texts)!r} has a blank field name")
            if name not in out:
                out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class Query:
    """The query of one collection read.

    Attributes:
        limit: page size, at least 1.
        offset: index of the first record of the page, from 0.
        sort: field (path) to sort on; ``None`` keeps the provider's order.
        order_by: ``asc`` or ``desc``; ``None`` means ascending.
        filter: the parsed filter (a string given here is parsed).
        fields: the fields to return; ``None`` returns all.
    """

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort: str | None = None
    order_by: SortOrder | None = None
    filter: Filter | None = None
    fields: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name, minimum in (("limit", 1), ("offset", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidQuery(f"{name} must be a whole number, got {value!r}", parameter=name)
            if value < minimum:
                raise InvalidQuery(f"{name} must be at least {minimum}, got {value}", parameter=name)
        if self.sort is not None and not self.sort.strip():
            raise InvalidQuery("sort is empty", parameter="sort")
        if self.order_by is not None:
            object.__setattr__(self, "order_by", _order(str(self.order_by)))
        if isinstance(self.filter, str):
            object.__setattr__(self, "filter", parse(self.filter))
        elif self.filter is not None and not isinstance(self.filter, Filter):
            raise InvalidFilter(f"filter must be a Filter or its text, got {type(self.filter).__name__}")
        if self.fields is not None:
            if isinstance(self.fields, str):
                raise InvalidSelection("fields must be a sequence of field names, not one string")
            object.__setattr__(self, "fields", _selection(list(self.fields)) if self.fields else ())
            if not self.fields:
                raise InvalidSelection("fields is empty; leave it out to get every field")

    @classmethod
    def parse(cls, params: Params, *, max_limit: int = DEFAULT_MAX_LIMIT) -> Query:
        """Read a request's query parameters (URL-decoded).

        Args:
            params: a mapping (values may be lists), a list of pairs or an httpx/Starlette multi-dict.
            max_limit: the largest page this server serves; a larger ``limit`` is lowered to it.

        Raises:
            InvalidQuery: ``limit``/``offset``/``sort``/``orderBy`` malformed (``invaliddata``).
            InvalidFilter: the filter does not parse (``invalid_filter_field``).
            InvalidSelection: ``fields`` is blank or has a blank entry (``invalid_selection_field``).
        """
        if max_limit < 1:
            raise ValueError("max_limit must be at least 1")
        values = _collect(params)
        limit_text = _one(values, "limit")
        offset_text = _one(values, "offset")
        limit = DEFAULT_LIMIT if limit_text is None else _integer("limit", limit_text, 1)
        offset = 0 if offset_text is None else _integer("offset", offset_text, 0)
        order = _one(values, "orderBy")
        filter_values = values.get("filter")
        if filter_values is not None and len(filter_values) > 1:
            count = len(filter_values)
            raise InvalidFilter(f"filter is given {count} times; join the predicates with AND or OR")
        fields = values.get("fields")
        return cls(
            limit=min(limit, max_limit),
            offset=offset,
            sort=_one(values, "sort"),
            order_by=_order(order),
            filter=parse(filter_values[0]) if filter_values else None,
            fields=_selection(fields) if fields is not None else None,
        )

    def to_params(self) -> dict[str, str]:
        """The query as request parameters (not yet URL-encoded), for our client."""
        out = {"limit": str(self.limit), "offset": str(self.offset)}
        if self.sort is not None:
            out["sort"] = self.sort
        if self.order_by is not None:
            out["orderBy"] = self.order_by.value
        if self.filter is not None:
            out["filter"] = self.filter.render()
        if self.fields is not None:
            out["fields"] = ",".join(self.fields)
        return out

    def check(self, known_fields: Collection[str]) -> tuple[Query, tuple[StatusInfo, ...]]:
        """Check the field names against a collection's fields, as the binding prescribes.

        A dotted path is known when its first segment is. Returns the query to run (an unknown
        sort field dropped, an unknown selection widened to all fields) and the warnings to report.

        Raises:
            InvalidFilter: the filter names an unknown field (``invalid_filter_field``: no data).
        """
        known = frozenset(known_fields)

        def is_known(path: str) -> bool:
            return path.split(".", 1)[0] in known

        if self.filter is not None:
            unknown = sorted(f for f in self.filter.fields() if not is_known(f))
            if unknown:
                names = ", ".join(repr(f) for f in unknown)
                message = f"invalid filter: unknown field {names}"
                raise InvalidFilter(message, expected="a field of this collection", found=names)
        query, warnings = self, []
        if self.sort is not None and not is_known(self.sort):
            message = f"unknown sort field {self.sort!r}; the default order is used"
            warnings.append(StatusInfo.warning(CodeMinor.INVALID_SORT_FIELD, message))
            query = replace(query, sort=None, order_by=None)
        if self.fields is not None:
            unknown_fields = [f for f in self.fields if f not in known]
            if unknown_fields:
                names = ", ".join(map(repr, unknown_fields))
                message = f"unknown field {names} in fields; all fields are returned"
                warnings.append(StatusInfo.warning(CodeMinor.INVALID_SELECTION_FIELD, message))
                query = replace(query, fields=None)
        return query, tuple(warnings)

    def apply(self, records: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Run the query over a collection, for our server.

        Filters, sorts (stably), counts, pages, then selects fields.

        Returns:
            The page of records (new dicts) and the number of records that passed the filter.
        """
        rows = [r for r in records if self.filter is None or self.filter.matches(r)]
        total = len(rows)
        if self.sort is not None:
            keyed: list[tuple[tuple[int, Any], Mapping[str, Any]]] = []
            missing: list[Mapping[str, Any]] = []
            for row in rows:
                values = resolve(row, self.sort)
                if values and not isinstance(values[0], Mapping | list | tuple):
                    keyed.append((sort_key(values[0]), row))
                else:
                    missing.append(row)
            keyed.sort(key=lambda pair: pair[0], reverse=self.order_by is SortOrder.DESC)
            rows = [row for _, row in keyed] + missing
        page = rows[self.offset : self.offset + self.limit]
        if self.fields is None:
            return [dict(r) for r in page], total
        return [{k: r[k] for k in self.fields if k in r} for r in page], total
