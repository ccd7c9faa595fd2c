"""The OneRoster CSV binding as data: which files a bundle holds, their columns in the binding's
order, what each column holds, and where it goes in the OneRoster 1.2 REST JSON object.

Column orders and required columns are those of the 1EdTech OneRoster 1.2 CSV binding (and of
the 1.1 CSV tables for version "1.1"). Column kinds:

============  ============================================================================
``text``      any text, kept as written (names, titles, codes)
``id``        a sourcedId: surrounding spaces dropped
``status``    ``active``/``tobedeleted`` (1.1 also the deprecated ``inactive``)
``enum``      one value of ``vocabulary``; ``ext:`` values pass where ``extensible``
``datetime``  ISO 8601 date-time (a bare date is midnight UTC), written ``...T..:..:...mmmZ``
``date``      ``YYYY-MM-DD``
``year``      a four-digit year (``schoolYear``)
``bool``      ``true``/``false`` in any case
``number``    a decimal number (a JSON float)
``list``      comma-separated values (``"09,10"``); always a list in the object
``userIds``   ``{type:identifier}`` pairs, comma-separated; always a list
``ref``       a sourcedId of ``target``, as a GUIDRef ``{"href": None, "sourcedId", "type"}``
``refs``      several of those, comma-separated; always a list
``key``       a sourcedId of ``target`` kept as a plain string (``roles.userProfileSourcedId``)
``secret``    read and dropped: passwords never enter the pipeline
============  ============================================================================

Vocabularies are the project's (:data:`connectors.oneroster.models.ENUMERATIONS`), so a CSV load
and a REST sync accept the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.oneroster.models import ENUMERATIONS

__all__ = [
    "ALIASES",
    "FOLDED",
    "GUID_TYPES",
    "NOT_CONSUMED",
    "ORDER",
    "ROLES_V1P1",
    "SPECS",
    "STATUS",
    "VERSIONS",
    "Column",
    "FileSpec",
]

VERSIONS = ("1.1", "1.2")

#: The collections ``Bundle.rows()`` produces, referenced before referencing.
ORDER = (
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "users",
    "demographics",
    "enrollments",
    "categories",
    "lineItems",
    "results",
)

#: 1.2 files whose rows become parts of users (``roles[]``, ``userProfiles[]``), not records.
FOLDED = ("roles", "userProfiles")

#: Collection -> the GUIDRef ``type`` that points at its records.
GUID_TYPES = {
    "orgs": "org",
    "academicSessions": "academicSession",
    "courses": "course",
    "classes": "class",
    "users": "user",
    "categories": "category",
    "lineItems": "lineItem",
}

#: ``status`` per version. 1.1 keeps the deprecated ``inactive`` of 1.0.
STATUS = {
    "1.1": frozenset({"active", "tobedeleted", "inactive"}),
    "1.2": frozenset({"active", "tobedeleted"}),
}

#: OneRoster 1.1 ``users.role``; ``administrator`` becomes site- or districtAdministrator in 1.2.
ROLES_V1P1 = frozenset(
    {"administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher"}
)

#: Older or common spellings of a column, read as the binding's column (with a warning):
#: file name (``*``: every file) -> spelling -> column.
ALIASES: dict[str, dict[str, str]] = {
    "*": {"grade": "grades", "agents": "agentSourcedIds", "schoolYearId": "schoolYearSourcedId"},
    "demographics": {"userSourcedId": "sourcedId", "birthdate": "birthDate"},
}


@dataclass(frozen=True)
class Column:
    """One column of a file.

    Attributes:
        name: the header name the binding gives it.
        kind: what the cells hold (see the module docstring).
        required: the binding requires a value in every row.
        key: the JSON field it fills (None: the column's own name).
        target: for ``ref``/``refs``/``key``: the collection whose sourcedIds it names.
        vocabulary: for ``status``/``enum``: the allowed values.
        extensible: for ``enum``: ``ext:`` values are allowed too.
    """

    name: str
    kind: str = "text"
    required: bool = False
    key: str | None = None
    target: str | None = None
    vocabulary: frozenset[str] = frozenset()
    extensible: bool = False

    @property
    def field(self) -> str:
        """The JSON field this column fills."""
        return self.key or self.name


@dataclass(frozen=True)
class FileSpec:
    """One file of the binding.

    Attributes:
        name: the manifest's name for it (``file.<name>``), also the collection it feeds.
        columns: in the binding's order.
        extra: columns read when present, never required, written after the others when used
            (a column of the other version of the binding).
    """

    name: str
    columns: tuple[Column, ...]
    extra: tuple[Column, ...] = ()

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    def column(self, name: str) -> Column | None:
        """The column called ``name``, or None."""
        for column in self.columns + self.extra:
            if column.name == name:
                return column
        return None

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


def _enum(collection: str, path: str, name: str, required: bool = False, *, ext: bool = True) -> Column:
    return Column(name, "enum", required, vocabulary=ENUMERATIONS[(collection, path)], extensible=ext)


def _ref(name: str, target: str, key: str, *, required: bool = False, many: bool = False) -> Column:
    return Column(name, "refs" if many else "ref", required, key, target)


def _file(name: str, version: str, *columns: Column, extra: tuple[Column, ...] = ()) -> FileSpec:
    common = (
        Column("sourcedId", "id", True),
        Column("status", "status", vocabulary=STATUS[version]),
        Column("dateLastModified", "datetime"),
    )
    return FileSpec(name, common + columns, extra)


_RACES = (
    "americanIndianOrAlaskaNative",
    "asian",
    "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander",
    "white",
    "demographicRaceTwoOrMoreRaces",
    "hispanicOrLatinoEthnicity",
)


def _rostering(version: str) -> list[FileSpec]:
    """The files both versions spell the same way."""
    return [
        _file(
            "orgs", version,
            Column("name", required=True),
            _enum("orgs", "type", "type", True),
            Column("identifier"),
            _ref("parentSourcedId", "orgs", "parent"),
        ),
        _file(
            "academicSessions", version,
            Column("title", required=True),
            _enum("academicSessions", "type", "type", True),
            Column("startDate", "date", True),
            Column("endDate", "date", True),
            _ref("parentSourcedId", "academicSessions", "parent"),
            Column("schoolYear", "year", True),
        ),
        _file(
            "courses", version,
            _ref("schoolYearSourcedId", "academicSessions", "schoolYear"),
            Column("title", required=True),
            Column("courseCode"),
            Column("grades", "list"),
            _ref("orgSourcedId", "orgs", "org", required=True),
            Column("subjects", "list"),
            Column("subjectCodes", "list"),
        ),
        _file(
            "classes", version,
            Column("title", required=True),
            Column("grades", "list"),
            _ref("courseSourcedId", "courses", "course", required=True),
            Column("classCode"),
            _enum("classes", "classType", "classType", True),
            Column("location"),
            _ref("schoolSourcedId", "orgs", "school", required=True),
            _ref("termSourcedIds", "academicSessions", "terms", required=True, many=True),
            Column("subjects", "list"),
            Column("subjectCodes", "list"),
            Column("periods", "list"),
        ),
        _file(
            "demographics", version,
            Column("birthDate", "date"),
            _enum("demographics", "sex", "sex", ext=False),
            *(Column(name, "bool") for name in _RACES),
            Column("countryOfBirthCode"),
            Column("stateOfBirthAbbreviation"),
            Column("cityOfBirth"),
            Column("publicSchoolResidenceStatus"),
        ),
        _file(
            "enrollments", version,
            _ref("classSourcedId", "classes", "class", required=True),
            _ref("schoolSourcedId", "orgs", "school", required=True),
            _ref("userSourcedId", "users", "user", required=True),
            _enum("enrollments", "role", "role", True),
            Column("primary", "bool"),
            Column("beginDate", "date"),
            Column("endDate", "date"),
        ),
    ]  # fmt: skip


_USER_NAMES = (
    Column("userIds", "userIds"),
    Column("givenName", required=True),
    Column("familyName", required=True),
    Column("middleName"),
    Column("identifier"),
    Column("email"),
    Column("sms"),
    Column("phone"),
    _ref("agentSourcedIds", "users", "agents", many=True),
    Column("grades", "list"),
    Column("password", "secret"),
)


def _v1p2() -> dict[str, FileSpec]:
    v = "1.2"
    specs = [
        *_rostering(v),
        _file(
            "users", v,
            Column("enabledUser", "bool", True),
            Column("username", required=True),
            *_USER_NAMES,
            Column("userMasterIdentifier"),
            Column("preferredGivenName"),
            Column("preferredMiddleName"),
            Column("preferredFamilyName"),
            _ref("primaryOrgSourcedId", "orgs", "primaryOrg"),
            Column("pronouns"),
        ),
        _file(
            "roles", v,
            _ref("userSourcedId", "users", "user", required=True),
            _enum("users", "roles.roleType", "roleType", True, ext=False),
            _enum("users", "roles.role", "role", True),
            Column("beginDate", "date"),
            Column("endDate", "date"),
            _ref("orgSourcedId", "orgs", "org", required=True),
            Column("userProfileSourcedId", "key", key="userProfile", target="userProfiles"),
        ),
        _file(
            "userProfiles", v,
            _ref("userSourcedId", "users", "user", required=True),
            Column("profileType", required=True),
            Column("vendorId", required=True),
            Column("applicationId"),
            Column("description"),
            Column("credentialType", required=True),
            Column("username", required=True),
            Column("password", "secret"),
        ),
        _file("categories", v, Column("title", required=True), Column("weight", "number")),
        _file(
            "lineItems", v,
            Column("title", required=True),
            Column("description"),
            Column("assignDate", "datetime", True),
            Column("dueDate", "datetime", True),
            _ref("classSourcedId", "classes", "class", required=True),
            _ref("categorySourcedId", "categories", "category", required=True),
            _ref("academicSessionSourcedId", "academicSessions", "academicSession", required=True),
            Column("resultValueMin", "number"),
            Column("resultValueMax", "number"),
            _ref("schoolSourcedId", "orgs", "school", required=True),
            # The 1.1 column: 1.2 JSON still carries gradingPeriod beside academicSession.
            extra=(_ref("gradingPeriodSourcedId", "academicSessions", "gradingPeriod"),),
        ),
        _file(
            "results", v,
            _ref("lineItemSourcedId", "lineItems", "lineItem", required=True),
            _ref("studentSourcedId", "users", "student", required=True),
            _enum("results", "scoreStatus", "scoreStatus", True),
            Column("score", "number"),
            Column("scoreDate", "date", True),
            Column("comment"),
            Column("textScore"),
            _ref("classSourcedId", "classes", "class"),
            Column("inProgress", "bool"),
            Column("incomplete", "bool"),
            Column("late", "bool"),
            Column("missing", "bool"),
        ),
    ]  # fmt: skip
    return {s.name: s for s in specs}


def _v1p1() -> dict[str, FileSpec]:
    v = "1.1"
    specs = [
        *_rostering(v),
        _file(
            "users", v,
            Column("enabledUser", "bool", True),
            # One role at one or more orgs: the reader turns them into roles[].
            _ref("orgSourcedIds", "orgs", "orgs", required=True, many=True),
            Column("role", "enum", True, vocabulary=ROLES_V1P1, extensible=True),
            Column("username", required=True),
            *_USER_NAMES,
        ),
        _file("categories", v, Column("title", required=True)),
        _file(
            "lineItems", v,
            Column("title", required=True),
            Column("description"),
            Column("assignDate", "datetime", True),
            Column("dueDate", "datetime", True),
            _ref("classSourcedId", "classes", "class", required=True),
            _ref("categorySourcedId", "categories", "category", required=True),
            _ref("gradingPeriodSourcedId", "academicSessions", "gradingPeriod", required=True),
            Column("resultValueMin", "number", True),
            Column("resultValueMax", "number", True),
        ),
        _file(
            "results", v,
            _ref("lineItemSourcedId", "lineItems", "lineItem", required=True),
            _ref("studentSourcedId", "users", "student", required=True),
            _enum("results", "scoreStatus", "scoreStatus", True),
            Column("score", "number", True),
            Column("scoreDate", "date", True),
            Column("comment"),
        ),
    ]  # fmt: skip
    return {s.name: s for s in specs}


#: version -> manifest name -> file, for the files we read.
SPECS: dict[str, dict[str, FileSpec]] = {"1.1": _v1p1(), "1.2": _v1p2()}

#: version -> the binding's other files: recognised and listed, not read.
NOT_CONSUMED: dict[str, tuple[str, ...]] = {
    "1.1": ("classResources", "courseResources", "resources"),
    "1.2": (
        "classResources", "courseResources", "lineItemLearningObjectiveIds", "lineItemScoreScales",
        "resources", "resultLearningObjectiveIds", "resultScoreScales", "scoreScales", "userResources",
    ),
}  # fmt: skip
