"""Provisioning commands applied to the LMS simulator over HTTP (a Canvas stand-in on loopback,
no Kafka): what lands, idempotence, missing dependencies, role changes, retries, refusals."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connectors.sinks.canvas.apply import Command, DependencyMissing, Provisioner
from connectors.sinks.canvas.client import CanvasClient, CanvasRejected, CanvasUnavailable
from simulators.lms.app import Throttle
from simulators.lms.server import LmsSimulator

TOKEN = "unit-token"


class Ids:
    def __init__(self) -> None:
        self.map: dict[tuple[str, str], str] = {}

    def get(self, kind: str, sis_id: str) -> str | None:
        return self.map.get((kind, sis_id))

    def put(self, kind: str, sis_id: str, lms_id: str) -> None:
        self.map[(kind, sis_id)] = lms_id

    def count(self, kind: str) -> int:
        return sum(k == kind for k, _ in self.map)


def _provisioner(lms: LmsSimulator, ids: Ids | None = None, **kwargs: Any) -> Provisioner:
    client = CanvasClient(lms.url, TOKEN, sleep=lambda s: None, **kwargs)
    return Provisioner(client, ids or Ids())


def cmd(kind: str, target: str, action: str = "upsert", **attrs: str | None) -> Command:
    return Command(action, kind, target, {"status": "active", **attrs})


DISTRICT = [
    cmd("account", "d-1", account_id="d-1", parent_account_id=None, root="true", name="District"),
    cmd("account", "s-1", account_id="s-1", parent_account_id="d-1", root="false", name="East HS"),
    cmd("term", "t-1", term_id="t-1", name="2026-27", start_date="2026-08-20", end_date="2027-06-10"),
    cmd(
        "course",
        "template:c-1",
        course_id="template:c-1",
        long_name="Algebra I",
        short_name="ALG1",
        account_id="s-1",
        term_id=None,
        blueprint="true",
        blueprint_course_id=None,
    ),
    cmd(
        "course",
        "k-1",
        course_id="k-1",
        long_name="Algebra I P1",
        short_name="ALG1-1",
        account_id="s-1",
        term_id="t-1",
        blueprint="false",
        blueprint_course_id="template:c-1",
    ),
    cmd("section", "k-1", section_id="k-1", course_id="k-1", name="Algebra I P1"),
    cmd(
        "user",
        "u-t",
        user_id="u-t",
        login_id="teach",
        first_name="Tia",
        last_name="Ng",
        sortable_name="Ng, Tia",
        email="t@example.invalid",
        integration_id=None,
        account_id="s-1",
    ),
    cmd(
        "user",
        "u-s",
        user_id="u-s",
        login_id="stud",
        first_name="Sam",
        last_name="Ode",
        sortable_name="Ode, Sam",
        email=None,
        integration_id="9001",
        account_id="s-1",
    ),
    cmd(
        "user",
        "u-g",
        user_id="u-g",
        login_id="guard",
        first_name="Gil",
        last_name="Ode",
        sortable_name="Ode, Gil",
        email=None,
        integration_id=None,
        account_id="s-1",
    ),
    cmd(
        "enrollment",
        "e-t",
        user_id="u-t",
        course_id="k-1",
        section_id="k-1",
        role="teacher",
        base_role="teacher",
    ),
    cmd(
        "enrollment",
        "e-s",
        user_id="u-s",
        course_id="k-1",
        section_id="k-1",
        role="student",
        base_role="student",
    ),
    cmd(
        "enrollment",
        "e-s/u-g",
        user_id="u-g",
        course_id="k-1",
        section_id="k-1",
        role="observer",
        base_role="observer",
        associated_user_id="u-s",
    ),
    cmd(
        "enrollment",
        "template:c-1/u-t",
        user_id="u-t",
        course_id="template:c-1",
        section_id=None,
        role="designer",
        base_role="designer",
    ),
    cmd("account_admin", "u-t@s-1#AccountAdmin", user_id="u-t", account_id="s-1", role="AccountAdmin"),
    cmd(
        "account_admin",
        "u-g@s-1#Counselor (read-only)",
        user_id="u-g",
        account_id="s-1",
        role="Counselor (read-only)",
    ),
]


def test_a_district_lands_and_applying_it_again_changes_nothing(lms: LmsSimulator) -> None:
    p = _provisioner(lms)
    first = [p.apply(c) for c in DISTRICT]
    assert all(o.status == "applied" for o in first[1:])  # the root account is only remembered
    truth = lms.store.ground_truth()
    assert sorted((a["sis_account_id"], a["parent"]) for a in truth["accounts"] if not a["root"]) == [
        ("s-1", None)
    ]
    courses = {c["sis_course_id"]: c for c in truth["courses"]}
    assert courses["k-1"]["term"] == "t-1" and courses["k-1"]["blueprint_course"] == "template:c-1"
    assert courses["k-1"]["account"] == "s-1" and courses["template:c-1"]["blueprint"] is True
    users = {u["sis_user_id"]: u for u in truth["users"]}
    assert users["u-t"]["name"] == "Tia Ng" and users["u-t"]["login_id"] == "teach"
    assert users["u-s"]["integration_id"] == "9001"
    enrollments = sorted((e["user"], e["course"], e["type"], e["observed"]) for e in truth["enrollments"])
    assert enrollments == [
        ("u-g", "k-1", "ObserverEnrollment", "u-s"),
        ("u-s", "k-1", "StudentEnrollment", None),
        ("u-t", "k-1", "TeacherEnrollment", None),
        ("u-t", "template:c-1", "DesignerEnrollment", None),
    ]
    assert sorted((a["user"], a["account"], a["role"]) for a in truth["admins"]) == [
        ("u-g", "s-1", "Counselor (read-only)"),
        ("u-t", "s-1", "AccountAdmin"),
    ]
    calls = p.client.calls
    again = [p.apply(c) for c in DISTRICT]
    assert lms.store.ground_truth() == truth
    # lookups find everything; only Canvas's own idempotent POSTs (enroll, grant) repeat
    assert {
        o.status
        for c, o in zip(DISTRICT, again, strict=True)
        if c.target_type not in ("enrollment", "account_admin")
    } == {"unchanged"}
    assert [o.lms_id for o in again] == [o.lms_id for o in first]
    assert p.client.calls > calls


def test_a_first_load_creates_without_looking_and_a_taken_sis_id_is_updated_instead(
    lms: LmsSimulator,
) -> None:
    looked = _provisioner(lms)
    looked_calls = [looked.client.calls]
    for c in DISTRICT:
        looked.apply(c)
        looked_calls.append(looked.client.calls)
    truth = lms.store.ground_truth()
    lms.store.__init__()  # type: ignore[misc]  # an empty Canvas again
    p = _provisioner(lms)
    p.never_handled = lambda kind, sis_id: True  # nothing in the results topic: a first load
    first = [p.apply(c) for c in DISTRICT]
    assert all(o.status == "applied" for o in first[1:])
    assert lms.store.ground_truth() == truth
    # accounts, terms, users, courses and sections: one call each instead of a 404 and a create
    creates = sum(c.target_type in ("account", "term", "user", "course", "section") for c in DISTRICT[1:])
    assert p.client.calls == looked_calls[-1] - creates
    # the outcomes were lost (a crash before they reached the results topic): the same commands
    # again create nothing twice; Canvas says each SIS id is taken and the object is looked up
    again = _provisioner(lms)
    again.never_handled = lambda kind, sis_id: True
    second = [again.apply(c) for c in DISTRICT]
    assert lms.store.ground_truth() == truth
    assert [o.lms_id for o in second] == [o.lms_id for o in first]
    made = {o.status for c, o in zip(DISTRICT, second, strict=True) if c.target_type in ("user", "course")}
    assert made == {"unchanged"}


def test_what_is_not_there_yet_is_waited_for(lms: LmsSimulator) -> None:
    p = _provisioner(lms)
    enroll = DISTRICT[10]
    with pytest.raises(DependencyMissing, match="waiting for user u-s"):
        p.apply(enroll)
    with pytest.raises(DependencyMissing, match="account s-1"):
        p.apply(DISTRICT[4])  # a course before its school
    for c in DISTRICT[:9]:
        p.apply(c)
    assert p.apply(enroll).status == "applied"


def test_an_object_whose_own_command_is_on_its_way_is_waited_for_without_a_look_up(
    lms: LmsSimulator,
) -> None:
    p = _provisioner(lms)
    for c in DISTRICT[:7]:  # everything but the student and the guardian
        p.apply(c)
    enroll = DISTRICT[10]
    on_its_way: set[tuple[str, str]] = {("user", "u-s")}
    p.awaited = lambda kind, sis_id: (kind, sis_id) in on_its_way
    calls = p.client.calls
    with pytest.raises(DependencyMissing, match="waiting for user u-s"):
        p.apply(enroll)
    assert p.client.calls == calls  # no call of Canvas's rate limit spent on a certain 404
    on_its_way.clear()  # its command is done (here it made nothing): Canvas is asked again
    with pytest.raises(DependencyMissing, match="waiting for user u-s"):
        p.apply(enroll)
    assert p.client.calls == calls + 1


def test_commands_waiting_for_one_object_look_it_up_once_between_them(lms: LmsSimulator) -> None:
    p = _provisioner(lms)
    for c in DISTRICT[:7]:
        p.apply(c)
    calls = p.client.calls
    other = cmd("enrollment", "e-s2", user_id="u-s", course_id="k-1", section_id=None, role="student")
    for enroll in (DISTRICT[10], other):  # both need the student u-s, not made yet
        with pytest.raises(DependencyMissing, match="waiting for user u-s"):
            p.apply(enroll)
    assert p.client.calls == calls + 1  # Canvas was asked once
    p.absent_ttl_s = 0.0  # the answer is old: asked again
    with pytest.raises(DependencyMissing):
        p.apply(DISTRICT[10])
    assert p.client.calls == calls + 2
    p.absent_ttl_s = 30.0
    for c in DISTRICT[7:9]:  # made by this sink: the id map has it, whatever Canvas said before
        p.apply(c)
    assert p.apply(DISTRICT[10]).status == "applied"


def test_a_role_change_replaces_the_enrollment_and_unenroll_ends_it(lms: LmsSimulator) -> None:
    ids = Ids()
    p = _provisioner(lms, ids)
    for c in DISTRICT[:9]:
        p.apply(c)
    first = p.apply(DISTRICT[10])
    assert ids.map[("enrollment", "e-s")] == first.lms_id
    ta = Command(
        "change_role", "enrollment", "e-s", {**DISTRICT[10].attributes, "role": "ta", "base_role": "ta"}
    )
    second = p.apply(ta)
    assert second.lms_id != first.lms_id
    assert [(e["user"], e["type"]) for e in lms.store.ground_truth()["enrollments"]] == [
        ("u-s", "TaEnrollment")
    ]
    assert ids.map[("enrollment", "e-s")] == second.lms_id
    gone = Command("unenroll", "enrollment", "e-s", {**ta.attributes, "status": "deleted"})
    assert p.apply(gone).status == "applied"
    assert lms.store.ground_truth()["enrollments"] == []
    assert p.apply(gone).status == "unchanged"  # already gone


def _student_enrollments(lms: LmsSimulator) -> list[tuple[str, str]]:
    return [(e["user"], e["type"]) for e in lms.store.ground_truth()["enrollments"] if e["user"] == "u-s"]


@pytest.mark.parametrize("first_gone", ["e-s", "e-s-again"])
def test_two_sis_enrollments_in_one_class_share_a_canvas_enrollment_that_ends_with_the_last(
    lms: LmsSimulator, first_gone: str
) -> None:
    # a schedule change back into a class: the SIS holds two enrollment records of one student
    # in one class; Canvas keeps one enrollment, and unenrolling one record must not take the
    # student out of the class the other still has them in
    ids = Ids()
    p = _provisioner(lms, ids)
    for c in DISTRICT[:9]:
        p.apply(c)
    again = Command("enroll", "enrollment", "e-s-again", dict(DISTRICT[10].attributes))
    one, two = p.apply(DISTRICT[10]), p.apply(again)
    assert one.lms_id == two.lms_id  # Canvas gave the same enrollment back
    assert p.holders.others("e-s", str(one.lms_id)) == {"e-s-again"}
    first, last = (DISTRICT[10], again) if first_gone == "e-s" else (again, DISTRICT[10])
    gone = Command("unenroll", "enrollment", first.target, {**first.attributes, "status": "deleted"})
    assert p.apply(gone).status == "unchanged"
    assert _student_enrollments(lms) == [("u-s", "StudentEnrollment")]  # still in the class
    gone = Command("unenroll", "enrollment", last.target, {**last.attributes, "status": "deleted"})
    assert p.apply(gone).status == "applied"
    assert _student_enrollments(lms) == []
    assert len(p.holders) == 0


def test_a_role_change_keeps_the_old_canvas_enrollment_another_sis_enrollment_holds(
    lms: LmsSimulator,
) -> None:
    p = _provisioner(lms)
    for c in DISTRICT[:9]:
        p.apply(c)
    again = Command("enroll", "enrollment", "e-s-again", dict(DISTRICT[10].attributes))
    p.apply(DISTRICT[10])
    p.apply(again)
    ta = Command(
        "change_role", "enrollment", "e-s", {**DISTRICT[10].attributes, "role": "ta", "base_role": "ta"}
    )
    p.apply(ta)
    assert sorted(_student_enrollments(lms)) == [("u-s", "StudentEnrollment"), ("u-s", "TaEnrollment")]


def test_the_holders_of_each_canvas_enrollment_are_learnt_from_the_results_in_order() -> None:
    from connectors.sinks.canvas.sink import ResultsIdMap

    def result(target: str, action: str, lms_id: str | None, status: str = "applied") -> dict[str, Any]:
        return {
            "targetType": "enrollment", "targetSisId": target, "action": action, "status": status,
            "lmsId": lms_id, "sequence": 1,
        }  # fmt: skip

    ids = ResultsIdMap().load(
        [
            result("e-1", "enroll", "77"),
            result("e-2", "enroll", "77"),
            result("e-3", "enroll", "78"),
            result("e-3", "unenroll", "78"),
            result("e-4", "enroll", "79", status="dead_lettered"),
            result("e-1", "change_role", "80"),
        ]
    )
    assert ids.holders.others("e-9", "77") == {"e-2"}
    assert ids.holders.others("e-9", "78") == set()
    assert ids.holders.others("e-9", "79") == set()
    assert ids.holders.others("e-9", "80") == {"e-1"}
    assert ids.count("enrollment") == 4 and ids.count("user") == 0
    ids.put("enrollment", "e-5", "81")
    ids.put("enrollment", "e-1", "82")  # a new id for a known target is not one more
    assert ids.count("enrollment") == 5


def test_custom_course_roles_are_made_once(lms: LmsSimulator) -> None:
    p = _provisioner(lms)
    for c in DISTRICT[:9]:
        p.apply(c)
    reader = {"course_id": "k-1", "section_id": "k-1", "role": "counselor_readonly", "base_role": "observer"}
    p.apply(cmd("enrollment", "x-1", user_id="u-t", **reader))
    p.apply(cmd("enrollment", "x-2", user_id="u-g", **reader))
    roles = [r for r in lms.store.roles.values() if r["label"] == "counselor_readonly"]
    assert len(roles) == 1 and roles[0]["base_role_type"] == "ObserverEnrollment"
    assert {e["role"] for e in lms.store.ground_truth()["enrollments"]} == {"counselor_readonly"}


def test_users_are_updated_suspended_and_removed(lms: LmsSimulator) -> None:
    p = _provisioner(lms)
    p.apply(DISTRICT[7])
    renamed = Command(
        "update_user", "user", "u-s", {**DISTRICT[7].attributes, "first_name": "Samuel", "login_id": "samuel"}
    )
    assert p.apply(renamed).status == "applied"
    assert p.apply(renamed).status == "unchanged"
    [user] = lms.store.ground_truth()["users"]
    assert user["name"] == "Samuel Ode" and user["login_id"] == "samuel"
    p.apply(Command("update_user", "user", "u-s", {**renamed.attributes, "status": "suspended"}))
    assert lms.store.ground_truth()["users"][0]["state"] == "suspended"
    p.apply(Command("update_user", "user", "u-s", dict(renamed.attributes)))
    assert lms.store.ground_truth()["users"][0]["state"] == "active"
    p.apply(Command("deactivate_user", "user", "u-s", {**renamed.attributes, "status": "deleted"}))
    assert lms.store.ground_truth()["users"] == []


def test_a_refusal_names_canvas_reason(lms: LmsSimulator) -> None:
    p = _provisioner(lms)
    p.apply(DISTRICT[7])
    clash = cmd("user", "u-other", user_id="u-other", login_id="stud", first_name="Other", last_name="Kid")
    with pytest.raises(CanvasRejected) as exc:
        p.apply(clash)
    assert exc.value.status == 400 and "already in use" in exc.value.message


def _nap(slept: list[float]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(min(seconds, 0.05))

    return sleep


def test_throttling_is_retried_and_paced(lms: LmsSimulator) -> None:
    lms.state.throttle = Throttle(capacity=30, leak_per_s=200, cost=10, preflight=5)
    slept: list[float] = []
    blunt = CanvasClient(lms.url, TOKEN, low_share=0, sleep=_nap(slept))  # no pacing: runs into the limit
    p = Provisioner(blunt, Ids())
    for c in DISTRICT[:9]:
        p.apply(c)
    assert blunt.throttled > 0 and lms.state.throttled == blunt.throttled
    assert len(lms.store.ground_truth()["users"]) == 3
    paced_sleeps: list[float] = []
    paced = CanvasClient(lms.url, TOKEN, low_share=0.9, sleep=_nap(paced_sleeps))
    again = Provisioner(paced, Ids())
    for c in DISTRICT[:9]:
        again.apply(c)
    assert paced_sleeps  # the remaining budget was low: it slowed down by itself


def test_server_errors_are_retried_until_they_pass_or_retries_run_out(lms: LmsSimulator) -> None:
    client = CanvasClient(lms.url, TOKEN, sleep=lambda s: None)
    p = Provisioner(client, Ids())
    httpx.post(f"{lms.url}/_sim/faults", json={"status": 503, "times": 2, "path": "users", "retry_after": 0})
    p.apply(cmd("user", "u-x", user_id="u-x", login_id="x", first_name="X", last_name="Y"))
    assert lms.state.faulted == 2 and client.retries == 2
    assert [u["sis_user_id"] for u in lms.store.ground_truth()["users"]] == ["u-x"]
    httpx.post(f"{lms.url}/_sim/faults", json={"status": 502, "times": 99, "path": "users"})
    with pytest.raises(CanvasUnavailable, match="HTTP 502 after 2 retries"):
        Provisioner(CanvasClient(lms.url, TOKEN, max_retries=2, sleep=lambda s: None), Ids()).apply(
            DISTRICT[8]
        )
