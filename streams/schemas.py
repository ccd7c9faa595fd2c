"""The Avro contracts in ``schemas/``: loading, inlining of shared types, compatibility.

``schemas/<domain>/<entity>.v<major>.avsc`` is the value schema of topic
``<domain>.<entity>.v<major>``. Shared named types live once in ``schemas/common/`` and are
inlined at their first reference, so every registered schema is self-contained and any Avro
implementation can read it.

Evolution is checked twice: here, locally, against every committed version of each schema
(``check_history``), and by the registry's per-subject compatibility level at ``apply``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.schema
import fastavro
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from streams.errors import ConfigError

__all__ = [
    "Contract",
    "SchemaSet",
    "backward_problems",
    "check_history",
]


@dataclass(frozen=True)
class Contract:
    """One topic's value schema, with the shared types inlined."""

    topic: str
    path: Path
    schema: dict[str, Any]  # expanded JSON form: what the registry stores

    @property
    def fullname(self) -> str:
        ns = self.schema.get("namespace")
        return f"{ns}.{self.schema['name']}" if ns else str(self.schema["name"])


def _fullname(schema: Mapping[str, Any], enclosing_ns: str | None) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    ns = schema.get("namespace", enclosing_ns)
    return f"{ns}.{name}" if ns else name


def _inline(node: Any, common: Mapping[str, dict[str, Any]], seen: set[str], ns: str | None) -> Any:
    """Replace the first reference to each shared type by its definition."""
    if isinstance(node, str):
        if node in common and node not in seen:
            seen.add(node)
            return _inline(json.loads(json.dumps(common[node])), common, seen, ns)
        return node
    if isinstance(node, list):
        return [_inline(n, common, seen, ns) for n in node]
    if isinstance(node, dict):
        out = dict(node)
        t = node.get("type")
        if t in ("record", "error", "enum", "fixed"):
            full = _fullname(node, ns)
            seen.add(full)
            ns = full.rpartition(".")[0] or None
        if t in ("record", "error"):
            out["fields"] = [{**f, "type": _inline(f["type"], common, seen, ns)} for f in node["fields"]]
        elif t == "array":
            out["items"] = _inline(node["items"], common, seen, ns)
        elif t == "map":
            out["values"] = _inline(node["values"], common, seen, ns)
        elif isinstance(t, dict | list | str) and t not in (
            "record",
            "error",
            "enum",
            "fixed",
            "array",
            "map",
        ):
            out["type"] = _inline(t, common, seen, ns)
        return out
    return node


def _read_json(path: Path | str, text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a schema file must hold one JSON object")
    return doc


class SchemaSet:
    """All contracts of one ``schemas/`` tree (on disk, or as a mapping of path -> text)."""

    def __init__(self, files: Mapping[str, str], origin: str = "schemas") -> None:
        self.origin = origin
        self._common: dict[str, dict[str, Any]] = {}
        self.contracts: dict[str, Contract] = {}
        for rel, text in sorted(files.items()):
            if rel.startswith("common/"):
                doc = _read_json(f"{origin}/{rel}", text)
                self._common[_fullname(doc, None)] = doc
        for rel, text in sorted(files.items()):
            if rel.startswith("common/") or not rel.endswith(".avsc"):
                continue
            domain, _, fname = rel.partition("/")
            if not fname or "/" in fname:
                raise ConfigError(f"{origin}/{rel}: expected schemas/<domain>/<entity>.v<N>.avsc")
            topic = f"{domain}.{fname.removesuffix('.avsc')}"
            doc = _read_json(f"{origin}/{rel}", text)
            expanded = _inline(doc, self._common, set(), None)
            try:
                fastavro.parse_schema(expanded, _write_hint=False)
            except Exception as exc:
                raise ConfigError(f"{origin}/{rel}: not a valid Avro schema: {exc}") from None
            self.contracts[topic] = Contract(topic, Path(origin) / rel, expanded)

    @classmethod
    def load(cls, directory: Path) -> SchemaSet:
        if not directory.is_dir():
            raise ConfigError(f"{directory}: schemas directory not found")
        files = {str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*.avsc")}
        return cls(files, origin=str(directory))

    def for_file(self, relpath: str) -> Contract:
        """The contract of ``<domain>/<entity>.v<N>.avsc`` (as the topology file names it)."""
        for c in self.contracts.values():
            if str(c.path).endswith(relpath):
                return c
        raise KeyError(relpath)


def backward_problems(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    """Why a reader with ``new`` cannot read data written with ``old`` (empty: it can)."""
    reader = avro.schema.parse(json.dumps(new))
    writer = avro.schema.parse(json.dumps(old))
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = [getattr(k, "value", str(k)) for k in result.incompatibilities]
    return [
        f"{loc}: {kind} ({msg})"
        for loc, kind, msg in zip(sorted(result.locations), kinds, sorted(result.messages), strict=False)
    ] or ["incompatible"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def check_history(
    schemas_dir: Path,
    current: SchemaSet | None = None,
    versions: Callable[[Path], list[tuple[str, SchemaSet]]] | None = None,
) -> dict[str, list[str]]:
    """Check each current contract against every committed version of it.

    Returns ``{"<topic> @ <commit>": [problems]}`` for the versions the current schema cannot
    read; empty when evolution has been backward compatible all along.
    """
    current = current or SchemaSet.load(schemas_dir)
    history = (versions or _committed_versions)(schemas_dir)
    problems: dict[str, list[str]] = {}
    for commit, old in history:
        for topic, contract in current.contracts.items():
            before = old.contracts.get(topic)
            if before is None or before.schema == contract.schema:
                continue
            found = backward_problems(contract.schema, before.schema)
            if found:
                problems[f"{topic} @ {commit[:10]}"] = found
    return problems


def _committed_versions(schemas_dir: Path) -> list[tuple[str, SchemaSet]]:
    """Every commit that touched ``schemas/``, as a SchemaSet (none outside a git checkout)."""
    try:
        top = Path(_git(schemas_dir, "rev-parse", "--show-toplevel").strip())
        rel = schemas_dir.resolve().relative_to(top.resolve())
        commits = _git(top, "log", "--format=%H", "--", str(rel)).split()
    except (subprocess.CalledProcessError, FileNotFoundError, ValueError):
        return []
    out = []
    for commit in commits:
        names = _git(top, "ls-tree", "-r", "--name-only", commit, "--", str(rel)).split()
        files = {
            n[len(str(rel)) + 1 :]: _git(top, "show", f"{commit}:{n}") for n in names if n.endswith(".avsc")
        }
        out.append((commit, SchemaSet(files, origin=f"{rel}@{commit[:10]}")))
    return out
