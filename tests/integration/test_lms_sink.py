"""The Canvas provisioning sink on the real stack: a generated district's provisioning commands
(computed from the SIS simulator's ground truth and the shipped rules) go through Kafka to the
sink, which applies them to the LMS simulator over HTTP. The LMS must end up holding exactly the
planned roster: nothing missing, nothing unexpected, nothing twice; also with every command
delivered twice, with the sink restarted half-way, under a throttling storm, and with a command
Canvas refuses (dead-lettered with its reason, the rest applied)."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.canvas import ENROLLMENT_TYPES
from connectors.sinks.canvas.apply import Command
from connectors.sinks.canvas.bulk import importable
from connectors.sinks.canvas.sink import CanvasSink
from simulators.lms.app import Fault, Throttle
from simulators.lms.server import LmsConfig, LmsSimulator
from sislms.lms import build_sink
from sislms.wiring import Kernel
from streams.compacted import group_caught_up
from streams.dlq_replay import Letter, ReplayPlan, plan_letters, read_ledger, read_letters, replay_letters
from streams.kafka import client_config
from streams.roles.engine import RuleSet
from streams.roster.commands import diff
from streams.roster.desired import Target, target_id
from streams.roster.plan import plan_district
from streams.serde import encode_key
from streams.settings import Settings
from streams.topology import apply
from tests.integration.roster_support import AS_OF, change_meta, ground_truth
from tests.integration.running import Running
from tests.integration.sis_support import read_topic, start_simulator, wait_for

TOKEN = "integration-lms-token"


@dataclass
class Rig:
    kernel: Kernel
    settings: Settings
    lms: LmsSimulator
    commands: str
    results: str
    stage: str
    group: str
    targets: dict[str, Target]

    @property
    def dead_letters(self) -> str:
        return f"dlq.{self.stage}.v1"

    def sink(self) -> CanvasSink:
        return build_sink(
            self.settings, self.kernel, commands=self.commands, results=self.results, group=self.group,
            stage=self.stage,
        )  # fmt: skip


@pytest.fixture(scope="module")
def district(settings: Settings, kernel: Kernel) -> dict[str, Target]:
    """The planned LMS targets of a small generated district (shipped rules)."""
    sim = start_simulator(settings, kernel, users=150, seed=5)
    try:
        g = ground_truth(sim, kernel)
    finally:
        sim.stop()
    return plan_district(
        orgs=g["orgs"], sessions=g["academicSessions"], courses=g["courses"], classes=g["classes"],
        users=g["users"], enrollments=g["enrollments"], rules=RuleSet.load(settings.roles_file), today=AS_OF,
    )  # fmt: skip


@pytest.fixture
def rig(
    settings: Settings, kernel: Kernel, make_catalog: Any, uid: str, district: dict[str, Target]
) -> Iterator[Rig]:
    stage = f"lms_sink_{uid}"
    catalog = make_catalog(
        [
            {"name": "lms.provisioning_{uid}.v1", "value_schema": "lms/provisioning.v1.avsc"},
            {
                "name": "lms.provisioning.results_{uid}.v1",
                "cleanup_policy": "compact",
                "value_schema": "lms/provisioning_results.v1.avsc",
            },
            {"name": f"dlq.{stage}.v1", "value_schema": "dlq/dead_letter.v1.avsc", "partitions": 1},
            {
                "name": "ops.dlq_replays_{uid}.v1",
                "cleanup_policy": "compact",
                "partitions": 1,
                "value_schema": "ops/dlq_replays.v1.avsc",
            },
        ]
    )
    assert apply(catalog, kernel.admin, kernel.registry, 1).ok
    private = Kernel(kernel.settings)
    private.__dict__["catalog"] = catalog
    lms = LmsSimulator(LmsConfig(port=0, token=TOKEN, throttle=Throttle(capacity=0))).start()
    mine = settings.model_copy(
        update={"lms_url": lms.url, "lms_token": SecretStr(TOKEN), "lms_sink_dependency_wait_s": 60.0}
    )
    yield Rig(
        private, mine, lms, f"lms.provisioning_{uid}.v1", f"lms.provisioning.results_{uid}.v1", stage,
        f"sink-{uid}", district,
    )  # fmt: skip
    lms.stop()


def _commands(targets: dict[str, Target]) -> list[dict[str, Any]]:
    """The commands the roster agents would emit for these targets from nothing (sequence 1)."""
    meta = change_meta()
    out = []
    for key, target in sorted(targets.items()):
        commands, _ = diff({}, {key: target})
        out += [c.to_value("test", meta) for c in commands]
    return out


def _publish(rig: Rig, values: list[dict[str, Any]]) -> None:
    producer = rig.kernel.producer()
    serde = rig.kernel.serdes[rig.commands]
    for v in values:
        producer.produce(rig.commands, key=encode_key(v["targetSisId"]), value=serde.encode(v))
    assert producer.flush(30) == 0


def _caught_up(rig: Rig) -> bool:
    conf = client_config(rig.kernel.settings, rig.kernel.endpoints.kafka_bootstrap)
    return group_caught_up(conf, rig.group, [rig.commands])[0]


def _run_to_end(rig: Rig, timeout: float = 420.0) -> CanvasSink:
    running = Running(rig.sink())
    try:
        wait_for(lambda: _caught_up(rig), timeout=timeout, every=1.0)
    finally:
        running.close()
    return running.worker


def _expected(targets: dict[str, Target], leave_out: frozenset[str] = frozenset()) -> dict[str, Counter[Any]]:
    """What the LMS simulator's ground truth must hold, as multisets (a duplicate shows as 2)."""
    root = next(
        t.attrs["account_id"] for t in targets.values() if t.kind == "account" and t.attrs["root"] == "true"
    )
    want: dict[str, Counter[Any]] = {
        k: Counter() for k in ("users", "accounts", "courses", "sections", "enrollments", "admins")
    }
    for key, t in targets.items():
        a, tid = t.attrs, target_id(key)
        if t.kind == "user" and tid not in leave_out:
            want["users"][(tid, a["login_id"])] += 1
        elif t.kind == "account" and a["root"] != "true":
            parent = a["parent_account_id"]
            want["accounts"][(tid, None if parent in (None, root, "root") else parent)] += 1
        elif t.kind == "course":
            want["courses"][(tid, a["term_id"], a["blueprint_course_id"])] += 1
        elif t.kind == "section":
            want["sections"][(tid, a["course_id"])] += 1
        elif t.kind == "enrollment" and not {a["user_id"], a.get("associated_user_id")} & leave_out:
            role = ENROLLMENT_TYPES.get(a["role"] or "", a["role"])
            want["enrollments"][(a["user_id"], a["course_id"], role, a.get("associated_user_id"))] += 1
        elif t.kind == "account_admin" and a["user_id"] not in leave_out:
            want["admins"][(a["user_id"], a["account_id"], a["role"])] += 1
    return want


