"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright) over a seeded
analytics store in the real PostgreSQL: sign-in is enforced, pages render, charts are drawn, and
the numbers shown equal figures computed here from the seeded data, not by the dashboard's SQL.
Screenshots are kept in ``test-artifacts/dashboard/``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from psycopg import sql
from pydantic import SecretStr

from simulators.analytics_store import Seeded, seed_store
from simulators.serving import AppServer
from sislms.dashboard import build_dashboard
from sislms.wiring import Kernel
from streams.settings import PROJECT_ROOT, Settings

PASSWORD = "integration-dashboard-password"
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "dashboard"
#: Debian's Chromium (`make prereqs` installs it); the browser is never downloaded.
CHROMIUM = os.environ.get("SISLMS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@dataclass
class Site:
    url: str
    seeded: Seeded
    dsn: str
    schema: str

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            conn.execute("set time zone 'UTC'")
            conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(self.schema)))
            return conn.execute(query, params).fetchall()  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def site(stack: Any, settings: Settings) -> Iterator[Site]:
    mine = settings.model_copy(
        update={"dashboard_password": SecretStr(PASSWORD), "dashboard_session_key": SecretStr("k" * 32)}
    )
    kernel = Kernel(mine)
    schema = f"dash_{os.getpid()}"
    dsn = kernel.endpoints.postgres_dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
    seeded = seed_store(dsn, schema, kernel.catalog, users=300, seed=7)
    server = AppServer("dashboard", "127.0.0.1", 0, lambda: build_dashboard(mine, kernel, schema=schema))
    server.start()
    yield Site(server.url, seeded, dsn, schema)
    server.stop()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: `make prereqs` installs Debian's chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    sign_in(pg, site)
    yield pg
    context.close()


def sign_in(pg: Page, site: Site, password: str = PASSWORD) -> None:
    pg.goto(f"{site.url}/")
    assert "/login" in pg.url
    pg.fill("input[name=user]", "admin")
    pg.fill("input[name=password]", password)
    pg.click("button[type=submit]")


def owing(seeded: Seeded, a: dict[str, Any]) -> list[dict[str, Any]]:
    """The enrollments that owe assignment ``a``: the class's, covering its due date."""
    day = a["due_at"].date()
    return [
        e for e in seeded.enrollments
        if e["class"] == a["class"] and (e["begin"] is None or e["begin"] <= day)
        and (e["end"] is None or e["end"] >= day)
    ]  # fmt: skip


