"""The embedded ZooKeeper launcher against real JVMs: start, stop, quorum, leaders, clear errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, OperationTimeoutError, SessionExpiredError
from kazoo.handlers.threading import KazooTimeoutError

from masterworker.zk import LocalZooKeeper, PortInUse, ZooKeeperNotInstalled, find_install
from masterworker.zk.server import ServerConfig, ZooKeeperServer
from tests.helpers import jvm_pids_under, run_mw, wait_until


def test_standalone_serves_and_stops_without_leftovers(tmp_path: Path) -> None:
    zk = LocalZooKeeper(servers=1, data_dir=tmp_path / "zk").start()
    try:
        assert zk.modes() == {1: "standalone"}
        assert zk.servers[0].is_ours() is True
        assert len(jvm_pids_under(tmp_path / "zk")) == 1
        client = KazooClient(hosts=zk.connect_string)
        client.start(timeout=10)
        client.create("/hello", b"world")
        assert client.get("/hello")[0] == b"world"
        client.stop()
        client.close()
    finally:
        zk.stop()
    assert jvm_pids_under(tmp_path / "zk") == []


@pytest.mark.ensemble
def test_ensemble_writes_with_one_of_three_down_and_refuses_with_two_down(ensemble: LocalZooKeeper) -> None:
    modes = sorted(ensemble.modes().values())
    assert modes == ["follower", "follower", "leader"]
    leader = ensemble.leader()
    followers = [s for s in ensemble.servers if s is not leader]
    client = KazooClient(hosts=followers[0].address, timeout=10)  # stays connected to a survivor
    client.start(timeout=10)
    try:
        followers[1].kill()
        client.create("/with-two-of-three", b"ok")  # a quorum of 2 remains
        assert client.exists("/with-two-of-three")
        leader.kill()  # one server of three left: no quorum
        # Bounded: a request queued while kazoo reconnects would otherwise wait for a server forever.
        with pytest.raises((ConnectionLoss, OperationTimeoutError, SessionExpiredError, KazooTimeoutError)):
            client.create_async("/with-one-of-three").get(timeout=15)
        assert ensemble.server(followers[0].sid).mode() == "not serving"
    finally:
        client.stop()
        client.close()


@pytest.mark.ensemble
def test_killing_the_leader_elects_another(ensemble: LocalZooKeeper) -> None:
    first = ensemble.leader()
    first.kill()
    second = ensemble.wait_for_leader(30)
    assert second.sid != first.sid
    first.restart()
    ensemble.wait_serving(30)
    assert sorted(ensemble.modes().values()) == ["follower", "follower", "leader"]


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            LocalZooKeeper(servers=1, client_port=port)


def test_another_zookeeper_on_our_port_is_detected(zk_server: LocalZooKeeper, tmp_path: Path) -> None:
    """The server answering must be the one we started: its conf names our data directory."""
    theirs = zk_server.servers[0].config
    impostor_config = ServerConfig(9, theirs.client_port, 0, 0, tmp_path / "ours")
    ours = ZooKeeperServer(find_install(), impostor_config, [impostor_config], 500)
    with pytest.raises(PortInUse, match="another ZooKeeper server answers"):
        ours.wait_serving(timeout=5)


def test_no_java_and_no_zookeeper_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ZooKeeperNotInstalled, match="java was not found"):
        find_install(env={"PATH": str(tmp_path)})
    with pytest.raises(ZooKeeperNotInstalled, match="no ZooKeeper installation was found"):
        find_install(env=dict(os.environ, ZOOKEEPER_HOME=""), debian_jars=tmp_path)
    with pytest.raises(ZooKeeperNotInstalled, match="holds no ZooKeeper jars"):
        find_install(env=dict(os.environ, ZOOKEEPER_HOME=str(tmp_path)))


def test_mw_zk_start_without_java_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    result = run_mw("zk", "start", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: java was not found: install a Java runtime (Debian/Ubuntu: 'apt-get install -y "
        "default-jre-headless') or set JAVA_HOME"
    ]


@pytest.mark.ensemble
def test_mw_zk_start_three_servers_status_and_ctrl_c(tmp_path: Path) -> None:
    data_dir = tmp_path / "ensemble"
    proc = subprocess.Popen(
        [sys.executable, "-m", "masterworker", "zk", "start", "--servers", "3", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        connect_string = None
        deadline = time.monotonic() + 60
        while connect_string is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.count("127.0.0.1:") == 3 and not line.startswith("export"):
                connect_string = line.strip()
        assert connect_string, "".join(lines)
        status = run_mw("zk", "status", "--json", "--zk", connect_string)
        assert status.returncode == 0, status.stderr
        modes = sorted(server["mode"] for server in json.loads(status.stdout).values())
        assert modes == ["follower", "follower", "leader"]
        assert len(jvm_pids_under(data_dir)) == 3
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until(lambda: jvm_pids_under(data_dir) == [], 10, "every JVM to be gone")


def test_mw_zk_status_of_nothing_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_mw("zk", "status", "--zk", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no ZooKeeper server answered at 127.0.0.1:{port}"


@pytest.mark.ensemble
@pytest.mark.timeout(120)
def test_an_observer_serves_reads_and_writes_but_does_not_vote(tmp_path: Path) -> None:
    """Chapter 9: an observer gets every commit and forwards writes, but two voters down of three is
    no quorum, whatever the observer says."""
    with LocalZooKeeper(servers=3, observers=1, data_dir=tmp_path / "zk") as zk:
        assert sorted(zk.modes().values()) == ["follower", "follower", "leader", "observer"]
        observer = zk.observers()[0]
        # ZooKeeper rewrites zoo.cfg at start: the membership moves to a versioned dynamic file
        dynamic = observer.config_file.read_text().split("dynamicConfigFile=")[1].strip()
        assert f"server.{observer.sid}=" in Path(dynamic).read_text() and ":observer;" in Path(dynamic).read_text()
        voter = KazooClient(hosts=zk.voters()[0].address, timeout=10)
        reader = KazooClient(hosts=observer.address, timeout=10, connection_retry={"max_tries": 2})
        voter.start(timeout=10)
        reader.start(timeout=10)
        try:
            voter.create("/written-through-a-voter", b"seen")
            reader.sync("/written-through-a-voter")
            assert reader.get("/written-through-a-voter")[0] == b"seen"  # the observer has the commit
            reader.create("/written-through-the-observer")  # forwarded to the leader
            voter.sync("/written-through-the-observer")  # a follower may apply the commit a moment later
            assert voter.exists("/written-through-the-observer")
            for server in zk.voters()[:2]:
                server.kill()
            wait_until(lambda: observer.mode() == "not serving", 30, "the observer to stop serving")
            with pytest.raises((ConnectionLoss, OperationTimeoutError, SessionExpiredError, KazooTimeoutError)):
                reader.create_async("/with-one-voter-and-an-observer").get(timeout=15)
        finally:
            for client in (voter, reader):
                client.stop()
                client.close()
    assert jvm_pids_under(tmp_path / "zk") == []


def test_mw_zk_start_says_its_server_died_and_ends(tmp_path: Path) -> None:
    """kill -9 of the JVM left mw zk start running, silent, in front of a server that was gone."""
    data_dir = tmp_path / "zk"
    proc = subprocess.Popen(
        [sys.executable, "-m", "masterworker", "zk", "start", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # it has said it runs
            if line.startswith("export MW_ZK="):
                break
        (jvm,) = jvm_pids_under(data_dir)
        os.kill(jvm, signal.SIGKILL)
        rest = proc.communicate(timeout=30)[0]
        assert proc.returncode == 1
        assert "ZooKeeper server 1 exited (exit code -9)" in rest
        assert "error: every ZooKeeper server of this 'mw zk start' has exited" in rest
        assert "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
