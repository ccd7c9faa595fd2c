"""The pipeline's progress figures."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from sislms.pipeline import windowed_rate
from sislms.run import _remove_state


def test_a_flow_committing_in_steps_shows_a_steady_rate_not_zeros() -> None:
    reads: deque[tuple[float, int]] = deque()
    # 100 records a second, committed every 2 s, read every second
    rates = [windowed_rate(reads, float(t), 100 * (t - t % 2), 10.0) for t in range(0, 30)]
    assert all(r > 0 for r in rates[2:])
    assert 80 <= rates[-1] <= 120
    assert windowed_rate(deque(), 5.0, 0, 10.0) == 0.0


def test_a_fresh_run_removes_the_state_but_a_demos(tmp_path: Path) -> None:
    for name in ("kafka", "simulators", "demo"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data").write_text("x")
    (tmp_path / "run.json").write_text("{}")
    assert _remove_state(tmp_path) == ["kafka", "run.json", "simulators"]
    assert [p.name for p in tmp_path.iterdir()] == ["demo"] and (tmp_path / "demo" / "data").exists()
    assert _remove_state(tmp_path / "missing") == []
