"""Invented ``sis.users.v1`` records and ~1 KB payloads for the benchmarks (no real person's data).

The records are deterministic (seeded) and varied: one to three roles, optional names, e-mail,
identifiers, guardians and grades, so the encoders see a realistic mix of unions, arrays and
maps rather than one record repeated.
"""

from __future__ import annotations

import io
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fastavro

__all__ = ["payload_pool", "user_pool"]

_GIVEN = ["Ada", "Bo", "Chidi", "Dana", "Emil", "Farah", "Goran", "Hana", "Ines", "Jun", "Kofi", "Lena"]
_FAMILY = ["Alvarez", "Baker", "Chen", "Diallo", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova"]
_ROLES = ["student"] * 8 + ["teacher", "guardian", "aide", "counselor"]
_GRADES = ["KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]
_EPOCH = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def _ref(rng: random.Random, kind: str, prefix: str, n: int) -> dict[str, Any]:
    sid = f"{prefix}-{rng.randrange(n):05d}"
    href = f"https://sis.example.test/ims/oneroster/v1p2/{kind}s/{sid}" if rng.random() < 0.5 else None
    return {"href": href, "sourcedId": sid, "type": kind}


def user(i: int, rng: random.Random) -> dict[str, Any]:
    """One valid ``sis.users.v1`` record, the ``i``-th of a seeded sequence."""
    sid = f"user-{i:08d}"
    role = rng.choice(_ROLES)
    changed = _EPOCH + timedelta(seconds=rng.randrange(86_400 * 30))
    given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
    roles = [
        {
            "roleType": "primary" if n == 0 else "secondary",
            "role": role if n == 0 else rng.choice(_ROLES),
            "org": _ref(rng, "org", "school", 400),
            "userProfile": None,
            "beginDate": date(2026, 8, 15) if rng.random() < 0.8 else None,
            "endDate": date(2027, 6, 30) if rng.random() < 0.3 else None,
        }
        for n in range(rng.choice([1, 1, 1, 2, 3]))
    ]
    student = role == "student"
    return {
        "sourcedId": sid,
        "status": "active" if rng.random() < 0.97 else "tobedeleted",
        "dateLastModified": changed,
        "metadata": {"grade.band": "9-12", "campus": f"c{rng.randrange(20)}"} if rng.random() < 0.6 else {},
        "userMasterIdentifier": f"SSID{rng.randrange(10**9):09d}" if student else None,
        "username": f"{given.lower()}.{family.lower()}{i}@example.test",
        "userIds": [{"type": "LDAP", "identifier": f"uid={sid},ou=people"}] if rng.random() < 0.5 else [],
        "enabledUser": rng.random() < 0.95,
        "givenName": given,
        "familyName": family,
        "middleName": rng.choice(_GIVEN) if rng.random() < 0.3 else None,
        "preferredGivenName": None,
        "preferredMiddleName": None,
        "preferredFamilyName": None,
        "pronouns": rng.choice(["she/her", "he/him", "they/them"]) if rng.random() < 0.2 else None,
        "roles": roles,
        "userProfiles": [],
        "primaryOrg": roles[0]["org"],
        "identifier": f"{rng.randrange(10**6):06d}" if student else None,
        "email": f"{given.lower()}.{family.lower()}{i}@example.test",
        "sms": None,
        "phone": f"+1-555-{rng.randrange(10**4):04d}" if rng.random() < 0.4 else None,
        "agents": [_ref(rng, "user", "user", 10**6) for _ in range(rng.choice([0, 1, 2]))] if student else [],
        "grades": [rng.choice(_GRADES)] if student else [],
        "meta": {
            "source": "bench:generator",
            "sourceChangedAt": changed,
            "ingestedAt": changed + timedelta(seconds=2),
            "traceId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "sourceVersion": None,
        },
    }


def user_pool(size: int, seed: int = 42) -> list[dict[str, Any]]:
    """``size`` distinct records; the benchmarks cycle through them for longer runs."""
    rng = random.Random(seed)
    return [user(i, rng) for i in range(size)]


def payload_pool(parsed_schema: Any, size: int = 1024, count: int = 512, seed: int = 7) -> list[bytes]:
    """``count`` values of exactly ``size`` bytes, each Avro ``sis.users.v1`` bodies laid end to end.

    Raw Kafka runs with these rather than random bytes so that zstd sees the compressibility of
    the pipeline's real values.
    """
    rng = random.Random(seed)
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        buf = io.BytesIO()
        while buf.tell() < size:
            fastavro.schemaless_writer(buf, parsed_schema, user(i, rng))
            i += 1
        out.append(buf.getvalue()[:size])
    return out
