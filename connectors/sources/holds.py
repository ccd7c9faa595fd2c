"""Mass-change safety: deletions too large to trust are held for an operator.

Every peer product has lost a district's courses to a partial or broken source file. When one
sync would delete more than ``threshold`` of an entity's live records (and at least
``min_records``), its deletions are not published: they are written to a hold file, reported in
the log and the ``sislms_source_holds_pending`` metric, and wait for ``sislms sis approve <id>``
(the source then publishes the tombstones) or ``sislms sis reject <id>`` (they are dropped).
Creates and updates of the same sync are published as usual. A key that comes back (a new
version published) while its deletion is held leaves the hold, so an approval never deletes a
record the source has since seen alive.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from streams.errors import ConfigError

if TYPE_CHECKING:
    from connectors.sources.base import TopicWriter

__all__ = ["Hold", "HoldBook", "MassChangeGuard"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MassChangeGuard:
    threshold: float = 0.10
    min_records: int = 10

    def exceeds(self, live_before: int, deletions: int) -> bool:
        if deletions < self.min_records:
            return False
        return live_before == 0 or deletions / live_before > self.threshold


@dataclass
class Hold:
    id: str
    source: str
    entity: str
    topic: str
    live_before: int
    deletions: list[str]
    created_at: str
    status: str = "pending"  # pending | approved | rejected | applied
    decided_at: str | None = None
    note: str = ""
    returned: list[str] = field(default_factory=list)  # keys seen alive again while held

    @property
    def share(self) -> float:
        return len(self.deletions) / self.live_before if self.live_before else 1.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class HoldBook:
    """The hold files of every source, one JSON file per hold, in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, hold_id: str) -> Path:
        if not hold_id.replace("-", "").isalnum():
            raise ConfigError(f"{hold_id!r} is not a hold id (see `sislms sis holds`)")
        return self.folder / f"{hold_id}.json"

    def _write(self, hold: Hold) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(hold), handle, indent=1)
        os.replace(tmp, self._path(hold.id))

    def create(
        self, *, source: str, entity: str, topic: str, live_before: int, deletions: list[str], note: str = ""
    ) -> Hold:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        hold = Hold(
            f"{stamp}-{secrets.token_hex(3)}",
            source,
            entity,
            topic,
            live_before,
            sorted(deletions),
            _now(),
            note=note,
        )
        self._write(hold)
        return hold

    def hold_if_mass(
        self,
        guard: MassChangeGuard,
        *,
        source: str,
        entity: str,
        topic: str,
        live_before: int,
        deletions: list[str],
        note: str,
    ) -> Hold | None:
        """Hold ``deletions`` when ``guard`` says they are too many (and say so in the log);
        None when the caller may publish them."""
        if not guard.exceeds(live_before, len(deletions)):
            return None
        hold = self.create(
            source=source, entity=entity, topic=topic, live_before=live_before, deletions=deletions, note=note
        )
        log.warning(
            "%s: HELD %d deletion(s) of %s (%.0f%% of %d live): approve with `sislms sis approve %s` "
            "or reject with `sislms sis reject %s`",
            source, len(deletions), entity, 100 * hold.share, live_before, hold.id, hold.id,
        )  # fmt: skip
        return hold

    def apply(self, hold: Hold, writer: TopicWriter) -> int:
        """Publish an approved hold's tombstones, wait for the broker, mark it applied."""
        for key in hold.deletions:
            writer.tombstone(hold.entity, hold.topic, key)
        writer.flush()
        self.mark_applied(hold)
        log.info(
            "%s: applied hold %s: %d tombstone(s) on %s",
            hold.source,
            hold.id,
            len(hold.deletions),
            hold.topic,
        )
        return len(hold.deletions)

    def get(self, hold_id: str) -> Hold:
        path = self._path(hold_id)
        if not path.exists():
            raise ConfigError(f"no hold {hold_id!r} (see `sislms sis holds`)")
        return Hold(**json.loads(path.read_text()))

    def list(self, *, source: str | None = None, status: str | None = None) -> list[Hold]:
        if not self.folder.exists():
            return []
        holds = [Hold(**json.loads(p.read_text())) for p in sorted(self.folder.glob("*.json"))]
        return [
            h
            for h in holds
            if (source is None or h.source == source) and (status is None or h.status == status)
        ]

    def decide(self, hold_id: str, *, approve: bool) -> Hold:
        hold = self.get(hold_id)
        if hold.status != "pending":
            raise ConfigError(f"hold {hold_id} is already {hold.status}")
        hold.status = "approved" if approve else "rejected"
        hold.decided_at = _now()
        self._write(hold)
        return hold

    def mark_applied(self, hold: Hold) -> None:
        hold.status = "applied"
        self._write(hold)

    def key_returned(self, source: str, entity: str, keys: set[str]) -> None:
        """Drop keys from this source's pending holds for ``entity``: they were seen alive again."""
        for hold in self.list(source=source, status="pending"):
            if hold.entity != entity:
                continue
            back = keys.intersection(hold.deletions)
            if back:
                hold.deletions = [k for k in hold.deletions if k not in back]
                hold.returned = sorted(set(hold.returned) | back)
                self._write(hold)
