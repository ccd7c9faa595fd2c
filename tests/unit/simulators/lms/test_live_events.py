"""Live Events built from store changes and session steps have the shape of Instructure's
documented examples (read in place from the shared fixtures): the same keys, recursively, in the
Canvas format's metadata and body and in the Caliper event and its object, with the examples'
JSON types.

Where an example is not the request the simulator models, the sibling example serves instead
(see ``simulators.lms.live_events``): ``submission_created`` (the example is an LTI grade
passback, without user or course) takes its metadata and Caliper event keys from
``submission_updated``; ``enrollment_updated`` and ``course_updated`` (the examples are SIS import
jobs) take their metadata from the ``*_created`` examples. The example of
``assignment_updated`` spells one key ``assignment_id_duplicated__from``, a documentation typo
for ``assignment_id_duplicated_from``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from simulators.lms.live_events import BUILT, Asset, LiveEventBuilder, acting
from simulators.lms.store import CanvasStore
from tests.unit.simulators.lms.school import school

EVENT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
AT = datetime(2024, 3, 5, 14, 30, 15, 123456, tzinfo=UTC)

#: keys whose value the simulation may lack (null) where the example has one
NULLABLE = {
    "referrer",
    "description",
    "lock_at",
    "unlock_at",
    "dateToShow",
    "assignment_group_id",
    "lti_resource_link_id_duplicated_from",
    "assignment_id_duplicated_from",
    "domain_duplicated_from",
    "context_sis_source_id",
    "associated_user_id",
    "group_id",
    "url",
    "graded_at",
    "score",
    "grade",
    "old_grade",
    "old_score",
    "asset_subtype",
    "user_sis_id",  # the root admin, whose API token the provisioning sink uses, has none
}

#: built event -> (metadata example, body example) for the Canvas format
CANVAS = {
    "assignment_created": ("assignment_created", "assignment_created"),
    "assignment_updated": ("assignment_updated", "assignment_updated"),
    "submission_created": ("submission_updated", "submission_created"),
    "submission_updated": ("submission_updated", "submission_updated"),
    "grade_change": ("grade_change", "grade_change"),
    "enrollment_created": ("enrollment_created", "enrollment_created"),
    "enrollment_updated": ("enrollment_created", "enrollment_updated"),
    "course_created": ("course_created", "course_created"),
    "course_updated": ("course_created", "course_updated"),
    "user_created": ("user_created", "user_created"),
    "user_updated": ("user_updated", "user_updated"),
    "logged_in": ("logged_in", "logged_in"),
    "logged_out": ("logged_out", "logged_out"),
    "asset_accessed:course": ("asset_accessed__course_assignments", "asset_accessed__course_assignments"),
    "asset_accessed:assignment": ("asset_accessed__course_assignments", "asset_accessed__course_assignments"),
    "asset_accessed:file": ("asset_accessed__course_assignments", "asset_accessed__course_assignments"),
}

#: built event -> (event keys example, object example) for the Caliper format
CALIPER = {
    "assignment_created": ("assignment_created", "assignment_created"),
    "assignment_updated": ("assignment_updated", "assignment_updated"),
    "submission_created": ("submission_updated", "submission_created"),
    "submission_updated": ("submission_updated", "submission_updated"),
    "grade_change": ("grade_change", "grade_change"),
    "enrollment_created": ("enrollment_created", "enrollment_created"),
    "enrollment_updated": ("enrollment_updated", "enrollment_updated"),
    "course_created": ("course_created", "course_created"),
    "logged_in": ("logged_in", "logged_in"),
    "logged_out": ("logged_out", "logged_out"),
    # a course page: the upstream examples of type=course (not in the shared extract) are the
    # assignment example's event with a referrer, and the account page's object
    "asset_accessed:course": ("asset_accessed__assignment", "asset_accessed__account_outcomes"),
    "asset_accessed:assignment": ("asset_accessed__assignment", "asset_accessed__assignment"),
    "asset_accessed:file": ("asset_accessed__attachment", "asset_accessed__attachment"),
}
CALIPER_EXTRA_KEYS = {"asset_accessed:course": {"referrer"}}

CALIPER_TYPES = {
    "assignment_created": ("Event", "Created", "AssignableDigitalResource"),
    "assignment_updated": ("Event", "Modified", "AssignableDigitalResource"),
    "submission_created": ("AssignableEvent", "Submitted", "Attempt"),
    "submission_updated": ("Event", "Modified", "Attempt"),
    "grade_change": ("GradeEvent", "Graded", "Attempt"),
    "enrollment_created": ("Event", "Created", "Entity"),
    "enrollment_updated": ("Event", "Modified", "Entity"),
    "course_created": ("Event", "Created", "CourseOffering"),
    "logged_in": ("SessionEvent", "LoggedIn", "SoftwareApplication"),
    "logged_out": ("SessionEvent", "LoggedOut", "SoftwareApplication"),
    "asset_accessed:course": ("NavigationEvent", "NavigatedTo", "Entity"),
    "asset_accessed:assignment": ("NavigationEvent", "NavigatedTo", "AssignableDigitalResource"),
    "asset_accessed:file": ("NavigationEvent", "NavigatedTo", "Entity"),
}


@pytest.fixture(scope="module")
def examples(fixtures_dir: Path) -> dict[str, Any]:
    d = fixtures_dir / "canvas_live_events"
    return {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")}


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _normal(example: Any) -> Any:
    """An example with its documentation typos put right."""
    if isinstance(example, dict):
        return {k.replace("duplicated__from", "duplicated_from"): _normal(v) for k, v in example.items()}
    return example


def assert_like(ours: Any, example: Any, path: str = "") -> None:
    """Same keys (recursively) and the example's JSON types; null only where allowed."""
    example = _normal(example)
    if isinstance(example, dict):
        assert isinstance(ours, dict), f"{path}: {ours!r} is not an object"
        assert set(ours) == set(example), (
            f"{path}: extra {sorted(set(ours) - set(example))}, missing {sorted(set(example) - set(ours))}"
        )
        for key in example:
            assert_like(ours[key], example[key], f"{path}.{key}")
        return
    want, got = _type(example), _type(ours)
    key = path.rsplit(".", 1)[-1]
    assert got == want or want == "null" or (got == "null" and key in NULLABLE), (
        f"{path}: {got} where the example has {want}"
    )
    if isinstance(example, list) and example and ours:
        assert_like(ours[0], example[0], f"{path}[0]")


