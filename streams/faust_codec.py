"""The serde kernel inside Faust: a ``faust.Schema`` for our topics.

``AvroSchema`` decodes keys (UTF-8) and values (Confluent wire format) with the same
``TopicSerde`` the connectors use, and encodes what agents send.

Faust's own reaction to a value that does not decode is to ack it and raise the error inside
the agent, which stops the agent. Instead, this schema writes the record to
``dlq.<stage>.v1`` with its original bytes, waits until the broker has it, and hands the agent
the ``DEAD_LETTERED`` marker, which ``live()`` filters out. The offset is committed by Faust
only after that, so nothing is lost and the agent keeps running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import faust
from faust.types import AppT, CodecArg
from faust.types.tuples import Message

from streams.dlq import DeadLetterPublisher, SourcePosition
from streams.errors import DecodeError
from streams.serde import TopicSerde, decode_key, encode_key

__all__ = ["DEAD_LETTERED", "AvroSchema", "live", "message_position"]


def _headers(raw: Any) -> tuple[tuple[str, bytes | None], ...]:
    items = raw.items() if isinstance(raw, dict) else (raw or ())
    return tuple((str(k), v) for k, v in items)


def message_position(message: Message) -> SourcePosition:
    """Where a Faust message came from, as a dead letter records it."""
    return SourcePosition(
        message.topic,
        message.partition,
        message.offset,
        int(message.timestamp * 1000) if message.timestamp else None,
        _headers(message.headers),
    )


class _DeadLettered:
    """Marker for a record that went to a dead-letter topic instead of the agent."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEAD_LETTERED"

    def __bool__(self) -> bool:
        return False


DEAD_LETTERED: Any = _DeadLettered()


class AvroSchema(faust.Schema):
    """Keys as UTF-8 strings, values as Avro records of one topic's contract.

    ``serde`` is the topic's serde, or a mapping of topic name to serde when one Faust topic
    subscribes to several Kafka topics (an agent that joins them by key): each message is then
    decoded with the serde of the topic it came from.
    """

    def __init__(
        self, serde: TopicSerde | Mapping[str, TopicSerde], dead_letters: DeadLetterPublisher, stage: str
    ) -> None:
        super().__init__(key_type=None, value_type=None, allow_empty=True)
        self.serdes: Mapping[str, TopicSerde] = {} if isinstance(serde, TopicSerde) else dict(serde)
        self.serde: TopicSerde | None = serde if isinstance(serde, TopicSerde) else None
        self.dead_letters = dead_letters
        self.stage = stage
        self._bad_keys: set[tuple[str, int, int]] = set()

    def _dead_letter(self, message: Message, exc: DecodeError) -> None:
        self.dead_letters.send(
            self.stage,
            exc,
            key=message.key,
            value=message.value,
            source=message_position(message),
        )
        self.dead_letters.flush()  # durable before Faust may commit past it

    def loads_key(
        self, app: AppT, message: Message, *, loads: Any = None, serializer: CodecArg | None = None
    ) -> Any:
        try:
            return decode_key(message.key)
        except DecodeError as exc:
            self._dead_letter(message, exc)
            self._bad_keys.add((message.topic, message.partition, message.offset))
            return None

    def loads_value(
        self, app: AppT, message: Message, *, loads: Any = None, serializer: CodecArg | None = None
    ) -> Any:
        where = (message.topic, message.partition, message.offset)
        if where in self._bad_keys:
            self._bad_keys.discard(where)
            return DEAD_LETTERED
        serde = self.serde or self.serdes[message.topic]
        try:
            return serde.decode(message.value)
        except DecodeError as exc:
            self._dead_letter(message, exc)
            return DEAD_LETTERED

    def dumps_key(
        self, app: AppT, key: Any, *, serializer: CodecArg | None = None, headers: Any
    ) -> tuple[Any, Any]:
        return encode_key(key), headers

    def dumps_value(
        self, app: AppT, value: Any, *, serializer: CodecArg | None = None, headers: Any
    ) -> tuple[Any, Any]:
        if self.serde is None:
            raise TypeError(
                "an AvroSchema over several topics only decodes; send with the target topic's schema"
            )
        return self.serde.encode(value), headers


async def live(stream: Any) -> AsyncIterator[Any]:
    """Iterate a Faust stream's events, skipping the ones that went to a dead-letter topic."""
    async for event in stream.events():
        if event.value is DEAD_LETTERED:
            continue
        yield event
