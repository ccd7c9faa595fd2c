"""The analytics store's table map: which topic lands where, and what a row keeps."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from connectors.sinks.postgres.migrate import load_migrations
from connectors.sinks.postgres.tables import DEAD_LETTERS, TABLES, Source, table_for, upsert_sql
from streams.catalog import load_catalog
from streams.errors import ConfigError
from streams.settings import Settings
from tests import factories


def _source(topic: str, value: dict) -> Source:
    return Source(topic, 0, 0, None, value)


def test_every_mapped_topic_is_declared_and_every_table_exists_in_the_migrations() -> None:
    settings = Settings()
    catalog = load_catalog(settings.topology_file, settings.schemas_dir)
    text = "\n".join(m.text for m in load_migrations())
    for topic, table in TABLES.items():
        assert topic in catalog, topic
        assert f"create table {table.name} (" in text, table.name
        for column in (*table.columns, "written_at"):
            assert f"    {column} " in text, (table.name, column)
    assert "sis.demographics.v1" not in TABLES  # never lands: nothing a view needs
    assert table_for("dlq.anything.v1") is DEAD_LETTERS


def test_a_user_row_keeps_names_and_roles_and_no_contact_data() -> None:
    value = factories.user("u-9", role="teacher", org="school-4") | {
        "email": "someone@example.test",
        "phone": "555",
        "identifier": "ID-1",
    }
    row = TABLES["sis.users.v1"].row(_source("sis.users.v1", value))
    assert row["sourced_id"] == "u-9" and row["role"] == "teacher"
    assert row["org_sourced_ids"] == ["school-4"]
    assert row["version"] == int(datetime(2026, 9, 1, 8, 30, tzinfo=UTC).timestamp() * 1000)
    assert not {"email", "phone", "identifier", "username", "sms"} & set(row)
    assert "someone@example.test" not in repr(row)


def test_a_to_be_deleted_record_is_a_deleted_row() -> None:
    org = factories.org() | {"status": "tobedeleted", "identifier": None, "parent": None}
    assert TABLES["sis.orgs.v1"].row(_source("sis.orgs.v1", org))["deleted"] is True


def test_the_upsert_replaces_a_row_only_with_a_version_not_older() -> None:
    text = upsert_sql("analytics", TABLES["sis.users.v1"]).as_string(None)
    assert 'on conflict ("sourced_id") do update set' in text
    assert text.endswith('where "analytics"."users"."version" <= excluded."version"')
    results = upsert_sql("analytics", TABLES["lms.provisioning.results.v1"]).as_string(None)
    assert '"lms_id" = coalesce(excluded."lms_id", "analytics"."provisioning_results"."lms_id")' in results
    events = upsert_sql("analytics", TABLES["lms.activity.v1"]).as_string(None)
    assert events.endswith("do nothing")


def test_migration_files_are_numbered_without_gaps(tmp_path: Path) -> None:
    assert [m.version for m in load_migrations()] == list(range(1, len(load_migrations()) + 1))
    (tmp_path / "0001_first.sql").write_text("select 1;")
    (tmp_path / "0003_third.sql").write_text("select 1;")
    with pytest.raises(ConfigError, match="migration 0002 is missing"):
        load_migrations(tmp_path)
    (tmp_path / "2_bad.sql").write_text("select 1;")
    with pytest.raises(ConfigError, match="NNNN_lowercase_name"):
        load_migrations(tmp_path)


def test_dates_pass_through_as_dates() -> None:
    term = {
        "sourcedId": "t1", "status": "active", "dateLastModified": datetime(2026, 1, 1, tzinfo=UTC),
        "metadata": {}, "title": "Fall", "type": "term", "startDate": date(2026, 8, 15),
        "endDate": date(2026, 12, 20), "parent": None, "children": [], "schoolYear": "2027",
        "meta": factories.meta(),
    }  # fmt: skip
    row = TABLES["sis.academic_sessions.v1"].row(_source("sis.academic_sessions.v1", term))
    assert (row["start_date"], row["end_date"]) == (date(2026, 8, 15), date(2026, 12, 20))
