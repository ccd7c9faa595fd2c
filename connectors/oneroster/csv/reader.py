"""Read a OneRoster CSV bundle (a folder or a zip, 1.1 or 1.2, bulk or delta) into OneRoster 1.2
JSON objects, one good :class:`Row` or one :class:`RowError` per data row.

What the reader reports (each as a ``RowError`` naming the file, the line and the field):

- the header: unknown or misspelt columns (with the closest known name; their values are ignored),
  empty or repeated column names, required columns that are missing (every row is then reported);
- structure: too many or too few cells, an unterminated quote or a cut-off file, an empty or
  repeated ``sourcedId``;
- encoding: bytes that are not UTF-8 (a Latin-1 "é" is 0xE9), per row; a UTF-8 BOM is fine;
- values: required cells left empty, dates and date-times that are not ISO 8601, booleans that are
  not true/false, numbers that do not parse, role types and roles outside the vocabulary;
- references: a ``sourcedId`` the bundle does not have (an enrollment of an unknown user, a class
  in an unknown term...). A reference is checked when the bundle carries the target file in bulk
  mode; delta files may point outside the bundle. ``parentSourcedId`` may point outside too (a
  school export often names a district it does not include).

The other enumerations (org type, class type, enrollment role, score status...) are checked by the
contract conversion (:func:`connectors.oneroster.models.to_record`), the same for REST and CSV.

``rows()`` streams: a file is never held in memory except orgs and academic sessions (small; their
``children`` are derived from the parents) and the roles and user profiles folded into users.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

from connectors.oneroster.csv.binding import (
    ALIASES,
    FILES,
    NOT_CONSUMED,
    ROLE_TYPES,
    USERS_V1P1,
    Column,
    FileSpec,
)
from connectors.oneroster.models import USER_ROLES, format_instant, parse_instant
from streams.errors import ConfigError

__all__ = ["Bundle", "Row", "RowError", "open_bundle"]

log = logging.getLogger(__name__)

csv.field_size_limit(16 * 1024 * 1024)

#: The order rows come out in: referenced collections before referencing ones.
ORDER = (
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "users",
    "demographics",
    "enrollments",
    "categories",
    "lineItems",
    "results",
)


@dataclass(frozen=True)
class Row:
    """A good row: the OneRoster 1.2 JSON object it describes."""

    entity: str
    file: str
    line: int
    obj: dict[str, Any]
    raw: bytes


@dataclass(frozen=True)
class RowError:
    """A bad row (or a header problem at line 1, or a file problem with line None)."""

    file: str
    line: int | None
    field: str | None
    reason: str
    raw: bytes
    #: The row's collection and sourcedId when they could be read: a bulk load must not take a
    #: rejected row for a deleted record.
    entity: str | None = None
    sourced_id: str | None = None


class _CellError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class _Lines:
    """Feeds csv.reader line by line and remembers the physical lines of the current record."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text
        self.buffer: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.text)
        self.buffer.append(line)
        return line

    def take(self) -> str:
        out = "".join(self.buffer)
        self.buffer.clear()
        return out


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _bad_byte(text: str) -> str | None:
    """The first undecodable byte of ``text`` (read with surrogateescape), as ``0xE9``."""
    if text.isascii():
        return None
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            return f"0x{ord(ch) - 0xDC00:02X}"
    return None


@dataclass
class _FileStats:
    rows: int = 0
    errors: int = 0


