"""Avro through the real registry: our serde, confluent-kafka's serde, Apache Avro's reader."""

from __future__ import annotations

import io
import json

import avro.io
import avro.schema
import httpx
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from sislms.wiring import Kernel
from streams.errors import ConfigError, DecodeError
from streams.registry import Registry
from streams.serde import split_wire
from tests.factories import user


def _subset(decoded: dict, original: dict) -> dict:
    return {k: decoded[k] for k in original}


def test_confluent_serializer_round_trip_through_registry(kernel: Kernel, uid: str) -> None:
    """confluent-kafka's own AvroSerializer/AvroDeserializer work against our registry."""
    client = SchemaRegistryClient({"url": kernel.endpoints.schema_registry_url})
    schema = json.dumps(
        {
            "type": "record",
            "name": "Probe",
            "namespace": "org.sislms.test",
            "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "long"}],
        }
    )
    ser = AvroSerializer(client, schema)
    de = AvroDeserializer(client)
    ctx = SerializationContext(f"probe{uid}.things.v1", MessageField.VALUE)
    data = ser({"id": "x", "n": 42}, ctx)
    schema_id, _ = split_wire(data)
    assert schema_id == client.get_latest_version(f"probe{uid}.things.v1-value").schema_id
    assert de(data, ctx) == {"id": "x", "n": 42}


def test_our_serde_is_read_by_confluent_and_by_apache_avro(kernel: Kernel) -> None:
    serde = kernel.serdes["sis.users.v1"]
    record = user("u-roundtrip", role="teacher")
    data = serde.encode(record)
    assert data is not None and data[0] == 0

    # 1. our own decoder
    assert _subset(serde.decode(data), record) == record

    # 2. confluent-kafka's deserializer, which fetches the writer schema by id itself
    client = SchemaRegistryClient({"url": kernel.endpoints.schema_registry_url})
    theirs = AvroDeserializer(client)(data, SerializationContext("sis.users.v1", MessageField.VALUE))
    assert _subset(theirs, record) == record

    # 3. an independent implementation: Apache Avro, schema fetched by id over plain HTTP
    schema_id, body = split_wire(data)
    r = httpx.get(f"{kernel.endpoints.schema_registry_url}/schemas/ids/{schema_id}", timeout=10)
    r.raise_for_status()
    writer = avro.schema.parse(r.json()["schema"])
    decoded = avro.io.DatumReader(writer).read(avro.io.BinaryDecoder(io.BytesIO(bytes(body))))
    assert decoded["sourcedId"] == "u-roundtrip"
    assert decoded["roles"][0]["role"] == "teacher"
    assert decoded["roles"][0]["org"]["sourcedId"] == "school-1"
    assert decoded["meta"]["traceId"] == record["meta"]["traceId"]


def test_confluent_serializer_output_decodes_with_our_serde(kernel: Kernel) -> None:
    client = SchemaRegistryClient({"url": kernel.endpoints.schema_registry_url})
    contract = kernel.catalog.contract("sis.users.v1")
    ser = AvroSerializer(
        client,
        json.dumps(contract.schema),
        conf={"auto.register.schemas": False, "use.latest.version": True},
    )
    record = user("u-confluent")
    data = ser(record, SerializationContext("sis.users.v1", MessageField.VALUE))
    assert _subset(kernel.serdes["sis.users.v1"].decode(data), record) == record


def test_decode_errors_say_why(kernel: Kernel) -> None:
    serde = kernel.serdes["sis.users.v1"]
    with pytest.raises(DecodeError, match="magic byte"):
        serde.decode(b"\x01\x00\x00\x00\x01abc")
    with pytest.raises(DecodeError, match="too short"):
        serde.decode(b"\x00\x00")
    with pytest.raises(DecodeError, match="unknown to the registry"):
        serde.decode(b"\x00\x7f\xff\xff\xf0abc")
    good = serde.encode(user())
    assert good is not None
    with pytest.raises(DecodeError, match=r"does not decode|trailing"):
        serde.decode(good[:5] + good[9:])  # body cut short


def test_a_record_that_breaks_the_contract_is_refused_at_encode(kernel: Kernel) -> None:
    bad = user()
    bad["enabledUser"] = "yes"
    with pytest.raises(ConfigError, match="does not match its contract"):
        kernel.serdes["sis.users.v1"].encode(bad)


def test_a_registry_that_does_not_answer_gets_a_clear_error() -> None:
    from streams.errors import ServiceUnavailable

    dead = Registry("http://127.0.0.1:9/apis/ccompat/v7", timeout_s=2)
    with pytest.raises(ServiceUnavailable, match=r"127\.0\.0\.1:9/apis/ccompat/v7 did not answer"):
        dead.subjects()
