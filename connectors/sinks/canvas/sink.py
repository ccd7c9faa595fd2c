"""The provisioning sink: ``lms.provisioning.v1`` in, Canvas changed, outcomes out.

How it runs (``sislms lms sink``):

- One consumer (group ``sislms-canvas-sink``) hands each command to one of
  ``SISLMS_LMS_SINK_LANES`` lanes by its key, so the commands of one target are applied in order
  and different targets at once.
- Each command is applied by :class:`~connectors.sinks.canvas.apply.Provisioner`, and its outcome
  goes to ``lms.provisioning.results.v1`` keyed ``<targetType>|<targetSisId>``: status, Canvas
  id, HTTP status, error and the command's ``sequence``. Compacted, that topic is the SIS-to-LMS
  id map, reloaded at start (:class:`ResultsIdMap`).
- A command whose ``sequence`` is not above the last one handled for its target is skipped
  (a redelivery or a replay): nothing is applied twice, and the newest command wins. A dead
  letter re-submitted by ``sislms dlq replay`` (header ``dlq.replay.of``) is applied when its
  sequence *is* the last one handled (that is the command that failed); one that a newer command
  has overtaken is skipped all the same.
- A command that needs an object Canvas does not have yet waits in its lane, without holding up
  other targets, and is retried with backoff. Once it has waited
  ``SISLMS_LMS_SINK_DEPENDENCY_WAIT_S`` and the sink has stopped making progress (the command it
  needs may be queued behind thousands of others), it is dead-lettered with the reason. So is a
  command Canvas refuses (4xx): ``dlq.lms_sink.v1`` keeps its original bytes and Canvas's
  message. Throttling and 5xx are retried without limit (with backoff): the command is never
  dropped.
- An offset is committed only once every command before it in its partition has its outcome
  (and its dead letter) on the broker: at-least-once, made exactly-once in effect by the
  sequence check and by looking up before changing. A target never handled (a first load) is
  created without a look-up, and Canvas's "SIS id taken" turns that into a look-up and update.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge, Histogram

from connectors.sinks.canvas.apply import Command, DependencyMissing, EnrollmentHolders, Outcome, Provisioner
from connectors.sinks.canvas.bulk import BulkRow, SisImportLoader, importable
from connectors.sinks.canvas.client import CanvasRejected
from streams.dlq import REPLAY_HEADER, DeadLetterPublisher, SourcePosition
from streams.errors import RetriableError, SkippableError
from streams.serde import Serdes, encode_key, timestamp_ms

__all__ = ["CanvasSink", "ResultsIdMap"]

log = logging.getLogger(__name__)

STAGE = "lms_sink"
#: The shortest pause before a command waiting for a dependency looks again by itself. It is
#: woken as soon as the sink applies the command that makes the object (no polling: thousands
#: of waiting enrollments must not spend Canvas's rate limit on lookups); looking again by
#: itself only finds objects made outside the sink meanwhile, and decides the dead letter.
_DEPENDENCY_LOOK_S = 30.0
#: a first load is also a flow of this many commands within this window (see CanvasSink.run)
_INTAKE_WINDOW_S = 10.0
#: the kinds of object a command may wait for
_KINDS = ("account", "term", "course", "section", "user")
_COMMANDS = PromCounter(
    "sislms_lms_sink_commands", "Provisioning commands handled, by action and outcome", ["action", "outcome"]
)
_LATENCY = Histogram(
    "sislms_lms_sink_latency_seconds",
    "From the source's change (the command's meta.sourceChangedAt) to the command applied in Canvas.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 86400),
)
_WAITING = Gauge("sislms_lms_sink_waiting", "Commands waiting in their lane for a dependency or for Canvas")
_IN_FLIGHT = Gauge("sislms_lms_sink_in_flight", "Commands taken from Kafka and not yet committed")
_CALLS = Gauge(
    "sislms_lms_sink_canvas_calls", "Canvas API calls made (with throttled and retried ones)", ["kind"]
)


def result_key(target_type: str, target: str) -> str:
    return f"{target_type}|{target}"


class ResultsIdMap:
    """(target type, target) -> Canvas id, and the last sequence handled, from the results topic."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._seq: dict[tuple[str, str], int] = {}
        self._per_kind: Counter[str] = Counter()
        self._lock = threading.Lock()
        #: which enrollment targets hold each Canvas enrollment (for the Provisioner)
        self.holders = EnrollmentHolders()

    def load(self, results: Iterable[Mapping[str, Any]]) -> ResultsIdMap:
        for r in results:
            self.holders.learn(r)
            key = (r["targetType"], r["targetSisId"])
            if r.get("lmsId") is not None:
                self._per_kind[key[0]] += key not in self._ids
                self._ids[key] = r["lmsId"]
            if r["status"] in ("applied", "unchanged", "dead_lettered"):
                self._seq[key] = max(self._seq.get(key, 0), int(r.get("sequence") or 0))
        return self

    def get(self, kind: str, sis_id: str) -> str | None:
        with self._lock:
            return self._ids.get((kind, sis_id))

    def put(self, kind: str, sis_id: str, lms_id: str) -> None:
        with self._lock:
            self._per_kind[kind] += (kind, sis_id) not in self._ids
            self._ids[(kind, sis_id)] = lms_id

    def count(self, kind: str) -> int:
        with self._lock:
            return self._per_kind[kind]

    def sequence(self, kind: str, target: str) -> int:
        with self._lock:
            return self._seq.get((kind, target), 0)

    def handled(self, kind: str, target: str, sequence: int) -> None:
        with self._lock:
            self._seq[(kind, target)] = max(self._seq.get((kind, target), 0), sequence)

    def __len__(self) -> int:
        return len(self._ids)


