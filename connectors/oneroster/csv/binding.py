"""The OneRoster 1.2 (and 1.1) CSV binding: which file holds which collection, its columns in
the binding's order, what kind of value each holds, and where it goes in the 1.2 JSON object.

Column kinds:

- ``str``: text as is; ``datetime`` / ``date``: ISO 8601, normalised (``...mmmZ`` / ``YYYY-MM-DD``);
- ``bool``: ``true``/``false`` in any case; ``float``: a number;
- ``list``: comma-separated values (``"09,10"``); ``userIds``: ``{type:identifier}`` pairs;
- ``ref`` / ``refs``: one or several sourcedIds, turned into GUIDRefs of ``guid_type``, checked
  against the ``target`` collection when the bundle carries it;
- ``skip``: read and dropped on purpose (passwords and credentials never enter the pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALIASES",
    "FILES",
    "FOLDED",
    "NOT_CONSUMED",
    "ROLE_TYPES",
    "USERS_V1P1",
    "Column",
    "FileSpec",
]


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "str"
    required: bool = False
    field: str | None = None  # the JSON field; None: same as the column
    guid_type: str | None = None  # for ref/refs
    target: str | None = None  # the collection a ref must exist in (None: not checked)

    @property
    def key(self) -> str:
        return self.field or self.name


def _base() -> list[Column]:
    return [Column("sourcedId", required=True), Column("status"), Column("dateLastModified", "datetime")]


@dataclass(frozen=True)
class FileSpec:
    file: str  # e.g. "users.csv"
    collection: str  # the JSON collection, or the folded file's own name (roles, userProfiles)
    columns: tuple[Column, ...]

    @property
    def by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}


def _spec(file: str, collection: str, *columns: Column) -> FileSpec:
    return FileSpec(file, collection, tuple(_base() + list(columns)))


_AS = "academicSession"
FILES: dict[str, FileSpec] = {
    spec.collection: spec
    for spec in (
        _spec("orgs.csv", "orgs", Column("name", required=True), Column("type", required=True),
              Column("identifier"), Column("parentSourcedId", "ref", field="parent", guid_type="org")),
        _spec("academicSessions.csv", "academicSessions", Column("title", required=True),
              Column("type", required=True), Column("startDate", "date", True),
              Column("endDate", "date", True),
              Column("parentSourcedId", "ref", field="parent", guid_type=_AS),
              Column("schoolYear", required=True)),
        _spec("courses.csv", "courses",
              Column("schoolYearSourcedId", "ref", field="schoolYear", guid_type=_AS,
                     target="academicSessions"),
              Column("title", required=True), Column("courseCode"), Column("grades", "list"),
              Column("orgSourcedId", "ref", True, field="org", guid_type="org", target="orgs"),
              Column("subjects", "list"), Column("subjectCodes", "list")),
        _spec("classes.csv", "classes", Column("title", required=True), Column("grades", "list"),
              Column("courseSourcedId", "ref", True, field="course", guid_type="course", target="courses"),
              Column("classCode"), Column("classType", required=True), Column("location"),
              Column("schoolSourcedId", "ref", True, field="school", guid_type="org", target="orgs"),
              Column("termSourcedIds", "refs", True, field="terms", guid_type=_AS, target="academicSessions"),
              Column("subjects", "list"), Column("subjectCodes", "list"), Column("periods", "list")),
        _spec("users.csv", "users", Column("enabledUser", "bool", True), Column("username", required=True),
              Column("userIds", "userIds"), Column("givenName", required=True),
              Column("familyName", required=True), Column("middleName"), Column("identifier"),
              Column("email"),
              Column("sms"), Column("phone"),
              Column("agentSourcedIds", "refs", field="agents", guid_type="user", target="users"),
              Column("grades", "list"), Column("password", "skip"), Column("userMasterIdentifier"),
              Column("preferredGivenName"), Column("preferredMiddleName"), Column("preferredFamilyName"),
              Column("primaryOrgSourcedId", "ref", field="primaryOrg", guid_type="org", target="orgs"),
              Column("pronouns")),
        _spec("roles.csv", "roles",
              Column("userSourcedId", "ref", True, field="user", guid_type="user", target="users"),
              Column("roleType", required=True), Column("role", required=True),
              Column("beginDate", "date"), Column("endDate", "date"),
              Column("orgSourcedId", "ref", True, field="org", guid_type="org", target="orgs"),
              Column("userProfileSourcedId", field="userProfile")),
        _spec("userProfiles.csv", "userProfiles",
              Column("userSourcedId", "ref", True, field="user", guid_type="user", target="users"),
              Column("profileType", required=True), Column("vendorId", required=True),
              Column("applicationId"),
              Column("description"), Column("credentialType", "skip"), Column("username", "skip"),
              Column("password", "skip")),
        _spec("demographics.csv", "demographics", Column("birthDate", "date"), Column("sex"),
              *(Column(n, "bool") for n in ("americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                                            "nativeHawaiianOrOtherPacificIslander", "white",
                                            "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity")),
              Column("countryOfBirthCode"), Column("stateOfBirthAbbreviation"), Column("cityOfBirth"),
              Column("publicSchoolResidenceStatus")),
        _spec("enrollments.csv", "enrollments",
              Column("classSourcedId", "ref", True, field="class", guid_type="class", target="classes"),
              Column("schoolSourcedId", "ref", True, field="school", guid_type="org", target="orgs"),
              Column("userSourcedId", "ref", True, field="user", guid_type="user", target="users"),
              Column("role", required=True), Column("primary", "bool"), Column("beginDate", "date"),
              Column("endDate", "date")),
        _spec("categories.csv", "categories", Column("title", required=True), Column("weight", "float")),
        _spec("lineItems.csv", "lineItems", Column("title", required=True), Column("description"),
              Column("assignDate", "datetime", True), Column("dueDate", "datetime", True),
              Column("classSourcedId", "ref", True, field="class", guid_type="class", target="classes"),
              Column("schoolSourcedId", "ref", field="school", guid_type="org", target="orgs"),
              Column("categorySourcedId", "ref", True, field="category", guid_type="category",
                     target="categories"),
              Column("gradingPeriodSourcedId", "ref", field="gradingPeriod", guid_type=_AS,
                     target="academicSessions"),
              Column("academicSessionSourcedId", "ref", field="academicSession", guid_type=_AS,
                     target="academicSessions"),
              Column("scoreScaleSourcedId", "ref", field="scoreScale", guid_type="scoreScale"),
              Column("resultValueMin", "float"), Column("resultValueMax", "float")),
        _spec("results.csv", "results",
              Column("lineItemSourcedId", "ref", True, field="lineItem", guid_type="lineItem",
                     target="lineItems"),
              Column("studentSourcedId", "ref", True, field="student", guid_type="user", target="users"),
              Column("classSourcedId", "ref", field="class", guid_type="class", target="classes"),
              Column("scoreScaleSourcedId", "ref", field="scoreScale", guid_type="scoreScale"),
              Column("scoreStatus", required=True), Column("score", "float"), Column("textScore"),
              Column("scoreDate", "date"), Column("comment"), Column("inProgress", "bool"),
              Column("incomplete", "bool"), Column("late", "bool"), Column("missing", "bool")),
    )
}  # fmt: skip

#: 1.1 users.csv: one role and its orgs on the user row (no roles.csv).
USERS_V1P1 = FileSpec(
    "users.csv",
    "users",
    tuple(
        [c for c in FILES["users"].columns if c.name not in ("userMasterIdentifier", "primaryOrgSourcedId")]
        + [Column("orgSourcedIds", "refs", True, field="_orgs", guid_type="org", target="orgs"),
           Column("role", required=True, field="_role")]
    ),
)  # fmt: skip

#: Files folded into users.
FOLDED = ("roles", "userProfiles")

#: Files of the binding that we recognise and deliberately do not consume.
NOT_CONSUMED = frozenset(
    {"resources.csv", "classResources.csv", "courseResources.csv", "userResources.csv", "scoreScales.csv",
     "lineItemLearningObjectiveIds.csv", "lineItemScoreScales.csv", "resultLearningObjectiveIds.csv",
     "resultScoreScales.csv"}
)  # fmt: skip

#: Older spellings (1.0/1.1 and common exports) read as the 1.2 column.
ALIASES = {
    "grade": "grades",
    "agents": "agentSourcedIds",
    "birthdate": "birthDate",
    "schoolYearId": "schoolYearSourcedId",
}

ROLE_TYPES = frozenset({"primary", "secondary"})
