"""Guarantee 2, assignment: atomic moves, capacity, spreading, order, waiting for a worker (ch. 4).

Ported from the book's scenario "task assignment", plus the book's bug of tasks submitted
while no worker exists never being assigned.
"""

from __future__ import annotations

import threading
import time

from kazoo.client import KazooClient

from masterworker.system.client import submit
from masterworker.system.protocol import TaskSpec, task_sequence
from tests.helpers import Roles, all_done, assigned, pending, statuses, submit_many, wait_until


def test_every_task_runs_once_and_gets_exactly_one_status(roles: Roles, zk: KazooClient) -> None:
    roles.master("m1")
    workers = [roles.worker("w1", slots=2), roles.worker("w2", slots=2)]
    tasks = submit_many(zk, [["echo", f"task {n}"] for n in range(40)])
    wait_until(lambda: all_done(zk, tasks), 60, "all 40 tasks done")
    done = statuses(zk)
    assert set(done) == set(tasks)
    assert all(s.state == "done" and s.exit_code == 0 for s in done.values())
    assert {done[t].output for t in tasks} == {f"task {n}\n" for n in range(40)}
    assert sum(w.executions for w in workers) == 40  # no task ran twice on the happy path
    assert {s.worker for s in done.values()} == {"w1", "w2"}  # load was spread
    assert pending(zk) == [] and assigned(zk, "w1") == [] and assigned(zk, "w2") == []


def test_a_worker_never_holds_more_than_its_slots_plus_prefetch(roles: Roles, zk: KazooClient) -> None:
    roles.master("m1")
    roles.worker("w1", slots=1)
    tasks = submit_many(zk, [["sleep", "0.2"] for _ in range(6)])
    most = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, len(assigned(zk, "w1")))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        wait_until(lambda: all_done(zk, tasks), 30, "all tasks done")
    finally:
        stop.set()
        sampler.join()
    assert most == 1 + 1  # one slot plus the default prefetch of one


def test_tasks_submitted_while_no_worker_exists_wait_and_run_in_order(roles: Roles, zk: KazooClient) -> None:
    master = roles.master("m1")
    wait_until(master.elected.is_set, what="m1 elected")
    tasks = submit_many(zk, [["true"] for _ in range(5)])
    time.sleep(0.5)  # give a wrong assignment every chance: with no worker, nothing may move
    assert sorted(pending(zk)) == sorted(tasks)
    roles.worker("w1", slots=1)
    wait_until(lambda: all_done(zk, tasks), 30, "all tasks done")
    done = statuses(zk)
    by_start = sorted(tasks, key=lambda t: done[t].started_at)
    assert by_start == sorted(tasks, key=task_sequence)  # submission order kept


def test_a_task_submitted_before_any_master_runs_once_one_starts(roles: Roles, zk: KazooClient) -> None:
    """A worker that starts first waits for the parents; a client queues its task at once (it creates
    /tasks the way a master would) and the first master assigns it."""
    worker = roles.worker("w1")
    task = submit(zk, TaskSpec(argv=["true"]))
    assert zk.get_children("/tasks") == [task]
    assert not worker.registered.is_set() and zk.exists("/workers") is None  # only /tasks, never /workers
    roles.master("m1")
    wait_until(lambda: zk.exists("/status") and all_done(zk, [task]), 20, "the early task done")
    assert worker.registered.is_set()
