"""Open a OneRoster CSV bundle (a folder or a zip): find its files, read its manifest, work out
the binding's version and each file's mode. :meth:`Bundle.rows` reads the rows (:mod:`.reader`).

What a bundle may get wrong without losing a row is a warning (:attr:`Bundle.warnings`): a file
name in the wrong case (``userprofiles.csv`` is read as ``userProfiles.csv``), a manifest entry
with no value, a file present that the manifest declares ``absent`` or not at all (read as bulk),
a file declared but missing, a CSV file the binding does not have, no manifest at all (every file
is bulk; the version is guessed from the files).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from connectors.oneroster.csv.binding import NOT_CONSUMED, SPECS, VERSIONS
from connectors.oneroster.csv.errors import InvalidBundle
from connectors.oneroster.csv.reader import Row, RowError, Stats, read_rows

__all__ = ["Bundle", "open_bundle"]

log = logging.getLogger(__name__)


class Bundle:
    """An opened bundle; :func:`open_bundle` makes one.

    Attributes:
        path: the folder or zip.
        version: ``"1.1"`` or ``"1.2"``.
        mode: manifest name (``users``, ``roles``, ``resources``...) -> ``bulk``, ``delta`` or
            ``absent``, for every file of the binding: what the reader does with it.
        warnings: what rejects no row (manifest, file names, extension columns...); :meth:`rows`
            adds the header warnings of the files it reads.
        not_consumed: files of the binding present but not read (``resources.csv``...).
    """

    def __init__(
        self,
        path: Path,
        *,
        version: str,
        mode: dict[str, str],
        members: dict[str, str],
        zipped: bool,
        warnings: list[str],
        not_consumed: list[str],
    ) -> None:
        self.path = path
        self.version = version
        self.mode = mode
        self.warnings = list(warnings)
        self.not_consumed = not_consumed
        self._opening_warnings = list(warnings)
        self._members = members
        self._zipped = zipped
        self._stats: dict[str, Stats] = {}

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, version={self.version!r}, files={sorted(self._members)})"

    def has(self, name: str) -> bool:
        """Whether the bundle holds file ``name`` (``users``, ``roles``...) and reads it."""
        return name in self._members

    def file_name(self, name: str) -> str:
        """The name of file ``name`` in the bundle, as spelt there (``userprofiles.csv``)."""
        return self._members.get(name, f"{name}.csv").rsplit("/", 1)[-1]

    def rows(self) -> Iterator[Row | RowError]:
        """Every data row, collections in dependency order (orgs, academicSessions, courses,
        classes, users, demographics, enrollments, categories, lineItems, results); a file's
        header problems come before its rows. Each call reads the bundle again."""
        return read_rows(self)

    def summary(self) -> dict[str, Any]:
        """Good rows and errors per file, files not consumed, warnings (of the last :meth:`rows`)."""
        return {
            "path": str(self.path),
            "version": self.version,
            "mode": dict(self.mode),
            "files": {name: {"rows": s.rows, "errors": s.errors} for name, s in self._stats.items()},
            "notConsumed": list(self.not_consumed),
            "warnings": list(self.warnings),
        }

    def _open(self, name: str, archive: zipfile.ZipFile | None) -> IO[bytes]:
        member = self._members[name]
        if archive is not None:
            return archive.open(member)
        return (self.path / member).open("rb")


def open_bundle(path: Path | str) -> Bundle:
    """Open a bundle folder or zip and read its manifest; :meth:`Bundle.rows` reads the rest.

    Raises:
        InvalidBundle: the path is neither a folder nor a zip, or holds no OneRoster CSV file.
    """
    path = Path(path)
    members: dict[str, str] = {}  # base name -> member (path inside the zip, or file name)
    warnings: list[str] = []
    if path.is_dir():
        for item in sorted(path.iterdir()):
            if item.is_file() and not item.name.startswith("."):
                members[item.name] = item.name
        zipped = False
    elif path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                base = member.rsplit("/", 1)[-1]
                if not base or base.startswith(".") or member.startswith("__MACOSX/"):
                    continue
                if base in members:
                    warnings.append(f"{member}: a second {base} in the zip; ignored")
                    continue
                members[base] = member
        zipped = True
    else:
        raise InvalidBundle(f"{path}: not a folder or a zip file")
    csvs = {base.lower(): base for base in members if base.lower().endswith(".csv")}
    manifest_base = csvs.pop("manifest.csv", None)
    manifest: dict[str, str] = {}
    if manifest_base is None:
        warnings.append("no manifest.csv: every file is read as bulk")
    else:
        manifest = _read_manifest(_member_bytes(path, zipped, members[manifest_base]), warnings)
    version = _version(manifest.get("oneroster.version", ""), csvs, path, zipped, members, warnings)
    names = [*SPECS[version], *NOT_CONSUMED[version]]
    found: dict[str, str] = {}
    not_consumed: list[str] = []
    present: set[str] = set()
    for name in names:
        base = csvs.pop(f"{name.lower()}.csv", "")
        if not base:
            continue
        present.add(name)
        if base != f"{name}.csv":
            warnings.append(f"{base}: read as {name}.csv (the binding's file names are case-sensitive)")
        if name in SPECS[version]:
            found[name] = members[base]
        else:
            not_consumed.append(base)
    for base in sorted(csvs.values()):
        warnings.append(f"{base}: not a file of the OneRoster {version} CSV binding; ignored")
    if not found and manifest_base is None:
        raise InvalidBundle(f"{path}: no OneRoster CSV file (manifest.csv, orgs.csv, users.csv...) found")
    mode: dict[str, str] = {}
    for name in names:
        declared = manifest.get(f"file.{name}")
        if name in present:
            if declared in ("bulk", "delta"):
                mode[name] = declared
                continue
            mode[name] = "bulk"
            if manifest_base is not None:
                said = f"has no file.{name} entry" if declared is None else f"declares it {declared!r}"
                warnings.append(f"{name}.csv is in the bundle but manifest.csv {said}; read as bulk")
        else:
            mode[name] = "absent"
            if declared in ("bulk", "delta"):
                warnings.append(f"manifest.csv declares {name} {declared} but the bundle has no {name}.csv")
    bundle = Bundle(
        path,
        version=version,
        mode=mode,
        members=found,
        zipped=zipped,
        warnings=warnings,
        not_consumed=not_consumed,
    )
    for warning in warnings:
        log.warning("%s: %s", path.name, warning)
    return bundle


def _member_bytes(path: Path, zipped: bool, member: str) -> bytes:
    if zipped:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    return (path / member).read_bytes()


def _read_manifest(data: bytes, warnings: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    text = data.decode("utf-8-sig", "replace")
    for line, cells in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not cells or (line == 1 and cells[0].strip() == "propertyName"):
            continue
        key = cells[0].strip()
        value = cells[1].strip() if len(cells) > 1 else ""
        out[key] = value
        if key.startswith("file.") and value not in ("bulk", "delta", "absent"):
            shown = repr(value) if value else "no value"
            warnings.append(f"manifest.csv line {line}: {key} has {shown} (bulk, delta or absent expected)")
    if out.get("manifest.version", "1.0") != "1.0":
        warnings.append(f"manifest.csv: manifest.version {out['manifest.version']!r} (1.0 expected)")
    return out


def _version(
    declared: str,
    csvs: dict[str, str],
    path: Path,
    zipped: bool,
    members: dict[str, str],
    warnings: list[str],
) -> str:
    """The binding's version: the manifest's, else what the files look like."""
    declared = declared.strip()
    for version in VERSIONS:
        if declared == version or declared.startswith(version + "."):
            return version
    if declared == "1.0":
        warnings.append("manifest.csv: oneroster.version 1.0 is read as 1.1")
        return "1.1"
    guess = "1.2"
    if "roles.csv" not in csvs and "userprofiles.csv" not in csvs and "users.csv" in csvs:
        member = members[csvs["users.csv"]]
        with contextlib.ExitStack() as stack:
            if zipped:
                stream: IO[bytes] = stack.enter_context(zipfile.ZipFile(path)).open(member)
            else:
                stream = (path / member).open("rb")
            if b"orgSourcedIds" in stack.enter_context(stream).readline():
                guess = "1.1"
    said = f"an unknown oneroster.version {declared!r}" if declared else "no oneroster.version"
    warnings.append(f"manifest.csv gives {said}; the files look like OneRoster {guess}")
    return guess
