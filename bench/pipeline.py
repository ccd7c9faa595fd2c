"""The whole pipeline on the real stack: ``sislms demo`` runs, measured and reconciled.

For each district size, one demo run with the SIS webhook (each SIS change announced to the
source's ``/trigger``) and one without (the source finds changes by polling alone, every
``SISLMS_SIS_POLL_INTERVAL_S``). Each run is a fresh demo stack: its own Kafka, registry and
PostgreSQL, the pipeline's twelve programs, an initial sync, ``duration`` seconds of live SIS
changes and school activity, a drain and the reconciliation against the simulators' ground
truth (:mod:`sislms.reconcile`). Reported:

- the initial sync: SIS snapshot to LMS provisioned and analytics written, as LMS objects a
  second, with its seconds;
- SIS change to LMS effect (trigger, polling), grade in the LMS to result in the SIS, and a
  learning-activity event to its row in PostgreSQL: p50 and p99 over the live phase;
- each program's peak memory (resident, with its children);
- the nightly batch it replaces, for comparison (with the trigger run, on its stack after the
  reconciliation): the SIS's whole roster exported as a OneRoster CSV bundle and loaded again
  through the CSV source, timed until the pipeline has read it (it changes nothing: checked);
- whether every flow reconciled clean (nothing missing, unexpected or duplicated).

Nothing is asserted: a run that does not reconcile is reported as such, with its counts.

A size whose run would not fit in the machine's memory is not started: the table says so, with
the estimate (:func:`memory_needed_mb`, from the 25,000-user run's peaks) and what the machine
has. ``--pipeline-ignore-memory`` starts it all the same.
"""

from __future__ import annotations

import logging
from typing import Any

import psutil

from bench.measure import Measurement, Run
from sislms.demo import DemoOptions, run_demo

__all__ = ["memory_needed_mb", "run_pipeline"]

log = logging.getLogger("bench")

#: Peak resident memory of a demo run: its stack (Kafka's and the registry's JVMs, PostgreSQL)
#: and, for each user, what the twelve programs held at their peaks in the 25,000-user run of
#: 2026-12-07 (4,224 MB: the LMS simulator, the roster worker and the SIS simulator hold the
#: district; the roster bench's 250,000-user worker grew ten times, to 11.5 GB).
STACK_MB = 2_000
PER_USER_MB = 0.17


def memory_needed_mb(users: int) -> int:
    """About the peak memory a demo run of ``users`` needs, stack included."""
    return int(STACK_MB + PER_USER_MB * users)


def _latency_note(flow: dict[str, Any], extra: str = "") -> str:
    lat = flow["latency"]
    clean = flow["missing"] == flow["unexpected"] == flow["duplicated"] == 0
    state = "clean" if clean else (
        f"NOT clean: missing {flow['missing']}, unexpected {flow['unexpected']}, "
        f"duplicated {flow['duplicated']}"
    )  # fmt: skip
    return f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms over {lat['samples']:,}{extra}; {state}"


def _from_send(flow: dict[str, Any]) -> str:
    sent = flow.get("latency_from_first_send")
    if not sent:
        return ""
    return f"; from the LMS's first send p50 {sent['p50_ms']} ms, p99 {sent['p99_ms']} ms"


