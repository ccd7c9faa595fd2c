"""The lean fold of provisioning commands (the bench's whole-district end-state check) says what
the full fold says: the live targets, their attributes (by digest), and repeated commands."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.roster.commands import diff
from streams.roster.desired import Target
from streams.roster.plan import attrs_digest, fold_commands, fold_digests

META = {"source": "t", "sourceChangedAt": datetime.now(UTC), "ingestedAt": datetime.now(UTC), "traceId": "t"}


def _values() -> list[dict]:
    first = {
        "user|u1": Target("user", {"user_id": "u1", "status": "active"}),
        "enrollment|e1": Target("enrollment", {"role": "student", "status": "active"}),
        "enrollment|e2": Target("enrollment", {"role": "teacher", "status": "active"}),
    }
    c1, emitted = diff({}, first)
    second = {**first, "enrollment|e1": Target("enrollment", {"role": "ta", "status": "active"})}
    del second["enrollment|e2"]
    c2, _ = diff(emitted, second)
    values = [c.to_value(None, META) for c in (*c1, *c2)]
    return [*values, values[0]]  # the first command re-sent (same id)


def test_the_lean_fold_agrees_with_the_full_one() -> None:
    values = _values()
    full, lean = fold_commands(values), fold_digests(values)
    assert lean.records == full.records == 6
    assert lean.duplicates == full.duplicates == 1
    assert lean.state == {t: attrs_digest(a) for t, a in full.state.items()}
    assert set(lean.state) == {("user", "u1"), ("enrollment", "e1")}  # e2 unenrolled
    assert lean.state[("enrollment", "e1")] == attrs_digest({"role": "ta", "status": "active"})
    assert lean.state[("enrollment", "e1")] != attrs_digest({"role": "student", "status": "active"})
