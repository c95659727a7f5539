"""One set of scenarios, three masters (chapters 3-5, 7 and 8): the same guarantees whichever way it is written."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from masterworker.lab.chaos.proxy import OP_MULTI, DroppingProxy
from masterworker.system.client import submit
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.system.masters import IMPLEMENTATIONS
from masterworker.system.protocol import TaskSpec, TaskStatus, assign_dir, assignment_path, status_path
from tests.conftest import SESSION_TIMEOUT
from tests.helpers import Roles, all_done, assigned, master_id, pending, statuses, submit_many, wait_until

IMPLS = list(IMPLEMENTATIONS)


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    return request.param


def test_election_with_backups_one_at_a_time_and_clean_handover(roles: Roles, zk: KazooClient, impl: str) -> None:
    masters = [roles.master(f"m{n}", impl=impl) for n in (1, 2, 3)]
    wait_until(lambda: any(m.elected.is_set() for m in masters), what="a master elected")
    most = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, sum(m.elected.is_set() for m in masters))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(2):
            active = next(m for m in masters if m.elected.is_set())
            assert master_id(zk) == active.id
            started = time.monotonic()
            roles.stop(active)
            masters.remove(active)
            wait_until(lambda: any(m.elected.is_set() for m in masters), 5, "a backup to take over")
            assert time.monotonic() - started < 1.5
    finally:
        stop.set()
        sampler.join()
    assert most == 1


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_takeover_after_kill_9_and_sigterm(spawn, zk: KazooClient, impl: str, how: str) -> None:
    first = spawn("master", "--id", "m1", "--impl", impl)
    wait_until(lambda: master_id(zk) == "m1", 20, "m1 elected")
    spawn("master", "--id", "m2", "--impl", impl)
    time.sleep(0.5)  # m2 settles as a backup (the recipes master: in the election's queue)
    started = time.monotonic()
    first.kill9() if how == "kill9" else first.signal(signal.SIGTERM)
    wait_until(lambda: master_id(zk) == "m2", SESSION_TIMEOUT + 10, "m2 elected")
    took = time.monotonic() - started
    assert took < (SESSION_TIMEOUT + 1.5 if how == "kill9" else 1.0), took


def test_assignment_within_capacity_and_waiting_for_the_first_worker(roles: Roles, zk: KazooClient, impl: str) -> None:
    master = roles.master("m1", impl=impl)
    wait_until(master.elected.is_set, what="m1 elected")
    tasks = submit_many(zk, [["sleep", "0.2"] for _ in range(6)])
    time.sleep(0.5)
    assert sorted(pending(zk)) == sorted(tasks)  # no worker yet: they wait
    roles.worker("w1", slots=1)
    most = 0
    while not all_done(zk, tasks):
        most = max(most, len(assigned(zk, "w1")))
    assert most == 2  # one slot plus the default prefetch of one
    assert {s.worker for s in statuses(zk).values()} == {"w1"}


def test_recovery_of_a_dead_workers_tasks(roles: Roles, spawn, zk: KazooClient, impl: str) -> None:
    roles.master("m1", impl=impl)
    doomed = spawn("worker", "--id", "w1", "--slots", "2")
    tasks = submit_many(zk, [["sh", "-c", f"sleep 0.5; echo {n}"] for n in range(2)])
    wait_until(lambda: sorted(assigned(zk, "w1")) == sorted(tasks), 15, "both assigned to w1")
    doomed.kill9()
    roles.worker("w2", slots=2)
    wait_until(lambda: all_done(zk, tasks), SESSION_TIMEOUT + 15, "both done by w2")
    assert {statuses(zk)[t].worker for t in tasks} == {"w2"}
    wait_until(lambda: zk.exists(assign_dir("w1")) is None, 10, "/assign/w1 removed")


def test_a_new_master_reconciles_a_tree_left_mid_crash(roles: Roles, zk: KazooClient, impl: str) -> None:
    first = roles.master("bootstrap", impl=impl)
    wait_until(first.elected.is_set, what="parents")
    roles.stop_all()
    finished, orphan = "task-000000000000-0000000001", "task-000000000000-0000000002"
    zk.create(assignment_path("ghost", finished), TaskSpec(argv=["echo", "finished"]).encode(), makepath=True)
    zk.create(status_path(finished), TaskStatus("done", exit_code=0, worker="ghost", output="old").encode())
    zk.create(assignment_path("ghost", orphan), TaskSpec(argv=["echo", "orphan"]).encode())
    zk.create(assign_dir("ghost-empty"))
    roles.master("m2", impl=impl)
    roles.worker("w1")
    wait_until(lambda: orphan in zk.get_children("/status"), 20, "the orphan done")
    done = statuses(zk)
    assert done[orphan].output == "orphan\n" and done[finished].output == "old"
    wait_until(
        lambda: zk.exists(assign_dir("ghost")) is None and zk.exists(assign_dir("ghost-empty")) is None,
        10,
        "dead workers' assign nodes removed",
    )


def test_a_paused_master_is_fenced(roles: Roles, spawn, zk: KazooClient, impl: str) -> None:
    paused = spawn("master", "--id", "m1", "--impl", impl)
    wait_until(lambda: master_id(zk) == "m1", 20, "m1 elected")
    backup = roles.master("m2", impl=impl)
    roles.worker("w1", slots=2)
    roles.worker("w2", slots=2)
    first = submit_many(zk, [["echo", f"a{n}"] for n in range(8)])
    wait_until(lambda: all_done(zk, first), 20, "the first batch")
    paused.signal(signal.SIGSTOP)
    wait_until(backup.elected.is_set, SESSION_TIMEOUT + 10, "m2 elected while m1 is frozen")
    second = submit_many(zk, [["echo", f"b{n}"] for n in range(8)])
    paused.signal(signal.SIGCONT)
    wait_until(lambda: all_done(zk, second), 20, "the second batch")
    wait_until(lambda: "LOST" in paused.log() or "steps down" in paused.log(), 15, "m1 to notice")
    assert master_id(zk) == "m2"
    assert set(statuses(zk)) == set(first) | set(second) and zk.get_children("/tasks") == []


@pytest.fixture
def proxy(zk_server) -> Iterator[DroppingProxy]:
    with DroppingProxy(zk_server.servers[0].config.client_port) as running:
        yield running


def test_connection_loss_during_assignment(roles: Roles, zk: KazooClient, zk_hosts: str, proxy, impl: str) -> None:
    chroot = zk_hosts[zk_hosts.index("/") :]
    proxied = connect(ZkSettings(hosts=proxy.address + chroot, session_timeout=10))
    try:
        roles.worker("w1", slots=2)
        master = IMPLEMENTATIONS[impl](proxied, "m1")
        roles._start(master, proxied)
        wait_until(master.elected.is_set, 15, "m1 elected")
        time.sleep(0.3)
        proxy.drop_reply_after(OP_MULTI)
        tasks = [submit(zk, TaskSpec(argv=["echo", f"t{n}"])) for n in range(5)]
        wait_until(lambda: all_done(zk, tasks), 30, "all tasks done")
        wait_until(proxy.dropped.is_set, 5, "a reply dropped")
        assert set(statuses(zk)) == set(tasks)
    finally:
        roles.stop_all()
        close_quietly(proxied)


def test_a_mixed_deployment_recipes_backup_behind_a_default_master(spawn, roles: Roles, zk: KazooClient) -> None:
    default = spawn("master", "--id", "default-1")
    wait_until(lambda: master_id(zk) == "default-1", 20, "the default master elected")
    backup = roles.master("recipes-1", impl="recipes")
    roles.worker("w1")
    time.sleep(0.5)
    assert not backup.elected.is_set()
    default.kill9()
    wait_until(backup.elected.is_set, SESSION_TIMEOUT + 10, "the recipes backup to take over")
    tasks = submit_many(zk, [["echo", "mixed"]])
    wait_until(lambda: all_done(zk, tasks), 15, "a task under the new master")


# -- what outsiders leave or do: each master must still finish new tasks within a bound -----------


def never_two_active(masters: list) -> Callable[[], int]:
    """Sample how many masters believe they are active, until the returned function is called."""
    most = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], sum(m.elected.is_set() for m in masters))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def finish() -> int:
        stop.set()
        sampler.join()
        return most[0]

    return finish


def test_a_task_left_both_in_tasks_and_in_a_dead_workers_assign_runs_once(
    roles: Roles, zk: KazooClient, impl: str
) -> None:
    """The book's Java master assigns with two writes; a crash between them leaves both copies."""
    first = roles.master("bootstrap", impl=impl)
    wait_until(first.elected.is_set, what="parents")
    roles.stop_all()
    task = "task-000000000000-0000000001"
    data = TaskSpec(argv=["echo", "once"]).encode()
    zk.create(f"/tasks/{task}", data)
    zk.create(assignment_path("ghost", task), data, makepath=True)
    roles.master("m2", impl=impl)
    roles.worker("w1")
    wait_until(lambda: all_done(zk, [task]), 20, "the task done")
    wait_until(lambda: zk.exists(assign_dir("ghost")) is None, 10, "/assign/ghost removed")
    assert statuses(zk)[task].output == "once\n" and zk.get_children("/tasks") == []


