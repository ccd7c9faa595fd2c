"""The Caliper vocabulary (1.1 and 1.2) and the checks an event or entity must pass.

The Sensor API speaks Caliper 1.2; Canvas sends 1.1. Both are read: the event types and actions
below are the union of the two specifications' (1.1 adds ``OutcomeEvent`` and ``ReadingEvent``).
An event of a known type must use one of the actions its type allows; the generic ``Event`` may
use any known action. What is checked is what a consumer relies on: an id, a type, an actor, an
action, an object and an event time, each of the right kind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["ACTIONS", "EVENT_ACTIONS", "caliper_problems", "is_iri"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_MEDIA = _words(
    """
    Started Ended Paused Resumed Restarted ForwardedTo JumpedTo ChangedResolution ChangedSize
    ChangedSpeed ChangedVolume EnabledClosedCaptioning DisabledClosedCaptioning EnteredFullScreen
    ExitedFullScreen Muted Unmuted OpenedPopout ClosedPopout Rewound
    """
)

#: Event type -> the actions it may carry (the specification's "action" constraints).
EVENT_ACTIONS: dict[str, frozenset[str]] = {
    "AnnotationEvent": frozenset({"Bookmarked", "Highlighted", "Shared", "Tagged"}),
    "AssessmentEvent": frozenset({"Started", "Paused", "Resumed", "Restarted", "Reset", "Submitted"}),
    "AssessmentItemEvent": frozenset({"Started", "Skipped", "Completed"}),
    "AssignableEvent": frozenset(
        {"Activated", "Deactivated", "Started", "Completed", "Submitted", "Reviewed"}
    ),
    "FeedbackEvent": frozenset({"Commented", "Ranked"}),
    "ForumEvent": frozenset({"Subscribed", "Unsubscribed"}),
    "GradeEvent": frozenset({"Graded"}),
    "OutcomeEvent": frozenset({"Graded"}),  # 1.1
    "MediaEvent": _MEDIA,
    "MessageEvent": frozenset({"Posted", "MarkedAsRead", "MarkedAsUnread"}),
    "NavigationEvent": frozenset({"NavigatedTo"}),
    "QuestionnaireEvent": frozenset({"Started", "Submitted"}),
    "QuestionnaireItemEvent": frozenset({"Started", "Skipped", "Completed"}),
    "ReadingEvent": frozenset({"Searched", "Viewed", "NavigatedTo"}),  # 1.1, deprecated
    "ResourceManagementEvent": frozenset(
        {
            "Archived",
            "Copied",
            "Created",
            "Deleted",
            "Described",
            "Downloaded",
            "Modified",
            "Printed",
            "Published",
            "Restored",
            "Retrieved",
            "Saved",
            "Unpublished",
            "Uploaded",
        }
    ),
    "SearchEvent": frozenset({"Searched"}),
    "SessionEvent": frozenset({"LoggedIn", "LoggedOut", "TimedOut"}),
    "SurveyEvent": frozenset({"OptedIn", "OptedOut"}),
    "SurveyInvitationEvent": frozenset({"Accepted", "Declined", "Sent"}),
    "ThreadEvent": frozenset({"MarkedAsRead", "MarkedAsUnread"}),
    "ToolLaunchEvent": frozenset({"Launched", "Returned"}),
    "ToolUseEvent": frozenset({"Used"}),
    "ViewEvent": frozenset({"Viewed"}),
}

#: Every action term of the specifications; the generic ``Event`` may use any of them.
ACTIONS: frozenset[str] = _words(
    """
    Abandoned Accepted Activated Added Archived Attached Bookmarked ChangedResolution ChangedSize
    ChangedSpeed ChangedVolume Classified ClosedPopout Commented Completed Copied Created
    Deactivated Declined Deleted Described DisabledClosedCaptioning Disliked Downloaded
    EnabledClosedCaptioning Ended EnteredFullScreen ExitedFullScreen ForwardedTo Graded Hid
    Highlighted Identified JumpedTo Launched Liked Linked LoggedIn LoggedOut MarkedAsRead
    MarkedAsUnread Modified Muted NavigatedTo OpenedPopout OptedIn OptedOut Paused Posted Printed
    Published Questioned Ranked Recommended Removed Reset Restarted Restored Resumed Retrieved
    Returned Reviewed Rewound Saved Searched Sent Shared Showed Skipped Started Submitted Subscribed
    Tagged TimedOut Unmuted Unpublished Unsubscribed Uploaded Used Viewed
    """
) | frozenset().union(*EVENT_ACTIONS.values())

_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]+$")


def is_iri(value: Any) -> bool:
    """An absolute IRI (a scheme, a colon, no white space): ``urn:uuid:...``, ``https://...``."""
    return isinstance(value, str) and bool(_IRI.match(value))


def _node_problem(name: str, value: Any, *, required: bool) -> str | None:
    """A Caliper node is an object with an IRI ``id`` and a ``type``, or an IRI alone."""
    if value is None:
        return f"{name} is missing" if required else None
    if isinstance(value, str):
        return None if is_iri(value) else f"{name} is neither an object nor an IRI"
    if isinstance(value, Mapping):
        if not is_iri(value.get("id")):
            return f"{name}.id is not an IRI"
        if not isinstance(value.get("type"), str) or not value["type"]:
            return f"{name}.type is missing"
        return None
    return f"{name} is neither an object nor an IRI"


def caliper_problems(item: Any, *, timestamp_ok: Any) -> list[str]:
    """What is wrong with one item of an envelope's ``data`` (an event or an entity).

    ``timestamp_ok(text) -> bool`` tells whether a date-time string is readable.
    An item without ``action`` and ``eventTime`` is an entity (an envelope may describe entities).
    """
    if isinstance(item, str):
        return [] if is_iri(item) else ["an item of data is neither an object nor an IRI"]
    if not isinstance(item, Mapping):
        return ["an item of data is not an object"]
    problems: list[str] = []
    if "id" not in item or item.get("id") is None:
        problems.append("id is missing or null")
    elif not is_iri(item["id"]):
        problems.append("id is not an IRI")
    kind = item.get("type")
    if not isinstance(kind, str) or not kind:
        problems.append("type is missing")
        return problems
    if not is_event(item):
        return problems  # an entity: an id and a type is what can be asked of every kind
    if kind != "Event" and kind not in EVENT_ACTIONS:
        problems.append(f"type {kind!r} is not a Caliper event type")
    action = item.get("action")
    if not isinstance(action, str) or not action:
        problems.append("action is missing")
    elif action not in ACTIONS:
        problems.append(f"action {action!r} is not a Caliper action")
    elif kind in EVENT_ACTIONS and action not in EVENT_ACTIONS[kind]:
        problems.append(f"action {action!r} is not allowed for {kind}")
    for name in ("actor", "object"):
        problem = _node_problem(name, item.get(name), required=True)
        if problem:
            problems.append(problem)
    when = item.get("eventTime")
    if when is None:
        problems.append("eventTime is missing")
    elif not isinstance(when, str) or not timestamp_ok(when):
        problems.append("eventTime is not an ISO 8601 date-time")
    return problems


def is_event(item: Mapping[str, Any]) -> bool:
    """An event (as opposed to an entity): it names an action or an event time, or its type
    ends with ``Event``."""
    kind = item.get("type")
    return (
        "action" in item
        or "eventTime" in item
        or (isinstance(kind, str) and (kind == "Event" or kind.endswith("Event")))
    )
