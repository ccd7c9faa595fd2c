"""The supervisor with small stand-in programs: start order and readiness, a crash restarted and
reported, an ordered stop, and the children a killed supervisor left behind."""

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

from sislms.supervisor import Program, Supervisor, stop_leftovers

# argv: <kind> <journal file> [port]; "sislms" in the command line, as the real programs have
STAND_IN = r"""# a sislms stand-in
import http.server, signal, sys, threading, time
kind, journal = sys.argv[1], sys.argv[2]
def note(what):
    with open(journal, "a") as f:
        f.write(f"{kind}:{what}\n")
note("start")
if kind.startswith("crash"):
    print("something went wrong: the stand-in crashed", flush=True)
    sys.exit(3)
def bye(*_):
    note("stop")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
if kind.startswith("parent"):  # a program with a child of its own holding 64 MB
    import subprocess
    kid = subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * (64 << 20); time.sleep(120)"])
    with open(journal, "a") as f:
        f.write(f"kid:{kid.pid}\n")
if kind.startswith("serve"):
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[3])), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
while True:
    time.sleep(0.05)
"""


def _supervisor(tmp_path: Path, programs: list[Program], lines: list[str]) -> Supervisor:
    return Supervisor(
        programs, env=dict(os.environ), log_dir=tmp_path / "logs", report=lines.append,
        command=(sys.executable, "-c", STAND_IN),
    )  # fmt: skip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _journal(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _wait(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_programs_start_in_order_each_ready_before_the_next_and_stop_in_reverse(tmp_path: Path) -> None:
    journal, port, lines = tmp_path / "journal", _port(), []
    sup = _supervisor(
        tmp_path,
        [
            Program("serve", ("serve", str(journal), str(port)), ready_url=f"http://127.0.0.1:{port}/"),
            Program("second", ("second", str(journal))),
        ],
        lines,
    )
    sup.start()
    _wait(lambda: "second:start" in _journal(journal))
    assert _journal(journal)[:2] == ["serve:start", "second:start"]
    assert json.loads((tmp_path / "logs" / "pids.json").read_text()).keys() == {"serve", "second"}
    sup.stop()
    assert _journal(journal)[2:] == ["second:stop", "serve:stop"]
    assert not (tmp_path / "logs" / "pids.json").exists()
    assert all(not c.running for c in sup.children)


def test_a_crashed_program_is_reported_and_started_again(tmp_path: Path) -> None:
    journal, lines = tmp_path / "journal", []
    sup = _supervisor(tmp_path, [Program("crash", ("crash", str(journal)))], lines)
    sup.start()
    _wait(lambda: bool(sup.check()) or any("exited" in line for line in lines), timeout=10)
    exited = [line for line in lines if "exited" in line]
    assert exited and "code 3" in exited[0] and "the stand-in crashed" in exited[0]
    _wait(lambda: bool(sup.check() or True) and sup.child("crash").restarts >= 1, timeout=10)
    assert any("restarted (restart #1)" in line for line in lines)
    _wait(lambda: _journal(journal).count("crash:start") >= 2)
    sup.stop()


def test_a_start_that_never_answers_names_the_program_and_its_log(tmp_path: Path) -> None:
    journal, port = tmp_path / "journal", _port()
    sup = _supervisor(
        tmp_path,
        [Program("crash-at-start", ("crash-at-start", str(journal)), ready_url=f"http://127.0.0.1:{port}/")],
        [],
    )
    try:
        sup.start()
    except RuntimeError as exc:
        assert "crash-at-start exited with code 3" in str(exc) and "crash-at-start.log" in str(exc)
    else:
        raise AssertionError("the start should have failed")
    finally:
        sup.stop()


def test_children_left_by_a_killed_supervisor_are_stopped_by_the_next(tmp_path: Path) -> None:
    journal, logs = tmp_path / "journal", tmp_path / "logs"
    # a supervisor in its own process, killed with SIGKILL: its children are detached ones
    script = (
        "import os, sys; from pathlib import Path; from sislms.supervisor import Program, Supervisor; "
        f"s = Supervisor([Program('left', ('left', {str(journal)!r}))], env=dict(os.environ), "
        f"log_dir=Path({str(logs)!r}), command=(sys.executable, '-c', {STAND_IN!r}), die_with_parent=False); "
        "s.start(); import time; time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    _wait(lambda: "left:start" in _journal(journal))
    pid = json.loads((logs / "pids.json").read_text())["left"]
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    assert psutil.pid_exists(pid)
    said: list[str] = []
    assert stop_leftovers(logs, said.append) == 1
    assert "left running by an earlier run" in said[0]
    assert "left:stop" in _journal(journal)
    assert not (logs / "pids.json").exists()


def test_memory_counts_a_programs_own_children_and_outlives_them(tmp_path: Path) -> None:
    journal, lines = tmp_path / "journal", []
    sup = _supervisor(tmp_path, [Program("parent", ("parent", str(journal)))], lines)
    sup.start()
    try:
        _wait(lambda: any(w.startswith("kid:") for w in _journal(journal)))
        kid = psutil.Process(int(next(w for w in _journal(journal) if w.startswith("kid:"))[4:]))
        child = sup.child("parent")
        _wait(lambda: kid.memory_info().rss > 64 << 20)
        with_kid = child.rss()
        assert with_kid >= kid.memory_info().rss + psutil.Process(child.pid).memory_info().rss * 0.9
        kid.kill()  # not ours to reap: it stays a zombie of the program, which holds no memory
        _wait(lambda: not kid.is_running() or kid.status() == psutil.STATUS_ZOMBIE)
        alone = child.rss()  # the child it knew is gone: counted out, not an error
        assert 0 < alone < with_kid - (60 << 20)
        assert child.peak_rss == with_kid
    finally:
        sup.stop()