def _resubmitted(headers: Iterable[tuple[str, bytes | None]]) -> bool:
    """Whether ``sislms dlq replay`` wrote this record again from a dead letter."""
    return any(name == REPLAY_HEADER for name, _ in headers)


@dataclass
class _Item:
    """One command record on its way through a lane."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: list[tuple[str, bytes | None]]
    first_seen: float = field(default_factory=time.monotonic)
    lane: int = 0
    attempts: int = 0
    pending: int = 0  # broker deliveries still outstanding (outcome, dead letter)


class _Offsets:
    """Per partition: the offsets taken and which are done; the commit is the done prefix."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: dict[tuple[str, int], deque[int]] = {}
        self._done: dict[tuple[str, int], set[int]] = {}

    def take(self, item: _Item) -> None:
        with self._lock:
            tp = (item.topic, item.partition)
            self._taken.setdefault(tp, deque()).append(item.offset)
            self._done.setdefault(tp, set())

    def done(self, item: _Item) -> None:
        with self._lock:
            done = self._done.get((item.topic, item.partition))
            if done is not None:
                done.add(item.offset)

    def committable(self) -> list[TopicPartition]:
        out = []
        with self._lock:
            for tp, taken in self._taken.items():
                done, last = self._done[tp], None
                while taken and taken[0] in done:
                    last = taken.popleft()
                    done.discard(last)
                if last is not None:
                    out.append(TopicPartition(tp[0], tp[1], last + 1))
        return out

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            for p in partitions:
                self._taken.pop((p.topic, p.partition), None)
                self._done.pop((p.topic, p.partition), None)

    def in_flight(self) -> int:
        """Taken and not yet committed (done ones behind an unfinished one included)."""
        with self._lock:
            return sum(len(t) for t in self._taken.values())

    def unfinished(self) -> int:
        """Taken and not done yet."""
        with self._lock:
            return sum(len(t) for t in self._taken.values()) - sum(len(d) for d in self._done.values())


class _Intake:
    """Commands taken within the last ``window_s`` seconds."""

    def __init__(self, window_s: float = _INTAKE_WINDOW_S) -> None:
        self.window_s = window_s
        self._taken: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, n: int, now: float) -> int:
        """Count ``n`` commands taken at ``now``; the total within the window."""
        self._taken.append((now, n))
        self.total += n
        while self._taken and self._taken[0][0] <= now - self.window_s:
            self.total -= self._taken.popleft()[1]
        return self.total


