"""mw chaos --report from a hand-built history: the picture, the page and the history are written."""

from __future__ import annotations

import json
from pathlib import Path

from masterworker.lab.chaos.checker import check
from masterworker.lab.chaos.picture import write_report


def history() -> list[dict]:
    events = [{"t": 100.0, "type": "elected", "master": "master-1", "epoch": 1}]
    for n in range(40):
        t = 100.1 + n * 0.25
        events += [
            {"t": t, "type": "submit-invoke", "op": n},
            {"t": t + 0.01, "type": "submit-ok", "op": n, "task": f"task-{n}"},
            {"t": t + 0.05, "type": "exec-start", "task": f"task-{n}", "worker": "worker-1"},
        ]
        done = t + 0.3 if not 12 <= n < 22 else 104.6 + n * 0.02  # stalled while no master reigned
        events.append({"t": done, "type": "complete", "task": f"task-{n}", "worker": "worker-1"})
    events += [
        {"t": 103.0, "type": "fault", "fault": "partition-master", "target": "master-1"},
        {"t": 103.2, "type": "exec-start", "task": "task-12", "worker": "worker-2"},  # a re-execution
        {"t": 105.3, "type": "elected", "master": "master-2", "epoch": 2},
        {"t": 105.3, "type": "recovered", "fault": "partition-master", "seconds": 2.3},
        {"t": 106.0, "type": "deposed", "master": "master-1"},
        {"t": 107.0, "type": "fault", "fault": "zk-quorum-loss", "target": "ZooKeeper servers 1 and 2"},
        {"t": 108.0, "type": "healed", "fault": "zk-quorum-loss"},
        {"t": 109.0, "type": "recovered", "fault": "zk-quorum-loss", "seconds": 1.0},
    ]
    return sorted(events, key=lambda e: e["t"])


def test_the_report_writes_a_picture_a_page_and_the_history(tmp_path: Path) -> None:
    events = history()
    report = check(events, {f"task-{n}" for n in range(40)}, drain_seconds=0.3, budget=4.0)
    assert report.ok, report.violations
    png = write_report(tmp_path / "report", events, report)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 10_000
    page = (tmp_path / "report" / "index.html").read_text()
    assert "data:image/png;base64," in page and "partition-master" in page and "zk-quorum-loss" in page
    lines = (tmp_path / "report" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == events
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["liveness"]["per_fault"]["partition-master"]["without_master_s"] == 2.3


def test_a_violation_shows_in_the_page(tmp_path: Path) -> None:
    events = history()
    report = check(events, {f"task-{n}" for n in range(40)}, budget=1.0)
    write_report(tmp_path, events, report)
    page = (tmp_path / "index.html").read_text()
    assert "violations found" in page and "over budget" in page
    assert "liveness: partition-master on master-1 left the system without an active master for 2.3 s" in page
