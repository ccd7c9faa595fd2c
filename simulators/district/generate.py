"""Generates a deterministic K-12 district as OneRoster 1.2 JSON: :func:`generate`.

The steps, each drawing from the one seeded ``random.Random`` in a fixed order:

1. orgs (the district and its schools), academic sessions, courses, gradebook categories;
2. students, placed by grade in schools of their level; households of siblings with guardians;
3. classes: elementary homerooms (each with its art, music, PE, library and STEM specials), and
   secondary sections sized from what students ask for, students placed period by period;
4. staff: teachers for every class (by department, one free period a day), aides, counselors,
   principals and assistant principals, district staff;
5. the ``mess`` share: staff with a second role or a second school, mid-year transfers,
   long class titles (unusual names, preferred names and missing emails are drawn with the people);
6. enrollments, then line items (secondary classes) and results.
"""

from __future__ import annotations

import gc
import math
import random
from collections.abc import Sequence

from simulators.district import catalog, names, people
from simulators.district.catalog import GRADES, LEVEL_GRADES, PERIODS, CourseDef, grade_title
from simulators.district.district import District
from simulators.district.gradebook import (
    CATEGORIES,
    CATEGORY_DRAW,
    GUARDIAN_ROLE_DRAW,
    add_days,
    item_title,
    line_item_record,
    result_record,
)
from simulators.district.people import Name, Usernames
from simulators.district.records import (
    COLLECTIONS,
    Calendar,
    DistrictContext,
    Json,
    Weighted,
    format_instant,
    guid_ref,
    instant_ms,
    new_id,
)
from simulators.district.spec import DistrictSpec

__all__ = ["STAFF_SHARE", "generate"]

#: Staff as a share of ``users`` (the rest are students).
STAFF_SHARE = 0.073
_SCHOOLS_PER_USER = 40 / 20_500
_LEVEL_SHARES = {"elementary": 24 / 40, "middle": 9 / 40}
_GRADE_WEIGHTS = {"KG": 0.97, "09": 1.06, "10": 1.02, "11": 0.98, "12": 0.95}
_HOMEROOM_SIZE = 22
_HOMEROOM_MAX = 27
_SPECIALS_PER_TEACHER = 30
_CO_TEACHER_SHARE = 0.05
_AIDE_HOMEROOMS = 2
_AIDE_SECTIONS = 4
_SEARCH_BUDGET = 300
_SMALLEST_ELECTIVE = 8
_SIBLINGS = Weighted((1, 2, 3, 4), (62, 27, 9, 2))
_SECOND_ROLES = Weighted(("counselor", "siteAdministrator", "ext:curriculumDesigner"), (40, 25, 35))
_WINDOW_MS = 30 * 86_400_000
_STAMP_BITS = 15
_LONG_SUFFIXES = (
    "Combined Section for the Dual Language Immersion Cohort with Extended Learning Time "
    "(Schedule Revised by the Counseling Office)",
    "Co-Taught Inclusion Section with Additional Intervention Block and Credit Recovery Option "
    "for Returning Students (Second Semester Adjustment)",
    "Concurrent Enrollment with Riverbend Community College Partnership Program, Early College Pathway "
    "Cohort B (Tuesday and Thursday Lab Rotation)",
)


class _School:
    __slots__ = (
        "by_code",
        "id",
        "level",
        "name",
        "number",
        "ref",
        "sections",
        "staff",
        "students",
        "teachers",
        "weight",
    )

    def __init__(self, sid: str, level: str, name: str, number: str, weight: float) -> None:
        self.id = sid
        self.ref = guid_ref("org", sid)
        self.level = level
        self.name = name
        self.number = number
        self.weight = weight
        self.students: dict[str, list[_Student]] = {g: [] for g in LEVEL_GRADES[level]}
        self.sections: list[_Section] = []
        self.by_code: dict[str, list[_Section]] = {}
        self.teachers: list[_Staff] = []
        self.staff: list[_Staff] = []


class _Student:
    __slots__ = ("agents", "family", "grade", "id", "ref", "roles", "school", "sections")

    def __init__(self, sid: str, school: _School, grade: str) -> None:
        self.id = sid
        self.ref = guid_ref("user", sid)
        self.school = school
        self.grade = grade
        self.family: str | None = None
        self.agents: list[Json] = []
        self.sections: list[_Section] = []
        self.roles: list[Json] = []


class _Staff:
    __slots__ = (
        "count",
        "dept",
        "extra_roles",
        "extra_schools",
        "id",
        "name",
        "occ",
        "ref",
        "role",
        "room",
        "school",
        "sections",
    )

    def __init__(self, sid: str, role: str, school: _School | None, dept: str | None, name: Name) -> None:
        self.id = sid
        self.ref = guid_ref("user", sid)
        self.role = role
        self.school = school
        self.dept = dept
        self.name = name
        self.room = ""
        self.occ = [0, 0]  # per term, a bit per period taught
        self.count = [0, 0]  # per term, periods taught
        self.sections: list[_Section] = []
        self.extra_schools: list[_School] = []
        self.extra_roles: list[tuple[str, Json]] = []


