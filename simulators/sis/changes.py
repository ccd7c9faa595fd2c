"""The change generator: a school day's worth of edits to the simulated district.

Each step picks one kind of change with realistic weights and applies it through the store
(which stamps ``dateLastModified`` and logs the ground truth): enrollments, withdrawals,
schedule changes, teacher reassignments, role changes, new hires, new students, name and
email corrections, grade entries. Deterministic from its seed, given the same starting district.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from simulators.district import District
from simulators.sis.store import Change, SisStore

__all__ = ["KINDS", "ChangeGenerator"]

log = logging.getLogger(__name__)

#: kind -> weight
KINDS: dict[str, int] = {
    "enrollment": 20,
    "withdrawal": 8,
    "schedule_change": 12,
    "teacher_reassignment": 4,
    "role_change": 3,
    "new_hire": 2,
    "new_student": 6,
    "profile_update": 10,
    "grade_entry": 35,
}


def _ref_id(record: dict[str, Any], field: str) -> str | None:
    value = record.get(field)
    return value.get("sourcedId") if isinstance(value, dict) else None


class ChangeGenerator:
    """Applies random but plausible changes to a store seeded from a district."""

    def __init__(self, store: SisStore, district: District, *, seed: int = 7) -> None:
        self.store = store
        self.factory = district.factory(seed)
        self.rng = random.Random(seed)
        self.applied: Counter[str] = Counter()
        self._kinds = list(KINDS)
        self._weights = [KINDS[k] for k in self._kinds]
        self._steps: dict[str, Callable[[], list[Change]]] = {
            "enrollment": self._enrollment,
            "withdrawal": self._withdrawal,
            "schedule_change": self._schedule_change,
            "teacher_reassignment": self._teacher_reassignment,
            "role_change": self._role_change,
            "new_hire": self._new_hire,
            "new_student": self._new_student,
            "profile_update": self._profile_update,
            "grade_entry": self._grade_entry,
        }

    def step(self, kind: str | None = None) -> list[Change]:
        """Apply one change (of ``kind``, or a weighted random kind); returns what it logged."""
        chosen = kind or self.rng.choices(self._kinds, self._weights)[0]
        changes = self._steps[chosen]()
        if changes:
            self.applied[chosen] += 1
        return changes

    # --- helpers --------------------------------------------------------------------------
    def _active(self, collection: str, where: Callable[[dict[str, Any]], bool] | None = None) -> list[dict]:
        return self.store.records(
            collection, lambda r: r.get("status") != "tobedeleted" and (where is None or where(r))
        )

    def _pick(self, collection: str, where: Callable[[dict[str, Any]], bool] | None = None) -> dict | None:
        # Sample instead of scanning everything on every step: fine at 150k enrollments.
        table = self.store.collections.get(collection, {})
        if not table:
            return None
        keys = list(table)
        for _ in range(50):
            record = table.get(self.rng.choice(keys))
            if record and record.get("status") != "tobedeleted" and (where is None or where(record)):
                return record
        return None

    def _student_enrollment(self) -> dict | None:
        return self._pick("enrollments", lambda e: e.get("role") == "student")

    # --- kinds ----------------------------------------------------------------------------
    def _enrollment(self) -> list[Change]:
        student = self._student_enrollment()
        if student is None:
            return []
        school = _ref_id(student, "school") or ""
        options = self.factory.classes_at(school)
        if not options:
            return []
        new = self.factory.new_enrollment(
            student["user"]["sourcedId"], self.rng.choice(options), "student", self.store.now()
        )
        return [self.store.put("enrollments", new, kind="enrollment")]

    def _withdrawal(self) -> list[Change]:
        enrollment = self._student_enrollment()
        if enrollment is None:
            return []
        return [self.store.delete("enrollments", enrollment["sourcedId"], kind="withdrawal")]

    def _schedule_change(self) -> list[Change]:
        old = self._student_enrollment()
        if old is None:
            return []
        options = self.factory.classes_at(_ref_id(old, "school") or "")
        if not options:
            return []
        dropped = self.store.delete("enrollments", old["sourcedId"], kind="schedule_change")
        new = self.factory.new_enrollment(
            old["user"]["sourcedId"], self.rng.choice(options), "student", self.store.now()
        )
        return [dropped, self.store.put("enrollments", new, kind="schedule_change")]

    def _teacher_reassignment(self) -> list[Change]:
        old = self._pick("enrollments", lambda e: e.get("role") == "teacher")
        if old is None:
            return []
        school = _ref_id(old, "school") or ""
        teachers = [
            u["sourcedId"]
            for u in self._active(
                "users",
                lambda u: any(
                    r.get("role") == "teacher" and _ref_id(r, "org") == school for r in u.get("roles", [])
                ),
            )
            if u["sourcedId"] != old["user"]["sourcedId"]
        ]
        if not teachers:
            return []
        dropped = self.store.delete("enrollments", old["sourcedId"], kind="teacher_reassignment")
        new = self.factory.new_enrollment(
            self.rng.choice(teachers), old["class"]["sourcedId"], "teacher", self.store.now()
        )
        if old.get("primary") is not None:
            new["primary"] = old["primary"]
        return [dropped, self.store.put("enrollments", new, kind="teacher_reassignment")]

    def _role_change(self) -> list[Change]:
        user = self._pick("users", lambda u: any(r.get("role") == "teacher" for r in u.get("roles", [])))
        if user is None:
            return []
        roles = [dict(r) for r in user.get("roles", [])]
        extra = self.rng.choice(["counselor", "siteAdministrator", "ext:curriculumDesigner"])
        if any(r.get("role") == extra for r in roles):
            roles = [r for r in roles if r.get("role") != extra or r.get("roleType") == "primary"]
        else:
            roles.append({"roleType": "secondary", "role": extra, "org": roles[0]["org"]})
        return [self.store.update("users", user["sourcedId"], {"roles": roles}, kind="role_change")]

    def _new_hire(self) -> list[Change]:
        schools = self.factory.schools()
        if not schools:
            return []
        role = self.rng.choice(["teacher", "teacher", "aide", "counselor"])
        user = self.factory.new_staff(role, self.rng.choice(schools), self.store.now())
        return [self.store.put("users", user, kind="new_hire")]

    def _new_student(self) -> list[Change]:
        schools = self.factory.schools()
        if not schools:
            return []
        school = self.rng.choice(schools)
        user, demographics = self.factory.new_student(school, self.store.now())
        changes = [
            self.store.put("users", user, kind="new_student"),
            self.store.put("demographics", demographics, kind="new_student"),
        ]
        classes = self.factory.classes_at(school)
        for class_id in self.rng.sample(classes, min(len(classes), 6)):
            enrollment = self.factory.new_enrollment(user["sourcedId"], class_id, "student", self.store.now())
            changes.append(self.store.put("enrollments", enrollment, kind="new_student"))
        return changes

    def _profile_update(self) -> list[Change]:
        user = self._pick("users")
        if user is None:
            return []
        if self.rng.random() < 0.5 or not user.get("email"):
            handle = f"{user['givenName'][:1]}{user['familyName']}".lower().replace(" ", "").replace("'", "")
            handle = handle.encode("ascii", "ignore").decode() or "user"
            domain = (user.get("email") or "x@riverbend.k12.example").split("@")[-1]
            change = {"email": f"{handle}{self.rng.randint(10, 999)}@{domain}"}
        else:
            change = {"preferredGivenName": user["givenName"][:3] or user["givenName"]}
        return [self.store.update("users", user["sourcedId"], change, kind="profile_update")]

    def _grade_entry(self) -> list[Change]:
        item = self._pick("lineItems")
        if item is None:
            return []
        students = self.factory.students_in(item["class"]["sourcedId"])
        if not students:
            return []
        result = self.factory.new_result(item["sourcedId"], self.rng.choice(students), self.store.now())
        return [self.store.put("results", result, kind="grade_entry")]
