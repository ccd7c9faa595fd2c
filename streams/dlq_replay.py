"""Dead letters after the fact: ``sislms dlq list | show | replay``.

``list`` counts the letters of every ``dlq.<stage>.v1`` topic by stage and reason; ``show`` prints
them one by one (positions, reason, error, origin; the original value only when asked, it may hold
student data). ``replay`` re-submits letters after a fix: the original key, value and headers are
written again to the topic they came from, with two more headers (``dlq.replay.of``, the letter's
position; ``dlq.attempt``, its attempt count), so the stage that failed reads them again and, if
it fails again, dead-letters them once more with one more attempt. The replay reads the
dead-letter topics only to the end they had when it started, so a letter that fails again is
never picked up by the same run: no loop.

Every settled letter gets an entry on the ledger ``ops.dlq_replays.v1`` once its re-submitted
record is on the broker: an interrupted replay resumes where it stopped (a batch cut off between
the two is re-submitted again, which the idempotent stages absorb). One replay runs at a time.

A letter whose source topic is compacted, and where a newer record of the
same key has come since, is *superseded*: writing its old bytes again would make an older
version the topic's latest, so it is settled without being written. Letters that did not come
from Kafka (a CSV row, a REST page, an HTTP body refused at the edge) cannot be re-submitted
here: the fix is at their source, and the next sync reads them again.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from streams.catalog import Catalog
from streams.compacted import read_to_end
from streams.dlq import ATTEMPT_HEADER, REPLAY_HEADER
from streams.errors import ConfigError, DecodeError, PlanRefused, ServiceUnavailable
from streams.serde import Serdes, decode_key, encode_key

__all__ = [
    "LEDGER_TOPIC",
    "Letter",
    "ReplayLock",
    "ReplayPlan",
    "dead_letter_topics",
    "describe",
    "plan_letters",
    "read_ledger",
    "read_letters",
    "replay_letters",
    "summarize",
]

log = logging.getLogger(__name__)

LEDGER_TOPIC = "ops.dlq_replays.v1"
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Letter:
    """One dead letter and where it sits."""

    topic: str
    partition: int
    offset: int
    record: dict[str, Any]

    @property
    def coordinate(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def stage(self) -> str:
        return str(self.record["stage"])

    @property
    def reason(self) -> str:
        return str(self.record["reason"])

    @property
    def source_topic(self) -> str | None:
        return self.record.get("sourceTopic")

    @property
    def from_kafka(self) -> bool:
        return self.source_topic is not None and self.record.get("sourcePartition") is not None

    @property
    def origin(self) -> str:
        """Where the original record came from: a topic position, or the edge's origin headers."""
        if self.from_kafka:
            return f"{self.source_topic}:{self.record['sourcePartition']}:{self.record['sourceOffset']}"
        headers = self.record.get("headers") or {}
        parts = [
            f"{k.removeprefix('origin.')}={(v or b'').decode('utf-8', 'replace')}"
            for k, v in sorted(headers.items())
            if k.startswith("origin.")
        ]
        return " ".join(parts) or "outside Kafka"


def describe(letter: Letter, entry: dict[str, Any] | None) -> dict[str, Any]:
    """One letter for ``dlq show``: positions, reason, error and origin; not the value."""
    r = letter.record
    return {
        "letter": letter.coordinate,
        "stage": letter.stage,
        "reason": letter.reason,
        "attempt": r.get("attempt"),
        "failedAt": _instant(r["failedAt"]).isoformat(),
        "error": f"{r.get('errorType')}: {r.get('errorMessage')}",
        "origin": letter.origin,
        "key": (r.get("key") or b"").decode("utf-8", "replace") or None,
        "valueBytes": len(r.get("value") or b""),
        "replay": None
        if entry is None
        else {f: entry[f] for f in ("outcome", "resubmittedTo", "supersededBy", "replayedAt")},
    }


def dead_letter_topics(catalog: Catalog, stages: Iterable[str] | None = None) -> list[str]:
    """The ``dlq.<stage>.v1`` topics of ``stages`` (default: all of them)."""
    every = {t.name.removeprefix("dlq.").removesuffix(".v1"): t.name for t in catalog if t.domain == "dlq"}
    wanted = list(stages or [])
    unknown = [s for s in wanted if s not in every]
    if unknown:
        raise ConfigError(
            f"no dead-letter topic for stage(s) {', '.join(unknown)}; stages: {', '.join(sorted(every))}"
        )
    return [every[s] for s in wanted] if wanted else sorted(every.values())


