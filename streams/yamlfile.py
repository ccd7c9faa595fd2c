"""Declarative YAML files whose errors name the file, the line and the field.

The topology file and the role-mapping rule files are read the same way: the text is parsed
twice (``yaml.compose`` keeps each node's position, ``yaml.safe_load`` gives the data), pydantic
validates the data, and every validation error is mapped back to the line of the node it is
about. One edit can then fix every problem, because all of them are reported at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from streams.errors import ConfigError, FileError

__all__ = ["YamlDoc", "load_yaml"]

E = TypeVar("E", bound=FileError)
M = TypeVar("M", bound=BaseModel)


class YamlDoc:
    """A parsed YAML file: its data and the node tree that knows where each value was written."""

    def __init__(self, path: Path, root: yaml.Node | None, data: Any, error: type[FileError]) -> None:
        self.path, self.root, self.data, self.error = path, root, data, error

    def node_at(self, loc: tuple[Any, ...]) -> yaml.Node | None:
        """The deepest node along a location (mapping keys and sequence indexes)."""
        node = self.root
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                nxt = next((v for k, v in node.value if k.value == part), None)
                if nxt is None:
                    # unknown or missing key: the key itself if present, else its mapping
                    key = next((k for k, _ in node.value if k.value == part), None)
                    return key or node
                node = nxt
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return node
                node = node.value[part]
            else:
                return node
        return node

    def line_at(self, loc: tuple[Any, ...]) -> int | None:
        node = self.node_at(loc)
        return node.start_mark.line + 1 if node is not None else None

    def field_name(self, loc: tuple[Any, ...], label: str = "name") -> str:
        """A readable field path; list items are shown by their ``label`` key when they have one."""
        parts: list[str] = []
        cur = self.data
        for p in loc:
            if isinstance(p, int) and isinstance(cur, list) and p < len(cur):
                item = cur[p]
                tag = item.get(label) if isinstance(item, dict) else None
                parts.append(f"[{tag or p}]")
                cur = item
            else:
                parts.append(f".{p}" if parts else str(p))
                cur = cur.get(p) if isinstance(cur, dict) else None
        return "".join(parts) or "(document)"

    def fail(self, loc: tuple[Any, ...], reason: str, label: str = "name") -> FileError:
        """The error for one problem at ``loc``, ready to raise."""
        return self.error(str(self.path), self.line_at(loc), self.field_name(loc, label), reason)

    def validate(self, model: type[M], label: str = "name", context: dict[str, Any] | None = None) -> M:
        """Validate the data with a pydantic model; every error is reported with its line."""
        try:
            return model.model_validate(self.data, context=context)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                loc = tuple(err["loc"])
                msg = err["msg"]
                if err.get("type") == "value_error":
                    msg = msg.removeprefix("Value error, ")
                problems.append((self.line_at(loc), self.field_name(loc, label), msg))
            line, field, msg = problems[0]
            raise self.error(str(self.path), line, field, msg, problems) from None


def load_yaml(path: Path, error: type[E], what: str) -> YamlDoc:
    """Read and parse ``path``; a syntax error or a document that is not a mapping raises ``error``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise error(str(path), mark.line + 1 if mark else None, "(syntax)", str(exc.problem)) from None
    if not isinstance(data, dict):
        raise error(str(path), 1, "(document)", f"expected a mapping: this is not a {what}")
    return YamlDoc(path, root, data, error)
