"""ConnectionLoss at the worst moment: the request was applied, the reply lost (ch. 3, 5, 8).

A proxy between one client and the server forwards a create (or a multi), swallows the reply
and cuts the connection. Each role must find out what really happened instead of guessing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss
from loguru import logger

from masterworker.lab.chaos.proxy import CREATE_OPS, OP_MULTI, DroppingProxy
from masterworker.system.client import Collector, consume_status, submit
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.system.master import Master
from masterworker.system.protocol import MASTER, STATUS, TaskSpec, TaskStatus, status_path, worker_path
from masterworker.system.worker import Worker
from masterworker.system.zkops import ensure_nodes, session_id
from masterworker.zk.server import LocalZooKeeper
from tests.helpers import Roles, all_done, statuses, wait_until


@pytest.fixture
def proxy(zk_server: LocalZooKeeper) -> Iterator[DroppingProxy]:
    with DroppingProxy(zk_server.servers[0].config.client_port) as running:
        yield running


@pytest.fixture
def proxied(proxy: DroppingProxy, zk_hosts: str) -> Iterator[KazooClient]:
    """A client whose connection goes through the proxy, in the test's chroot."""
    chroot = zk_hosts[zk_hosts.index("/") :]
    client = connect(ZkSettings(hosts=proxy.address + chroot, session_timeout=10))
    yield client
    close_quietly(client)


def test_a_naive_retried_sequential_create_duplicates_the_task(proxy, proxied: KazooClient, zk) -> None:
    """Why protected names exist: the book's client may submit a task twice."""
    ensure_nodes(zk)
    proxy.drop_reply_after(*CREATE_OPS)
    with pytest.raises(ConnectionLoss):
        proxied.create("/tasks/task-", b"naive", sequence=True)
    proxied.create("/tasks/task-", b"naive", sequence=True)  # the naive retry
    assert len(zk.get_children("/tasks")) == 2


def test_submit_after_connection_loss_finds_its_task_instead_of_duplicating(proxy, proxied, zk) -> None:
    ensure_nodes(zk)
    proxy.drop_reply_after(*CREATE_OPS)
    task = submit(proxied, TaskSpec(argv=["true"]))
    assert proxy.dropped.is_set()
    assert zk.get_children("/tasks") == [task]


def test_connection_loss_on_the_master_create_means_check_whether_you_won(proxy, proxied, zk, roles) -> None:
    ensure_nodes(zk)
    master = Master(proxied, "m1")
    proxy.drop_reply_after(OP_MULTI)  # the election is one transaction: /master and its fencing token
    roles._start(master, proxied)
    wait_until(master.elected.is_set, 15, "m1 elected after losing the reply")
    assert proxy.dropped.is_set()
    assert zk.get(MASTER)[1].ephemeralOwner == session_id(proxied)


def test_dropped_reply_to_worker_registration_nodeexists_is_success(proxy, proxied, zk, roles) -> None:
    ensure_nodes(zk)
    zk.create("/assign/w1")  # so the armed create is the registration itself
    worker = Worker(proxied, "w1")
    proxy.drop_reply_after(*CREATE_OPS)
    roles._start(worker, proxied)
    wait_until(worker.registered.is_set, 15, "w1 registered")
    assert proxy.dropped.is_set()
    assert zk.get(worker_path("w1"))[1].ephemeralOwner == session_id(proxied)


def test_connection_loss_during_assignment_resyncs_without_duplicates(proxy, proxied, zk, roles: Roles) -> None:
    """The master's assignment transaction is applied, its reply lost: it re-reads, nothing moves twice."""
    roles.worker("w1")
    master = Master(proxied, "m1")
    roles._start(master, proxied)
    wait_until(master.elected.is_set, 15, "m1 elected")
    proxy.drop_reply_after(OP_MULTI)
    tasks = [submit(zk, TaskSpec(argv=["echo", f"t{n}"])) for n in range(5)]
    wait_until(lambda: all_done(zk, tasks), 20, "all tasks done")
    wait_until(proxy.dropped.is_set, 5, "a reply dropped")
    assert set(statuses(zk)) == set(tasks)


def test_connection_loss_on_completion_the_worker_recognises_its_own_record(proxy, proxied, zk, roles) -> None:
    roles.master("m1")
    worker = Worker(proxied, "w1")
    roles._start(worker, proxied)
    wait_until(worker.registered.is_set, 15, "w1 registered")
    proxy.drop_reply_after(OP_MULTI)
    task = submit(zk, TaskSpec(argv=["echo", "once"]))
    wait_until(lambda: all_done(zk, [task]), 20, "the task done")
    wait_until(proxy.dropped.is_set, 5, "the reply to the completion dropped")
    wait_until(lambda: worker.completed + worker.discarded == 1, 15, "the worker to settle its completion")
    assert worker.completed == 1 and worker.discarded == 0  # it recognised its own record by its run id
    assert statuses(zk)[task].worker == "w1" and worker.executions == 1


def _finished_records(zk: KazooClient, n: int) -> list[str]:
    ensure_nodes(zk)
    names = [f"task-0a1b2c3d4e5f-{i:010d}" for i in range(n)]
    for name in names:
        zk.create(status_path(name), TaskStatus(state="done", exit_code=0).encode())
    return names


def test_collecting_results_whose_reply_was_lost_deletes_them_again_one_by_one(proxy, proxied, zk) -> None:
    """mw submit --file collects 64 records per multi: a lost reply (it committed, or not) was a traceback."""
    names = _finished_records(zk, 100)
    proxied.get_children(STATUS)  # connected through the proxy before it is armed
    proxy.drop_reply_after(OP_MULTI)
    collector = Collector(proxied)
    collector.send(names)
    assert collector.finish() == []
    assert proxy.dropped.is_set()
    assert zk.get_children(STATUS) == []


def test_collecting_while_no_server_answers_gives_up_after_its_patience_and_leaves_the_records(
    proxy, proxied, zk
) -> None:
    names = _finished_records(zk, 10)
    proxied.get_children(STATUS)
    proxy.stop()  # no server answers this client any more
    wait_until(lambda: not proxied.connected, 15, "the client to see its connection gone")
    collector = Collector(proxied)
    collector.send(names)
    began = time.monotonic()
    assert collector.finish(patience=1.0) == names
    assert time.monotonic() - began < 5
    assert consume_status(proxied, names[0], patience=1.0) is False  # mw result NAME: the same, said
    assert sorted(zk.get_children(STATUS)) == names


def test_completions_after_the_session_was_closed_are_one_line_each_batch(zk_hosts: str, zk) -> None:
    """A worker stopping while no server answers has its session closed (``release_when_stuck``); the
    tasks it finishes then cannot be recorded: one warning per batch, no traceback, counted as
    discarded (the next master gives them to another worker), and the completer ends."""
    ensure_nodes(zk)
    client = connect(ZkSettings(hosts=zk_hosts, session_timeout=10))
    worker = Worker(client, "w1")
    client.stop()  # what release_when_stuck does
    now = time.time()
    for n in range(3):
        worker._completions.put((f"task-{n:010d}", TaskStatus("done", exit_code=0, started_at=now, ended_at=now)))
    worker._completions.put(None)
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING", format="{level} {message}")
    try:
        worker._complete_loop()  # returns: the None ends it
    finally:
        logger.remove(sink)
    assert worker.discarded == 3 and worker.completed == 0
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "3 task(s)" in lines[0] and "another worker" in lines[0], lines[0]