def read_letters(
    conf: dict[str, Any], serdes: Serdes, topics: Iterable[str], *, reasons: Iterable[str] | None = None
) -> Iterator[Letter]:
    """Every letter on ``topics`` up to the end each had when the read began, optionally only
    those of ``reasons``. A letter that does not decode is logged (position only) and skipped."""
    wanted = set(reasons or [])
    for topic in topics:
        for m in read_to_end(conf, topic):
            try:
                record = serdes[topic].decode(m.value())
            except DecodeError as exc:
                log.warning("%s:%s:%s is not a dead letter (%s)", topic, m.partition(), m.offset(), exc)
                continue
            if record is None or (wanted and record["reason"] not in wanted):
                continue
            yield Letter(topic, int(m.partition() or 0), int(m.offset() or 0), record)


def read_ledger(
    conf: dict[str, Any], serdes: Serdes, ledger: str = LEDGER_TOPIC
) -> dict[str, dict[str, Any]]:
    """The ledger's latest entry per letter position."""
    out: dict[str, dict[str, Any]] = {}
    for m in read_to_end(conf, ledger):
        key = decode_key(m.key())
        value = serdes[ledger].decode(m.value())
        if key is None:
            continue
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Summary:
    stage: str
    reason: str
    letters: int
    resubmitted: int
    superseded: int
    pending: int
    first_failed: datetime | None
    last_failed: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "reason": self.reason,
            "letters": self.letters,
            "resubmitted": self.resubmitted,
            "superseded": self.superseded,
            "pending": self.pending,
            "firstFailedAt": self.first_failed.isoformat() if self.first_failed else None,
            "lastFailedAt": self.last_failed.isoformat() if self.last_failed else None,
        }


def summarize(letters: Iterable[Letter], ledger: dict[str, dict[str, Any]]) -> list[Summary]:
    """Counts by stage and reason, with what the replays did with them."""
    groups: dict[tuple[str, str], list[Letter]] = defaultdict(list)
    for letter in letters:
        groups[(letter.stage, letter.reason)].append(letter)
    out = []
    for (stage, reason), items in sorted(groups.items()):
        outcomes = Counter(ledger[x.coordinate]["outcome"] for x in items if x.coordinate in ledger)
        failed = [_instant(x.record["failedAt"]) for x in items]
        settled = outcomes["resubmitted"] + outcomes["superseded"]
        row = Summary(
            stage, reason, len(items), outcomes["resubmitted"], outcomes["superseded"],
            len(items) - settled, min(failed), max(failed),
        )  # fmt: skip
        out.append(row)
    return out


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1000, UTC)


@dataclass
class ReplayPlan:
    """What a replay would do with each letter asked for."""

    resubmit: list[Letter] = field(default_factory=list)
    superseded: list[tuple[Letter, str]] = field(default_factory=list)  #: with the newer record's position
    settled: list[Letter] = field(default_factory=list)  #: already in the ledger
    outside: list[Letter] = field(default_factory=list)  #: not from Kafka: fix at the source

    def lines(self) -> list[str]:
        out = [
            f"{len(self.resubmit)} to re-submit, {len(self.superseded)} superseded by a newer record, "
            f"{len(self.settled)} settled by an earlier replay, {len(self.outside)} not from Kafka"
        ]
        by_target = Counter((x.stage, x.reason, x.source_topic) for x in self.resubmit)
        for (stage, reason, topic), n in sorted(by_target.items()):
            out.append(f"  re-submit {n:>6}  {stage}/{reason} -> {topic}")
        for letter, newer in self.superseded[:20]:
            out.append(f"  superseded {letter.coordinate} ({letter.stage}/{letter.reason}) by {newer}")
        if len(self.superseded) > 20:
            out.append(f"  ... and {len(self.superseded) - 20} more superseded")
        outside = Counter((x.stage, x.reason) for x in self.outside)
        for (stage, reason), n in sorted(outside.items()):
            out.append(
                f"  not from Kafka {n:>6}  {stage}/{reason}: fix the record at its source; the next "
                "sync (sislms sis sync, sislms sis load) or a re-sent event reads it again"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "resubmit": [x.coordinate for x in self.resubmit],
            "superseded": {x.coordinate: newer for x, newer in self.superseded},
            "settled": [x.coordinate for x in self.settled],
            "notFromKafka": [x.coordinate for x in self.outside],
        }