def build_all(fmt: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], Any]:
    """Every kind of event the builder makes, from a small school's changes; (by kind, all)."""
    store = CanvasStore()
    builder = LiveEventBuilder(store, fmt)
    seen: list[tuple[str, dict[str, Any] | None]] = []
    store.listeners.append(lambda name, obj: seen.append((name, builder.build(name, obj))))
    s = school(store, courses=1, students=2)
    course, teacher, student = s.courses[0], s.teachers[0], s.students[0]
    cid = course["id"]
    with acting(teacher["id"], at=AT, session_id="teachersession"):
        a = store.create_assignment(
            cid, {"assignment": {"name": "Essay 1", "due_at": "2024-03-08T04:59:00Z", "points_possible": 20}}
        )
        store.update_assignment(cid, a["id"], {"assignment": {"points_possible": 25}})
    with acting(student["id"], at=AT, session_id="studentsession"):
        store.submit(cid, a["id"], student["id"], at="2024-03-05T14:30:15Z")
        store.submit(cid, a["id"], student["id"], at="2024-03-05T14:40:15Z")
    with acting(teacher["id"], at=AT, session_id="teachersession"):
        store.grade(cid, a["id"], student["id"], {"submission": {"posted_grade": "21.5"}})
        store.grade(cid, a["id"], student["id"], {"submission": {"posted_grade": "23"}})
    by_kind: dict[str, dict[str, Any]] = {}
    by_kind["logged_in"] = builder.logged_in(student["id"], at=AT, session_id="studentsession")
    by_kind["logged_out"] = builder.logged_out(student["id"], at=AT, session_id="studentsession")
    pages = {
        "course": Asset("course", cid, subtype="modules"),
        "assignment": Asset("assignment", cid, id=a["id"]),
        "file": Asset("file", cid, id=cid * 1000 + 1, name="Unit Notes.pdf"),
    }
    for kind, asset in pages.items():
        by_kind[f"asset_accessed:{kind}"] = builder.asset_accessed(
            student["id"], asset, at=AT, session_id="studentsession", referrer="https://canvas.sim.test/"
        )
    # changes made through the API token (the provisioning sink), after the student's pages
    enrollment = store.list_enrollments(course_ref=cid, user_ref=student["id"])[0]
    store.end_enrollment(cid, enrollment["id"], "inactivate")
    store.update_course(cid, {"course": {"name": "Course 0 (renamed)"}})
    store.update_user(student["id"], {"user": {"name": "Renamed"}})
    for name, payload in seen:
        if payload is not None:
            by_kind[name] = payload  # the last one of each kind: a regrade, a resubmission
    made = [p for _, p in seen if p is not None]
    made += [p for kind, p in by_kind.items() if kind.startswith(("logged_", "asset_"))]
    return by_kind, made, s