class _Section:
    __slots__ = (
        "aide",
        "co",
        "code_no",
        "course",
        "grade",
        "id",
        "lead",
        "linked",
        "location",
        "long",
        "period",
        "ref",
        "school",
        "students",
        "terms",
    )

    def __init__(
        self,
        sid: str,
        school: _School,
        course: CourseDef,
        period: int | None,
        terms: int,
        grade: str | None,
        code_no: int,
    ) -> None:
        self.id = sid
        self.ref = guid_ref("class", sid)
        self.school = school
        self.course = course
        self.period = period
        self.terms = terms  # 1 Fall, 2 Spring, 3 both
        self.grade = grade
        self.code_no = code_no
        self.students: list[_Student] = []
        self.lead: _Staff | None = None
        self.co: _Staff | None = None
        self.aide: _Staff | None = None
        self.linked: list[_Section] = []  # a homeroom's specials
        self.location = ""
        self.long = False


def generate(spec: DistrictSpec = DistrictSpec()) -> District:
    """Generate the district ``spec`` describes.

    The same spec always gives the same records, byte for byte once serialised with sorted keys.
    """
    # Millions of small dicts and no garbage worth collecting until the end: the cyclic
    # collector would rescan the growing heap again and again (a third of the run at 250k users).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _Generator(spec).run()
    finally:
        if enabled:
            gc.enable()


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder; ties to the earlier index)."""
    whole = sum(weights)
    if total <= 0 or whole <= 0:
        return [0] * len(weights)
    exact = [total * w / whole for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _schedule(
    requests: catalog.Requests,
    grade: str,
    by_code: dict[str, list[_Section]],
    fillers: dict[tuple[int, int], list[_Section]],
    periods: int,
) -> list[_Section]:
    """A student's sections: every core course, then the electives that fit, then any open
    elective section to fill a free period, never two in one period of a term.

    The core is placed by a small depth-first search, most constrained course first and emptiest
    section first (among sections with room, then among all). Only when no clash-free core
    exists within the search budget (two single-section courses in one period) do the emptiest
    sections go in, clash and all.
    """
    order = sorted(requests.core, key=lambda c: len(by_code[c]))
    options = [sorted(by_code[c], key=lambda s: len(s.students)) for c in order]
    chosen: list[_Section] = []
    budget = [0]

    def search(i: int, fall: int, spring: int, roomy: bool) -> bool:
        if i == len(options):
            return True
        budget[0] -= 1
        if budget[0] < 0:
            return False
        for section in options[i]:
            if roomy and len(section.students) >= section.course.max_size:
                continue
            bit = 1 << (section.period or 0)
            if (section.terms & 1 and fall & bit) or (section.terms & 2 and spring & bit):
                continue
            chosen.append(section)
            if search(
                i + 1,
                fall | bit if section.terms & 1 else fall,
                spring | bit if section.terms & 2 else spring,
                roomy,
            ):
                return True
            chosen.pop()
        return False

    for roomy in (True, False):
        budget[0] = _SEARCH_BUDGET
        chosen.clear()
        if search(0, 0, 0, roomy):
            break
    else:
        chosen = [opts[0] for opts in options]
    occ = [0, 0]
    for section in chosen:
        for t in (0, 1):
            if section.terms & (1 << t):
                occ[t] |= 1 << (section.period or 0)
    taken = {s.course.code for s in chosen}

    def fits(section: _Section) -> bool:
        if len(section.students) >= section.course.max_size or section.course.code in taken:
            return False
        bit = 1 << (section.period or 0)
        return not any(
            section.terms & (1 << t) and (occ[t] & bit or occ[t].bit_count() >= requests.periods)
            for t in (0, 1)
        )

    def take(section: _Section) -> None:
        chosen.append(section)
        taken.add(section.course.code)
        for t in (0, 1):
            if section.terms & (1 << t):
                occ[t] |= 1 << (section.period or 0)

    for code in requests.electives:
        for section in sorted(by_code.get(code, ()), key=lambda s: len(s.students)):
            if fits(section):
                take(section)
                break
    for period in range(1, periods + 1):
        bit = 1 << period
        free = [not occ[t] & bit and occ[t].bit_count() < requests.periods for t in (0, 1)]
        for terms in (3, 1, 2):
            if not all(free[t] for t in (0, 1) if terms & (1 << t)):
                continue
            candidates = [s for s in fillers.get((period, terms), ()) if grade in s.course.grades and fits(s)]
            if candidates:
                take(min(candidates, key=lambda s: len(s.students)))
                free = [not occ[t] & bit and occ[t].bit_count() < requests.periods for t in (0, 1)]
    return chosen


def _fits(staff: _Staff, section: _Section, cap: int) -> bool:
    if section.period is None:
        return True
    bit = 1 << section.period
    return all(
        not section.terms & (1 << t) or (not staff.occ[t] & bit and staff.count[t] < cap) for t in (0, 1)
    )


def _movable(section: _Section, teacher: _Staff, cap: int, same_dept: bool) -> bool:
    """Whether ``teacher`` can take over ``section`` (its lead keeps at least one other class)."""
    lead = section.lead
    return (
        lead is not None
        and lead is not teacher
        and len(lead.sections) >= 2
        and section.co is not teacher
        and (not same_dept or section.course.dept == teacher.dept)
        and _fits(teacher, section, cap)
    )


def _occupy(staff: _Staff, section: _Section, sign: int = 1) -> None:
    if section.period is None:
        return
    bit = 1 << section.period
    for t in (0, 1):
        if section.terms & (1 << t):
            staff.occ[t] ^= bit
            staff.count[t] += sign


class _Generator:
    def __init__(self, spec: DistrictSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.mess = spec.mess
        self.calendar = Calendar.for_school_year(spec.school_year)
        self.collections: dict[str, dict[str, Json]] = {name: {} for name in COLLECTIONS}
        self.usernames = Usernames()
        self.partial: dict[tuple[str, str], tuple[str, str]] = {}
        self.schools: list[_School] = []
        self.students: list[_Student] = []
        self.district_staff: list[_Staff] = []
        year, (fall, spring) = self.calendar.year, self.calendar.terms
        self.term_dates = {
            1: (fall.start, fall.end),
            2: (spring.start, spring.end),
            3: (year.start, year.end),
        }
        end = instant_ms(spec.as_of)
        rng = self.rng
        self.stamps = [format_instant(end - 1 - rng.randrange(_WINDOW_MS)) for _ in range(1 << _STAMP_BITS)]
        self.numbers = {
            "student": 100_001,
            "staff": 10_001,
            "guardian": 500_001,
            "state": 4_000_000_000 + rng.randrange(10**8) * 10,
        }

    def stamp(self) -> str:
        return self.stamps[self.rng.getrandbits(_STAMP_BITS)]

    def number(self, kind: str) -> int:
        value = self.numbers[kind]
        self.numbers[kind] = value + 1
        return value

    # --- the steps ------------------------------------------------------------------------
    def run(self) -> District:
        self.orgs()
        self.sessions()
        self.courses()
        self.categories()
        self.allocate_students()
        households = self.households()
        self.student_users()
        self.guardian_users(households)
        for school in self.schools:
            if school.level == "elementary":
                self.elementary_classes(school)
            else:
                self.secondary_classes(school)
        self.support_staff()
        self.two_school_staff()
        self.second_roles()
        self.transfers()
        self.long_titles()
        self.staff_users()
        self.classes()
        self.enrollments()
        self.gradebook()
        context = DistrictContext(
            domain=names.DISTRICT_DOMAIN,
            district_id=self.district_id,
            calendar=self.calendar,
            year_id=self.year_id,
            term_ids=(self.term_ids[0], self.term_ids[1]),
            grading_period_ids=(self.gp_ids[0], self.gp_ids[1], self.gp_ids[2], self.gp_ids[3]),
            category_ids=tuple(self.category_ids),
            school_levels={s.id: s.level for s in self.schools},
            next_numbers=dict(self.numbers),
        )
        self.release()
        return District(self.spec, self.collections, context)

    def release(self) -> None:
        """Break the working objects' reference cycles (school <-> student <-> section <-> teacher)
        so they are freed at once, not at the next full collection of a multi-GB heap."""
        for school in self.schools:
            for section in school.sections:
                section.students = []
                section.linked = []
                section.lead = section.co = section.aide = None
            for staff in (*school.teachers, *school.staff):
                staff.sections = []
                staff.extra_schools = []
            school.students = {}
            school.sections = []
            school.by_code = {}
            school.teachers = []
            school.staff = []
        for st in self.students:
            st.sections = []
        self.students = []
        self.schools = []

    def orgs(self) -> None:
        rng = self.rng
        total = max(3, round(self.spec.users * _SCHOOLS_PER_USER))
        counts = {level: max(1, round(total * share)) for level, share in _LEVEL_SHARES.items()}
        counts["high"] = max(1, total - counts["elementary"] - counts["middle"])
        self.district_id = new_id(rng)
        self.district_ref = guid_ref("org", self.district_id)
        place_names = names.school_names(rng, sum(counts.values()))
        suffix = {"elementary": "Elementary School", "middle": "Middle School", "high": "High School"}
        for digit, level in enumerate(catalog.LEVELS, start=1):
            for i in range(counts[level]):
                name = f"{place_names[len(self.schools)]} {suffix[level]}"
                school = _School(new_id(rng), level, name, f"{digit}{i + 1:03d}", rng.uniform(0.75, 1.25))
                self.schools.append(school)
        orgs = self.collections["orgs"]
        orgs[self.district_id] = {
            "sourcedId": self.district_id,
            "status": "active",
            "dateLastModified": self.stamp(),
            "name": names.DISTRICT_NAME,
            "type": "district",
            "identifier": "9900001",
            "children": [s.ref for s in self.schools],
        }
        for school in self.schools:
            grades = LEVEL_GRADES[school.level]
            orgs[school.id] = {
                "sourcedId": school.id,
                "status": "active",
                "dateLastModified": self.stamp(),
                "metadata": {"ext.schoolLevel": school.level, "ext.gradeRange": f"{grades[0]}-{grades[-1]}"},
                "name": school.name,
                "type": "school",
                "identifier": school.number,
                "parent": self.district_ref,
                "children": [],
            }

    def sessions(self) -> None:
        rng, cal = self.rng, self.calendar
        school_year = str(self.spec.school_year)
        self.year_id = new_id(rng)
        self.term_ids = [new_id(rng), new_id(rng)]
        self.gp_ids = [new_id(rng) for _ in range(4)]
        self.year_ref = guid_ref("academicSession", self.year_id)
        self.term_refs = [guid_ref("academicSession", t) for t in self.term_ids]
        self.gp_refs = [guid_ref("academicSession", g) for g in self.gp_ids]
        table = self.collections["academicSessions"]

        def add(
            sid: str,
            session_title: str,
            kind: str,
            start: str,
            end: str,
            parent: Json | None,
            children: list[Json],
        ) -> None:
            record: Json = {
                "sourcedId": sid,
                "status": "active",
                "dateLastModified": self.stamp(),
                "title": session_title,
                "type": kind,
                "startDate": start,
                "endDate": end,
            }
            if parent is not None:
                record["parent"] = parent
            record["children"] = children
            record["schoolYear"] = school_year
            table[sid] = record

        add(
            self.year_id,
            cal.year.title,
            "schoolYear",
            cal.year.start,
            cal.year.end,
            None,
            list(self.term_refs),
        )
        for t, term in enumerate(cal.terms):
            add(
                self.term_ids[t],
                term.title,
                "term",
                term.start,
                term.end,
                self.year_ref,
                self.gp_refs[2 * t : 2 * t + 2],
            )
        for g, gp in enumerate(cal.grading_periods):
            add(self.gp_ids[g], gp.title, "gradingPeriod", gp.start, gp.end, self.term_refs[g // 2], [])

    def courses(self) -> None:
        self.course_refs: dict[str, Json] = {}
        table = self.collections["courses"]
        for level, defs in (
            ("elementary", catalog.ELEMENTARY),
            ("middle", catalog.MIDDLE),
            ("high", catalog.HIGH),
        ):
            for c in defs:
                sid = new_id(self.rng)
                self.course_refs[c.code] = guid_ref("course", sid)
                table[sid] = {
                    "sourcedId": sid,
                    "status": "active",
                    "dateLastModified": self.stamp(),
                    "metadata": {"ext.department": c.dept, "ext.schoolLevel": level},
                    "title": c.title,
                    "schoolYear": self.year_ref,
                    "courseCode": c.code,
                    "grades": list(c.grades),
                    "subjects": [c.subject],
                    "org": self.district_ref,
                    "subjectCodes": [c.subject_code],
                    "resources": [],
                }

    def categories(self) -> None:
        self.category_ids: list[str] = []
        self.category_refs: list[Json] = []
        table = self.collections["categories"]
        for title, weight, _share in CATEGORIES:
            sid = new_id(self.rng)
            self.category_ids.append(sid)
            self.category_refs.append(guid_ref("category", sid))
            table[sid] = {
                "sourcedId": sid,
                "status": "active",
                "dateLastModified": self.stamp(),
                "title": title,
                "weight": weight,
            }

    def allocate_students(self) -> None:
        rng = self.rng
        self.staff_target = round(self.spec.users * STAFF_SHARE)
        total = self.spec.users - self.staff_target
        per_grade = _apportion(total, [_GRADE_WEIGHTS.get(g, 1.0) for g in GRADES])
        for grade, count in zip(GRADES, per_grade, strict=True):
            level = next(lv for lv, gs in LEVEL_GRADES.items() if grade in gs)
            schools = [s for s in self.schools if s.level == level]
            for school, n in zip(schools, _apportion(count, [s.weight for s in schools]), strict=True):
                school.students[grade] = [_Student(new_id(rng), school, grade) for _ in range(n)]
        self.students = [
            st for school in self.schools for grade in school.students for st in school.students[grade]
        ]

    def households(self) -> list[tuple[list[_Student], list[str]]]:
        """Siblings (random students, so often at different schools) and their guardians."""
        rng = self.rng
        wanted = round(len(self.students) * self.spec.guardians_per_student)
        order = list(self.students)
        rng.shuffle(order)
        households: list[tuple[list[_Student], list[str]]] = []
        made = pos = 0
        while made < wanted:
            k = min(_SIBLINGS.draw(rng), len(order))
            if pos + k > len(order):
                rng.shuffle(order)
                pos = 0
            kids = order[pos : pos + k]
            pos += k
            count = min(1 if rng.random() < 0.5 else 2, wanted - made)
            ids = [new_id(rng) for _ in range(count)]
            family = kids[0].family or rng.choice(names.FAMILY)
            for kid in kids:
                kid.family = kid.family or family
                kid.agents.extend(guid_ref("user", g) for g in ids)
            households.append((kids, ids))
            made += count
        return households

    def student_users(self) -> None:
        rng, spec = self.rng, self.spec
        users, demographics = self.collections["users"], self.collections["demographics"]
        domain = names.DISTRICT_DOMAIN
        for st in self.students:
            sex = people.draw_sex(rng)
            name = people.draw_name(rng, self.mess, sex, st.family)
            grade_index = GRADES.index(st.grade)
            username = self.usernames.take(name.given, name.family)
            email = None if rng.random() < self.mess else f"{username}@{domain}"
            state_id = f"{self.number('state'):010d}"
            st.roles = [people.role("student", st.school.ref, True)]
            users[st.id] = people.user_record(
                sourced_id=st.id,
                stamp=self.stamp(),
                username=username,
                name=name,
                roles=st.roles,
                primary_org=st.school.ref,
                identifier=str(self.number("student")),
                user_ids=[{"type": "SIS", "identifier": state_id}],
                email=email,
                grades=[st.grade],
                agents=st.agents,
                master_id=state_id,
                metadata={"ext.gradYear": str(spec.school_year + 12 - grade_index)},
            )
            born = people.birth_date(rng, grade_index, spec.school_year)
            demographics[st.id] = people.demographics_record(rng, st.id, self.stamp(), sex, born)

    def guardian_users(self, households: list[tuple[list[_Student], list[str]]]) -> None:
        rng = self.rng
        users = self.collections["users"]
        for kids, ids in households:
            schools: list[_School] = []
            for kid in kids:
                if kid.school not in schools:
                    schools.append(kid.school)
            for j, gid in enumerate(ids):
                sex = "female" if rng.random() < 0.55 else "male"
                family = kids[0].family if j == 0 or rng.random() < 0.6 else None
                name = people.draw_name(rng, self.mess, sex, family)
                role_name = GUARDIAN_ROLE_DRAW.draw(rng)
                username = self.usernames.take(name.given, name.family)
                number = self.number("guardian")
                phone = f"555-01{rng.randrange(100):02d}" if rng.random() < 0.85 else None
                users[gid] = people.user_record(
                    sourced_id=gid,
                    stamp=self.stamp(),
                    username=username,
                    name=name,
                    roles=[people.role(role_name, s.ref, i == 0) for i, s in enumerate(schools)],
                    primary_org=schools[0].ref,
                    identifier=f"G{number}",
                    user_ids=[{"type": "SIS", "identifier": f"P{number}"}],
                    email=f"{username}@{rng.choice(names.GUARDIAN_DOMAINS)}" if rng.random() < 0.9 else None,
                    agents=[kid.ref for kid in kids],
                    phone=phone,
                    sms=phone if phone is not None and rng.random() < 0.6 else None,
                )

    # --- classes and teachers ---------------------------------------------------------------
    def new_staff(self, role: str, school: _School | None, dept: str | None) -> _Staff:
        sex = people.draw_sex(self.rng)
        staff = _Staff(new_id(self.rng), role, school, dept, people.draw_name(self.rng, self.mess, sex))
        if school is None:
            self.district_staff.append(staff)
        elif role == "teacher":
            school.teachers.append(staff)
            staff.room = f"Room {100 + len(school.teachers)}"
        else:
            school.staff.append(staff)
        return staff

    def add_section(
        self, school: _School, course: CourseDef, period: int | None, terms: int, grade: str | None
    ) -> _Section:
        same = school.by_code.setdefault(course.code if grade is None else f"{course.code}:{grade}", [])
        section = _Section(new_id(self.rng), school, course, period, terms, grade, len(same) + 1)
        same.append(section)
        school.sections.append(section)
        return section

    def elementary_classes(self, school: _School) -> None:
        rng = self.rng
        homeroom_course = {c.code: c for c in catalog.ELEMENTARY}
        specials: list[_Section] = []
        for grade, students in school.students.items():
            if not students:
                continue
            rooms = max(1, round(len(students) / _HOMEROOM_SIZE))
            rooms = max(rooms, math.ceil(len(students) / _HOMEROOM_MAX))
            shuffled = list(students)
            rng.shuffle(shuffled)
            for r in range(rooms):
                homeroom = self.add_section(school, homeroom_course[f"HR-{grade}"], None, 3, grade)
                homeroom.students = shuffled[r::rooms]
                teacher = self.new_staff("teacher", school, "Elementary")
                self.assign(teacher, homeroom)
                homeroom.location = teacher.room
                for code, (_short, room) in catalog.SPECIALS.items():
                    special = self.add_section(school, homeroom_course[code], None, 3, grade)
                    special.students = list(homeroom.students)
                    special.location = room
                    homeroom.linked.append(special)
                    specials.append(special)
                for st in homeroom.students:
                    st.sections.append(homeroom)
                    st.sections.extend(homeroom.linked)
        for code in catalog.SPECIALS:
            mine = [s for s in specials if s.course.code == code]
            teachers = [
                self.new_staff("teacher", school, "Specials")
                for _ in range(max(1, math.ceil(len(mine) / _SPECIALS_PER_TEACHER)))
            ]
            for i, section in enumerate(mine):
                self.assign(teachers[i * len(teachers) // len(mine)], section)

    def secondary_classes(self, school: _School) -> None:
        rng = self.rng
        periods = PERIODS[school.level]
        requests: list[tuple[_Student, catalog.Requests]] = []
        demand: dict[str, int] = {}
        for grade, students in school.students.items():
            for st in students:
                wanted = catalog.requests_for(rng, school.level, grade)
                requests.append((st, wanted))
                for code in (*wanted.core, *wanted.electives):
                    demand[code] = demand.get(code, 0) + 1
        core = {code for _, wanted in requests for code in wanted.core}
        # Per department and term, how many sections meet in each period: a new section goes to
        # a period its course does not use yet, the department's least busy one, so a course's
        # sections spread over the day and a department needs few teachers.
        busy: dict[str, list[list[int]]] = {}
        for code, n in demand.items():
            course = catalog.course(code)
            if n < _SMALLEST_ELECTIVE and code not in core:
                continue  # too few asked: not offered this year
            load = busy.setdefault(course.dept, [[0] * (periods + 1), [0] * (periods + 1)])
            used = [0] * (periods + 1)
            first_term = rng.randrange(2)
            for i in range(math.ceil(n / course.max_size)):
                terms = 1 << ((first_term + i) % 2) if course.semester else 3
                halves = [t for t in (0, 1) if terms & (1 << t)]
                start = rng.randrange(periods)
                period = min(
                    ((start + j) % periods + 1 for j in range(periods)),
                    key=lambda p: (used[p], sum(load[t][p] for t in halves)),
                )
                used[period] += 1
                for t in halves:
                    load[t][period] += 1
                self.add_section(school, course, period, terms, None)
        by_code = school.by_code
        fillers: dict[tuple[int, int], list[_Section]] = {}
        for section in school.sections:
            if section.course.weight > 0:
                fillers.setdefault((section.period or 0, section.terms), []).append(section)
        for st, wanted in requests:
            for section in _schedule(wanted, st.grade, by_code, fillers, periods):
                section.students.append(st)
                st.sections.append(section)
        school.sections = [s for s in school.sections if s.students]  # nobody came: cancelled
        for code, same in list(by_code.items()):
            by_code[code] = [s for s in same if s.students]
            for number, section in enumerate(by_code[code], start=1):
                section.code_no = number
        self.secondary_teachers(school, periods)

    def secondary_teachers(self, school: _School, periods: int) -> None:
        """As few teachers per department as the timetable allows, each with one planning period.

        A department needs at least as many teachers as sections meet in its busiest period, and
        enough that each teaches at most ``periods - 1`` periods. Planning periods go where the
        department has the most spare teachers, so every period keeps a teacher per section.
        """
        rng = self.rng
        by_dept: dict[str, list[_Section]] = {}
        for section in school.sections:
            by_dept.setdefault(section.course.dept, []).append(section)
        for dept, sections in by_dept.items():
            demand = [[0] * (periods + 1), [0] * (periods + 1)]
            for section in sections:
                for t in (0, 1):
                    if section.terms & (1 << t):
                        demand[t][section.period or 0] += 1
            peak = [max(demand[0][p], demand[1][p]) for p in range(periods + 1)]
            count = max(max(peak), math.ceil(sum(peak) / (periods - 1)))
            spare = [count - peak[p] for p in range(periods + 1)]
            teachers: list[_Staff] = []
            for _ in range(count):
                teacher = self.new_staff("teacher", school, dept)
                planning = max(range(1, periods + 1), key=lambda p: (spare[p], -p))
                spare[planning] -= 1
                teacher.occ = [1 << planning, 1 << planning]  # never teaches in it
                teachers.append(teacher)
            for section in sorted(sections, key=lambda s: (s.terms != 3, s.period or 0)):
                free = [t for t in teachers if _fits(t, section, periods)]
                best = min(free, key=lambda t: sum(t.count))
                self.assign(best, section)
                section.location = best.room
            for section in sections:
                if rng.random() < _CO_TEACHER_SHARE:
                    options = [t for t in teachers if t is not section.lead and _fits(t, section, periods)]
                    if options:
                        section.co = min(options, key=lambda t: sum(t.count))
                        _occupy(section.co, section)

    def assign(self, teacher: _Staff, section: _Section) -> None:
        section.lead = teacher
        teacher.sections.append(section)
        _occupy(teacher, section)

    def support_staff(self) -> None:
        """Principals, assistant principals, counselors, district staff, then aides to fill the target."""
        for school in self.schools:
            n = sum(len(s) for s in school.students.values())
            self.new_staff("principal", school, None)
            if school.level == "elementary":
                assistants, counselors = (1 if n >= 450 else 0), (1 if n >= 250 else 0)
            else:
                assistants = 1 + n // 700 if school.level == "high" else 1 + (n >= 800)
                counselors = max(1, round(n / 300))
            for _ in range(assistants):
                self.new_staff("siteAdministrator", school, None)
            for _ in range(counselors):
                self.new_staff("counselor", school, None)
        for role, share, least in (
            ("districtAdministrator", 0.012, 2),
            ("systemAdministrator", 0.003, 1),
            ("ext:curriculumDesigner", 0.007, 1),
        ):
            for _ in range(max(least, round(self.staff_target * share))):
                self.new_staff(role, None, None)
        aides = max(0, self.staff_target - self.staff_count())
        sizes = [sum(len(g) for g in s.students.values()) for s in self.schools]
        rng = self.rng
        for school, count in zip(self.schools, _apportion(aides, sizes), strict=True):
            if school.level == "elementary":  # aides go to the youngest children's homerooms first
                open_classes = sorted(
                    (s for s in school.sections if s.linked), key=lambda s: GRADES.index(s.grade or "KG")
                )
                per_aide = _AIDE_HOMEROOMS
            else:
                open_classes = list(school.sections)
                rng.shuffle(open_classes)
                per_aide = _AIDE_SECTIONS
            pos = 0
            for _ in range(count):
                aide = self.new_staff("aide", school, None)
                taken = 0
                while taken < per_aide and pos < len(open_classes):
                    section = open_classes[pos]
                    pos += 1
                    if _fits(aide, section, 99):
                        section.aide = aide
                        aide.sections.append(section)
                        _occupy(aide, section)
                        taken += 1

    # --- mess -------------------------------------------------------------------------------
    def staff_count(self) -> int:
        return len(self.district_staff) + sum(len(s.teachers) + len(s.staff) for s in self.schools)

    def two_school_staff(self) -> None:
        """Teachers who also teach a class at a second school (a role there, the class moved to them)."""
        rng = self.rng
        wanted = round(self.mess * self.staff_count())
        if not wanted:
            return
        by_level: dict[str, list[_School]] = {
            lv: [s for s in self.schools if s.level == lv] for lv in catalog.LEVELS
        }
        candidates = [
            t
            for school in self.schools
            for t in school.teachers
            if (school.level != "elementary" and len(t.sections) >= 2) or t.dept == "Specials"
        ]
        for teacher in rng.sample(candidates, min(wanted * 2, len(candidates))):
            if wanted == 0:
                break
            home = teacher.school
            assert home is not None
            others = [s for s in by_level[home.level] if s is not home]
            if not others and home.level != "elementary":
                others = by_level["high" if home.level == "middle" else "middle"]
            if not others:
                continue
            second = rng.choice(others)
            cap = PERIODS.get(second.level, 99) - 1

            pool = [s for s in second.sections if _movable(s, teacher, cap, True)]
            pool = pool or [s for s in second.sections if _movable(s, teacher, cap, False)]
            if not pool:
                continue
            section = rng.choice(pool)
            old = section.lead
            assert old is not None
            old.sections.remove(section)
            _occupy(old, section, -1)
            self.assign(teacher, section)
            teacher.extra_schools.append(second)
            wanted -= 1

    def second_roles(self) -> None:
        """Teachers who also hold another role: counselor, assistant principal, curriculum designer."""
        rng = self.rng
        teachers = [t for school in self.schools for t in school.teachers]
        for teacher in rng.sample(teachers, min(round(self.mess * self.staff_count()), len(teachers))):
            assert teacher.school is not None
            extra = _SECOND_ROLES.draw(rng)
            org = self.district_ref if extra.startswith("ext:") else teacher.school.ref
            teacher.extra_roles.append((extra, org))

    def transfers(self) -> None:
        """Students who move to another school of their level mid-year: the first school's
        enrollments end the day before, the second school's start on the move date."""
        rng, cal = self.rng, self.calendar
        by_level = {lv: [s for s in self.schools if s.level == lv] for lv in catalog.LEVELS}
        eligible = [st for st in self.students if len(by_level[st.school.level]) > 1]
        wanted = min(round(self.mess * len(self.students)), len(eligible))
        if not wanted:
            return
        y = self.spec.school_year
        days = Calendar.school_days(f"{y - 1}-10-15", f"{y}-03-15")
        year_start, year_end = cal.year.start, cal.year.end
        for st in rng.sample(eligible, wanted):
            moved = rng.choice(days)
            day_before = _previous_day(moved)
            target = rng.choice([s for s in by_level[st.school.level] if s is not st.school])
            replacements: list[_Section] = []
            for section in list(st.sections):
                begin, end = self.term_dates[section.terms]
                if end < moved:
                    continue
                if section.linked or not (section.course.code.startswith("ES-")):
                    replacements.append(section)
                if begin >= moved:
                    section.students.remove(st)
                    st.sections.remove(section)
                else:
                    self.partial[(section.id, st.id)] = (begin, day_before)
            for section in replacements:
                if section.linked:  # an elementary homeroom: the new school's homeroom and its specials
                    options = target.by_code.get(f"{section.course.code}:{st.grade}", [])
                    if not options:
                        continue
                    homeroom = min(options, key=lambda s: len(s.students))
                    joined = [homeroom, *homeroom.linked]
                else:
                    options = [
                        s
                        for s in target.by_code.get(section.course.code, [])
                        if self.term_dates[s.terms][1] >= moved
                    ]
                    if not options:
                        continue
                    joined = [min(options, key=lambda s: (s.terms != section.terms, len(s.students)))]
                for new in joined:
                    new.students.append(st)
                    st.sections.append(new)
                    begin, end = self.term_dates[new.terms]
                    if begin < moved:
                        self.partial[(new.id, st.id)] = (moved, end)
            st.roles[0]["beginDate"] = year_start
            st.roles[0]["endDate"] = day_before
            st.roles.append(people.role("student", target.ref, False, moved, year_end))

    def long_titles(self) -> None:
        sections = [s for school in self.schools for s in school.sections]
        for section in self.rng.sample(sections, min(round(self.mess * len(sections)), len(sections))):
            section.long = True

    # --- records ----------------------------------------------------------------------------
    def staff_users(self) -> None:
        rng = self.rng
        users = self.collections["users"]
        domain = names.DISTRICT_DOMAIN
        everyone = [
            *self.district_staff,
            *(s for school in self.schools for s in (*school.staff, *school.teachers)),
        ]
        for staff in everyone:
            org = staff.school.ref if staff.school is not None else self.district_ref
            roles = [people.role(staff.role, org, True)]
            roles.extend(people.role(staff.role, s.ref, False) for s in staff.extra_schools)
            roles.extend(people.role(extra, extra_org, False) for extra, extra_org in staff.extra_roles)
            username = self.usernames.take(staff.name.given, staff.name.family)
            number = self.number("staff")
            users[staff.id] = people.user_record(
                sourced_id=staff.id,
                stamp=self.stamp(),
                username=username,
                name=staff.name,
                roles=roles,
                primary_org=org,
                identifier=f"E{number}",
                user_ids=[{"type": "SIS", "identifier": f"{self.number('state'):010d}"}],
                email=f"{username}@{domain}",
                phone=f"555-02{rng.randrange(100):02d}" if rng.random() < 0.3 else None,
                metadata={"ext.department": staff.dept} if staff.dept else None,
            )

    def classes(self) -> None:
        rng = self.rng
        table = self.collections["classes"]
        for school in self.schools:
            for section in school.sections:
                course = section.course
                lead = section.lead
                assert lead is not None
                if section.grade is not None:
                    homeroom = course.code.startswith("HR-")
                    short = grade_title(section.grade) if homeroom else catalog.SPECIALS[course.code][0]
                    letter = chr(ord("A") + (section.code_no - 1) % 26)
                    room_of = lead.name.family if homeroom else self._homeroom_teacher(section)
                    title = (
                        f"{short} Homeroom - {lead.name.family}"
                        if homeroom
                        else f"{short} - {grade_title(section.grade)} ({room_of})"
                    )
                    code = (
                        f"{course.code}-{letter}" if homeroom else f"{course.code}-{section.grade}-{letter}"
                    )
                    class_type = "homeroom" if homeroom else "scheduled"
                    grades = [section.grade]
                    periods: list[str] = []
                else:
                    title = f"{course.title} - Period {section.period} - {lead.name.family}"
                    code = f"{course.code}-{section.code_no:02d}"
                    class_type = "scheduled"
                    grades = list(course.grades)
                    periods = [str(section.period)]
                if section.long:
                    title = f"{title} - {rng.choice(_LONG_SUFFIXES)}"
                record: Json = {
                    "sourcedId": section.id,
                    "status": "active",
                    "dateLastModified": self.stamp(),
                    "title": title,
                    "classCode": code,
                    "classType": class_type,
                }
                if section.location:  # optional fields without a value are left out
                    record["location"] = section.location
                record |= {
                    "grades": grades,
                    "subjects": [course.subject],
                    "course": self.course_refs[course.code],
                    "school": school.ref,
                    "terms": [self.term_refs[t] for t in (0, 1) if section.terms & (1 << t)],
                    "subjectCodes": [course.subject_code],
                    "periods": periods,
                    "resources": [],
                }
                table[section.id] = record

    def _homeroom_teacher(self, special: _Section) -> str:
        for homeroom in special.school.by_code.get(f"HR-{special.grade}:{special.grade}", []):
            if special in homeroom.linked and homeroom.lead is not None:
                return homeroom.lead.name.family
        return special.grade or ""

    def enrollments(self) -> None:
        rng = self.rng
        table = self.collections["enrollments"]
        stamps, bits = self.stamps, _STAMP_BITS
        partial = self.partial
        for school in self.schools:
            school_ref = school.ref
            for section in school.sections:
                class_ref = section.ref
                begin, end = self.term_dates[section.terms]
                staff = [
                    (section.lead, "teacher", True),
                    (section.co, "teacher", False),
                    (section.aide, "aide", False),
                ]
                for member, role_name, primary in staff:
                    if member is None:
                        continue
                    sid = new_id(rng)
                    table[sid] = {
                        "sourcedId": sid,
                        "status": "active",
                        "dateLastModified": stamps[rng.getrandbits(bits)],
                        "user": member.ref,
                        "class": class_ref,
                        "school": school_ref,
                        "role": role_name,
                        "primary": primary,
                        "beginDate": begin,
                        "endDate": end,
                    }
                for st in section.students:
                    sid = new_id(rng)
                    window = partial.get((section.id, st.id)) if partial else None
                    table[sid] = {
                        "sourcedId": sid,
                        "status": "active",
                        "dateLastModified": stamps[rng.getrandbits(bits)],
                        "user": st.ref,
                        "class": class_ref,
                        "school": school_ref,
                        "role": "student",
                        "beginDate": window[0] if window else begin,
                        "endDate": window[1] if window else end,
                    }

    def gradebook(self) -> None:
        rng = self.rng
        items, results = self.collections["lineItems"], self.collections["results"]
        gps = self.calendar.grading_periods
        gp_days = [Calendar.school_days(gp.start, gp.end) for gp in gps]
        share = self.spec.results_per_seat
        partial = self.partial
        stamps, bits = self.stamps, _STAMP_BITS
        for school in self.schools:
            if school.level == "elementary":
                continue
            for section in school.sections:
                periods = [g for g in range(4) if section.terms & (1 << (g // 2))]
                numbers: dict[str, int] = {}
                for _ in range(rng.choice((1, 2, 2, 3))):
                    c = CATEGORY_DRAW.draw(rng)
                    label = CATEGORIES[c][0]
                    g = rng.choice(periods)
                    numbers[label] = n = numbers.get(label, 3 * g) + 1
                    days = gp_days[g]
                    at = rng.randrange(max(1, len(days) - 3))
                    assigned = days[at]
                    due = days[min(len(days) - 1, at + rng.randint(1, 10))]
                    sid = new_id(rng)
                    item_ref = guid_ref("lineItem", sid)
                    items[sid] = line_item_record(
                        sourced_id=sid,
                        stamp=stamps[rng.getrandbits(bits)],
                        title=item_title(label, n),
                        course_title=section.course.title,
                        assigned=f"{assigned}T{rng.choice((13, 14, 15, 16))}:00:00.000Z",
                        due=f"{due}T23:59:00.000Z",
                        class_ref=section.ref,
                        school_ref=school.ref,
                        category_ref=self.category_refs[c],
                        grading_period_ref=self.gp_refs[g],
                        term_ref=self.term_refs[g // 2],
                    )
                    for st in section.students:
                        if rng.random() >= share:
                            continue
                        window = partial.get((section.id, st.id)) if partial else None
                        if window and not window[0] <= due <= window[1]:
                            continue
                        rid = new_id(rng)
                        results[rid] = result_record(
                            rng,
                            sourced_id=rid,
                            stamp=stamps[rng.getrandbits(bits)],
                            line_item_ref=item_ref,
                            student_ref=st.ref,
                            class_ref=section.ref,
                            score_date=add_days(due, rng.randrange(8)),
                        )


def _previous_day(day: str) -> str:
    return add_days(day, -1)
