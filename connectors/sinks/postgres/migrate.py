"""Versioned migrations of the analytics store: ``migrations/NNNN_name.sql``, applied in order.

Each migration runs in its own transaction under an advisory lock (two sinks starting at once
apply it once) and is recorded in ``<schema>.schema_migrations`` with the SHA-256 of its text. A
migration already applied whose file has changed since is refused: a released migration is never
edited, a new one is added. ``sislms db migrate`` applies them; the sink does at start.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from streams.errors import ConfigError

__all__ = ["Migration", "applied_migrations", "load_migrations", "migrate"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; a misnamed file or a gap in the numbers is an error."""
    out: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise ConfigError(f"{path}: a migration is named NNNN_lowercase_name.sql")
        out.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    for i, mig in enumerate(out, start=1):
        if mig.version != i:
            found = f"{mig.version:04d}_{mig.name}"
            raise ConfigError(f"{directory}: migration {i:04d} is missing (found {found})")
    return out


def check_schema_name(schema: str) -> str:
    if not _SCHEMA.match(schema):
        raise ConfigError(f"analytics schema {schema!r}: use lowercase letters, digits and _ (max 63)")
    return schema


def applied_migrations(conn: psycopg.Connection, schema: str) -> dict[int, str]:
    """version -> checksum of the migrations applied to ``schema`` (empty for a new store)."""
    exists = conn.execute(
        "select 1 from information_schema.tables"
        " where table_schema = %s and table_name = 'schema_migrations'",
        (schema,),
    ).fetchone()
    if exists is None:
        return {}
    rows = conn.execute(
        sql.SQL("select version, checksum from {}.schema_migrations").format(sql.Identifier(schema))
    ).fetchall()
    return {int(v): str(c) for v, c in rows}


def migrate(dsn: str, schema: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Bring ``schema`` up to the newest migration; returns those applied by this call."""
    check_schema_name(schema)
    migrations = load_migrations() if migrations is None else migrations
    known = {m.version for m in migrations}
    done: list[Migration] = []
    ident = sql.Identifier(schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        newer = set(applied_migrations(conn, schema)) - known
        if newer:
            raise ConfigError(
                f"analytics store {schema} has migrations this version does not know ({sorted(newer)}): "
                "it was migrated by a newer sislms"
            )
        for mig in migrations:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"sislms-migrate:{schema}",))
                conn.execute(sql.SQL("create schema if not exists {}").format(ident))
                conn.execute(
                    sql.SQL(
                        "create table if not exists {}.schema_migrations (version integer primary key,"
                        " name text not null, checksum text not null,"
                        " applied_at timestamptz not null default now())"
                    ).format(ident)
                )
                applied = applied_migrations(conn, schema)
                if mig.version in applied:
                    if applied[mig.version] != mig.checksum:
                        raise ConfigError(
                            f"analytics store {schema}: migration {mig.version:04d}_{mig.name} was applied "
                            "and its file has changed since; add a new migration instead of editing it"
                        )
                    continue
                conn.execute(sql.SQL("set local search_path to {}").format(ident))
                conn.execute(mig.text.encode())  # our own files, never input
                record = "insert into {}.schema_migrations (version, name, checksum) values (%s, %s, %s)"
                conn.execute(sql.SQL(record).format(ident), (mig.version, mig.name, mig.checksum))
                done.append(mig)
                log.info("analytics store %s: applied migration %04d_%s", schema, mig.version, mig.name)
    return done