def _measurements(summary: dict[str, Any], mode: str) -> list[Measurement]:
    users, live = summary["users"], summary["duration_s"]
    label = f"{users:,} users"
    if summary.get("lms_rate_limit") == 0:
        label += ", Canvas throttle off"
    if (summary.get("roster_workers") or 1) > 1:
        label += f", {summary['roster_workers']} roster workers"
    out: list[Measurement] = []
    flows = summary.get("flows", {})
    if mode == "trigger":
        objects, secs = summary.get("initial_sync_objects") or 0, summary.get("initial_sync_s")
        out.append(
            Measurement(
                "pipeline",
                f"initial sync: SIS snapshot to LMS provisioned and analytics written ({label})",
                "LMS objects/s",
                objects,
                [Run(objects, secs)] if secs else [],
                note=f"{secs:.0f} s" if secs else f"did not complete: {summary.get('timed_out')}",
            )
        )
    roster = flows.get("rostering")
    if roster and roster["latency"]["samples"]:
        n = roster["latency"]["samples"]
        out.append(
            Measurement(
                "pipeline",
                f"SIS change -> LMS, {mode} ({label})",
                "changes/s",
                n,
                [Run(n, live)],
                note=_latency_note(roster, f" changes at {summary.get('sis_rate', 0):g}/s"),
            )
        )
    grades = flows.get("grades")
    if mode == "trigger" and grades and grades["latency"]["samples"]:
        n = grades["latency"]["samples"]
        out.append(
            Measurement(
                "pipeline", f"LMS grade -> SIS result ({label})", "grades/s", n, [Run(n, live)],
                note=_latency_note(grades, " grades") + _from_send(grades),
            )
        )  # fmt: skip
    activity = flows.get("activity")
    if mode == "trigger" and activity and activity["latency"]["samples"]:
        n = activity["latency"]["samples"]
        out.append(
            Measurement(
                "pipeline", f"LMS activity event -> analytics store ({label})", "events/s", n,
                [Run(n, live)],
                note=_latency_note(activity, " events") + _from_send(activity),
            )
        )  # fmt: skip
    batch = summary.get("batch_baseline")
    if batch:
        total = batch["total_s"]
        out.append(
            Measurement(
                "pipeline",
                f"batch baseline: nightly full re-import of the roster as OneRoster CSV ({label})",
                "records/s", batch["records"], [Run(batch["records"], total)],
                note=(
                    f"{total:.0f} s: export {batch['export_s']} s, load {batch['load_s']} s, pipeline "
                    f"{batch['pipeline_s']} s; {batch['provisioning_commands']} provisioning command(s), "
                    f"{'LMS unchanged' if batch['unchanged'] else 'LMS CHANGED'}; a change waits for the "
                    "next night: up to 24 h"
                ),
            )
        )  # fmt: skip
    if mode == "trigger":
        peaks = summary.get("processes", {})
        total = sum(p["peak_rss_mb"] for p in peaks.values())
        top = sorted(peaks.items(), key=lambda kv: -kv[1]["peak_rss_mb"])
        out.append(
            Measurement(
                "pipeline", f"peak memory, {len(peaks)} programs ({label})", "MB (sum of peaks)", total,
                [Run(total, 1.0)],
                note=", ".join(f"{name} {p['peak_rss_mb']:,}" for name, p in top),
            )
        )  # fmt: skip
    return out


def run_pipeline(
    kernel: Any,
    sizes: list[int],
    *,
    duration_s: float,
    modes: tuple[str, ...] = ("trigger", "polling"),
    lms_rate_limit: float | None = None,
    ignore_memory: bool = False,
    roster_workers: int | None = None,
) -> list[Measurement]:
    out: list[Measurement] = []
    summaries: list[dict[str, Any]] = []
    for users in sizes:
        needed, has = memory_needed_mb(users), psutil.virtual_memory().available // 2**20
        if needed > has and not ignore_memory:
            note = (
                f"not run: it needs about {needed / 1024:,.0f} GB ({PER_USER_MB} MB a user, measured at "
                f"25,000, and {STACK_MB / 1024:,.0f} GB for the stack); this machine has "
                f"{has / 1024:,.1f} GB available (--pipeline-ignore-memory runs it all the same)"
            )
            log.warning("pipeline: %d users %s", users, note)
            out.append(
                Measurement("pipeline", f"whole pipeline, {users:,} users", "LMS objects/s", 0, note=note)
            )
            continue
        for mode in modes:
            log.info("pipeline: demo of %d users, changes by %s, %s s live", users, mode, duration_s)
            trigger = mode == "trigger"
            options = DemoOptions(
                users=users, duration_s=duration_s, webhook=trigger, batch_baseline=trigger,
                lms_rate_limit=lms_rate_limit,
            )  # fmt: skip
            got: list[dict[str, Any]] = []
            settings = kernel.settings
            if roster_workers is not None:
                settings = settings.model_copy(update={"roster_workers": roster_workers})
            code = run_demo(settings, options, got.append)
            summary = got[0] if got else {"users": users, "duration_s": duration_s, "ok": False}
            summary.pop("endpoints", None)  # credentials stay out of the results
            summaries.append(summary)
            log.info("pipeline: exit %d, ok %s", code, summary.get("ok"))
            out += _measurements(summary, mode)
    log.info("pipeline summaries: %s", summaries)
    return out
