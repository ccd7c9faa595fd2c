"""The analytics store is a real PostgreSQL reached by the DSN the stack reports."""

from __future__ import annotations

import psycopg

from sislms.stack import Stack


def test_postgres_accepts_transactions_and_upserts(stack: Stack, uid: str) -> None:
    dsn = stack.endpoints.postgres_dsn
    schema = f"t_{uid}"
    with psycopg.connect(dsn) as conn:
        version = conn.execute("show server_version_num").fetchone()
        assert version is not None and int(version[0]) >= 150000
        conn.execute(f"create schema {schema}")
        conn.execute(
            f"create table {schema}.users (sourced_id text primary key, version bigint not null,"
            " name text not null)"
        )
        upsert = (
            f"insert into {schema}.users values (%s, %s, %s) on conflict (sourced_id) do update"
            f" set version = excluded.version, name = excluded.name"
            f" where {schema}.users.version < excluded.version"
        )
        conn.execute(upsert, ("u-1", 2, "newer"))
        conn.execute(upsert, ("u-1", 1, "older"))  # a replayed older version: ignored
        conn.commit()
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"select version, name from {schema}.users").fetchall()
        assert row == [(2, "newer")]
        with conn.transaction():
            conn.execute(f"insert into {schema}.users values ('u-2', 1, 'x')")
            conn.execute(f"drop schema {schema} cascade")
