"""``python -m bench [--records N] [--messages N] [--quick] [--repeat K]``"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.kafka_raw import KafkaBench, measurements
from bench.machine import describe
from bench.records import payload_pool, user_pool
from bench.serde import serde_benchmarks
from sislms.stack import Stack
from sislms.stack.jars import JarSet
from sislms.wiring import Kernel
from streams.logs import configure_logging
from streams.settings import Settings
from streams.topology import apply

log = logging.getLogger("bench")
RESULTS = Path(__file__).with_name("results")


def _run(name: str, fn: Callable[[], float], repeat: int) -> dict[str, float]:
    rates = []
    for i in range(repeat):
        rates.append(fn())
        log.info("%s: run %d/%d: %.0f/s", name, i + 1, repeat, rates[-1])
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--records", type=int, default=50_000, help="records per serde run")
    ap.add_argument("--messages", type=int, default=200_000, help="messages per Kafka run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a small smoke run")
    args = ap.parse_args()
    if args.quick:
        args.records, args.messages, args.repeat = 5_000, 20_000, 1

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    Stack(settings).up()
    k = Kernel(settings)
    if not apply(k.catalog, k.admin, k.registry, settings.replication_factor_cap).ok:
        raise SystemExit("topology apply failed; see above")
    serde = k.serdes["sis.users.v1"]
    pool = user_pool(2_000)
    machine = describe(JarSet(settings.cache_dir).kafka_version)

    results: dict[str, dict[str, float]] = {}
    for name, fn in serde_benchmarks(serde, pool, args.records).items():
        results[name] = _run(name, fn, args.repeat)

    frames = [f for f in (serde.encode(r) for r in pool) if f is not None]
    kb = KafkaBench(settings, k.endpoints.kafka_bootstrap, k.admin)
    try:
        for name, fn in measurements(kb, payload_pool(serde.reader), frames, serde, args.messages).items():
            results[name] = _run(name, fn, args.repeat)
    finally:
        kb.close()

    units = {
        n: ("records/s" if n.startswith(("encode", "decode", "consume +")) else "msg/s") for n in results
    }
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']}; Python "
        f"{machine['python']}, Kafka {machine['kafka']} (local, one node), confluent-kafka "
        f"{machine['confluent-kafka']}, fastavro {machine['fastavro']}. "
        f"{args.records:,} records per serde run, {args.messages:,} messages per Kafka run, "
        f"median of {args.repeat} (min-max).",
        "",
        "| measurement | rate (median) | min - max |",
        "| --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['median']:,.0f} {units[name]} | {r['min']:,.0f} - {r['max']:,.0f} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2))
    log.info("results written to %s", out)


if __name__ == "__main__":
    main()