@dataclass(frozen=True)
class _Wake:
    """Try a parked key now: what it waits for has just been made."""

    key: bytes | None


@dataclass(frozen=True)
class _First:
    """A command an SIS import did not make, handed back: it goes before its key's later ones."""

    item: _Item


class _Lane(threading.Thread):
    """Applies the commands of the keys hashed to it, in order per key. A key whose command must
    wait (a dependency, Canvas unavailable) is parked with its later commands behind it; other
    keys go on."""

    def __init__(
        self, index: int, handle: Callable[[_Item], float | None], stopping: threading.Event
    ) -> None:
        super().__init__(name=f"canvas-lane-{index}", daemon=True)
        self._stopping = stopping
        self.inbox: queue.Queue[_Item | _Wake | _First | None] = queue.Queue()
        self._handle = handle
        self._parked: dict[bytes | None, deque[_Item]] = {}
        self._due: list[tuple[float, int, bytes | None]] = []
        self._tie = 0
        self.failure: BaseException | None = None

    def waiting(self) -> int:
        # called from other threads: list() copies the values at once (under the GIL)
        return sum(len(q) for q in list(self._parked.values()))

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # a bug: the sink stops rather than skip the command
            self.failure = exc
            log.exception("%s failed", self.name)

    def _run(self) -> None:
        # On stop, what is queued or parked is left: its offsets are not committed, so the
        # commands come again to the next sink (and are found applied, or applied then).
        while not self._stopping.is_set():
            timeout = max(0.0, self._due[0][0] - time.monotonic()) if self._due else 0.5
            try:
                item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                item = None
            else:
                if item is None:
                    return
                if isinstance(item, _Wake):
                    if item.key in self._parked:
                        self._tie += 1
                        heapq.heappush(self._due, (0.0, self._tie, item.key))
                elif isinstance(item, _First):
                    key = item.item.key
                    if key in self._parked:
                        self._parked[key].appendleft(item.item)
                        self._tie += 1
                        heapq.heappush(self._due, (0.0, self._tie, key))
                    else:
                        self._work(key, deque([item.item]))
                elif item.key in self._parked:
                    self._parked[item.key].append(item)
                else:
                    self._work(item.key, deque([item]))
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                _, _, key = heapq.heappop(self._due)
                items = self._parked.pop(key, None)  # None: woken and done already
                if items is not None:
                    self._work(key, items)

    def _work(self, key: bytes | None, items: deque[_Item]) -> None:
        while items and not self._stopping.is_set():
            wait = self._handle(items[0])
            if wait is not None:
                self._parked[key] = items
                self._tie += 1
                heapq.heappush(self._due, (time.monotonic() + wait, self._tie, key))
                return
            items.popleft()


