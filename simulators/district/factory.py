"""Builds new records that fit a generated district, for a change generator.

The factory never inserts anything: it returns new JSON objects and the caller puts them where
it keeps the district (the SIS simulator's store writes into ``district.collections``). Its
look-ups (:meth:`DistrictFactory.classes_at`, :meth:`DistrictFactory.students_in`) read the live
collections, so records inserted later are seen, through indexes that catch up on records
added since the last call instead of rescanning 150,000 enrollments each time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from simulators.district import catalog, names, people
from simulators.district.gradebook import (
    CATEGORIES,
    CATEGORY_DRAW,
    GUARDIAN_ROLE_DRAW,
    add_days,
    item_title,
    line_item_record,
    result_record,
)
from simulators.district.people import Usernames
from simulators.district.records import Calendar, Json, guid_ref, new_id

if TYPE_CHECKING:
    from simulators.district.district import District

__all__ = ["DistrictFactory", "UnknownRecord"]


class UnknownRecord(KeyError):
    """The factory was asked to build on a record the district does not have."""


class DistrictFactory:
    """New users, enrollments, line items and results consistent with a district.

    Every method that builds a record takes ``now``, the ``dateLastModified`` to stamp
    (``YYYY-MM-DDTHH:MM:SS.mmmZ``); dates inside the record (enrollment begin, score date) use
    ``now``'s day when it falls in the school year, else a day of the year.

    Attributes:
        random: the factory's own ``random.Random`` (seeded by ``rng_seed``); callers may share it.
    """

    def __init__(self, district: District, rng_seed: int) -> None:
        self.district = district
        self.random = random.Random(rng_seed)
        self._context = district.context
        self._collections = district.collections
        self._numbers = dict(district.context.next_numbers)
        self._usernames: Usernames | None = None
        self._item_numbers: dict[str, int] = {}
        self._classes_by_school = _LiveIndex(self._collections, "classes", lambda r: _ref_id(r, "school"))
        self._students_by_class = _LiveIndex(
            self._collections,
            "enrollments",
            lambda r: _ref_id(r, "class") if r.get("role") == "student" else None,
        )

    # --- look-ups ---------------------------------------------------------------------------
    def schools(self) -> list[str]:
        """sourcedIds of the active schools."""
        return [
            sid
            for sid, org in self._collections.get("orgs", {}).items()
            if org.get("type") == "school" and org.get("status") != "tobedeleted"
        ]

    def classes_at(self, school_id: str) -> list[str]:
        """sourcedIds of the active classes of a school."""
        table = self._collections.get("classes", {})
        found: list[str] = []
        seen: set[str] = set()
        for sid in self._classes_by_school.ids(school_id):
            record = table.get(sid)
            if (
                record is not None
                and sid not in seen
                and record.get("status") != "tobedeleted"
                and _ref_id(record, "school") == school_id
            ):
                seen.add(sid)
                found.append(sid)
        return found

    def students_in(self, class_id: str) -> list[str]:
        """sourcedIds of the users with an active student enrollment in a class."""
        table = self._collections.get("enrollments", {})
        found: list[str] = []
        seen: set[str] = set()
        for sid in self._students_by_class.ids(class_id):
            record = table.get(sid)
            if (
                record is None
                or record.get("status") == "tobedeleted"
                or record.get("role") != "student"
                or _ref_id(record, "class") != class_id
            ):
                continue
            user = _ref_id(record, "user")
            if user is not None and user not in seen:
                seen.add(user)
                found.append(user)
        return found

    # --- people -----------------------------------------------------------------------------
    def new_student(self, school_id: str, now: str) -> tuple[Json, Json]:
        """A new student at a school, in a grade the school teaches, and their demographics."""
        rng, spec = self.random, self.district.spec
        grade = rng.choice(catalog.LEVEL_GRADES[self._level(school_id)])
        grade_index = catalog.GRADES.index(grade)
        sex = people.draw_sex(rng)
        name = people.draw_name(rng, spec.mess, sex)
        username = self._take_username(name)
        school_ref = guid_ref("org", school_id)
        state_id = f"{self._number('state'):010d}"
        sid = new_id(rng)
        user = people.user_record(
            sourced_id=sid,
            stamp=now,
            username=username,
            name=name,
            roles=[people.role("student", school_ref, True)],
            primary_org=guid_ref("org", school_id),
            identifier=str(self._number("student")),
            user_ids=[{"type": "SIS", "identifier": state_id}],
            email=f"{username}@{self._context.domain}",
            grades=[grade],
            master_id=state_id,
            metadata={"ext.gradYear": str(spec.school_year + 12 - grade_index)},
        )
        born = people.birth_date(rng, grade_index, spec.school_year)
        return user, people.demographics_record(rng, sid, now, sex, born)

    def new_staff(self, role: str, school_id: str, now: str) -> Json:
        """A new staff member holding ``role`` (``teacher``, ``aide``, ``counselor``...) at an org."""
        rng = self.random
        name = people.draw_name(rng, self.district.spec.mess, people.draw_sex(rng))
        username = self._take_username(name)
        number = self._number("staff")
        return people.user_record(
            sourced_id=new_id(rng),
            stamp=now,
            username=username,
            name=name,
            roles=[people.role(role, guid_ref("org", school_id), True)],
            primary_org=guid_ref("org", school_id),
            identifier=f"E{number}",
            user_ids=[{"type": "SIS", "identifier": f"{self._number('state'):010d}"}],
            email=f"{username}@{self._context.domain}",
        )

    def new_guardian(self, student_ids: list[str], now: str) -> Json:
        """A guardian of the given students (``agents`` point at them; the caller adds the guardian
        to each student's ``agents``). Roles at each of the students' schools, primary at the first."""
        rng = self.random
        users = self._collections.get("users", {})
        students = [users.get(sid) for sid in student_ids]
        orgs: list[str] = []
        for student in students:
            org = _ref_id(student, "primaryOrg") if student is not None else None
            if org is not None and org not in orgs:
                orgs.append(org)
        if not orgs:
            orgs = [self._context.district_id]
        first = students[0] if students else None
        family = first.get("familyName") if first is not None and rng.random() < 0.8 else None
        name = people.draw_name(
            rng, self.district.spec.mess, "female" if rng.random() < 0.55 else "male", family
        )
        role_name = GUARDIAN_ROLE_DRAW.draw(rng)
        username = self._take_username(name)
        number = self._number("guardian")
        return people.user_record(
            sourced_id=new_id(rng),
            stamp=now,
            username=username,
            name=name,
            roles=[people.role(role_name, guid_ref("org", org), i == 0) for i, org in enumerate(orgs)],
            primary_org=guid_ref("org", orgs[0]),
            identifier=f"G{number}",
            user_ids=[{"type": "SIS", "identifier": f"P{number}"}],
            email=f"{username}@{rng.choice(names.GUARDIAN_DOMAINS)}",
            agents=[guid_ref("user", sid) for sid in student_ids],
            phone=f"555-01{rng.randrange(100):02d}",
        )

    # --- enrollments and gradebook ----------------------------------------------------------
    def new_enrollment(self, user_id: str, class_id: str, role: str, now: str) -> Json:
        """``user_id`` in ``class_id`` as ``role`` (``student``, ``teacher``, ``aide``...), from
        ``now``'s day (or the class's first day) to the class's last day. Teachers and aides are
        not the primary teacher (``primary`` false); set it when replacing a lead teacher."""
        klass = self._record("classes", class_id)
        begin, end = self._context.term_dates(_ref_ids(klass, "terms"))
        today = now[:10]
        if begin <= today <= end:
            begin = today
        record: Json = {
            "sourcedId": new_id(self.random),
            "status": "active",
            "dateLastModified": now,
            "user": guid_ref("user", user_id),
            "class": guid_ref("class", class_id),
            "school": guid_ref("org", _ref_id(klass, "school") or self._context.district_id),
            "role": role,
        }
        if role != "student":
            record["primary"] = False
        record["beginDate"] = begin
        record["endDate"] = end
        return record

    def new_line_item(self, class_id: str, now: str) -> Json:
        """A new line item for a class, in one of its grading periods (the current one if ``now``
        falls in it)."""
        rng, ctx = self.random, self._context
        klass = self._record("classes", class_id)
        term_ids = _ref_ids(klass, "terms")
        periods = ctx.grading_periods_of(term_ids)
        today = now[:10]
        current = [(gid, gp) for gid, gp in periods if gp.start <= today <= gp.end]
        gp_id, gp = current[0] if current else rng.choice(periods)
        days = Calendar.school_days(today if current else gp.start, gp.end) or [gp.end]
        at = rng.randrange(max(1, len(days) - 3))
        assigned, due = days[at], days[min(len(days) - 1, at + rng.randint(1, 10))]
        c = CATEGORY_DRAW.draw(rng)  # the generator made one category per CATEGORIES entry
        label = CATEGORIES[c][0]
        self._item_numbers[label] = n = self._item_numbers.get(label, 0) + 1
        term = ctx.term_ids[ctx.grading_period_ids.index(gp_id) // 2]
        course_title = str(klass.get("title", "the class")).split(" - ")[0]
        return line_item_record(
            sourced_id=new_id(rng),
            stamp=now,
            title=item_title(label, n),
            course_title=course_title,
            assigned=f"{assigned}T{rng.choice((13, 14, 15, 16))}:00:00.000Z",
            due=f"{due}T23:59:00.000Z",
            class_ref=guid_ref("class", class_id),
            school_ref=guid_ref("org", _ref_id(klass, "school") or ctx.district_id),
            category_ref=guid_ref("category", ctx.category_ids[c]),
            grading_period_ref=guid_ref("academicSession", gp_id),
            term_ref=guid_ref("academicSession", term),
        )

    def new_result(self, line_item_id: str, student_id: str, now: str) -> Json:
        """A student's result on a line item, scored on ``now``'s day (or just after the due date)."""
        rng = self.random
        item = self._record("lineItems", line_item_id)
        year = self._context.calendar.year
        today = now[:10]
        due = str(item.get("dueDate", today))[:10]
        scored = today if year.start <= today <= year.end else add_days(due, rng.randrange(8))
        return result_record(
            rng,
            sourced_id=new_id(rng),
            stamp=now,
            line_item_ref=guid_ref("lineItem", line_item_id),
            student_ref=guid_ref("user", student_id),
            class_ref=guid_ref("class", _ref_id(item, "class") or ""),
            score_date=scored,
        )

    # --- helpers ----------------------------------------------------------------------------
    def _record(self, collection: str, sourced_id: str) -> Json:
        record = self._collections.get(collection, {}).get(sourced_id)
        if record is None:
            raise UnknownRecord(f"{collection}/{sourced_id} is not in the district")
        return record

    def _level(self, school_id: str) -> str:
        level = self._context.school_levels.get(school_id)
        if level is None:
            org = self._collections.get("orgs", {}).get(school_id) or {}
            level = org.get("metadata", {}).get("ext.schoolLevel", "elementary")
        return level if level in catalog.LEVEL_GRADES else "elementary"

    def _number(self, kind: str) -> int:
        value = self._numbers[kind]
        self._numbers[kind] = value + 1
        return value

    def _take_username(self, name: people.Name) -> str:
        if self._usernames is None:
            taken = {str(u.get("username")) for u in self._collections.get("users", {}).values()}
            self._usernames = Usernames(taken)
        return self._usernames.take(name.given, name.family)


def _ref_id(record: Json | None, field: str) -> str | None:
    value = record.get(field) if record is not None else None
    return value.get("sourcedId") if isinstance(value, dict) else None


def _ref_ids(record: Json, field: str) -> list[str]:
    return [v["sourcedId"] for v in record.get(field) or [] if isinstance(v, dict) and "sourcedId" in v]


class _LiveIndex:
    """sourcedIds of one live collection grouped by a key, catching up on records added since.

    New keys land at the end of a dict, so a walk back from the end to the last key seen finds
    them. A record replaced in place keeps the group it had (callers re-check the record), and a
    table that shrank or lost its last key is re-indexed from scratch.
    """

    def __init__(
        self, collections: dict[str, dict[str, Json]], name: str, key: Callable[[Json], str | None]
    ) -> None:
        self._collections = collections
        self._name = name
        self._key = key
        self._table: dict[str, Json] | None = None
        self._size = 0
        self._last: str | None = None
        self._groups: dict[str, list[str]] = {}

    def ids(self, group: str) -> list[str]:
        self._refresh()
        return self._groups.get(group, [])

    def _refresh(self) -> None:
        table = self._collections.get(self._name, {})
        size = len(table)
        if table is not self._table or self._last is None or self._last not in table:
            self._rebuild(table)
            return
        last = next(reversed(table)) if size else None
        if size == self._size and last == self._last:
            return
        try:
            fresh: list[str] = []
            for sid in reversed(table):
                if sid == self._last:
                    break
                fresh.append(sid)
        except RuntimeError:  # another thread wrote meanwhile
            self._rebuild(table)
            return
        if len(fresh) < size - self._size:
            self._rebuild(table)
            return
        for sid in reversed(fresh):
            self._add(sid, table.get(sid))
        self._size, self._last = size, last

    def _rebuild(self, table: dict[str, Json]) -> None:
        self._groups = {}
        items = list(table.items())  # one C-level copy: safe against a concurrent writer
        for sid, record in items:
            self._add(sid, record)
        self._table = table
        self._size = len(items)
        self._last = items[-1][0] if items else None

    def _add(self, sid: str, record: Json | None) -> None:
        if record is None:
            return
        group = self._key(record)
        if group is not None:
            self._groups.setdefault(group, []).append(sid)
