"""The pipeline's progress figures."""

from __future__ import annotations

from collections import deque
from datetime import date
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


def test_more_roster_workers_get_their_own_names_tables_and_ports_clear_of_every_other_port() -> None:
    from sislms.demo import demo_settings
    from sislms.pipeline import programs
    from streams.settings import Settings

    base = Settings(roster_workers=6)
    demo, _ = demo_settings(base, date(2026, 12, 7))
    everyone = {getattr(s, n) for s in (base, demo) for n in Settings.model_fields if n.endswith("_port")}
    seen: set[int] = set()
    for settings in (base, demo):
        progs = programs(settings, users=100)
        workers = [p for p in progs if p.name.startswith("roster-worker")]
        assert len(workers) == 6
        assert len({p.name for p in progs}) == len(progs)
        names = [p.argv[p.argv.index("--name") + 1] for p in workers]
        assert names == [f"worker-{k}" for k in range(1, 7)]  # each its own table folder
        ports = [int(p.argv[p.argv.index("--port") + 1]) for p in workers]
        assert ports[0] == settings.roster_web_port
        assert all(
            p.ready_url == f"http://127.0.0.1:{port}/healthz" for p, port in zip(workers, ports, strict=True)
        )
        extra = set(ports[1:])
        assert len(extra) == 5 and not extra & everyone and not extra & seen  # no clash, not with the demo's
        seen |= extra
    assert [p.name for p in programs(Settings(), users=100) if "roster" in p.name] == ["roster-worker"]