def shot(pg: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def cells(pg: Page, selector: str) -> list[list[str]]:
    return [[c.strip() for c in row] for row in pg.eval_on_selector_all(
        f"{selector} tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText))"
    )][1:]  # fmt: skip


def test_nobody_gets_in_without_the_credential(browser: Browser, site: Site) -> None:
    for path in ("/", "/rows/dead_letters", f"/classes/{next(iter(site.seeded.students))}"):
        r = httpx.get(f"{site.url}{path}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    forged = httpx.get(f"{site.url}/", cookies={"sislms_session": "YWRtaW58OTk5OTk5OTk5OQ==.00"})
    assert forged.status_code == 303
    context = browser.new_context()
    pg = context.new_page()
    sign_in(pg, site, password="wrong")
    assert pg.locator("#login-error").inner_text() == "Wrong user name or password."
    shot(pg, "login-refused")
    pg.fill("input[name=password]", PASSWORD)
    pg.fill("input[name=user]", "admin")
    pg.click("button[type=submit]")
    assert pg.locator("h1").inner_text() == "District overview"
    context.close()


def test_the_overview_shows_the_stores_figures_and_its_charts(page: Page, site: Site) -> None:
    assert page.locator("h1").inner_text() == "District overview"
    shot(page, "overview")
    # Dead letters per stage: what was seeded.
    shown = {r[0]: int(r[2].replace(",", "")) for r in cells(page, "#dead-letters table")}
    assert shown == site.seeded.dead_letters
    # Provisioning: the dead-lettered commands seeded, and every other target applied.
    rows = cells(page, "#provisioning table")
    refused = sum(int(r[2]) for r in rows if r[0] == "dead_lettered")
    applied = sum(int(r[2].replace(",", "")) for r in rows if r[0] == "applied")
    assert (refused, applied) == (
        site.seeded.provisioning["dead_lettered"],
        site.seeded.provisioning["applied"],
    )
    # Charts: the engagement trend has one point per day with activity in the last 28 days.
    today = site.seeded.today
    days = {
        r["day"]
        for r in site.seeded.engagement
        if r["course_key"] == "*" and r["day"] > today - timedelta(28)
    }
    assert page.locator("svg.chart").count() >= 3
    assert page.locator("svg.chart.line").first.locator("circle").count() == len(days)
    # Missing work due in the last 14 days, per school: counted here from the seed.
    now = datetime.now(UTC)
    want: dict[str, int] = {}
    for a in site.seeded.assignments:
        if not now - timedelta(days=14) <= a["due_at"] < now:
            continue
        for e in owing(site.seeded, a):
            if (a["assignment_id"], e["user"]) not in site.seeded.submitted:
                want[e["school"]] = want.get(e["school"], 0) + 1
    names = dict(site.sql("select sourced_id, name from orgs"))
    got = {r[0]: int(r[1].replace(",", "")) for r in cells(page, "#work-by-school") if len(r) == 4}
    assert got == {names[s]: n for s, n in want.items()} and want


def test_a_class_page_shows_each_students_time_and_work(page: Page, site: Site) -> None:
    seeded = site.seeded
    klass = max(seeded.students, key=lambda c: len(seeded.students[c]))
    page.goto(f"{site.url}/classes/{klass}")
    assert page.locator("h1").inner_text().startswith(seeded.classes[klass]["title"])
    shot(page, "class")
    course = seeded.course_of[klass]
    since = seeded.today - timedelta(days=7)
    now = datetime.now(UTC)
    rows = {r.get_attribute("data-student"): r for r in page.locator("#students tr[data-student]").all()}
    assert set(rows) == set(seeded.students[klass])
    for st in seeded.students[klass]:
        mine = [e for e in seeded.engagement if e["course_id"] == course and e["sis_user_id"] == st]
        minutes = sum(e["seconds"] for e in mine if e["day"] > since) / 60
        work = [
            a
            for a in seeded.assignments
            if a["class"] == klass and st in {e["user"] for e in owing(seeded, a)}
        ]
        missing = sum(
            1 for a in work if a["due_at"] < now and (a["assignment_id"], st) not in seeded.submitted
        )
        late = sum(
            1 for a in work if seeded.submitted.get((a["assignment_id"], st), a["due_at"]) > a["due_at"]
        )
        row = rows[st]
        assert row.locator("td.minutes").inner_text() == f"{minutes:,.1f}", st
        assert int(row.locator("td.missing").inner_text()) == missing, st
        assert int(row.locator("td.late").inner_text()) == late, st
    # Every number leads to its rows: the first student with missing work.
    for st in seeded.students[klass]:
        link = rows[st].locator("td.missing a")
        if int(link.inner_text()) > 0:
            n = int(link.inner_text())
            link.click()
            assert page.locator("#rows tr").count() - 1 == n
            assert all(r[4] == "missing" for r in cells(page, "#rows"))
            shot(page, "rows-missing")
            break
    else:
        raise AssertionError("no student with missing work in the biggest class")


def test_a_student_page_lists_each_assignments_status(page: Page, site: Site) -> None:
    seeded = site.seeded
    klass = max(seeded.students, key=lambda c: len(seeded.students[c]))
    st = seeded.students[klass][0]
    page.goto(f"{site.url}/students/{st}")
    shot(page, "student")
    now = datetime.now(UTC)
    want: dict[str, int] = {}
    for a in seeded.assignments:
        if st in {e["user"] for e in owing(seeded, a)}:
            at = seeded.submitted.get((a["assignment_id"], st))
            status = (("on_time" if at <= a["due_at"] else "late") if at is not None
                      else ("missing" if a["due_at"] < now else "pending"))  # fmt: skip
            want[status] = want.get(status, 0) + 1
    got: dict[str, int] = {}
    for r in cells(page, "#work"):
        got[r[3]] = got.get(r[3], 0) + 1
    assert got == want
    assert page.locator("svg.chart.line").count() == 1


def test_a_school_page_lists_the_schools_classes(page: Page, site: Site) -> None:
    seeded = site.seeded
    school = next(iter(seeded.classes.values()))["school"]
    page.goto(f"{site.url}/schools/{school}")
    shot(page, "school")
    want = sorted(c["title"] for c in seeded.classes.values() if c["school"] == school)
    got = sorted(r[0] for r in cells(page, "#classes"))
    assert got == want
    assert page.locator("svg.chart.histogram").count() == 1
    # A class's student count leads to exactly its students enrolled today.
    klass = max((c for c in seeded.students if seeded.classes[c]["school"] == school),
                key=lambda c: len(seeded.students[c]))  # fmt: skip
    link = page.locator(f"#classes a[href*='class_sourced_id={klass}']").first
    assert int(link.inner_text()) == len(seeded.students[klass])
    link.click()
    assert sorted(r[2] for r in cells(page, "#rows")) == sorted(seeded.students[klass])
