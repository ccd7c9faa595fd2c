"""Where the three services are: the ones the settings name, or the local stack's.

A setting that names an existing service (``SISLMS_KAFKA_BOOTSTRAP``,
``SISLMS_SCHEMA_REGISTRY_URL``, ``SISLMS_POSTGRES_DSN``) wins; otherwise the local stack's
loopback address is used, and ``sislms stack up`` starts that part.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.settings import Settings

__all__ = ["LOCAL_DATABASE", "Endpoints", "resolve_endpoints"]

#: The database the embedded PostgreSQL creates for the analytics store.
LOCAL_DATABASE = "sislms"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    schema_registry_url: str
    postgres_dsn: str
    kafka_external: bool
    registry_external: bool
    postgres_external: bool

    def public(self) -> dict[str, object]:
        """The endpoints with any password in the DSN masked."""
        return {
            "kafka_bootstrap": self.kafka_bootstrap,
            "schema_registry_url": self.schema_registry_url,
            "postgres_dsn": mask_dsn(self.postgres_dsn),
        }


def resolve_endpoints(settings: Settings) -> Endpoints:
    pg = settings.postgres_dsn.get_secret_value() if settings.postgres_dsn else None
    return Endpoints(
        kafka_bootstrap=settings.kafka_bootstrap or f"127.0.0.1:{settings.kafka_port}",
        schema_registry_url=(
            settings.schema_registry_url or f"http://127.0.0.1:{settings.registry_port}/apis/ccompat/v7"
        ),
        postgres_dsn=pg or f"postgresql://postgres@127.0.0.1:{settings.postgres_port}/{LOCAL_DATABASE}",
        kafka_external=settings.kafka_bootstrap is not None,
        registry_external=settings.schema_registry_url is not None,
        postgres_external=pg is not None,
    )


def mask_dsn(dsn: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    cred, _, host = rest.rpartition("@")
    if ":" in cred:
        cred = cred.split(":", 1)[0] + ":***"
    return f"{scheme}://{cred}@{host}"
