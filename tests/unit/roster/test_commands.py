"""The diff from emitted to desired targets: actions, sequences, ids (pure functions)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sislms.cli import app
from streams.roles import DEFAULT_RULES
from streams.roster.commands import diff
from streams.roster.desired import Target


def enrollment(role: str) -> dict[str, Target]:
    return {"enrollment|E1": Target("enrollment", {"role": role, "user_id": "U1", "status": "active"})}


def user(status: str, email: str = "a@x") -> dict[str, Target]:
    return {"user|U1": Target("user", {"login_id": "u1", "email": email, "status": status})}


def course(status: str = "active", name: str = "Math") -> dict[str, Target]:
    return {"course|C1": Target("course", {"long_name": name, "status": status})}


def run(*steps: dict[str, Target]) -> list[list[tuple[str, int]]]:
    emitted: dict = {}
    out = []
    for want in steps:
        commands, emitted = diff(emitted, want)
        out.append([(c.action, c.sequence) for c in commands])
    return out


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # enrollments: new, same, role change, gone, gone again, back
        (
            [enrollment("student"), enrollment("student"), enrollment("ta"), {}, {}, enrollment("ta")],
            [[("enroll", 1)], [], [("change_role", 2)], [("unenroll", 3)], [], [("enroll", 4)]],
        ),
        # users: never created deleted; suspended and back; record gone
        ([user("deleted"), user("active")], [[], [("create_user", 1)]]),
        (
            [user("active"), user("suspended"), user("active"), user("active", "b@x"), {}, {}],
            [
                [("create_user", 1)],
                [("deactivate_user", 2)],
                [("update_user", 3)],
                [("update_user", 4)],
                [("deactivate_user", 5)],
                [],
            ],
        ),
        # courses are soft-deleted: an upsert with status deleted, once
        (
            [course(), course(name="Algebra"), {}, {}, course("deleted")],
            [[("upsert_course", 1)], [("upsert_course", 2)], [("upsert_course", 3)], [], []],
        ),
        ([course("deleted")], [[]]),
    ],
    ids=[
        "enrollment-lifecycle",
        "user-created-when-active",
        "user-lifecycle",
        "course-lifecycle",
        "never-live",
    ],
)
def test_diff_emits_only_what_changed(steps: list[dict[str, Target]], expected: list) -> None:
    assert run(*steps) == expected


def test_the_same_change_gives_the_same_command_id_and_a_return_a_new_one() -> None:
    first, state = diff({}, enrollment("student"))
    again, _ = diff({}, enrollment("student"))
    assert first[0].command_id == again[0].command_id  # recomputed after a crash: deduplicable
    gone, state = diff(state, {})
    back, _ = diff(state, enrollment("student"))
    assert back[0].command_id != first[0].command_id  # a re-enrollment is a new command
    assert back[0].sequence > gone[0].sequence > first[0].sequence


def test_removal_commands_carry_the_last_attributes_with_status_deleted() -> None:
    _, state = diff({}, enrollment("teacher"))
    (command,), _ = diff(state, {})
    assert command.action == "unenroll"
    assert command.attributes == {"role": "teacher", "user_id": "U1", "status": "deleted"}
    assert command.target_sis_id == "E1" and command.target_type == "enrollment"


def test_roles_check_accepts_the_shipped_rules_and_names_lines_of_a_bad_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    ok = runner.invoke(app, ["roles", "check", str(DEFAULT_RULES)])
    assert ok.exit_code == 0 and "ok, version" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: a\n    applies_to: enrollment\n    when: {role: teachr}\n"
                   "    then: {course_role: teacher}\n")  # fmt: skip
    result = runner.invoke(app, ["roles", "check", str(bad)])
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception) and f"{bad}:5: rules[a].when.role" in str(result.exception)
