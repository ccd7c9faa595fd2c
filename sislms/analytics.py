"""Builds the analytics side from settings: the engagement processor, the PostgreSQL sink and its
migrations."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.sinks.postgres.migrate import Migration, migrate
from connectors.sinks.postgres.sink import AnalyticsSink
from connectors.sinks.postgres.tables import TABLES
from sislms.wiring import Kernel, run_with_health
from streams.analytics.engagement import EngagementProcessor
from streams.analytics.work import WorkTracker
from streams.catalog import Catalog
from streams.dlq import DeadLetterPublisher
from streams.errors import PlanRefused, ServiceUnavailable
from streams.kafka import consumer_config
from streams.settings import Settings

__all__ = [
    "analytics_topics",
    "build_analytics_sink",
    "build_engagement_processor",
    "build_work_tracker",
    "migrate_store",
    "rebuild_store",
    "run_analytics_sink",
    "run_engagement_processor",
    "run_work_tracker",
    "store_status",
]


def analytics_topics(catalog: Catalog) -> dict[str, str]:
    """What the sink reads by default: every topic with a table, and every dead-letter topic."""
    topics = {name: name for name in TABLES if name in catalog}
    topics.update({t.name: t.name for t in catalog if t.name.startswith("dlq.")})
    return topics


def migrate_store(settings: Settings, kernel: Kernel | None = None) -> list[Migration]:
    import psycopg

    kernel = kernel or Kernel(settings)
    try:
        return migrate(kernel.endpoints.postgres_dsn, settings.analytics_schema)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"analytics store: {str(exc).strip()}") from None


def build_analytics_sink(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    group: str = "sislms-analytics",
    topics: dict[str, str] | None = None,
    schema: str | None = None,
    stage: str = "analytics",
) -> AnalyticsSink:
    """The analytics sink: the topics upserted into the PostgreSQL analytics store."""
    kernel = kernel or Kernel(settings)
    producer = kernel.producer()
    return AnalyticsSink(
        dsn=kernel.endpoints.postgres_dsn,
        schema=schema or settings.analytics_schema,
        consumer_conf=consumer_config(settings, kernel.endpoints.kafka_bootstrap, group),
        serdes=kernel.serdes,
        dead_letters=DeadLetterPublisher(producer, kernel.serdes, kernel.catalog),
        topics=topics if topics is not None else analytics_topics(kernel.catalog),
        stage=stage,
        batch_size=settings.analytics_batch_size,
        refresh_s=settings.analytics_refresh_s,
    )


def run_analytics_sink(settings: Settings, stop: threading.Event) -> None:
    """Run the analytics sink with its health/metrics endpoint until ``stop`` is set."""
    run_with_health(build_analytics_sink(settings), settings.analytics_port, stop)


def build_engagement_processor(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    group: str = "sislms-engagement",
    activity_topic: str = "lms.activity.v1",
    state_topic: str = "analytics.engagement_state.v1",
    out_topic: str = "analytics.engagement_daily.v1",
    stage: str = "analytics",
) -> EngagementProcessor:
    """The engagement processor: LMS activity into time on task per user, course and day."""
    from zoneinfo import ZoneInfo

    kernel = kernel or Kernel(settings)
    return EngagementProcessor(
        **kernel.processor_parts(group),
        activity_topic=activity_topic,
        state_topic=state_topic,
        out_topic=out_topic,
        gap_s=settings.analytics_session_gap_s,
        tz=ZoneInfo(settings.analytics_timezone),
        horizon_days=settings.analytics_horizon_days,
        stage=stage,
    )


def run_engagement_processor(settings: Settings, stop: threading.Event) -> None:
    """Run the engagement processor with its health/metrics endpoint until ``stop`` is set."""
    run_with_health(build_engagement_processor(settings), settings.analytics_engagement_port, stop)


def build_work_tracker(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    group: str = "sislms-work",
    topics: dict[str, str] | None = None,
    out_topic: str = "analytics.assignment_work.v1",
    stage: str = "analytics",
) -> WorkTracker:
    """The work tracker: each student's standing on each assignment (on time, late, missing)."""
    from zoneinfo import ZoneInfo

    kernel = kernel or Kernel(settings)
    return WorkTracker(
        **kernel.processor_parts(group),
        topics=topics,
        out_topic=out_topic,
        tz=ZoneInfo(settings.analytics_timezone),
        tick_s=settings.analytics_work_tick_s,
        stage=stage,
    )


def run_work_tracker(settings: Settings, stop: threading.Event) -> None:
    """Run the work tracker with its health/metrics endpoint until ``stop`` is set."""
    run_with_health(build_work_tracker(settings), settings.analytics_work_port, stop)


def store_status(settings: Settings, kernel: Kernel | None = None) -> dict[str, Any]:
    """The store's applied migrations and the sink's position in every topic."""
    import psycopg
    from psycopg import sql

    from connectors.sinks.postgres.migrate import applied_migrations, check_schema_name

    kernel = kernel or Kernel(settings)
    schema = check_schema_name(settings.analytics_schema)
    try:
        with psycopg.connect(kernel.endpoints.postgres_dsn, connect_timeout=10) as conn:
            migrations = sorted(applied_migrations(conn, schema))
            positions = []
            if migrations:
                rows = conn.execute(
                    sql.SQL(
                        "select topic, kafka_partition, next_offset, last_record_at, written_at"
                        " from {} order by topic, kafka_partition"
                    ).format(sql.Identifier(schema, "sink_positions"))
                ).fetchall()
                keys = ("topic", "partition", "next_offset", "last_record_at", "written_at")
                positions = [dict(zip(keys, r, strict=True)) for r in rows]
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"analytics store: {str(exc).strip()}") from None
    return {"schema": schema, "migrations": migrations, "positions": positions}


