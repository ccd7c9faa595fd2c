"""Re-applying role rules: the plan (who is asked, which commands the workers will emit) against
an independent computation, the rule set read back from its text, the workers' client ids, and
the people agent's handling of a request (as a plain function, with fake Faust events)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from connectors.oneroster.models import ENTITIES, to_record
from simulators.district.generate import generate
from simulators.district.spec import DistrictSpec
from streams.catalog import load_catalog
from streams.errors import RuleFileError
from streams.roles import DEFAULT_RULES, RuleSet
from streams.roles.facts import OrgFacts, UserFacts
from streams.roster.app import Roster, client_id, rules_of_client
from streams.roster.plan import plan_district, planned_state
from streams.roster.reapply import Member, ReapplyPlan, RosterState, plan_reapply, previous_rule_set

AS_OF = date(2026, 11, 28)
RULES_A = RuleSet.load(DEFAULT_RULES)


def rules_b(tmp_path: Path) -> RuleSet:
    """Counselors lose their account role; teachers who are not primary become TAs."""
    text = DEFAULT_RULES.read_text().replace('version: "2026.11-1"', 'version: "b"')
    text = text.replace(
        'then: {account_role: {role: "Counselor (read-only)", account: org}}', "then: {skip: none}"
    )
    text = text.replace(
        "  - id: aides\n",
        "  - id: co-teachers\n    applies_to: enrollment\n    priority: 60\n"
        "    when: {role: teacher, primary: false}\n    then: {course_role: ta}\n\n  - id: aides\n",
    )
    path = tmp_path / "b.yaml"
    path.write_text(text)
    return RuleSet.load(path)


@pytest.fixture(scope="module")
def district(settings: Any) -> dict[str, dict[str, Any]]:
    """A generated district's rostering records, shaped as the sis.* topics hold them."""
    catalog = load_catalog(settings.topology_file, settings.schemas_dir)
    d = generate(DistrictSpec(users=400, seed=41))
    now = datetime.now(UTC)
    meta = {"source": "t", "sourceChangedAt": now, "ingestedAt": now, "traceId": "t", "sourceVersion": None}
    out = {}
    for ent in ENTITIES:
        if ent.name in ("orgs", "academicSessions", "courses", "classes", "users", "enrollments"):
            schema = catalog.contract(ent.topic).schema
            out[ent.name] = {
                k: to_record(ent.name, v, schema, meta=meta) for k, v in d.collections[ent.name].items()
            }
    return out


def _plan(members: list[Member] | None = None) -> ReapplyPlan:
    return ReapplyPlan("r1", "sislms-roster", "b", "a", "test", AS_OF, members or [])


def _state(g: dict[str, dict[str, Any]]) -> RosterState:
    return RosterState(g["orgs"], g["courses"], g["classes"], g["users"], g["enrollments"])


def _planned(g: dict[str, dict[str, Any]], rules: RuleSet) -> dict:
    return planned_state(
        plan_district(
            orgs=g["orgs"], sessions=g["academicSessions"], courses=g["courses"], classes=g["classes"],
            users=g["users"], enrollments=g["enrollments"], rules=rules, today=AS_OF,
        )
    )  # fmt: skip


def test_the_plan_counts_one_command_per_target_the_rule_change_changes(district, tmp_path) -> None:
    b = rules_b(tmp_path)
    want_a, want_b = _planned(district, RULES_A), _planned(district, b)
    changed = {t for t in want_a.keys() | want_b.keys() if want_a.get(t) != want_b.get(t)}
    plan = plan_reapply(_plan(), _state(district), b, RULES_A)
    assert changed and sum(plan.commands.values()) == len(changed)
    kinds = Counter(kind for kind, _ in changed)
    assert plan.commands["revoke_admin"] == kinds["account_admin"] > 0
    assert plan.commands["change_role"] == kinds["enrollment"] > 0
    assert plan.changes[("enrollment", "teacher", "ta")] == kinds["enrollment"]
    # exactly the people who own a changed target are asked (enrollments: their user)
    owners = {tid.split("@")[0] for kind, tid in changed if kind == "account_admin"}
    owners |= {
        district["enrollments"][tid]["user"]["sourcedId"] for kind, tid in changed if kind == "enrollment"
    }
    assert set(plan.ask) == owners
    assert plan.people == len(
        set(district["users"]) | {e["user"]["sourcedId"] for e in district["enrollments"].values()}
    )


def test_the_same_rules_change_nothing_and_all_asks_everyone(district) -> None:
    same = plan_reapply(_plan(), _state(district), RULES_A, RULES_A)
    assert (same.ask, sum(same.commands.values()), same.decisions) == ([], 0, 0)
    everyone = plan_reapply(_plan(), _state(district), RULES_A, RULES_A, everyone=True)
    assert len(everyone.ask) == everyone.people > 0 and sum(everyone.commands.values()) == 0


def test_without_the_previous_rules_the_plan_asks_everyone_only_when_told() -> None:
    unknown = ReapplyPlan("r1", "g", "b", None, "none", AS_OF, [Member("sislms-roster.rules-b", "h", "b")])
    assert "--all" in (unknown.refusal() or "")
    unknown.everyone = True
    assert unknown.refusal() is None
    assert "not known" in "\n".join(unknown.lines())


def test_refused_without_workers_or_with_workers_on_other_rules() -> None:
    assert "no roster worker" in (_plan([]).refusal() or "")
    mixed = _plan([Member("x.rules-a", "h1", "a"), Member("x.rules-b", "h2", "b")])
    assert "1 of 2 workers" in (mixed.refusal() or "")
    assert _plan([Member("x.rules-b", "h", "b")]).refusal() is None