def _held(lms: LmsSimulator) -> dict[str, Counter[Any]]:
    g = lms.store.ground_truth()
    return {
        "users": Counter((u["sis_user_id"], u["login_id"]) for u in g["users"]),
        "accounts": Counter((a["sis_account_id"], a["parent"]) for a in g["accounts"] if not a["root"]),
        "courses": Counter((c["sis_course_id"], c["term"], c["blueprint_course"]) for c in g["courses"]),
        # Canvas makes a default section (no SIS id) for enrollments given by course: not ours
        "sections": Counter((s["sis_section_id"], s["course"]) for s in g["sections"] if s["sis_section_id"]),
        "enrollments": Counter((e["user"], e["course"], e["role"], e["observed"]) for e in g["enrollments"]),
        "admins": Counter((a["user"], a["account"], a["role"]) for a in g["admins"]),
    }


def _compare(
    rig: Rig, leave_out: frozenset[str] = frozenset(), targets: dict[str, Target] | None = None
) -> None:
    want, got = _expected(rig.targets if targets is None else targets, leave_out), _held(rig.lms)
    for kind in want:
        missing, extra = want[kind] - got[kind], got[kind] - want[kind]
        assert not missing and not extra, (
            f"{kind}: missing {list(missing)[:3]}, unexpected or twice {list(extra)[:3]}"
        )
    assert sum(len(c) for c in want.values()) > 500  # a real district, not an empty one


def test_a_district_is_provisioned_exactly_and_a_redelivery_changes_nothing(rig: Rig) -> None:
    values = _commands(rig.targets)
    _publish(rig, values)
    sink = _run_to_end(rig)
    _compare(rig)
    results = read_topic(_topics(rig), rig.results)
    statuses = Counter(v["status"] for _, v, _ in results)
    assert statuses["applied"] + statuses["unchanged"] == len(values) and statuses["dead_lettered"] == 0
    assert sink.counts["applied"] > 0.9 * len(values)
    # every command again (a producer retry, a replay): skipped by sequence, nothing doubled
    before = rig.lms.state.requests
    _publish(rig, values)
    again = _run_to_end(rig)
    _compare(rig)
    assert again.counts["stale"] == len(values)
    assert rig.lms.state.requests - before < 20  # the id map was reloaded; no Canvas call per command


