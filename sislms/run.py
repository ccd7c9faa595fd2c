"""``make run`` (``sislms run``): the whole district pipeline on this machine, supervised.

It starts the local stack and applies the topology (both idempotent), then the pipeline's
programs (:func:`~sislms.pipeline.programs`) under a :class:`~sislms.supervisor.Supervisor`: the
SIS simulator over a generated district, the LMS simulator, the sources, the roster worker, the
sinks and processors, the event receiver and the dashboard. While the initial sync runs it shows
a progress bar per flow; once every flow has caught up, the SIS simulator starts making changes
and the LMS simulator plays school activity, and a status line shows rates, lag and latency.

Ctrl-C (or SIGTERM) stops the programs in reverse order, then the stack. Everything is kept
under the state directory: the topics, the analytics store, the sources' bookmarks, the
simulators' state (saved every 30 s and at stop), so running it again resumes where it stopped
(the initial sync then has nothing to do). ``--fresh`` starts over from an empty state.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from sislms.console import View
from sislms.dashboard import dashboard_password
from sislms.pipeline import Latencies, Watch, child_env, health, programs, start_stack
from sislms.stack import Stack
from sislms.supervisor import Supervisor, stop_leftovers
from sislms.wiring import Kernel
from streams.settings import Settings

__all__ = ["RunOptions", "run_pipeline"]

#: simulated days of school activity the LMS simulator plays while ``make run`` runs
_ACTIVITY_DAYS = 365


@dataclass(frozen=True)
class RunOptions:
    users: int
    sis_rate: float = 1.0  #: SIS changes a second once the initial sync is done
    activity_speed: float = 60.0  #: simulated seconds of school activity per real second
    fresh: bool = False


def state_files(settings: Settings) -> tuple[Path, Path]:
    """Where the SIS and the LMS simulators keep their state between runs."""
    home = settings.state_dir / "simulators"
    return home / "sis.state", home / "lms.state"


def run_pipeline(settings: Settings, options: RunOptions) -> int:
    """Runs until Ctrl-C or SIGTERM; returns the exit code."""
    logs = settings.state_dir / "logs"
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with View() as view:
            stop_leftovers(logs, view.say)
            stack = Stack(settings)
            if options.fresh:
                stack.down()
                removed = _remove_state(settings.state_dir)
                view.say(f"--fresh: removed {settings.state_dir} ({', '.join(removed) or 'nothing'})")
            sis_state, lms_state = state_files(settings)
            resuming = sis_state.exists()
            view.say("stack: starting Kafka, the schema registry and PostgreSQL")
            try:
                stack, kernel = start_stack(settings)
            except RuntimeError as exc:
                view.say(str(exc))
                return 1
            refusal = _foreign_data(settings, kernel, resuming)
            if refusal:
                view.say(refusal)
                kernel.close()
                stack.down()
                return 2
            sis_state.parent.mkdir(parents=True, exist_ok=True)
            supervisor = Supervisor(
                programs(settings, users=options.users, sis_rate=0.0, state=(sis_state, lms_state)),
                env=child_env({}),
                log_dir=logs,
                report=view.say,
            )
            what = (
                "resuming from the stored state" if resuming else f"a new district of {options.users:,} users"
            )
            view.say(f"pipeline: starting its programs ({what}); logs in {logs}")
            try:
                supervisor.start(wait=lambda: not stop.is_set())
                if not stop.is_set():
                    url = f"http://127.0.0.1:{settings.dashboard_port}/"
                    who = f"user {settings.dashboard_user}, password in {_password_hint(settings)}"
                    view.say(f"dashboard: {url}  ({who})")
                    _watch(settings, options, kernel, supervisor, view, stop)
            finally:
                view.say("stopping: the programs, then the stack")
                supervisor.stop()
                kernel.close()
                stack.down()
                view.say("stopped; `make run` again resumes from here")
            return 0
    finally:
        signal.signal(signal.SIGINT, previous)


def _remove_state(state_dir: Path) -> list[str]:
    """Everything under the state directory but a demo's (``demo/``: its own stack, maybe kept
    up); returns what went."""
    removed = []
    for path in sorted(state_dir.iterdir()) if state_dir.is_dir() else []:
        if path.name == "demo":
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed.append(path.name)
    return removed


def _foreign_data(settings: Settings, kernel: Kernel, resuming: bool) -> str | None:
    """Why the stack's data cannot be resumed (None: it can): topics that hold records no run of
    ours made (the tests', an older version's), or a run whose simulators' state is gone."""
    watch = Watch(settings, kernel.endpoints.kafka_bootstrap, "")
    held = watch.records("sis.users.v1") + watch.records("lms.provisioning.v1")
    if held == 0 or resuming:
        return None
    return (
        f"the stack under {settings.state_dir} already holds pipeline records ({held:,} on sis.users.v1 and "
        "lms.provisioning.v1) that no `make run` made (tests, an earlier version), or the simulators' "
        "state is gone: resuming would mix them with a new district. Start over with "
        "`make run ARGS=--fresh` (it deletes that directory: topics, analytics store, state)."
    )


