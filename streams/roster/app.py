"""The roster stream: Faust agents that turn SIS changes into LMS provisioning commands.

Four agents, each keyed by what it joins on, each with a table (RocksDB by default)::

    sis.enrollments.v1 ──route_enrollments──► roster.enrollments_by_user.v1  (key: user)
                                         └──► roster.enrollments_by_class.v1 (key: class)
    sis.classes.v1 + enrollments_by_class ──classes──► course + section commands
                                                  └──► roster.class_facts_by_user.v1 (key: user)
    sis.users.v1 + enrollments_by_user + class_facts_by_user ──people──► user, enrollment,
      + roster.reapply.v1 (decide again)          observer, template and admin commands; audit
    sis.orgs.v1 + sis.academic_sessions.v1 + sis.courses.v1 ──catalog──► account, term and
                                                  course template commands

faust-streaming has no stream joins: a join is a table lookup, which only works when both sides
of it are in the same partition. So enrollments are re-keyed (by user, by class) and class facts
are sent to each member's partition; every topic an agent reads has the same partition count and
our producers use Kafka's default (murmur2) partitioner, so Faust assigns partition *p* of all of
them, and of the tables' changelogs, to the same worker. Any number of workers gives the result of
one. The orgs and courses that rules need whole are a per-worker replica (:mod:`.reference`), not a
GlobalTable (faust-streaming issue #283).

Exactly what changed, once: each agent keeps the targets it last emitted (:mod:`.commands`) and
emits only differences. An agent takes a batch of records (``noack_take``), computes each one's
commands in order, waits until the broker has every one of them, writes its table, and acks the
batch once the broker has the table's changelog records too; Faust commits acked offsets only. A
crash can therefore re-send commands (same commandId: the sink deduplicates) but never lose one.
Agent concurrency is 1 (faust-streaming issue #606). Faust's consumer could commit past records
no agent processed at a rebalance; :meth:`Roster._wrap_consumer`, :meth:`Roster._hold_flow` and
:mod:`.holes` mend that.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.streams import _current_event
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from streams.catalog import Catalog
from streams.confirmed import ConfirmedProducer
from streams.dlq import DeadLetterPublisher
from streams.errors import SkippableError
from streams.faust_codec import DEAD_LETTERED, AvroSchema, message_position
from streams.roles.engine import Decision, RuleSet
from streams.roles.facts import ClassFacts, CourseFacts, EnrollmentFacts, OrgFacts, UserFacts
from streams.roster.commands import Command, diff
from streams.roster.desired import class_targets, course_targets, org_targets, person_targets, session_targets
from streams.roster.holes import Hole, HoleGuard
from streams.roster.reference import Reference
from streams.serde import Serdes, encode_key

__all__ = ["STAGE", "Roster", "RosterTopics", "RulesVersionMismatch", "client_id", "rules_of_client"]

log = logging.getLogger(__name__)

#: Dead letters of the roster agents go to dlq.roster.v1.
STAGE = "roster"


@dataclass(frozen=True)
class RosterTopics:
    """The topics the roster agents read and write (catalog names unless a test renames them)."""

    orgs: str = "sis.orgs.v1"
    sessions: str = "sis.academic_sessions.v1"
    courses: str = "sis.courses.v1"
    classes: str = "sis.classes.v1"
    users: str = "sis.users.v1"
    enrollments: str = "sis.enrollments.v1"
    by_user: str = "roster.enrollments_by_user.v1"
    by_class: str = "roster.enrollments_by_class.v1"
    class_facts: str = "roster.class_facts_by_user.v1"
    provisioning: str = "lms.provisioning.v1"
    decisions: str = "roster.role_decisions.v1"
    reapply: str = "roster.reapply.v1"
    rule_sets: str = "roster.rule_sets.v1"

    @classmethod
    def renamed(cls, names: Mapping[str, str]) -> RosterTopics:
        """The default topics with some replaced: ``{catalog name: actual name}``."""
        base = cls()
        return cls(**{f.name: names.get(getattr(base, f.name), getattr(base, f.name)) for f in fields(cls)})

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]

    def inputs(self) -> tuple[str, ...]:
        """Every topic the agents read (the SIS topics and the internal re-keyed ones)."""
        return (self.orgs, self.sessions, self.courses, self.classes, self.users, self.enrollments,
                self.by_user, self.by_class, self.class_facts, self.reapply)  # fmt: skip


class RulesVersionMismatch(SkippableError):
    """A reapply request planned with another rule set than the worker runs."""

    reason = "rules_version_mismatch"


_CLIENT_RULES = ".rules-"


def client_id(app_id: str, rules_version: str) -> str:
    """The Kafka client id of a roster worker: its app and the rule set it runs."""
    return f"{app_id}{_CLIENT_RULES}{rules_version}"


def rules_of_client(client: str) -> str | None:
    """The rule set version a roster worker's client id names (None: not a roster worker's)."""
    _, sep, version = client.partition(_CLIENT_RULES)
    return version if sep else None


def _now() -> datetime:
    return datetime.now(UTC)


def _meta(value: Mapping[str, Any] | None, topic: str) -> dict[str, Any]:
    """The change metadata an output carries: its input's, or fresh for a tombstone."""
    if value is not None and value.get("meta"):
        return dict(value["meta"])
    now = _now()
    return {
        "source": f"roster-agents:{topic}",
        "sourceChangedAt": now,
        "ingestedAt": now,
        "traceId": str(uuid.uuid4()),
        "sourceVersion": None,
    }


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Counter(
            "sislms_roster_records", "Input records processed, by agent.", ["agent"], registry=self.registry
        )
        self.commands = Counter(
            "sislms_roster_commands",
            "Provisioning commands emitted, by action.",
            ["action"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "sislms_roster_decisions",
            "Role decisions that appeared or changed, by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.reference = Gauge(
            "sislms_roster_reference_records",
            "Orgs and courses in the replica.",
            ["entity"],
            registry=self.registry,
        )
        self.batch_records = Histogram(
            "sislms_roster_batch_records",
            "Records an agent took in one batch.",
            ["agent"],
            buckets=(1, 5, 20, 50, 100, 200, 500, 1000, 2000),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "sislms_roster_batch_seconds",
            "Time of a batch's phases: decide (rules and diffs), send (until the broker has every "
            "output), write (table state).",
            ["agent", "phase"],
            buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.lag = Histogram(
            "sislms_roster_input_lag_seconds",
            "From a record's broker timestamp to an agent taking it (how far behind an agent is).",
            ["agent"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=self.registry,
        )
        self.unprocessed_acks = Counter(
            "sislms_roster_unprocessed_acks",
            "Acks of records no agent processed (Faust skips a record when a rebalance stops the "
            "flow, and acks it), refused so that the record is read again.",
            registry=self.registry,
        )
        self.rereads = Counter(
            "sislms_roster_rereads",
            "Partitions read again from a record no agent had processed (dropped by Faust at a "
            "rebalance) instead of committing past it.",
            registry=self.registry,
        )
        self.gaps_refused = Counter(
            "sislms_roster_gaps_refused",
            "Runs of offsets the fetch skipped in a topic that is never compacted (so the records "
            "exist), which Faust would have committed past as a compaction gap; read again instead.",
            registry=self.registry,
        )
        self.reapply = Counter(
            "sislms_roster_reapply_requests",
            "Requests to decide a person again (roster.reapply.v1), by outcome: accepted, or refused "
            "(planned with another rule set: dead-lettered).",
            ["outcome"],
            registry=self.registry,
        )
        self.last_record = Gauge(
            "sislms_roster_last_record_timestamp_seconds",
            "When an agent last finished a record.",
            ["agent"],
            registry=self.registry,
        )


class ConfirmedTable(faust.Table):
    """A Faust table whose changelog records can be awaited until the broker has them.

    Faust queues a table's changelog records in its producer buffer, and the flush it does before
    committing offsets gives up after 0.1 s without progress (``ProducerBuffer.flush_atmost``):
    offsets could be committed while the state behind them was still queued, and a worker that
    took the partition over (or restarted) would start after records whose state it never got.
    The agents ack a batch only once :meth:`unconfirmed` of its writes are on the broker.
    """

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.__dict__.setdefault("_unconfirmed", []).append(fut)
        return fut

    def unconfirmed(self) -> list[Any]:
        """The changelog sends since the last call (futures: the broker's answer)."""
        pending: list[Any] = self.__dict__.get("_unconfirmed", [])
        self.__dict__["_unconfirmed"] = []
        return pending


#: Outputs of a batch: (topic, key, value), sent in this order.
Out = list[tuple[str, str, dict[str, Any] | None]]
#: An agent's work on one key: (that key's events of the batch, in order; its state; outputs)
#: -> its new state (None: delete).
Handler = Callable[[list[Any], Any, Out], Any]


class Roster:
    """The Faust app of the roster agents, wired to its topics, tables, rules and replica."""

    def __init__(
        self,
        *,
        bootstrap: str,
        client_conf: Mapping[str, Any] | None = None,
        catalog: Catalog,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        rules: RuleSet,
        reference: Reference,
        topics: RosterTopics | None = None,
        app_id: str = "sislms-roster",
        store: str = "rocksdb://",
        data_dir: Path = Path("state/roster"),
        web_port: int | None = None,
        replication: int = 1,
        as_of: date | None = None,
        producer: ConfirmedProducer | None = None,
        batch_size: int = 500,
        batch_within: float = 0.05,
        standby_replicas: int = 1,
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.topics = t = topics or RosterTopics()
        #: RocksDB options of each table's store (Faust's ``Table(options=...)``), per partition
        self.store_options = dict(store_options or {})
        self.rules = rules
        self.reference = reference
        self.dead_letters = dead_letters
        self.as_of = as_of
        self.batch_size = batch_size
        self.batch_within = batch_within
        self.metrics = _Metrics()
        #: Input messages the agents have processed (the only ones acked: Roster._wrap_consumer)
        self._processed: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Acks waiting for their batch's changelog (Roster._ack_when_written)
        self._acking: set[asyncio.Future[None]] = set()
        #: where each input partition's next commit must start (Roster._wrap_consumer)
        self._holes = HoleGuard()

        self.partitions = self._partitions(catalog, t)
        #: inputs that are never compacted: an offset missing from their fetch was skipped
        self._gapless = {n for n in t.inputs() if catalog.topic(n).cleanup_policy == "delete"}
        self._client_conf = dict(client_conf or {"bootstrap.servers": bootstrap})
        self.serdes = serdes
        self.producer = producer or ConfirmedProducer(
            {**self._client_conf, "enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"}
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        _guard_livelock_detector()
        self.app = app = faust.App(
            app_id,
            broker=f"kafka://{bootstrap}",
            # the rule set in the client id: `sislms roles reapply` reads it from the group's members
            broker_client_id=client_id(app_id, rules.version),
            store=store,
            datadir=str(data_dir),
            autodiscover=False,
            web_enabled=web_port is not None,
            web_port=web_port or 6066,
            web_bind="127.0.0.1",
            web_host="127.0.0.1",
            topic_partitions=self.partitions,
            topic_replication_factor=replication,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            stream_wait_empty=True,
            table_standby_replicas=standby_replicas,
            table_key_serializer="json",
            table_value_serializer="json",
            Table=ConfirmedTable,
            # Faust otherwise reads ~90 unprefixed environment variables (WEB_PORT, BROKER_URL,
            # TIMEZONE, TABLE_STANDBY_REPLICAS...) over the values given here; the worker is
            # configured by SISLMS_* settings only.
            env={},
        )

        def schema(*names: str) -> AvroSchema:
            serde = serdes[names[0]] if len(names) == 1 else {n: serdes[n] for n in names}
            return AvroSchema(serde, dead_letters, STAGE)

        # outputs go through self.producer (streams.confirmed), not Faust's producer
        self.out_by_user = t.by_user
        self.out_by_class = t.by_class
        self.out_class_facts = t.class_facts
        self.out_commands = t.provisioning
        self.out_decisions = t.decisions

        def table(name: str) -> Any:
            # keys and values as JSON (Faust's table_key_serializer / table_value_serializer)
            # a fresh dict each: Faust's RocksDB store pops keys from the one it is given
            return app.Table(name, default=None, partitions=self.partitions, options=dict(self.store_options))

        self.routes = table("routes")
        self.classes = table("classes")
        self.people = table("people")
        self.catalog = table("catalog")

        self._agent(
            "route_enrollments",
            app.topic(t.enrollments, schema=schema(t.enrollments)),
            self.routes,
            self._route,
        )
        self._agent(
            "classes",
            app.topic(t.classes, t.by_class, schema=schema(t.classes, t.by_class)),
            self.classes,
            self._class,
        )
        people_in = (t.users, t.by_user, t.class_facts, t.reapply)
        self._agent(
            "people",
            app.topic(*people_in, schema=schema(*people_in)),
            self.people,
            self._person,
        )
        self._agent(
            "catalog",
            app.topic(t.orgs, t.sessions, t.courses, schema=schema(t.orgs, t.sessions, t.courses)),
            self.catalog,
            self._catalog,
            key=lambda ev: f"{ev.message.topic}|{ev.key}",
        )
        self._pages()

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _start_at_committed(sender: Any, assigned: Any, **kwargs: Any) -> None:
            self._wrap_consumer()

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _hold_flow(sender: Any, revoked: Any, **kwargs: Any) -> None:
            self._hold_flow()

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _close_producer(sender: Any, **kwargs: Any) -> None:
            self.producer.close()

        @app.timer(30.0)
        async def report() -> None:
            m = self.metrics
            m.reference.labels("orgs").set(len(reference.orgs))
            m.reference.labels("courses").set(len(reference.courses))
            done = {s.labels["agent"]: s.value for s in _samples(m.records, "sislms_roster_records_total")}
            sent = {s.labels["action"]: s.value for s in _samples(m.commands, "sislms_roster_commands_total")}
            log.info("roster: records %s; commands %s", _fmt(done), _fmt(sent))

    # --- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _partitions(catalog: Catalog, t: RosterTopics) -> int:
        joined = (t.users, t.by_user, t.class_facts, t.reapply, t.classes, t.by_class)
        counts = {catalog.partitions(catalog.topic(name)) for name in joined}
        if len(counts) != 1:
            raise ValueError(
                f"the roster's joined topics must have one partition count, not {sorted(counts)}"
            )
        return counts.pop()

    def _wrap_consumer(self) -> None:
        """Four mends to Faust's consumer, done once (at the first assignment).

        *Seek.* After Faust's own seek to the committed offsets (at the end of each recovery),
        seek the partitions with nothing committed (or 0) to their beginning. aiokafka's
        ``seek_to_committed`` does not seek those (``if offset and offset > 0``), so they stayed
        where the fetcher stood, which could be past records fetched during the rebalance and
        dropped by Faust.

        *Commit.* Never past a record no agent processed (:mod:`.holes`): a commit whose acked
        offsets start after the partition's last commit waits until the log has been looked at,
        and the partition is read again from there when the record is in it.

        *Ack.* Only records an agent processed are acked. When a rebalance stops the flow, a
        Faust stream skips the record it was about to hand over, and acks it
        (``faust/streams.py``: ``value is skipped_value``; faust-streaming issue #527): the next
        commit then moved past a record nobody had processed. Two workers lost enrollments that
        way; the bench's end-state check found them.

        *Gaps.* When the fetch jumps over offsets, Faust takes them for a compaction gap and
        commits past them. After a flow stop (a rebalance, a re-read) aiokafka can resume a
        partition past records it had fetched and Faust dropped: in a topic that is never
        compacted (the re-keyed internal topics) those records exist, so no gap is recorded
        there; the offsets stay unacked, and the commit guard reads them again. A resumed bench
        run lost 500 class facts that way (the commit jumped from 254 to 757 right after a
        re-read of another partition).
        """
        consumer: Any = self.app.consumer
        if getattr(consumer, "_sislms_wrapped", False):
            return
        original_seek, original_ack = consumer.perform_seek, consumer.ack
        original_new_offset = consumer._new_offset
        inputs, processed, guard = set(self.topics.inputs()), self._processed, self._holes

        async def perform_seek() -> None:
            await original_seek()
            for tp, start in (await self._seek_committed_zero(consumer.assignment())).items():
                guard.start(tp, start)

        def new_offset(tp: Any) -> int | None:
            if tp.topic in inputs:
                acked = consumer._acked[tp]
                if acked and _in_flight_below(consumer._unacked_messages, tp, min(acked)):
                    return None  # an earlier batch of this partition is not acked yet
                verdict, hole = guard.check(tp, acked, lambda a, b: _covered(consumer._gap.get(tp), a, b))
                if verdict == "look" and hole is not None:
                    task = asyncio.ensure_future(self._look_into(tp, hole))
                    self._acking.add(task)
                    task.add_done_callback(self._acking.discard)
                if verdict != "ok":
                    return None
            offset: int | None = original_new_offset(tp)
            if offset is not None and tp.topic in inputs:
                guard.committed(tp, offset)
            return offset

        def ack(message: Any) -> bool:
            if message.topic in inputs and message not in processed:
                self.metrics.unprocessed_acks.inc()
                log.warning(
                    "not acking %s[%d]@%d: skipped by Faust in a rebalance, never processed",
                    message.topic, message.partition, message.offset,
                )  # fmt: skip
                return False
            return bool(original_ack(message))

        original_add_gap, gapless = consumer._add_gap, self._gapless

        async def add_gap(tp: Any, offset_from: int, offset_to: int) -> None:
            if tp.topic in gapless:
                self.metrics.gaps_refused.inc()
                log.warning(
                    "%s[%d]: the fetch skipped offsets %d to %d of a topic that is never compacted; "
                    "not committing past them (they will be read again)",
                    tp.topic, tp.partition, offset_from, offset_to - 1,  # offset_to: the record fetched
                )  # fmt: skip
                return
            await original_add_gap(tp, offset_from, offset_to)

        consumer.perform_seek = perform_seek
        consumer.ack = ack
        consumer._new_offset = new_offset
        consumer._add_gap = add_gap

        original_revoked = consumer.on_partitions_revoked

        async def on_partitions_revoked(revoked: Any) -> None:
            # Faust drops the acks not committed yet of the revoked partitions before its last
            # commit: a run of acks that starts later is no hole then. The guard starts again at
            # the next seek.
            guard.forget(revoked)
            await original_revoked(revoked)

        consumer.on_partitions_revoked = on_partitions_revoked

        consumer._sislms_wrapped = True

    def _hold_flow(self) -> None:
        """Stop the flow of records into the agents until the coming assignment is recovered.

        Faust stops it at a rebalance only when the worker had partitions. A worker joining a
        group has none, so records fetched while its first recovery seeks its partitions went
        into the agents' queues, and the recovery's end (``flow_control.resume()``, which clears
        those queues) dropped them; the commit then moved past them. A second worker joining a
        busy group lost the first record of a partition that way. Faust's recovery resumes both
        when it is done (also with nothing assigned).
        """
        consumer: Any = self.app.consumer
        if consumer.flow_active:
            consumer.stop_flow()
            self.app.flow_control.suspend()
            log.info("record flow held until the new assignment is recovered")

    async def _seek_committed_zero(self, assigned: Any) -> dict[Any, int]:
        """Seek the input partitions of ``assigned`` with nothing committed (or 0) to their start.
        Returns where each input partition reads from (its committed offset, or its start)."""
        from confluent_kafka import Consumer, TopicPartition

        inputs = set(self.topics.inputs())
        tps = [tp for tp in assigned if tp.topic in inputs]
        if not tps:
            return {}
        reads: dict[Any, int] = {}
        side = Consumer({**self._client_conf, "group.id": self.app.conf.id, "enable.auto.commit": False})
        try:
            committed = side.committed([TopicPartition(tp.topic, tp.partition) for tp in tps], timeout=30)
            starts = []
            for tp, c in zip(tps, committed, strict=True):
                if c.offset <= 0:
                    low, _ = side.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)
                    starts.append((tp, low))
                    reads[tp] = low
                else:
                    reads[tp] = c.offset
        finally:
            side.close()
        if starts:
            # in the consumer's own thread (Faust's seek() calls aiokafka from this one)
            await self.app.consumer.seek_wait(dict(starts))
            log.info(
                "%d newly assigned partitions start at their beginning (nothing committed yet)", len(starts)
            )
        return reads

    async def _look_into(self, tp: Any, hole: Hole) -> None:
        """What the log holds where a hole begins: read the partition again from there if the
        records are in it."""
        try:
            next_in_log = await asyncio.to_thread(self._first_offset_from, tp.topic, tp.partition, hole.start)
            if self._holes.found(tp, hole, next_in_log):
                self.metrics.rereads.inc()
                log.warning(
                    "%s[%d]: offsets %d to %d were never processed (dropped by Faust at a rebalance); "
                    "reading them again", tp.topic, tp.partition, hole.start, hole.first - 1,
                )  # fmt: skip
                consumer: Any = self.app.consumer
                if tp in consumer.assignment() and consumer.flow_active:
                    # with the flow stopped: the fetch being handed over would otherwise move
                    # Faust's read offset past the seek, and it would drop the records read again
                    consumer.stop_flow()
                    try:
                        await consumer.wait_for_stopped_flow()  # Faust's way to seek elsewhere
                        await asyncio.sleep(0.1)  # the record being handed over, if any
                        await consumer.seek_wait(_refetch_positions(consumer, tp, hole.start))
                        consumer._read_offset[tp] = hole.start or None
                    finally:
                        consumer.resume_flow()
            else:
                log.info(
                    "%s[%d]: no record from offset %d to %d in the log; committing past them",
                    tp.topic, tp.partition, hole.start, hole.first - 1,
                )  # fmt: skip
        except Exception:
            log.warning(
                "%s[%d]: could not look into the hole at %d",
                tp.topic,
                tp.partition,
                hole.start,
                exc_info=True,
            )
            hole.exists, hole.at = True, 0.0  # look again at the next commit

    def _first_offset_from(self, topic: str, partition: int, offset: int) -> int | None:
        """The offset of the first record at or after ``offset`` (None when there is none)."""
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        side = Consumer(
            {**self._client_conf, "group.id": f"{self.app.conf.id}-holes", "enable.auto.commit": False,
             "enable.partition.eof": True}
        )  # fmt: skip
        try:
            side.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = side.poll(1.0)
                if m is None:
                    continue
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:  # nothing at or after offset
                        return None
                    raise RuntimeError(str(err))
                return m.offset()
            raise TimeoutError(f"{topic}[{partition}]: no answer from offset {offset}")
        finally:
            side.close()

    def today(self) -> date:
        return self.as_of or _now().date()

    def _agent(
        self, name: str, source: Any, table: Any, handle: Handler, key: Callable[[Any], str] | None = None
    ) -> None:
        async def agent(stream: Any) -> None:
            # Batches of records, acked by us only once their outputs and their table state are
            # on the broker (noack_take never acks by itself). The ack of a batch waits for its
            # changelog in a task of its own, while the next batch is decided.
            try:
                async for batch in stream.noack_take(self.batch_size, within=self.batch_within):
                    done, pending = await self._process(name, batch, table, handle, key)
                    task = asyncio.ensure_future(self._ack_when_written(name, stream, done, pending))
                    self._acking.add(task)
                    task.add_done_callback(self._acking.discard)
            except Exception:
                _exit_on_failure(name)

        agent.__name__ = name
        agent.__qualname__ = f"Roster.{name}"
        self.app.agent(source, name=name, concurrency=1)(agent)

    async def _ack_when_written(self, agent: str, stream: Any, done: list[Any], pending: list[Any]) -> None:
        try:
            if pending:
                await asyncio.gather(*pending)
            for event in done:
                self._processed.add(event.message)
                await stream.ack(event)
        except Exception:
            _exit_on_failure(agent)

    async def _process(
        self,
        agent: str,
        batch: list[Any],
        table: Any,
        handle: Handler,
        key_of: Callable[[Any], str] | None,
    ) -> tuple[list[Any], list[Any]]:
        """A batch of records: grouped by key (in order within a key), each key's new state and
        outputs computed once from all of its records; every output confirmed by the broker; then
        the states written. A person with a new account and ten enrollments in one batch is
        decided once, not eleven times. A rebalance meanwhile leaves the states of revoked
        partitions alone, and their records unacked: their new owner processes them again from the
        last commit (same commands, same ids).

        Returns the events to ack, and the changelog sends to wait for before acking them."""
        self.metrics.records.labels(agent).inc(len(batch))
        taken, lag = time.time(), self.metrics.lag.labels(agent)
        for ev in batch:
            if ev.message.timestamp:
                lag.observe(max(0.0, taken - ev.message.timestamp))
        groups: dict[str, list[Any]] = {}
        for ev in batch:
            if ev.value is DEAD_LETTERED or ev.key is None:
                continue
            groups.setdefault(key_of(ev) if key_of else ev.key, []).append(ev)
        deciding = (self.topics.users, self.topics.reapply)
        if any(ev.message.topic in deciding for evs in groups.values() for ev in evs):
            await self.reference.caught_up()  # the users' orgs and the course catalog are known
        out: Out = []
        started = time.perf_counter()
        states = {key: handle(evs, table.get(key), out) for key, evs in groups.items()}
        decided = time.perf_counter()
        serdes = self.serdes
        # the broker has every output before the table says so
        await self.producer.send([(t, encode_key(k), serdes[t].encode(v)) for t, k, v in out])
        sent = time.perf_counter()
        assigned = self.app.consumer.assignment()
        revoked = 0
        for key, state in states.items():
            ev = groups[key][-1]
            if ev.message.tp not in assigned:
                revoked += 1
                continue
            # A table writes its changelog to the partition of "the current event", a context
            # variable Faust sets only when it iterates a stream itself; noack_take does not.
            _current_event.set(weakref.ref(ev))
            if state is None:
                if table.get(key) is not None:
                    del table[key]
            else:
                table[key] = state
        _current_event.set(None)
        done = [ev for ev in batch if ev.message.tp in assigned]
        m = self.metrics
        m.batch_records.labels(agent).observe(len(batch))
        m.batch_seconds.labels(agent, "decide").observe(decided - started)
        m.batch_seconds.labels(agent, "send").observe(sent - decided)
        m.batch_seconds.labels(agent, "write").observe(time.perf_counter() - sent)
        if revoked:
            log.warning("%s: %d keys of revoked partitions left to their new owner", agent, revoked)
        self.metrics.last_record.labels(agent).set(time.time())
        return done, table.unconfirmed()

    def _emit(
        self, out: Out, commands: list[Command], value: Mapping[str, Any] | None, topic: str, key: str
    ) -> None:
        if not commands:
            return
        meta = _meta(value, topic)
        reason = f"{topic} {key}"
        for c in commands:
            out.append((self.out_commands, c.target_sis_id, c.to_value(reason, meta)))
            self.metrics.commands.labels(c.action).inc()

    # --- agents ----------------------------------------------------------------------------

    def _route(self, events: list[Any], state: Any, out: Out) -> Any:
        """sis.enrollments.v1 -> the same enrollment keyed by its user and by its class."""
        for ev in events:
            state = self._route_one(ev, ev.key, state, out)
        return state

    def _route_one(self, ev: Any, key: str, state: Any, out: Out) -> Any:
        value = ev.value
        meta = _meta(value, ev.message.topic)

        def to_user(user: str, klass: str, facts: EnrollmentFacts | None) -> None:
            out.append(
                (
                    self.out_by_user,
                    user,
                    {
                        "enrollmentId": key,
                        "user": user,
                        "classId": klass,
                        "removed": facts is None,
                        "facts": json.dumps(facts.to_dict()) if facts else None,
                        "meta": meta,
                    },
                )
            )

        def to_class(klass: str, user: str, removed: bool) -> None:
            value = {"enrollmentId": key, "classId": klass, "user": user, "removed": removed, "meta": meta}
            out.append((self.out_by_class, klass, value))

        if value is None:
            if state is not None:
                to_user(state["u"], state["c"], None)
                to_class(state["c"], state["u"], True)
            return None
        facts = EnrollmentFacts.from_record(value)
        if state is not None and state["u"] != facts.user:
            to_user(state["u"], state["c"], None)
        if state is not None and state["c"] != facts.klass:
            to_class(state["c"], state["u"], True)
        to_user(facts.user, facts.klass, facts)
        if state is None or state["c"] != facts.klass or state["u"] != facts.user:
            to_class(facts.klass, facts.user, False)
        return {"u": facts.user, "c": facts.klass}

    def _class(self, events: list[Any], state: Any, out: Out) -> Any:
        """A class's course and section; its facts to every member (to new members only, when
        the facts did not change)."""
        key = events[-1].key
        st = state or {"f": None, "m": {}, "e": {}}
        before = st["f"]
        joined: set[str] = set()
        last_class: Any = None
        for ev in events:
            value = ev.value
            if ev.message.topic == self.topics.classes:
                last_class = ev
                if value is None:
                    st["f"] = {**st["f"], "active": False} if st["f"] else None
                else:
                    st["f"] = ClassFacts.from_record(value).to_dict()
            elif value["removed"]:
                st["m"].pop(value["enrollmentId"], None)
            else:
                if value["user"] not in st["m"].values():
                    joined.add(value["user"])
                st["m"][value["enrollmentId"]] = value["user"]
        if last_class is not None:
            value, topic = last_class.value, last_class.message.topic
            targets = class_targets(ClassFacts.from_dict(st["f"])) if st["f"] else {}
            commands, st["e"] = diff(st["e"], targets)
            self._emit(out, commands, value, topic, key)
        if st["f"] is not None:
            members = set(st["m"].values())
            tell = members if st["f"] != before else joined & members
            meta = _meta(events[-1].value, events[-1].message.topic)
            facts = json.dumps(st["f"])
            for user in sorted(tell):
                out.append(
                    (self.out_class_facts, user, {"classId": key, "user": user, "facts": facts, "meta": meta})
                )
        return st

    def _person(self, events: list[Any], state: Any, out: Out) -> Any:
        """Everything one person has in the LMS: account, course roles, observers, templates, admin."""
        key = events[-1].key
        asks = [ev for ev in events if ev.message.topic == self.topics.reapply]
        if asks:
            events = [ev for ev in events if ev.message.topic != self.topics.reapply]
            allowed = self._reapply_allowed(asks)
            if not events and (not allowed or state is None):
                return state  # refused (dead-lettered), or nobody by that id: nothing to decide
        st = state or {"u": None, "en": {}, "cl": {}, "e": {}, "d": {}}
        for ev in events:
            value = ev.value
            topic = ev.message.topic
            if topic == self.topics.users:
                st["u"] = UserFacts.from_record(value).to_dict() if value is not None else None
            elif topic == self.topics.by_user:
                if value["removed"]:
                    st["en"].pop(value["enrollmentId"], None)
                else:
                    st["en"][value["enrollmentId"]] = json.loads(value["facts"])
            elif value["facts"] is not None:
                st["cl"].pop(value["classId"], None)  # re-inserted last: the newest
                st["cl"][value["classId"]] = json.loads(value["facts"])
        _prune_classes(st)
        user = UserFacts.from_dict(st["u"]) if st["u"] else None
        enrollments = {e: EnrollmentFacts.from_dict(d) for e, d in st["en"].items()}
        classes = {c: ClassFacts.from_dict(d) for c, d in st["cl"].items()}
        targets, decisions = person_targets(
            user, enrollments, classes, self.reference.orgs, self.reference.courses.values(), self.rules,
            self.today(), key,
        )  # fmt: skip
        commands, st["e"] = diff(st["e"], targets)
        last = events[-1] if events else asks[-1]
        value, topic = last.value, last.message.topic
        self._emit(out, commands, value, topic, key)
        st["d"] = self._audit(out, st["d"], decisions, key, value, topic)
        return st

    def _reapply_allowed(self, asks: list[Any]) -> bool:
        """Whether this worker may decide the person again for these requests: they were planned
        with the rule set it runs. A request planned with another goes to the dead-letter topic
        (reason ``rules_version_mismatch``): decided under other rules, it would emit what the
        operator was not shown. ``sislms dlq replay`` re-submits it once the workers run them."""
        refused = [ev for ev in asks if ev.value["ruleSetVersion"] != self.rules.version]
        for ev in refused:
            m = ev.message
            self.metrics.reapply.labels("refused").inc()
            self.dead_letters.send(
                STAGE,
                RulesVersionMismatch(
                    f"planned with rule set {ev.value['ruleSetVersion']}; this one is {self.rules.version}"
                ),
                key=m.key,
                value=m.value,
                source=message_position(m),
            )
        if refused:
            self.dead_letters.flush()  # durable before the batch is acked
            return len(refused) < len(asks)
        self.metrics.reapply.labels("accepted").inc(len(asks))
        return True

    def _audit(
        self, out: Out, before: Mapping[str, str], decisions: list[Decision], key: str, value: Any, topic: str
    ) -> dict[str, str]:
        """Publish the decisions that appeared or changed (and the subjects that went away)."""
        now: dict[str, str] = {}
        meta = _meta(value, topic)
        for d in decisions:
            record = _decision_value(d, self.rules.version, meta)
            fingerprint = _fingerprint(record)
            sid = f"{d.kind}:{d.subject}"
            now[sid] = fingerprint
            if before.get(sid) != fingerprint:
                out.append((self.out_decisions, d.person, record))
                self.metrics.decisions.labels(d.kind, d.outcome).inc()
        for sid in sorted(set(before) - set(now)):
            kind, subject = sid.split(":", 1)
            person = subject.rsplit("/", 1)[1] if kind == "observer" else key
            record = {
                "person": person, "kind": kind, "subject": subject, "outcome": "removed", "grants": [],
                "checks": [], "note": "the subject is gone", "facts": {},
                "student": key if kind == "observer" else None, "ruleSetVersion": self.rules.version,
                "decidedAt": _now(), "meta": meta,
            }  # fmt: skip
            out.append((self.out_decisions, person, record))
            self.metrics.decisions.labels(kind, "removed").inc()
        return now

    def _catalog(self, events: list[Any], state: Any, out: Out) -> Any:
        """Orgs to accounts, academic sessions to terms, courses to course templates."""
        ev = events[-1]  # the key is topic|sourcedId: its last record says all
        key = ev.key
        value = ev.value
        topic = ev.message.topic
        t = self.topics
        if value is None:
            targets = {}
        elif topic == t.orgs:
            targets = org_targets(OrgFacts.from_record(value))
        elif topic == t.sessions:
            targets = session_targets(value)
        else:
            targets = course_targets(CourseFacts.from_record(value))
        commands, emitted = diff(state or {}, targets)
        self._emit(out, commands, value, topic, key)
        return emitted

    # --- health and metrics ----------------------------------------------------------------

    def _pages(self) -> None:
        app = self.app

        @app.page("/healthz")
        async def healthz(web: Any, request: Any) -> Any:
            assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
            return web.json(
                {
                    "status": "ok",
                    "app": app.conf.id,
                    "rules": self.rules.version,
                    "reference": {"orgs": len(self.reference.orgs), "courses": len(self.reference.courses)},
                    "assigned_partitions": len(assigned),
                }
            )

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(self.metrics.registry), content_type="text/plain; version=0.0.4")


def _decision_value(d: Decision, version: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "person": d.person,
        "kind": d.kind,
        "subject": d.subject,
        "outcome": d.outcome,
        "grants": [
            {
                "kind": g.kind,
                "role": g.role,
                "baseRole": g.base_role,
                "account": g.account,
                "ltiRoles": list(g.lti_roles),
                "rule": g.rule,
            }
            for g in d.grants
        ],
        "checks": [{"rule": c.rule, "matched": c.matched, "why": c.why} for c in d.checks],
        "note": d.note,
        "facts": dict(d.facts),
        "student": d.student,
        "ruleSetVersion": version,
        "decidedAt": _now(),
        "meta": dict(meta),
    }


_FINGERPRINTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _fingerprint(record: Mapping[str, Any]) -> str:
    """What makes a decision the same one again: all but when and why it was recomputed.

    orjson, not the standard library's JSON: this ran for every decision of a person each time
    the person was decided, and took a tenth of a roster worker's time in a first load. (Its
    fingerprints differ from the ones before it: after that upgrade, each person's decisions were
    audited once more at their next change.)"""
    same = {k: v for k, v in record.items() if k not in ("decidedAt", "meta")}
    return hashlib.sha256(orjson.dumps(same, option=_FINGERPRINTED, default=str)).hexdigest()[:16]


#: Facts of classes a person has no enrollment in that the people agent keeps (the newest).
KEEP_LEFT_CLASSES = 16


def _prune_classes(person: dict[str, Any]) -> None:
    """Forget the facts of the classes a person left, but the newest few.

    They are kept because the records that bring a class's facts (roster.class_facts_by_user)
    and its enrollments (roster.enrollments_by_user) are on two topics, and may be read out of
    order: someone dropped from a class and put back at once may see the facts told for the
    return before the drop; dropping them with the enrollment would leave the return without
    them. A later return to a class forgotten here gets its facts told again."""
    enrolled = {e["klass"] for e in person["en"].values()}
    left = [c for c in person["cl"] if c not in enrolled]
    for klass in left[: max(0, len(left) - KEEP_LEFT_CLASSES)]:
        del person["cl"][klass]


def _guard_livelock_detector() -> None:
    """Keep Faust's livelock detector from crashing a worker.

    Every few commit intervals the detector reads aiokafka's fetch position of every assigned
    partition, and aiokafka asserts that the position is set. A partition being reset (assigned a
    moment ago, or sought to read a hole again) has none for a while: the assertion stopped a
    worker of the 250,000-user bench. The detector only logs slow partitions, so a partition
    without a position is skipped this round instead (once per process)."""
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread.verify_event_path
    if getattr(original, "sislms_guarded", False):
        return

    def verify_event_path(thread: Any, now: float, tp: Any) -> None:
        try:
            original(thread, now, tp)
        except AssertionError:
            log.debug("%s[%d]: no fetch position yet; livelock check skipped", tp.topic, tp.partition)

    verify_event_path.sislms_guarded = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread.verify_event_path = verify_event_path  # type: ignore[method-assign,assignment]


def _refetch_positions(consumer: Any, tp: Any, start: int) -> dict[Any, int]:
    """Where the fetch must stand after a flow stop: ``tp`` at ``start`` (read again), and every
    other assigned partition at the record after the last one Faust handed over. A flow stop drops
    the rest of the batch being handed over, of every partition, while the fetch position has
    moved past it: left there, those records would be skipped."""
    positions = {}
    for other in consumer.assignment():
        last = consumer._read_offset.get(other)
        if other != tp and last is not None:
            positions[other] = last + 1
    positions[tp] = start
    return positions


def _in_flight_below(unacked: Any, tp: Any, offset: int) -> bool:
    """Whether a record of ``tp`` before ``offset`` is being processed (taken, not acked yet)."""
    return any(m.tp == tp and m.offset < offset and not m.acked for m in list(unacked))


def _covered(gaps: Any, begin: int, end: int) -> bool:
    """Whether Faust's known gaps of a partition (an IntervalTree, or None) cover offsets
    ``begin`` to ``end - 1``."""
    if not gaps:
        return False
    pos = begin
    for iv in sorted(gaps.overlap(begin, end), key=lambda iv: iv.begin):
        if iv.begin > pos:
            return False
        pos = max(pos, iv.end)
        if pos >= end:
            return True
    return pos >= end


def _exit_on_failure(agent: str) -> None:
    """Faust would log an agent's crash and leave the worker up with a dead agent. Stop the
    process instead, so that its supervisor restarts it: the batch was not acked, and its outputs
    (if any got out) come again with the same command ids."""
    log.critical("agent %s failed; the worker exits (code 70)", agent, exc_info=True)
    logging.shutdown()
    os._exit(70)


def _samples(metric: Any, name: str) -> list[Any]:
    return [s for fam in metric.collect() for s in fam.samples if s.name == name]


def _fmt(counts: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {int(v)}" for k, v in sorted(counts.items())) or "none"
