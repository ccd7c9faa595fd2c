"""Records invented for tests (no real person's data)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any


def meta(source: str = "tests:factory") -> dict[str, Any]:
    now = datetime(2026, 9, 1, 8, 30, tzinfo=UTC)
    return {
        "source": source,
        "sourceChangedAt": now,
        "ingestedAt": now,
        "traceId": str(uuid.uuid4()),
        "sourceVersion": None,
    }


def user(sourced_id: str = "u-1", role: str = "student", org: str = "school-1") -> dict[str, Any]:
    return {
        "sourcedId": sourced_id,
        "status": "active",
        "dateLastModified": datetime(2026, 9, 1, 8, 0, tzinfo=UTC),
        "metadata": {"grade.band": "9-12"},
        "username": f"{sourced_id}@example.test",
        "enabledUser": True,
        "givenName": "Test",
        "familyName": "Person",
        "roles": [
            {
                "roleType": "primary",
                "role": role,
                "org": {"href": None, "sourcedId": org, "type": "org"},
                "userProfile": None,
                "beginDate": date(2026, 8, 15),
                "endDate": None,
            }
        ],
        "meta": meta(),
    }


def org(sourced_id: str = "school-1") -> dict[str, Any]:
    return {
        "sourcedId": sourced_id,
        "status": "active",
        "dateLastModified": datetime(2026, 9, 1, 8, 0, tzinfo=UTC),
        "name": "Test School",
        "type": "school",
        "meta": meta(),
    }
