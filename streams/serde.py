"""Record serde: UTF-8 string keys, Avro values in the Confluent wire format.

Wire format of a value: magic byte ``0``, the schema id as a 4-byte big-endian integer, then the
Avro binary body (fastavro). A reader resolves the writer's schema (fetched once by id) against
its own contract, so old records stay readable after a backward-compatible change.

The same ``TopicSerde`` serves plain confluent-kafka clients, Faust (see
``streams.faust_codec``) and the benchmarks. A value that fails to decode raises
``DecodeError`` with the reason; the caller dead-letters it.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from streams.catalog import Catalog, TopicSpec
from streams.errors import ConfigError, DecodeError
from streams.registry import Registry

__all__ = [
    "MAGIC",
    "Serdes",
    "TopicSerde",
    "content_digest",
    "decode_key",
    "encode_key",
    "split_wire",
    "timestamp_ms",
]

MAGIC = 0
_HEADER = struct.Struct(">bI")


def timestamp_ms(value: Any) -> int:
    """Milliseconds since the epoch from a decoded ``timestamp-millis`` (a datetime) or an int."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def encode_key(key: str | None) -> bytes | None:
    return None if key is None else key.encode("utf-8")


def decode_key(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"key is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def split_wire(data: bytes) -> tuple[int, memoryview]:
    """(schema id, Avro body) of a Confluent-framed value; DecodeError if it is not one."""
    if len(data) < _HEADER.size:
        raise DecodeError(f"value is {len(data)} bytes: too short for the Confluent wire format")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"value starts with byte {magic:#04x}, not the magic byte 0x00")
    return schema_id, memoryview(data)[_HEADER.size :]


class TopicSerde:
    """Encode and decode the values of one topic against its contract."""

    def __init__(
        self, registry: Registry, spec: TopicSpec, reader_schema: dict[str, Any], validate: bool = True
    ) -> None:
        self.registry = registry
        #: Check every field's type before writing (fastavro alone coerces, e.g. "yes" -> true).
        self.validate = validate
        self.spec = spec
        self.reader = fastavro.parse_schema(reader_schema)  # parsed once; the hint stops re-parsing per call
        self._reader_json = reader_schema
        self._schema_id: int | None = None
        self._writers: dict[int, tuple[Any, Any]] = {}

    @property
    def schema_id(self) -> int:
        """The registry id of this contract under the topic's subject (looked up once)."""
        if self._schema_id is None:
            found = self.registry.lookup(self.spec.subject, self._reader_json)
            if found is None:
                raise ConfigError(
                    f"{self.spec.subject} has no version equal to {self.spec.value_schema}: "
                    "run `sislms topology apply`"
                )
            self._schema_id = found.schema_id
        return self._schema_id

    def encode(self, value: dict[str, Any] | None) -> bytes | None:
        """Avro-encode ``value`` (None is a tombstone and stays None)."""
        if value is None:
            return None
        if self.validate:
            try:
                validate(value, self.reader, raise_errors=True, strict=True)
            except ValidationError as exc:
                raise ConfigError(f"{self.spec.name}: record does not match its contract: {exc}") from None
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, self.schema_id))
        try:
            fastavro.schemaless_writer(buf, self.reader, value, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{self.spec.name}: record does not match its contract: {exc}") from None
        return buf.getvalue()

    def _writer(self, schema_id: int) -> tuple[Any, Any]:
        """(writer schema, reader schema or None when both are the same contract)."""
        pair = self._writers.get(schema_id)
        if pair is None:
            try:
                text = self.registry.schema_text(schema_id)
            except LookupError as exc:
                raise DecodeError(str(exc)) from None
            doc = json.loads(text)
            # Same schema on both sides: skip schema resolution (a third faster).
            reader = None if doc == self._reader_json else self.reader
            pair = (fastavro.parse_schema(doc), reader)
            self._writers[schema_id] = pair
        return pair

    def decode(self, data: bytes | None) -> dict[str, Any] | None:
        """The record in ``data`` as the current contract sees it; None for a tombstone."""
        if data is None:
            return None
        schema_id, body = split_wire(data)
        writer, reader = self._writer(schema_id)
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, writer, reader)
        except Exception as exc:
            raise DecodeError(
                f"Avro body does not decode with schema id {schema_id}: {exc.__class__.__name__}: {exc}"
            ) from None
        if stream.tell() != len(body):
            raise DecodeError(
                f"Avro body has {len(body) - stream.tell()} trailing bytes after the record "
                f"(schema id {schema_id})"
            )
        if not isinstance(record, dict):
            raise DecodeError(f"decoded a {type(record).__name__}, not a record")
        return record


class Serdes:
    """One ``TopicSerde`` per declared topic, made on first use.

    ``validate=False`` is for writers that already check every record at their edge (the
    sources convert through the contract): it skips fastavro's validation pass, a factor of five.
    """

    def __init__(self, registry: Registry, catalog: Catalog, *, validate: bool = True) -> None:
        self.registry = registry
        self.catalog = catalog
        self.validate = validate
        self._by_topic: dict[str, TopicSerde] = {}

    def __getitem__(self, topic: str | TopicSpec) -> TopicSerde:
        spec = self.catalog.topic(topic) if isinstance(topic, str) else topic
        serde = self._by_topic.get(spec.name)
        if serde is None:
            serde = TopicSerde(
                self.registry, spec, self.catalog.contract(spec).schema, validate=self.validate
            )
            self._by_topic[spec.name] = serde
        return serde


#: The ``meta`` a content digest is taken with: who published a record, and when, is not its content.
_NO_META = {
    "source": "",
    "sourceChangedAt": 0,
    "ingestedAt": 0,
    "traceId": "",
    "sourceVersion": None,
}


def content_digest(serde: TopicSerde, record: Mapping[str, Any]) -> bytes:
    """A digest of a record's content (its Avro encoding with ``meta`` blanked): equal for the
    same entity published twice, whatever the run that published it."""
    return hashlib.sha256(serde.encode({**record, "meta": _NO_META}) or b"").digest()
