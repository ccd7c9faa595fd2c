"""The small reference data every roster worker keeps whole: orgs and courses.

A role at an org needs the org's type (a school's sub-account or the district root), and a
designer's template roles need the course catalog. Both are small (hundreds of orgs, a few
thousand courses even for a large district) and change rarely, so each worker reads
``sis.orgs.v1`` and ``sis.courses.v1`` entirely, with ``assign()`` (no consumer group, nothing
committed), into memory: a replica. This replaces Faust's GlobalTable, whose changelog recovery
loops when several workers share it (faust-streaming issue #283); the compacted source topics
are the changelog already.

:meth:`Reference.start` returns once the replica has read both topics to the end seen at
start, then a daemon thread keeps tailing them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.errors import DecodeError, ServiceUnavailable
from streams.roles.facts import CourseFacts, OrgFacts
from streams.serde import Serdes, decode_key

__all__ = ["Reference"]

log = logging.getLogger(__name__)


class Reference:
    """Orgs and courses by sourcedId, kept current by a background reader."""

    def __init__(self, conf: dict[str, Any], serdes: Serdes, orgs_topic: str, courses_topic: str) -> None:
        self._conf = conf
        self._serdes = serdes
        self._topics = {orgs_topic: "orgs", courses_topic: "courses"}
        self.orgs: dict[str, OrgFacts] = {}
        self.courses: dict[str, CourseFacts] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.records = 0
        self.on_change: Callable[[str, str], None] | None = None
        self._positions: dict[tuple[str, int], int] = {}  # next offset to read, per partition
        self._verified_at = 0.0
        self._probe: Consumer | None = None

    def start(self, timeout_s: float = 120.0) -> Reference:
        """Read both topics to their current end (raises ``ServiceUnavailable`` after ``timeout_s``),
        then keep following them in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="roster-reference", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise ServiceUnavailable(f"the roster reference data was not read within {timeout_s:.0f} s")
        log.info("reference data ready: %d orgs, %d courses", len(self.orgs), len(self.courses))
        return self

    async def caught_up(self, timeout_s: float = 10.0, every_s: float = 1.0) -> bool:
        """Wait until the replica has read everything on its topics now (at most ``timeout_s``).

        The sources publish orgs and courses before the users that refer to them, so a user
        decided after this sees its orgs and the course catalog. Checked at most once per
        ``every_s``: between checks the answer stands.
        """
        now = time.monotonic()
        if now - self._verified_at < every_s:
            return True
        ends = await asyncio.to_thread(self._ends)
        deadline = now + timeout_s
        while any(self._positions.get(tp, 0) < high for tp, high in ends.items()):
            if time.monotonic() > deadline:
                log.warning("reference: not caught up after %.0f s; deciding with what it has", timeout_s)
                return False
            await asyncio.sleep(0.05)
        self._verified_at = time.monotonic()
        return True

    def _ends(self) -> dict[tuple[str, int], int]:
        if self._probe is None:
            self._probe = Consumer({**self._conf, "group.id": "sislms-roster-reference-probe"})
        ends = {}
        for topic in self._topics:
            info = self._probe.list_topics(topic, timeout=10).topics[topic]
            for p in info.partitions:
                low, high = self._probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[(topic, p)] = high
        return ends

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _apply(self, topic: str, key: str | None, value: bytes | None) -> None:
        if key is None:
            return
        what = self._topics[topic]
        try:
            record = self._serdes[topic].decode(value)
        except DecodeError:
            # the orgs and courses agents dead-letter the same record; here it is just not used
            log.warning("reference: a %s record does not decode; skipped", what)
            return
        if what == "orgs":
            if record is None:
                self.orgs.pop(key, None)
            else:
                self.orgs[key] = OrgFacts.from_record(record)
        elif record is None:
            self.courses.pop(key, None)
        else:
            self.courses[key] = CourseFacts.from_record(record)
        self.records += 1
        if self._ready.is_set() and self.on_change is not None:
            self.on_change(what, key)

    def _run(self) -> None:
        consumer = Consumer(
            {
                **self._conf,
                "group.id": f"sislms-roster-reference-{time.time_ns()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            ends: dict[tuple[str, int], int] = {}
            assignment = []
            for topic in self._topics:
                info = consumer.list_topics(topic, timeout=30).topics.get(topic)
                if info is None or info.error is not None:
                    log.error("reference: topic %s is not available", topic)
                    return
                for p in info.partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                    if high > low:
                        ends[(topic, p)] = high
                    assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
            consumer.assign(assignment)
            if not ends:
                self._ready.set()
            while not self._stop.is_set():
                batch = consumer.consume(5000, timeout=0.5)
                if not batch and ends:
                    positions = consumer.position([TopicPartition(t, p) for t, p in ends])
                    for tp in positions:
                        if tp.offset >= ends[(tp.topic, tp.partition)]:
                            del ends[(tp.topic, tp.partition)]
                    if not ends:
                        self._ready.set()
                for m in batch:
                    error = m.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("reference: %s", error)
                        continue
                    self._apply(str(m.topic()), decode_key(m.key()), m.value())
                    self._positions[(str(m.topic()), int(m.partition() or 0))] = int(m.offset() or 0) + 1
                    where = (m.topic(), m.partition())
                    if where in ends and (m.offset() or 0) + 1 >= ends[where]:
                        del ends[where]
                        if not ends:
                            self._ready.set()
        except Exception:
            log.exception("reference: the reader stopped")
            raise
        finally:
            consumer.close()