def _compacted(admin: AdminClient, topics: set[str]) -> set[str]:
    if not topics:
        return set()
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in sorted(topics)]
    out = set()
    for resource, future in admin.describe_configs(resources).items():
        try:
            configs = future.result(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            raise ServiceUnavailable(f"reading the config of {resource.name}: {exc}") from None
        policy = configs.get("cleanup.policy")
        if policy is not None and "compact" in str(policy.value):
            out.add(resource.name)
    return out


def _newer(conf: dict[str, Any], letters: list[Letter]) -> dict[str, str]:
    """For letters of compacted topics: the position of a later record with the same key in the
    same partition, when there is one (read_committed: an aborted replay does not count)."""
    by_partition: dict[tuple[str, int], list[Letter]] = defaultdict(list)
    for x in letters:
        if x.record.get("key") is not None:
            by_partition[(str(x.source_topic), int(x.record["sourcePartition"]))].append(x)
    found: dict[str, str] = {}
    if not by_partition:
        return found
    consumer = Consumer(
        {**conf, "group.id": f"sislms-dlq-scan-{time.time_ns()}", "enable.auto.commit": False,
         "isolation.level": "read_committed"}
    )  # fmt: skip
    try:
        for (topic, partition), items in by_partition.items():
            start = min(int(x.record["sourceOffset"]) for x in items) + 1
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=_TIMEOUT_S)
            if start >= high:
                continue
            latest: dict[bytes, int] = {}
            keys = {bytes(x.record["key"]) for x in items}
            consumer.assign([TopicPartition(topic, partition, start)])
            position = start
            while position < high:
                batch = consumer.consume(5000, timeout=1.0)
                if not batch:
                    [tp] = consumer.position([TopicPartition(topic, partition)])
                    position = max(position, tp.offset)
                    continue
                for m in batch:
                    error = m.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise ServiceUnavailable(f"reading {topic}: {error}")
                    position = int(m.offset() or 0) + 1
                    k = m.key()
                    if k is not None and k in keys:
                        latest[k] = int(m.offset() or 0)
            for x in items:
                at = latest.get(bytes(x.record["key"]))
                if at is not None and at > int(x.record["sourceOffset"]):
                    found[x.coordinate] = f"{topic}:{partition}:{at}"
    finally:
        consumer.close()
    return found


def plan_letters(
    admin: AdminClient,
    conf: dict[str, Any],
    letters: Iterable[Letter],
    ledger: dict[str, dict[str, Any]],
    *,
    again: bool = False,
) -> ReplayPlan:
    """Sort the letters: re-submit, superseded, settled before (unless ``again``), not from Kafka."""
    plan = ReplayPlan()
    todo: list[Letter] = []
    for letter in letters:
        if not letter.from_kafka:
            plan.outside.append(letter)
        elif letter.coordinate in ledger and not again:
            plan.settled.append(letter)
        else:
            todo.append(letter)
    compacted = _compacted(admin, {str(x.source_topic) for x in todo})
    newer = _newer(conf, [x for x in todo if x.source_topic in compacted])
    for letter in todo:
        if letter.coordinate in newer:
            plan.superseded.append((letter, newer[letter.coordinate]))
        else:
            plan.resubmit.append(letter)
    return plan


def _headers(letter: Letter) -> list[tuple[str, str | bytes | None]]:
    original = letter.record.get("headers") or {}
    kept = [(k, v) for k, v in original.items() if k not in (REPLAY_HEADER, ATTEMPT_HEADER)]
    return [
        *kept,
        (REPLAY_HEADER, letter.coordinate.encode()),
        (ATTEMPT_HEADER, str(int(letter.record.get("attempt") or 1)).encode()),
    ]


