"""Reading LMS events: every real payload in the shared fixtures is accepted and lands where it
belongs; every one of the Caliper specification's broken events is refused with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.lms.events import (
    ACTIVITY,
    ASSIGNMENTS,
    GRADES,
    SUBMISSIONS,
    InvalidEvents,
    LmsEvent,
    parse_time,
    read_request,
)

V1P2 = "http://purl.imsglobal.org/ctx/caliper/v1p2"


def envelope(*items: object, version: str = V1P2) -> bytes:
    return json.dumps(
        {
            "sensor": "https://example.edu/sensors/1",
            "sendTime": "2016-11-15T11:05:01.000Z",
            "dataVersion": version,
            "data": list(items),
        }
    ).encode()


def read_one(body: bytes) -> LmsEvent:
    events = read_request(body)
    assert len(events) == 1
    return events[0]


def topics(event: LmsEvent) -> list[str]:
    return [o.topic for o in event.outputs]


# --- every fixture ---------------------------------------------------------------------------


def _files(fixtures_dir: Path, pattern: str) -> list[Path]:
    files = sorted(fixtures_dir.glob(pattern))
    assert files, pattern
    return files


def test_every_canvas_live_event_is_accepted(fixtures_dir: Path) -> None:
    seen: dict[str, list[str]] = {}
    for path in _files(fixtures_dir, "canvas_live_events/*.json"):
        body = path.read_bytes()
        events = read_request(body)
        assert events, path.name
        for event in events:
            assert event.event_id and event.subject, path.name
            assert event.event_time_ms is not None, path.name
            seen[path.name] = topics(event)
        if len(events) == 1:
            assert events[0].body == body  # kept byte for byte
    # Where they land: the typed topic each documented event belongs to.
    expected = {
        "canvas__grade_change.json": [GRADES],
        "caliper__grade_change.json": [GRADES],
        "canvas__assignment_created.json": [ASSIGNMENTS],
        "canvas__assignment_updated.json": [ASSIGNMENTS],
        "caliper__assignment_created.json": [ASSIGNMENTS],
        "caliper__assignment_updated.json": [ASSIGNMENTS],
        "canvas__submission_created.json": [SUBMISSIONS, ACTIVITY],
        "caliper__submission_created.json": [SUBMISSIONS, ACTIVITY],
        "canvas__submission_updated.json": [SUBMISSIONS],
        "canvas__logged_in.json": [ACTIVITY],
        "caliper__logged_in.json": [ACTIVITY],
        "canvas__logged_out.json": [ACTIVITY],
        "caliper__logged_out.json": [ACTIVITY],
        "canvas__asset_accessed__course_assignments.json": [ACTIVITY],
        "caliper__asset_accessed__assignment.json": [ACTIVITY],
        "canvas__quiz_submitted.json": [ACTIVITY],
        "canvas__discussion_entry_created.json": [ACTIVITY],
        "caliper__discussion_entry_created.json": [ACTIVITY],
        # kept raw only: entity changes the analytics does not read from events
        "canvas__course_created.json": [],
        "caliper__course_created.json": [],
        "canvas__enrollment_created.json": [],
        "caliper__enrollment_created.json": [],
        "canvas__user_created.json": [],
    }
    for name, want in expected.items():
        assert seen[name] == want, name


def test_canvas_and_caliper_forms_of_one_grade_change_agree(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "canvas_live_events"
    canvas = read_one((folder / "canvas__grade_change.json").read_bytes()).outputs[0]
    caliper = read_one((folder / "caliper__grade_change.json").read_bytes()).outputs[0]
    assert canvas.key == caliper.key == "21070000000000355|21070000000000048"
    for field in (
        "assignmentId",
        "userId",
        "courseId",
        "submissionId",
        "score",
        "grade",
        "gradedAt",
        "sisUserId",
    ):
        assert canvas.value[field] == caliper.value[field], field
    assert canvas.value["score"] == 5.0 and canvas.value["pointsPossible"] == 1.0
    assert canvas.value["gradedAt"] == parse_time("2019-11-01T19:11:05.222Z")


def test_canvas_and_caliper_forms_of_one_assignment_agree(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "canvas_live_events"
    canvas = read_one((folder / "canvas__assignment_created.json").read_bytes()).outputs[0].value
    caliper = read_one((folder / "caliper__assignment_created.json").read_bytes()).outputs[0].value
    for field in ("assignmentId", "courseId", "title", "dueAt", "unlockAt", "lockAt", "pointsPossible"):
        assert canvas[field] == caliper[field], field
    assert canvas["dueAt"] == parse_time("2018-10-01T05:59:59Z")
    assert canvas["submissionTypes"] == ["online_url", "online_upload"]


def test_the_documentations_mess_is_survived(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "canvas_live_events"
    # "2019-11-05 07:38:00 -0800" is read as a time
    course = read_one((folder / "canvas__course_updated.json").read_bytes())
    assert course.event_time_ms == parse_time("2019-11-05T15:38:00Z")
    # a grade_override sent under the name grade_change: kept raw, with the reason
    override = read_one((folder / "canvas__grade_override.json").read_bytes())
    assert override.outputs == () and override.untyped and "assignment" in override.untyped
    # anonymous access (no user): kept raw
    feed = read_one((folder / "canvas__asset_accessed__user_calendar_feed.json").read_bytes())
    assert feed.outputs == () and feed.untyped
    # a 3-digit year is not a time
    assert parse_time("019-11-01T19:11:01.163Z") is None


def test_every_valid_caliper_1_2_event_and_envelope_is_accepted(fixtures_dir: Path) -> None:
    for path in _files(fixtures_dir, "caliper/events/*.json"):
        item = json.loads(path.read_bytes())
        event = read_one(envelope(item))
        assert event.version == "caliper-1.2" and event.event_id == item["id"], path.name
        assert event.outputs, path.name  # every one of them is an activity or a grade
    for path in _files(fixtures_dir, "caliper/envelopes/*.json"):
        body = path.read_bytes()
        events = read_request(body)
        assert len(events) == len(json.loads(body)["data"]), path.name
        for event in events:  # each kept as a single-event envelope that reads back the same
            again = read_one(event.body)
            assert (again.event_id, again.subject, again.outputs) == (
                event.event_id,
                event.subject,
                event.outputs,
            )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("caliperEvent-MalformedActorNotAString.json", "actor is neither an object nor an IRI"),
        ("caliperEvent-NoActor.json", "actor is missing"),
        ("caliperEvent-NoEventTime.json", "eventTime is missing"),
        ("caliperEvent-NullId.json", "id is missing or null"),
        ("caliperEvent-UnknownAction.json", "action 'NotAnAction' is not a Caliper action"),
        ("caliperEvent-UnknownEventType.json", "type 'NotACaliperEventType' is not a Caliper event type"),
    ],
)
def test_the_specifications_broken_events_are_refused_with_their_reason(
    fixtures_dir: Path, name: str, reason: str
) -> None:
    item = json.loads((fixtures_dir / "caliper" / "invalid" / name).read_bytes())
    with pytest.raises(InvalidEvents) as caught:
        read_request(envelope(item))
    assert caught.value.reasons == [f"data[0]: {reason}"]


def test_all_invalid_fixtures_are_covered(fixtures_dir: Path) -> None:
    names = {p.name for p in (fixtures_dir / "caliper" / "invalid").glob("*.json")}
    assert len(names) == 6


# --- rules -----------------------------------------------------------------------------------


def _event(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "@context": V1P2,
        "id": "urn:uuid:00000000-0000-4000-8000-000000000001",
        "type": "ViewEvent",
        "actor": {"id": "https://example.edu/users/1", "type": "Person"},
        "action": "Viewed",
        "object": "https://example.edu/docs/1",
        "eventTime": "2024-01-01T10:00:00.000Z",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_an_action_the_type_does_not_allow_is_refused() -> None:
    with pytest.raises(InvalidEvents) as caught:
        read_request(envelope(_event(action="LoggedIn")))
    assert caught.value.reasons == ["data[0]: action 'LoggedIn' is not allowed for ViewEvent"]


def test_one_bad_item_refuses_the_whole_envelope_naming_it() -> None:
    with pytest.raises(InvalidEvents) as caught:
        read_request(envelope(_event(), _event(eventTime="yesterday")))
    assert caught.value.reasons == ["data[1]: eventTime is not an ISO 8601 date-time"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "the body is not JSON"),
        (b"[]", "neither a Caliper envelope"),
        (json.dumps(_event()).encode(), "a bare Caliper event"),
        (
            json.dumps(
                {"sensor": "s", "sendTime": "2024-01-01T00:00:00Z", "dataVersion": V1P2, "data": []}
            ).encode(),
            "data is not a non-empty array",
        ),
        (
            json.dumps({"metadata": {"event_name": "logged_in"}, "body": {}}).encode(),
            "metadata.event_time is missing",
        ),
        (
            json.dumps({"metadata": {"event_time": "2024-01-01T00:00:00Z"}, "body": {}}).encode(),
            "metadata.event_name is missing",
        ),
        (
            json.dumps({"metadata": {"event_name": "x", "event_time": "soon"}, "body": {}}).encode(),
            "metadata.event_time is not a date-time",
        ),
    ],
)
def test_unreadable_bodies_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvents) as caught:
        read_request(body)
    assert any(reason in r for r in caught.value.reasons), caught.value.reasons


def test_a_canvas_event_id_is_the_same_for_a_redelivery_and_differs_otherwise() -> None:
    payload = {
        "metadata": {"event_name": "logged_in", "event_time": "2024-01-01T00:00:00Z", "user_id": "7"},
        "body": {},
    }
    a = read_one(json.dumps(payload).encode())
    b = read_one(json.dumps(payload, indent=2).encode())  # same event, other whitespace
    payload["metadata"]["event_time"] = "2024-01-01T00:00:01Z"  # type: ignore[index]
    c = read_one(json.dumps(payload).encode())
    assert a.event_id == b.event_id != c.event_id
    assert a.subject == "user:7" and a.outputs[0].value["action"] == "logged_in"


def test_activity_and_sis_ids_from_a_caliper_person() -> None:
    person = {
        "id": "https://example.edu/users/9",
        "type": "Person",
        "otherIdentifiers": [
            {"type": "SystemIdentifier", "identifier": "stu-9", "identifierType": "SisSourcedId"}
        ],
    }
    event = read_one(
        envelope(
            _event(
                actor=person,
                type="SessionEvent",
                action="LoggedOut",
                object="https://example.edu",
                session={"id": "https://example.edu/sessions/1", "type": "Session", "duration": "PT1H2M3S"},
            )
        )
    )
    value = event.outputs[0].value
    assert value["sisUserId"] == "stu-9" and value["action"] == "logged_out"
    assert value["durationMs"] == (3600 + 120 + 3) * 1000
