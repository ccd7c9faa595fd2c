"""The work tracker: each student's standing on each LMS assignment, on ``analytics.assignment_work.v1``.

Who owes an assignment, and what they handed in, is a join across four compacted topics with
different keys:

- ``lms.assignments.v1`` (the assignment, its LMS course and due time);
- ``lms.provisioning.results.v1`` (the LMS id each SIS class and user got: course to class, SIS
  user to LMS user);
- ``sis.enrollments.v1`` (the class's students, active, with their begin and end dates);
- ``lms.submissions.v1`` (what each student handed in).

A student owes an assignment when an active student enrollment in the class the LMS course was
provisioned from covers the due date (today, for work with no due date), in the district's time
zone; unpublished and deleted work is owed by nobody. The status follows the analytics store's
``assignment_status`` view, rule for rule: ``excused``; ``on_time`` (handed in at or before the due
time); ``late``; ``missing`` (nothing handed in and the due time has passed); ``pending``.

**State.** All four inputs are compacted, so the tracker keeps its join in memory and rebuilds it
by reading them from the beginning at every start, with what it last published (the output topic,
read to its end). After that first read it publishes only the rows that differ: a restart, a
replay or a second start publishes nothing new. Then it follows the inputs live; each batch
recomputes the assignments it touches. A timer publishes ``missing`` as due times pass (within
``tick_s``) and re-decides work with no due date when the local day changes.

**Scale.** One process holds the join (about 100 bytes per enrollment, submission and published
row: some hundreds of MB at 25,000 users) and reads the four topics at start. Run one; a second
publishes the same records (harmless, and a hot standby).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from streams.compacted import read_to_end
from streams.dlq import DeadLetterPublisher, position
from streams.errors import DecodeError, RetriableError, ServiceUnavailable
from streams.serde import Serdes, decode_key, encode_key, timestamp_ms

__all__ = ["STATUSES", "WorkBook", "WorkTracker", "status_of"]

log = logging.getLogger(__name__)

STATUSES = ("on_time", "late", "missing", "pending", "excused")

ROWS = PromCounter(
    "sislms_work_rows",
    "Assignment work rows the work tracker published, by status (and 'removed').",
    ["status"],
)
READY = Gauge("sislms_work_ready", "1 once the work tracker has read its inputs to their end at start.")


def _ms(value: Any) -> int | None:
    return None if value is None else timestamp_ms(value)


def status_of(*, excused: bool | None, submitted_ms: int | None, due_ms: int | None, now_ms: int) -> str:
    """The status of one student's work (the rules of the ``assignment_status`` view)."""
    if excused:
        return "excused"
    if submitted_ms is not None:
        return "on_time" if due_ms is None or submitted_ms <= due_ms else "late"
    if due_ms is not None and due_ms < now_ms:
        return "missing"
    return "pending"


@dataclass
class _Enrollment:
    user: str
    klass: str
    school: str | None
    begin: date | None
    end: date | None


