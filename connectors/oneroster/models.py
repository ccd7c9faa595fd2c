"""OneRoster 1.2 entities and their conversion from REST JSON to our Avro records.

Every source (REST, CSV) turns a OneRoster object into the dict its topic's contract expects
with :func:`to_record`. The conversion is driven by the contract itself (field names, which are
optional, logical types), so a field added to a ``.avsc`` file needs no code here. What Avro
cannot say, the OneRoster enumerations, is checked from :data:`ENUMERATIONS`.

A value that does not fit raises :class:`InvalidRecord` naming the field and the reason; the
caller dead-letters that one record and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from streams.errors import SkippableError
from streams.roles.rules import ENROLLMENT_ROLES, ORG_TYPES, USER_ROLES

__all__ = [
    "ENTITIES",
    "ENUMERATIONS",
    "GRADEBOOK_PATH",
    "ROSTERING_PATH",
    "USER_ROLES",
    "Entity",
    "InvalidRecord",
    "entity",
    "format_instant",
    "is_deletion",
    "parse_instant",
    "to_record",
]


#: The 1.2 services' base paths under a provider's root URL.
ROSTERING_PATH = "/ims/oneroster/rostering/v1p2"
GRADEBOOK_PATH = "/ims/oneroster/gradebook/v1p2"


@dataclass(frozen=True)
class Entity:
    """One OneRoster collection and where it goes.

    Attributes:
        name: the collection's name in URLs, CSV file names and response wrappers (``users``).
        singular: the wrapper key of a single-object response (``user``).
        service: ``rostering`` or ``gradebook`` (the URL segment).
        topic: the catalog topic its records are published to.
        guid_type: the GUIDRef ``type`` that points at it.
    """

    name: str
    singular: str
    service: str
    topic: str
    guid_type: str

    @property
    def path(self) -> str:
        """The collection's path under the provider's base URL."""
        return f"{GRADEBOOK_PATH if self.service == 'gradebook' else ROSTERING_PATH}/{self.name}"


#: Every entity the sources publish, in dependency order (referenced before referencing).
ENTITIES: tuple[Entity, ...] = (
    Entity("orgs", "org", "rostering", "sis.orgs.v1", "org"),
    Entity("academicSessions", "academicSession", "rostering", "sis.academic_sessions.v1", "academicSession"),
    Entity("courses", "course", "rostering", "sis.courses.v1", "course"),
    Entity("classes", "class", "rostering", "sis.classes.v1", "class"),
    Entity("users", "user", "rostering", "sis.users.v1", "user"),
    Entity("demographics", "demographics", "rostering", "sis.demographics.v1", "demographics"),
    Entity("enrollments", "enrollment", "rostering", "sis.enrollments.v1", "enrollment"),
    Entity("categories", "category", "gradebook", "sis.categories.v1", "category"),
    Entity("lineItems", "lineItem", "gradebook", "sis.line_items.v1", "lineItem"),
    Entity("results", "result", "gradebook", "sis.results.v1", "result"),
)
_BY_NAME = {e.name: e for e in ENTITIES}


def entity(name: str) -> Entity:
    """The entity called ``name`` (a collection name such as ``lineItems``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise KeyError(f"unknown OneRoster collection {name!r}; known: {known}") from None


#: OneRoster's role vocabulary (users.roles[].role) lives with the role rules, in the kernel.
_STATUS = frozenset({"active", "tobedeleted"})

#: (collection, dotted field path) -> allowed values. ``ext:`` values pass where the spec's
#: vocabulary is extensible (roles, org types, session types, class types).
ENUMERATIONS: dict[tuple[str, str], frozenset[str]] = {
    ("orgs", "type"): ORG_TYPES,
    ("academicSessions", "type"): frozenset({"gradingPeriod", "semester", "schoolYear", "term"}),
    ("classes", "classType"): frozenset({"homeroom", "scheduled"}),
    ("users", "roles.roleType"): frozenset({"primary", "secondary"}),
    ("users", "roles.role"): USER_ROLES,
    ("enrollments", "role"): ENROLLMENT_ROLES,
    ("demographics", "sex"): frozenset({"male", "female", "other", "unspecified"}),
    ("results", "scoreStatus"): frozenset(
        {"exempt", "fully graded", "not submitted", "partially graded", "submitted"}
    ),
}
_EXTENSIBLE = {
    ("orgs", "type"),
    ("academicSessions", "type"),
    ("classes", "classType"),
    ("users", "roles.role"),
    ("enrollments", "role"),
    ("results", "scoreStatus"),
}


class InvalidRecord(SkippableError):
    """A OneRoster object that does not fit its contract: dead-letter it, keep going."""

    reason = "validation_failed"

    def __init__(self, collection: str, field: str, message: str) -> None:
        super().__init__(f"{collection}: {field}: {message}")
        self.collection = collection
        self.field = field
        self.message = message


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date-time (``Z`` or an offset; naive means UTC) as an aware UTC datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_instant(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``: the one format we write, which sorts chronologically."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def is_deletion(obj: Mapping[str, Any]) -> bool:
    """True when the source marks the object deleted (``status='tobedeleted'``)."""
    return str(obj.get("status", "")).strip().lower() == "tobedeleted"


def to_record(
    collection: str,
    obj: Mapping[str, Any],
    schema: Mapping[str, Any],
    *,
    meta: Mapping[str, Any],
    default_modified: datetime | None = None,
) -> dict[str, Any]:
    """Convert one OneRoster JSON object into its topic's Avro record.

    Args:
        collection: the OneRoster collection (``users``), for enumerations and messages.
        obj: the object as the provider serves it (1.2 JSON; 1.1 differences are tolerated
            where they are only spelling: booleans as strings, numbers as strings).
        schema: the topic's contract (expanded JSON form).
        meta: the ``ChangeMeta`` to attach (``sourceChangedAt`` may be None: filled from
            ``dateLastModified``).
        default_modified: ``dateLastModified`` for objects that have none (CSV bulk files
            may leave it empty); None makes a missing one an error.

    Raises:
        InvalidRecord: a required field is missing, a value has the wrong type or format, or an
            enumeration has a value outside the spec's vocabulary.
    """
    if not isinstance(obj, Mapping):
        raise InvalidRecord(collection, "(record)", f"expected a JSON object, got {type(obj).__name__}")
    source = dict(obj)
    if not source.get("dateLastModified") and default_modified is not None:
        source["dateLastModified"] = format_instant(default_modified)
    if not source.get("status") and default_modified is not None:
        source["status"] = "active"
    converter = _Converter(collection, _named_types(schema))
    record: dict[str, Any] = {}
    for field in schema["fields"]:
        name = field["name"]
        if name == "meta":
            continue
        record[name] = converter.value(source.get(name), field["type"], name, "default" in field, field)
    status = record.get("status")
    if status is not None and status not in _STATUS:
        raise InvalidRecord(collection, "status", f"{status!r} is not one of active, tobedeleted")
    converter.check_enumerations(record)
    changed = meta.get("sourceChangedAt") or record.get("dateLastModified")
    record["meta"] = {**meta, "sourceChangedAt": changed}
    return record


_NAMED_CACHE: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}


def _named_types(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Every named type the schema defines (full and short names): later uses are bare names."""
    cached = _NAMED_CACHE.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    named: dict[str, Any] = {}

    def walk(node: Any, namespace: str | None) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "enum", "fixed") and "name" in node:
                name = str(node["name"])
                ns = node.get("namespace", namespace)
                full = name if "." in name or not ns else f"{ns}.{name}"
                named[full] = node
                named.setdefault(full.rsplit(".", 1)[-1], node)
                namespace = full.rsplit(".", 1)[0] if "." in full else ns
                for f in node.get("fields", []):
                    walk(f.get("type"), namespace)
            elif kind in ("array", "map"):
                walk(node.get("items", node.get("values")), namespace)
            elif isinstance(kind, dict | list):
                walk(kind, namespace)

    walk(dict(schema), None)
    _NAMED_CACHE[id(schema)] = (schema, named)
    return named


class _Converter:
    def __init__(self, collection: str, named: Mapping[str, Any]) -> None:
        self.collection = collection
        self.named = named

    def fail(self, path: str, message: str) -> InvalidRecord:
        return InvalidRecord(self.collection, path, message)

    def value(self, value: Any, avro: Any, path: str, has_default: bool, field: Mapping[str, Any]) -> Any:
        optional = isinstance(avro, list) and "null" in avro
        if value is None or (isinstance(value, str) and value == "" and optional):
            if optional:
                return None
            if isinstance(avro, dict) and avro.get("type") in ("array", "map"):
                return [] if avro["type"] == "array" else {}
            if has_default:
                return field.get("default")
            raise self.fail(path, "is required but missing")
        if isinstance(avro, list):
            branches = [b for b in avro if b != "null"]
            return self.value(value, branches[0], path, False, field)
        return self.typed(value, avro, path)

    def typed(self, value: Any, avro: Any, path: str) -> Any:
        if isinstance(avro, str) and avro in self.named:
            avro = self.named[avro]
        kind = avro if isinstance(avro, str) else avro.get("type")
        logical = avro.get("logicalType") if isinstance(avro, dict) else None
        if logical == "timestamp-millis":
            if isinstance(value, datetime):
                return value
            if not isinstance(value, str):
                raise self.fail(path, f"expected an ISO 8601 date-time, got {type(value).__name__}")
            try:
                return parse_instant(value)
            except ValueError:
                raise self.fail(path, f"{value!r} is not an ISO 8601 date-time") from None
        if logical == "date":
            if isinstance(value, date) and not isinstance(value, datetime):
                return value
            if not isinstance(value, str):
                raise self.fail(path, f"expected a date YYYY-MM-DD, got {type(value).__name__}")
            try:
                return date.fromisoformat(value.strip()[:10])
            except ValueError:
                raise self.fail(path, f"{value!r} is not a date YYYY-MM-DD") from None
        if kind == "string":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise self.fail(path, f"expected a string, got {type(value).__name__}")
            return value if isinstance(value, str) else str(value)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise self.fail(path, f"expected true or false, got {value!r}")
        if kind in ("double", "float"):
            if isinstance(value, bool):
                raise self.fail(path, f"expected a number, got {value!r}")
            try:
                return float(value)
            except (TypeError, ValueError):
                raise self.fail(path, f"expected a number, got {value!r}") from None
        if kind in ("int", "long"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise self.fail(path, f"expected a whole number, got {value!r}")
            try:
                return int(value)
            except ValueError:
                raise self.fail(path, f"expected a whole number, got {value!r}") from None
        if kind == "array":
            if not isinstance(value, list | tuple):
                raise self.fail(path, f"expected a list, got {type(value).__name__}")
            return [self.value(v, avro["items"], f"{path}[{i}]", False, {}) for i, v in enumerate(value)]
        if kind == "map":
            if not isinstance(value, Mapping):
                raise self.fail(path, f"expected an object, got {type(value).__name__}")
            # OneRoster metadata is free-form: keep scalars as text, drop nested structures' types.
            return {str(k): v if isinstance(v, str) else _text(v) for k, v in value.items()}
        if kind == "record":
            if not isinstance(value, Mapping):
                raise self.fail(path, f"expected an object, got {type(value).__name__}")
            return {
                f["name"]: self.value(
                    value.get(f["name"]), f["type"], f"{path}.{f['name']}", "default" in f, f
                )
                for f in avro["fields"]
            }
        if kind == "enum":
            if value not in avro["symbols"]:
                raise self.fail(path, f"{value!r} is not one of {', '.join(avro['symbols'])}")
            return value
        raise self.fail(path, f"unsupported contract type {kind!r}")

    def check_enumerations(self, record: Mapping[str, Any]) -> None:
        for (collection, path), allowed in ENUMERATIONS.items():
            if collection != self.collection:
                continue
            head, _, tail = path.partition(".")
            values: list[tuple[str, Any]]
            if tail:
                values = [
                    (f"{head}[{i}].{tail}", item.get(tail))
                    for i, item in enumerate(record.get(head) or [])
                    if isinstance(item, Mapping)
                ]
            else:
                values = [(head, record.get(head))]
            for where, value in values:
                if value is None or value in allowed:
                    continue
                if (collection, path) in _EXTENSIBLE and isinstance(value, str) and value.startswith("ext:"):
                    continue
                choices = ", ".join(sorted(allowed))
                raise self.fail(where, f"{value!r} is not one of {choices} (or an ext: value)")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, sort_keys=True)
