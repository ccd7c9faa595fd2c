"""The pipeline's progress figures."""

from __future__ import annotations

from collections import deque

from sislms.pipeline import windowed_rate


def test_a_flow_committing_in_steps_shows_a_steady_rate_not_zeros() -> None:
    reads: deque[tuple[float, int]] = deque()
    # 100 records a second, committed every 2 s, read every second
    rates = [windowed_rate(reads, float(t), 100 * (t - t % 2), 10.0) for t in range(0, 30)]
    assert all(r > 0 for r in rates[2:])
    assert 80 <= rates[-1] <= 120
    assert windowed_rate(deque(), 5.0, 0, 10.0) == 0.0