@dataclass
class WorkBook:
    """The join, in memory; every change says which assignments it touches."""

    tz: tzinfo
    enrollments: dict[str, _Enrollment] = field(default_factory=dict)  # active student enrollments by id
    by_class: dict[str, set[str]] = field(default_factory=dict)  # class -> enrollment ids
    classes_of_user: dict[str, set[str]] = field(default_factory=dict)  # SIS user -> classes
    course_class: dict[str, str] = field(default_factory=dict)  # LMS course -> SIS class
    class_courses: dict[str, set[str]] = field(default_factory=dict)  # SIS class -> LMS courses
    by_sis_class: dict[str, set[str]] = field(default_factory=dict)  # SIS class -> assignments naming it
    user_lms: dict[str, str] = field(default_factory=dict)  # SIS user -> LMS user
    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_course: dict[str, set[str]] = field(default_factory=dict)  # LMS course -> assignments
    submissions: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=dict
    )  # assignment -> id -> value
    submission_of: dict[str, str] = field(default_factory=dict)  # submission id -> assignment

    # --- changes ------------------------------------------------------------------------------

    def class_of(self, assignment: dict[str, Any]) -> str | None:
        return assignment.get("sisCourseId") or self.course_class.get(assignment["courseId"])

    def put_enrollment(self, key: str, value: dict[str, Any] | None) -> set[str]:
        touched: set[str] = set()
        old = self.enrollments.pop(key, None)
        if old is not None:
            self.by_class.get(old.klass, set()).discard(key)
            touched.add(old.klass)
        if value is not None and value["role"] == "student" and value["status"] == "active":
            school = value.get("school") or {}
            e = _Enrollment(
                value["user"]["sourcedId"], value["class"]["sourcedId"], school.get("sourcedId"),
                value.get("beginDate"), value.get("endDate"),
            )  # fmt: skip
            self.enrollments[key] = e
            self.by_class.setdefault(e.klass, set()).add(key)
            self.classes_of_user.setdefault(e.user, set()).add(e.klass)
            touched.add(e.klass)
        return {a for klass in touched for a in self._assignments_of_class(klass)}

    def put_result(self, value: dict[str, Any] | None) -> set[str]:
        if value is None or not value.get("lmsId"):
            return set()  # an LMS id, once known, is kept (as the store's provisioning_results do)
        kind, sis_id, lms_id = value["targetType"], value["targetSisId"], value["lmsId"]
        if kind == "course":
            before = self.course_class.get(lms_id)
            if before == sis_id:
                return set()
            if before is not None:
                self.class_courses.get(before, set()).discard(lms_id)
            self.course_class[lms_id] = sis_id
            self.class_courses.setdefault(sis_id, set()).add(lms_id)
            return set(self.by_course.get(lms_id, ()))
        if kind == "user":
            if self.user_lms.get(sis_id) == lms_id:
                return set()
            self.user_lms[sis_id] = lms_id
            return {
                a for klass in self.classes_of_user.get(sis_id, ()) for a in self._assignments_of_class(klass)
            }
        return set()

    def put_assignment(self, key: str, value: dict[str, Any] | None) -> set[str]:
        old = self.assignments.pop(key, None)
        if old is not None:
            self.by_course.get(old["courseId"], set()).discard(key)
            if old.get("sisCourseId"):
                self.by_sis_class.get(old["sisCourseId"], set()).discard(key)
        if value is not None:
            self.assignments[key] = value
            self.by_course.setdefault(value["courseId"], set()).add(key)
            if value.get("sisCourseId"):
                self.by_sis_class.setdefault(value["sisCourseId"], set()).add(key)
        return {key}

    def put_submission(self, key: str, value: dict[str, Any] | None) -> set[str]:
        touched = set()
        old = self.submission_of.pop(key, None)
        if old is not None:
            self.submissions.get(old, {}).pop(key, None)
            touched.add(old)
        if value is not None:
            assignment = value["assignmentId"]
            self.submissions.setdefault(assignment, {})[key] = value
            self.submission_of[key] = assignment
            touched.add(assignment)
        return touched

    def _assignments_of_class(self, klass: str) -> set[str]:
        found = set(self.by_sis_class.get(klass, ()))
        for course in self.class_courses.get(klass, ()):
            found.update(self.by_course.get(course, ()))
        return found

    # --- decisions ----------------------------------------------------------------------------

    def rows(self, assignment_id: str, now_ms: int) -> dict[str, dict[str, Any]]:
        """The rows of one assignment, keyed ``<assignment>|<user>`` (without ``decidedAt`` and
        ``meta``): one per student who owes it."""
        a = self.assignments.get(assignment_id)
        if a is None or a["workflowState"] in ("deleted", "unpublished") or a.get("published") is False:
            return {}
        klass = self.class_of(a)
        if klass is None:
            return {}
        due_ms = _ms(a.get("dueAt"))
        on = (
            datetime.fromtimestamp(due_ms / 1000, self.tz).date()
            if due_ms is not None
            else datetime.fromtimestamp(now_ms / 1000, self.tz).date()
        )
        latest: dict[str, dict[str, Any]] = {}  # by LMS user and by "sis:" + SIS user
        for sub in self.submissions.get(assignment_id, {}).values():
            for who in (sub["userId"], f"sis:{sub['sisUserId']}" if sub.get("sisUserId") else None):
                if who is None:
                    continue
                best = latest.get(who)
                if best is None or _later(sub, best):
                    latest[who] = sub
        out: dict[str, dict[str, Any]] = {}
        for eid in sorted(self.by_class.get(klass, ())):
            e = self.enrollments[eid]
            if (e.begin is not None and e.begin > on) or (e.end is not None and e.end < on):
                continue
            key = f"{assignment_id}|{e.user}"
            if key in out:
                continue
            lms_user = self.user_lms.get(e.user)
            s: dict[str, Any] | None = (
                latest.get(lms_user) if lms_user is not None else latest.get(f"sis:{e.user}")
            )
            submitted = _ms(s.get("submittedAt")) if s else None
            out[key] = {
                "assignmentId": assignment_id,
                "courseId": a["courseId"],
                "classSourcedId": klass,
                "userSourcedId": e.user,
                "userId": lms_user,
                "schoolSourcedId": e.school,
                "title": a["title"],
                "dueAt": due_ms,
                "pointsPossible": a.get("pointsPossible"),
                "status": status_of(
                    excused=s.get("excused") if s else None,
                    submitted_ms=submitted,
                    due_ms=due_ms,
                    now_ms=now_ms,
                ),
                "submissionId": s["submissionId"] if s else None,
                "submittedAt": submitted,
                "secondsLate": s.get("secondsLate") if s else None,
                "score": s.get("score") if s else None,
            }
        return out