@dataclass
class Rebuild:
    """One rebuild of the analytics store: its id names the new schema and its consumer group, so
    an interrupted rebuild resumes (``--resume ID``) where it stopped."""

    id: str
    live: str  #: the schema the dashboard reads
    group: str  #: the live sink's consumer group

    @property
    def schema(self) -> str:
        return f"{self.live}_rebuild_{self.id}"

    @property
    def previous(self) -> str:
        """What the live schema is renamed to at the swap (kept until an operator drops it)."""
        return f"{self.live}_before_{self.id}"

    @property
    def rebuild_group(self) -> str:
        return f"{self.group}-rebuild-{self.id}"


def rebuild_store(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    resume: str | None = None,
    topics: dict[str, str] | None = None,
    schema: str | None = None,
    group: str = "sislms-analytics",
    stage: str = "analytics_rebuild",
    dry_run: bool = False,
    swap: bool = True,
    progress: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """``sislms analytics rebuild``: the store made again from the topics into a new schema by a
    sink of its own (group ``<group>-rebuild-<id>``, refusals to ``dlq.<stage>.v1``) while the
    live store keeps serving; once it has caught up, the two schemas are swapped in one
    transaction and the live sink's group takes the rebuild's offsets. The swap refuses while
    the live sink runs (stop it, then ``--resume ID``). Returns what was done."""
    import time
    from datetime import UTC, datetime

    import psycopg
    from psycopg import sql

    from connectors.sinks.postgres.migrate import check_schema_name
    from streams.compacted import group_caught_up
    from streams.kafka import client_config
    from streams.replay import group_members, hand_over

    kernel = kernel or Kernel(settings)
    live = check_schema_name(schema or settings.analytics_schema)
    job = Rebuild(resume or datetime.now(UTC).strftime("%Y%m%d%H%M%S"), live, group)
    check_schema_name(job.schema), check_schema_name(job.previous)
    topics = topics if topics is not None else analytics_topics(kernel.catalog)
    conf = client_config(settings, kernel.endpoints.kafka_bootstrap)
    names = sorted(set(topics.values()))
    _, records = group_caught_up(conf, job.rebuild_group, names)
    doc: dict[str, Any] = {
        "id": job.id, "live": live, "schema": job.schema, "previous": job.previous,
        "group": job.rebuild_group, "topics": len(names), "records": records,
        "liveSinkMembers": group_members(kernel.admin, group), "dryRun": dry_run, "swapped": False,
    }  # fmt: skip
    if dry_run:
        return doc
    say = progress or (lambda _line: None)
    say(f"rebuild {job.id}: {len(names)} topic(s), {records} record(s) into schema {job.schema}")
    sink = build_analytics_sink(
        settings, kernel, group=job.rebuild_group, topics=topics, schema=job.schema, stage=stage
    )
    halt = stop or threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            sink.run(done)
        except BaseException as exc:  # reported below
            errors.append(exc)

    runner = threading.Thread(target=work, name="analytics-rebuild", daemon=True)
    runner.start()
    try:
        said = 0.0
        while not halt.is_set():
            if errors:
                raise errors[0]
            caught_up, _ = group_caught_up(conf, job.rebuild_group, names)
            if caught_up and not sink.stale:
                break
            if time.monotonic() - said >= 10:
                said = time.monotonic()
                written = sum(v for k, v in sink.counts.items() if k.endswith(".written"))
                say(f"rebuild {job.id}: {written} row(s) written of about {records}")
            halt.wait(1.0)
    finally:
        done.set()
        runner.join(120)
    if errors:
        raise errors[0]
    if halt.is_set():
        say(f"rebuild {job.id} interrupted: resume it with --resume {job.id}")
        return doc
    doc["counts"] = dict(sink.counts)
    if not swap:
        say(f"rebuild {job.id} caught up; swap it in with --resume {job.id}")
        return doc
    members = group_members(kernel.admin, group)
    if members:
        raise PlanRefused(
            f"the store is rebuilt in {job.schema}, but the live sink (group {group}) has {members} "
            f"member(s): stop it, then run sislms analytics rebuild --resume {job.id} to swap"
        )
    with psycopg.connect(kernel.endpoints.postgres_dsn, autocommit=False) as conn:
        rename = "alter schema {} rename to {}"
        conn.execute(sql.SQL(rename).format(sql.Identifier(live), sql.Identifier(job.previous)))
        conn.execute(sql.SQL(rename).format(sql.Identifier(job.schema), sql.Identifier(live)))
        conn.commit()
    hand_over(kernel.admin, job.rebuild_group, group)
    doc["swapped"] = True
    say(f"rebuild {job.id}: swapped in; the previous store is schema {job.previous} (drop it when done)")
    return doc
