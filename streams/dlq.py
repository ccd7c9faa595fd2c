"""Dead letters: a record that cannot be processed goes to ``dlq.<stage>.v1``.

The dead letter keeps the original key, value and headers as bytes, the reason and the error,
and where the record came from (topic, partition, offset, timestamp), so that it can be
inspected and re-submitted after a fix. Metadata is repeated in headers (``dlq.*``) for tools
that do not decode Avro. Nothing is dropped silently: the producer is flushed before the caller
commits the offset of the record that failed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message, Producer

from streams.catalog import Catalog
from streams.errors import RetriableError, SkippableError
from streams.serde import Serdes, encode_key

__all__ = ["ATTEMPT_HEADER", "REPLAY_HEADER", "DeadLetterPublisher", "SourcePosition", "position"]

log = logging.getLogger(__name__)

#: Set on a record ``sislms dlq replay`` re-submitted: the dead letter's ``topic:partition:offset``.
REPLAY_HEADER = "dlq.replay.of"
#: Set on a re-submitted record: how many attempts its dead letter had used; a stage that fails
#: it again dead-letters it with one more.
ATTEMPT_HEADER = "dlq.attempt"


@dataclass(frozen=True)
class SourcePosition:
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes | None]] = field(default_factory=tuple)


def position(m: Message) -> SourcePosition:
    """Where a consumed message came from, headers included, for its dead letter."""
    headers = tuple(
        (str(h[0]), h[1] if h[1] is None or isinstance(h[1], bytes) else str(h[1]).encode())
        for h in m.headers() or ()
    )
    where = (str(m.topic()), int(m.partition() or 0), int(m.offset() or 0), m.timestamp()[1])
    return SourcePosition(*where, headers)


def _previous_attempts(headers: Sequence[tuple[str, bytes | None]]) -> int:
    for name, value in headers:
        if name == ATTEMPT_HEADER and value:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class DeadLetterPublisher:
    """Produces dead letters for one or more stages through an idempotent producer."""

    def __init__(self, producer: Producer, serdes: Serdes, catalog: Catalog) -> None:
        self.producer = producer
        self.serdes = serdes
        self.catalog = catalog
        self.sent: Counter[str] = Counter()
        self._errors: list[str] = []

    def send(
        self,
        stage: str,
        error: BaseException,
        *,
        key: bytes | None,
        value: bytes | None,
        source: SourcePosition,
        trace_id: str | None = None,
        attempt: int = 1,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        """Queue one dead letter; ``flush()`` makes it durable (or ``on_delivery`` says when it is,
        for callers that track each record)."""
        spec = self.catalog.dead_letter_topic(stage)
        attempt = max(attempt, _previous_attempts(source.headers) + 1)  # a re-submitted record failing again
        reason = error.reason if isinstance(error, SkippableError) else "unexpected_error"
        letter: dict[str, Any] = {
            "stage": stage,
            "reason": reason,
            "errorType": error.__class__.__name__,
            "errorMessage": str(error)[:4000],
            "sourceTopic": source.topic,
            "sourcePartition": source.partition,
            "sourceOffset": source.offset,
            "sourceTimestamp": source.timestamp_ms,
            "key": key,
            "value": value,
            "headers": {k: v for k, v in source.headers},
            "failedAt": int(time.time() * 1000),
            "attempt": attempt,
            "traceId": trace_id or str(uuid.uuid4()),
        }
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.stage", stage.encode()),
            ("dlq.reason", reason.encode()),
            ("dlq.source", f"{source.topic}:{source.partition}:{source.offset}".encode()),
        ]
        self.producer.produce(
            spec.name,
            key=key if key is not None else encode_key(f"{source.topic}:{source.partition}:{source.offset}"),
            value=self.serdes[spec].encode(letter),
            headers=headers,
            on_delivery=self._delivered if on_delivery is None else _both(self._delivered, on_delivery),
        )
        self.sent[reason] += 1
        # Source coordinates only: never the payload, which may hold student data.
        log.warning(
            "dead-lettered %s:%s:%s to %s (%s: %s)",
            source.topic,
            source.partition,
            source.offset,
            spec.name,
            reason,
            error.__class__.__name__,
        )

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued dead letter is acknowledged by the broker."""
        remaining = self.producer.flush(timeout)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise RetriableError(
                f"{remaining} dead letter(s) not acknowledged; errors: {errors[:3]}", retry_after=1
            )


def _both(
    first: Callable[[Any, Any], None], second: Callable[[Any, Any], None]
) -> Callable[[Any, Any], None]:
    def delivered(err: Any, msg: Any) -> None:
        first(err, msg)
        second(err, msg)

    return delivered
