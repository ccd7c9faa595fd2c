"""Read a OneRoster CSV bundle (a folder or a zip; 1.1 or 1.2; bulk or delta) into OneRoster 1.2
REST JSON objects: one good :class:`Row` or one :class:`RowError` per data row, streamed.

What makes a row a :class:`RowError` (every problem of the row is in ``problems``; ``field`` and
``kind`` are the first one's):

- ``structure``: too many or too few cells, a quoted cell followed by other characters;
  ``truncated``: the file ends inside the row (a quote never closed, a cut-off last line);
- ``encoding``: bytes that are not UTF-8 (that row only; a UTF-8 BOM is fine);
- ``missing-column``: a required column is not in the header (every row is reported);
  ``missing-header``: line 1 is not a header at all (every line is reported);
- ``required``: an empty cell in a required column, an empty sourcedId;
- ``value``: dates, date-times, booleans, numbers, years, userIds that do not parse;
- ``enum``: a value outside the vocabulary (status, org type, classType, roles, scoreStatus...);
- ``duplicate``: a sourcedId already used earlier in the same file;
- ``reference``: a sourcedId that no row of the bundle has (a class of an unknown course, an
  enrollment of an unknown user). A row that exists but is rejected still exists: its problem is
  reported once, on its own line, not again on every row pointing at it. References from a file
  in ``delta`` mode, or to one, are not checked: they may point outside the bundle.

Header problems (``header``: unknown or misspelt columns with the closest known name, repeated or
unnamed columns) are reported on line 1 and in the warnings; the rest of the file is read. An
empty file is one error with line None.

Memory: files are streamed. What is held: the sourcedIds (and first lines) of every file that a
checked reference points at, the sourcedIds of the file being read (duplicates), orgs and
academic sessions until their ``children`` are known, and 1.2 roles and user profiles until their
users are read (``roles.csv``/``userProfiles.csv`` fold into ``users[].roles[]``/``userProfiles[]``).
"""

from __future__ import annotations

import contextlib
import logging
import zipfile
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.oneroster.csv._records import Record, RecordReader, bad_byte
from connectors.oneroster.csv._values import BadValue, Converter, closest, converter
from connectors.oneroster.csv.binding import ALIASES, FOLDED, GUID_TYPES, ORDER, SPECS, FileSpec

if TYPE_CHECKING:
    from connectors.oneroster.csv.bundle import Bundle

__all__ = ["Problem", "Row", "RowError", "Stats", "read_rows"]

log = logging.getLogger(__name__)

