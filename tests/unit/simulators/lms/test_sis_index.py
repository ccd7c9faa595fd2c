"""The LMS simulator's SIS-id index answers as a scan of every object would, through creates,
SIS id changes, deletions and a save and load."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from simulators.lms.store import CanvasError, CanvasStore

TABLES = {
    "sis_account_id": "accounts", "sis_term_id": "terms", "sis_user_id": "logins",
    "unique_id": "logins", "sis_course_id": "courses", "sis_section_id": "sections",
}  # fmt: skip


def _scan(store: CanvasStore, field: str, value: str) -> Any:
    for obj in getattr(store, TABLES[field]).values():
        if obj.get(field) == value and obj.get("workflow_state") != "deleted":
            return obj
    return None


def _check(store: CanvasStore, values: list[str]) -> None:
    for field, table in TABLES.items():
        for value in values:
            assert store._sis_index(getattr(store, table), field, value) is _scan(store, field, value), (
                field,
                value,
            )
    for user in store.users.values():
        login = store.login_of(user)
        assert login["user_id"] == user["id"]
        assert login is next(x for x in store.logins.values() if x["user_id"] == user["id"])


def _try(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except CanvasError:
        return None  # taken, not found: the store said no, as Canvas would


def test_lookups_by_sis_id_agree_with_a_scan_through_random_changes(tmp_path: Path) -> None:
    rng = random.Random(11)
    store = CanvasStore()
    values = [f"v{i}" for i in range(12)]
    term = store.create_term({"name": "T", "sis_term_id": "v0"})
    for _ in range(400):
        op, v = rng.randrange(10), rng.choice(values)
        if op == 0:
            _try(store.create_sub_account, "1", {"name": "A", "sis_account_id": v})
        elif op == 1 and store.accounts:
            a = rng.choice([a for a in store.accounts.values() if a["id"] != 1] or [None])
            if a:
                _try(store.update_account, a["id"], {"sis_account_id": v})
        elif op == 2:
            _try(
                store.create_user,
                "1",
                {"user": {"name": "U"}, "pseudonym": {"unique_id": v, "sis_user_id": rng.choice(values)}},
            )
        elif op == 3 and store.logins:
            login = rng.choice(list(store.logins.values()))
            _try(store.update_login, login["id"], {rng.choice(["sis_user_id", "unique_id"]): v})
        elif op == 4 and store.users:
            _try(store.remove_user, "1", rng.choice(list(store.users)))
        elif op == 5:
            _try(
                store.create_course, "1", {"course": {"name": "C", "sis_course_id": v, "term_id": term["id"]}}
            )
        elif op == 6 and store.courses:
            course = rng.choice(list(store.courses.values()))
            _try(store.update_course, course["id"], {"course": {"sis_course_id": v}})
        elif op == 7 and store.courses:
            _try(
                store.create_section,
                rng.choice(list(store.courses)),
                {"course_section": {"name": "S", "sis_section_id": v}},
            )
        elif op == 8 and store.sections:
            _try(store.delete_section, rng.choice(list(store.sections)))
        elif op == 9 and store.courses:
            _try(store.delete_course, rng.choice(list(store.courses)), "delete")
        if rng.random() < 0.1:
            _check(store, values)
    _check(store, values)
    assert len(store.logins) > 10 and len(store.courses) > 10  # the walk did make objects

    path = tmp_path / "lms.state"
    store.save(path)
    loaded = CanvasStore.load(path)
    _check(loaded, values)
    made = _try(
        loaded.create_user,
        "1",
        {"user": {"name": "N"}, "pseudonym": {"unique_id": "new", "sis_user_id": "new"}},
    )
    assert made is not None and loaded.user("sis_user_id:new")["id"] == made["id"]
