"""A generated district: its OneRoster collections, counts, a summary, and a factory for more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulators.district.records import COLLECTIONS, DistrictContext, Json
from simulators.district.spec import DistrictSpec

if TYPE_CHECKING:
    from simulators.district.factory import DistrictFactory

__all__ = ["MESS_KINDS", "District"]

#: The kinds of real-world mess ``summary()["mess"]`` counts (each present when ``mess > 0``).
MESS_KINDS = (
    "second_role",  # a user with two different roles (a teacher who is also a counselor)
    "two_schools",  # staff with roles and classes at two schools
    "missing_email",  # a student without an email
    "transfer",  # a student who moves school mid-year (roles at both, dated enrollments)
    "long_title",  # a class title longer than 120 characters
    "name_apostrophe",
    "name_hyphen",
    "name_accent",
    "preferred_given_name",
)
_GUARDIAN_ROLES = ("guardian", "parent", "relative")
_LONG_TITLE = 120


class District:
    """A generated district.

    Attributes:
        spec: what it was generated from.
        collections: collection name (``orgs``, ``academicSessions``, ``courses``, ``classes``,
            ``users``, ``enrollments``, ``demographics``, ``categories``, ``lineItems``,
            ``results``) -> sourcedId -> the OneRoster 1.2 JSON object, in insertion order.
            Replace records rather than change them in place: GUIDRef dicts are shared.
        context: ids and dates the records share (the school year, terms, categories...).
    """

    def __init__(self, spec: DistrictSpec, collections: dict[str, dict[str, Json]], context: DistrictContext):
        self.spec = spec
        self.collections = collections
        self.context = context

    def counts(self) -> dict[str, int]:
        """Records per collection."""
        return {name: len(self.collections.get(name, {})) for name in COLLECTIONS}

    def summary(self) -> dict[str, Any]:
        """Counts, users by primary role, schools by level, and the mess counts by kind.

        Everything is read from the current records, so it stays right after changes.
        """
        orgs = self.collections.get("orgs", {})
        schools = {sid for sid, org in orgs.items() if org.get("type") == "school"}
        by_level: dict[str, int] = {}
        for sid in schools:
            level = orgs[sid].get("metadata", {}).get("ext.schoolLevel", "other")
            by_level[level] = by_level.get(level, 0) + 1
        by_role: dict[str, int] = {}
        mess = dict.fromkeys(MESS_KINDS, 0)
        for user in self.collections.get("users", {}).values():
            roles = user.get("roles", [])
            primary = next((r["role"] for r in roles if r.get("roleType") == "primary"), "(none)")
            by_role[primary] = by_role.get(primary, 0) + 1
            if len({r.get("role") for r in roles}) > 1:
                mess["second_role"] += 1
            orgs_held = {r["org"]["sourcedId"] for r in roles}
            if primary == "student":
                if "email" not in user:
                    mess["missing_email"] += 1
                if len(orgs_held) > 1:
                    mess["transfer"] += 1
            elif primary not in _GUARDIAN_ROLES and len(orgs_held & schools) > 1:
                mess["two_schools"] += 1
            full_name = f"{user.get('givenName', '')} {user.get('familyName', '')}"
            if "'" in full_name:
                mess["name_apostrophe"] += 1
            if "-" in full_name:
                mess["name_hyphen"] += 1
            if not full_name.isascii():
                mess["name_accent"] += 1
            if "preferredGivenName" in user:
                mess["preferred_given_name"] += 1
        mess["long_title"] = sum(
            1 for c in self.collections.get("classes", {}).values() if len(c.get("title", "")) > _LONG_TITLE
        )
        return {
            "counts": self.counts(),
            "users_by_role": dict(sorted(by_role.items(), key=lambda kv: (-kv[1], kv[0]))),
            "schools_by_type": dict(sorted(by_level.items())),
            "mess": mess,
        }

    def factory(self, rng_seed: int) -> DistrictFactory:
        """A :class:`DistrictFactory` that builds new records for this district from ``rng_seed``."""
        from simulators.district.factory import DistrictFactory

        return DistrictFactory(self, rng_seed)
