"""Settings: environment wins, secrets stay secret, README's tables are current."""

from __future__ import annotations

import pytest

from streams.catalog import load_catalog
from streams.docs import render_readme, settings_markdown, topic_catalog_markdown
from streams.endpoints import mask_dsn, resolve_endpoints
from streams.kafka import consumer_config, producer_config
from streams.settings import PROJECT_ROOT, Settings


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SISLMS_KAFKA_BOOTSTRAP", "SISLMS_SCHEMA_REGISTRY_URL", "SISLMS_POSTGRES_DSN"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    e = resolve_endpoints(s)
    assert e.kafka_bootstrap == f"127.0.0.1:{s.kafka_port}"
    assert e.schema_registry_url == f"http://127.0.0.1:{s.registry_port}/apis/ccompat/v7"
    assert e.postgres_dsn.startswith(f"postgresql://postgres@127.0.0.1:{s.postgres_port}/")
    assert not (e.kafka_external or e.registry_external or e.postgres_external)
    assert s.state_dir == PROJECT_ROOT / ".sislms"


def test_environment_names_existing_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISLMS_KAFKA_BOOTSTRAP", "kafka-1:9093")
    monkeypatch.setenv("SISLMS_POSTGRES_DSN", "postgresql://app:s3cret@db:5432/analytics")
    monkeypatch.setenv("SISLMS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SISLMS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SISLMS_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("SISLMS_KAFKA_SASL_PASSWORD", "pw-42")
    monkeypatch.setenv("SISLMS_KAFKA_CLIENT_CONFIG", '{"client.rack": "use1-az1"}')
    s = Settings()
    e = resolve_endpoints(s)
    assert e.kafka_external and e.postgres_external and not e.registry_external
    assert e.public()["postgres_dsn"] == "postgresql://app:***@db:5432/analytics"
    p = producer_config(s, e.kafka_bootstrap)
    assert p["bootstrap.servers"] == "kafka-1:9093"
    assert p["enable.idempotence"] is True and p["acks"] == "all"
    assert p["security.protocol"] == "SASL_SSL" and p["sasl.password"] == "pw-42"
    assert p["client.rack"] == "use1-az1"
    c = consumer_config(s, e.kafka_bootstrap, "g1")
    assert c["enable.auto.commit"] is False and c["group.id"] == "g1"


def test_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISLMS_SCHEMA_REGISTRY_BASIC_AUTH", "user:hunter2")
    monkeypatch.setenv("SISLMS_SIS_CLIENT_SECRET", "sis-hunter3")
    monkeypatch.setenv("SISLMS_LMS_TOKEN", "lms-hunter4")
    monkeypatch.setenv("SISLMS_DASHBOARD_PASSWORD", "dash-hunter5")
    s = Settings()
    assert set(s.secrets) == {
        "kafka_sasl_password",
        "schema_registry_basic_auth",
        "postgres_dsn",
        "sis_client_secret",
        "sis_webhook_secret",
        "lms_token",
        "lms_events_token",
        "dashboard_password",
        "dashboard_session_key",
    }
    for text in (repr(s), str(s.as_dict())):
        assert "hunter2" not in text and "sis-hunter3" not in text and "lms-hunter4" not in text
        assert "dash-hunter5" not in text
    assert s.as_dict()["schema_registry_basic_auth"] == "**********"


def test_mask_dsn_leaves_a_dsn_without_password_alone() -> None:
    assert mask_dsn("postgresql://postgres@127.0.0.1:1/x") == "postgresql://postgres@127.0.0.1:1/x"
    assert mask_dsn("postgresql://u:p@h/x") == "postgresql://u:***@h/x"


def test_settings_table_has_every_setting_once() -> None:
    table = settings_markdown()
    for name, field in Settings.model_fields.items():
        rows = [r for r in table.splitlines() if r.startswith(f"| `SISLMS_{name.upper()}` |")]
        assert len(rows) == 1, name
        secret = "SecretStr" in repr(field.annotation)
        assert rows[0].split("|")[3].strip() == ("yes" if secret else "no")


def test_readme_tables_are_current(settings) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    catalog = load_catalog(settings.topology_file, settings.schemas_dir)
    assert render_readme(readme, catalog) == readme, "README is stale: run `make docs`"
    assert topic_catalog_markdown(catalog) in readme
    for t in catalog:
        assert f"| `{t.name}` |" in readme
