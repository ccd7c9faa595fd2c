"""The engagement processor: ``lms.activity.v1`` in, ``analytics.engagement_daily.v1`` out.

``lms.activity.v1`` is keyed by user, so one partition sees all of a user's activity. Per user the
processor keeps the events of the **open days** (the last ``horizon_days`` local days before the
user's newest event) and recomputes the user's figures (:mod:`streams.analytics.sessions`)
whenever an event arrives, in whatever order. It writes the (user, course, day) and (user, all,
day) records whose figures changed, with the user's ``revision`` (events taken in so far) as their
version.

- **Repeats.** An event id already in the state changes nothing (``duplicate``).
- **Too late.** An event of a day that has closed is counted ``too_late`` and left out: its day's
  figures were final. ``lms.activity.v1`` (and the analytics store's ``activity_events``) keep it.
- **Replays.** Reading the topic again with the state restored writes nothing new; with the state
  lost, the same figures again (same keys and values).

The state lives in ``analytics.engagement_state.v1`` (see :mod:`streams.stateful`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from typing import Any

from confluent_kafka import Message, Producer
from prometheus_client import Counter as PromCounter

from streams.analytics.sessions import ALL, DayFigures, Hit, daily_figures, local_day
from streams.dlq import DeadLetterPublisher, position
from streams.errors import DecodeError
from streams.serde import Serdes, timestamp_ms
from streams.stateful import Batch, StatefulProcessor

__all__ = ["EngagementProcessor", "UserActivity", "take_in"]

log = logging.getLogger(__name__)

EVENTS = PromCounter(
    "sislms_engagement_events",
    "Activity events the engagement processor read, by outcome (counted, duplicate, too_late, dead_letter).",
    ["outcome"],
)


@dataclass
class UserActivity:
    """One user's engagement state: the events of the open days."""

    user_id: str
    sis_user_id: str | None = None
    revision: int = 0
    first_open_day: date | None = None
    hits: list[Hit] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "sisUserId": self.sis_user_id,
            "revision": self.revision,
            "firstOpenDay": self.first_open_day,
            "hits": [
                {"eventId": h.event_id, "at": h.at_ms, "courseId": h.course, "durationMs": h.duration_ms}
                for h in self.hits
            ],
        }

    @classmethod
    def from_record(cls, v: dict[str, Any]) -> UserActivity:
        return cls(
            user_id=v["userId"],
            sis_user_id=v.get("sisUserId"),
            revision=int(v["revision"]),
            first_open_day=v.get("firstOpenDay"),
            hits=[
                Hit(timestamp_ms(h["at"]), h["eventId"], h.get("courseId"), h.get("durationMs"))
                for h in v["hits"]
            ],
        )


def take_in(
    state: UserActivity, events: list[dict[str, Any]], *, gap_ms: int, tz: tzinfo, horizon_days: int
) -> tuple[UserActivity, dict[tuple[str, date], DayFigures], dict[str, int]]:
    """A user's new state after ``events`` (``lms.activity.v1`` values), the figures that changed
    ((course or ALL, day) -> figures) and the count of each outcome."""
    outcomes = {"counted": 0, "duplicate": 0, "too_late": 0}
    seen = {h.event_id for h in state.hits}
    new = UserActivity(
        state.user_id, state.sis_user_id, state.revision, state.first_open_day, list(state.hits)
    )
    for e in events:
        hit = Hit(timestamp_ms(e["eventTime"]), e["eventId"], e.get("courseId"), e.get("durationMs"))
        if hit.event_id in seen:
            outcomes["duplicate"] += 1
            continue
        if new.first_open_day is not None and local_day(hit.at_ms, tz) < new.first_open_day:
            outcomes["too_late"] += 1
            continue
        seen.add(hit.event_id)
        new.hits.append(hit)
        new.revision += 1
        new.sis_user_id = e.get("sisUserId") or new.sis_user_id
        outcomes["counted"] += 1
    if not outcomes["counted"]:
        return state, {}, outcomes
    new.hits.sort()
    newest_day = local_day(new.hits[-1].at_ms, tz)
    first_open = newest_day - timedelta(days=horizon_days - 1)
    if new.first_open_day is None or first_open > new.first_open_day:
        new.first_open_day = first_open
    new.hits = [h for h in new.hits if local_day(h.at_ms, tz) >= new.first_open_day]
    before = daily_figures(state.hits, gap_ms, tz)
    after = daily_figures(new.hits, gap_ms, tz)
    changed = {k: f for k, f in after.items() if before.get(k) != f}
    return new, changed, outcomes


