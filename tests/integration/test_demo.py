"""``mw demo`` end to end: real processes, a master and a busy worker killed, every task exactly once."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import jvm_pids_under, run_mw


def test_demo_recovers_from_both_kills_and_every_task_finishes_exactly_once(tmp_path: Path) -> None:
    result = run_mw("demo", "--tasks", "16", "--session-timeout", "2", "--log-dir", str(tmp_path), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "kill -9 master-" in out and "took over" in out
    assert "kill -9 worker-" in out
    assert "every task finished exactly once" in out
    assert "│ completion records in ZooKeeper                     │    16 │" in out
    assert jvm_pids_under(tmp_path) == []