def _later(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Is submission ``a`` the later one (the view's ``submitted_at desc nulls last``)?"""
    ta, tb = _ms(a.get("submittedAt")), _ms(b.get("submittedAt"))
    if ta is None:
        return False
    return tb is None or ta > tb or (ta == tb and a["submissionId"] > b["submissionId"])


def _fingerprint(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in _FIELDS)


_FIELDS = (
    "assignmentId", "courseId", "classSourcedId", "userSourcedId", "userId", "schoolSourcedId", "title",
    "dueAt", "pointsPossible", "status", "submissionId", "submittedAt", "secondsLate", "score",
)  # fmt: skip


class WorkTracker:
    """Reads the four inputs, publishes the rows that change (see the module docstring).

    Args:
        consumer_conf: a consumer configuration with ``group.id`` (offsets are committed for lag
            only: the tracker always rebuilds from the beginning).
        topics: ``assignments``, ``submissions``, ``enrollments``, ``results`` -> topic names.
        tick_s: how often due times are checked (missing work is published within it).
    """

    what = "work tracker"

    def __init__(
        self,
        *,
        consumer_conf: dict[str, Any],
        producer: Producer,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        topics: dict[str, str] | None = None,
        out_topic: str = "analytics.assignment_work.v1",
        tz: tzinfo,
        tick_s: float = 10.0,
        batch_size: int = 5000,
        stage: str = "analytics",
    ) -> None:
        self.topics = {
            "assignments": "lms.assignments.v1",
            "submissions": "lms.submissions.v1",
            "enrollments": "sis.enrollments.v1",
            "results": "lms.provisioning.results.v1",
            **(topics or {}),
        }
        for name in (*self.topics.values(), out_topic):
            serdes.catalog.topic(name)  # declared (ConfigError otherwise)
        self.kind_of = {t: k for k, t in self.topics.items()}
        self.consumer_conf = {
            **consumer_conf,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
        self.producer = producer
        self.serdes = serdes
        self.dead_letters = dead_letters
        self.out_topic = out_topic
        self.book = WorkBook(tz)
        self.tick_s = tick_s
        self.batch_size = batch_size
        self.stage = stage
        self.published: dict[str, tuple[Any, ...]] = {}  # row key -> what was published
        self.keys_of: dict[str, set[str]] = {}  # assignment -> row keys published
        self.counts: Counter[str] = Counter()
        self.ready = False
        self.last_batch_at: float | None = None
        self.last_error: str | None = None
        self._errors: list[str] = []
        self._dues: list[tuple[int, str]] = []  # (due ms, assignment) not yet past
        self._day: date | None = None

    # --- start ----------------------------------------------------------------------------------

    def _load_published(self) -> None:
        conf = {k: v for k, v in self.consumer_conf.items() if k != "group.id"}
        serde = self.serdes[self.out_topic]
        latest: dict[str, dict[str, Any] | None] = {}
        for m in read_to_end(conf, self.out_topic, timeout_s=600):
            key = decode_key(m.key())
            if key is not None:
                latest[key] = serde.decode(m.value())
        self.published.clear()
        self.keys_of.clear()
        for key, value in latest.items():
            if value is not None:
                value["dueAt"], value["submittedAt"] = _ms(value["dueAt"]), _ms(value["submittedAt"])
                self._remember(key, value)
        log.info("%s: %d rows published before this start", self.what, len(self.published))

    def _remember(self, key: str, row: dict[str, Any] | None, assignment: str | None = None) -> None:
        if row is None:
            self.published.pop(key, None)
            if assignment is not None:
                self.keys_of.get(assignment, set()).discard(key)
            return
        self.published[key] = _fingerprint(row)
        self.keys_of.setdefault(row["assignmentId"], set()).add(key)

    def _partitions(self, consumer: Consumer) -> list[TopicPartition]:
        """Every partition of the inputs (``ServiceUnavailable`` if an input does not exist)."""
        meta = consumer.list_topics(timeout=30).topics
        out: list[TopicPartition] = []
        for topic in self.topics.values():
            if topic not in meta or not meta[topic].partitions:
                raise ServiceUnavailable(f"{topic} does not exist: `sislms topology apply`")
            out.extend(TopicPartition(topic, p) for p in meta[topic].partitions)
        return out

    @staticmethod
    def _ends(consumer: Consumer, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """The end offset of every partition that holds records, as seen now."""
        ends: dict[tuple[str, int], int] = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=30)
            if high > low:
                ends[(tp.topic, tp.partition)] = high
        return ends

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._load_published()
        consumer = Consumer(self.consumer_conf)
        partitions = self._partitions(consumer)
        ends = self._ends(consumer, partitions)
        consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions])
        log.info("%s: reading %s from the beginning (to end offsets summing %d)", self.what,
                 ", ".join(self.topics.values()), sum(ends.values()))  # fmt: skip
        touched: set[str] = set()
        started = last_report = next_tick = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    messages = consumer.consume(self.batch_size, 0.2)
                    touched |= self._take(messages, ends)
                    if not self.ready:
                        if ends and not messages:
                            # the last offsets may hold no record (compacted away, markers)
                            for tp in consumer.position([TopicPartition(t, p) for t, p in list(ends)]):
                                if tp.offset >= ends[(tp.topic, tp.partition)]:
                                    del ends[(tp.topic, tp.partition)]
                        if ends:
                            if time.monotonic() - last_report >= 30:
                                last_report = time.monotonic()
                                log.info("%s: reading the inputs: %s", self.what, dict(self.counts))
                            continue
                        self.ready = True
                        READY.set(1)
                        log.info("%s: inputs read in %.1f s: %d assignments, %d enrollments, %d submissions",
                                 self.what, time.monotonic() - started, len(self.book.assignments),
                                 len(self.book.enrollments), len(self.book.submission_of))  # fmt: skip
                        touched = set(self.book.assignments) | set(self.keys_of)
                    if time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + self.tick_s
                        touched |= self._due()
                    if touched or messages:
                        self._publish(touched, consumer, messages)
                        touched = set()
                    self.last_error = None
                except RetriableError as exc:
                    self.last_error = str(exc)
                    log.warning("%s: %s; retrying in %s s", self.what, exc, exc.retry_after)
                    stop.wait(exc.retry_after or 2)
                if time.monotonic() - last_report >= 30:
                    last_report = time.monotonic()
                    log.info("%s: %s", self.what, dict(self.counts))
        finally:
            consumer.close()
            log.info("%s stopped: %s", self.what, dict(self.counts))

    def _take(self, messages: list[Message], ends: dict[tuple[str, int], int]) -> set[str]:
        touched: set[str] = set()
        book = self.book
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ServiceUnavailable(f"consumer error: {err.str()}")
            topic, partition, offset = str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)
            if (topic, partition) in ends and offset + 1 >= ends[(topic, partition)]:
                del ends[(topic, partition)]
            key = decode_key(m.key())
            if key is None:
                continue
            try:
                value = self.serdes[topic].decode(m.value())
            except DecodeError as exc:
                self.dead_letters.send(self.stage, exc, key=m.key(), value=m.value(), source=position(m))
                self.counts["dead_letter"] += 1
                continue
            kind = self.kind_of[topic]
            self.counts[f"{kind}_read"] += 1
            if kind == "enrollments":
                touched |= book.put_enrollment(key, value)
            elif kind == "results":
                touched |= book.put_result(value)
            elif kind == "assignments":
                touched |= book.put_assignment(key, value)
                due = _ms(value.get("dueAt")) if value else None
                if due is not None:
                    heapq.heappush(self._dues, (due, key))
            else:
                touched |= book.put_submission(key, value)
        return touched if self.ready else set()

    def _due(self) -> set[str]:
        """Assignments whose due time has passed since they were last decided, and, when the local
        day changes, work with no due date (whose owers depend on the day)."""
        now = int(time.time() * 1000)
        touched: set[str] = set()
        while self._dues and self._dues[0][0] < now:
            touched.add(heapq.heappop(self._dues)[1])
        today = datetime.fromtimestamp(now / 1000, self.book.tz).date()
        if self._day is not None and today != self._day:
            touched.update(a for a, v in self.book.assignments.items() if v.get("dueAt") is None)
        self._day = today
        return touched

    def _publish(self, touched: set[str], consumer: Consumer, messages: list[Message]) -> None:
        now = int(time.time() * 1000)
        serde = self.serdes[self.out_topic]
        out: list[tuple[str, str, dict[str, Any] | None]] = []
        for assignment in sorted(touched):
            rows = self.book.rows(assignment, now)
            for key, decided in rows.items():
                if self.published.get(key) != _fingerprint(decided):
                    out.append((assignment, key, decided))
            out.extend(
                (assignment, k, None) for k in sorted(self.keys_of.get(assignment, ())) if k not in rows
            )
        for _, key, row in out:
            value: bytes | None = None
            if row is not None:
                value = serde.encode({**row, "decidedAt": now, "meta": {
                    "source": "work-tracker", "sourceChangedAt": now, "ingestedAt": now,
                    "traceId": f"work:{key}:{now}", "sourceVersion": None,
                }})  # fmt: skip
            self.producer.produce(
                self.out_topic, key=encode_key(key), value=value, on_delivery=self._delivered
            )
        remaining = self.producer.flush(60)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise RetriableError(f"rows: {remaining} unconfirmed; errors: {errors[:3]}", retry_after=2)
        self.dead_letters.flush()
        for assignment, key, published in out:
            self._remember(key, published, assignment)
            if published is None:
                ROWS.labels("removed").inc()
                self.counts["removed"] += 1
            else:
                ROWS.labels(published["status"]).inc()
                self.counts[published["status"]] += 1
        offsets = {}
        for m in messages:
            if m.error() is None:
                offsets[(str(m.topic()), int(m.partition() or 0))] = int(m.offset() or 0) + 1
        if offsets:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
            )
        if out:
            self.last_batch_at = time.time()
            log.debug("%s: %d assignments decided, %d rows published", self.what, len(touched), len(out))

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def health(self) -> tuple[bool, dict[str, Any]]:
        healthy = self.last_error is None
        return healthy, {
            "healthy": healthy,
            "ready": self.ready,
            "counts": dict(self.counts),
            "assignments": len(self.book.assignments),
            "rows": len(self.published),
            "last_batch_at": self.last_batch_at,
            "last_error": self.last_error,
        }