class EngagementProcessor(StatefulProcessor[UserActivity]):
    """Consumes ``lms.activity.v1`` and writes the engagement figures that change."""

    what = "engagement processor"

    def __init__(
        self,
        *,
        consumer_conf: dict[str, Any],
        producer: Producer,
        serdes: Serdes,
        dead_letters: DeadLetterPublisher,
        activity_topic: str = "lms.activity.v1",
        state_topic: str = "analytics.engagement_state.v1",
        out_topic: str = "analytics.engagement_daily.v1",
        gap_s: float = 1800.0,
        tz: tzinfo,
        horizon_days: int = 14,
        batch_size: int = 2000,
        stage: str = "analytics",
    ) -> None:
        super().__init__(
            consumer_conf=consumer_conf,
            producer=producer,
            serdes=serdes,
            dead_letters=dead_letters,
            input_topic=activity_topic,
            state_topic=state_topic,
            batch_size=batch_size,
            stage=stage,
        )
        serdes.catalog.topic(out_topic)
        self.out_topic = out_topic
        self.gap_ms = int(gap_s * 1000)
        self.tz = tz
        self.horizon_days = horizon_days

    def state_from_record(self, value: dict[str, Any]) -> UserActivity:
        return UserActivity.from_record(value)

    def state_to_record(self, key: str, state: UserActivity) -> dict[str, Any]:
        return state.to_record()

    def handle(self, messages: list[Message]) -> Batch[UserActivity]:
        batch: Batch[UserActivity] = Batch()
        by_user: dict[tuple[int, str], list[dict[str, Any]]] = {}
        serde = self.serdes[self.input_topic]
        for m in messages:
            try:
                value = serde.decode(m.value())
            except DecodeError as exc:
                self.dead_letters.send(self.stage, exc, key=m.key(), value=m.value(), source=position(m))
                self._count("dead_letter")
                continue
            if value is None:
                continue
            # The record's key is its user; the value says so too and is what counts.
            by_user.setdefault((int(m.partition() or 0), value["userId"]), []).append(value)
        for (partition, user), events in by_user.items():
            state = self.state(partition, user) or UserActivity(user)
            new, changed, outcomes = take_in(
                state, events, gap_ms=self.gap_ms, tz=self.tz, horizon_days=self.horizon_days
            )
            for outcome, n in outcomes.items():
                self._count(outcome, n)
            if new is state:
                continue
            batch.changed[(partition, user)] = new
            now = max(timestamp_ms(e["meta"]["ingestedAt"]) for e in events)
            for (course, day), f in sorted(changed.items()):
                batch.writes.append((self.out_topic, f"{user}|{course}|{day.isoformat()}", {
                    "userId": user,
                    "sisUserId": new.sis_user_id,
                    "courseId": None if course == ALL else course,
                    "day": day,
                    "timeOnTaskS": f.seconds,
                    "events": f.events,
                    "sessions": f.sessions,
                    "firstActivityAt": f.first_ms,
                    "lastActivityAt": f.last_ms,
                    "revision": new.revision,
                    "meta": {
                        "source": "engagement",
                        "sourceChangedAt": f.last_ms,
                        "ingestedAt": now,
                        "traceId": f"engagement:{user}:{new.revision}",
                        "sourceVersion": str(new.revision),
                    },
                }))  # fmt: skip
        return batch

    def _count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[outcome] += n
            EVENTS.labels(outcome).inc(n)
