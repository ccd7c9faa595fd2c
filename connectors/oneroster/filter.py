"""The OneRoster ``filter`` query parameter: grammar, AST, rendering and record matching.

What the binding says (OneRoster 1.2 Rostering REST binding §3.3, and 1.1 §3.4 before it, as
quoted by implementations): a filter is ``[data field][predicate][value]`` or
``[data field][predicate][value][logical][data field][predicate][value]``; predicates are ``=``,
``!=``, ``>``, ``>=``, ``<``, ``<=`` and ``~`` (contains); logicals are ``AND`` and ``OR``; values
are in single quotes; the whole parameter is URL-encoded, e.g.
``filter=familyName%3D%27jones%27%20AND%20dateLastModified%3E%272015-01-01%27``. A filter on a field
the collection does not have returns no data and a 400 with ``invalid_filter_field``.

What the binding does not settle, and what we do:

- **More than two predicates, mixed AND/OR.** 1.1 allowed two predicates and one logical; we read
  any number, mixed, with ``AND`` binding tighter than ``OR`` (``a OR b AND c`` is
  ``a OR (b AND c)``), and parentheses for grouping. :meth:`Filter.render` writes parentheses only
  where the precedence needs them, so a two-predicate filter renders exactly as the spec shows.
- **Keywords** ``AND``/``OR`` are read in any case and written upper-case; whitespace around
  tokens is optional, except that a keyword must be a separate word.
- **Quotes inside values.** The binding defines no escape. We read ``''`` inside a value as one
  quote (as SQL and OData do) and write a quote that way; a backslash is an ordinary character.
  Double quotes and unquoted values are errors.
- **Dotted field names** (``roles.role``, ``org.sourcedId``) name nested properties; the binding's
  text does not show them, but providers accept them. A path steps into objects and fans out over
  arrays.

How :meth:`Filter.matches` compares a record's value with the quoted text:

- both read as ISO 8601 dates or date-times (``2026-09-01``, ``2026-09-01T08:00:00.000Z``): as
  instants. A date is midnight UTC; a time without offset is UTC; ``.000Z`` equals ``Z``.
- the record's value is a JSON number (or, for ``<`` ``<=`` ``>`` ``>=``, a numeric string) and the
  text reads as a number: numerically. Equality of two strings stays textual, so sourcedId ``007``
  never equals ``7``.
- booleans: as the strings ``true`` and ``false``.
- otherwise as strings, case-sensitively, ordered by code point.
- ``~`` is a case-insensitive substring test on the value's text form.
- arrays (``grades``, or ``roles.role`` across roles): the predicate holds if any element
  satisfies it, except ``!=``, which is always the exact negation of ``=``: no element equal.
  A missing or null field satisfies only ``!=``. Objects compare with nothing.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple, NoReturn

from connectors.oneroster.errors import InvalidFilter

__all__ = ["And", "Filter", "Operator", "Or", "Predicate", "parse", "resolve", "sort_key", "text_of"]

MAX_DEPTH = 32
"""Deepest parenthesis nesting :func:`parse` accepts (a guard for a public endpoint)."""

FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_SPECIAL = "'\"()=!<>~"
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class Operator(StrEnum):
    """A predicate's comparison."""

    EQ = "="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    CONTAINS = "~"


_OPERATORS = ", ".join(op.value for op in Operator)
_OPERATOR_TEXTS = frozenset(op.value for op in Operator)
_AFTER_VALUE = "AND, OR or the end of the filter"