class CanvasSink:
    """Consumes provisioning commands and applies them to Canvas (see the module docs)."""

    def __init__(
        self,
        *,
        consumer_conf: Mapping[str, Any],
        producer: Producer,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        provisioner: Provisioner,
        ids: ResultsIdMap,
        commands_topic: str,
        results_topic: str,
        lanes: int = 4,
        dependency_wait_s: float = 300.0,
        max_in_flight: int = 5000,
        stage: str = STAGE,
        bulk_min_backlog: int = 0,
        bulk_max_rows: int = 50_000,
        bulk_max_wait_s: float = 30.0,
    ) -> None:
        self.consumer = Consumer(
            {
                **consumer_conf,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        self.producer = producer
        self.serdes = serdes
        self.dead_letters = dead_letters
        self.provisioner = provisioner
        self.ids = ids
        self.commands_topic = commands_topic
        self.results_topic = results_topic
        self.dependency_wait_s = dependency_wait_s
        self.stage = stage
        self.max_in_flight = max_in_flight
        self.counts: Counter[str] = Counter()
        self._offsets = _Offsets()
        self._stopping = threading.Event()
        self._busy_at = time.monotonic()  # the last time commands were coming in or applied
        #: (kind, SIS id) -> the (lane, key) of commands waiting for that object
        self._waiters: dict[tuple[str, str], set[tuple[int, bytes | None]]] = {}
        self._waiters_lock = threading.Lock()
        #: target SIS id (the command's key) -> commands taken for it and not yet finished: a
        #: dependency whose own command is among them is waited for without asking Canvas
        self._queued: Counter[bytes | None] = Counter()
        self._queued_lock = threading.Lock()
        self._current = threading.local()  # the key of the command a lane is applying
        provisioner.awaited = self._awaited
        provisioner.never_handled = self._never_handled
        self._lanes = [_Lane(i, self._handle, self._stopping) for i in range(lanes)]
        self._paused = False
        #: commands are still on the broker beyond what the sink has taken (a first load, a
        #: catch-up): a missing dependency is then most likely among them, and is not looked up
        self._behind = False
        self._starts: dict[tuple[str, int], int] = {}  # see _start_of
        self._read_on = False  # past the intake's hard cap, see _throttle_intake
        self._errors: list[str] = []
        #: commands on the broker beyond what the sink has taken, at the last look
        self._backlog = 0
        #: first loads through Canvas SIS Imports (connectors.sinks.canvas.bulk); 0 turns it off
        self.bulk_min_backlog = bulk_min_backlog
        self._intake = _Intake()
        self._bulk: SisImportLoader | None = None
        if bulk_min_backlog > 0:
            self._bulk = SisImportLoader(
                provisioner, ids, applied=self._bulk_applied, fall_back=self._bulk_fall_back,
                behind=lambda: self._behind, pending=self._taken_for, max_rows=bulk_max_rows,
                max_wait_s=bulk_max_wait_s,
            )  # fmt: skip

    # --- one command ------------------------------------------------------------------------

    def _handle(self, item: _Item) -> float | None:
        """Apply one command; None when it is handled (its outcome queued), else seconds to wait."""
        if self._bulk is not None and self._bulk.holds(item.key):
            # an earlier command for this target waits for an SIS import: this one after it
            self._wait_on("bulk", _target_of(item.key), item)
            return 0.0 if not self._bulk.holds(item.key) else 3600.0
        item.attempts += 1
        self._current.key = item.key
        try:
            value = self.serdes[self.commands_topic].decode(item.value)
        except SkippableError as exc:
            self._dead_letter(item, exc)
            return None
        if value is None:
            self._finish(item, [])
            return None
        command = Command.from_value(value)
        sequence = int(value["sequence"])
        last = self.ids.sequence(command.target_type, command.target)
        if sequence < last or (sequence == last and not _resubmitted(item.headers)):
            self._count(command.action, "stale")
            self._finish(item, [])
            return None
        try:
            outcome = self.provisioner.apply(command)
        except DependencyMissing as exc:
            wait = self._park(item, exc)
            if wait is not None:
                return wait
            self._refused(item, value, command, exc, None)
            return None
        except CanvasRejected as exc:
            self._refused(item, value, command, exc, exc.status)
            return None
        except RetriableError as exc:
            delay = min(60.0, 0.5 * 2 ** min(item.attempts, 7))
            log.warning("canvas: %s %s: %s; again in %.0f s", command.action, command.target, exc, delay)
            self._count(command.action, "retried")
            return delay
        self._done(item, value, command, outcome, self.provisioner.client.last_status)
        return None

    def _done(
        self, item: _Item, value: Mapping[str, Any], command: Command, outcome: Outcome, http: int | None
    ) -> None:
        """A command applied (through REST or an SIS import): its outcome, and whoever waits wakes."""
        self.ids.handled(command.target_type, command.target, int(value["sequence"]))
        if outcome.status == "applied":
            changed = (value.get("meta") or {}).get("sourceChangedAt")
            if changed is not None:
                _LATENCY.observe(max(0.0, time.time() - timestamp_ms(changed) / 1000))
        self._busy_at = time.monotonic()
        self._wake(command.target_type, command.target)
        self._count(command.action, outcome.status)
        self._finish(item, [self._result(value, outcome.status, outcome, http, None, item)])

    def _may_wait(self, item: _Item) -> bool:
        """Whether a command may wait longer for a dependency. Its own command may still be
        queued behind thousands of others (a first load), or wait for a dependency of its own, so
        the wait goes on while the sink makes progress (takes or applies commands); ten times the
        wait is the limit in any case."""
        now = time.monotonic()
        waited, quiet, limit = now - item.first_seen, now - self._busy_at, self.dependency_wait_s
        return waited < limit or (quiet < max(limit, 10.0) and waited < 10 * limit)

    def _park(self, item: _Item, missing: DependencyMissing) -> float | None:
        """Seconds the command waits for the object it misses (None: it has waited enough).

        The object may have been made by another lane between this command's look-up and its
        registration as a waiter: that lane's wake found no waiter. So the id map is read again
        once the waiter is registered; a lane that makes the object later wakes it."""
        if not self._may_wait(item):
            return None
        self._wait_on(missing.kind, missing.sis_id, item)
        if self.ids.get(missing.kind, missing.sis_id) is not None:
            return 0.0
        return max(_DEPENDENCY_LOOK_S, self.dependency_wait_s)

    def _never_handled(self, kind: str, sis_id: str) -> bool:
        """Whether the results topic has no outcome for this target: nothing this sink made."""
        return self.ids.get(kind, sis_id) is None and self.ids.sequence(kind, sis_id) == 0

    def _awaited(self, kind: str, sis_id: str) -> bool:
        """Whether the object is on its way, so that Canvas is not asked for it: a command for
        ``sis_id`` (other than the one this lane applies) is taken and not finished, or the sink
        has not read its topic to the end (the command may be among the rest). In a first load
        most enrollments come before their user's command; looking each one up spent a call of
        Canvas's rate limit on a certain 404. Once the sink has caught up, whatever still waits
        looks once (:meth:`_note_backlog`)."""
        if self._behind:
            return True
        key = encode_key(sis_id)
        mine = 1 if getattr(self._current, "key", None) == key else 0
        with self._queued_lock:
            return self._queued.get(key, 0) > mine

    def _taken_for(self, kind: str, sis_id: str) -> bool:
        """Whether a command for this SIS id is taken and not finished (in a lane or held for
        an SIS import)."""
        with self._queued_lock:
            return self._queued.get(encode_key(sis_id), 0) > 0

    # --- SIS imports (connectors.sinks.canvas.bulk) --------------------------------------------

    def _offer_bulk(self, item: _Item) -> bool:
        """Hold a first-load create for an SIS import; False: it goes to its lane."""
        assert self._bulk is not None
        if item.value is None or _resubmitted(item.headers):
            return False
        # every earlier command for this key must be held here too, for another target type
        # (a class's course and section share a key): a lane's command is applied first
        earlier = self._bulk.kinds_held(item.key)
        if self._queued[item.key] != 1 + len(earlier):
            return False
        try:
            value = self.serdes[self.commands_topic].decode(item.value)
        except SkippableError:
            return False  # its lane dead-letters it
        if value is None:
            return False
        command = Command.from_value(value)
        if command.target_type in earlier or not importable(command):
            return False
        if not self._never_handled(command.target_type, command.target):
            return False
        self._bulk.offer(BulkRow(item, value, command))
        return True

    def _bulk_applied(self, row: BulkRow, lms_id: str) -> None:
        """An SIS import made the row's target: its outcome, as a REST apply's."""
        command = row.command
        row.item.attempts += 1
        self.ids.put(command.target_type, command.target, lms_id)
        if command.target_type == "enrollment":
            self.provisioner.holders.hold(command.target, lms_id)
        self._done(row.item, row.value, command, Outcome("applied", lms_id), 200)
        self._wake("bulk", _target_of(row.item.key))

    def _bulk_fall_back(self, row: BulkRow) -> None:
        """The row goes through the REST API, before any later command for its target."""
        self._lanes[row.item.lane].inbox.put(_First(row.item))
        self._wake("bulk", _target_of(row.item.key))

    def _note_backlog(self) -> None:
        """Whether the sink is behind its topic (positions below the high watermarks its fetches
        last saw). Catching up wakes every waiting command: what it needs is not on the broker,
        so Canvas is asked (it may have been made outside the sink)."""
        assignment = self.consumer.assignment()
        backlog = 0
        for tp in self.consumer.position(assignment) if assignment else []:
            low, high = self.consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            if high < 0 and self._bulk is not None:
                # no fetch answer yet: asked, since a first load's first commands decide on it
                low, high = self.consumer.get_watermark_offsets(tp, timeout=5) or (-1, -1)
            if high < 0:
                continue  # no fetch answer yet
            at = tp.offset if tp.offset >= 0 else self._start_of(tp, low)
            backlog += max(0, high - at)
        behind = backlog > 0
        self._backlog = backlog
        was, self._behind = self._behind, behind
        if was and not behind:
            with self._waiters_lock:
                waiting, self._waiters = self._waiters, {}
            for keys in waiting.values():
                for lane, key in keys:
                    self._lanes[lane].inbox.put(_Wake(key))
            if waiting:
                log.info("canvas sink: caught up; %d object(s) still missing are looked up", len(waiting))

    def _start_of(self, tp: TopicPartition, low: int) -> int:
        """Where the sink starts in a partition it has taken nothing from yet: its committed
        offset (asked once per assignment), else the partition's start."""
        key = (tp.topic, tp.partition)
        if key not in self._starts:
            done = self.consumer.committed([TopicPartition(tp.topic, tp.partition)], timeout=10)
            self._starts[key] = done[0].offset if done and done[0].offset >= 0 else low
        return max(self._starts[key], low)

    def _wait_on(self, kind: str, sis_id: str, item: _Item) -> None:
        with self._waiters_lock:
            self._waiters.setdefault((kind, sis_id), set()).add((item.lane, item.key))

    def _wake(self, kind: str, target: str) -> None:
        with self._waiters_lock:
            waiting = self._waiters.pop((kind, target), ())
        for lane, key in waiting:
            self._lanes[lane].inbox.put(_Wake(key))

    def _refused(
        self,
        item: _Item,
        value: Mapping[str, Any],
        command: Command,
        exc: SkippableError | RetriableError,
        status: int | None,
    ) -> None:
        reason = exc.message if isinstance(exc, CanvasRejected) else str(exc)
        error: SkippableError = exc if isinstance(exc, SkippableError) else _Waited(str(exc))
        self.ids.handled(command.target_type, command.target, int(value["sequence"]))
        self._count(command.action, "dead_lettered")
        result = self._result(value, "dead_lettered", Outcome("dead_lettered", None), status, reason, item)
        self._finish(item, [result], error)

    def _result(
        self,
        value: Mapping[str, Any],
        status: str,
        outcome: Outcome,
        http: int | None,
        error: str | None,
        item: _Item,
    ) -> dict[str, Any]:
        return {
            "commandId": value["commandId"],
            "action": value["action"],
            "targetType": value["targetType"],
            "targetSisId": value["targetSisId"],
            "status": status,
            "lmsId": outcome.lms_id or self.ids.get(value["targetType"], value["targetSisId"]),
            "httpStatus": http,
            "error": error[:1000] if error else None,
            "sequence": int(value["sequence"]),
            "attempt": item.attempts,
            "appliedAt": datetime.now(UTC),
            "meta": value["meta"],
        }

    def _finish(
        self, item: _Item, results: list[dict[str, Any]], error: SkippableError | None = None
    ) -> None:
        """Queue the outcome (and the dead letter); the offset is done when the broker has them."""
        self._unqueue(item.key)
        item.pending = len(results) + (error is not None)
        if item.pending == 0:
            self._offsets.done(item)
            return

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self._errors.append(str(err))
                return  # never done: the sink stops and the command comes again
            item.pending -= 1
            if item.pending == 0:
                self._offsets.done(item)

        serde = self.serdes[self.results_topic]
        for r in results:
            key = encode_key(result_key(r["targetType"], r["targetSisId"]))
            self.producer.produce(self.results_topic, key=key, value=serde.encode(r), on_delivery=delivered)
        if error is not None:
            position = SourcePosition(
                item.topic, item.partition, item.offset, item.timestamp_ms, tuple(item.headers)
            )
            self.dead_letters.send(
                self.stage, error, key=item.key, value=item.value, source=position, on_delivery=delivered
            )

    def _unqueue(self, key: bytes | None) -> None:
        """A command for ``key`` is finished; once none is left, whatever waits on that SIS id
        (of any kind) looks again: the object may not have been made (a refused or stale
        command), and a waiter must then ask Canvas rather than wait out its time."""
        with self._queued_lock:
            self._queued[key] -= 1
            if self._queued[key] > 0:
                return
            del self._queued[key]
        if key is not None:
            target = key.decode("utf-8", "replace")
            for kind in _KINDS:
                self._wake(kind, target)

    def _dead_letter(self, item: _Item, exc: SkippableError) -> None:
        self._count("undecodable", "dead_lettered")
        self._finish(item, [], exc)

    def _count(self, action: str, outcome: str) -> None:
        self.counts[outcome] += 1
        _COMMANDS.labels(action, outcome).inc()

    # --- the loop ---------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        failed = [lane.name for lane in self._lanes if lane.failure is not None]
        if self._bulk is not None and self._bulk.failure is not None:
            failed.append(self._bulk.name)
        client = self.provisioner.client
        return not failed and not self._errors, {
            "status": "ok" if not failed and not self._errors else "failing",
            "counts": dict(self.counts),
            "in_flight": self._offsets.in_flight(),
            "waiting": sum(lane.waiting() for lane in self._lanes),
            "id_map": len(self.ids),
            "canvas": {
                "calls": client.calls,
                "retries": client.retries,
                "throttled": client.throttled,
                "remaining": client.remaining,
            },
            "failed_lanes": failed,
            "sis_imports": None if self._bulk is None else {**self._bulk.counts, "held": self._bulk.held()},
        }

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._starts.clear()
        self._commit()
        self._offsets.forget(partitions)

    def _commit(self) -> None:
        self.producer.poll(0)
        offsets = self._offsets.committable()
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=False)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: take commands, hand them to the lanes, commit what is done."""
        for lane in self._lanes:
            lane.start()
        if self._bulk is not None:
            self._bulk.start()
        self.consumer.subscribe([self.commands_topic], on_revoke=self._on_revoke)
        last_commit = last_log = time.monotonic()
        try:
            while not stop.is_set():
                self._check()
                batch = self.consumer.consume(500, timeout=0.2)
                taken = len(batch)
                bulk = False  # whether this batch's first-load creates go to an SIS import
                if taken and self._bulk is not None:
                    self._note_backlog()
                    behind_by = self._backlog + self._offsets.unfinished() + taken
                    # Behind, or fed as fast as a first load feeds it: a roster worker producing
                    # commands no faster than the sink reads them keeps it "caught up", and its
                    # creates would go one Canvas call each at the rate limit.
                    recent = self._intake.add(taken, time.monotonic())
                    bulk = max(behind_by, recent) >= self.bulk_min_backlog
                for msg in batch:
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("consume: %s", error)
                        continue
                    headers = _headers(msg.headers())
                    item = _Item(
                        str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0), msg.key(),
                        msg.value(), msg.timestamp()[1], headers,
                    )  # fmt: skip
                    self._offsets.take(item)
                    with self._queued_lock:
                        self._queued[item.key] += 1
                    item.lane = zlib.crc32(item.key or b"") % len(self._lanes)
                    if bulk and self._offer_bulk(item):
                        continue
                    self._lanes[item.lane].inbox.put(item)
                self.producer.poll(0)
                self._throttle_intake()
                now = time.monotonic()
                if taken or any(lane.inbox.qsize() for lane in self._lanes):
                    self._busy_at = now
                if now - last_commit >= 1.0:
                    self._commit()
                    self._note_backlog()
                    last_commit = now
                if now - last_log >= 30.0:
                    self._report()
                    last_log = now
        finally:
            self._stopping.set()
            if self._bulk is not None:
                self._bulk.stop()
                self._bulk.join(timeout=30)
            for lane in self._lanes:
                lane.inbox.put(None)
            for lane in self._lanes:
                lane.join(timeout=30)
            self.producer.flush(30)
            self._commit()
            self._report()
            self.consumer.close()

    def _throttle_intake(self) -> None:
        in_flight = self._offsets.in_flight()
        _IN_FLIGHT.set(in_flight)
        _WAITING.set(sum(lane.waiting() for lane in self._lanes))
        client = self.provisioner.client
        for kind, value in (
            ("all", client.calls),
            ("retried", client.retries),
            ("throttled", client.throttled),
        ):
            _CALLS.labels(kind).set(value)
        # Commands waiting for a dependency, and commands done but not committable yet (behind a
        # waiting one), do not count against the intake: in a first load,
        # the window can fill with enrollments whose users are still behind it on the broker,
        # and pausing then would only wait until they are dead-lettered. A hard cap (twenty
        # windows) bounds the memory while anything is being applied; once every command taken
        # waits for one still on the broker, the sink reads on past it (pausing there would
        # stall it until the waits expired: a throttled 25,000-user first load did).
        with self._waiters_lock:
            parked = sum(len(w) for w in self._waiters.values())
        if self._bulk is not None:
            parked += self._bulk.held()  # held for an import, like commands waiting in a lane
        active, hard = self._offsets.unfinished() - parked, 20 * self.max_in_flight
        if in_flight < hard - self.max_in_flight:
            self._read_on = False
        elif self._paused and parked and not self._read_on and time.monotonic() - self._busy_at >= 2.0:
            self._read_on = True  # paused at the cap and idle: what is taken waits for what is not
            log.info("canvas sink: %d commands wait for commands still on the broker; reading on", parked)
        assignment = self.consumer.assignment()
        full = active >= self.max_in_flight or in_flight >= hard
        room = active < self.max_in_flight // 2 and in_flight < hard - self.max_in_flight
        if not self._paused and full and not self._read_on and assignment:
            self.consumer.pause(assignment)
            self._paused = True
        elif self._paused and (room or self._read_on):
            self.consumer.resume(assignment)
            self._paused = False

    def _check(self) -> None:
        for lane in self._lanes:
            if lane.failure is not None:
                raise RuntimeError(f"{lane.name} failed: {lane.failure!r}") from lane.failure
        if self._bulk is not None and self._bulk.failure is not None:
            failure = self._bulk.failure
            raise RuntimeError(f"the SIS import loader failed: {failure!r}") from failure
        if self._errors:
            raise RetriableError(f"the broker refused outcomes or dead letters: {self._errors[:3]}")

    def _report(self) -> None:
        h = self.health()[1]
        calls = h["canvas"]
        log.info(
            "canvas sink: %s; in flight %d, waiting %d; canvas calls %d (retried %d, throttled %d)",
            ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing yet",
            h["in_flight"], h["waiting"], calls["calls"], calls["retries"], calls["throttled"],
        )  # fmt: skip


def _target_of(key: bytes | None) -> str:
    return (key or b"").decode("utf-8", "replace")


def _headers(raw: Any) -> list[tuple[str, bytes | None]]:
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


class _Waited(SkippableError):
    """A dependency that never reached Canvas within the wait."""

    reason = "dependency_missing"


def load_id_map(conf: Mapping[str, Any], serdes: Serdes, topic: str) -> ResultsIdMap:
    """The id map from the results topic, read to its end."""
    from streams.compacted import read_to_end

    serde = serdes[topic]
    values = (serde.decode(m.value()) for m in read_to_end(dict(conf), topic) if m.value() is not None)
    ids = ResultsIdMap().load(v for v in values if v is not None)
    log.info("canvas sink: id map of %d targets loaded from %s", len(ids), topic)
    return ids
