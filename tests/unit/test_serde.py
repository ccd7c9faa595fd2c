"""The serde without a network: a fake registry stands in for the id lookups."""

from __future__ import annotations

import copy
import io
import json
import struct
from typing import Any

import fastavro
import pytest

from streams.catalog import load_catalog
from streams.errors import ConfigError, DecodeError
from streams.registry import Registered
from streams.serde import TopicSerde, decode_key, encode_key, split_wire
from tests.factories import user


class FakeRegistry:
    def __init__(self) -> None:
        self.by_id: dict[int, str] = {}

    def add(self, schema_id: int, schema: dict[str, Any]) -> None:
        self.by_id[schema_id] = json.dumps(schema)

    def lookup(self, subject: str, schema: dict[str, Any]) -> Registered | None:
        for i, text in self.by_id.items():
            if json.loads(text) == schema:
                return Registered(i, i)
        return None

    def schema_text(self, schema_id: int) -> str:
        if schema_id not in self.by_id:
            raise LookupError(f"schema id {schema_id} is unknown to the registry")
        return self.by_id[schema_id]


@pytest.fixture
def users(settings) -> tuple[TopicSerde, FakeRegistry, dict[str, Any]]:
    cat = load_catalog(settings.topology_file, settings.schemas_dir)
    spec = cat.topic("sis.users.v1")
    schema = cat.contract(spec).schema
    reg = FakeRegistry()
    reg.add(7, schema)
    return TopicSerde(reg, spec, schema), reg, schema  # type: ignore[arg-type]


def test_keys_are_utf8() -> None:
    assert encode_key("ü-1") == "ü-1".encode()
    assert decode_key("ü-1".encode()) == "ü-1"
    assert encode_key(None) is None and decode_key(None) is None
    with pytest.raises(DecodeError, match="not UTF-8"):
        decode_key(b"\xff\xfe")


def test_wire_format_framing() -> None:
    schema_id, body = split_wire(b"\x00\x00\x00\x01\x02abc")
    assert schema_id == 258 and bytes(body) == b"abc"
    with pytest.raises(DecodeError, match="too short"):
        split_wire(b"\x00\x01")
    with pytest.raises(DecodeError, match="magic byte"):
        split_wire(b"\x01\x00\x00\x00\x01")


def test_round_trip_and_header(users) -> None:
    serde, _, _ = users
    rec = user("u-9", role="aide")
    data = serde.encode(rec)
    assert data is not None and data[:5] == struct.pack(">bI", 0, 7)
    back = serde.decode(data)
    assert back is not None and {k: back[k] for k in rec} == rec
    assert serde.encode(None) is None and serde.decode(None) is None


def test_wrong_types_are_refused_before_writing(users) -> None:
    serde, _, _ = users
    bad = user()
    bad["enabledUser"] = "yes"
    with pytest.raises(ConfigError, match="does not match its contract"):
        serde.encode(bad)
    missing = user()
    del missing["username"]
    with pytest.raises(ConfigError):
        serde.encode(missing)


def test_old_writer_schema_is_resolved_against_the_current_contract(users) -> None:
    serde, reg, schema = users
    older = copy.deepcopy(schema)
    older["fields"] = [f for f in older["fields"] if f["name"] != "pronouns"]
    reg.add(3, older)
    rec = user("u-old")
    rec.pop("pronouns", None)
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, 3))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(older, _write_hint=False), rec)
    back = serde.decode(buf.getvalue())
    assert back is not None and back["sourcedId"] == "u-old" and back["pronouns"] is None


def test_trailing_bytes_and_unknown_ids_are_decode_errors(users) -> None:
    serde, _, _ = users
    data = serde.encode(user())
    assert data is not None
    with pytest.raises(DecodeError, match="trailing bytes"):
        serde.decode(data + b"\x00\x00")
    with pytest.raises(DecodeError, match="unknown to the registry"):
        serde.decode(b"\x00\x00\x00\x00\x63" + data[5:])
