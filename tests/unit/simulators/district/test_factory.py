"""DistrictFactory: new records that fit the district, and look-ups over the live collections."""

from __future__ import annotations

import json

import pytest

from simulators.district import District, DistrictSpec, generate
from simulators.district.factory import UnknownRecord

from .checks import DATE, INSTANT, assert_consistent

NOW = "2026-08-09T12:00:00.000Z"  # inside the generated records' 30-day window
IN_YEAR = "2026-10-06T15:30:00.123Z"


@pytest.fixture
def district() -> District:
    return generate(DistrictSpec(users=2_000, seed=3))


def _students_by_scan(district: District, class_id: str) -> list[str]:
    found: list[str] = []
    for e in district.collections["enrollments"].values():
        match = e["class"]["sourcedId"] == class_id and e["role"] == "student" and e["status"] == "active"
        if match and e["user"]["sourcedId"] not in found:
            found.append(e["user"]["sourcedId"])
    return found


def test_lookups_match_a_scan(district: District) -> None:
    factory = district.factory(1)
    c = district.collections
    schools = factory.schools()
    assert set(schools) == {sid for sid, o in c["orgs"].items() if o["type"] == "school"}
    for school in schools:
        expected = [sid for sid, k in c["classes"].items() if k["school"]["sourcedId"] == school]
        assert factory.classes_at(school) == expected
    for class_id in list(c["classes"])[::25]:
        assert factory.students_in(class_id) == _students_by_scan(district, class_id)
    assert factory.classes_at("no-such-school") == []
    assert factory.students_in("no-such-class") == []


def test_lookups_follow_inserts_replacements_and_deletes(district: District) -> None:
    factory = district.factory(1)
    c = district.collections
    school = factory.schools()[0]
    class_id = factory.classes_at(school)[0]
    before = factory.students_in(class_id)
    student, demographics = factory.new_student(school, NOW)
    c["users"][student["sourcedId"]] = student
    c["demographics"][demographics["sourcedId"]] = demographics
    enrollment = factory.new_enrollment(student["sourcedId"], class_id, "student", NOW)
    c["enrollments"][enrollment["sourcedId"]] = enrollment
    assert factory.students_in(class_id) == [*before, student["sourcedId"]]
    # A soft delete replaces the record: the student drops out of the class.
    c["enrollments"][enrollment["sourcedId"]] = {**enrollment, "status": "tobedeleted"}
    assert factory.students_in(class_id) == before
    # A hard delete of another one, then a new insert: the index catches up.
    gone = next(
        sid
        for sid, e in c["enrollments"].items()
        if e["class"]["sourcedId"] == class_id and e["role"] == "student"
    )
    del c["enrollments"][gone]
    again = factory.new_enrollment(student["sourcedId"], class_id, "student", NOW)
    c["enrollments"][again["sourcedId"]] = again
    assert factory.students_in(class_id) == _students_by_scan(district, class_id)
    # Classes: a soft-deleted one disappears, a new one appears.
    klass = c["classes"][class_id]
    c["classes"][class_id] = {**klass, "status": "tobedeleted"}
    assert class_id not in factory.classes_at(school)
    copy = {**klass, "sourcedId": "new-class"}
    c["classes"]["new-class"] = copy
    assert factory.classes_at(school)[-1] == "new-class"


