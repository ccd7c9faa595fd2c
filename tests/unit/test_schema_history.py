"""The local half of schema evolution: every contract reads every committed version of itself."""

from __future__ import annotations

import json
from pathlib import Path

from streams.schemas import SchemaSet, check_history


def test_committed_contracts_evolved_backward_compatibly(settings) -> None:
    problems = check_history(settings.schemas_dir)
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())


def test_a_breaking_change_would_be_caught(settings) -> None:
    files = {
        str(p.relative_to(settings.schemas_dir)): p.read_text()
        for p in Path(settings.schemas_dir).rglob("*.avsc")
    }
    old = SchemaSet(files)
    orgs = json.loads(files["sis/orgs.v1.avsc"])
    orgs["fields"].append({"name": "required_without_default", "type": "string"})
    broken = SchemaSet({**files, "sis/orgs.v1.avsc": json.dumps(orgs)})
    problems = check_history(settings.schemas_dir, broken, versions=lambda _d: [("0" * 40, old)])
    assert list(problems) == ["sis.orgs.v1 @ 0000000000"]
    assert "required_without_default" in " ".join(problems["sis.orgs.v1 @ 0000000000"])
