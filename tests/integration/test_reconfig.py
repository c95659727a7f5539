"""Chapter 10's dynamic reconfiguration, with the system running through it, and ``mw zk reconfig``.

The ensemble grows 3 -> 5 and shrinks 5 -> 3 (removing two of the original servers, the ZooKeeper
leader among them) while a master, a backup and two workers take a steady flow of tasks: nothing
is lost, nothing is completed twice, and the active master stays the same session throughout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import ConnectionLoss, NoAuthError

from masterworker.system.client import OutcomeUnknown
from masterworker.system.connection import close_quietly
from masterworker.system.protocol import MASTER, TASKS
from masterworker.zk.reconfig import Membership, ReconfigRefused, Reconfigurer, follow_membership, read_membership
from masterworker.zk.server import LocalZooKeeper, free_port
from tests.helpers import Roles, all_done, jvm_pids_under, run_mw, statuses, submit_many, wait_until

SESSION_TIMEOUT = 2.0


class ConnectionEvents:
    """Every state change each role's session goes through, with the time it happened."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def watch(self, name: str, client: KazooClient) -> None:
        def listener(state: KazooState) -> None:  # must not block: only records
            with self._lock:
                self.events.append((time.monotonic(), name, str(state)))

        client.add_listener(listener)

    def since(self, moment: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [e for e in self.events if e[0] >= moment]


@pytest.fixture
def five_capable(tmp_path: Path):
    with LocalZooKeeper(servers=3, data_dir=tmp_path / "zk") as zk:
        yield zk
    assert jvm_pids_under(tmp_path / "zk") == []


@pytest.mark.ensemble
@pytest.mark.timeout(180)
def test_grow_to_five_and_shrink_to_three_while_tasks_flow(five_capable: LocalZooKeeper, tmp_path: Path) -> None:
    zk = five_capable
    roles = Roles(zk.connect_string, SESSION_TIMEOUT)  # the old connect string, never updated
    events = ConnectionEvents()
    submitter_client = roles.client()
    stop = threading.Event()
    submitted: list[str] = []
    unacknowledged: list[float] = []
    try:
        masters = {name: roles.master(name) for name in ("master-1", "master-2")}
        wait_until(lambda: any(m.elected.is_set() for m in masters.values()), what="a master elected")
        workers = [roles.worker(name, slots=2) for name in ("worker-1", "worker-2")]
        for role in [*masters.values(), *workers]:
            events.watch(role.id, roles.session_of(role))
        owner = submitter_client.get(MASTER)[1].ephemeralOwner
        wait_until(lambda: len(submitter_client.get_children("/workers")) == 2, what="both workers registered")

        def submit_steadily() -> None:  # bounded: at most 600 tasks, stops when told
            while not stop.is_set() and len(submitted) < 600:
                try:
                    submitted.extend(submit_many(submitter_client, [["true"]]))
                except (ConnectionLoss, OutcomeUnknown):  # not acknowledged: a client would try again
                    unacknowledged.append(time.monotonic())
                time.sleep(0.02)

        submitter = threading.Thread(target=submit_steadily, daemon=True)
        submitter.start()
        wait_until(lambda: len(submitted) >= 20, what="tasks flowing")
        reconfigurer = Reconfigurer(zk)
        follower = KazooClient(hosts=zk.connect_string, timeout=10)  # learns each membership from a watch
        follower.start(timeout=15)
        follow_membership(follower)

        started = time.monotonic()
        grown = reconfigurer.add(2)
        assert grown.after.voters == [1, 2, 3, 4, 5]
        assert grown.after.version > grown.before.version
        assert sorted(m for m in zk.modes().values()) == ["follower"] * 4 + ["leader"]

        wait_until(lambda: len(follower.hosts) == 5, 10, "the following client to know five servers")
        # A client that starts now learns the new membership and may use any of the five.
        newcomer = KazooClient(hosts=zk.server(5).address, timeout=10)
        newcomer.start(timeout=15)
        try:
            assert read_membership(newcomer) == grown.after
            assert len(grown.after.connect_string.split(",")) == 5
        finally:
            close_quietly(newcomer)

        shrinking = time.monotonic()
        leader = zk.wait_for_leader()
        other = next(s for s in zk.servers if s.sid in (1, 2, 3) and s is not leader)
        shrunk = reconfigurer.remove(sorted([leader.sid, other.sid]))
        assert len(shrunk.after.voters) == 3 and leader.sid not in shrunk.after.voters
        assert shrunk.after.version > grown.after.version
        zk.wait_for_leader(30)
        elapsed = time.monotonic() - started
        wait_until(lambda: len(follower.hosts) == 3, 10, "the following client to know three servers")
        assert {f"{h}:{p}" for h, p in follower.hosts} == set(shrunk.after.connect_string.split(","))
        close_quietly(follower)

        after_shrink = len(submitted)
        wait_until(lambda: len(submitted) >= after_shrink + 20, what="tasks still flowing after the shrink")
        stop.set()
        submitter.join(30)
        wait_until(lambda: all_done(submitter_client, submitted), 60, "every submitted task done")
        done = statuses(submitter_client)
        assert set(submitted) <= set(done)  # nothing lost
        assert all(done[t].state == "done" for t in submitted)
        assert submitter_client.get_children(TASKS) == []
        # One completion record per task is the protocol; the same master, the same session, throughout:
        assert submitter_client.get(MASTER)[1].ephemeralOwner == owner
        during = events.since(started)
        assert not [e for e in during if e[2] == "LOST"], during
        report = {
            "grow": grown.as_dict(),
            "shrink": shrunk.as_dict(),
            "seconds_grow_and_shrink": round(elapsed, 3),
            "tasks": len(submitted),
            "submits_not_acknowledged": len(unacknowledged),
            "connection_events_growing": [
                (round(t - started, 3), name, state) for t, name, state in during if t < shrinking
            ],
            "connection_events_shrinking": [
                (round(t - shrinking, 3), name, state) for t, name, state in during if t >= shrinking
            ],
        }
        (tmp_path / "reconfig-report.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        stop.set()
        roles.stop_all()


@pytest.mark.ensemble
@pytest.mark.timeout(120)
def test_refusals_leave_the_configuration_unchanged(ensemble: LocalZooKeeper) -> None:
    reconfigurer = Reconfigurer(ensemble)
    before = reconfigurer.membership()
    with pytest.raises(ReconfigRefused, match="changed since version"):
        reconfigurer.remove([3], from_config=before.version - 1)  # a stale version: someone came first
    anonymous = KazooClient(hosts=ensemble.connect_string, timeout=10)
    anonymous.start(timeout=15)
    try:
        with pytest.raises(NoAuthError):
            anonymous.reconfig(joining=None, leaving="3", new_members=None)
    finally:
        close_quietly(anonymous)
    assert reconfigurer.membership() == before
    assert sorted(ensemble.modes().values()) == ["follower", "follower", "leader"]


@pytest.mark.ensemble
@pytest.mark.timeout(120)
def test_a_follower_becomes_an_observer_and_back(ensemble: LocalZooKeeper) -> None:
    reconfigurer = Reconfigurer(ensemble)
    follower = next(s for s in ensemble.servers if s.mode() == "follower")
    change = reconfigurer.set_role(follower.sid, observer=True)
    assert change.after.observers == [follower.sid] and len(change.after.voters) == 2
    wait_until(lambda: follower.mode() == "observer", 30, "the follower to observe")
    back = reconfigurer.set_role(follower.sid, observer=False)
    assert back.after.observers == [] and back.after.version > change.after.version
    wait_until(lambda: follower.mode() == "follower", 30, "the observer to follow again")


def test_membership_parses_what_zookeeper_writes_and_kazoo_follows_it(zk_server: LocalZooKeeper) -> None:
    text = (
        "server.1=127.0.0.1:1:2:participant;127.0.0.1:2181\n"
        "server.4=127.0.0.1:3:4:observer;127.0.0.1:2184\nversion=10000000b"
    )
    membership = Membership.parse(text)
    assert membership.version == 0x10000000B and membership.voters == [1] and membership.observers == [4]
    assert membership.connect_string == "127.0.0.1:2181,127.0.0.1:2184"
    client = KazooClient(hosts=zk_server.connect_string, timeout=10)
    client.start(timeout=15)
    try:
        follow_membership(client)  # a standalone server has an empty /zookeeper/config: the list stays
        assert client.hosts == [("127.0.0.1", zk_server.servers[0].config.client_port)]
    finally:
        close_quietly(client)


def zk_status(connect_string: str) -> dict[str, dict]:
    result = run_mw("zk", "status", "--json", "--zk", connect_string)
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}


@pytest.mark.ensemble
@pytest.mark.timeout(180)
def test_mw_zk_start_with_an_observer_then_reconfig_and_ctrl_c(tmp_path: Path) -> None:
    data_dir = tmp_path / "ensemble"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "masterworker", "zk", "start", "--servers", "3", "--observers", "1"]
        + ["--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [proc.stdout.readline()]
        while lines[-1] and lines[-1].count("127.0.0.1:") != 4:  # the connect string (the banner may wrap)
            lines.append(proc.stdout.readline())
        assert "ensemble of 3 servers and 1 observer running" in " ".join(lines), lines
        connect_string = lines[-1].strip()
        wait_until(
            lambda: (
                sorted(f["mode"] for f in zk_status(connect_string).values())
                == ["follower", "follower", "leader", "observer"]
            ),
            60,
            "three voters and an observer serving",
            interval=0.5,
        )
        status = zk_status(connect_string)
        assert {facts["config_version"] for facts in status.values()} == {"0x100000000"}

        grown = run_mw("zk", "reconfig", "--data-dir", str(data_dir), "--add", "2", timeout=120)
        assert grown.returncode == 0, grown.stderr
        line, export = grown.stdout.strip().splitlines()
        assert line.startswith("configuration version 0x") and "voters 1,2,3,5,6, observers 4" in line
        assert export.count("127.0.0.1:") == 6
        assert len(jvm_pids_under(data_dir)) == 6

        stale = run_mw("zk", "reconfig", "--data-dir", str(data_dir), "--remove", "5", "--from-config", "0x100000000")
        assert stale.returncode == 1 and "Traceback" not in stale.stderr
        assert stale.stderr.strip().splitlines() == [
            "error: reconfig refused: the configuration changed since version 0x100000000 "
            "(another reconfiguration came first)"
        ]
        shrunk = run_mw("zk", "reconfig", "--data-dir", str(data_dir), "--remove", "5,6", "--json")
        assert shrunk.returncode == 0, shrunk.stderr
        assert json.loads(shrunk.stdout)["voters"] == [1, 2, 3]
        wait_until(lambda: len(jvm_pids_under(data_dir)) == 4, 20, "the removed servers stopped")

        bad = run_mw("zk", "reconfig", "--data-dir", str(data_dir), "--remove", "9")
        assert bad.returncode == 2 and bad.stderr.strip() == "error: no server 9 in this ensemble (servers: 1, 2, 3, 4)"
        none = run_mw("zk", "reconfig", "--data-dir", str(data_dir))
        assert none.returncode == 2 and none.stderr.startswith("error: say one change")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until(lambda: jvm_pids_under(data_dir) == [], 10, "every JVM to be gone")
    nobody = run_mw("zk", "reconfig", "--data-dir", str(data_dir), "--add", "1")
    assert nobody.returncode == 1
    assert nobody.stderr.strip() == f"error: no 'mw zk start' is running with data directory {data_dir.resolve()}"
