"""Write OneRoster 1.2 JSON objects as a OneRoster 1.2 CSV bundle (folder or zip).

The inverse of :mod:`.reader`: users' ``roles[]`` go to ``roles.csv`` and ``userProfiles[]`` to
``userProfiles.csv``; GUIDRef hrefs and ``children`` are dropped (CSV has no column for them; the
reader derives ``children`` from the parents); ``metadata`` becomes ``metadata.<name>`` columns.
Columns come in the binding's order; ``manifest.csv`` declares every file of the binding.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from connectors.oneroster.csv.binding import FILES, NOT_CONSUMED, Column, FileSpec

__all__ = ["write_bundle"]


def _cell(column: Column, obj: Mapping[str, Any]) -> str:
    value = obj.get(column.key)
    if value is None or column.kind == "skip":
        return ""
    if column.kind == "ref":
        return str(value.get("sourcedId", "")) if isinstance(value, Mapping) else str(value)
    if column.kind == "refs":
        return ",".join(str(v.get("sourcedId", "")) for v in value)
    if column.kind == "list":
        for item in value:
            if "," in str(item):
                # The binding separates list values with commas and has no escape for them.
                raise ValueError(f"{column.name}: {item!r} contains a comma, which a CSV list cannot carry")
        return ",".join(str(v) for v in value)
    if column.kind == "userIds":
        return ",".join(f"{{{v['type']}:{v['identifier']}}}" for v in value)
    if column.kind == "bool":
        return "true" if value else "false"
    if column.kind == "float":
        return repr(float(value))
    return str(value)


class _Table:
    def __init__(self, spec: FileSpec) -> None:
        self.spec = spec
        self.rows: list[tuple[Mapping[str, Any], dict[str, str]]] = []
        self.metadata: dict[str, None] = {}

    def add(self, obj: Mapping[str, Any]) -> None:
        metadata = {str(k): str(v) for k, v in (obj.get("metadata") or {}).items()}
        for key in metadata:
            self.metadata.setdefault(key, None)
        self.rows.append((obj, metadata))

    def render(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        extra = list(self.metadata)
        writer.writerow([c.name for c in self.spec.columns] + [f"metadata.{k}" for k in extra])
        for obj, metadata in self.rows:
            writer.writerow([_cell(c, obj) for c in self.spec.columns] + [metadata.get(k, "") for k in extra])
        return out.getvalue()


def write_bundle(
    collections: Mapping[str, Iterable[Mapping[str, Any]]],
    path: Path | str,
    *,
    zip: bool = False,
    mode: str = "bulk",
    system_name: str = "sis-lms-sync",
) -> None:
    """Write ``collections`` (collection name -> OneRoster 1.2 JSON objects) as a 1.2 bundle."""
    if mode not in ("bulk", "delta"):
        raise ValueError("mode must be bulk or delta")
    tables: dict[str, _Table] = {}

    def table(name: str) -> _Table:
        if name not in tables:
            tables[name] = _Table(FILES[name])
        return tables[name]

    for name, objects in collections.items():
        if name not in FILES or name in ("roles", "userProfiles"):
            continue
        for obj in objects:
            table(name).add(obj)
            stamp = {"status": obj.get("status"), "dateLastModified": obj.get("dateLastModified")}
            if name != "users":
                continue
            user = {"href": None, "sourcedId": obj["sourcedId"], "type": "user"}
            for i, role in enumerate(obj.get("roles") or []):
                row = {**role, "sourcedId": f"{obj['sourcedId']}-role-{i + 1}", "user": user, **stamp}
                table("roles").add(row)
            for profile in obj.get("userProfiles") or []:
                row = {**profile, "sourcedId": profile["profileId"], "user": user, **stamp}
                table("userProfiles").add(row)
    files = {FILES[name].file: t.render() for name, t in tables.items()}
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\r\n")
    writer.writerow(["propertyName", "value"])
    writer.writerow(["manifest.version", "1.0"])
    writer.writerow(["oneroster.version", "1.2"])
    for name, spec in sorted(FILES.items()):
        writer.writerow([f"file.{name}", mode if spec.file in files else "absent"])
    for other in sorted(NOT_CONSUMED):
        writer.writerow([f"file.{other.removesuffix('.csv')}", "absent"])
    writer.writerow(["source.systemName", system_name])
    files["manifest.csv"] = manifest.getvalue()
    target = Path(path)
    if zip:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, text in files.items():
                zf.writestr(name, text.encode("utf-8"))
        return
    target.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (target / name).write_bytes(text.encode("utf-8"))
