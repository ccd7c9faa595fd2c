"""`sislms stack`: idempotent up, honest status, external services left alone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sislms.stack import Stack
from streams.settings import Settings


def _sislms(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sislms.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_twice_is_harmless(stack: Stack) -> None:
    before = {s.name: s.pid for s in stack.status()}
    r = _sislms("stack", "up", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["healthy"] is True
    after = {n: c["pid"] for n, c in doc["components"].items()}
    assert after == before  # nothing restarted
    assert doc["endpoints"]["kafka_bootstrap"] == stack.endpoints.kafka_bootstrap
    assert doc["endpoints"]["schema_registry_url"] == stack.endpoints.schema_registry_url
    assert doc["endpoints"]["postgres_dsn"].startswith("postgresql://")


def test_status_json_names_every_endpoint(stack: Stack) -> None:
    r = _sislms("stack", "status", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc["components"]) == {"kafka", "registry", "postgres"}
    assert all(c["state"] in ("running", "external") for c in doc["components"].values())


@pytest.fixture
def second_stack(tmp_path: Path, stack: Stack) -> dict[str, str]:
    """Env for a second, private stack (own state dir and ports) beside the session one."""
    return {
        "SISLMS_STATE_DIR": str(tmp_path / "state"),
        "SISLMS_KAFKA_PORT": str(_free_port()),
        "SISLMS_KAFKA_CONTROLLER_PORT": str(_free_port()),
        "SISLMS_REGISTRY_PORT": str(_free_port()),
        "SISLMS_POSTGRES_PORT": str(_free_port()),
        "SISLMS_KAFKA_HEAP": "384m",
    }


def test_status_reports_a_dead_component_with_the_end_of_its_log(second_stack: dict[str, str]) -> None:
    env = second_stack
    try:
        up = _sislms("stack", "up", "kafka", "postgres", env=env)
        assert up.returncode == 0, up.stderr

        st = json.loads(_sislms("stack", "status", "--json", "kafka", "postgres", env=env).stdout)
        kafka_pid = st["components"]["kafka"]["pid"]
        assert st["components"]["kafka"]["state"] == "running"
        os.kill(kafka_pid, signal.SIGKILL)
        psutil.Process(kafka_pid).wait(10) if psutil.pid_exists(kafka_pid) else None
        time.sleep(0.5)

        r = _sislms("stack", "status", "--json", "kafka", "postgres", env=env)
        assert r.returncode == 1  # not healthy
        doc = json.loads(r.stdout)
        kafka, pg = doc["components"]["kafka"], doc["components"]["postgres"]
        assert kafka["state"] == "dead" and kafka["healthy"] is False
        log_lines = Path(kafka["log_file"]).read_text().splitlines()
        assert kafka["log_tail"].splitlines() == log_lines[-20:]  # the end of the broker's own log
        assert "Kafka Server started" in "\n".join(log_lines)
        assert pg["state"] == "running" and pg["healthy"] is True

        text = _sislms("stack", "status", "kafka", env=env)
        assert "dead" in text.stdout and "last lines" in text.stdout

        again = _sislms("stack", "up", "kafka", env=env)  # up restarts only what died
        assert again.returncode == 0, again.stderr
        doc = json.loads(_sislms("stack", "status", "--json", "kafka", "postgres", env=env).stdout)
        assert doc["components"]["kafka"]["state"] == "running"
        assert doc["components"]["postgres"]["pid"] == pg["pid"]
    finally:
        _sislms("stack", "down", env=env)
    doc = json.loads(_sislms("stack", "status", "--json", env=env).stdout)
    assert {c["state"] for c in doc["components"].values()} == {"stopped"}


def test_existing_services_named_by_settings_are_used_not_started(
    stack: Stack, second_stack: dict[str, str]
) -> None:
    env = {
        **second_stack,
        "SISLMS_KAFKA_BOOTSTRAP": stack.endpoints.kafka_bootstrap,
        "SISLMS_SCHEMA_REGISTRY_URL": stack.endpoints.schema_registry_url,
        "SISLMS_POSTGRES_DSN": stack.endpoints.postgres_dsn,
    }
    r = _sislms("stack", "up", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {c["state"] for c in doc["components"].values()} == {"external"}
    assert not Path(env["SISLMS_STATE_DIR"], "kafka", "pid").exists()

    env["SISLMS_SCHEMA_REGISTRY_URL"] = f"http://127.0.0.1:{_free_port()}/apis/ccompat/v7"
    r = _sislms("stack", "status", "--json", "registry", env=env)
    assert r.returncode == 1
    reg = json.loads(r.stdout)["components"]["registry"]
    assert reg["state"] == "unreachable" and "no answer" in reg["detail"]


def test_settings_never_print_secrets() -> None:
    r = _sislms(
        "settings",
        env={
            "SISLMS_KAFKA_SASL_PASSWORD": "hunter2-secret",
            "SISLMS_POSTGRES_DSN": "postgresql://u:pw-secret@h/db",
        },
    )
    assert r.returncode == 0, r.stderr
    assert "hunter2-secret" not in r.stdout + r.stderr
    assert "pw-secret" not in r.stdout + r.stderr
    assert json.loads(r.stdout)["kafka_sasl_password"] == "**********"


def test_settings_object_is_built_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISLMS_KAFKA_BOOTSTRAP", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("SISLMS_KAFKA_CLIENT_CONFIG", '{"ssl.endpoint.identification.algorithm": "https"}')
    s = Settings()
    from streams.kafka import client_config

    conf = client_config(s, "broker-a:9092,broker-b:9092")
    assert conf["ssl.endpoint.identification.algorithm"] == "https"


def test_registry_keeps_its_schemas_across_a_restart(second_stack: dict[str, str]) -> None:
    """Records on Kafka name their schema by id: the ids must survive a registry restart."""
    from streams.registry import Registry

    env = second_stack
    url = f"http://127.0.0.1:{env['SISLMS_REGISTRY_PORT']}/apis/ccompat/v7"
    schema = {"type": "record", "name": "Probe", "fields": [{"name": "a", "type": "string"}]}
    try:
        assert _sislms("stack", "up", "registry", env=env).returncode == 0
        registered = Registry(url).register("probe-value", schema)
        assert _sislms("stack", "down", "registry", env=env).returncode == 0
        assert _sislms("stack", "up", "registry", env=env).returncode == 0
        again = Registry(url)
        assert json.loads(again.schema_text(registered.schema_id)) == schema
        assert again.lookup("probe-value", schema) == registered
    finally:
        _sislms("stack", "down", env=env)
