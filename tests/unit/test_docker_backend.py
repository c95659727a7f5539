"""The docker backend's logic with a fake docker client (tests/compose/ runs it on a real engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masterworker.lab.chaos.docker_backend import DockerBackend, docker_from_env
from masterworker.system.errors import MasterworkerError


class FakeContainer:
    def __init__(self, role: str, ident: str, status: str = "running") -> None:
        self.labels = {"mw.role": role, "mw.id": ident, "com.docker.compose.project": "masterworker"}
        self.name = f"masterworker-{ident}-1"
        self.status = status
        self.calls: list[str] = []

    def kill(self, signal: str) -> None:
        self.calls.append(f"kill {signal}")
        self.status = "exited"

    def pause(self) -> None:
        self.calls.append("pause")
        self.status = "paused"

    def unpause(self) -> None:
        self.calls.append("unpause")
        self.status = "running"

    def start(self) -> None:
        self.calls.append("start")
        self.status = "running"

    def stop(self, timeout: int) -> None:
        self.calls.append("stop")
        self.status = "exited"

    def reload(self) -> None:
        pass


class FakeContainers:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.all = containers
        self.filters: list[dict] = []

    def list(self, all: bool, filters: dict) -> list[FakeContainer]:  # noqa: A002 - the SDK's name
        self.filters.append(filters)
        wanted = dict(label.split("=", 1) for label in filters["label"])
        return [c for c in self.all if all and all_labels_match(c, wanted)]


def all_labels_match(container: FakeContainer, wanted: dict[str, str]) -> bool:
    return all(container.labels.get(k) == v for k, v in wanted.items())


class FakeDocker:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = FakeContainers(containers)


@pytest.fixture
def world(tmp_path: Path) -> tuple[DockerBackend, dict[str, FakeContainer]]:
    containers = [FakeContainer("zookeeper", str(n)) for n in (1, 2, 3)]
    containers += [FakeContainer("master", "master-1"), FakeContainer("master", "master-2")]
    containers += [FakeContainer("worker", f"worker-{n}") for n in (1, 2, 3)]
    containers += [FakeContainer("load", "load")]
    backend = DockerBackend(FakeDocker(containers), "zk1:2181", tmp_path, 4.0, project="masterworker")
    return backend, {c.labels["mw.id"]: c for c in containers}


def test_roles_are_found_by_their_compose_labels(world) -> None:
    backend, _ = world
    assert backend.masters() == ["master-1", "master-2"]
    assert backend.workers() == ["worker-1", "worker-2", "worker-3"]
    assert backend.zk_servers() == ["1", "2", "3"]
    assert {"label": ["mw.role=master", "com.docker.compose.project=masterworker"]} in backend.docker.containers.filters


def test_kill_pause_resume_restart_act_on_the_named_container_only(world) -> None:
    backend, containers = world
    backend.kill("master-1")
    backend.pause("worker-2")
    assert containers["master-1"].calls == ["kill SIGKILL"] and containers["worker-2"].calls == ["pause"]
    backend.resume("worker-2")
    backend.restart("master-1")
    assert containers["master-1"].calls == ["kill SIGKILL", "start"]
    assert containers["worker-2"].status == "running"
    backend.restart("worker-1")  # already running: left alone
    assert containers["worker-1"].calls == []
    assert all(not c.calls for name, c in containers.items() if name not in ("master-1", "worker-2"))


def test_heal_restarts_what_died_and_unpauses_what_is_frozen_and_stop_load(world) -> None:
    backend, containers = world
    backend.kill_zk("2")
    backend.kill("worker-3")
    backend.pause("master-2")
    backend.heal()
    assert containers["2"].calls[-1] == "start" and containers["worker-3"].calls[-1] == "start"
    assert containers["master-2"].calls[-1] == "unpause"
    backend.stop_load()
    assert containers["load"].calls == ["stop"]


def test_expire_without_a_published_session_reports_false(world) -> None:
    backend, _ = world
    assert backend.expire("worker-1") is False


def test_the_leader_is_asked_over_four_letter_words_and_none_when_nobody_answers(world) -> None:
    backend, _ = world
    backend.zk_port = 1  # nothing listens: every server is down
    assert backend.zk_leader() is None


def test_no_engine_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(MasterworkerError, match="(no Docker engine is reachable|needs the docker SDK)"):
        docker_from_env()


class FakeObserver:
    """Just enough of a KazooClient for ``drive``: a master, every worker, nothing pending."""

    def exists(self, path: str) -> bool:
        return True

    def get_children(self, path: str) -> list[str]:
        return ["worker-1", "worker-2", "worker-3"] if path == "/workers" else []


def test_the_network_faults_are_left_out_of_the_docker_schedule_and_say_why(world, tmp_path: Path) -> None:
    from masterworker.lab.chaos.nemesis import NETWORK_FAULTS
    from masterworker.lab.chaos.run import ChaosConfig, drive
    from masterworker.system.history import History

    backend, containers = world
    said: list[str] = []
    history = History(tmp_path / "history" / "chaos.jsonl")
    config = ChaosConfig(duration=0.1, faults=NETWORK_FAULTS)
    records, drain = drive(config, backend, FakeObserver(), history, said.append, 0.0)  # type: ignore[arg-type]
    assert records == set() and drain is not None
    for fault in NETWORK_FAULTS:
        assert any(line.startswith(f"[yellow]{fault}[/] left out: host networking") for line in said), said
    lines = (tmp_path / "history" / "chaos.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["end"]  # no fault fired: only the run's end
    assert all(c.calls == [] for c in containers.values() if c.labels["mw.role"] != "load")
    with pytest.raises(MasterworkerError, match="host networking"):
        backend.partition("master-1")
    with pytest.raises(MasterworkerError, match="host networking"):
        backend.partition_zk("1")
