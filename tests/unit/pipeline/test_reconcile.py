"""Reconciliation: counts that catch what is missing, unexpected, stale or doubled."""

from __future__ import annotations

from collections import Counter

from sislms.reconcile import (
    activity_report,
    compare,
    expected_lms,
    grades_report,
    held_lms,
    roster_latency,
    roster_report,
)
from streams.roster.desired import Target


def test_compare_counts_each_kind_of_difference() -> None:
    want = Counter({"a": 1, "b": 1, "c": 1})
    got = Counter({"a": 1, "b": 2, "x": 3})
    r = compare(want, got)
    assert (r.expected, r.applied, r.missing, r.unexpected, r.duplicated) == (3, 2, 1, 1, 3)
    assert not r.clean
    assert r.examples["missing"] == ["c"] and r.examples["unexpected"] == ["x"]
    assert compare(want, Counter(want)).clean


def _targets() -> dict[str, Target]:
    def t(kind: str, **attrs: str | None) -> Target:
        return Target(kind, attrs)

    return {
        "account|d": t("account", account_id="d", parent_account_id=None, root="true"),
        "account|s1": t("account", account_id="s1", parent_account_id="d", root="false"),
        "user|u1": t("user", login_id="ann", sortable_name="A, Ann", email="a@x"),
        "user|t1": t("user", login_id="tom", sortable_name="T, Tom", email="t@x"),
        "course|c1": t("course", term_id="term", blueprint_course_id=None),
        "section|c1": t("section", course_id="c1"),
        "enrollment|e1": t("enrollment", user_id="u1", course_id="c1", role="student"),
        # a schedule change back into the same class: one Canvas enrollment
        "enrollment|e2": t("enrollment", user_id="u1", course_id="c1", role="student"),
        "enrollment|e3": t("enrollment", user_id="t1", course_id="c1", role="teacher"),
        "account_admin|t1|s1": t("account_admin", user_id="t1", account_id="s1", role="School admin"),
    }


def _lms() -> dict:
    return {
        "accounts": [
            {"sis_account_id": None, "parent": None, "root": True},
            {"sis_account_id": "s1", "parent": None, "root": False},
        ],
        "users": [
            {"sis_user_id": "u1", "login_id": "ann", "sortable_name": "A, Ann", "email": "a@x"},
            {"sis_user_id": "t1", "login_id": "tom", "sortable_name": "T, Tom", "email": "t@x"},
        ],
        "courses": [{"sis_course_id": "c1", "term": "term", "blueprint_course": None}],
        "sections": [{"sis_section_id": "c1", "course": "c1"}, {"sis_section_id": None, "course": "c1"}],
        "enrollments": [
            {"user": "u1", "course": "c1", "role": "StudentEnrollment", "observed": None},
            {"user": "t1", "course": "c1", "role": "TeacherEnrollment", "observed": None},
        ],
        "admins": [{"user": "t1", "account": "s1", "role": "School admin"}],
    }


def test_the_planned_district_and_the_lms_agree() -> None:
    r = roster_report(_targets(), _lms())
    assert r.clean, r.as_dict()
    assert r.expected == r.applied == 8
    assert r.detail["by_kind"]["enrollments"]["expected"] == 2


def test_a_missing_enrollment_a_stale_name_and_a_doubled_user_are_all_reported() -> None:
    lms = _lms()
    lms["enrollments"] = lms["enrollments"][:1]
    lms["users"][1] = {**lms["users"][1], "sortable_name": "Old, Name"}
    lms["users"].append(dict(lms["users"][0]))
    want, got = expected_lms(_targets()), held_lms(lms)
    assert compare(want["enrollments"], got["enrollments"]).missing == 1
    users = compare(want["users"], got["users"])
    assert (users.missing, users.unexpected, users.duplicated) == (1, 1, 1)
    r = roster_report(_targets(), lms)
    assert (r.missing, r.unexpected, r.duplicated) == (2, 1, 1)


def _grade(a: str, u: str, score: float, at: float) -> dict:
    return {"assignment_id": a, "user_id": u, "score": score, "grade": None, "at": at}


def _result(rid: str, score: float, item: str, student: str) -> dict:
    return {
        "sourcedId": rid, "status": "active", "score": score,
        "lineItem": {"sourcedId": item}, "student": {"sourcedId": student},
    }  # fmt: skip