def _password_hint(settings: Settings) -> str:
    if settings.dashboard_password is not None:
        return "SISLMS_DASHBOARD_PASSWORD"
    dashboard_password(settings)  # made now if it was not
    return str(settings.state_dir / "secrets" / "dashboard-password")


def _watch(
    settings: Settings,
    options: RunOptions,
    kernel: Kernel,
    supervisor: Supervisor,
    view: View,
    stop: threading.Event,
) -> None:
    sis = f"http://127.0.0.1:{settings.simulator_port}"
    lms = f"http://127.0.0.1:{settings.lms_simulator_port}"
    watch = Watch(settings, kernel.endpoints.kafka_bootstrap, sis)
    latencies = Latencies(settings)
    started = time.monotonic()
    synced = False
    quiet_since: float | None = None
    while not stop.is_set():
        supervisor.check()  # reports through the view
        states = watch.read()
        extra = latencies.line() if synced else f"initial sync {time.monotonic() - started:,.0f} s"
        view.update(states, supervisor.children, extra)
        if not synced:
            caught_up = (
                _snapshot_done(settings)
                and all(s.started and s.lag == 0 for s in states if s.name in _MUST_CATCH_UP)
                and all(s.lag == 0 for s in states if s.started)
            )
            quiet_since = (quiet_since or time.monotonic()) if caught_up else None
            if quiet_since is not None and time.monotonic() - quiet_since >= 5.0:
                synced = True
                view.say(f"initial sync: every flow caught up after {time.monotonic() - started:,.0f} s")
                _go_live(sis, lms, options, view)
                view.live()
        stop.wait(1.0)


#: the flows the initial sync is made of: caught up (and started) before it is said done
_MUST_CATCH_UP = ("roster: rules, diff", "LMS provisioning", "analytics store")


def _snapshot_done(settings: Settings) -> bool:
    """The SIS source has completed a run (its first is the snapshot)."""
    _, detail = health(f"http://127.0.0.1:{settings.sis_trigger_port}/healthz")
    return isinstance(detail, dict) and bool(detail.get("lastSuccess"))


def _go_live(sis: str, lms: str, options: RunOptions, view: View) -> None:
    """The SIS makes changes, the LMS plays school activity: the live district."""
    try:
        httpx.post(f"{sis}/_sim/generator", json={"rate": options.sis_rate}, timeout=10).raise_for_status()
        status = httpx.get(f"{lms}/_sim/activity/status", timeout=10).json()
        if not status.get("running"):
            body = {
                "duration_s": _ACTIVITY_DAYS * 86_400 / options.activity_speed,
                "speed": options.activity_speed,
            }
            httpx.post(f"{lms}/_sim/activity", json=body, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        view.say(f"live district not started: {exc}")
        return
    view.say(
        f"live: the SIS makes {options.sis_rate:g} changes/s; the LMS plays school activity at "
        f"{options.activity_speed:g}x. Ctrl-C stops everything."
    )
