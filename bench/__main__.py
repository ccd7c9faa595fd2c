"""``python -m bench``: run the benchmarks, print the Markdown table, write the JSON."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import describe, render
from bench.measure import Measurement
from bench.serde import TOPIC

log = logging.getLogger("bench")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_RECORDS = 200_000
DEFAULT_MESSAGES = 500_000
QUICK_RECORDS = 5_000
QUICK_MESSAGES = 5_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--records",
        type=int,
        help=f"sis.users.v1 records per serde run and per encoded-topic consume run "
        f"(default {DEFAULT_RECORDS:,}; {QUICK_RECORDS:,} with --quick)",
    )
    p.add_argument(
        "--messages",
        type=int,
        help=f"~1 KB messages per raw produce/consume run (default {DEFAULT_MESSAGES:,}; "
        f"{QUICK_MESSAGES:,} with --quick)",
    )
    p.add_argument("--repeats", "--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    p.add_argument("--quick", action="store_true", help="a small smoke run of a few thousand items")
    p.add_argument(
        "--only",
        choices=["serde", "kafka", "sis", "roster", "lms", "dashboard", "pipeline"],
        help="run one group only",
    )
    p.add_argument(
        "--pipeline-users",
        default="25000,250000",
        help="district sizes of the whole-pipeline demo runs, comma separated (default 25000,250000; "
        "300 with --quick)",
    )
    p.add_argument(
        "--pipeline-duration", type=float, default=120.0, help="seconds live in each demo run (default 120)"
    )
    p.add_argument(
        "--pipeline-lms-rate-limit",
        type=float,
        default=None,
        help="the LMS simulator's throttle bucket in the demo runs (default Canvas's 700, about 100 calls "
        "a second; 0: off, to measure the pipeline rather than Canvas's rate limit)",
    )
    p.add_argument(
        "--pipeline-roster-workers",
        type=int,
        default=None,
        help="roster worker processes in the demo runs (default SISLMS_ROSTER_WORKERS, 1)",
    )
    p.add_argument(
        "--pipeline-ignore-memory",
        action="store_true",
        help="run a pipeline size even when its estimated peak memory is more than the machine has",
    )
    p.add_argument(
        "--pipeline-modes",
        default="trigger,polling",
        help="how the SIS source finds changes in the demo runs, comma separated: trigger (the SIS "
        "webhook, with the batch baseline after it), polling (default both)",
    )
    p.add_argument(
        "--dashboard-users",
        type=int,
        help="district size of the analytics sink and dashboard bench (default 25,000; 500 with --quick)",
    )
    p.add_argument(
        "--lms-events",
        type=int,
        help="Canvas Live Events through the receiver and the events processor "
        "(default 100,000; 3,000 with --quick)",
    )
    p.add_argument(
        "--roster-users",
        default="25000,250000",
        help="district sizes of the roster runs, comma separated (default 25000,250000; 2000 with --quick)",
    )
    p.add_argument(
        "--roster-workers",
        type=int,
        default=1,
        help="roster worker processes sharing the partitions (default 1)",
    )
    p.add_argument(
        "--roster-keep",
        metavar="DIR",
        help="keep each roster run's worker logs and state in DIR and its topics on the broker (post-mortem)",
    )
    p.add_argument(
        "--roster-resume",
        metavar="DIR",
        help="take up the roster run whose work dir is DIR (its load stopped, e.g. by a session's end): "
        "workers start again on its state and topics; the load time adds the time before",
    )
    p.add_argument(
        "--roster-resumed-after",
        type=float,
        metavar="S",
        help="with --roster-resume, for a run that saved no progress.json: its load seconds so far",
    )
    p.add_argument(
        "--sis-users",
        default="25000,250000",
        help="district sizes (students + staff) of the SIS snapshot runs, comma separated "
        "(default 25000,250000; 2000 with --quick)",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = p.parse_args(argv)
    if args.lms_events is None:
        args.lms_events = 3_000 if args.quick else 100_000
    if args.records is None:
        args.records = QUICK_RECORDS if args.quick else DEFAULT_RECORDS
    if args.messages is None:
        args.messages = QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES
    for name in ("records", "messages", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def _num(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:,.{digits}f}"


def table(measurements: list[Measurement]) -> str:
    lines = [
        "| Measurement | Per run | Median | Min | Max | Unit | MB/s (median) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for m in measurements:
        name = f"{m.name} ({m.note})" if m.note else m.name
        lines.append(
            f"| {name} | {m.per_run:,} | {_num(m.median)} | {_num(m.low)} | {_num(m.high)} | {m.unit} "
            f"| {_num(m.median_mb_per_s, 1)} |"
        )
    return "\n".join(lines)


def ensure_stack(settings: Any) -> Any:
    """Start the local stack if needed and make sure the users contract is registered."""
    from sislms.stack import Stack
    from sislms.wiring import Kernel
    from streams.errors import ConfigError
    from streams.topology import apply

    for status in Stack(settings).up():
        log.info("stack: %s", status)
    kernel = Kernel(settings)
    try:
        schema_id = kernel.serdes[TOPIC].schema_id
        log.info("%s-value: schema id %d", TOPIC, schema_id)
    except ConfigError:
        log.info("%s-value is not registered: applying the topology", TOPIC)
        result = apply(kernel.catalog, kernel.admin, kernel.registry, settings.replication_factor_cap)
        if not result.ok:
            raise SystemExit(f"topology apply failed: {result.failed}") from None
    return kernel


def main(argv: list[str] | None = None) -> int:
    from streams.logs import configure_logging
    from streams.settings import Settings

    args = parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    started = datetime.now(UTC)
    t0 = time.perf_counter()

    kernel = ensure_stack(settings)
    machine = describe(settings, kernel.endpoints)
    log.info("%s", render(machine))

    measurements: list[Measurement] = []
    if args.only in (None, "serde"):
        from bench.serde import run_serde

        measurements += run_serde(kernel, args.records, args.repeats)
    if args.only in (None, "kafka"):
        from bench.kafka_raw import run_kafka

        measurements += run_kafka(kernel, args.messages, args.records, args.repeats)
    if args.only in (None, "sis"):
        from bench.sis_snapshot import run_sis_snapshot

        sizes = [2000] if args.quick and args.sis_users == "25000,250000" else args.sis_users.split(",")
        measurements += run_sis_snapshot(kernel, [int(s) for s in sizes])
    if args.only in (None, "roster"):
        from bench.roster import run_roster

        sizes = [2000] if args.quick and args.roster_users == "25000,250000" else args.roster_users.split(",")
        measurements += run_roster(
            kernel, [int(s) for s in sizes], workers=args.roster_workers, keep=args.roster_keep,
            resume=args.roster_resume, resumed_after=args.roster_resumed_after,
        )  # fmt: skip

    if args.only in (None, "lms"):
        from bench.lms import run_lms

        measurements += run_lms(kernel, args.lms_events, sis_users=500 if args.quick else 2000)
    if args.only in (None, "dashboard"):
        from bench.dashboard import run_dashboard

        users = args.dashboard_users or (500 if args.quick else 25_000)
        measurements += run_dashboard(kernel, users, requests=5 if args.quick else 20)

    if args.only in (None, "pipeline"):
        from bench.pipeline import run_pipeline

        quick = args.quick and args.pipeline_users == "25000,250000"
        sizes = [300] if quick else [int(s) for s in args.pipeline_users.split(",")]
        modes = tuple(m.strip() for m in args.pipeline_modes.split(",") if m.strip())
        if not modes or set(modes) - {"trigger", "polling"}:
            raise SystemExit(f"--pipeline-modes: trigger and/or polling, not {args.pipeline_modes!r}")
        measurements += run_pipeline(
            kernel, sizes, duration_s=30.0 if quick else args.pipeline_duration, modes=modes,
            lms_rate_limit=args.pipeline_lms_rate_limit, ignore_memory=args.pipeline_ignore_memory,
            roster_workers=args.pipeline_roster_workers,
        )  # fmt: skip

    wall = time.perf_counter() - t0
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    md = "\n".join(
        [
            table(measurements),
            "",
            f"{args.repeats} runs of each; median, min and max of the per-run rate. "
            "MB/s: 10^6 bytes of values (Avro bodies for the serde rows) per second.",
            render(machine),
            f"Command: `{command.strip()}`; wall time {wall:.0f} s; {started:%Y-%m-%d %H:%M} UTC.",
        ]
    )
    print(md)

    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "started_at": started.isoformat(),
                "wall_time_s": wall,
                "command": command.strip(),
                "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "machine": machine,
                "measurements": [m.as_dict() for m in measurements],
                "markdown": md,
            },
            indent=2,
        )
        + "\n"
    )
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