def test_a_master_built_without_a_policy_uses_the_systems(roles: Roles, impl: str, tmp_path) -> None:
    from kazoo.security import OPEN_ACL_UNSAFE

    from masterworker.system.security import Policy, install_policy

    users = tmp_path / "users.txt"
    users.write_text("master alice:s3cret\nworker bob:hunter2\nclient carol:letmein\n")
    admin = roles.client(auth="alice:s3cret")
    install_policy(admin, Policy.from_users_file(users))
    client = roles.client(auth="alice:s3cret")
    master = roles._start(IMPLEMENTATIONS[impl](client, "m1"), client)  # no policy given
    wait_until(master.elected.is_set, what="m1 elected")
    roles.worker("w1", auth="bob:hunter2", slots=1)
    submitter = roles.client(auth="carol:letmein")
    from masterworker.system.security import apply_role_acl

    apply_role_acl(submitter, "client")
    slow = submit(submitter, TaskSpec(argv=["sleep", "5"]))
    wait_until(lambda: admin.exists(assignment_path("w1", slow)), 15, "the task assigned")
    acl, _ = admin.get_acls(assignment_path("w1", slow))
    assert acl != OPEN_ACL_UNSAFE and all(entry.id.scheme == "digest" for entry in acl)
    token = admin.get_children("/epoch")[0]
    assert all(entry.id.scheme == "digest" for entry in admin.get_acls(f"/epoch/{token}")[0])


