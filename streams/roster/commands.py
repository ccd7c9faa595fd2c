"""From "what the LMS should hold" to provisioning commands: the diff, and deterministic ids.

An agent keeps, per key, the targets it last emitted (``emitted``: state key -> ``{"k": kind,
"a": attrs, "n": sequence}``). :func:`diff` compares them with the targets the facts call for
now and returns only the commands for what changed, so a replay or a restart that recomputes the
same targets emits nothing. A command's ``sequence`` is the target's running number and its
``commandId`` a UUID derived from (target, sequence, action, attributes): recomputing the same
change gives the same id, which the sink deduplicates.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.roster.desired import Target, target_id

__all__ = ["Command", "diff"]

_NAMESPACE = uuid.UUID("6f1f3c8e-54a8-4c55-9a55-1e5b8f3f4a10")

#: (kind) -> (action when new, action when changed, action when gone)
_ACTIONS: dict[str, tuple[str, str, str]] = {
    "user": ("create_user", "update_user", "deactivate_user"),
    "account": ("upsert_account", "upsert_account", "upsert_account"),
    "term": ("upsert_term", "upsert_term", "upsert_term"),
    "course": ("upsert_course", "upsert_course", "upsert_course"),
    "section": ("upsert_section", "upsert_section", "upsert_section"),
    "enrollment": ("enroll", "enroll", "unenroll"),
    "account_admin": ("grant_admin", "grant_admin", "revoke_admin"),
}


@dataclass(frozen=True, slots=True)
class Command:
    """One provisioning command, ready to be encoded as ``lms.provisioning.v1``."""

    command_id: str
    action: str
    target_type: str
    target_sis_id: str
    sequence: int
    attributes: Mapping[str, str | None]

    def to_value(self, reason: str | None, meta: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "commandId": self.command_id,
            "action": self.action,
            "targetType": self.target_type,
            "targetSisId": self.target_sis_id,
            "sequence": self.sequence,
            "attributes": dict(self.attributes),
            "reason": reason,
            "meta": dict(meta),
        }


def _canonical(attrs: Mapping[str, str | None]) -> str:
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"))


def _command(key: str, kind: str, action: str, attrs: Mapping[str, str | None], seq: int) -> Command:
    tid = target_id(key)
    name = f"{kind}|{tid}|{seq}|{action}|{_canonical(attrs)}"
    return Command(str(uuid.uuid5(_NAMESPACE, name)), action, kind, tid, seq, attrs)


def _action(kind: str, before: Mapping[str, Any] | None, after: Target | None) -> str | None:
    """The action from ``before`` (a live emitted entry, or None) to ``after`` (None: gone)."""
    new, changed, gone = _ACTIONS[kind]
    if after is None:
        return None if before is None else gone
    status = after.attrs.get("status")
    if before is None:
        # never create a deleted or suspended account, nor an object only to delete it
        return new if status == "active" else None
    if kind == "user" and status != "active" and before["a"].get("status") == "active":
        return gone
    if kind == "enrollment" and before["a"].get("role") != after.attrs.get("role"):
        return "change_role"
    return changed


def diff(
    emitted: Mapping[str, Mapping[str, Any]], desired: Mapping[str, Target]
) -> tuple[list[Command], dict[str, dict[str, Any]]]:
    """The commands that take the LMS from ``emitted`` to ``desired``, and the new ``emitted``.

    Targets that disappear get their removal command: unenroll, revoke_admin, deactivate_user, or
    for accounts, terms, courses and sections an upsert with status deleted. A removed target
    stays in ``emitted`` as a marker (``"x": 1``) that keeps its sequence, so a target that comes
    back continues its numbering and never reuses a command id.
    """
    commands: list[Command] = []
    after: dict[str, dict[str, Any]] = {}
    for key in sorted(set(emitted) | set(desired)):
        entry = emitted.get(key)
        before = entry if entry is not None and not entry.get("x") else None
        want = desired.get(key)
        seq = int(entry["n"]) if entry is not None else 0
        if want is None and before is not None and before["k"] in _SOFT_DELETE:
            want = Target(before["k"], {**before["a"], "status": "deleted"})
        if before is not None and want is not None and before["k"] == want.kind and before["a"] == want.attrs:
            after[key] = dict(before)
            continue
        still_deleted = before is not None and before["a"].get("status") != "active"
        if (
            still_deleted
            and want is not None
            and want.kind in _SOFT_DELETE
            and want.attrs.get("status") != "active"
        ):
            after[key] = dict(entry or {})  # deleted and still deleted: nothing to tell the LMS
            continue
        kind = want.kind if want is not None else str(entry["k"]) if entry is not None else ""
        action = _action(kind, before, want) if kind else None
        if action is None:
            if entry is not None:
                after[key] = dict(entry)
            continue
        seq += 1
        if want is None:
            assert before is not None
            attrs = {**before["a"], "status": "deleted"}
            commands.append(_command(key, kind, action, attrs, seq))
            after[key] = {"k": kind, "a": attrs, "n": seq, "x": 1}
            continue
        attrs = dict(want.attrs)
        commands.append(_command(key, kind, action, attrs, seq))
        live = attrs.get("status") == "active" or kind in _SOFT_DELETE or kind == "user"
        after[key] = {"k": kind, "a": attrs, "n": seq} if live else {"k": kind, "a": attrs, "n": seq, "x": 1}
    return commands, after


_SOFT_DELETE = frozenset({"account", "term", "course", "section"})