class Filter(ABC):
    """A parsed filter: a :class:`Predicate`, or an :class:`And` / :class:`Or` of filters.

    Combine filters with ``&`` and ``|`` to build one on the client side.
    """

    __slots__ = ()

    @abstractmethod
    def render(self) -> str:
        """The filter as the ``filter`` parameter's (not yet URL-encoded) text."""

    @abstractmethod
    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` (a OneRoster object as JSON-like data) satisfies the filter."""

    @abstractmethod
    def predicates(self) -> Iterator[Predicate]:
        """Every predicate, left to right."""

    def fields(self) -> frozenset[str]:
        """The field paths the filter names."""
        return frozenset(p.field for p in self.predicates())

    def __and__(self, other: Filter) -> And:
        return And((self, other))

    def __or__(self, other: Filter) -> Or:
        return Or((self, other))

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True, slots=True)
class Predicate(Filter):
    """``field op 'value'``."""

    field: str
    op: Operator
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not FIELD_NAME.fullmatch(self.field):
            raise InvalidFilter(f"invalid field name {self.field!r}: expected letters, digits, '_' and '.'")
        try:
            object.__setattr__(self, "op", Operator(self.op))
        except ValueError:
            raise InvalidFilter(f"unknown operator {self.op!r}: expected one of {_OPERATORS}") from None
        if not isinstance(self.value, str):
            kind = type(self.value).__name__
            raise InvalidFilter(f"the value for {self.field!r} must be a string, got {kind}")

    def render(self) -> str:
        return f"{self.field}{self.op.value}'{self.value.replace(chr(39), chr(39) * 2)}'"

    def matches(self, record: Mapping[str, Any]) -> bool:
        values = resolve(record, self.field)
        if self.op is Operator.NE:
            return not any(_compare(v, Operator.EQ, self.value) for v in values)
        return any(_compare(v, self.op, self.value) for v in values)

    def predicates(self) -> Iterator[Predicate]:
        yield self


def _flatten(kind: type[And] | type[Or], operands: tuple[Filter, ...]) -> tuple[Filter, ...]:
    out: list[Filter] = []
    for operand in operands:
        if not isinstance(operand, Filter):
            raise InvalidFilter(f"{kind.__name__} operands must be filters, got {type(operand).__name__}")
        out.extend(operand.operands if isinstance(operand, kind) else (operand,))
    if len(out) < 2:
        raise InvalidFilter(f"{kind.__name__} needs at least two operands")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class And(Filter):
    """All operands hold. Nested ``And`` operands are flattened."""

    operands: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "operands", _flatten(And, tuple(self.operands)))

    def render(self) -> str:
        return " AND ".join(f"({o.render()})" if isinstance(o, Or) else o.render() for o in self.operands)

    def matches(self, record: Mapping[str, Any]) -> bool:
        return all(o.matches(record) for o in self.operands)

    def predicates(self) -> Iterator[Predicate]:
        for o in self.operands:
            yield from o.predicates()


@dataclass(frozen=True, slots=True)
class Or(Filter):
    """Any operand holds. Nested ``Or`` operands are flattened."""

    operands: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "operands", _flatten(Or, tuple(self.operands)))

    def render(self) -> str:
        return " OR ".join(o.render() for o in self.operands)

    def matches(self, record: Mapping[str, Any]) -> bool:
        return any(o.matches(record) for o in self.operands)

    def predicates(self) -> Iterator[Predicate]:
        for o in self.operands:
            yield from o.predicates()


# --- parsing ----------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "word", "op", "string", "(", ")", "end"
    text: str  # the source text of the token ("" at the end)
    value: str  # the decoded value (strings unquoted; otherwise == text)
    start: int  # 0-based offset in the filter


class _Lexer:
    """Tokens on demand, so the parser reports the leftmost problem first."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._peeked: _Token | None = None

    def peek(self) -> _Token:
        if self._peeked is None:
            self._peeked = self._scan()
        return self._peeked

    def next(self) -> _Token:
        token = self.peek()
        self._peeked = None
        return token

    def _scan(self) -> _Token:
        text, n = self.text, len(self.text)
        i = self.pos
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            self.pos = n
            return _Token("end", "", "", n)
        c = text[i]
        if c in "()":
            self.pos = i + 1
            return _Token(c, c, c, i)
        if c == "'":
            return self._string(i)
        if c in "=!<>~":
            j = i
            while j < n and text[j] in "=!<>~":
                j += 1
            self.pos = j
            return _Token("op", text[i:j], text[i:j], i)
        if c == '"':
            raise _error(text, i, "a value in single quotes", "a double quote")
        j = i
        while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
            j += 1
        self.pos = j
        return _Token("word", text[i:j], text[i:j], i)

    def _string(self, start: int) -> _Token:
        text, n = self.text, len(self.text)
        chars: list[str] = []
        i = start + 1
        while i < n:
            if text[i] == "'":
                if i + 1 < n and text[i + 1] == "'":
                    chars.append("'")
                    i += 2
                    continue
                self.pos = i + 1
                return _Token("string", text[start : i + 1], "".join(chars), start)
            chars.append(text[i])
            i += 1
        raise _error(text, start, "a closing single quote for the value that starts here", "end of filter")


def _describe(token: _Token) -> str:
    return "end of filter" if token.kind == "end" else repr(token.text)


def _error(text: str, offset: int, expected: str, found: str, hint: str = "") -> InvalidFilter:
    message = f"invalid filter at column {offset + 1}: expected {expected}, found {found}{hint}"
    return InvalidFilter(message, text=text, column=offset + 1, expected=expected, found=found)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lexer = _Lexer(text)

    def parse(self) -> Filter:
        if not self.text.strip():
            raise _error(self.text, 0, "a field name", "an empty filter")
        result = self._or(0)
        token = self.lexer.peek()
        if token.kind == ")":
            raise _error(self.text, token.start, _AFTER_VALUE, "')'", " with no '(' to close")
        if token.kind != "end":
            raise _error(self.text, token.start, _AFTER_VALUE, _describe(token))
        return result

    def _keyword(self) -> str | None:
        token = self.lexer.peek()
        if token.kind == "word" and token.text.upper() in ("AND", "OR"):
            return token.text.upper()
        return None

    def _or(self, depth: int, after: str = "") -> Filter:
        operands = [self._and(depth, after)]
        while self._keyword() == "OR":
            self.lexer.next()
            operands.append(self._and(depth, " after OR"))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self, depth: int, after: str) -> Filter:
        operands = [self._term(depth, after)]
        while self._keyword() == "AND":
            self.lexer.next()
            operands.append(self._term(depth, " after AND"))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _term(self, depth: int, after: str) -> Filter:
        token = self.lexer.peek()
        if token.kind == "(":
            if depth >= MAX_DEPTH:
                raise _error(self.text, token.start, f"at most {MAX_DEPTH} nested parentheses", "more")
            self.lexer.next()
            inner = self._or(depth + 1, " after '('")
            close = self.lexer.next()
            if close.kind != ")":
                raise _error(
                    self.text,
                    close.start,
                    f"')' to close the '(' at column {token.start + 1}",
                    _describe(close),
                )
            return inner
        return self._predicate(after)

    def _predicate(self, after: str) -> Predicate:
        name = self.lexer.next()
        if name.kind != "word" or not FIELD_NAME.fullmatch(name.text):
            self._bad_field(name, after)
        if name.text.upper() in ("AND", "OR") and self.lexer.peek().kind != "op":
            self._bad_field(name, after)
        op = self.lexer.next()
        if op.kind != "op":
            expected = f"an operator ({_OPERATORS}) after {name.text!r}"
            raise _error(self.text, op.start, expected, _describe(op))
        if op.text not in _OPERATOR_TEXTS:
            expected = f"one of the operators {_OPERATORS}"
            raise _error(self.text, op.start, expected, f"unknown operator {op.text!r}")
        value = self.lexer.next()
        if value.kind != "string":
            raise _error(self.text, value.start, "a value in single quotes", _describe(value))
        return Predicate(name.text, Operator(op.text), value.value)

    def _bad_field(self, token: _Token, after: str) -> NoReturn:
        expected = f"a field name{after}"
        if token.kind == "word" and token.text.upper() in ("AND", "OR"):
            found = f"{token.text!r} (a logical with no predicate before it)"
            raise _error(self.text, token.start, expected, found)
        raise _error(self.text, token.start, expected, _describe(token))


def parse(text: str) -> Filter:
    """Parse a ``filter`` parameter's text (already URL-decoded).

    Raises:
        InvalidFilter: with ``code_minor`` ``invalid_filter_field``, the 1-based ``column`` of the
            problem, what was ``expected`` and what was ``found``.
    """
    if not isinstance(text, str):
        raise InvalidFilter(f"a filter must be text, got {type(text).__name__}")
    return _Parser(text).parse()


# --- matching ---------------------------------------------------------------------------------


def resolve(record: Mapping[str, Any], path: str) -> list[Any]:
    """The leaf values at a dotted ``path``: objects are stepped into, arrays fanned out, nulls dropped."""
    current: list[Any] = [record]
    for segment in path.split("."):
        found: list[Any] = []
        for item in current:
            if isinstance(item, Mapping) and segment in item:
                value = item[segment]
                found.extend(value if isinstance(value, list | tuple) else (value,))
        current = found
    return [v for v in current if v is not None]


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str):
        return None
    m = _ISO.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz: timezone = UTC
    if offset and offset not in "Zz":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0)))
    try:
        clock = (int(hour or 0), int(minute or 0), int(second or 0), micro)
        return datetime(int(year), int(month), int(day), *clock, tzinfo=tz)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


def text_of(value: Any) -> str:
    """A value's text form: ``true``/``false`` for booleans, ISO 8601 for dates."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _ordered(left: Any, op: Operator, right: Any) -> bool:
    if op is Operator.EQ:
        return bool(left == right)
    if op is Operator.NE:
        return bool(left != right)
    if op is Operator.GT:
        return bool(left > right)
    if op is Operator.GE:
        return bool(left >= right)
    if op is Operator.LT:
        return bool(left < right)
    return bool(left <= right)


def _compare(value: Any, op: Operator, literal: str) -> bool:
    if isinstance(value, Mapping | list | tuple):
        return False
    if op is Operator.CONTAINS:
        return literal.casefold() in text_of(value).casefold()
    if isinstance(value, bool):
        return _ordered(text_of(value), op, literal)
    when, then = _instant(value), _instant(literal)
    if when is not None and then is not None:
        return _ordered(when, op, then)
    number, wanted = _number(value), _number(literal)
    # Two strings that read as numbers are equal only as text: sourcedId "007" is not "7".
    textual_equality = isinstance(value, str) and op in (Operator.EQ, Operator.NE)
    if number is not None and wanted is not None and not textual_equality:
        return _ordered(number, op, wanted)
    return _ordered(text_of(value), op, literal)


def sort_key(value: Any) -> tuple[int, Any]:
    """A total order over leaf values: instants, then numbers, then text."""
    when = _instant(value)
    if when is not None:
        return (0, when)
    number = _number(value)
    if number is not None:
        return (1, number)
    return (2, text_of(value))
