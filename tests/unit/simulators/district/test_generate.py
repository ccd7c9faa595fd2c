"""The generated district: determinism, sizes, integrity, mess, scaling."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from simulators.district import MESS_KINDS, District, DistrictSpec, InvalidSpec, generate
from simulators.district.records import uuid4_text

from .checks import assert_consistent


@pytest.fixture(scope="module")
def district() -> District:
    """The default district, generated once for the module."""
    return generate(DistrictSpec())


@pytest.fixture(scope="module")
def summary(district: District) -> dict:
    return district.summary()


def _digest(district: District) -> str:
    text = json.dumps(district.collections, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_same_spec_gives_byte_identical_output_and_seeds_differ() -> None:
    spec = DistrictSpec(users=2_000)
    first, again = generate(spec), generate(spec)
    assert _digest(first) == _digest(again)
    other = generate(DistrictSpec(users=2_000, seed=7))
    assert _digest(other) != _digest(first)
    assert not set(other.collections["users"]) & set(first.collections["users"])


def test_sourced_ids_are_uuid4_from_the_seeded_rng() -> None:
    import random

    rng = random.Random(5)
    for _ in range(1_000):
        bits = rng.getrandbits(128)
        assert uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))


def test_collections_and_counts(district: District) -> None:
    assert list(district.collections) == [
        "orgs",
        "academicSessions",
        "courses",
        "classes",
        "users",
        "enrollments",
        "demographics",
        "categories",
        "lineItems",
        "results",
    ]
    counts = district.counts()
    assert counts == {name: len(table) for name, table in district.collections.items()}
    assert counts["academicSessions"] == 7
    assert counts["categories"] == 5
    assert 5_000 <= counts["classes"] <= 7_000
    assert 130_000 <= counts["enrollments"] <= 170_000


def test_default_sizes(district: District, summary: dict) -> None:
    roles = summary["users_by_role"]
    assert summary["schools_by_type"] == {"elementary": 24, "high": 7, "middle": 9}
    students = roles["student"]
    staff = sum(n for role, n in roles.items() if role not in ("student", "guardian", "parent", "relative"))
    assert students + staff == pytest.approx(20_500, abs=100)
    assert staff == pytest.approx(1_500, rel=0.05)
    assert 0.6 <= roles["teacher"] / staff <= 0.8
    assert roles["principal"] == 40
    for role in (
        "aide",
        "counselor",
        "siteAdministrator",
        "districtAdministrator",
        "systemAdministrator",
        "ext:curriculumDesigner",
    ):
        assert roles[role] > 0, role
    guardians = roles["guardian"] + roles["parent"] + roles["relative"]
    assert guardians == round(0.5 * students)
    assert roles["guardian"] > roles["parent"] > roles["relative"] > 0
    assert len(district.collections["demographics"]) == students
    assert len(district.collections["courses"]) > 100


def test_default_district_is_consistent(district: District) -> None:
    assert_consistent(district)


def test_classes_look_like_a_school_year(district: District) -> None:
    c = district.collections
    sizes: dict[str, int] = {}
    for e in c["enrollments"].values():
        if e["role"] == "student":
            sizes[e["class"]["sourcedId"]] = sizes.get(e["class"]["sourcedId"], 0) + 1
    homerooms = [k for k in c["classes"].values() if k["classType"] == "homeroom"]
    assert homerooms and all(15 <= sizes[k["sourcedId"]] <= 32 for k in homerooms)  # transfers add a few
    sections = [k for k in c["classes"].values() if k["periods"]]
    average = sum(sizes.get(k["sourcedId"], 0) for k in sections) / len(sections)
    assert 20 <= average <= 30
    assert {len(k["terms"]) for k in sections} == {1, 2}
    per_student: dict[str, int] = {}
    for e in c["enrollments"].values():
        if e["role"] == "student" and e["endDate"] == "2027-06-11" and e["beginDate"] == "2026-08-17":
            per_student[e["user"]["sourcedId"]] = per_student.get(e["user"]["sourcedId"], 0) + 1
    secondary = [u for u in c["users"].values() if u["grades"] and u["grades"][0] >= "06"]
    fall_and_year = [per_student.get(u["sourcedId"], 0) for u in secondary]
    assert 4 <= sum(fall_and_year) / len(fall_and_year) <= 7  # year-long classes; semester ones on top
    assert any(k["classType"] == "scheduled" and not k["periods"] for k in c["classes"].values())  # specials
    assert sum(1 for e in c["enrollments"].values() if e["role"] == "aide") > 100
    co_taught = sum(1 for e in c["enrollments"].values() if e["role"] == "teacher" and not e["primary"])
    assert co_taught > 20


def test_students_have_plausible_people_data(district: District) -> None:
    c = district.collections
    for sid, demo in c["demographics"].items():
        user = c["users"][sid]
        grade = user["grades"][0]
        index = 0 if grade == "KG" else int(grade)
        age_on_sept_1 = 2026 - int(demo["birthDate"][:4]) - (demo["birthDate"][5:] > "09-01")
        assert age_on_sept_1 in (5 + index, 6 + index), (grade, demo["birthDate"])
        assert demo["sex"] in ("male", "female", "other", "unspecified")
        assert user["metadata"]["ext.gradYear"] == str(2027 + 12 - index)
        assert user.get("email", "@riverbend.k12.example").endswith("@riverbend.k12.example")
    usernames = [u["username"] for u in c["users"].values()]
    assert len(set(usernames)) == len(usernames)


def test_guardians_link_both_ways_and_span_schools(district: District) -> None:
    users = district.collections["users"]
    multi_school = 0
    siblings = 0
    for user in users.values():
        if user["roles"][0]["role"] in ("guardian", "parent", "relative"):
            kids = [users[a["sourcedId"]] for a in user["agents"]]
            siblings += len(kids) > 1
            multi_school += len({k["primaryOrg"]["sourcedId"] for k in kids}) > 1
            assert len(user["roles"]) == len({r["org"]["sourcedId"] for r in user["roles"]})
    assert siblings > 500
    assert multi_school > 200


def test_mess_present_at_default(summary: dict, district: District) -> None:
    mess = summary["mess"]
    assert set(mess) == set(MESS_KINDS)
    assert all(n > 0 for n in mess.values()), mess
    students = summary["users_by_role"]["student"]
    assert mess["transfer"] == pytest.approx(0.02 * students, rel=0.1)
    assert mess["missing_email"] == pytest.approx(0.02 * students, rel=0.25)
    assert mess["long_title"] == pytest.approx(0.02 * summary["counts"]["classes"], rel=0.1)
    users = district.collections["users"].values()
    for kind, mark in (("name_apostrophe", "'"), ("name_hyphen", "-")):
        assert any(mark in u["familyName"] or mark in u["givenName"] for u in users), kind
    accents = "".join(u["givenName"] + u["familyName"] for u in users if not u["familyName"].isascii())
    assert {"é", "ñ", "ü"} <= set(accents + "".join(u["givenName"] for u in users))


def test_transfers_end_at_one_school_and_start_at_another(district: District) -> None:
    c = district.collections
    movers = [u for u in c["users"].values() if u["roles"][0]["role"] == "student" and len(u["roles"]) > 1]
    assert movers
    by_user: dict[str, list[dict]] = {}
    for e in c["enrollments"].values():
        by_user.setdefault(e["user"]["sourcedId"], []).append(e)
    for user in movers[:50]:
        left, joined = user["roles"]
        assert left["endDate"] < joined["beginDate"]
        mine = by_user[user["sourcedId"]]
        old = [e for e in mine if e["school"]["sourcedId"] == left["org"]["sourcedId"]]
        new = [e for e in mine if e["school"]["sourcedId"] == joined["org"]["sourcedId"]]
        assert old and new
        assert all(e["endDate"] <= left["endDate"] or e["endDate"] < joined["beginDate"] for e in old)
        assert all(e["beginDate"] >= joined["beginDate"] for e in new)


def test_staff_at_two_schools_teach_at_both(district: District) -> None:
    c = district.collections
    schools = {sid for sid, o in c["orgs"].items() if o["type"] == "school"}
    teaching: dict[str, set[str]] = {}
    for e in c["enrollments"].values():
        if e["role"] == "teacher":
            teaching.setdefault(e["user"]["sourcedId"], set()).add(e["school"]["sourcedId"])
    travellers = [
        u
        for u in c["users"].values()
        if u["roles"][0]["role"] == "teacher"
        and len({r["org"]["sourcedId"] for r in u["roles"]} & schools) > 1
    ]
    assert travellers
    for user in travellers:
        assert {r["org"]["sourcedId"] for r in user["roles"]} & schools == teaching[user["sourcedId"]]


def test_no_mess_when_disabled() -> None:
    clean = generate(DistrictSpec(users=2_000, mess=0))
    assert clean.summary()["mess"] == dict.fromkeys(MESS_KINDS, 0)
    assert_consistent(clean)
    for user in clean.collections["users"].values():
        assert len(user["roles"]) == 1 or user["roles"][0]["role"] in ("guardian", "parent", "relative")


def test_small_district_stays_consistent() -> None:
    small = generate(DistrictSpec(users=500, seed=11))
    assert_consistent(small)
    summary = small.summary()
    levels = summary["schools_by_type"]
    assert set(levels) == {"elementary", "middle", "high"} and sum(levels.values()) <= 4
    assert summary["users_by_role"]["principal"] == sum(levels.values())
    assert summary["counts"]["lineItems"] > 0 and summary["counts"]["results"] > 0


def test_scales_linearly() -> None:
    small = generate(DistrictSpec(users=2_000)).counts()
    large = generate(DistrictSpec(users=4_000)).counts()
    for name in ("users", "classes", "enrollments", "demographics", "lineItems", "results"):
        assert 1.7 <= large[name] / small[name] <= 2.3, (name, small[name], large[name])


def test_spec_knobs() -> None:
    spec = DistrictSpec(users=1_000, guardians_per_student=0, results_per_seat=0)
    d = generate(spec)
    assert d.counts()["results"] == 0
    assert not any(u["agents"] for u in d.collections["users"].values())
    other_year = generate(DistrictSpec(users=1_000, school_year=2031, as_of="2030-08-01T00:00:00.000Z"))
    assert_consistent(other_year)
    year = next(s for s in other_year.collections["academicSessions"].values() if s["type"] == "schoolYear")
    assert year["schoolYear"] == "2031" and year["startDate"].startswith("2030-08")


@pytest.mark.parametrize(
    "bad",
    [{"users": 10}, {"mess": -0.1}, {"results_per_seat": 2.0}, {"as_of": "2026-08-10"}, {"school_year": 12}],
)
def test_invalid_spec_is_refused(bad: dict) -> None:
    with pytest.raises(InvalidSpec):
        DistrictSpec(**bad)
