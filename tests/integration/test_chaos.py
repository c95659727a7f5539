"""mw chaos against real processes and a real 3-server ensemble; the teaching switch caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masterworker.lab.chaos.nemesis import FAULTS
from tests.helpers import jvm_pids_under, run_mw


def chaos(tmp_path: Path, *args: str) -> tuple[int, dict]:
    result = run_mw("chaos", "--json", "--run-dir", str(tmp_path / "run"), *args, timeout=400)
    return result.returncode, json.loads(result.stdout) if result.stdout.strip().startswith("{") else {
        "stderr": result.stderr[-3000:]
    }


def mw_processes_of(run_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"MW_RUN_DIR={run_dir}".encode() in environ:
                pids.append(int(entry.name))
    return pids


@pytest.mark.ensemble
@pytest.mark.timeout(400)
def test_a_short_chaos_run_with_every_fault_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    code, report = chaos(tmp_path, "--duration", "30", "--seed", "1")
    assert "liveness" in report, report
    over = {w["fault"] for w in report["liveness"]["windows"] if w["within_budget"] is False}
    assert over == set(), report["violations"]  # oneway-master too: its master closes its session (issue 13)
    assert code == 0 and report["violations"] == []
    assert report["lost"] == 0 and report["duplicates"] == 0
    assert report["acknowledged"] > 100
    assert report["completion_records"] >= report["acknowledged"]
    assert set(report["faults"]) == set(FAULTS)
    # every fault recovered within its bound, oneway-master too: a master ZooKeeper no longer answers
    # closes its session (leadership.py), which its reconnection attempts would otherwise keep alive
    assert set(report["recovery_seconds"]) == set(FAULTS)
    assert report["drain_seconds"] is not None
    assert jvm_pids_under(tmp_path / "run") == [] and mw_processes_of(tmp_path / "run") == []
    history = (tmp_path / "run" / "history").glob("*.jsonl")
    kinds = {json.loads(line)["type"] for path in history for line in path.read_text().splitlines()}
    assert {"submit-invoke", "submit-ok", "exec-start", "exec-end", "complete", "fault", "elected"} <= kinds


@pytest.mark.ensemble
@pytest.mark.timeout(300)
def test_a_master_and_a_worker_cut_off_the_network_lose_nothing_and_complete_nothing_twice(tmp_path: Path) -> None:
    """Chapter 5's zombies made by the network: each role reaches ZooKeeper through proxies of its own."""
    faults = ("partition-master", "partition-worker")
    code, report = chaos(tmp_path, "--duration", "5", "--seed", "3", "--faults", ",".join(faults))
    assert code == 0, report
    assert report["ok"] and report["lost"] == 0 and report["duplicates"] == 0 and report["phantoms"] == 0
    assert report["acknowledged"] > 0 and report["completion_records"] >= report["acknowledged"]
    assert set(report["faults"]) == set(faults)
    for fault, fired in report["faults"].items():
        assert report["recovery_seconds"][fault]["count"] == fired, report["recovery_seconds"]
    history = [json.loads(line) for path in (tmp_path / "run" / "history").glob("*.jsonl") for line in path.open()]
    healed = {e["fault"] for e in history if e["type"] == "healed"}
    assert healed == set(faults)  # each cut recorded its end, for the time without a master per fault
    assert jvm_pids_under(tmp_path / "run") == [] and mw_processes_of(tmp_path / "run") == []


@pytest.mark.ensemble
@pytest.mark.timeout(300)
def test_the_teaching_switch_breaks_completion_and_the_checker_catches_it(tmp_path: Path) -> None:
    code, report = chaos(tmp_path, "--duration", "10", "--faults", "pause-worker", "--break", "completion")
    assert code == 1, report
    assert report["duplicates"] >= 1 and not report["ok"]
    assert any(v.startswith("duplicate: ") for v in report["violations"])


def test_unknown_faults_and_switches_are_bad_input() -> None:
    result = run_mw("chaos", "--faults", "kill-everything")
    assert result.returncode == 2 and result.stderr.startswith("error: unknown fault(s) kill-everything")
    result = run_mw("chaos", "--break", "gravity")
    assert result.returncode == 2 and "unknown --break 'gravity'" in result.stderr
    result = run_mw("chaos", "--liveness-margin", "-1")
    assert result.returncode == 2 and "--liveness-margin must not be negative" in result.stderr
    result = run_mw("chaos", "--report", "/etc/hostname")
    assert result.returncode == 2 and "--report /etc/hostname: not a directory" in result.stderr


def test_the_shared_nemesis_drives_the_docker_backend(roles, zk, zk_hosts: str, tmp_path: Path) -> None:
    """Fake containers whose kill ends a real role's session: the nemesis picks the active master,
    kills its container, sees a backup take over, and restarts the container."""
    from masterworker.lab.chaos.docker_backend import DockerBackend
    from masterworker.lab.chaos.nemesis import Nemesis
    from masterworker.system.history import History
    from tests.helpers import wait_until
    from tests.unit.test_docker_backend import FakeContainer, FakeDocker

    masters = {name: roles.master(name) for name in ("master-1", "master-2")}
    wait_until(lambda: any(m.elected.is_set() for m in masters.values()), what="a master elected")
    containers = [FakeContainer("master", name) for name in masters]
    for container in containers:
        name = container.labels["mw.id"]
        original_kill = container.kill

        def kill(signal: str, name: str = name, original_kill=original_kill) -> None:
            original_kill(signal)
            roles.stop(masters[name])

        container.kill = kill
    backend = DockerBackend(FakeDocker(containers), zk_hosts, tmp_path, 2.0)
    history = History(tmp_path / "history" / "nemesis.jsonl")
    active = next(name for name, m in masters.items() if m.elected.is_set())
    Nemesis(backend, zk, history, seed=1, say=lambda message: None).inject("kill-master")
    killed = next(c for c in containers if c.labels["mw.id"] == active)
    assert killed.calls == ["kill SIGKILL", "start"]
    events = [json.loads(line)["type"] for line in (tmp_path / "history" / "nemesis.jsonl").read_text().splitlines()]
    assert events == ["fault", "recovered"]
