"""The OneRoster facts the role rules match, and their plain-dict form for Faust tables.

The engine never sees Avro records: agents turn a decoded ``sis.*`` value into a small frozen
fact object (``*.from_record``), keep it in a table as a JSON dict (``to_dict``/``from_dict``),
and hand the objects to :mod:`streams.roles.engine`. Only what a rule or an LMS command needs is
kept; the rest of the record stays on its topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

__all__ = ["ClassFacts", "CourseFacts", "EnrollmentFacts", "OrgFacts", "RoleFacts", "UserFacts"]


def _day(value: Any) -> str | None:
    """A OneRoster date (a ``date`` from Avro, or ISO text) as ISO text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _ref(value: Any) -> str | None:
    return None if value is None else str(value["sourcedId"])


def _active(record: Mapping[str, Any]) -> bool:
    return record.get("status", "active") != "tobedeleted"


@dataclass(frozen=True, slots=True)
class OrgFacts:
    """An org: its type (district, school, department...) and its parent."""

    sourced_id: str
    type: str
    name: str = ""
    identifier: str | None = None
    parent: str | None = None
    active: bool = True

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> OrgFacts:
        return cls(
            r["sourcedId"],
            r["type"],
            r.get("name", ""),
            r.get("identifier"),
            _ref(r.get("parent")),
            _active(r),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OrgFacts:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class RoleFacts:
    """One of a user's roles (OneRoster ``users[].roles[]``)."""

    role: str
    role_type: str
    org: str
    begin: str | None = None
    end: str | None = None

    @property
    def key(self) -> str:
        """Stable identity of the role within its user: ``<role>@<org>``."""
        return f"{self.role}@{self.org}"


@dataclass(frozen=True, slots=True)
class UserFacts:
    """A user as the rules and the LMS user account see them."""

    sourced_id: str
    active: bool
    enabled: bool
    username: str
    given_name: str
    family_name: str
    preferred_given_name: str | None = None
    preferred_family_name: str | None = None
    email: str | None = None
    identifier: str | None = None
    primary_org: str | None = None
    roles: tuple[RoleFacts, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    agents: tuple[str, ...] = ()
    grades: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> UserFacts:
        return cls(
            sourced_id=r["sourcedId"],
            active=_active(r),
            enabled=bool(r.get("enabledUser", True)),
            username=r.get("username", ""),
            given_name=r.get("givenName", ""),
            family_name=r.get("familyName", ""),
            preferred_given_name=r.get("preferredGivenName"),
            preferred_family_name=r.get("preferredFamilyName"),
            email=r.get("email"),
            identifier=r.get("identifier"),
            primary_org=_ref(r.get("primaryOrg")),
            roles=tuple(
                RoleFacts(
                    x["role"],
                    x["roleType"],
                    x["org"]["sourcedId"],
                    _day(x.get("beginDate")),
                    _day(x.get("endDate")),
                )
                for x in r.get("roles") or ()
            ),
            metadata=dict(r.get("metadata") or {}),
            agents=tuple(a["sourcedId"] for a in r.get("agents") or ()),
            grades=tuple(r.get("grades") or ()),
        )

    @property
    def role_names(self) -> frozenset[str]:
        return frozenset(x.role for x in self.roles)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metadata"] = dict(self.metadata)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UserFacts:
        d = dict(d)
        d["roles"] = tuple(RoleFacts(**x) for x in d.get("roles", ()))
        d["agents"] = tuple(d.get("agents", ()))
        d["grades"] = tuple(d.get("grades", ()))
        return cls(**d)


@dataclass(frozen=True, slots=True)
class ClassFacts:
    """A class (an LMS course with one section) and what rules may match on it."""

    sourced_id: str
    active: bool
    title: str
    course: str
    school: str
    class_code: str | None = None
    class_type: str = "scheduled"
    subjects: tuple[str, ...] = ()
    subject_codes: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()
    grades: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> ClassFacts:
        return cls(
            sourced_id=r["sourcedId"],
            active=_active(r),
            title=r.get("title", ""),
            course=r["course"]["sourcedId"],
            school=r["school"]["sourcedId"],
            class_code=r.get("classCode"),
            class_type=r.get("classType", "scheduled"),
            subjects=tuple(r.get("subjects") or ()),
            subject_codes=tuple(r.get("subjectCodes") or ()),
            terms=tuple(t["sourcedId"] for t in r.get("terms") or ()),
            grades=tuple(r.get("grades") or ()),
            metadata=dict(r.get("metadata") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metadata"] = dict(self.metadata)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassFacts:
        d = dict(d)
        for name in ("subjects", "subject_codes", "terms", "grades"):
            d[name] = tuple(d.get(name, ()))
        return cls(**d)


@dataclass(frozen=True, slots=True)
class CourseFacts:
    """A course: the LMS course template that its classes' designers work on."""

    sourced_id: str
    active: bool
    title: str
    course_code: str | None = None
    org: str | None = None
    subjects: tuple[str, ...] = ()
    subject_codes: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> CourseFacts:
        return cls(
            sourced_id=r["sourcedId"],
            active=_active(r),
            title=r.get("title", ""),
            course_code=r.get("courseCode"),
            org=_ref(r.get("org")),
            subjects=tuple(r.get("subjects") or ()),
            subject_codes=tuple(r.get("subjectCodes") or ()),
            metadata=dict(r.get("metadata") or {}),
        )


@dataclass(frozen=True, slots=True)
class EnrollmentFacts:
    """An enrollment: a user's role in a class."""

    sourced_id: str
    active: bool
    user: str
    klass: str
    school: str
    role: str
    primary: bool | None = None
    begin: str | None = None
    end: str | None = None

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> EnrollmentFacts:
        return cls(
            sourced_id=r["sourcedId"],
            active=_active(r),
            user=r["user"]["sourcedId"],
            klass=r["class"]["sourcedId"],
            school=r["school"]["sourcedId"],
            role=r["role"],
            primary=r.get("primary"),
            begin=_day(r.get("beginDate")),
            end=_day(r.get("endDate")),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EnrollmentFacts:
        return cls(**d)
