"""Liveness against foreign, hostile and poisoned trees: nothing stalls, nothing loops, every task ends.

Each case builds what a stranger, the book's Java processes or a careless operator leave in the
tree, against each of the three masters, then requires a probe task submitted the ordinary way
to finish within a bound, and the bad task to end with its reason named.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from masterworker.lab.chaos.partition import PartitionProxy
from masterworker.lab.processes import MwProcess
from masterworker.lab.processes import mw_env as mw_env_for
from masterworker.system.client import submit
from masterworker.system.connection import ZkSettings, connect
from masterworker.system.masters import IMPLEMENTATIONS
from masterworker.system.protocol import MAX_CAPACITY, TaskSpec, TaskStatus, assign_dir, status_path, worker_path
from masterworker.system.zkops import ensure_nodes
from masterworker.zk.server import LocalZooKeeper
from tests.conftest import SESSION_TIMEOUT
from tests.helpers import Roles, all_done, assigned, master_id, pending, statuses, wait_until

PROBE_BOUND = 10.0  # seconds a probe task may take on a shared 2-core machine (it takes well under 1)


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request: pytest.FixtureRequest) -> str:
    return request.param


def probe(zk: KazooClient, what: str) -> float:
    """Submit an ordinary task and wait for its status; how long it took."""
    started = time.monotonic()
    task = submit(zk, TaskSpec(argv=["echo", "probe"]))
    wait_until(lambda: all_done(zk, [task]), PROBE_BOUND, f"the probe task to finish ({what})")
    assert statuses(zk)[task].output == "probe\n"
    took = time.monotonic() - started
    print(f"probe {what}: {took:.2f} s")  # for the record (pytest -s); the bound is PROBE_BOUND
    return took


def raw_task(zk: KazooClient, data: bytes) -> str:
    return zk.create("/tasks/task-", data, sequence=True).rsplit("/", 1)[1]


def test_a_forged_status_for_a_running_task_ends_it_once_and_frees_the_slot(
    roles: Roles, zk: KazooClient, impl: str
) -> None:
    roles.master("m1", impl=impl)
    worker = roles.worker("w1", slots=1, prefetch=0)
    task = submit(zk, TaskSpec(argv=["sleep", "1"]))
    wait_until(lambda: worker.executions == 1, what="the task to start")
    zk.create(status_path(task), b"done")  # a hostile client, or the book's worker elsewhere
    wait_until(lambda: assigned(zk, "w1") == [], what="the worker to drop the finished task")
    probe(zk, "after a forged status")
    assert worker.executions == 2  # the task once, then the probe: never the task again
    assert worker.discarded == 1


def test_a_pending_task_that_already_has_a_status_is_removed_not_run(roles: Roles, zk: KazooClient, impl: str) -> None:
    ensure_nodes(zk)
    # The book's master died between its two writes: the task is still in /tasks, and its worker completed it.
    half_written = raw_task(zk, b"book task")
    zk.create(status_path(half_written), b"done")
    roles.master("m1", impl=impl)
    worker = roles.worker("w1", slots=1)
    probe(zk, "after a half-written assignment")
    wait_until(lambda: half_written not in pending(zk), what="the finished task to leave /tasks")
    assert worker.executions == 1  # only the probe
    assert statuses(zk)[half_written].summary == "done (book worker)"


def test_tasks_that_cannot_start_complete_as_failed_with_the_reason(roles: Roles, zk: KazooClient, impl: str) -> None:
    ensure_nodes(zk)
    nul = raw_task(zk, json.dumps({"argv": ["echo", "a\u0000b"]}).encode())
    huge_timeout = raw_task(zk, b'{"argv": ["true"], "timeout": 1' + b"0" * 400 + b"}")
    roles.master("m1", impl=impl)
    roles.worker("w1", slots=1, prefetch=0)
    wait_until(lambda: all_done(zk, [nul, huge_timeout]), what="both bad tasks to complete")
    done = statuses(zk)
    assert done[nul].state == "failed" and "NUL" in done[nul].reason
    assert done[huge_timeout].state == "failed" and "timeout" in done[huge_timeout].reason
    probe(zk, "after tasks that cannot start")


def test_the_books_worker_gets_only_book_tasks(roles: Roles, zk: KazooClient, impl: str) -> None:
    ensure_nodes(zk)
    book_worker = roles.client()
    book_worker.create(assign_dir("worker-b00c"))
    book_worker.create(worker_path("worker-b00c"), b"Idle", ephemeral=True)
    roles.master("m1", impl=impl)
    command = submit(zk, TaskSpec(argv=["sh", "-c", "exit 3"]))
    plain = raw_task(zk, b"a plain string, the book's client")
    wait_until(lambda: assigned(zk, "worker-b00c") == [plain], what="the book task to go to the book's worker")
    assert command in pending(zk)  # nobody can run it yet: it waits, it is not "done" by the book's worker
    roles.worker("w1", slots=1)
    wait_until(lambda: all_done(zk, [command]), what="the command to run on an mw worker")
    assert statuses(zk)[command].exit_code == 3 and statuses(zk)[command].worker == "w1"
    book_worker.create(status_path(plain), b"done")  # the book's worker: two writes, status first
    book_worker.delete(f"{assign_dir('worker-b00c')}/{plain}")
    assert statuses(zk)[plain].summary == "done (book worker)"


def test_a_strangers_capacity_is_clamped_and_read_again_when_it_changes(
    roles: Roles, zk: KazooClient, impl: str
) -> None:
    ensure_nodes(zk)
    evil = roles.client()
    evil.create(assign_dir("evil"))
    evil.create(worker_path("evil"), json.dumps({"slots": 1, "prefetch": 0}).encode(), ephemeral=True)
    tasks = [raw_task(zk, b"noop") for _ in range(MAX_CAPACITY + 44)]
    roles.master("m1", impl=impl)
    wait_until(lambda: len(assigned(zk, "evil")) == 1, what="one task for a worker announcing one slot")
    evil.set(worker_path("evil"), json.dumps({"slots": 2, "prefetch": 0}).encode())
    # Read again: it gets more (two slots, and the master's window may double a worker it finds with an idle slot).
    wait_until(lambda: len(assigned(zk, "evil")) >= 2, what="more tasks once it announces two slots")
    evil.set(worker_path("evil"), json.dumps({"slots": 1, "prefetch": 1024}).encode())
    wait_until(lambda: len(assigned(zk, "evil")) == MAX_CAPACITY, what="the clamp, not 1,025")
    roles.worker("w1", slots=2)
    wait_until(lambda: len(pending(zk)) == 0, what="the rest to go to the real worker")
    assert len(assigned(zk, "evil")) == MAX_CAPACITY
    probe(zk, "beside a greedy stranger")
    assert len(tasks) - MAX_CAPACITY == sum(1 for t in tasks if t in statuses(zk))


def test_thousands_of_junk_assignments_do_not_delay_the_takeover(roles: Roles, zk: KazooClient, impl: str) -> None:
    ensure_nodes(zk)
    junk = 3000
    txn_size = 500
    for start in range(0, junk, txn_size):
        txn = zk.transaction()
        if start == 0:
            txn.create(assign_dir("ghost"))
        for n in range(start, start + txn_size):
            txn.create(f"{assign_dir('ghost')}/junk-{n:05d}", b"")
        assert all(not isinstance(r, Exception) for r in txn.commit())
    worker = roles.worker("w1", slots=2)
    wait_until(worker.registered.is_set, what="w1 registered")
    task = submit(zk, TaskSpec(argv=["echo", "probe"]))  # pending before any master runs
    started = time.monotonic()
    roles.master("m1", impl=impl)
    # Recovered tasks are older than the probe and go first in line once recovered; the probe is
    # assigned in the new master's first round, before any of the junk, so it waits for none of it.
    wait_until(lambda: all_done(zk, [task]), PROBE_BOUND, "the probe while the junk is recovered")
    assert time.monotonic() - started < PROBE_BOUND
    wait_until(lambda: not zk.exists(assign_dir("ghost")), 60, "the ghost's leftovers to be recovered")


def test_a_task_that_kills_its_worker_is_given_up_after_three_attempts(
    roles: Roles, spawn, zk: KazooClient, impl: str
) -> None:
    ensure_nodes(zk)
    roles.master("m1", impl=impl)
    poison = submit(zk, TaskSpec(argv=["sh", "-c", "kill -9 $PPID; sleep 5"]))
    workers = []
    for attempt in range(1, 4):  # restarted, as a supervisor would
        workers.append(spawn("worker", "--id", f"w{attempt}", "--prefetch", "0"))
        wait_until(lambda: not workers[-1].alive or all_done(zk, [poison]), 30, f"worker {attempt} to die")
        assert not workers[-1].alive, "the poisoned task did not kill its worker"
    wait_until(lambda: all_done(zk, [poison]), 30, "the master to give the poisoned task up")
    status = statuses(zk)[poison]
    assert status.state == "failed" and status.reason == "gave up after 3 attempts: its worker died each time"
    spawn("worker", "--id", "w4")
    probe(zk, "after a poison pill")
    assert TaskStatus.decode(zk.get(status_path(poison))[0]).worker is None  # the master wrote it, no worker ran it


@pytest.mark.parametrize("cut", ["oneway", "freeze"])
def test_a_master_zookeeper_no_longer_answers_closes_its_session_and_a_backup_takes_over(
    roles: Roles, zk: KazooClient, zk_server: LocalZooKeeper, zk_hosts: str, impl: str, cut: str
) -> None:
    """The gray failure: requests reach ZooKeeper, replies do not, so the session stays alive while
    its master can do nothing. Past its session timeout the master closes the session itself."""
    ensure_nodes(zk)
    chroot = zk_hosts[zk_hosts.index("/") :]
    with PartitionProxy(("127.0.0.1", zk_server.servers[0].config.client_port)) as proxy:
        cut_off = connect(ZkSettings(hosts=proxy.address + chroot, session_timeout=SESSION_TIMEOUT))
        first = IMPLEMENTATIONS[impl](cut_off, "m1", session_timeout=SESSION_TIMEOUT)
        roles._start(first, cut_off)
        wait_until(first.elected.is_set, what="m1 elected")
        backup = roles.master("m2", impl=impl)
        roles.worker("w1")
        getattr(proxy, cut)()
        started = time.monotonic()
        wait_until(backup.elected.is_set, 4 * SESSION_TIMEOUT + 5, "the backup to take over")
        took = time.monotonic() - started
        # Whichever comes first ends the old session: its master's guard closing it (leadership.py), or
        # the server expiring it in a gap between kazoo's reconnection attempts (which carry no pings).
        assert took < 2 * SESSION_TIMEOUT + 3, took
        probe(zk, f"after a {cut} cut of the active master")
        proxy.heal()
        wait_until(lambda: cut_off.connected and not first.elected.is_set(), 20, "m1 back, as a backup")
        assert master_id(zk) == "m2"
        print(f"{impl} {cut}: backup elected {took:.1f} s after the cut; sessions closed by m1: {first.guard.gave_up}")


def test_a_master_holding_master_while_it_believes_it_is_a_backup_gives_it_up(
    roles: Roles, zk: KazooClient, impl: str
) -> None:
    """Its election happened but the reply, or a call right after, was lost: the session holds
    /master and the process thinks it is a backup. Every backup would watch that /master for ever
    (33 s without a master in a chaos run, until the session happened to expire)."""
    ensure_nodes(zk)
    own = roles.client()
    own.create("/master", b"m1", ephemeral=True)
    master = IMPLEMENTATIONS[impl](own, "m1", session_timeout=SESSION_TIMEOUT)
    roles._start(master, own)
    wait_until(master.elected.is_set, 15, "m1 to give /master up and win a real election")
    roles.worker("w1")
    probe(zk, "after a master that held /master unawares")


@pytest.mark.parametrize("role", ["master", "worker"])
def test_sigterm_stops_a_role_whose_zookeeper_is_gone(tmp_path: Path, role: str) -> None:
    """The server vanishes for good (kill -9, its data gone with it): SIGTERM must still end the role
    within a bound, instead of a call waiting for ever in kazoo's queue (and a master spinning)."""
    with LocalZooKeeper(servers=1) as own:
        env = mw_env_for(own.connect_string, SESSION_TIMEOUT)
        parents = connect(ZkSettings(hosts=own.connect_string))
        ensure_nodes(parents)  # a worker waits for a master to create them
        parents.stop()
        process = MwProcess([role, "--id", f"{role}-1"], env, tmp_path / f"{role}.log")
        try:
            wait_until(lambda: "registered" in process.log() or "elected" in process.log(), 30, f"the {role} up")
            own.servers[0].kill()
            wait_until(lambda: "Connection dropped" in process.log(), 10, f"the {role} to lose its server")
            if role == "master":  # its guard closes the session: a backup now, with work to do once connected
                wait_until(lambda: "closing our session" in process.log(), 10, "the master to give up its session")
            before = _cpu_seconds(process.pid)
            time.sleep(3.0)  # a window to measure CPU in, not a wait for a condition
            assert _cpu_seconds(process.pid) - before < 0.9, "it spins while no server answers"
            started = time.monotonic()
            process.signal(signal.SIGTERM)
            wait_until(lambda: not process.alive, 3 * SESSION_TIMEOUT + 10, f"the {role} to stop")
            assert time.monotonic() - started < 3 * SESSION_TIMEOUT + 10
            assert "Traceback" not in process.log()
        finally:
            process.stop()


def _cpu_seconds(pid: int) -> float:
    """User and system time of a process so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
