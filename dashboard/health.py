"""Sync health that lives outside the analytics store: consumer lag per group, from Kafka.

Reading every group's committed offsets and every partition's end takes a few hundred
milliseconds on a busy cluster, so the answer is cached for ``ttl_s`` and refreshed in a worker
thread; a page never waits for more than one refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

__all__ = ["GroupLag", "KafkaLag"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str
    topics: tuple[str, ...]
    lag: int  #: records behind, over every partition with a committed offset


class KafkaLag:
    """Consumer groups and their lag; ``prefixes`` limits the groups shown (empty: all)."""

    def __init__(
        self, client_conf: dict[str, Any], prefixes: tuple[str, ...] = (), ttl_s: float = 15.0
    ) -> None:
        self.client_conf = client_conf
        self.prefixes = prefixes
        self.ttl_s = ttl_s
        self._cached: tuple[float, list[GroupLag]] | None = None
        self._lock = asyncio.Lock()
        self.error: str | None = None

    async def groups(self) -> list[GroupLag]:
        async with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.ttl_s:
                try:
                    lags = await asyncio.to_thread(self._read)
                    self.error = None
                except Exception as exc:  # shown on the page: the broker may be away
                    self.error = f"{exc.__class__.__name__}: {exc}"
                    log.warning("dashboard: consumer lag unavailable: %s", self.error)
                    return self._cached[1] if self._cached else []
                self._cached = (time.monotonic(), lags)
            return self._cached[1]

    def _read(self) -> list[GroupLag]:
        admin = AdminClient({**self.client_conf, "log_level": 3})
        listed = admin.list_consumer_groups(request_timeout=10).result()
        wanted = [
            g
            for g in listed.valid
            if not self.prefixes or any(g.group_id.startswith(p) for p in self.prefixes)
        ]
        out: list[GroupLag] = []
        if not wanted:
            return out
        consumer = Consumer({**self.client_conf, "group.id": "sislms-dashboard-lag", "log_level": 3})
        try:
            for g in sorted(wanted, key=lambda g: g.group_id):
                req = [ConsumerGroupTopicPartitions(g.group_id)]
                offsets = admin.list_consumer_group_offsets(req, request_timeout=10)[g.group_id].result()
                lag, topics = 0, set()
                for tp in offsets.topic_partitions or []:
                    if tp.offset < 0:
                        continue
                    topics.add(tp.topic)
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(tp.topic, tp.partition), timeout=10
                    )
                    lag += max(0, high - tp.offset)
                state = str(getattr(g.state, "name", g.state)).lower()
                out.append(GroupLag(g.group_id, state, tuple(sorted(topics)), lag))
        finally:
            consumer.close()
        return out
