"""One process of the LMS bench (``python -m bench.lms_role ROLE NAMES_JSON``): the event
receiver, the events processor, the grade passback, the provisioning sink or the analytics sink
(into a schema of the run's own, named as its stage), on the bench's renamed topics."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from connectors.control import ControlServer
from sislms.lms import build_events_processor, build_passback, build_receiver, build_sink
from sislms.wiring import Kernel
from streams.logs import configure_logging
from streams.settings import Settings


def main(role: str, names_file: str) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    names: dict[str, str] = json.loads(Path(names_file).read_text())
    kernel = Kernel(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stage = names["stage"]
    typed = {
        t: names[t] for t in ("lms.assignments.v1", "lms.submissions.v1", "lms.grades.v1", "lms.activity.v1")
    }
    if role == "receiver":
        server, _, producer = build_receiver(
            settings, kernel, raw_topic=names["lms.events.raw.v1"], stage=stage
        )
        server.start()
        try:
            stop.wait()
        finally:
            server.stop()
            producer.close()
    elif role in ("processor", "passback", "sink", "analytics"):
        worker: Any
        if role == "processor":
            worker = build_events_processor(
                settings,
                kernel,
                group="bench-events",
                raw_topic=names["lms.events.raw.v1"],
                dedup_topic=names["lms.events.dedup.v1"],
                topics=typed,
                stage=stage,
            )
            port = settings.lms_events_processor_port
        elif role == "passback":
            worker = build_passback(
                settings,
                kernel,
                group="bench-passback",
                assignments=typed["lms.assignments.v1"],
                grades=typed["lms.grades.v1"],
                outcomes=names["lms.grades.passback.v1"],
                stage=f"{stage}_gb",
            )
            port = settings.passback_port
        elif role == "analytics":
            from connectors.sinks.postgres.migrate import migrate
            from sislms.analytics import build_analytics_sink

            migrate(kernel.endpoints.postgres_dsn, stage)  # the run's own schema, named as its stage
            worker = build_analytics_sink(
                settings, kernel, group="bench-analytics", topics=typed, schema=stage, stage=f"{stage}_an"
            )
            port = settings.analytics_port
        else:
            worker = build_sink(
                settings,
                kernel,
                commands=names["lms.provisioning.v1"],
                results=names["lms.provisioning.results.v1"],
                group="bench-sink",
                stage=f"{stage}_sink",
            )
            port = settings.lms_sink_port
        control = ControlServer("127.0.0.1", port, health=worker.health).start()
        try:
            worker.run(stop)
        finally:
            control.stop()
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
