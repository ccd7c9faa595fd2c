"""When the simulated LMS changed, named by SIS ids: the target side of a latency measurement.

:class:`WriteLog` is a :class:`~simulators.lms.store.CanvasStore` listener that stamps every
change a sync makes with the wall-clock time (``time.time()``, epoch seconds) it happened at,
under a key a reader can build from the source system's records:

- ``user_created``, ``user_updated``: ``user|<sis_user_id>``;
- ``enrollment_created``, ``enrollment_updated``: ``enrollment|<user SIS id>|<section SIS id>``
  (the course's SIS id when the section has none);
- ``admin_created``, ``admin_deleted``: ``admin|<user SIS id>|<account SIS id>`` (``root`` for
  the root account);
- ``grade_change``: ``grade|<assignment id>|<user id>`` (Canvas ids).

Each key keeps the times of all its changes, in order; each grade change is also kept with its
score and grade. A change to an object without the SIS ids its key needs is not recorded, and
neither is any other event. The listener runs under the store's lock on every change (a
25,000-user district's first load makes ~320,000), so it does a few dict lookups and an append,
and never raises into the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from simulators.lms.store import CanvasStore, Obj

__all__ = ["WriteLog"]

log = logging.getLogger(__name__)

_ROOT_ACCOUNT_ID = 1


class WriteLog:
    """Wall-clock times of the store's changes, by SIS-named key (see the module docstring).

    Args:
        store: when given, the log starts listening to it (see :meth:`attach`).
        clock: the wall clock (``time.time``; tests pass their own).
    """

    def __init__(self, store: CanvasStore | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.store: CanvasStore | None = None
        self.errors = 0  #: changes whose key could not be made (logged)
        self._clock = clock
        self._lock = threading.Lock()
        self._times: dict[str, list[float]] = {}
        self._grades: list[tuple[str, str, float | None, str | None, float]] = []
        self._keys: dict[str, Callable[[Obj], str | None]] = {
            "user_created": self._user_key,
            "user_updated": self._user_key,
            "enrollment_created": self._enrollment_key,
            "enrollment_updated": self._enrollment_key,
            "admin_created": self._admin_key,
            "admin_deleted": self._admin_key,
            "grade_change": self._grade_key,
        }
        if store is not None:
            self.attach(store)

    def __repr__(self) -> str:
        return f"WriteLog(keys={len(self._times)}, grades={len(self._grades)})"

    # --- wiring ------------------------------------------------------------------------------

    def attach(self, store: CanvasStore) -> WriteLog:
        """Listen to ``store``'s changes from now on."""
        with store.lock:
            self.store = store
            if self not in store.listeners:
                store.listeners.append(self)
        return self

    def detach(self) -> None:
        if self.store is not None and self in self.store.listeners:
            self.store.listeners.remove(self)

    # --- reading -----------------------------------------------------------------------------

    def as_json(self) -> dict[str, list[float]]:
        """``{key: [time, ...]}``, a copy."""
        with self._lock:
            return {key: list(times) for key, times in self._times.items()}

    def grades(self) -> list[dict[str, Any]]:
        """One ``{"assignment_id", "user_id", "score", "grade", "at"}`` per grade change, in order."""
        with self._lock:
            rows = list(self._grades)
        return [
            {"assignment_id": a, "user_id": u, "score": score, "grade": grade, "at": at}
            for a, u, score, grade, at in rows
        ]

    def times(self, key: str) -> list[float]:
        """The times of one key's changes (empty when it never changed)."""
        with self._lock:
            return list(self._times.get(key, ()))

    # --- listening ---------------------------------------------------------------------------

    def __call__(self, event_name: str, obj: Obj) -> None:
        """The store listener. Never raises into the store."""
        make = self._keys.get(event_name)
        if make is None or self.store is None:
            return
        try:
            key = make(obj)
        except Exception:
            log.exception("write log: no key for a %s change", event_name)
            self.errors += 1
            return
        if key is None:
            return
        at = self._clock()
        with self._lock:
            times = self._times.get(key)
            if times is None:
                self._times[key] = [at]
            else:
                times.append(at)
            if event_name == "grade_change":
                self._grades.append(
                    (str(obj["assignment_id"]), str(obj["user_id"]), obj["score"], obj["grade"], at)
                )

    def _user_key(self, user: Obj) -> str | None:
        sis = self._user_sis(user["id"])
        return None if sis is None else f"user|{sis}"

    def _enrollment_key(self, e: Obj) -> str | None:
        assert self.store is not None
        user = self._user_sis(e["user_id"])
        section = self.store.sections.get(e["course_section_id"]) or {}
        where = section.get("sis_section_id") or (self.store.courses.get(e["course_id"]) or {}).get(
            "sis_course_id"
        )
        return None if user is None or where is None else f"enrollment|{user}|{where}"

    def _admin_key(self, admin: Obj) -> str | None:
        assert self.store is not None
        user = self._user_sis(admin["user_id"])
        if admin["account_id"] == _ROOT_ACCOUNT_ID:
            account: str | None = "root"
        else:
            account = (self.store.accounts.get(admin["account_id"]) or {}).get("sis_account_id")
        return None if user is None or account is None else f"admin|{user}|{account}"

    @staticmethod
    def _grade_key(sub: Obj) -> str:
        return f"grade|{sub['assignment_id']}|{sub['user_id']}"

    def _user_sis(self, user_id: int) -> str | None:
        assert self.store is not None
        login = self.store.login_for(user_id)  # indexed by the store: no scan of the logins
        return None if login is None else login["sis_user_id"]
