"""Physical records: the fast path agrees with the csv module; lines, bytes and recovery."""

from __future__ import annotations

import csv
import io

import pytest

from connectors.oneroster.csv import _records
from connectors.oneroster.csv._records import Record, RecordReader, bad_byte


def records(data: bytes, *, rewind: bool = False) -> list[Record]:
    reader = RecordReader(io.BytesIO(data))
    out = []
    for record in reader.records():
        out.append(record)
        if rewind and record.broken:
            reader.rewind(record)
    return out


@pytest.mark.parametrize(
    "text",
    [
        "a,b,c\r\n",
        "a,,c\n",
        ",,\n",
        " a , b \n",
        "a;b,c\t\n",
        'a,"b,c",d\n',
        'a,"say ""hi""",d\n',
        '"",x\n',
        "a,b'c,d\n",
        "\n",
        "a,b",
        "é,ü,日本\n",
    ],
)
def test_cells_are_those_of_the_csv_module(text: str) -> None:
    [record] = records(text.encode())
    [expected] = list(csv.reader(io.StringIO(text, newline=""), strict=True)) or [[]]
    assert record.cells == expected
    assert record.raw == text.encode() and record.line == 1 and record.broken is None
    assert record.terminated == text.endswith("\n")


def test_lines_and_bytes_of_a_record_over_several_lines() -> None:
    data = b'id,note\r\n1,"two\r\nlines"\r\n2,plain\r\n'
    _, first, second = records(data)
    assert (first.line, first.cells, first.raw) == (2, ["1", "two\r\nlines"], b'1,"two\r\nlines"\r\n')
    assert first.lines == [b'1,"two\r\n', b'lines"\r\n']
    assert (second.line, second.cells) == (4, ["2", "plain"])


def test_a_bom_is_dropped_from_the_first_line_only() -> None:
    header, row = records(b"\xef\xbb\xbfid,name\n\xef\xbb\xbf1,x\n")
    assert header.cells == ["id", "name"]
    assert row.cells == ["\ufeff1", "x"]


def test_undecodable_bytes_mark_their_record_only() -> None:
    _, bad, good = records(b"id,name\n1,Jos\xe9\n2,Zo\xc3\xab\n")
    assert (bad.undecodable, bad_byte(bad.cells[1]), bad.raw) == (True, 0xE9, b"1,Jos\xe9\n")
    assert (good.undecodable, good.cells) == (False, ["2", "Zoë"])
    assert bad_byte("plain") is None


def test_a_carriage_return_inside_a_line_is_an_error() -> None:
    [record] = records(b"a,b\rc,d\n")
    assert record.broken is not None and record.cells == []


def test_rewind_reads_the_following_lines_again() -> None:
    data = b'1,"open\n2,b\n3,"c"x\n4,d\n'
    out = records(data, rewind=True)
    assert [(r.line, r.cells, r.broken is not None) for r in out] == [
        (1, [], True),  # the quote opened on line 1 runs to line 3, where it breaks
        (2, ["2", "b"], False),
        (3, [], True),
        (4, ["4", "d"], False),
    ]
    assert out[0].lines == [b'1,"open\n', b"2,b\n", b'3,"c"x\n']


def test_a_quote_that_never_closes_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_records, "MAX_RECORD_LINES", 3)
    data = b'1,"open\n' + b"".join(b"%d,x\n" % i for i in range(2, 8))
    out = records(data, rewind=True)
    assert (out[0].line, out[0].broken) == (1, "runaway")
    assert [(r.line, r.cells) for r in out[1:]] == [(i, [str(i), "x"]) for i in range(2, 8)]


def test_an_empty_file_has_no_record() -> None:
    assert records(b"") == []
