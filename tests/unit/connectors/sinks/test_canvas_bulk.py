"""First loads through Canvas SIS Imports (connectors.sinks.canvas.bulk), against the LMS
simulator over HTTP: which commands an import may carry, rows held until what they need is
there, the zip's columns as Canvas documents them, and Canvas ids read back for every row."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.sinks.canvas.apply import Command, Provisioner
from connectors.sinks.canvas.bulk import BulkRow, SisImportLoader, _zip, importable
from simulators.lms.server import LmsSimulator
from tests.unit.connectors.sinks.test_canvas_apply import DISTRICT, Ids, _provisioner, cmd


def _row(command: Command, sequence: int = 1) -> BulkRow:
    item = SimpleNamespace(key=command.target.encode(), lane=0)
    return BulkRow(item, {"sequence": sequence, "meta": {}}, command)


def _user(sis_id: str) -> Command:
    return cmd("user", sis_id, user_id=sis_id, login_id=f"login-{sis_id}", first_name="A", last_name="B")


def _enrollment(target: str, user: str, section: str | None, role: str = "student", **extra: str) -> Command:
    return cmd(
        "enrollment", target, user_id=user, course_id="k-2", section_id=section, role=role,
        base_role=extra.pop("base_role", role), **extra,
    )  # fmt: skip


def test_only_active_creates_an_import_can_say_go_to_one() -> None:
    assert importable(_user("u-1"))
    assert not importable(cmd("user", "u-1", status="suspended", user_id="u-1"))
    assert importable(cmd("course", "k", course_id="k", long_name="Alg", short_name="A", blueprint="false"))
    assert not importable(
        cmd("course", "k", course_id="k", long_name="Alg", short_name="A", blueprint="true")
    )
    follower = cmd("course", "k", course_id="k", long_name="Alg", short_name="A", blueprint_course_id="t:1")
    assert importable(follower) and ("course", "t:1") in _row(follower).needs()
    assert importable(cmd("section", "k", section_id="k", course_id="k", name="P1"))
    assert importable(_enrollment("e", "u", "k"))
    assert importable(_enrollment("e", "u", "k", role="Counselor", base_role="observer"))
    assert not importable(_enrollment("e", "u", "k", role="Counselor", base_role=""))
    assert not importable(cmd("account_admin", "a", user_id="u", account_id="s", role="AccountAdmin"))
    assert not importable(cmd("term", "t", term_id="t", name="T"))


def _loader(provisioner: Provisioner, ids: Ids, **kwargs: Any) -> tuple[SisImportLoader, dict[str, Any]]:
    seen: dict[str, Any] = {"applied": {}, "back": [], "made": 0}

    def applied(row: BulkRow, lms_id: str) -> None:
        ids.put(row.kind, row.command.target, lms_id)
        seen["applied"][row.command.target] = lms_id
        seen["made"] += 1

    loader = SisImportLoader(
        provisioner, ids, applied=applied, fall_back=lambda row: seen["back"].append(row.command.target),
        behind=kwargs.pop("behind", lambda: False), pending=kwargs.pop("pending", lambda kind, sis_id: False),
        max_wait_s=0.2, poll_s=0.1, **kwargs,
    )  # fmt: skip
    return loader, seen


def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_rows_held_until_their_user_is_on_hand_then_imported_in_one_zip(lms: LmsSimulator) -> None:
    ids = Ids()
    provisioner = _provisioner(lms, ids)
    for command in DISTRICT[:4]:  # the district, a school, a term and a blueprint, through REST
        provisioner.apply(command)
    waiting_for_user = {"u-late"}
    loader, seen = _loader(provisioner, ids, pending=lambda kind, sis_id: sis_id in waiting_for_user)
    loader.start()
    try:
        early = _row(_enrollment("e-late", "u-late", "k-2"))
        loader.offer(early)
        time.sleep(0.6)  # several rounds: its user is on its way, so it is held, not given back
        assert loader.holds(b"e-late") and not seen["applied"] and not seen["back"]
        course = cmd(
            "course", "k-2", course_id="k-2", long_name="Biology P2", short_name="BIO-2", account_id="s-1",
            term_id="t-1", blueprint="false", blueprint_course_id="template:c-1",
        )  # fmt: skip
        rows = [
            _row(course),
            _row(cmd("section", "k-2", section_id="k-2", course_id="k-2", name="Biology P2")),
            *(_row(_user(u)) for u in ("u-late", "u-a", "u-b", "u-g")),
            _row(_enrollment("e-a", "u-a", "k-2", role="teacher")),
            _row(_enrollment("e-b", "u-b", "k-2")),
            _row(_enrollment("e-g", "u-g", "k-2", role="observer", associated_user_id="u-b")),
            _row(_enrollment("e-c", "u-g", "k-2", role="Counselor", base_role="observer")),
            _row(_enrollment("e-d", "u-a", None, role="designer")),  # in the course's default section
        ]
        for row in rows:
            loader.offer(row)
        waiting_for_user.clear()
        _until(lambda: seen["made"] == len(rows) + 1)
    finally:
        loader.stop()
        loader.join(10)
    assert not seen["back"] and loader.failure is None
    store = lms.store
    for sis_id in ("u-late", "u-a", "u-b", "u-g"):
        assert seen["applied"][sis_id] == str(store.user(f"sis_user_id:{sis_id}")["id"])
    assert ids.get("course", "k-2") == str(store.course("sis_course_id:k-2")["id"])
    assert ids.get("section", "k-2") == str(store.section("sis_section_id:k-2")["id"])
    course_id = store.course("sis_course_id:k-2")["id"]
    assert store.blueprint_of(course_id) == store.course("sis_course_id:template:c-1")["id"]
    enrollments = {str(e["id"]): e for e in store.enrollments.values()}
    for target, (user, role) in {
        "e-late": ("u-late", "StudentEnrollment"), "e-a": ("u-a", "TeacherEnrollment"),
        "e-b": ("u-b", "StudentEnrollment"), "e-g": ("u-g", "ObserverEnrollment"),
        "e-c": ("u-g", "Counselor"), "e-d": ("u-a", "DesignerEnrollment"),
    }.items():  # fmt: skip
        e = enrollments[seen["applied"][target]]
        assert (e["user_id"], e["role"]) == (store.user(f"sis_user_id:{user}")["id"], role), target
    observer = enrollments[seen["applied"]["e-g"]]
    assert observer["associated_user_id"] == store.user("sis_user_id:u-b")["id"]
    assert loader.counts["imports"] >= 1 and loader.counts["applied"] == len(rows) + 1
    assert not loader.holds(b"e-late") and loader.held() == 0


def test_a_row_whose_dependency_never_comes_goes_through_the_rest_api(lms: LmsSimulator) -> None:
    ids = Ids()
    provisioner = _provisioner(lms, ids)
    loader, seen = _loader(provisioner, ids)
    loader.start()
    try:
        loader.offer(_row(_enrollment("e-x", "u-nobody", "k-9")))
        loader.offer(_row(_user("u-1")))
        _until(lambda: seen["back"] == ["e-x"] and "u-1" in seen["applied"])
    finally:
        loader.stop()
        loader.join(10)
    assert loader.held() == 0


def test_the_zip_has_canvas_documented_columns_and_every_required_one(fixtures_dir: Path) -> None:
    spec = json.loads((fixtures_dir / "canvas_sis_csv" / "columns.json").read_text())["files"]
    rows = {
        "user": [{"user_id": "u", "login_id": "l", "status": "active"}],
        "course": [{"course_id": "c", "short_name": "C", "long_name": "Course", "status": "active"}],
        "section": [{"section_id": "s", "course_id": "c", "name": "S", "status": "active"}],
        "enrollment": [
            {"course_id": "c", "section_id": "s", "user_id": "u", "role": "student", "status": "active"}
        ],
    }
    archive = zipfile.ZipFile(io.BytesIO(_zip(rows)))
    assert sorted(archive.namelist()) == ["courses.csv", "enrollments.csv", "sections.csv", "users.csv"]
    for name in archive.namelist():
        header = next(csv.reader(io.StringIO(archive.read(name).decode())))
        documented = {c["name"]: c for c in spec[name]["columns"]}
        # the fixture is an older snapshot of Canvas's docs; current Canvas documents these too
        newer = {"enrollments.csv": {"start_date", "end_date"}, "courses.csv": {"blueprint_course_id"}}
        newer_here = newer.get(name, set())
        assert set(header) <= set(documented) | newer_here, name
        assert {n for n, c in documented.items() if c["required"] is True} <= set(header), name


@pytest.mark.parametrize("behind", [True, False])
def test_rows_gather_while_the_sink_is_behind_and_go_at_once_when_it_has_read_to_the_end(
    lms: LmsSimulator, behind: bool
) -> None:
    ids = Ids()
    provisioner = _provisioner(lms, ids)
    loader, seen = _loader(provisioner, ids, behind=lambda: behind)
    loader.max_wait_s = 60.0
    loader.start()
    try:
        loader.offer(_row(_user("u-1")))
        if behind:
            time.sleep(1.5)
            assert not seen["applied"]  # still gathering
            loader.max_rows = 1
            loader.offer(_row(_user("u-2")))  # the batch is full
        _until(lambda: "u-1" in seen["applied"])
    finally:
        loader.stop()
        loader.join(10)


@pytest.mark.parametrize("known", [0, 500])
def test_ids_come_from_the_account_list_only_when_it_costs_fewer_calls_than_one_by_one(
    lms: LmsSimulator, known: int
) -> None:
    ids = Ids()
    for n in range(known):  # users of earlier imports: the account's list is `known` users longer
        ids.put("user", f"u-old-{n}", str(10_000_000 + n))
    provisioner = _provisioner(lms, ids)
    provisioner.apply(DISTRICT[0])  # the district (the root account's SIS id)
    listed: list[str] = []
    pages = provisioner.client.pages

    def spy(path: str, params: Any = None) -> list[Any]:
        listed.append(path)
        return pages(path, params)

    provisioner.client.pages = spy  # type: ignore[method-assign]
    loader, seen = _loader(provisioner, ids, list_from=2)
    loader.start()
    try:
        for sis_id in ("u-1", "u-2", "u-3"):
            loader.offer(_row(_user(sis_id)))
        _until(lambda: len(seen["applied"]) == 3)
    finally:
        loader.stop()
        loader.join(10)
    store = lms.store
    for sis_id in ("u-1", "u-2", "u-3"):
        assert seen["applied"][sis_id] == str(store.user(f"sis_user_id:{sis_id}")["id"])
    by_list = [p for p in listed if p.endswith("/users")]
    # 3 users: one page of a fresh account, against one call each when it holds 503 (6 pages)
    assert len(by_list) == (0 if known else 1)