def test_new_records_keep_the_district_consistent(district: District) -> None:
    factory = district.factory(2)
    c = district.collections
    schools = factory.schools()
    new_students = []
    for school in schools:
        user, demographics = factory.new_student(school, NOW)
        assert user["sourcedId"] == demographics["sourcedId"]
        assert user["primaryOrg"]["sourcedId"] == school
        c["users"][user["sourcedId"]] = user
        c["demographics"][user["sourcedId"]] = demographics
        new_students.append(user)
        for class_id in factory.classes_at(school)[:6]:
            e = factory.new_enrollment(user["sourcedId"], class_id, "student", NOW)
            c["enrollments"][e["sourcedId"]] = e
    guardian = factory.new_guardian([s["sourcedId"] for s in new_students[:2]], NOW)
    c["users"][guardian["sourcedId"]] = guardian
    for student in new_students[:2]:
        ref = {
            "href": f"/ims/oneroster/rostering/v1p2/users/{guardian['sourcedId']}",
            "sourcedId": guardian["sourcedId"],
            "type": "user",
        }
        c["users"][student["sourcedId"]] = {**student, "agents": [*student["agents"], ref]}
    assert guardian["roles"][0]["roleType"] == "primary"
    assert len({r["org"]["sourcedId"] for r in guardian["roles"]}) == len(guardian["roles"])
    for role in ("teacher", "aide", "counselor"):
        staff = factory.new_staff(role, schools[0], NOW)
        assert staff["roles"] == [{"roleType": "primary", "role": role, "org": staff["primaryOrg"]}]
        c["users"][staff["sourcedId"]] = staff
    teacher = staff
    class_id = factory.classes_at(schools[-1])[0]
    co = factory.new_enrollment(teacher["sourcedId"], class_id, "teacher", NOW)
    assert co["primary"] is False
    c["enrollments"][co["sourcedId"]] = co
    secondary = next(sid for sid, k in c["classes"].items() if k["periods"])
    item = factory.new_line_item(secondary, NOW)
    c["lineItems"][item["sourcedId"]] = item
    for student_id in factory.students_in(secondary)[:5]:
        result = factory.new_result(item["sourcedId"], student_id, NOW)
        c["results"][result["sourcedId"]] = result
    assert_consistent(district)
    usernames = [u["username"] for u in c["users"].values()]
    assert len(set(usernames)) == len(usernames)


def test_dates_follow_now_inside_the_school_year(district: District) -> None:
    factory = district.factory(3)
    c = district.collections
    school = factory.schools()[-1]  # a high school: semester and year-long sections
    class_id = next(k for k in factory.classes_at(school) if len(c["classes"][k]["terms"]) == 2)
    enrollment = factory.new_enrollment("someone", class_id, "student", IN_YEAR)
    assert enrollment["beginDate"] == "2026-10-06" and enrollment["endDate"] == "2027-06-11"
    assert enrollment["dateLastModified"] == IN_YEAR and "primary" not in enrollment
    item = factory.new_line_item(class_id, IN_YEAR)
    gp = c["academicSessions"][item["gradingPeriod"]["sourcedId"]]
    assert gp["type"] == "gradingPeriod" and gp["startDate"] <= "2026-10-06" <= gp["endDate"]
    assert "2026-10-06" <= item["assignDate"] <= item["dueDate"]
    assert INSTANT.match(item["assignDate"]) and INSTANT.match(item["dueDate"])
    c["lineItems"][item["sourcedId"]] = item
    result = factory.new_result(item["sourcedId"], "someone", IN_YEAR)
    assert result["scoreDate"] == "2026-10-06" and DATE.match(result["scoreDate"])
    spring_only = [district.context.term_ids[1]]
    spring = next(
        k
        for k in factory.classes_at(school)
        if [t["sourcedId"] for t in c["classes"][k]["terms"]] == spring_only
    )
    early = factory.new_enrollment("someone", spring, "student", IN_YEAR)
    assert early["beginDate"] == "2027-01-18"  # the class has not started yet


def test_same_seed_builds_the_same_records(district: District) -> None:
    def build(seed: int) -> str:
        factory = district.factory(seed)
        school = factory.schools()[0]
        class_id = factory.classes_at(school)[0]
        records = [
            *factory.new_student(school, NOW),
            factory.new_staff("teacher", school, NOW),
            factory.new_enrollment("u", class_id, "aide", NOW),
            factory.new_line_item(class_id, NOW),
        ]
        return json.dumps(records, sort_keys=True)

    assert build(9) == build(9)
    assert build(9) != build(10)


def test_unknown_records_are_refused(district: District) -> None:
    factory = district.factory(4)
    with pytest.raises(UnknownRecord):
        factory.new_enrollment("u", "no-such-class", "student", NOW)
    with pytest.raises(UnknownRecord):
        factory.new_result("no-such-item", "u", NOW)