def _entry(
    letter: Letter, outcome: str, *, to: str | None = None, newer: str | None = None
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "letter": letter.coordinate,
        "stage": letter.stage,
        "reason": letter.reason,
        "outcome": outcome,
        "sourceTopic": str(letter.source_topic),
        "resubmittedTo": to,
        "supersededBy": newer,
        "attempt": int(letter.record.get("attempt") or 1),
        "replayedAt": now,
        "meta": {
            "source": f"sislms-dlq-replay:{socket.gethostname()}",
            "sourceChangedAt": _instant(letter.record["failedAt"]),
            "ingestedAt": now,
            "traceId": letter.record.get("traceId") or letter.coordinate,
            "sourceVersion": None,
        },
    }


def replay_letters(
    producer: Producer,
    serdes: Serdes,
    plan: ReplayPlan,
    *,
    ledger: str = LEDGER_TOPIC,
    batch: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> Counter[str]:
    """Carry out ``plan`` batch by batch: the re-submitted records, acknowledged by the broker,
    then their ledger entries. Returns counts by outcome.

    Interrupted between the two, a batch is re-submitted again on resume: at-least-once, which
    the idempotent, sequence- and version-guarded stages absorb like any redelivery. (A Kafka
    transaction would make it exactly-once, but its commit markers would sit in every source
    topic as offsets no consumer can commit past, a lag of one that never drains.)
    """
    ledger_serde = serdes[ledger]
    done: Counter[str] = Counter()
    work: list[tuple[Letter, str | None]] = [(x, None) for x in plan.resubmit]
    work += [(x, newer) for x, newer in plan.superseded]
    total = len(work)
    landed: dict[str, str] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any, *, coordinate: str | None = None) -> None:
        if err is not None:
            errors.append(str(err))
        elif coordinate is not None:
            landed[coordinate] = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"

    def flush(what: str) -> None:
        remaining = producer.flush(_TIMEOUT_S)
        if remaining or errors:
            raise ServiceUnavailable(f"{what}: {remaining} unacknowledged, errors {errors[:3]}")

    for start in range(0, total, batch):
        chunk = work[start : start + batch]
        landed.clear()
        errors.clear()
        for letter, newer in chunk:
            if newer is not None:
                continue
            key = letter.record.get("key")
            producer.produce(
                str(letter.source_topic),
                key=key,
                value=letter.record.get("value"),
                headers=_headers(letter),
                # without a key, back to its partition; with one, where its key lives now (-1)
                partition=int(letter.record["sourcePartition"]) if key is None else -1,
                on_delivery=partial(delivered, coordinate=letter.coordinate),
            )
        flush("re-submitting dead letters")
        for letter, newer in chunk:
            entry = (
                _entry(letter, "superseded", newer=newer)
                if newer is not None
                else _entry(letter, "resubmitted", to=landed[letter.coordinate])
            )
            value = ledger_serde.encode(entry)
            producer.produce(ledger, key=encode_key(letter.coordinate), value=value, on_delivery=delivered)
        flush("writing the replay ledger")
        for _, newer in chunk:
            done["superseded" if newer is not None else "resubmitted"] += 1
        log.info("dlq replay: %d of %d letter(s) settled", start + len(chunk), total)
        if progress is not None:
            progress(start + len(chunk), total)
    return done


class ReplayLock:
    """One ``dlq replay`` at a time: membership of consumer group ``group`` (on the ledger topic)
    is the lock; a replay that finds a member refuses to start."""

    def __init__(
        self, admin: AdminClient, conf: dict[str, Any], group: str, ledger: str = LEDGER_TOPIC
    ) -> None:
        self.admin, self.conf, self.group, self.ledger = admin, conf, group, ledger
        self._consumer: Consumer | None = None

    def __enter__(self) -> ReplayLock:
        from streams.replay import group_members

        if group_members(self.admin, self.group):
            raise PlanRefused(f"another dlq replay is running (group {self.group} has a member): wait for it")
        consumer = Consumer({**self.conf, "group.id": self.group, "enable.auto.commit": False})
        consumer.subscribe([self.ledger])
        deadline = time.monotonic() + _TIMEOUT_S
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        self._consumer = consumer
        return self

    def __exit__(self, *exc: object) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