_LISTS = frozenset({"list", "refs", "userIds"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a row: its kind, the column (None: the row as a whole), why."""

    kind: str
    field: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Row:
    """A good row.

    Attributes:
        entity: the collection (``orgs``, ``academicSessions``, ... ``results``).
        file: the file's name in the bundle (``users.csv``).
        line: the 1-based physical line the row starts on (the header is line 1).
        obj: the OneRoster 1.2 REST JSON object (GUIDRef hrefs are None).
        raw: the row's original bytes.
    """

    entity: str
    file: str
    line: int
    obj: dict[str, Any]
    raw: bytes


@dataclass(frozen=True, slots=True)
class RowError:
    """A bad row, a header problem (line 1) or a file problem (line None).

    Attributes:
        file: the file's name in the bundle.
        line: where the row starts; 1 for the header; None for the file as a whole.
        field: the column of the first problem (None: the row or file as a whole).
        reason: every problem of the row, for a person.
        raw: the row's original bytes.
        kind: the first problem's kind (see the module docstring).
        entity: the file's collection (``users``; ``roles`` for a roles.csv row).
        sourced_id: the row's sourcedId when it could be read: a rejected row is not a deleted one.
        problems: every problem of the row.
    """

    file: str
    line: int | None
    field: str | None
    reason: str
    raw: bytes
    kind: str = "value"
    entity: str | None = None
    sourced_id: str | None = None
    problems: tuple[Problem, ...] = ()


def _row_error(
    file: str, line: int | None, problems: list[Problem], raw: bytes, entity: str, sid: str | None
) -> RowError:
    first = problems[0]
    reason = first.reason if len(problems) == 1 else "; ".join(p.reason for p in problems)
    return RowError(file, line, first.field, reason, raw, first.kind, entity, sid or None, tuple(problems))


@dataclass
class Stats:
    """Good rows and errors of one file."""

    rows: int = 0
    errors: int = 0


@dataclass
class _Header:
    """What the header line of one file says."""

    labels: list[str]  # each cell as written
    names: list[str | None]  # the binding's column at each position (or metadata.x), or None
    problems: list[Problem]
    missing: list[str]  # required columns absent
    named_width: int  # cells a row needs: up to the last named column
    width: int  # cells of the header line
    usable: bool  # some cell is a known column: line 1 is a header

    def index(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None


def _printable(text: str) -> str:
    """``text`` with bytes that were not UTF-8 shown as U+FFFD (safe to print and log)."""
    return text if text.isascii() else text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _read_header(spec: FileSpec, cells: list[str], warnings: list[str], file: str) -> _Header:
    labels = [_printable(cell) for cell in cells]
    width = len(labels)
    while labels and not labels[-1].strip():
        labels.pop()
    if len(labels) < width:
        count = width - len(labels)
        warnings.append(f"{file}: {count} empty column name(s) at the end of the header; ignored")
    aliases = {**ALIASES["*"], **ALIASES.get(spec.name, {})}
    known = [c.name for c in spec.columns + spec.extra]
    names: list[str | None] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for position, label in enumerate(labels, start=1):
        text = name = label.strip()
        if spec.column(text) is None and spec.column(aliases.get(text, "")) is not None:
            name = aliases[text]
            warnings.append(f"{file}: column {text!r} read as {name!r}")
        if not text:
            problems.append(Problem("header", None, f"column {position} has no name; its values are ignored"))
            names.append(None)
        elif name in seen:
            reason = f"column {text!r} appears twice; the second one (column {position}) is ignored"
            problems.append(Problem("header", text, reason))
            names.append(None)
        elif spec.column(name) is not None or name.startswith("metadata."):
            names.append(name)
            seen.add(name)
        elif name.startswith(("ext_", "ext.", "ext:")):
            warnings.append(f"{file}: extension column {text!r} ignored")
            names.append(None)
        else:
            hint = closest(name, known)
            did = f" (did you mean {hint!r}?)" if hint else ""
            problems.append(Problem("header", text, f"unknown column {text!r}{did}; its values are ignored"))
            warnings.append(f"{file}: unknown column {text!r}{did}")
            names.append(None)
    named_width = max((i + 1 for i, n in enumerate(names) if n is not None), default=0)
    missing = [name for name in spec.required if name not in seen]
    if missing and seen:
        warnings.append(f"{file}: required column(s) {', '.join(missing)} missing from the header")
    return _Header(labels, names, problems, missing, named_width, width, bool(seen))


_CSV_ERRORS = {
    "',' expected after '\"'": (
        "a quoted cell is followed by other characters (a quote inside a cell must be doubled)"
    ),
    "line contains NUL": "the row contains a NUL byte",
    "field larger than field limit": (
        "a cell is larger than the CSV reader allows (a quote that never closes?)"
    ),
}


def _shape(record: Record, head: _Header) -> Problem | None:
    """A problem with the row's CSV structure, or None."""
    if record.broken is not None:
        if record.broken == "runaway":
            reason = "a quote opened on this line does not close; the lines after it are read as rows"
            return Problem("structure", None, reason)
        if "unexpected end of data" in record.broken:
            reason = "the file ends inside this row: a quote opened in it never closes"
            return Problem("truncated", None, reason)
        for text, reason in _CSV_ERRORS.items():
            if text in record.broken:
                return Problem("structure", None, reason)
        return Problem("structure", None, f"the row is not valid CSV ({record.broken})")
    count, needed = len(record.cells), head.named_width
    if count < needed:
        if not record.terminated:
            reason = f"the file ends in the middle of this row ({count} of {needed} cells): it looks cut off"
            return Problem("truncated", None, reason)
        return Problem("structure", None, f"the row has {count} cells but the header has {needed} columns")
    if count > head.width and any(c.strip() for c in record.cells[head.width :]):
        reason = f"the row has {count} cells but the header has {head.width} columns"
        return Problem("structure", None, reason)
    return None


def _blank(cells: list[str]) -> bool:
    return not any(c.strip() for c in cells)


def _sourced_id(record: Record, at: int | None) -> str | None:
    """The record's sourcedId, also when its CSV is broken (from the cells before the first
    quote), so that a rejected row is never taken for a missing one."""
    if at is None:
        return None
    cells = record.cells
    if record.broken is not None:
        first = record.raw if record.lines is None else record.lines[0]
        cells = first.decode("utf-8", "replace").split('"', 1)[0].split(",")[:-1]
    if at >= len(cells):
        return None
    return cells[at].strip() or None


# A column's place in the conversion: (cell index, column name, converter (None: text kept as
# written), JSON field, what an empty cell means: None (nothing), _EMPTY_LIST (an empty list) or
# the Problem to report).
_EMPTY_LIST = object()
_NONE: frozenset[int] = frozenset()
_Step = tuple[int, str, Converter | None, str, object]


def read_rows(bundle: Bundle) -> Iterator[Row | RowError]:
    """Every row of ``bundle`` (what :meth:`Bundle.rows` returns)."""
    return _Pass(bundle).rows()


class _Pass:
    """One reading of a bundle: the state of :meth:`Bundle.rows`."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.specs = SPECS[bundle.version]
        self.archive: zipfile.ZipFile | None = None
        self.first_lines: dict[str, dict[str, int]] = {}  # collection -> sourcedId -> first line
        self.org_types: dict[str, str] = {}
        # 1.2 roles and user profiles waiting for their user: user -> roles|userProfiles -> entries
        self.parts: dict[str, dict[str, list[dict[str, Any]]]] = {}

    # --- driving ---------------------------------------------------------------------------------
    def rows(self) -> Iterator[Row | RowError]:
        bundle = self.bundle
        bundle.warnings[:] = bundle._opening_warnings
        bundle._stats = {}
        with contextlib.ExitStack() as stack:
            if bundle._zipped:
                self.archive = stack.enter_context(zipfile.ZipFile(bundle.path))
            self._prescan()
            for name in ORDER:
                if name == "users":
                    yield from self._users()
                elif not bundle.has(name):
                    continue
                elif name in ("orgs", "academicSessions"):
                    yield from self._with_children(name)
                else:
                    yield from self._read(self.specs[name])

    def _checked(self, spec: FileSpec, target: str) -> bool:
        """References from ``spec`` to ``target`` are checked unless either end is a delta file."""
        mode = self.bundle.mode
        return mode.get(spec.name) != "delta" and mode.get(target) != "delta"

    def _prescan(self) -> None:
        """The sourcedIds (and first lines) of every file some checked reference points at."""
        bundle = self.bundle
        needed: set[str] = set()
        for spec in self.specs.values():
            if bundle.has(spec.name):
                for column in spec.columns + spec.extra:
                    if column.target and self._checked(spec, column.target):
                        needed.add(column.target)
        if bundle.version == "1.1" and bundle.has("users"):
            needed.add("orgs")  # 1.1 administrators become site- or district administrators
        for name in sorted(needed):
            if bundle.has(name):
                self.first_lines[name] = self._scan_ids(self.specs[name])

    def _scan_ids(self, spec: FileSpec) -> dict[str, int]:
        first: dict[str, int] = {}
        with self.bundle._open(spec.name, self.archive) as stream:
            reader = RecordReader(stream)
            records = reader.records()
            header = next(records, None)
            if header is None or header.broken is not None:
                return first
            head = _read_header(spec, header.cells, [], "")
            at = head.index("sourcedId")
            type_at = head.index("type") if spec.name == "orgs" else None
            if at is None:
                return first
            for record in records:
                sid = _sourced_id(record, at)
                if _shape(record, head) is not None:
                    reader.rewind(record)  # as the real reading does, so that lines agree
                elif type_at is not None and sid and sid not in first:
                    self.org_types[sid] = record.cells[type_at].strip()
                if sid and sid not in first:
                    first[sid] = record.line
        return first

    # --- one file --------------------------------------------------------------------------------
    def _steps(self, spec: FileSpec, head: _Header) -> list[_Step]:
        steps: list[_Step] = []
        for index, name in enumerate(head.names):
            column = spec.column(name) if name else None
            if column is None or column.kind == "secret":
                continue
            ids: Container[str] | None = None
            where = ""
            target = column.target
            if target and self._checked(spec, target):
                if self.bundle.has(target):
                    ids = self.first_lines.get(target, {})
                    where = self.bundle.file_name(target)
                else:
                    ids = frozenset()
                    where = f"{target}.csv (the bundle has no {target}.csv)"
            convert = None if column.kind == "text" else converter(column, ids=ids, where=where)
            empty: object = None
            if column.required:
                reason = (
                    "sourcedId is empty: every row needs one"
                    if column.kind == "id"
                    else f"{column.name} is required but empty"
                )
                empty = Problem("required", column.name, reason)
            elif column.kind in _LISTS:
                empty = _EMPTY_LIST
            steps.append((index, column.name, convert, column.field, empty))
        return steps

    def _read(self, spec: FileSpec) -> Iterator[Row | RowError]:
        """The rows of one file (for roles.csv and userProfiles.csv: roles and profiles)."""
        bundle = self.bundle
        file = bundle.file_name(spec.name)
        stats = bundle._stats.setdefault(file, Stats())
        entity = spec.name
        with bundle._open(spec.name, self.archive) as stream:
            reader = RecordReader(stream)
            records = reader.records()
            header = next(records, None)
            if header is None or (header.broken is None and _blank(header.cells)):
                stats.errors += 1
                reason = "the file is empty: it has no header line"
                yield RowError(file, None, None, reason, b"", "file", entity)
                return
            head = _read_header(spec, header.cells if header.broken is None else [], bundle.warnings, file)
            if not head.usable:
                # Line 1 is no header: every line is reported, so that none is taken for a deletion.
                expected = ",".join(c.name for c in spec.columns)
                problem = Problem(
                    "missing-header", None, f"the file has no header line (expected {expected})"
                )
                reader.rewind(header)
                first = header.raw if header.lines is None else header.lines[0]
                sid = header.cells[0].strip() if header.cells else None
                stats.errors += 1
                yield _row_error(file, 1, [problem], first, entity, sid)
                for record in records:
                    if record.broken is None and _blank(record.cells):
                        continue
                    stats.errors += 1
                    sid = record.cells[0].strip() if record.cells else None
                    yield _row_error(file, record.line, [problem], record.raw, entity, sid)
                return
            for problem in head.problems:
                stats.errors += 1
                yield _row_error(file, 1, [problem], header.raw, entity, None)
            yield from self._data(spec, head, reader, records, file, stats)
        log.info("%s: %s: %d row(s), %d error(s)", bundle.path.name, file, stats.rows, stats.errors)

    def _data(
        self,
        spec: FileSpec,
        head: _Header,
        reader: RecordReader,
        records: Iterator[Record],
        file: str,
        stats: Stats,
    ) -> Iterator[Row | RowError]:
        # The reader's hot loop: everything that depends only on the file is worked out before it.
        entity = spec.name
        steps = self._steps(spec, head)
        present = {head.names[step[0]] for step in steps}
        absent_lists = [c.field for c in spec.columns if c.kind in _LISTS and c.name not in present]
        missing = [
            Problem("missing-column", name, f"required column {name!r} is missing from the header")
            for name in head.missing
        ]
        metadata = [
            (i, name.removeprefix("metadata."))
            for i, name in enumerate(head.names)
            if name and name.startswith("metadata.")
        ]
        at = head.index("sourcedId")
        low, high = head.named_width, head.width
        first_lines = self.first_lines.get(entity)
        seen: set[str] = set()
        blank = 0
        for record in records:
            cells = record.cells
            count = len(cells)
            if record.broken is None:
                lead = cells[0] if count else ""
                if (not lead or lead.isspace()) and _blank(cells):
                    blank += 1
                    continue
            if record.broken is None and at is not None and at < count:
                sid: str | None = cells[at].strip()
            else:
                sid = _sourced_id(record, at)
            if record.broken is not None or not low <= count <= high:
                shape = _shape(record, head)
                if shape is not None:
                    # A record over several lines is reported on its first; the others are read again.
                    raw = record.raw if record.lines is None else record.lines[0]
                    stats.errors += 1
                    yield _row_error(file, record.line, [shape], raw, entity, sid)
                    reader.rewind(record)
                    continue
            problems = list(missing) if missing else []
            undecodable = _encoding(cells, head, problems) if record.undecodable else _NONE
            obj: dict[str, Any] = {}
            for index, name, convert, key, empty in steps:
                value = cells[index]
                if value and not value.isspace():
                    if undecodable and index in undecodable:
                        continue
                    if convert is None:
                        obj[key] = value
                        continue
                    try:
                        obj[key] = convert(value)
                    except BadValue as bad:
                        problems.append(Problem(bad.kind, name, bad.reason))
                elif empty is not None:
                    if isinstance(empty, Problem):
                        problems.append(empty)
                    else:
                        obj[key] = []
            for key in absent_lists:
                obj[key] = []
            if metadata:
                extra = {name: cells[i] for i, name in metadata if i < count and cells[i]}
                if extra:
                    obj["metadata"] = extra
            if sid:
                if first_lines is None:
                    if sid in seen:
                        reason = f"sourcedId {sid!r} is already used by an earlier row"
                        problems.append(Problem("duplicate", "sourcedId", reason))
                    seen.add(sid)
                else:
                    first = first_lines.get(sid)
                    if first is not None and first != record.line:
                        reason = f"sourcedId {sid!r} is already used on line {first}"
                        problems.append(Problem("duplicate", "sourcedId", reason))
            if problems:
                stats.errors += 1
                yield _row_error(file, record.line, problems, record.raw, entity, sid)
                continue
            stats.rows += 1
            yield Row(entity, file, record.line, obj, record.raw)
        if blank:
            self.bundle.warnings.append(f"{file}: {blank} blank row(s) skipped")

    # --- collections with a twist ----------------------------------------------------------------
    def _with_children(self, name: str) -> Iterator[Row | RowError]:
        """Orgs and academic sessions: ``children`` are the good rows naming them as parent."""
        kind = GUID_TYPES[name]
        good: list[Row] = []
        for item in self._read(self.specs[name]):
            if isinstance(item, RowError):
                yield item
            else:
                good.append(item)
        by_id = {row.obj["sourcedId"]: row.obj for row in good}
        for row in good:
            row.obj["children"] = []
        for row in good:
            parent = row.obj.get("parent")
            if parent is not None and parent["sourcedId"] in by_id:
                child = {"href": None, "sourcedId": row.obj["sourcedId"], "type": kind}
                by_id[parent["sourcedId"]]["children"].append(child)
        yield from good

    def _fold(self, name: str, entry: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[RowError]:
        """Read roles.csv or userProfiles.csv into :attr:`parts`; yield its errors."""
        if not self.bundle.has(name):
            return
        for item in self._read(self.specs[name]):
            if isinstance(item, RowError):
                yield item
                continue
            obj = item.obj
            if obj.get("status") == "tobedeleted":
                continue  # a deleted role is no role
            self.parts.setdefault(obj["user"]["sourcedId"], {}).setdefault(name, []).append(entry(obj))

    def _users(self) -> Iterator[Row | RowError]:
        v1p1 = self.bundle.version == "1.1"
        if not v1p1:
            yield from self._fold(FOLDED[0], _role_entry)
            yield from self._fold(FOLDED[1], _profile_entry)
        if not self.bundle.has("users"):
            return
        for item in self._read(self.specs["users"]):
            if isinstance(item, RowError):
                yield item
                continue
            obj = item.obj
            if v1p1:
                obj["roles"] = self._v1p1_roles(obj.pop("orgs", []), obj.pop("role", ""))
                obj["userProfiles"] = []
            else:
                parts = self.parts.pop(obj["sourcedId"], {})
                obj["roles"] = parts.get("roles", [])
                obj["userProfiles"] = parts.get("userProfiles", [])
            yield item

    def _v1p1_roles(self, orgs: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
        """1.1 gives one role at one or more orgs: primary at the first, secondary at the others."""
        out = []
        for i, org in enumerate(orgs):
            value = role
            if role == "administrator":
                district = self.org_types.get(org["sourcedId"]) == "district"
                value = "districtAdministrator" if district else "siteAdministrator"
            out.append({"roleType": "primary" if i == 0 else "secondary", "role": value, "org": org})
        return out


def _encoding(cells: list[str], head: _Header, problems: list[Problem]) -> set[int]:
    """Report the cells holding bytes that are not UTF-8; returns their positions."""
    found: set[int] = set()
    for index, cell in enumerate(cells):
        byte = bad_byte(cell)
        if byte is not None:
            label = head.labels[index] if index < len(head.labels) else f"column {index + 1}"
            reason = f"not UTF-8: byte 0x{byte:02X} in field {label} (save the file as UTF-8)"
            problems.append(Problem("encoding", label, reason))
            found.add(index)
    return found


def _role_entry(obj: dict[str, Any]) -> dict[str, Any]:
    keys = ("roleType", "role", "org", "userProfile", "beginDate", "endDate")
    return {k: obj[k] for k in keys if k in obj}


def _profile_entry(obj: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"profileId": obj["sourcedId"]}
    entry.update({k: obj[k] for k in ("profileType", "vendorId", "applicationId", "description") if k in obj})
    # The password column is never read; the credential's type and username are no secret.
    entry["credentials"] = [{"type": obj["credentialType"], "username": obj["username"]}]
    return entry
