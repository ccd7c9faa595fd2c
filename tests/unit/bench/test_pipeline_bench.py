"""The pipeline bench's memory guard and the table's rows for runs that did not happen."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

import bench.pipeline as pipeline
from bench.__main__ import table


def test_a_size_too_big_for_the_machine_is_reported_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []

    def fake_demo(settings: Any, options: Any, emit: Any) -> int:
        started.append(options.users)
        emit({"users": options.users, "duration_s": options.duration_s, "ok": True, "flows": {}})
        return 0

    monkeypatch.setattr(pipeline, "run_demo", fake_demo)
    available = pipeline.memory_needed_mb(25_000) + 1024  # room for 25,000 users, not for 250,000
    monkeypatch.setattr(
        pipeline.psutil, "virtual_memory", lambda: SimpleNamespace(available=available * 2**20)
    )
    kernel = SimpleNamespace(settings=None)

    rows = pipeline.run_pipeline(kernel, [25_000, 250_000], duration_s=1.0, modes=("polling",))
    assert started == [25_000]
    skipped = [m for m in rows if "250,000" in m.name]
    assert len(skipped) == 1 and not skipped[0].runs
    assert "not run" in skipped[0].note and "GB" in skipped[0].note
    md = table(rows)  # a row without runs renders (n/a) and serializes without NaN
    assert "n/a" in md and "250,000" in md
    assert json.loads(json.dumps([m.as_dict() for m in rows], allow_nan=False))

    started.clear()
    pipeline.run_pipeline(kernel, [250_000], duration_s=1.0, modes=("polling",), ignore_memory=True)
    assert started == [250_000]
