"""The analytics sink: the pipeline's topics upserted into the PostgreSQL analytics store.

Each batch is one transaction: the rows of every table (one ``executemany`` per table, pipelined),
the soft deletes of the entity tombstones, and ``sink_positions`` (the next offset per partition,
the freshness of every flow). Offsets are committed to Kafka only after the transaction commits,
so a sink stopped at any point writes the same rows again, which the version guard absorbs.

A row the database refuses (a check constraint, a value PostgreSQL cannot hold) must not stop the
rest: the batch is rolled back and written again row by row, each in a savepoint; the refused
rows go to ``dlq.analytics.v1`` with their record's original bytes and the constraint, the others
commit. A record that does not decode, or does not make a row, goes there too. Losing the
database is retried: the consumer goes back to its committed offsets and reads the batch again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram
from psycopg import sql

from connectors.sinks.postgres.migrate import check_schema_name, migrate
from connectors.sinks.postgres.tables import Source, Table, soft_delete_sql, table_for, upsert_sql
from streams.dlq import DeadLetterPublisher, position
from streams.errors import DecodeError, RetriableError, ServiceUnavailable, SkippableError
from streams.serde import Serdes, decode_key

__all__ = ["AnalyticsSink", "RowRefused"]

log = logging.getLogger(__name__)

ROWS = PromCounter(
    "sislms_analytics_rows", "Records the analytics sink handled, by table and outcome.", ["table", "outcome"]
)
BATCH_SECONDS = Histogram(
    "sislms_analytics_batch_seconds",
    "Time to write one batch to the analytics store (transaction included).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


REFRESH_SECONDS = Histogram(
    "sislms_analytics_refresh_seconds",
    "Time to refresh one materialized view of the analytics store.",
    ["view"],
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)

#: The materialized views the sink refreshes, in order, each with the tables (or views) it is
#: made from: a write to any makes it stale.
DERIVED: tuple[tuple[str, frozenset[str]], ...] = (
    ("assignment_work", frozenset({"assignments", "submissions", "enrollments", "provisioning_results"})),
    ("work_counts", frozenset({"assignment_work"})),
    ("engagement_by_school", frozenset({"engagement_daily", "users"})),
    ("passback_counts", frozenset({"grades", "grade_passback"})),
    ("provisioning_counts", frozenset({"provisioning_commands", "provisioning_results"})),
)


class RowRefused(SkippableError):
    """The analytics store refused a row (a constraint, a value it cannot hold)."""

    reason = "row_refused"


class RowUnmappable(SkippableError):
    """A record that decoded but does not make a row (a required field missing)."""

    reason = "row_unmappable"


#: (topic, partition) -> (next offset, timestamp of the last record in ms)
_Offsets = dict[tuple[str, int], tuple[int, int | None]]


@dataclass
class _Item:
    table: Table
    row: dict[str, Any] | None  # None: a soft delete of ``key``
    key: tuple[Any, ...]
    message: Message


def _refusal(exc: psycopg.Error) -> str:
    """What PostgreSQL refused, without the DETAIL line (it repeats the row's values)."""
    diag = exc.diag
    lines = str(exc).splitlines()
    what = diag.message_primary or (lines[0] if lines else exc.__class__.__name__)
    if diag.constraint_name:
        what += f" (constraint {diag.constraint_name})"
    return what


class Refresher:
    """Refreshes the stale materialized views in its own thread and connection, so that the sink
    goes on writing meanwhile (a concurrent refresh blocks neither readers nor writers of the
    tables it reads). A view is refreshed at most every ``interval_s`` while the sink is busy,
    and at once when the sink says it is idle; its dependents follow in the same round."""

    def __init__(self, dsn: str, schema: str, interval_s: float) -> None:
        self.dsn = dsn
        self.schema = schema
        self.interval_s = interval_s
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self._pending: set[str] = set()
        self._busy = False
        self._idle = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._refreshed_at = 0.0

    def mark(self, tables: set[str]) -> None:
        """Tables (or views) written: the views made from them are stale."""
        stale = {view for view, inputs in DERIVED if inputs & tables}
        if stale:
            with self._lock:
                self._pending |= stale
                self._idle = False

    def idle(self) -> None:
        """The sink has nothing to read: refresh what is stale now."""
        with self._lock:
            self._idle = True
        self._wake.set()

    @property
    def stale(self) -> list[str]:
        with self._lock:
            return sorted(self._pending) + (["(refreshing)"] if self._busy else [])

    def run(self, stop: threading.Event) -> None:
        conn: psycopg.Connection | None = None
        try:
            while not stop.is_set():
                self._wake.wait(1.0)
                self._wake.clear()
                with self._lock:
                    due = self._idle or time.monotonic() - self._refreshed_at >= self.interval_s
                    if not self._pending or not due:
                        continue
                    todo, self._pending, self._busy = self._pending, set(), True
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
                    self._refresh(conn, todo, stop)
                    self.last_error = None
                except psycopg.Error as exc:
                    self.last_error = f"{exc.__class__.__name__}: {str(exc).strip()[:200]}"
                    log.warning("analytics sink: refresh of %s failed (%s)", sorted(todo), self.last_error)
                    with self._lock:
                        self._pending |= todo
                    if conn is not None:
                        conn.close()
                        conn = None
                    stop.wait(2)
                finally:
                    with self._lock:
                        self._busy = False
                        self._refreshed_at = time.monotonic()
        finally:
            if conn is not None:
                conn.close()

    def _refresh(self, conn: psycopg.Connection, todo: set[str], stop: threading.Event) -> None:
        for view, _ in DERIVED:  # in order: a view before the views made from it
            if view not in todo or stop.is_set():
                continue
            started = time.monotonic()
            name = sql.Identifier(self.schema, view)
            conn.execute(sql.SQL("refresh materialized view concurrently {}").format(name))
            todo.discard(view)
            todo |= {v for v, inputs in DERIVED if view in inputs}
            spent = time.monotonic() - started
            self.counts[f"refreshed.{view}"] += 1
            REFRESH_SECONDS.labels(view).observe(spent)
            log.debug("analytics sink: %s refreshed in %.2f s", view, spent)
        if todo:  # stopped half-way
            with self._lock:
                self._pending |= todo


class AnalyticsSink:
    """Consumes the topics of ``topics`` (canonical name -> name on the broker) into ``schema``."""

    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        consumer_conf: dict[str, Any],
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        topics: Mapping[str, str],
        stage: str = "analytics",
        batch_size: int = 2000,
        migrate_at_start: bool = True,
        refresh_s: float = 60.0,
    ) -> None:
        self.dsn = dsn
        self.schema = check_schema_name(schema)
        self.consumer_conf = {**consumer_conf, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        self.serdes = serdes
        self.dead_letters = dead_letters
        self.stage = stage
        self.batch_size = batch_size
        self.migrate_at_start = migrate_at_start
        self.tables: dict[str, Table] = {}
        for canonical, actual in topics.items():
            serdes.catalog.topic(actual)  # refuse undeclared topics early
            self.tables[actual] = table_for(canonical)
        self._upserts = {t.name: upsert_sql(schema, t) for t in self.tables.values()}
        self._deletes = {t.name: soft_delete_sql(schema, t) for t in self.tables.values() if t.soft_delete}
        self._positions = sql.SQL(
            "insert into {} (topic, kafka_partition, next_offset, last_record_at) values (%s, %s, %s, %s)"
            " on conflict (topic, kafka_partition) do update set next_offset = excluded.next_offset,"
            " last_record_at = greatest({}.last_record_at, excluded.last_record_at), written_at = now()"
            " where {}.next_offset <= excluded.next_offset"
        ).format(*(sql.Identifier(schema, "sink_positions"),) * 3)
        self.refresher = Refresher(dsn, schema, refresh_s)
        self._own_dlq = serdes.catalog.dead_letter_topic(stage).name
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_batch_at: float | None = None

    # --- running ----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        if self.migrate_at_start:
            migrate(self.dsn, self.schema)
        consumer = Consumer(self.consumer_conf)
        consumer.subscribe(list(self.tables))
        log.info("analytics sink: %d topics into schema %s", len(self.tables), self.schema)
        conn: psycopg.Connection | None = None
        last_report = time.monotonic()
        refresher_stop = threading.Event()
        refresher = threading.Thread(
            target=self.refresher.run, args=(refresher_stop,), name="analytics-refresh", daemon=True
        )
        refresher.start()
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.dsn, connect_timeout=10)
                    if self.step(consumer, conn) == 0:
                        self.refresher.idle()
                    self.last_error = None
                except (RetriableError, psycopg.OperationalError) as exc:
                    self.last_error = f"{exc.__class__.__name__}: {str(exc)[:200]}"
                    log.warning("analytics sink: %s; reading the batch again", self.last_error)
                    if conn is not None:
                        conn.close()
                        conn = None
                    stop.wait(getattr(exc, "retry_after", None) or 2)
                    self._rewind(consumer)
                if time.monotonic() - last_report >= 30:
                    last_report = time.monotonic()
                    log.info("analytics sink: %s", dict(self.counts))
        finally:
            refresher_stop.set()
            refresher.join(120)
            consumer.close()
            if conn is not None:
                conn.close()
            log.info("analytics sink stopped: %s", dict(self.counts | self.refresher.counts))

    @property
    def stale(self) -> bool:
        """Whether a materialized view waits for (or is in) a refresh after writes that change it."""
        return bool(self.refresher.stale)

    def _rewind(self, consumer: Consumer) -> None:
        """Back to the committed offsets: what was not committed is written again."""
        assigned = consumer.assignment()
        for tp in consumer.committed(assigned, timeout=30) if assigned else []:
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))

    def step(self, consumer: Consumer, conn: psycopg.Connection, timeout: float = 0.5) -> int:
        """Write one batch; returns the number of records it held."""
        messages = consumer.consume(self.batch_size, timeout)
        items: list[_Item] = []
        offsets: _Offsets = {}
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ServiceUnavailable(f"consumer error: {err.str()}")
            ts = m.timestamp()[1]
            tp = (str(m.topic()), int(m.partition() or 0))
            offsets[tp] = (int(m.offset() or 0) + 1, ts if ts > 0 else None)
            item = self._item(m)
            if item is not None:
                items.append(item)
        if not offsets:
            return 0
        started = time.monotonic()
        self._write(conn, items, offsets)
        self.dead_letters.flush()
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), (o, _) in offsets.items()], asynchronous=False
        )
        BATCH_SECONDS.observe(time.monotonic() - started)
        self.last_batch_at = time.time()
        return len(messages)

    # --- one record -------------------------------------------------------------------------
    def _item(self, m: Message) -> _Item | None:
        topic = str(m.topic())
        table = self.tables[topic]
        try:
            key = decode_key(m.key())
            value = self.serdes[topic].decode(m.value())
        except DecodeError as exc:
            self._dead_letter(m, exc, table)
            return None
        if value is None:
            if table.soft_delete and key is not None:
                return _Item(table, None, (key,), m)
            self._count(table, "tombstone_ignored")
            return None
        source = Source(topic, int(m.partition() or 0), int(m.offset() or 0), key, value)
        try:
            row = table.row(source)
        except (KeyError, TypeError, ValueError) as exc:
            self._dead_letter(m, RowUnmappable(f"{exc.__class__.__name__}: {exc}"), table)
            return None
        return _Item(table, row, tuple(row[c] for c in table.key), m)

    # --- one batch --------------------------------------------------------------------------
    def _write(self, conn: psycopg.Connection, items: list[_Item], offsets: _Offsets) -> None:
        # Within the batch, the newest version of each row is written (the version guard decides
        # against what is stored); a key whose last record is a tombstone is upserted first if it
        # had a record in the batch, then deleted.
        last: dict[tuple[str, tuple[Any, ...]], _Item] = {}
        upsert_of: dict[tuple[str, tuple[Any, ...]], _Item] = {}
        for it in items:
            k = (it.table.name, it.key)
            last[k] = it
            if it.row is None:
                continue
            held = upsert_of.get(k)
            version = it.table.version
            if held is None or version is None or held.row is None or it.row[version] >= held.row[version]:
                upsert_of[k] = it
        upserts = list(upsert_of.values())
        deletes = [it for it in last.values() if it.row is None]
        refused: set[int] = set()
        try:
            with conn.transaction():
                self._apply(conn, upserts, deletes)
                self._save_positions(conn, offsets)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
            log.warning("analytics sink: the batch was refused (%s); writing it row by row", _refusal(exc))
            with conn.transaction():
                for it in upserts + deletes:
                    try:
                        with conn.transaction():  # a savepoint: a refused row undoes only itself
                            if it.row is not None:
                                self._apply(conn, [it], [])
                            else:
                                self._apply(conn, [], [it])
                    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as row_exc:
                        self._dead_letter(it.message, RowRefused(_refusal(row_exc)), it.table)
                        refused.add(id(it))
                self._save_positions(conn, offsets)
        self.refresher.mark({it.table.name for it in upserts + deletes})
        for it in upserts:
            if id(it) not in refused:
                self._count(it.table, "written")
        for it in deletes:
            if id(it) not in refused:
                self._count(it.table, "deleted")
        superseded = len(items) - len(upserts) - len(deletes)
        if superseded:
            self.counts["superseded_in_batch"] += superseded

    def _apply(self, conn: psycopg.Connection, upserts: list[_Item], deletes: list[_Item]) -> None:
        by_table: dict[str, list[dict[str, Any]]] = {}
        for it in upserts:
            assert it.row is not None
            by_table.setdefault(it.table.name, []).append(it.row)
        with conn.cursor() as cur:
            for name, rows in by_table.items():
                cur.executemany(self._upserts[name], rows)
            dels: dict[str, list[tuple[Any, ...]]] = {}
            for it in deletes:
                dels.setdefault(it.table.name, []).append(it.key)
            for name, keys in dels.items():
                cur.executemany(self._deletes[name], keys)

    def _save_positions(self, conn: psycopg.Connection, offsets: _Offsets) -> None:
        rows = [
            (t, p, o, datetime.fromtimestamp(ts / 1000, tz=UTC) if ts else None)
            for (t, p), (o, ts) in offsets.items()
        ]
        with conn.cursor() as cur:
            cur.executemany(self._positions, rows)

    # --- bookkeeping ------------------------------------------------------------------------
    def _dead_letter(self, m: Message, exc: Exception, table: Table) -> None:
        if str(m.topic()) == self._own_dlq:
            # A dead letter of this very stage that cannot be stored: sending it back would loop.
            # It stays where it is, on the dead-letter topic; say so loudly.
            log.error(
                "analytics sink: its own dead letter %s:%s:%s cannot be stored (%s); it stays on the topic",
                m.topic(), m.partition(), m.offset(), exc.__class__.__name__,
            )  # fmt: skip
            self._count(table, "refused_kept_on_topic")
            return
        self.dead_letters.send(self.stage, exc, key=m.key(), value=m.value(), source=position(m))
        self._count(table, "dead_lettered")

    def _count(self, table: Table, outcome: str, n: int = 1) -> None:
        self.counts[f"{table.name}.{outcome}"] += n
        ROWS.labels(table.name, outcome).inc(max(n, 0))

    def health(self) -> tuple[bool, dict[str, Any]]:
        healthy = self.last_error is None
        return healthy, {
            "healthy": healthy,
            "schema": self.schema,
            "stale_views": self.refresher.stale,
            "refresh_error": self.refresher.last_error,
            "counts": dict(self.counts),
            "last_batch_at": self.last_batch_at,
            "last_error": self.last_error,
        }
