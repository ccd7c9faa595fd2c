"""Kafka client configuration, built from settings in one place.

Producers are idempotent (``enable.idempotence``, ``acks=all``): ordering holds per key and a
retried send is never written twice. Consumers never auto-commit: a consumer commits an offset
only after what it did with the record is durable.
"""

from __future__ import annotations

from typing import Any

from streams.settings import Settings

__all__ = ["admin_config", "client_config", "consumer_config", "producer_config"]


def client_config(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """Properties every client shares: bootstrap servers, TLS and SASL pass-through."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap}
    if settings.kafka_security_protocol:
        conf["security.protocol"] = settings.kafka_security_protocol
    if settings.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        conf["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password:
        conf["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_location:
        conf["ssl.ca.location"] = settings.kafka_ssl_ca_location
    conf.update(settings.kafka_client_config)
    return conf


def admin_config(settings: Settings, bootstrap: str) -> dict[str, Any]:
    return client_config(settings, bootstrap)


def producer_config(settings: Settings, bootstrap: str, **extra: Any) -> dict[str, Any]:
    conf = client_config(settings, bootstrap)
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "zstd",
            # Java's partitioner (murmur2), as Faust (aiokafka) and Kafka Streams use: a key lands
            # in the same partition whoever writes it, so agents can join topics by table lookups.
            "partitioner": "murmur2_random",
        }
    )
    conf.update(extra)
    return conf


def consumer_config(settings: Settings, bootstrap: str, group_id: str, **extra: Any) -> dict[str, Any]:
    conf = client_config(settings, bootstrap)
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    conf.update(extra)
    return conf
