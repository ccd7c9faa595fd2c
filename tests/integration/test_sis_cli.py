"""The SIS commands as an operator runs them: `sislms sis serve`, `holds`, `approve`, `reject`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from connectors.sources.holds import HoldBook
from sislms.wiring import Kernel
from streams.catalog import Catalog
from tests.integration.sis_support import read_topic, sis_topics

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SISLMS_STATE_DIR": str(tmp_path / "state"), **extra}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sislms.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sis_serve_is_a_oneroster_provider_behind_oauth(tmp_path: Path) -> None:
    port = _free_port()
    env = _env(tmp_path, SISLMS_SIS_CLIENT_SECRET="cli-secret")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sislms.cli", "sis", "serve", "--users", "300", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/_sim/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "sislms sis serve did not answer"
            time.sleep(0.5)
        users = f"{base}/ims/oneroster/rostering/v1p2/users"
        assert httpx.get(users).status_code == 401
        refused = httpx.post(
            f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=("sislms", "wrong")
        )
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        token = httpx.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "roster-core.readonly"},
            auth=("sislms", "cli-secret"),
        ).json()["access_token"]
        page = httpx.get(
            users,
            params={"limit": 5, "filter": "status='active'"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert page.status_code == 200 and len(page.json()["users"]) == 5
        assert int(page.headers["X-Total-Count"]) > 300
        assert 'rel="next"' in page.headers["Link"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_holds_are_listed_approved_and_rejected_from_the_cli(
    kernel: Kernel, make_catalog: Callable[..., Catalog], uid: str, tmp_path: Path
) -> None:
    topics = sis_topics(kernel, make_catalog, uid, tag="h")
    topic = topics.topics["users"]
    book = HoldBook(tmp_path / "state" / "holds")
    keep = book.create(
        source="oneroster-rest:x",
        entity="users",
        topic=topic,
        live_before=20,
        deletions=[f"k{i}" for i in range(5)],
        note="test",
    )
    drop = book.create(
        source="oneroster-rest:x",
        entity="users",
        topic=topic,
        live_before=20,
        deletions=[f"k{i}" for i in range(5, 9)],
        note="test",
    )
    env = _env(tmp_path)

    listed = _cli("sis", "holds", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert sorted(h["id"] for h in json.loads(listed.stdout)) == sorted([keep.id, drop.id])

    approved = _cli("sis", "approve", keep.id, env=env)
    assert approved.returncode == 0, approved.stderr
    assert "5 tombstone(s)" in approved.stdout
    rejected = _cli("sis", "reject", drop.id, env=env)
    assert rejected.returncode == 0 and "dropped" in rejected.stdout
    again = _cli("sis", "approve", drop.id, env=env)
    assert again.returncode == 1 and "already rejected" in again.stderr
    unknown = _cli("sis", "approve", "nope", env=env)
    assert unknown.returncode == 1 and "no hold" in unknown.stderr

    records = read_topic(topics, topic)
    assert sorted(k for k, v, _ in records if v is None) == [f"k{i}" for i in range(5)]
    assert _cli("sis", "holds", env=env).stdout.strip() == "no pending holds"
