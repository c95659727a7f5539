"""Guarantee 4, workers: execution, limits, zombies discarded, re-registration after LOST (ch. 4, 5)."""

from __future__ import annotations

import signal

from kazoo.client import KazooClient

from masterworker.system.client import submit
from masterworker.system.protocol import MAX_OUTPUT_TAIL, PARENTS, TaskSpec, worker_path
from masterworker.system.zkops import expire_session, session_id
from tests.conftest import SESSION_TIMEOUT
from tests.helpers import Roles, all_done, assigned, statuses, submit_many, wait_until


def test_a_zombie_worker_result_is_discarded_and_the_task_has_one_status(roles: Roles, spawn, zk: KazooClient) -> None:
    roles.master("m1")
    zombie = spawn("worker", "--id", "w1")
    wait_until(lambda: zk.exists(worker_path("w1")), 15, "w1 registered")
    (task,) = submit_many(zk, [["sh", "-c", "sleep 1; echo finished"]])
    wait_until(lambda: f"running {task}" in zombie.log(), 15, "w1 running the task")
    zombie.signal(signal.SIGSTOP)  # paused past its session timeout: the ensemble expires it
    wait_until(lambda: zk.exists(worker_path("w1")) is None, SESSION_TIMEOUT + 10, "w1's session to expire")
    roles.worker("w2")
    wait_until(lambda: all_done(zk, [task]), 20, "the task done by w2")
    zombie.signal(signal.SIGCONT)  # it wakes up, finishes its copy, and tries to complete it
    wait_until(lambda: f"discarding our result of {task}" in zombie.log(), 20, "w1 to discard its result")
    done = statuses(zk)
    assert list(done) == [task] and done[task].worker == "w2"


def test_after_a_real_session_expiry_the_worker_registers_again(roles: Roles, zk: KazooClient) -> None:
    roles.master("m1")
    worker = roles.worker("w1")
    wait_until(worker.registered.is_set, what="w1 registered")
    client = roles.session_of(worker)
    old_session = session_id(client)
    expire_session(client)
    wait_until(lambda: session_id(client) != old_session and zk.exists(worker_path("w1")), 15, "a new session")
    assert zk.exists(worker_path("w1")).ephemeralOwner == session_id(client)
    tasks = submit_many(zk, [["echo", "after"]])
    wait_until(lambda: all_done(zk, tasks), 15, "a task done after re-registration")


def test_timeouts_output_tails_failures_and_the_allow_list(roles: Roles, zk: KazooClient) -> None:
    roles.master("m1")
    roles.worker("w1", slots=4, allow=frozenset({"sleep", "sh", "nonexistent-program"}))
    slow = submit(zk, TaskSpec(argv=["sleep", "5"], timeout=0.3))
    chatty = submit(zk, TaskSpec(argv=["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; echo END"]))
    missing = submit(zk, TaskSpec(argv=["nonexistent-program"]))
    refused = submit(zk, TaskSpec(argv=["true"]))
    wait_until(lambda: all_done(zk, [slow, chatty, missing, refused]), 20, "all four done")
    done = statuses(zk)
    assert done[slow].state == "failed" and done[slow].reason == "timed out after 0.3 s"
    assert done[chatty].state == "done" and len(done[chatty].output) == MAX_OUTPUT_TAIL
    assert done[chatty].output.endswith("xxEND\n")
    assert done[missing].state == "failed" and done[missing].exit_code == 127
    assert done[refused].state == "failed" and "not allowed" in done[refused].reason


def test_a_task_with_data_that_is_not_ours_completes_as_done_without_running(roles: Roles, zk: KazooClient) -> None:
    """The book's client sends a plain string; its worker writes "done"."""
    roles.master("m1")
    roles.worker("w1")
    wait_until(lambda: all(zk.exists(p) for p in PARENTS), what="the parents")
    path = zk.create("/tasks/task-", b"sample task from the book", sequence=True)
    task = path.rsplit("/", 1)[1]
    wait_until(lambda: all_done(zk, [task]), 15, "the book task done")
    data = zk.get(f"/status/{task}")[0]
    assert b"done" in data and statuses(zk)[task].exit_code == 0
    assert assigned(zk, "w1") == []