def test_canvas_format_events_have_the_examples_keys_and_types(examples: dict[str, Any]) -> None:
    by_kind, _, _ = build_all("canvas")
    assert set(by_kind) == set(CANVAS)
    for kind, (meta_example, body_example) in CANVAS.items():
        payload = by_kind[kind]
        assert set(payload) == {"metadata", "body"}
        assert_like(payload["metadata"], examples[f"canvas__{meta_example}"]["metadata"], f"{kind}.metadata")
        assert_like(payload["body"], examples[f"canvas__{body_example}"]["body"], f"{kind}.body")
        meta = payload["metadata"]
        assert meta["event_name"] == kind.split(":")[0]
        assert EVENT_TIME.match(meta["event_time"]), meta["event_time"]
        assert meta["producer"] == "canvas"
        if "context_id" in meta and kind not in ("user_created", "user_updated"):
            assert meta["context_type"] == "Course" and meta["context_sis_source_id"] == "course-0"


def test_caliper_events_have_the_examples_keys_and_types(examples: dict[str, Any]) -> None:
    by_kind, _, s = build_all("caliper")
    assert set(by_kind) == set(CALIPER)
    for kind, (event_example, object_example) in CALIPER.items():
        envelope = by_kind[kind]
        assert set(envelope) == {"sensor", "sendTime", "dataVersion", "data"}
        assert envelope["dataVersion"] == "http://purl.imsglobal.org/ctx/caliper/v1p1"
        assert len(envelope["data"]) == 1
        event = envelope["data"][0]
        keys_like = examples[f"caliper__{event_example}"]["data"][0]
        assert set(event) == set(keys_like) | CALIPER_EXTRA_KEYS.get(kind, set()), kind
        example_event = examples[f"caliper__{object_example}"]["data"][0]
        assert_like(event["object"], example_event["object"], f"{kind}.object")
        if "generated" in event:
            assert_like(event["generated"], example_event["generated"], f"{kind}.generated")
        assert (event["type"], event["action"], event["object"]["type"]) == CALIPER_TYPES[kind]
        assert event["@context"] == "http://purl.imsglobal.org/ctx/caliper/v1p1"
        assert re.match(r"^urn:uuid:[0-9a-f-]{36}$", event["id"])
        assert EVENT_TIME.match(event["eventTime"])
        assert event["actor"]["type"] == "Person"
        assert event["actor"]["extensions"]["com.instructure.canvas"].keys() >= {"user_sis_id", "entity_id"}
        assert event["extensions"]["com.instructure.canvas"]["request_id"]
        if "group" in event:
            assert event["group"]["id"].startswith(f"urn:instructure:canvas:course:{s.courses[0]['id']}")
            assert event["group"]["extensions"]["com.instructure.canvas"]["entity_id"] == str(
                s.courses[0]["id"]
            )