def test_a_first_load_through_sis_imports_lands_exactly_and_its_canvas_ids_serve_later_commands(
    rig: Rig,
) -> None:
    rig.settings = rig.settings.model_copy(
        update={"lms_sink_bulk_min_backlog": 1, "lms_sink_bulk_max_wait_s": 1.0}
    )
    values = _commands(rig.targets)
    _publish(rig, values)
    sink = _run_to_end(rig)
    _compare(rig)
    imports = sink.health()[1]["sis_imports"]
    # every user and enrollment (classes follow their template through REST, and their sections
    # share their key, so wait for them in their lane)
    bulky = [
        v for v in values if importable(Command.from_value(v)) and v["targetType"] in ("user", "enrollment")
    ]
    assert len(bulky) > 0.7 * len(values)
    assert imports["imports"] >= 1 and imports["applied"] >= len(bulky), imports
    assert sink.provisioner.client.calls < len(values) / 2, "not one Canvas call a command"
    results = {(v["targetType"], v["targetSisId"]): v for _, v, _ in read_topic(_topics(rig), rig.results)}
    assert Counter(r["status"] for r in results.values())["dead_lettered"] == 0
    store = rig.lms.store
    for (kind, target), r in results.items():
        assert r["lmsId"], (kind, target)  # the SIS-to-LMS id map is whole
        if kind in ("user", "course", "section"):
            assert r["lmsId"] == str(getattr(store, kind)(f"sis_{kind}_id:{target}")["id"]), (kind, target)
    # unenrolling students an import enrolled ends their Canvas enrollments: the ids read back
    # from Canvas are the ones the sink deletes by
    leaving = sorted(
        k for k, t in rig.targets.items() if t.kind == "enrollment" and t.attrs["role"] == "student"
    )
    leaving = leaving[:25]
    _, emitted = diff({}, {k: rig.targets[k] for k in leaving})
    unenrolls, _ = diff(emitted, {})
    _publish(rig, [c.to_value("test", change_meta()) for c in unenrolls])
    again = _run_to_end(rig)
    assert again.counts["applied"] == len(leaving), again.counts
    _compare(rig, targets={k: t for k, t in rig.targets.items() if k not in leaving})


