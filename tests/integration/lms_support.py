"""The LMS events rig for integration tests: uuid-named topics, the receiver on a free port, and
the events processor built on them (shared by the LMS events and the engagement tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.lms_events.receiver import EventReceiver
from simulators.lms.activity import ActivityGenerator, GroundTruth, SimClock
from simulators.lms.webhook import LiveEventsEmitter
from simulators.serving import AppServer
from sislms.lms import build_events_processor, build_receiver
from sislms.wiring import Kernel
from streams.compacted import group_caught_up, read_to_end
from streams.confirmed import ConfirmedProducer
from streams.kafka import client_config
from streams.lms.events import ACTIVITY, ASSIGNMENTS, GRADES, SUBMISSIONS
from streams.lms.processor import EventsProcessor
from streams.serde import decode_key
from streams.settings import Settings
from streams.topology import apply
from tests.unit.simulators.lms.school import School, school

TOKEN = "integration-events-token"
LMS_TOKEN = "integration-lms-token"
TYPED = (ASSIGNMENTS, SUBMISSIONS, GRADES, ACTIVITY)
V1P2 = "http://purl.imsglobal.org/ctx/caliper/v1p2"


@dataclass
class Rig:
    """Topics named ``<name>_<uid>``; the receiver started; ``processor()`` builds the events
    processor."""

    kernel: Kernel
    settings: Settings
    uid: str
    server: AppServer
    receiver: EventReceiver
    producer: ConfirmedProducer

    @property
    def raw(self) -> str:
        return f"lms.events.raw_{self.uid}.v1"

    @property
    def dedup(self) -> str:
        return f"lms.events.dedup_{self.uid}.v1"

    @property
    def stage(self) -> str:
        return f"lms_ingest_{self.uid}"

    @property
    def group(self) -> str:
        return f"events-{self.uid}"

    def topic(self, name: str) -> str:
        return name.replace(".v1", f"_{self.uid}.v1")

    def processor(self) -> EventsProcessor:
        return build_events_processor(
            self.settings,
            self.kernel,
            group=self.group,
            raw_topic=self.raw,
            dedup_topic=self.dedup,
            topics={t: self.topic(t) for t in TYPED},
            stage=self.stage,
        )

    def post(self, body: bytes, token: str | None = TOKEN, path: str = "/events") -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.post(f"{self.server.url}{path}", content=body, headers=headers, timeout=30)

    def read(self, topic: str) -> list[tuple[str | None, Any]]:
        conf = client_config(self.settings, self.kernel.endpoints.kafka_bootstrap)
        serde = self.kernel.serdes[topic]
        return [
            (decode_key(m.key()), serde.decode(m.value())) for m in read_to_end(conf, topic, timeout_s=60)
        ]


@contextmanager
def open_rig(settings: Settings, kernel: Kernel, make_catalog: Any, uid: str) -> Iterator[Rig]:
    """The rig of one test (a test file's ``rig`` fixture opens it)."""
    stage = f"lms_ingest_{uid}"
    catalog = make_catalog(
        [
            {"name": "lms.events.raw_{uid}.v1", "value_schema": "lms/events_raw.v1.avsc"},
            {
                "name": "lms.events.dedup_{uid}.v1",
                "value_schema": "lms/events_dedup.v1.avsc",
                "cleanup_policy": "compact",
            },
            {
                "name": "lms.assignments_{uid}.v1",
                "value_schema": "lms/assignments.v1.avsc",
                "cleanup_policy": "compact",
            },
            {
                "name": "lms.submissions_{uid}.v1",
                "value_schema": "lms/submissions.v1.avsc",
                "cleanup_policy": "compact",
            },
            {
                "name": "lms.grades_{uid}.v1",
                "value_schema": "lms/grades.v1.avsc",
                "cleanup_policy": "compact",
            },
            {"name": "lms.activity_{uid}.v1", "value_schema": "lms/activity.v1.avsc"},
            {"name": f"dlq.{stage}.v1", "value_schema": "dlq/dead_letter.v1.avsc", "partitions": 1},
            {
                "name": "lms.grades.passback_{uid}.v1",
                "value_schema": "lms/grades_passback.v1.avsc",
                "cleanup_policy": "compact",
            },
            {
                "name": "dlq.sis_gradebook_{uid}.v1",
                "value_schema": "dlq/dead_letter.v1.avsc",
                "partitions": 1,
            },
            # the engagement processor's, on the activity above
            {
                "name": "analytics.engagement_state_{uid}.v1",
                "value_schema": "analytics/engagement_state.v1.avsc",
                "cleanup_policy": "compact",
            },
            {
                "name": "analytics.engagement_daily_{uid}.v1",
                "value_schema": "analytics/engagement_daily.v1.avsc",
                "cleanup_policy": "compact",
            },
            {"name": "dlq.analytics_{uid}.v1", "value_schema": "dlq/dead_letter.v1.avsc", "partitions": 1},
        ]
    )
    assert apply(catalog, kernel.admin, kernel.registry, 1).ok
    private = Kernel(kernel.settings)
    private.__dict__["catalog"] = catalog
    mine = settings.model_copy(update={"lms_events_token": SecretStr(TOKEN)})
    server, receiver, producer = build_receiver(
        mine, private, port=0, raw_topic=f"lms.events.raw_{uid}.v1", stage=stage
    )
    server.start()
    yield Rig(private, mine, uid, server, receiver, producer)
    server.stop()
    producer.close()


def caught_up(rig: Rig) -> bool:
    conf = client_config(rig.settings, rig.kernel.endpoints.kafka_bootstrap)
    done, _ = group_caught_up(conf, rig.group, [rig.raw])
    return done


#: The Monday the simulated school weeks start on (05:00 UTC, midnight at the school).
MONDAY = datetime(2024, 3, 4, 5, 0, tzinfo=UTC)


def play_school_week(rig: Rig, fmt: str) -> tuple[School, GroundTruth, dict[str, int]]:
    """Two courses, eight students, five school days of the activity generator, sent as Live
    Events in ``fmt`` through the rig's receiver with 30 % redeliveries and shuffled bursts.
    Returns the school, the generator's ground truth and the emitter's counts."""
    s = school(courses=2, students=8)
    emitter = LiveEventsEmitter(
        f"{rig.server.url}/events", TOKEN, fmt, store=s.store, duplicate_rate=0.3, shuffle_window=25, seed=3
    )
    emitter.start()
    try:
        truth = ActivityGenerator(s.store, emitter, seed=5, clock=SimClock(MONDAY)).run(days=5)
        assert emitter.flush(300)
    finally:
        emitter.stop()
    return s, truth, emitter.counts()