@pytest.mark.parametrize("fmt", ["canvas", "caliper"])
def test_every_event_has_its_own_identity(fmt: str) -> None:
    _, payloads, _ = build_all(fmt)
    if fmt == "canvas":
        ids = [p["metadata"]["request_id"] for p in payloads]
    else:
        ids = [p["data"][0]["id"] for p in payloads]
    assert len(ids) == len(set(ids)) > 15


def test_the_acting_user_time_and_session_reach_the_events() -> None:
    by_kind, _, s = build_all("canvas")
    teacher, student = s.teachers[0], s.students[0]
    assert by_kind["submission_created"]["metadata"]["user_id"] == str(student["id"])
    assert by_kind["submission_created"]["metadata"]["user_sis_id"] == "S0"
    assert by_kind["submission_created"]["metadata"]["context_role"] == "StudentEnrollment"
    assert by_kind["submission_created"]["metadata"]["session_id"] == "studentsession"
    grade = by_kind["grade_change"]
    assert grade["metadata"]["user_id"] == grade["body"]["grader_id"] == str(teacher["id"])
    assert grade["metadata"]["context_role"] == "TeacherEnrollment"
    assert grade["metadata"]["event_time"] == "2024-03-05T14:30:15.123Z"
    assert grade["body"]["student_sis_id"] == "S0"
    assert (grade["body"]["old_score"], grade["body"]["score"], grade["body"]["grade"]) == (21.5, 23.0, "23")
    assert by_kind["assignment_created"]["body"]["submission_types"] == "online_text_entry,online_upload"
    assert by_kind["assignment_created"]["body"]["due_at"] == "2024-03-08T04:59:00Z"
    # made through the API token (the provisioning sink): the root admin
    assert by_kind["enrollment_updated"]["metadata"]["user_id"] == "1"
    assert by_kind["enrollment_updated"]["body"]["workflow_state"] == "inactive"


def test_caliper_grade_and_submission_carry_the_student_and_the_scores() -> None:
    by_kind, _, s = build_all("caliper")
    student = s.students[0]
    graded = by_kind["grade_change"]["data"][0]
    assert graded["object"]["assignee"]["id"] == f"urn:instructure:canvas:user:{student['id']}"
    assert graded["object"]["assignee"]["extensions"]["com.instructure.canvas"]["sis_id"] == "S0"
    assert (graded["generated"]["scoreGiven"], graded["generated"]["maxScore"]) == (23.0, 25.0)
    assert graded["generated"]["scoredBy"] == f"urn:instructure:canvas:user:{s.teachers[0]['id']}"
    assert graded["membership"]["roles"] == ["Instructor"]
    submitted = by_kind["submission_created"]["data"][0]
    assert submitted["actor"]["id"] == f"urn:instructure:canvas:user:{student['id']}"
    assert submitted["object"]["count"] == 1
    assert submitted["membership"]["roles"] == ["Learner"]
    assignment = by_kind["assignment_created"]["data"][0]["object"]
    assert (assignment["dateToSubmit"], assignment["maxScore"]) == ("2024-03-08T04:59:00.000Z", 20.0)


def test_events_without_an_example_are_skipped() -> None:
    store = CanvasStore()
    canvas, caliper = LiveEventBuilder(store, "canvas"), LiveEventBuilder(store, "caliper")
    account = store.create_sub_account(1, {"name": "School"})
    user = store.create_user(1, {"pseudonym": {"unique_id": "u1", "sis_user_id": "U1"}})
    assert canvas.build("account_created", account) is None
    assert caliper.build("account_created", account) is None
    assert caliper.build("user_created", user) is None
    assert canvas.build("user_created", user) is not None
    assert "account_updated" not in BUILT["canvas"] | BUILT["caliper"]
    with pytest.raises(ValueError):
        LiveEventBuilder(store, "xapi")
