"""``sislms demo`` end to end, as a newcomer runs it: its own stack, the whole pipeline as
supervised processes, a live phase, the reconciliation against the simulators' ground truth; then
the endpoints it prints, used from outside with the credentials it gives (``--keep``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from connectors.oneroster.auth import scope_url
from connectors.oneroster.models import ROSTERING_PATH

USERS = 300
DURATION_S = 30


def _sislms(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sislms", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    state = tmp_path_factory.mktemp("demo-state")
    env = {**os.environ, "SISLMS_STATE_DIR": str(state)}
    args = ["demo", "--users", str(USERS), "--duration", str(DURATION_S), "--json", "--keep"]
    done = _sislms([*args, "--batch-baseline"], env, timeout=900)
    try:
        summary = json.loads(done.stdout) if done.stdout.strip() else None
        yield done, summary, state
    finally:
        stopped = _sislms(["demo", "--stop"], env, timeout=300)
        assert stopped.returncode == 0, stopped.stderr[-2000:]


def _why(done: subprocess.CompletedProcess[str], state: Path) -> str:
    logs = "".join(
        f"\n--- {p.name} ---\n" + p.read_text(errors="replace")[-1500:]
        for p in sorted((state / "demo" / "logs").glob("*.log"))
    )
    return f"exit {done.returncode}\nstdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}{logs}"


def test_the_demo_reconciles_every_flow_with_nothing_missing_unexpected_or_duplicated(demo: Any) -> None:
    done, summary, state = demo
    assert done.returncode == 0 and summary is not None and summary["ok"], _why(done, state)
    assert summary["users"] == USERS and summary["initial_sync_s"] > 0
    for name in ("rostering", "grades", "activity"):
        flow = summary["flows"][name]
        assert flow["expected"] > 0, f"{name}: nothing to reconcile: {flow}"
        assert flow["applied"] == flow["expected"], f"{name}: {flow}"
        assert (flow["missing"], flow["unexpected"], flow["duplicated"]) == (0, 0, 0), f"{name}: {flow}"
        assert flow["latency"]["samples"] > 0 and flow["latency"]["p99_ms"] is not None, f"{name}: {flow}"
    # a district of USERS users, its classes and enrollments; the SIS changed while live
    assert summary["flows"]["rostering"]["by_kind"]["users"]["expected"] >= USERS
    assert summary["flows"]["rostering"]["sis_changes"] > 0
    assert all(p["restarts"] == 0 for p in summary["processes"].values()), summary["processes"]


def test_a_nightly_csv_re_import_after_the_demo_changes_nothing(demo: Any) -> None:
    """The batch baseline: the SIS's roster exported as OneRoster CSV and loaded again is read
    by the whole pipeline, which makes no provisioning command (the stream applied it all)."""
    done, summary, state = demo
    assert summary is not None, _why(done, state)
    batch = summary["batch_baseline"]
    assert batch["records"] >= summary["flows"]["rostering"]["by_kind"]["users"]["expected"]
    assert batch["rejected"] == 0 and batch["caught_up"], batch
    assert batch["provisioning_commands"] == 0 and batch["lms_equals_plan"] and batch["unchanged"], batch
    assert batch["load_s"] > 0 and batch["pipeline_s"] > 0


def test_the_endpoints_it_prints_answer_with_the_credentials_it_gives(demo: Any) -> None:
    done, summary, state = demo
    assert summary is not None, _why(done, state)
    ep = summary["endpoints"]
    assert summary["kept"] is True

    admin = AdminClient({"bootstrap.servers": ep["kafka_bootstrap_servers"]})
    topics = admin.list_topics(timeout=10).topics
    assert "sis.users.v1" in topics and "lms.provisioning.v1" in topics

    subjects = httpx.get(f"{ep['schema_registry_url']}/subjects", timeout=10).json()
    assert "sis.users.v1-value" in subjects

    with psycopg.connect(ep["postgres_dsn"]) as conn:
        schema = ep["analytics_schema"]
        events = conn.execute(f'select count(*) from "{schema}".activity_events').fetchone()
    assert events is not None and events[0] == summary["flows"]["activity"]["applied"]

    sis = ep["sis"]
    assert sis["oneroster_base_url"].endswith(ROSTERING_PATH)
    token = httpx.post(
        sis["token_url"],
        data={"grant_type": "client_credentials", "scope": scope_url("roster.readonly")},
        auth=(sis["client_id"], sis["client_secret"]),
        timeout=10,
    )
    assert token.status_code == 200, token.text
    users = httpx.get(
        f"{sis['oneroster_base_url']}/users",
        params={"limit": 5},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=10,
    )
    assert users.status_code == 200 and len(users.json()["users"]) == 5

    lms = httpx.get(
        f"{ep['lms']['url']}/api/v1/accounts/1/courses",
        headers={"Authorization": f"Bearer {ep['lms']['token']}"},
        timeout=10,
    )
    assert lms.status_code == 200 and lms.json()

    receiver = ep["event_receiver"]
    refused = httpx.post(
        receiver["url"], content=b"{}", headers={"Content-Type": "application/json"}, timeout=10
    )
    assert refused.status_code == 401  # the token is needed, and the one printed is it
    bad = httpx.post(
        receiver["url"],
        content=b"{}",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {receiver['token']}"},
        timeout=10,
    )
    assert bad.status_code == 400

    board = ep["dashboard"]
    with httpx.Client(base_url=board["url"], timeout=10) as client:
        signed_in = client.post("/login", data={"user": board["user"], "password": board["password"]})
        assert signed_in.status_code in (200, 302, 303), signed_in.text[:500]
        assert client.get("/").status_code == 200
