"""State files (atomic writes, kinds) and the saver that keeps them; SIGTERM stops a foreground
simulator cleanly, so its last save happens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from simulators.lms.store import CanvasStore
from simulators.serving import StateFileError, StateSaver, read_state, write_state

ROOT = Path(__file__).resolve().parents[3]


def test_a_state_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "sim.state"
    state = {"a": {1: {"x": [1, 2]}}, "b": {(1, 2): {"y"}}}
    assert write_state(path, "kind-a", state) == path.stat().st_size
    assert read_state(path, "kind-a") == state
    write_state(path, "kind-a", {"a": 2})
    assert read_state(path, "kind-a") == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["sim.state"]


def test_another_kind_or_a_torn_file_is_a_state_file_error(tmp_path: Path) -> None:
    path = tmp_path / "sim.state"
    write_state(path, "kind-a", {})
    with pytest.raises(StateFileError, match="not a 'kind-b' state"):
        read_state(path, "kind-b")
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(StateFileError, match="not a readable state file"):
        read_state(path, "kind-a")


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "sim.state"
    write_state(path, "k", {"v": 1})
    with pytest.raises(TypeError):
        write_state(path, "k", {"v": threading.Lock()})  # cannot be pickled
    assert read_state(path, "k") == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["sim.state"]


class _Owner:
    def __init__(self) -> None:
        self.counter = 0
        self.saved: list[int] = []
        self.fail = False

    def save(self, path: Path) -> int:
        if self.fail:
            raise OSError("disk full")
        write_state(path, "owner", {"counter": self.counter})
        self.saved.append(self.counter)
        return self.counter


def test_the_saver_saves_only_what_changed_and_a_last_time_on_stop(tmp_path: Path) -> None:
    owner = _Owner()
    saver = StateSaver("test", tmp_path / "s", owner.save, lambda: owner.counter, every_s=0.05, saved=0)
    saver.start()
    time.sleep(0.2)
    assert owner.saved == []  # nothing changed since the file was read
    owner.counter = 1
    deadline = time.monotonic() + 5
    while owner.saved != [1] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert owner.saved == [1]
    time.sleep(0.2)
    assert owner.saved == [1]
    saver.every_s = 3600.0
    owner.counter = 2
    saver.stop()
    assert owner.saved[-1] == 2
    assert read_state(tmp_path / "s", "owner") == {"counter": 2}


def test_a_failed_save_is_logged_and_counted_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    owner = _Owner()
    owner.fail = True
    saver = StateSaver("test", tmp_path / "s", owner.save, lambda: owner.counter)
    assert saver.save_now() is False
    assert saver.failures == 1 and saver.dirty
    assert "saving the state" in caplog.text
    owner.fail = False
    assert saver.save_now() is True
    assert not saver.dirty and saver.save_now() is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LMS = """
import sys
from pathlib import Path
from simulators.lms.server import LmsConfig, LmsSimulator
config = LmsConfig(port=int(sys.argv[1]), token="t", state_file=Path(sys.argv[2]), save_every_s=3600)
LmsSimulator(config).serve_forever()
print("returned", flush=True)
"""


def test_sigterm_stops_a_foreground_simulator_which_saves_its_state(tmp_path: Path) -> None:
    port, path = _free_port(), tmp_path / "lms.state"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _LMS, str(port), str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url, auth = f"http://127.0.0.1:{port}/api/v1", {"Authorization": "Bearer t"}
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/accounts/1", headers=auth).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        body = {"user": {"name": "Ada"}, "pseudonym": {"unique_id": "ada", "sis_user_id": "S-ADA"}}
        httpx.post(f"{url}/accounts/1/users", json=body, headers=auth).raise_for_status()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "returned" in out
    users = CanvasStore.load(path).ground_truth()["users"]
    assert [u["sis_user_id"] for u in users] == ["S-ADA"]
