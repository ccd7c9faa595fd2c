"""The simulated SIS's data: a generated district, its changes, and the queries over it.

Every write stamps ``dateLastModified`` from one clock that never goes back and appends a
:class:`Change` to the ground-truth log, which tests and reconciliation read back. A soft
delete sets ``status='tobedeleted'`` (what a delta consumer sees); a hard delete removes the
record (only a full snapshot notices).

:meth:`SisStore.save` writes the whole store to a file and :meth:`SisStore.load` reads it back,
so a restarted simulator goes on from where it stopped.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from connectors.oneroster.filter import And, Filter, Operator, Predicate
from connectors.oneroster.models import format_instant, parse_instant
from connectors.oneroster.query import Query
from simulators.serving import read_state, write_state

__all__ = ["Change", "SisStore"]


@dataclass(frozen=True)
class Change:
    """One change the simulator made: the ground truth a sync must reproduce."""

    seq: int
    at: str  # the dateLastModified it stamped
    collection: str
    sourcedId: str  # noqa: N815 - OneRoster's spelling
    op: str  # create | update | delete | hard_delete
    kind: str  # what happened in school terms: enrollment, withdrawal, new_hire, grade_entry, ...

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Clock:
    """UTC milliseconds that never repeat a value and never go back."""

    def __init__(self, now: Callable[[], float] = time.time, last: int = 0) -> None:
        self._now = now
        self._last = last

    @property
    def last(self) -> int:
        """The last value given (epoch ms), 0 before the first."""
        return self._last

    def resume_after(self, ms: int) -> None:
        """Never give ``ms`` or anything before it (a restored store's last stamp)."""
        self._last = max(self._last, ms)

    def tick(self) -> str:
        ms = max(int(self._now() * 1000), self._last + 1)
        self._last = ms
        return format_instant(datetime.fromtimestamp(ms / 1000, UTC))


_STATE_KIND = "sislms.sis-store"


class SisStore:
    """Thread-safe collections with a ``dateLastModified`` index and a change log.

    Attributes:
        listeners: called with every :class:`Change` (under the store's lock).
        meta: plain data its owner keeps with the store, saved and loaded with it (the simulator
            keeps its district's spec and context there).
    """

    def __init__(
        self,
        collections: dict[str, dict[str, dict[str, Any]]],
        *,
        clock: _Clock | None = None,
        changes: list[Change] | None = None,
        index: dict[str, list[tuple[str, str]]] | None = None,
        meta: dict[str, Any] | None = None,
    ):
        self._data = collections
        self._lock = threading.RLock()
        self._clock = clock or _Clock()
        self._changes: list[Change] = changes if changes is not None else []
        # collection -> sorted [(dateLastModified, sourcedId)], for delta queries.
        self._index: dict[str, list[tuple[str, str]]] = (
            index
            if index is not None
            else {
                name: sorted((str(r.get("dateLastModified", "")), sid) for sid, r in records.items())
                for name, records in collections.items()
            }
        )
        self.listeners: list[Callable[[Change], None]] = []
        self.meta: dict[str, Any] = meta if meta is not None else {}

    # --- persistence ---------------------------------------------------------------------
    def save(self, path: Path) -> int:
        """Write the whole store to ``path`` atomically (see :func:`simulators.serving.write_state`):
        the collections, their indexes, the change log, the clock's last value and :attr:`meta`,
        as of one instant. Returns :attr:`last_seq` at that instant.

        Only references are copied under the lock (records are replaced, never changed in place,
        and changes are frozen), so writers wait milliseconds while the file is written."""
        with self._lock:
            state = {
                "collections": {name: dict(table) for name, table in self._data.items()},
                "index": {name: list(entries) for name, entries in self._index.items()},
                "changes": list(self._changes),
                "clock_last": self._clock.last,
                "meta": dict(self.meta),
            }
            seq = self.last_seq
        write_state(path, _STATE_KIND, state)
        return seq

    @classmethod
    def load(cls, path: Path, *, clock: _Clock | None = None) -> SisStore:
        """A store as :meth:`save` wrote it to ``path`` (its clock goes on after the saved
        stamps, even if the wall clock went back). Raises
        :class:`~simulators.serving.StateFileError` for a file that is not a SIS store's state."""
        state = read_state(path, _STATE_KIND)
        clock = clock or _Clock()
        clock.resume_after(int(state["clock_last"]))
        return cls(
            state["collections"],
            clock=clock,
            changes=state["changes"],
            index=state["index"],
            meta=state["meta"],
        )

    # --- reads ---------------------------------------------------------------------------
    @property
    def collections(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self._data

    def get(self, collection: str, sourced_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._data.get(collection, {}).get(sourced_id)

    def count(self, collection: str) -> int:
        with self._lock:
            return len(self._data.get(collection, {}))

    def records(self, collection: str, where: Callable[[dict[str, Any]], bool] | None = None) -> list[dict]:
        with self._lock:
            values = self._data.get(collection, {}).values()
            return [r for r in values if where is None or where(r)]

    def snapshot(
        self, collections: Iterable[str] | None = None
    ) -> tuple[int, dict[str, list[dict[str, Any]]]]:
        """(the last change's seq, ``{collection: [record, ...]}``) at one instant: every
        collection, or the ones named (an unknown one is empty). The records are the stored
        dicts, which writes replace rather than change."""
        with self._lock:
            names = list(self._data) if collections is None else list(collections)
            return self.last_seq, {name: list(self._data.get(name, {}).values()) for name in names}

    def query(
        self, collection: str, query: Query, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Filter, sort, page and select, using the index when the filter bounds dateLastModified."""
        with self._lock:
            if query.filter is None and query.sort is None and where is None:
                # A plain page (a snapshot's): slice in storage order without copying the table.
                table = self._data.get(collection, {})
                page = list(islice(table.values(), query.offset, query.offset + query.limit))
                return replace(query, offset=0).apply(page)[0], len(table)
            candidates = self._candidates(collection, query.filter)
            if where is not None:
                candidates = [r for r in candidates if where(r)]
            return query.apply(candidates)

    def _candidates(self, collection: str, flt: Filter | None) -> list[dict[str, Any]]:
        records = self._data.get(collection, {})
        bound = _lower_bound(flt)
        if bound is None:
            return list(records.values())
        index = self._index.get(collection, [])
        start = bisect.bisect_left(index, (bound, ""))
        return [records[sid] for _, sid in index[start:] if sid in records]

    def changes(self, since: int = 0, limit: int | None = None) -> list[Change]:
        with self._lock:
            found = self._changes[since:]
            return found[:limit] if limit is not None else list(found)

    @property
    def last_seq(self) -> int:
        return len(self._changes)

    # --- writes --------------------------------------------------------------------------
    def now(self) -> str:
        return self._clock.tick()

    def put(self, collection: str, record: Mapping[str, Any], *, kind: str, stamp: bool = True) -> Change:
        """Create or replace a record (a new dict; records are never changed in place)."""
        with self._lock:
            new = dict(record)
            if stamp:
                new["dateLastModified"] = self._clock.tick()
            sid = str(new["sourcedId"])
            table = self._data.setdefault(collection, {})
            old = table.get(sid)
            op = "create" if old is None else "update"
            self._unindex(collection, old)
            table[sid] = new
            bisect.insort(self._index.setdefault(collection, []), (new["dateLastModified"], sid))
            return self._log(collection, sid, op, kind, new["dateLastModified"])

    def update(self, collection: str, sourced_id: str, changes: Mapping[str, Any], *, kind: str) -> Change:
        with self._lock:
            old = self._data.get(collection, {}).get(sourced_id)
            if old is None:
                raise KeyError(f"{collection}/{sourced_id} does not exist")
            return self.put(collection, {**old, **changes}, kind=kind)

    def delete(self, collection: str, sourced_id: str, *, kind: str, hard: bool = False) -> Change:
        with self._lock:
            old = self._data.get(collection, {}).get(sourced_id)
            if old is None:
                raise KeyError(f"{collection}/{sourced_id} does not exist")
            if not hard:
                change = self.put(collection, {**old, "status": "tobedeleted"}, kind=kind)
                return Change(change.seq, change.at, collection, sourced_id, "delete", kind)
            self._unindex(collection, old)
            del self._data[collection][sourced_id]
            return self._log(collection, sourced_id, "hard_delete", kind, self._clock.tick())

    def _unindex(self, collection: str, old: Mapping[str, Any] | None) -> None:
        if old is None:
            return
        index = self._index.get(collection, [])
        entry = (str(old.get("dateLastModified", "")), str(old["sourcedId"]))
        at = bisect.bisect_left(index, entry)
        if at < len(index) and index[at] == entry:
            del index[at]

    def _log(self, collection: str, sid: str, op: str, kind: str, at: str) -> Change:
        change = Change(len(self._changes) + 1, at, collection, sid, op, kind)
        if op == "update" and self._data[collection][sid].get("status") == "tobedeleted":
            change = Change(change.seq, at, collection, sid, "delete", kind)
        self._changes.append(change)
        for listener in self.listeners:
            listener(change)
        return change


def _lower_bound(flt: Filter | None) -> str | None:
    """The smallest dateLastModified the filter admits, when it says (a >, >= or = bound,
    alone or inside an AND); None when every record must be looked at."""
    if flt is None:
        return None
    predicates: Iterable[Filter] = flt.operands if isinstance(flt, And) else (flt,)
    bounds = [
        p.value
        for p in predicates
        if isinstance(p, Predicate)
        and p.field == "dateLastModified"
        and p.op in (Operator.GT, Operator.GE, Operator.EQ)
    ]
    if not bounds:
        return None
    # Normalise to our stored format so string order is time order.
    try:
        return max(format_instant(parse_instant(b)) for b in bounds)
    except ValueError:
        return None
