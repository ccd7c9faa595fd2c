"""Write OneRoster 1.2 REST JSON objects as a OneRoster CSV bundle (1.2, or 1.1), folder or zip.

The inverse of :mod:`.reader`: ``write_bundle(c, p)`` then ``open_bundle(p).rows()`` gives back the
objects of ``c``, GUIDRef hrefs None, without an error (for 1.2). On the way:

- columns come in the binding's order, then ``metadata.<name>`` columns for the objects'
  ``metadata``; 1.2 ``lineItems.csv`` gets the 1.1 column ``gradingPeriodSourcedId`` last when a
  line item has a ``gradingPeriod`` (1.2 JSON carries it beside ``academicSession``);
- 1.2: users' ``roles[]`` go to ``roles.csv`` (sourcedId ``<user>-role-<n>``) and
  ``userProfiles[]`` to ``userProfiles.csv`` (one credential per profile; passwords are never
  written);
- 1.1: a user's primary role, at every org where the user has that role, goes to
  ``users.role``/``orgSourcedIds`` (1.1 has one role per user: the user's other roles are lost);
  site and district administrators become ``administrator``, other 1.2-only roles
  ``ext:<role>``; columns 1.1 does not have are dropped;
- GUIDRef hrefs, ``children`` (the reader derives them) and ``resources`` (no classResources.csv
  is written) are dropped;
- ``manifest.csv`` declares every file of the binding: ``mode`` for those written, ``absent`` for
  the others.

What the binding cannot carry raises ValueError instead of writing a file that reads back
differently: a comma inside a list item, an empty required value, two credentials in a profile.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import zipfile
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from connectors.oneroster.csv._values import normalise_instant
from connectors.oneroster.csv.binding import (
    NOT_CONSUMED,
    ORDER,
    ROLES_V1P1,
    SPECS,
    VERSIONS,
    Column,
    FileSpec,
)

__all__ = ["write_bundle"]

log = logging.getLogger(__name__)

Json = Mapping[str, Any]

_ADMINISTRATORS = frozenset({"siteAdministrator", "districtAdministrator"})


def write_bundle(
    collections: Mapping[str, Iterable[Json]],
    path: Path | str,
    *,
    version: str = "1.2",
    zip: bool = False,
    mode: str = "bulk",
    system_name: str = "sis-lms-sync",
) -> None:
    """Write ``collections`` as a CSV bundle.

    Args:
        collections: collection name (``orgs``, ``academicSessions``, ``courses``, ``classes``,
            ``users``, ``demographics``, ``enrollments``, ``categories``, ``lineItems``,
            ``results``) -> OneRoster 1.2 JSON objects. A collection given (even empty) is
            written and declared; one not given is declared ``absent``.
        path: the folder to create or fill, or the zip file to write.
        version: ``"1.2"`` or ``"1.1"``.
        zip: write one zip file instead of a folder.
        mode: ``bulk`` or ``delta``, declared for every file written.
        system_name: the manifest's ``source.systemName``.

    Raises:
        ValueError: an unknown collection, version or mode, or a value the binding cannot carry
            (see the module docstring).
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
    if mode not in ("bulk", "delta"):
        raise ValueError(f"mode must be bulk or delta, got {mode!r}")
    unknown = sorted(set(collections) - set(ORDER))
    if unknown:
        raise ValueError(f"unknown collection(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    specs = SPECS[version]
    tables: dict[str, list[Json]] = {name: list(collections[name]) for name in ORDER if name in collections}
    if "users" in tables:
        users = tables["users"]
        if version == "1.2":
            tables["roles"] = [row for user in users for row in _role_rows(user)]
            tables["userProfiles"] = [row for user in users for row in _profile_rows(user)]
        else:
            tables["users"] = [_v1p1_user(user) for user in users]
    for name in ("courses", "classes"):
        if any(obj.get("resources") for obj in tables.get(name, ())):
            log.warning(
                "write_bundle: the resources of %s are not written (no %sResources.csv)", name, name[:-1]
            )
    target = Path(path)
    with contextlib.ExitStack() as stack:
        opener: Callable[[str], IO[bytes]]
        if zip:
            target.parent.mkdir(parents=True, exist_ok=True)
            archive = stack.enter_context(zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED))

            def opener(name: str) -> IO[bytes]:
                return archive.open(name, "w")

        else:
            target.mkdir(parents=True, exist_ok=True)

            def opener(name: str) -> IO[bytes]:
                return (target / name).open("wb")

        for name, objects in tables.items():
            with opener(specs[name].file) as stream:
                _write_rows(stream, _table(specs[name], objects, version))
        with opener("manifest.csv") as stream:
            _write_rows(stream, _manifest(version, set(tables), mode, system_name))


def _write_rows(stream: IO[bytes], rows: Iterable[list[str]]) -> None:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    text.flush()
    text.detach()


