"""The bench's cost arithmetic (lab/bench/costs.py): per-task figures from two snapshots, and spreads."""

from __future__ import annotations

import os

from masterworker.lab.bench.costs import Snapshot, conditions, cpu_model, cpu_seconds, round_costs, spread, summarize


def test_costs_per_task_from_two_snapshots() -> None:
    before = Snapshot(at=10.0, requests=1000, cpu={"master-1": 1.0, "zookeeper": 5.0, "worker-1": 0.5})
    after = Snapshot(at=12.0, requests=5000, cpu={"master-1": 1.5, "zookeeper": 6.0, "worker-1": 0.75})
    costs = round_costs(before, after, tasks=1000)
    assert costs["tasks_per_s"] == 500.0
    assert costs["requests_per_task"] == 4.0
    assert costs["cpu_ms_per_task_by_process"] == {"master-1": 0.5, "worker-1": 0.25, "zookeeper": 1.0}
    assert costs["cpu_ms_per_task"] == 1.75


def test_unknown_request_counts_and_processes_that_appeared_midway() -> None:
    before = Snapshot(at=0.0, requests=None, cpu={"a": 1.0})
    after = Snapshot(at=1.0, requests=10, cpu={"a": 2.0, "b": 9.0})
    costs = round_costs(before, after, tasks=100)
    assert costs["requests_per_task"] is None
    assert costs["cpu_ms_per_task_by_process"] == {"a": 10.0}  # b has no "before": not counted


def test_spread_and_summary_take_medians_over_rounds() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert spread([None, None]) is None
    rounds = [
        {"tasks_per_s": t, "requests_per_task": 2.0, "cpu_ms_per_task": c, "cpu_ms_per_task_by_process": {"x": c}}
        for t, c in ((100.0, 1.0), (300.0, 3.0), (200.0, 2.0))
    ]
    summary = summarize(rounds)
    assert summary["tasks_per_s"] == 200.0 and summary["cpu_ms_per_task"] == 2.0
    assert summary["spread"]["tasks_per_s"] == {"min": 100.0, "median": 200.0, "max": 300.0}
    assert summary["cpu_ms_per_task_by_process"] == {"x": 2.0}


def test_cpu_of_this_process_and_the_conditions() -> None:
    assert cpu_seconds(os.getpid()) > 0
    assert cpu_seconds(2**22 + 12345) == 0.0  # no such process
    c = conditions("3.8.0", warmup=0)
    assert c["cores"] == os.cpu_count() and c["warm"] is False and c["zookeeper"] == "3.8.0"
    assert c["cpu"]  # Linux names its processor; "?" elsewhere


def test_cpu_model_names_the_processor_and_its_clock(tmp_path) -> None:  # noqa: ANN001
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.140\n\nprocessor\t: 1\n")
    assert cpu_model(str(info)) == "AMD EPYC at 2.6 GHz"
    info.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert cpu_model(str(info)) == "Some ARM core"
    assert cpu_model(str(tmp_path / "missing")) == "?"
