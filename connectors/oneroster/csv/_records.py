"""Physical CSV records of one file: cells, the original bytes, the line they start on.

The file is read as bytes, line by line, and each line is decoded on its own, so a byte that is
not UTF-8 marks only the record it is in (its cells carry the byte as a surrogate escape, which
:func:`bad_byte` finds). A UTF-8 byte order mark on the first line is dropped.

A line without a double quote is split at its commas (what :mod:`csv` does with it, faster); a
record with quotes is parsed by :mod:`csv` in strict mode, which pulls further lines when a
quoted cell holds a line break. A record that cannot be read (a quote that never closes,
characters after a closing quote) and a record spanning several lines whose shape is wrong are
reported on their first line; :meth:`RecordReader.rewind` then reads the lines after it again as
records of their own, so one stray quote costs one row, not the rest of the file.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["MAX_RECORD_BYTES", "MAX_RECORD_LINES", "Record", "RecordReader", "bad_byte"]

MAX_RECORD_LINES = 1000
"""A quoted cell spanning more lines than this is taken for a quote that never closes."""

MAX_RECORD_BYTES = 1 << 20
"""Likewise for a record larger than this (1 MiB)."""

_SURROGATE = re.compile("[\udc80-\udcff]")
_BOM = b"\xef\xbb\xbf"


def bad_byte(text: str) -> int | None:
    """The first byte of ``text`` that was not UTF-8 (decoded with surrogateescape), or None."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    return None if found is None else ord(found.group()) - 0xDC00


class _Runaway(Exception):
    """The current record grew past the limits: a quote that never closes."""


@dataclass(slots=True)
class Record:
    """One CSV record.

    Attributes:
        line: 1-based physical line it starts on.
        raw: its original bytes, line breaks included.
        cells: the parsed cells (empty when ``broken``).
        undecodable: some of its bytes are not UTF-8.
        terminated: it ends with a line break (only a file's last line may not).
        broken: why the CSV could not be parsed, or None.
        lines: the physical lines it spans, when more than one.
    """

    line: int
    raw: bytes
    cells: list[str]
    undecodable: bool
    terminated: bool
    broken: str | None
    lines: list[bytes] | None


class RecordReader:
    """The records of one file (a binary stream, or any iterable of byte lines)."""

    def __init__(self, source: Iterable[bytes]) -> None:
        self._source = iter(source)
        self._back: deque[bytes] = deque()
        self._pending: list[bytes] = []
        self._size = 0
        self._bad = False
        self._consumed = 0  # physical lines read, net of rewinds

    # The csv module pulls the lines of a quoted record through this iterator protocol.
    def __iter__(self) -> RecordReader:
        return self

    def __next__(self) -> str:
        raw = self._back.popleft() if self._back else next(self._source)
        pending = self._pending
        pending.append(raw)
        if len(pending) > 1:
            self._size += len(raw)
            if len(pending) > MAX_RECORD_LINES or self._size > MAX_RECORD_BYTES:
                raise _Runaway
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self._bad = True
            return raw.decode("utf-8", "surrogateescape")

    def records(self) -> Iterator[Record]:
        """The records, in file order."""
        first = next(self._source, None)
        if first is None:
            return
        self._back.append(first[3:] if first.startswith(_BOM) else first)
        reader = csv.reader(self, strict=True)
        back, source = self._back, self._source
        while True:
            raw = back.popleft() if back else next(source, None)
            if raw is None:
                return
            start = self._consumed + 1
            if raw.find(b'"') < 0 and raw.find(b"\0") < 0:
                # No quote: the cells are the text between commas, exactly as csv reads them.
                terminated = raw.endswith(b"\n")
                body = (raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]) if terminated else raw
                if body.find(b"\r") < 0:
                    bad = False
                    try:
                        text = body.decode("utf-8")
                    except UnicodeDecodeError:
                        bad = True
                        text = body.decode("utf-8", "surrogateescape")
                    self._consumed = start
                    yield Record(start, raw, text.split(",") if text else [], bad, terminated, None, None)
                    continue
            back.appendleft(raw)
            yield self._quoted(reader, start)

    def _quoted(self, reader: Iterator[list[str]], start: int) -> Record:
        """The record starting on line ``start``, parsed by the csv module."""
        pending: list[bytes] = []
        self._pending = pending
        self._size = 0
        self._bad = False
        broken: str | None = None
        try:
            cells = next(reader)
        except _Runaway:
            cells, broken = [], "runaway"
        except csv.Error as exc:
            cells, broken = [], str(exc)
        self._consumed = start - 1 + len(pending)
        raw = pending[0] if len(pending) == 1 else b"".join(pending)
        terminated = raw.endswith((b"\n", b"\r"))
        return Record(start, raw, cells, self._bad, terminated, broken, pending if len(pending) > 1 else None)

    def rewind(self, record: Record) -> None:
        """Read the lines of ``record`` after its first one again, as new records."""
        if record.lines is None:
            return
        again = record.lines[1:]
        self._back.extendleft(reversed(again))
        self._consumed -= len(again)
