"""Builds the analytics side from settings: the engagement processor, the PostgreSQL sink and its
migrations."""

from __future__ import annotations

import threading
from typing import Any

from connectors.sinks.postgres.migrate import Migration, migrate
from connectors.sinks.postgres.sink import AnalyticsSink
from connectors.sinks.postgres.tables import TABLES
from sislms.wiring import Kernel, run_with_health
from streams.analytics.engagement import EngagementProcessor
from streams.analytics.work import WorkTracker
from streams.catalog import Catalog
from streams.dlq import DeadLetterPublisher
from streams.errors import ServiceUnavailable
from streams.kafka import consumer_config
from streams.settings import Settings

__all__ = [
    "analytics_topics",
    "build_analytics_sink",
    "build_engagement_processor",
    "build_work_tracker",
    "migrate_store",
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
