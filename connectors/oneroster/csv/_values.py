"""Cell values of the CSV binding: text in, OneRoster 1.2 JSON values out, or :class:`BadValue`
with a reason a district administrator can act on.

Each column gets one converter, built once per file by :func:`converter`; a reference column's
converter also checks the sourcedId against the ids of its target file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Container
from datetime import UTC, date, datetime
from typing import Any

from connectors.oneroster.csv.binding import GUID_TYPES, Column

__all__ = ["BadValue", "Converter", "closest", "converter", "normalise_instant"]

Converter = Callable[[str], Any]

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_YEAR = re.compile(r"\d{4}")
_USER_ID = re.compile(r"\{([^{}:]+):([^{}]*)\}")
_USER_IDS = re.compile(r"\s*\{[^{}:]+:[^{}]*\}\s*(?:,\s*\{[^{}:]+:[^{}]*\}\s*)*,?\s*")
_CACHE_LIMIT = 10_000


class BadValue(Exception):
    """A cell that does not hold what its column needs."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def normalise_instant(text: str) -> str:
    """An ISO 8601 date-time (or date: midnight) as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC; a time
    without an offset is taken as UTC.

    Raises:
        ValueError: not an ISO 8601 date or date-time.
    """
    value = datetime.fromisoformat(text)  # also checks the calendar: no 2024-13-01
    if len(text) == 24 and text[23] == "Z" and text[19] == "." and text[10] == "T":
        return text  # already the canonical form
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:"
        f"{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def closest(name: str, known: Collection[str]) -> str | None:
    """The known column ``name`` was probably meant to be, or None."""
    folded = {k.lower(): k for k in known}
    if name.lower() in folded:
        return folded[name.lower()]
    found = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.75)
    return folded[found[0]] if found else None


def converter(column: Column, *, ids: Container[str] | None = None, where: str = "") -> Converter:
    """The converter of ``column``'s non-empty cells.

    Args:
        column: the column.
        ids: for reference columns, the sourcedIds a value must be one of (None: not checked).
        where: where those ids come from, for the message (``orgs.csv``).
    """
    name, kind = column.name, column.kind
    if kind == "text":
        return _same
    if kind == "id":
        return str.strip
    if kind in ("status", "enum"):
        return _enum(name, column.vocabulary, column.extensible)
    if kind == "datetime":
        return _datetime(name)
    if kind == "date":
        return _date(name)
    if kind == "year":
        return _year(name)
    if kind == "bool":
        return _bool(name)
    if kind == "number":
        return _number(name)
    if kind == "list":
        return _list
    if kind == "userIds":
        return _user_ids(name)
    if kind in ("ref", "refs", "key"):
        return _reference(column, ids, where)
    raise ValueError(f"column {name}: unknown kind {kind!r}")


def _same(value: str) -> str:
    return value


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _choices(values: Collection[str], extensible: bool) -> str:
    text = ", ".join(sorted(values))
    return f"{text} (or an ext: value)" if extensible else text


def _enum(name: str, allowed: frozenset[str], extensible: bool) -> Converter:
    folded = {v.lower(): v for v in allowed}

    def convert(value: str) -> str:
        value = value.strip()
        if value in allowed or (extensible and value.startswith("ext:") and len(value) > 4):
            return value
        hint = ""
        if value.lower() in folded:
            hint = f"; values are case-sensitive: did you mean {folded[value.lower()]!r}?"
        raise BadValue("enum", f"{name} {value!r} is not one of {_choices(allowed, extensible)}{hint}")

    return convert


def _datetime(name: str) -> Converter:
    def convert(value: str) -> str:
        try:
            return normalise_instant(value.strip())
        except ValueError:
            reason = f"{name} {value!r} is not an ISO 8601 date-time such as 2024-05-01T18:25:43.511Z"
            raise BadValue("value", reason) from None

    return convert


def _date(name: str) -> Converter:
    cache: dict[str, str] = {}  # a file holds few distinct dates

    def convert(value: str) -> str:
        found = cache.get(value)
        if found is not None:
            return found
        try:
            out = date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise BadValue("value", f"{name} {value!r} is not a date YYYY-MM-DD") from None
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[value] = out
        return out

    return convert


def _year(name: str) -> Converter:
    def convert(value: str) -> str:
        value = value.strip()
        if _YEAR.fullmatch(value) is None:
            raise BadValue("value", f"{name} {value!r} is not a four-digit year such as 2024")
        return value

    return convert


def _bool(name: str) -> Converter:
    def convert(value: str) -> bool:
        folded = value.strip().lower()
        if folded == "true":
            return True
        if folded == "false":
            return False
        raise BadValue("value", f"{name} {value!r} is not true or false")

    return convert


def _number(name: str) -> Converter:
    def convert(value: str) -> float:
        value = value.strip()
        if _NUMBER.fullmatch(value) is None:
            raise BadValue("value", f"{name} {value!r} is not a number")
        return float(value)

    return convert


def _user_ids(name: str) -> Converter:
    def convert(value: str) -> list[dict[str, str]]:
        if _USER_IDS.fullmatch(value) is None:
            reason = f"{name} {value!r} is not a list of {{type:identifier}} pairs such as {{LDAP:12}}"
            raise BadValue("value", reason)
        return [{"type": t.strip(), "identifier": i.strip()} for t, i in _USER_ID.findall(value)]

    return convert


def _reference(column: Column, ids: Container[str] | None, where: str) -> Converter:
    name, target = column.name, column.target or ""
    kind = GUID_TYPES.get(target, target)

    def missing(sourced_id: str) -> BadValue:
        return BadValue("reference", f"{name} {sourced_id!r} is not the sourcedId of any row of {where}")

    if column.kind == "key":

        def key(value: str) -> str:
            value = value.strip()
            if ids is not None and value not in ids:
                raise missing(value)
            return value

        return key

    if column.kind == "ref":

        def one(value: str) -> dict[str, Any]:
            value = value.strip()
            if ids is not None and value not in ids:
                raise missing(value)
            return {"href": None, "sourcedId": value, "type": kind}

        return one

    def many(value: str) -> list[dict[str, Any]]:
        out = []
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if ids is not None and item not in ids:
                raise missing(item)
            out.append({"href": None, "sourcedId": item, "type": kind})
        return out

    return many