@dataclass
class Bundle:
    """An opened bundle. Use :func:`open_bundle`."""

    path: Path
    version: str
    mode: dict[str, str]  # collection -> bulk | delta
    warnings: list[str] = field(default_factory=list)
    _members: dict[str, str] = field(default_factory=dict)  # canonical file name -> name in the bundle
    _zip: zipfile.ZipFile | None = None
    _stats: dict[str, _FileStats] = field(default_factory=dict)
    _ids: dict[str, set[str]] = field(default_factory=dict)
    not_consumed: list[str] = field(default_factory=list)
    _org_types: dict[str, str] = field(default_factory=dict)

    # --- files --------------------------------------------------------------------------------
    def has(self, collection: str) -> bool:
        return FILES[collection].file in self._members

    def _open(self, name: str) -> IO[bytes]:
        actual = self._members[name]
        if self._zip is not None:
            return self._zip.open(actual)
        return (self.path / actual).open("rb")

    def _checked(self, spec: FileSpec, column: Column) -> bool:
        """Whether references of ``column`` can be checked in this bundle."""
        target = column.target
        if target is None or self.mode.get(spec.collection) == "delta":
            return False
        if target == "users" and spec.collection in ("roles", "userProfiles", "users"):
            return "users" in self._ids
        return self.has(target) and self.mode.get(target) == "bulk"

    def _records(self, spec: FileSpec) -> Iterator[tuple[int, bytes, dict[str, str]] | RowError]:
        """The data rows of one file as (line, raw bytes, column -> cell), or errors."""
        name = spec.file
        stats = self._stats.setdefault(name, _FileStats())
        with self._open(name) as stream:
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
            lines = _Lines(text)
            reader = csv.reader(lines, strict=True)
            try:
                header = next(reader)
            except StopIteration:
                stats.errors += 1
                yield RowError(name, None, None, "the file is empty: no header line", b"")
                return
            except csv.Error as exc:
                stats.errors += 1
                yield RowError(
                    name, 1, None, f"the header line is not readable CSV: {exc}", _raw(lines.take())
                )
                return
            header_raw = _raw(lines.take())
            width = len(header)
            while header and not header[-1].strip():
                header.pop()
            names, problems = self._header(spec, header)
            if problems:
                stats.errors += 1
                yield RowError(name, 1, None, "; ".join(problems), header_raw)
            missing = [c.name for c in spec.columns if c.required and c.name not in names]
            previous = reader.line_num
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    stats.errors += 1
                    start, previous = previous + 1, reader.line_num
                    reason = f"unreadable CSV ({exc}): an unterminated quote or a cut-off file"
                    yield RowError(name, start, None, reason, _raw(lines.take()))
                    continue
                text_row = lines.take()
                start, previous = previous + 1, reader.line_num
                if not any(c.strip() for c in cells):
                    continue  # a blank line
                problem = self._shape(cells, names, width, missing, text_row)
                if problem is not None:
                    stats.errors += 1
                    sid = (
                        cells[names.index("sourcedId")].strip()
                        if "sourcedId" in names[: len(cells)]
                        else None
                    )
                    yield RowError(
                        name, start, problem[0], problem[1], _raw(text_row), spec.collection, sid or None
                    )
                    continue
                stats.rows += 1
                yield start, _raw(text_row), {n: c for n, c in zip(names, cells, strict=False) if n}

    def _header(self, spec: FileSpec, header: list[str]) -> tuple[list[str | None], list[str]]:
        known = spec.by_name
        names: list[str | None] = []
        problems: list[str] = []
        seen: set[str] = set()
        for position, cell in enumerate(header, start=1):
            column = ALIASES.get(cell.strip(), cell.strip())
            if not column:
                problems.append(f"column {position} has no name; its values are ignored")
                names.append(None)
            elif column in seen:
                problems.append(f"column {column!r} appears twice; the second is ignored")
                names.append(None)
            elif column in known or column.startswith("metadata."):
                names.append(column)
                seen.add(column)
            else:
                names.append(None)
                if column.startswith("ext_"):
                    warning = f"{spec.file}: extension column {column!r} ignored"
                    if warning not in self.warnings:
                        self.warnings.append(warning)
                    continue
                close = difflib.get_close_matches(column, list(known), n=1, cutoff=0.8)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"unknown column {column!r}{hint}; its values are ignored")
        return names, problems

    @staticmethod
    def _shape(
        cells: list[str], names: list[str | None], width: int, missing: list[str], text: str
    ) -> tuple[str | None, str] | None:
        if missing:
            return missing[0], f"required column(s) {', '.join(missing)} missing from the header"
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            return None, f"the row has {len(cells)} cells, the header {width}"
        if len(cells) < len(names):
            cut = "" if text.endswith(("\n", "\r")) else " (the file may be cut off)"
            return None, f"the row has {len(cells)} cells, the header {len(names)}{cut}"
        byte = _bad_byte(text)
        if byte is not None:
            for column, cell in zip(names, cells, strict=False):
                if _bad_byte(cell) is not None:
                    return column, f"not UTF-8: byte {byte} in field {column or '(unnamed)'}"
            return None, f"not UTF-8: byte {byte}"
        return None

    # --- values -------------------------------------------------------------------------------
    def _convert(self, spec: FileSpec, cells: dict[str, str]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        metadata: dict[str, str] = {}
        for column in spec.columns:
            value = cells.get(column.name, "")
            if column.kind != "str":
                value = value.strip()
            if column.kind == "skip":
                continue
            if value == "" or (column.kind != "str" and not value):
                if column.required:
                    raise _CellError(column.name, "is required but empty")
                if column.kind in ("list", "refs", "userIds"):
                    obj[column.key] = []
                continue
            obj[column.key] = self._value(column, value)
        for name, value in cells.items():
            if name.startswith("metadata.") and value != "":
                metadata[name[len("metadata.") :]] = value
        if metadata:
            obj["metadata"] = metadata
        if not str(obj.get("sourcedId", "")).strip():
            raise _CellError("sourcedId", "is required but empty")
        return obj

    @staticmethod
    def _value(column: Column, value: str) -> Any:
        kind = column.kind
        if kind == "str":
            return value
        if kind == "datetime":
            try:
                return format_instant(parse_instant(value))
            except ValueError:
                raise _CellError(column.name, f"{value!r} is not an ISO 8601 date-time") from None
        if kind == "date":
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                raise _CellError(column.name, f"{value!r} is not a date YYYY-MM-DD") from None
        if kind == "bool":
            if value.lower() not in ("true", "false"):
                raise _CellError(column.name, f"{value!r} is not true or false")
            return value.lower() == "true"
        if kind == "float":
            try:
                return float(value)
            except ValueError:
                raise _CellError(column.name, f"{value!r} is not a number") from None
        if kind == "list":
            return [v.strip() for v in value.split(",") if v.strip()]
        if kind == "userIds":
            out = []
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                if not (item.startswith("{") and item.endswith("}") and ":" in item):
                    raise _CellError(column.name, f"{item!r} is not {{type:identifier}}")
                kind_, _, ident = item[1:-1].partition(":")
                out.append({"type": kind_.strip(), "identifier": ident.strip()})
            return out
        if kind == "ref":
            return {"href": None, "sourcedId": value, "type": column.guid_type}
        if kind == "refs":
            return [{"href": None, "sourcedId": v.strip(), "type": column.guid_type}
                    for v in value.split(",") if v.strip()]  # fmt: skip
        raise AssertionError(f"unknown column kind {kind}")

    def _references(self, spec: FileSpec, obj: dict[str, Any]) -> None:
        for column in spec.columns:
            if column.kind not in ("ref", "refs") or not self._checked(spec, column):
                continue
            assert column.target is not None
            value = obj.get(column.key)
            refs = value if isinstance(value, list) else [value] if value else []
            known = self._ids.get(column.target, set())
            for ref in refs:
                if ref["sourcedId"] not in known:
                    target = FILES[column.target].file
                    raise _CellError(column.name, f"{ref['sourcedId']!r} is not in {target}")

    # --- rows ---------------------------------------------------------------------------------
    def _file_rows(self, spec: FileSpec) -> Iterator[Row | RowError]:
        """Good rows (references checked, duplicates refused) and errors of one file."""
        ids = self._ids.setdefault(spec.collection, set())
        for item in self._records(spec):
            if isinstance(item, RowError):
                yield item
                continue
            line, raw, cells = item
            try:
                obj = self._convert(spec, cells)
                if obj["sourcedId"] in ids:
                    raise _CellError("sourcedId", f"{obj['sourcedId']!r} appears twice in {spec.file}")
                self._references(spec, obj)
            except _CellError as exc:
                self._stats[spec.file].errors += 1
                sid = cells.get("sourcedId", "").strip() or None
                yield RowError(spec.file, line, exc.field, exc.reason, raw, spec.collection, sid)
                continue
            ids.add(obj["sourcedId"])
            yield Row(spec.collection, spec.file, line, obj, raw)

    def _with_children(self, collection: str, kind: str) -> Iterator[Row | RowError]:
        rows: list[Row] = []
        for item in self._file_rows(FILES[collection]):
            if isinstance(item, RowError):
                yield item
            else:
                rows.append(item)
        by_id = {r.obj["sourcedId"]: r.obj for r in rows}
        for row in rows:
            row.obj.setdefault("children", [])
        for row in rows:
            parent = row.obj.get("parent")
            if parent and parent["sourcedId"] in by_id:
                child = {"href": None, "sourcedId": row.obj["sourcedId"], "type": kind}
                by_id[parent["sourcedId"]]["children"].append(child)
        yield from rows

    def _prescan_users(self) -> None:
        """The users' ids, before roles and agents point at them."""
        ids: set[str] = set()
        for item in self._records(FILES["users"]):
            if not isinstance(item, RowError) and item[2].get("sourcedId", "").strip():
                ids.add(item[2]["sourcedId"].strip())
        self._stats.pop("users.csv", None)  # counted when read for real
        self._ids["users"] = ids

    def _users(self) -> Iterator[Row | RowError]:
        if not self.has("users"):
            return
        self._prescan_users()
        folded: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for extra, key in (("roles", "roles"), ("userProfiles", "userProfiles")):
            if not self.has(extra):
                continue
            for item in self._file_rows(FILES[extra]):
                if isinstance(item, RowError):
                    yield item
                    continue
                obj = item.obj
                if extra == "roles":
                    problem = _role_problem(obj)
                    if problem is not None:
                        self._stats[item.file].errors += 1
                        yield RowError(item.file, item.line, problem[0], problem[1], item.raw)
                        continue
                    keys = ("roleType", "role", "org", "userProfile", "beginDate", "endDate")
                    entry = {k: obj[k] for k in keys if k in obj}
                else:
                    entry = {"profileId": obj["sourcedId"], "profileType": obj["profileType"],
                             "vendorId": obj["vendorId"]}  # fmt: skip
                    entry.update({k: obj[k] for k in ("applicationId", "description") if k in obj})
                folded.setdefault(obj["user"]["sourcedId"], {}).setdefault(key, []).append(entry)
        prescanned = self._ids.pop("users", set())
        spec = self._users_spec()
        ids = self._ids.setdefault("users", set())
        agents_ok = prescanned
        for record in self._records(spec):
            if isinstance(record, RowError):
                yield record
                continue
            line, raw, cells = record
            try:
                obj = self._convert(spec, cells)
                sid = obj["sourcedId"]
                if sid in ids:
                    raise _CellError("sourcedId", f"{sid!r} appears twice in users.csv")
                self._check_user_refs(spec, obj, agents_ok)
            except _CellError as exc:
                self._stats["users.csv"].errors += 1
                sid = cells.get("sourcedId", "").strip() or None
                yield RowError("users.csv", line, exc.field, exc.reason, raw, "users", sid)
                continue
            if spec is USERS_V1P1:
                obj["roles"] = self._v1p1_roles(obj.pop("_orgs", []), str(obj.pop("_role", "")))
                obj["userProfiles"] = []
            else:
                extra_of = folded.get(sid, {})
                obj["roles"] = extra_of.get("roles", [])
                obj["userProfiles"] = extra_of.get("userProfiles", [])
            ids.add(sid)
            yield Row("users", "users.csv", line, obj, raw)

    def _check_user_refs(self, spec: FileSpec, obj: dict[str, Any], users: set[str]) -> None:
        for column in spec.columns:
            if column.kind not in ("ref", "refs") or not column.target:
                continue
            if self.mode.get("users") == "delta":
                continue
            known = users if column.target == "users" else self._ids.get(column.target)
            if known is None or not (self.has(column.target) and self.mode.get(column.target) == "bulk"):
                continue
            value = obj.get(column.key)
            for ref in value if isinstance(value, list) else [value] if value else []:
                if ref["sourcedId"] not in known:
                    raise _CellError(
                        column.name, f"{ref['sourcedId']!r} is not in {FILES[column.target].file}"
                    )

    def _users_spec(self) -> FileSpec:
        if self.version == "1.1":
            return USERS_V1P1
        return FILES["users"]

    def _v1p1_roles(self, orgs: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
        out = []
        for i, org in enumerate(orgs):
            value = role
            if role == "administrator":
                value = "districtAdministrator" if self._org_types.get(org["sourcedId"]) == "district" else (
                    "siteAdministrator")  # fmt: skip
            out.append({"roleType": "primary" if i == 0 else "secondary", "role": value, "org": org})
        return out

    def rows(self) -> Iterator[Row | RowError]:
        """Every row of the bundle, referenced collections first."""
        for collection in ORDER:
            if collection == "users":
                yield from self._users()
                continue
            if not self.has(collection):
                continue
            if collection in ("orgs", "academicSessions"):
                kind = "org" if collection == "orgs" else "academicSession"
                for item in self._with_children(collection, kind):
                    if isinstance(item, Row) and collection == "orgs":
                        self._org_types[item.obj["sourcedId"]] = str(item.obj.get("type", ""))
                    yield item
                continue
            yield from self._file_rows(FILES[collection])

    def summary(self) -> dict[str, Any]:
        return {
            "bundle": str(self.path),
            "version": self.version,
            "mode": dict(self.mode),
            "files": {name: {"rows": s.rows, "errors": s.errors} for name, s in self._stats.items()},
            "notConsumed": list(self.not_consumed),
            "warnings": list(self.warnings),
        }

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _role_problem(obj: dict[str, Any]) -> tuple[str, str] | None:
    if obj.get("roleType") not in ROLE_TYPES:
        return "roleType", f"{obj.get('roleType')!r} is not one of primary, secondary"
    role = str(obj.get("role", ""))
    if role not in USER_ROLES and not role.startswith("ext:"):
        return "role", f"{role!r} is not one of {', '.join(sorted(USER_ROLES))} (or an ext: value)"
    return None


def open_bundle(path: Path | str) -> Bundle:
    """Open a bundle folder or zip and read its manifest.

    Raises:
        ConfigError: the path is neither a folder nor a zip, or holds no OneRoster file.
    """
    path = Path(path)
    zf: zipfile.ZipFile | None = None
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file()]
    elif path.is_file() and zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
    else:
        raise ConfigError(f"{path}: not a folder or a zip file")
    known = {spec.file.lower(): spec.file for spec in FILES.values()}
    known["manifest.csv"] = "manifest.csv"
    members: dict[str, str] = {}
    warnings: list[str] = []
    not_consumed: list[str] = []
    for actual in names:
        base = actual.rsplit("/", 1)[-1]
        canonical = known.get(base.lower())
        if canonical is None:
            if base in NOT_CONSUMED or base.lower() in {n.lower() for n in NOT_CONSUMED}:
                not_consumed.append(base)
            elif base.lower().endswith(".csv"):
                warnings.append(f"{base}: not a file of the OneRoster CSV binding; ignored")
            continue
        if canonical != base:
            warnings.append(f"{base}: read as {canonical} (the binding's file names are case-sensitive)")
        members[canonical] = actual
    if not any(name in members for name in (s.file for s in FILES.values())):
        raise ConfigError(f"{path}: no OneRoster CSV file (orgs.csv, users.csv, ...) found")
    manifest = _manifest(path, zf, members.get("manifest.csv"), warnings)
    version = manifest.get("oneroster.version", "").strip()
    if version not in ("1.1", "1.2"):
        version = "1.2" if "roles.csv" in members else "1.1"
        warnings.append(f"manifest.csv gives no usable oneroster.version; read as OneRoster {version}")
    mode: dict[str, str] = {}
    for collection, spec in FILES.items():
        declared = manifest.get(f"file.{collection}", "").strip()
        if spec.file not in members:
            continue
        if declared in ("bulk", "delta"):
            mode[collection] = declared
        else:
            mode[collection] = "bulk"
            warnings.append(
                f"{spec.file} is present but manifest.csv says {declared or 'nothing'}; read as bulk"
            )
    bundle = Bundle(path, version, mode, warnings, members, zf, not_consumed=not_consumed)
    for warning in warnings:
        log.warning("%s: %s", path.name, warning)
    return bundle


def _manifest(
    path: Path, zf: zipfile.ZipFile | None, member: str | None, warnings: list[str]
) -> dict[str, str]:
    if member is None:
        warnings.append("no manifest.csv")
        return {}
    data = zf.read(member) if zf is not None else (path / member).read_bytes()
    out: dict[str, str] = {}
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig", "replace")))
    for i, row in enumerate(reader):
        if i == 0 or len(row) < 2:
            continue
        out[row[0].strip()] = row[1].strip()
    return out


def count_rows(bundle: Bundle) -> Counter[str]:
    """Good rows per collection (reads the whole bundle)."""
    counts: Counter[str] = Counter()
    for item in bundle.rows():
        if isinstance(item, Row):
            counts[item.entity] += 1
    return counts