def test_a_restart_half_way_and_a_throttling_storm_lose_nothing_and_double_nothing(rig: Rig) -> None:
    rig.settings = rig.settings.model_copy(update={"lms_sink_bulk_min_backlog": 0})  # the REST path
    values = _commands(rig.targets)
    _publish(rig, values)
    rig.lms.state.throttle = Throttle(capacity=100, leak_per_s=100, cost=2, preflight=10)  # ~50 calls/s
    first = Running(rig.sink())
    wait_for(lambda: first.worker.counts["applied"] >= len(values) // 4, timeout=300, every=0.5)
    first.close()  # stops with commands in flight; their offsets were not committed
    assert not _caught_up(rig)
    second = _run_to_end(rig)
    _compare(rig)
    assert rig.lms.state.throttled > 0 and second.provisioner.client.throttled > 0
    # what the first sink applied but did not commit came again: found, not made twice
    assert second.counts["stale"] + second.counts["unchanged"] > 0


def test_a_sink_stopped_while_canvas_applies_an_sis_import_loses_nothing_and_doubles_nothing(
    rig: Rig,
) -> None:
    rig.settings = rig.settings.model_copy(
        update={"lms_sink_bulk_min_backlog": 1, "lms_sink_bulk_max_wait_s": 1.0}
    )
    _publish(rig, _commands(rig.targets))
    rig.lms.state.throttle = Throttle(capacity=0, import_rows_per_s=400)  # Canvas's importer takes its time
    imports = rig.lms.state.sis_imports
    first = Running(rig.sink())

    def half_way() -> bool:
        return any(i["workflow_state"] == "importing" and i["progress"] >= 20 for i in imports.listed())

    wait_for(half_way, timeout=120, every=0.2)
    first.close()  # Canvas goes on with the import; the sink has committed none of its rows
    assert not _caught_up(rig)
    rig.lms.state.throttle = Throttle(capacity=0)
    second = _run_to_end(rig)
    _compare(rig)  # the rows imported twice (upserts by SIS id) are there once
    assert second.health()[1]["sis_imports"]["applied"] > 0
    results = read_topic(_topics(rig), rig.results)
    assert all(v["lmsId"] for _, v, _ in results if v["status"] == "applied")


def test_a_command_canvas_refuses_is_dead_lettered_with_its_reason(rig: Rig) -> None:
    values = _commands(rig.targets)
    users = [v for v in values if v["action"] == "create_user"]
    a, b = users[0], users[1]
    clash = {**a, "attributes": {**a["attributes"], "login_id": b["attributes"]["login_id"]}}
    values = [clash if v is a else v for v in values]
    _publish(rig, values)
    rig.settings = rig.settings.model_copy(update={"lms_sink_dependency_wait_s": 10.0})
    sink = _run_to_end(rig)
    # Canvas refuses whichever of the two came second (the login is taken); the other lands
    results = {
        v["targetSisId"]: v for _, v, _ in read_topic(_topics(rig), rig.results) if v["targetType"] == "user"
    }
    [refused] = [u for u in (clash, b) if results[u["targetSisId"]]["status"] == "dead_lettered"]
    refused = a if refused is clash else b
    assert results[refused["targetSisId"]]["httpStatus"] == 400
    assert "already in use" in results[refused["targetSisId"]]["error"]
    letters = [letter for _, letter, _ in read_topic(_topics(rig), rig.dead_letters)]
    rejected = [x for x in letters if x["reason"] == "lms_rejected"]
    assert len(rejected) == 1 and "already in use" in rejected[0]["errorMessage"]
    original = rig.kernel.serdes[rig.commands].decode(rejected[0]["value"])
    assert original is not None and original["targetSisId"] == refused["targetSisId"]  # the original bytes
    # what needed the refused user waited, then went to the dead letters too, saying why
    waited = [x for x in letters if x["reason"] == "dependency_missing"]
    assert waited and all(f"user {refused['targetSisId']}" in x["errorMessage"] for x in waited)
    assert sink.counts["dead_lettered"] == len(letters)
    winner = b if refused is a else a
    if winner is a:  # the clash won: the LMS holds its user with the login it took
        key = f"user|{a['targetSisId']}"
        rig.targets = {
            **rig.targets,
            key: Target("user", {**rig.targets[key].attrs, "login_id": clash["attributes"]["login_id"]}),
        }
    _compare(rig, leave_out=frozenset({refused["targetSisId"]}))


def _topics(rig: Rig) -> Any:
    """Adapter for sis_support.read_topic (it reads through a kernel with our private catalog)."""

    @dataclass
    class T:
        kernel: Kernel

    return T(rig.kernel)


def test_the_sink_waits_a_while_for_a_late_dependency(rig: Rig) -> None:
    values = _commands(rig.targets)
    enrollments = [v for v in values if v["action"] == "enroll"]
    users = [v for v in values if v["action"] == "create_user"]
    early = [v for v in values if v not in users]
    _publish(rig, early)
    running = Running(rig.sink())
    try:
        wait_for(lambda: running.worker.health()[1]["waiting"] > 0, timeout=120, every=0.5)
        time.sleep(1.0)
        _publish(rig, users)  # the users arrive late: their enrollments were waiting
        wait_for(lambda: _caught_up(rig), timeout=240, every=1.0)
    finally:
        running.close()
    assert enrollments
    _compare(rig)


def test_a_first_load_whose_enrollments_fill_the_intake_before_their_users_completes(rig: Rig) -> None:
    """Enrollments first, users after, and an intake window smaller than the enrollments: the
    window fills with commands waiting for users still behind it on the broker. The sink must go
    on taking commands (waiting ones do not count against the window) instead of pausing until
    the waits expire and the enrollments are dead-lettered."""
    rest = _users_last(rig)
    window = 200
    # more enrollments than the window, fewer commands ahead of the users than the hard cap
    assert len([v for v in rest if v["action"] == "enroll"]) > window and len(rest) < 20 * window
    _load_with_window(rig, window)


def test_a_first_load_with_more_commands_ahead_of_the_users_than_the_hard_cap_completes(rig: Rig) -> None:
    """As above, with more commands ahead of the users than the intake's hard cap (twenty
    windows): once every command taken waits for a user still on the broker, the sink must read
    on past the cap rather than pause until the waits expire (a throttled 25,000-user first load
    stalled there with 57,000 enrollments waiting)."""
    window = 10
    assert len(_users_last(rig)) > 20 * window
    rig.settings = rig.settings.model_copy(update={"lms_sink_dependency_wait_s": 5.0})
    _load_with_window(rig, window)


def _users_last(rig: Rig) -> list[dict[str, Any]]:
    """Publishes the district's commands with every user's last; returns the ones ahead of them."""
    values = _commands(rig.targets)
    users = [v for v in values if v["action"] == "create_user"]
    rest = [v for v in values if v not in users]
    _publish(rig, rest + users)
    return rest


def _load_with_window(rig: Rig, window: int) -> None:
    """A sink with an intake window of ``window`` loads what is published: nothing dead-lettered,
    the LMS equal to the plan."""
    sink = rig.sink()
    sink.max_in_flight = window
    running = Running(sink)
    try:
        wait_for(lambda: _caught_up(rig), timeout=300, every=1.0)
    finally:
        running.close()
    assert sink.counts["dead_lettered"] == 0, sink.counts
    _compare(rig)


def test_dead_letters_re_submitted_after_the_fix_land_once_and_one_failing_again_goes_back(
    rig: Rig, uid: str
) -> None:
    """``sislms dlq replay`` with the Canvas sink: Canvas refuses one request (a 400), the command
    and what needed it are dead-lettered. Re-submitted while Canvas still refuses, they come back
    to the dead letters with one more attempt and the replay ends (no loop); re-submitted after
    the fix, the LMS holds exactly the plan, nothing twice; a third replay has nothing to do."""
    conf = client_config(rig.kernel.settings, rig.kernel.endpoints.kafka_bootstrap)
    serdes = rig.kernel.serdes
    ledger = f"ops.dlq_replays_{uid}.v1"

    def letters() -> list[Letter]:
        return list(read_letters(conf, serdes, [rig.dead_letters]))

    def replay(found: list[Letter]) -> ReplayPlan:
        plan = plan_letters(rig.kernel.admin, conf, found, read_ledger(conf, serdes, ledger))
        done = replay_letters(rig.kernel.producer(), serdes, plan, ledger=ledger, batch=7)
        assert done["resubmitted"] == len(plan.resubmit) and not plan.superseded and not plan.outside
        return plan

    _publish(rig, _commands(rig.targets))
    # the REST path (an SIS import would make the user; its read-back would meet the fault)
    rig.settings = rig.settings.model_copy(
        update={"lms_sink_dependency_wait_s": 5.0, "lms_sink_bulk_min_backlog": 0}
    )
    # Canvas refuses one user: the first POST of a new user (enrollment lookups GET /users/...)
    refuse_a_user = Fault(status=400, times=1, path=f"/accounts/{rig.settings.lms_root_account}/users")
    rig.lms.state.faults.append(refuse_a_user)
    _run_to_end(rig)
    first = letters()
    assert [x.reason for x in first].count("lms_rejected") == 1, [x.reason for x in first]
    assert "dependency_missing" in {x.reason for x in first}  # the user's enrollments waited, then went
    assert {x.reason for x in first} == {"lms_rejected", "dependency_missing"}
    assert all(x.record["attempt"] == 1 for x in first)

    # Canvas still refuses (the fault again): everything re-submitted fails again, once
    rig.lms.state.faults.append(dataclasses.replace(refuse_a_user, times=1))
    plan = replay(first)
    assert {x.coordinate for x in plan.resubmit} == {x.coordinate for x in first}
    _run_to_end(rig)
    second = letters()
    again = second[len(first) :]
    assert [x.coordinate for x in second[: len(first)]] == [x.coordinate for x in first]
    assert again and [x.reason for x in again].count("lms_rejected") == 1
    assert all(x.record["attempt"] == 2 for x in again)  # each one more attempt, from a re-submission
    assert len(again) <= len(first)  # no letter came back twice: no loop

    # fixed: the pending letters (the new ones) re-submitted; the settled ones are not
    plan = plan_letters(rig.kernel.admin, conf, second, read_ledger(conf, serdes, ledger))
    assert {x.coordinate for x in plan.settled} == {x.coordinate for x in first}
    assert {x.coordinate for x in plan.resubmit} == {x.coordinate for x in again}
    replay(second)
    _run_to_end(rig)
    assert len(letters()) == len(second)  # nothing failed this time
    _compare(rig)  # the LMS holds exactly the plan: the refused ones landed, nothing twice
    results = {
        (v["targetType"], v["targetSisId"]): v["status"] for _, v, _ in read_topic(_topics(rig), rig.results)
    }
    assert "dead_lettered" not in results.values()

    # a third replay has nothing to do
    plan = plan_letters(rig.kernel.admin, conf, letters(), read_ledger(conf, serdes, ledger))
    assert not plan.resubmit and len(plan.settled) == len(second)