def _manifest(version: str, written: set[str], mode: str, system_name: str) -> list[list[str]]:
    rows = [["propertyName", "value"], ["manifest.version", "1.0"], ["oneroster.version", version]]
    for name in sorted([*SPECS[version], *NOT_CONSUMED[version]], key=str.lower):
        rows.append([f"file.{name}", mode if name in written else "absent"])
    rows.append(["source.systemName", system_name])
    return rows


def _table(spec: FileSpec, objects: list[Json], version: str) -> Iterable[list[str]]:
    """The header and rows of one file."""
    columns = list(spec.columns)
    columns += [c for c in spec.extra if any(obj.get(c.field) is not None for obj in objects)]
    metadata: dict[str, None] = {}
    for obj in objects:
        for key in obj.get("metadata") or {}:
            metadata.setdefault(str(key), None)
    yield [c.name for c in columns] + [f"metadata.{key}" for key in metadata]
    renderers = [(column, _renderer(column)) for column in columns]
    for obj in objects:
        row = []
        for column, render in renderers:
            value = obj.get(column.field)
            text = "" if value is None or column.kind == "secret" else render(value)
            if not text and column.required:
                raise ValueError(
                    f"{spec.name} {obj.get('sourcedId')!r}: {column.name} is required by the OneRoster "
                    f"{version} CSV binding but the object has no value for it"
                )
            row.append(text)
        extra = obj.get("metadata") or {}
        row += [_text(extra.get(key)) for key in metadata]
        yield row


def _renderer(column: Column) -> Callable[[Any], str]:
    kind, name = column.kind, column.name
    if kind == "bool":
        return lambda v: "true" if v else "false"
    if kind == "number":
        return lambda v: repr(float(v))
    if kind == "datetime":
        return _instant
    if kind == "date":
        return lambda v: v.isoformat() if isinstance(v, date) else str(v)
    if kind == "list":
        return lambda v: ",".join(_item(name, str(item)) for item in v)
    if kind == "refs":
        return lambda v: ",".join(_item(name, _sourced_id(item)) for item in v)
    if kind == "ref":
        return _sourced_id
    if kind == "userIds":
        return lambda v: ",".join(_user_id(name, item) for item in v)
    return _text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _instant(value: Any) -> str:
    if isinstance(value, datetime):
        return normalise_instant(value.isoformat())
    return str(value)


def _sourced_id(value: Any) -> str:
    return str(value.get("sourcedId", "")) if isinstance(value, Mapping) else str(value)


def _item(column: str, text: str) -> str:
    if "," in text:
        # The binding separates list values with commas and has no escape for them.
        raise ValueError(f"{column}: {text!r} contains a comma, which a CSV list cannot carry")
    return text.strip()


def _user_id(column: str, value: Json) -> str:
    kind, ident = str(value.get("type", "")), str(value.get("identifier", ""))
    if not kind or any(ch in kind for ch in "{}:,") or any(ch in ident for ch in "{}"):
        raise ValueError(f"{column}: {dict(value)!r} cannot be written as {{type:identifier}}")
    return f"{{{kind}:{ident}}}"


def _user_ref(user: Json) -> dict[str, Any]:
    return {"href": None, "sourcedId": user["sourcedId"], "type": "user"}


def _stamp(user: Json) -> dict[str, Any]:
    return {"status": user.get("status"), "dateLastModified": user.get("dateLastModified")}


def _role_rows(user: Json) -> Iterable[dict[str, Any]]:
    for i, role in enumerate(user.get("roles") or [], start=1):
        yield {**role, "sourcedId": f"{user['sourcedId']}-role-{i}", "user": _user_ref(user), **_stamp(user)}


def _profile_rows(user: Json) -> Iterable[dict[str, Any]]:
    for profile in user.get("userProfiles") or []:
        credentials = profile.get("credentials") or []
        if len(credentials) > 1:
            raise ValueError(
                f"users {user['sourcedId']!r}: profile {profile.get('profileId')!r} has "
                f"{len(credentials)} credentials; userProfiles.csv carries one"
            )
        credential = credentials[0] if credentials else {}
        yield {
            **profile,
            "sourcedId": profile.get("profileId"),
            "user": _user_ref(user),
            "credentialType": credential.get("type"),
            "username": credential.get("username"),
            **_stamp(user),
        }


def _v1p1_user(user: Json) -> dict[str, Any]:
    """A 1.2 user as a 1.1 users.csv row: the primary role, at every org where the user has it."""
    roles = sorted(user.get("roles") or [], key=lambda r: r.get("roleType") != "primary")
    role = roles[0]["role"] if roles else None
    orgs: dict[str, Any] = {}
    for entry in roles:
        if entry.get("role") == role:
            orgs.setdefault(_sourced_id(entry.get("org")), entry.get("org"))
    if role in _ADMINISTRATORS:
        role = "administrator"
    elif role is not None and role not in ROLES_V1P1 and not role.startswith("ext:"):
        role = f"ext:{role}"
    return {**user, "orgs": list(orgs.values()), "role": role}
