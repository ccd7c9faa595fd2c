"""Shared pieces of the CSV binding tests: a tiny consistent 1.2 bundle and readers."""

from __future__ import annotations

from pathlib import Path

from connectors.oneroster.csv import Row, RowError, open_bundle

__all__ = ["BASE", "HEADERS", "MANIFEST_V1P2", "problems", "read"]

MANIFEST_V1P2 = "propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\n"

_COMMON = "sourcedId,status,dateLastModified,"
HEADERS = {
    "orgs": _COMMON + "name,type,identifier,parentSourcedId",
    "academicSessions": _COMMON + "title,type,startDate,endDate,parentSourcedId,schoolYear",
    "courses": _COMMON + "schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes",
    "classes": _COMMON + "title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,"
    "termSourcedIds,subjects,subjectCodes,periods",
    "users": _COMMON + "enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,"
    "phone,agentSourcedIds,grades,password,userMasterIdentifier,preferredGivenName,preferredMiddleName,"
    "preferredFamilyName,primaryOrgSourcedId,pronouns",
    "roles": _COMMON + "userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId",
    "enrollments": _COMMON + "classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate",
}

#: A tiny consistent 1.2 bundle (file name -> text); tests change one file at a time.
BASE = {
    "orgs.csv": HEADERS["orgs"] + "\no1,active,2026-08-01T00:00:00.000Z,North High,school,NH,\n",
    "academicSessions.csv": HEADERS["academicSessions"]
    + "\nt1,active,,Fall,term,2026-08-17,2027-01-15,,2027\n",
    "courses.csv": HEADERS["courses"] + "\nc1,active,,,Algebra,ALG,09,o1,Math,02\n",
    "classes.csv": HEADERS["classes"] + "\nk1,active,,Algebra 1,09,c1,ALG-1,scheduled,R1,o1,t1,,,1\n",
    "users.csv": HEADERS["users"]
    + "\nu1,active,,true,ana,,Ana,Diaz,,,,,,,09,secret,,,,,o1,\n"
    + "u2,active,,true,ben,,Ben,Ng,,,,,,,09,,,,,,o1,\n",
    "roles.csv": HEADERS["roles"]
    + "\nr1,active,,u1,primary,student,,,o1,\nr2,active,,u2,primary,teacher,,,o1,\n",
    "enrollments.csv": HEADERS["enrollments"]
    + "\ne1,active,,k1,o1,u1,student,false,,\ne2,active,,k1,o1,u2,teacher,true,,\n",
}


def read(path: Path) -> tuple[list[Row], list[RowError]]:
    """Every row of the bundle at ``path``, good and bad."""
    items = list(open_bundle(path).rows())
    return [i for i in items if isinstance(i, Row)], [i for i in items if isinstance(i, RowError)]


def problems(errors: list[RowError]) -> list[tuple[str, int | None, str | None, str]]:
    """(file, line, field, kind) of every problem of ``errors``."""
    return [(e.file, e.line, p.field, p.kind) for e in errors for p in e.problems]