def test_a_workers_client_id_names_its_rule_set() -> None:
    version = RULES_A.version
    assert rules_of_client(client_id("sislms-roster", version)) == version
    assert rules_of_client("faust-0.15.3") is None


def test_the_previous_rule_set_is_the_one_running_else_the_last_started_before() -> None:
    ran = [
        {"version": "a", "startedAt": 1, "text": "A"},
        {"version": "c", "startedAt": 2, "text": "C"},
        {"version": "b", "startedAt": 3, "text": "B"},
    ]
    on_a = [Member("x.rules-a", "h", "a")]
    assert previous_rule_set(ran, on_a, "b")[0] == ran[0]
    assert previous_rule_set(ran, [Member("x.rules-b", "h", "b")], "b")[0] == ran[1]
    assert previous_rule_set(ran, [], "b")[0] == ran[1]
    assert previous_rule_set(ran[2:], [], "b")[0] is None
    assert previous_rule_set(ran, [Member("x.rules-zz", "h", "zz")], "b") == (
        None,
        "run by the workers now; not on roster.rule_sets.v1",
    )


def test_a_rule_set_read_back_from_its_text_has_its_version_and_names_its_origin() -> None:
    again = RuleSet.from_text(RULES_A.text, "roster.rule_sets.v1 x|y")
    assert again.version == RULES_A.version and again.source == "roster.rule_sets.v1 x|y"
    with pytest.raises(RuleFileError, match=r"^roster.rule_sets.v1 x\|y:\d+: "):
        RuleSet.from_text(
            RULES_A.text.replace("applies_to: enrollment", "applies_to: nope", 1), "roster.rule_sets.v1 x|y"
        )


# --- the people agent ------------------------------------------------------------------------------


@dataclass
class _Letters:
    sent: list[tuple[str, Any, bytes | None]] = field(default_factory=list)

    def send(self, stage: str, error: Any, *, key: bytes | None, value: bytes | None, source: Any) -> None:
        self.sent.append((stage, error, value))

    def flush(self) -> None:
        pass


def _event(topic: str, key: str, value: Any, offset: int = 0) -> Any:
    message = SimpleNamespace(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=1.0,
        headers=[],
        key=key.encode(),
        value=b"raw",
        tp=None,
    )
    return SimpleNamespace(key=key, value=value, message=message)


def _roster(make_roster: Any, rules: RuleSet, letters: _Letters) -> Roster:
    return cast(
        Roster,
        make_roster(
            dead_letters=letters, rules=rules, reference=SimpleNamespace(orgs={}, courses={}), as_of=AS_OF
        ),
    )


def _counselor(district: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return next((k, u) for k, u in district["users"].items() if u["roles"][0]["role"] == "counselor")


def test_a_request_decides_the_person_again_under_the_workers_rules(make_roster, tmp_path, district) -> None:
    b = rules_b(tmp_path)
    who, user = _counselor(district)
    old = _roster(make_roster, RULES_A, _Letters())
    old.reference.orgs.update({k: OrgFacts.from_record(v) for k, v in district["orgs"].items()})
    out: list[Any] = []
    state = old._person([_event(old.topics.users, who, user)], None, out)
    assert any(t == old.topics.provisioning and v["action"] == "grant_admin" for t, _, v in out)
    assert UserFacts.from_dict(state["u"]).sourced_id == who

    letters = _Letters()
    new = _roster(make_roster, b, letters)
    new.reference.orgs.update(old.reference.orgs)
    ask = {"person": who, "reapplyId": "r1", "ruleSetVersion": b.version, "requestedAt": 0, "meta": None}
    out = []
    after = new._person([_event(new.topics.reapply, who, ask)], state, out)
    actions = [v["action"] for t, _, v in out if t == new.topics.provisioning]
    assert actions == ["revoke_admin"]
    assert all(
        v["reason"] == f"{new.topics.reapply} {who}" for t, _, v in out if t == new.topics.provisioning
    )
    assert {v["ruleSetVersion"] for t, _, v in out if t == new.topics.decisions} == {b.version}
    # asked again: nothing more
    out = []
    assert new._person([_event(new.topics.reapply, who, ask)], after, out) == after and out == []
    assert letters.sent == []


def test_a_request_planned_with_other_rules_is_dead_lettered_and_decides_nothing(make_roster) -> None:
    letters = _Letters()
    roster = _roster(make_roster, RULES_A, letters)
    state = {"u": None, "en": {}, "cl": {}, "e": {}, "d": {}}
    ask = {"person": "u1", "reapplyId": "r1", "ruleSetVersion": "other+123", "requestedAt": 0, "meta": None}
    out: list[Any] = []
    assert roster._person([_event(roster.topics.reapply, "u1", ask)], state, out) is state
    assert out == []
    [(stage, error, value)] = letters.sent
    assert (stage, error.reason, value) == ("roster", "rules_version_mismatch", b"raw")
    assert "other+123" in str(error) and RULES_A.version in str(error)


def test_a_request_for_nobody_the_agent_knows_makes_no_state(make_roster) -> None:
    roster = _roster(make_roster, RULES_A, _Letters())
    ask = {
        "person": "ghost",
        "reapplyId": "r1",
        "ruleSetVersion": RULES_A.version,
        "requestedAt": 0,
        "meta": None,
    }
    out: list[Any] = []
    assert roster._person([_event(roster.topics.reapply, "ghost", ask)], None, out) is None
    assert out == []