@pytest.mark.parametrize("tamper", ["delete-epoch", "set-epoch", "delete-token"])
def test_an_outsider_tampering_with_the_fencing_token_stalls_nothing(
    roles: Roles, zk: KazooClient, impl: str, tamper: str
) -> None:
    masters = [roles.master(f"m{n}", impl=impl) for n in (1, 2)]
    roles.worker("w1", slots=2)
    wait_until(lambda: any(m.elected.is_set() for m in masters), what="a master elected")
    first = submit_many(zk, [["echo", "before"]])
    wait_until(lambda: all_done(zk, first), 15, "a task before the tampering")
    most = never_two_active(masters)
    if tamper == "delete-epoch":
        zk.delete("/epoch", recursive=True)  # zkCli.sh deleteall /epoch
    elif tamper == "set-epoch":
        zk.set("/epoch", b"garbage")  # zkCli.sh set /epoch garbage: a version bump
    else:
        zk.delete(f"/epoch/{zk.get_children('/epoch')[0]}")
    started = time.monotonic()
    probe = submit_many(zk, [["echo", "probe"]])
    wait_until(lambda: all_done(zk, probe), 15, "a probe task after the tampering")
    assert time.monotonic() - started < 10
    assert most() == 1
    assert len([t for t in zk.get_children("/epoch") if t.startswith("epoch-")]) == 1