def test_grades_count_the_last_score_and_time_the_first_write_after_each_grade() -> None:
    grades = [_grade("1", "9", 70.0, 100.0), _grade("1", "9", 85.0, 200.0), _grade("2", "9", 50.0, 300.0)]
    results = [_result("lms-1-9", 85.0, "lms-1", "s9"), _result("lms-2-9", 50.0, "lms-2", "s9")]
    written = [
        {"sourcedId": "lms-1-9", "at": "1970-01-01T00:01:40.500Z"},
        {"sourcedId": "lms-1-9", "at": "1970-01-01T00:03:21.000Z"},
        {"sourcedId": "lms-2-9", "at": "1970-01-01T00:05:00.250Z"},
    ]
    r = grades_report(grades, results, written, "lms")
    assert r.clean and (r.expected, r.applied) == (2, 2)
    assert sorted(r.latency.samples) == [0.25, 0.5, 1.0]


def test_a_stale_score_an_unknown_result_and_a_second_result_for_one_grade_are_caught() -> None:
    grades = [_grade("1", "9", 85.0, 100.0), _grade("2", "9", 50.0, 100.0)]
    results = [
        _result("lms-1-9", 70.0, "lms-1", "s9"),  # the older score
        _result("lms-2-9", 50.0, "lms-2", "s9"),
        _result("lms-2-9b", 50.0, "lms-2", "s9"),  # a second result for the same grade
        _result("sis-own", 10.0, "item", "s9"),  # the SIS's own gradebook: not ours
    ]
    r = grades_report(grades, results, [], "lms")
    assert (r.missing, r.unexpected, r.duplicated) == (1, 1, 1)
    assert r.examples["stale"] == ["lms-1-9"]


def test_activity_counts_delivered_learning_events_once_and_ignores_state_changes() -> None:
    delivered = [
        {"id": "e1", "name": "logged_in", "sent_at": 10.0, "copy": False},
        {"id": "e1", "name": "logged_in", "sent_at": 11.0, "copy": True},  # Canvas redelivered it
        {"id": "e2", "name": "asset_accessed", "sent_at": 10.0, "copy": False},
        {"id": "g1", "name": "grade_change", "sent_at": 10.0, "copy": False},
    ]
    r = activity_report(delivered, [("e1", 10.5), ("e2", 12.0)])
    assert r.clean and (r.expected, r.applied) == (2, 2)
    assert sorted(r.latency.samples) == [0.5, 2.0]
    assert activity_report(delivered, [("e1", 10.5)]).missing == 1
    assert activity_report(delivered, [("e1", 10.5), ("e2", 12.0), ("zz", 1.0)]).unexpected == 1


def test_roster_latency_pairs_each_sis_change_with_the_first_lms_write_after_it() -> None:
    changes = [
        {"collection": "users", "sourcedId": "u1", "at": "1970-01-01T00:01:40.000Z"},
        {"collection": "enrollments", "sourcedId": "e1", "at": "1970-01-01T00:01:40.000Z"},
        {"collection": "enrollments", "sourcedId": "e2", "at": "1970-01-01T00:01:40.000Z"},
        {"collection": "results", "sourcedId": "r1", "at": "1970-01-01T00:01:40.000Z"},
        {"collection": "users", "sourcedId": "u1", "at": "1970-01-01T00:00:10.000Z"},  # before: skipped
    ]
    sis = {"enrollments": {
        "e1": {"user": {"sourcedId": "u1"}, "class": {"sourcedId": "c1"}},
        "e2": {"user": {"sourcedId": "u2"}, "class": {"sourcedId": "c1"}},
    }}  # fmt: skip
    writes = {"user|u1": [50.0, 100.2], "enrollment|u1|c1": [100.7, 130.0]}
    latency, without = roster_latency(changes, sis, writes, since=90.0)
    assert [round(x, 3) for x in latency.samples] == [0.2, 0.7]
    assert without == 1  # e2 never reached the LMS


def test_grade_latency_from_the_lms_first_send_leaves_out_the_lms_own_queue() -> None:
    grades = [_grade("1", "9", 85.0, 100.0)]
    results = [_result("lms-1-9", 85.0, "lms-1", "s9")]
    written = [{"sourcedId": "lms-1-9", "at": "1970-01-01T00:01:50.000Z"}]  # 110.0
    delivered = [
        {"name": "grade_change", "subject": "1|9", "sent_at": 109.5, "copy": False},
        {"name": "grade_change", "subject": "1|9", "sent_at": 109.9, "copy": True},  # redelivered
        {"name": "logged_in", "subject": None, "sent_at": 1.0, "copy": False},
    ]
    r = grades_report(grades, results, written, "lms", delivered)
    assert r.latency.samples == [10.0]  # from the grade in the LMS
    assert r.detail["latency_from_first_send"]["p50_ms"] == 500  # from its event's first send
