"""Guarantee 3, recovery: dead workers' tasks go back, a new master repairs the tree (ch. 4, 5).

Ported from the book's scenarios "worker changes" and "assignment recovery with and without a
status", plus the book's failure of a worker dying while no master is active.
"""

from __future__ import annotations

import signal

from kazoo.client import KazooClient

from masterworker.system.protocol import TaskSpec, TaskStatus, assign_dir, assignment_path, status_path
from tests.conftest import SESSION_TIMEOUT
from tests.helpers import Roles, all_done, assigned, master_id, statuses, submit_many, wait_until


def test_kill_9_of_a_busy_worker_its_tasks_are_done_elsewhere(roles: Roles, spawn, zk: KazooClient) -> None:
    roles.master("m1")
    doomed = spawn("worker", "--id", "w1", "--slots", "2")
    tasks = submit_many(zk, [["sh", "-c", f"sleep 0.5; echo ran {n}"] for n in range(2)])
    wait_until(lambda: sorted(assigned(zk, "w1")) == sorted(tasks), 15, "both tasks assigned to w1")
    wait_until(lambda: doomed.log().count("running task-") == 2, 15, "w1 running both")
    doomed.kill9()
    roles.worker("w2", slots=2)
    wait_until(lambda: all_done(zk, tasks), SESSION_TIMEOUT + 15, "both tasks done by w2")
    done = statuses(zk)
    assert {done[t].worker for t in tasks} == {"w2"}
    assert sorted(done[t].output for t in tasks) == ["ran 0\n", "ran 1\n"]
    wait_until(lambda: zk.exists(assign_dir("w1")) is None, 10, "/assign/w1 removed")


def test_a_new_master_reconciles_a_tree_left_mid_crash(roles: Roles, zk: KazooClient) -> None:
    """Dead workers' assignments with and without a status, and an empty assign node."""
    roles.master("bootstrap")  # creates the parents
    wait_until(lambda: zk.exists("/status"), what="parents")
    roles.stop_all()
    finished = "task-000000000000-0000000001"
    orphan = "task-000000000000-0000000002"
    zk.create(assignment_path("ghost", finished), TaskSpec(argv=["echo", "finished"]).encode(), makepath=True)
    zk.create(status_path(finished), TaskStatus("done", exit_code=0, worker="ghost", output="old").encode())
    zk.create(assignment_path("ghost", orphan), TaskSpec(argv=["echo", "orphan"]).encode())
    zk.create(assign_dir("ghost-empty"))
    roles.master("m2")
    worker = roles.worker("w1")
    wait_until(lambda: orphan in zk.get_children("/status"), 20, "the orphan done")
    done = statuses(zk)
    assert done[orphan].worker == "w1" and done[orphan].output == "orphan\n"
    assert done[finished].output == "old"  # a task with a status is not run again
    assert worker.executions == 1
    wait_until(
        lambda: zk.exists(assign_dir("ghost")) is None and zk.exists(assign_dir("ghost-empty")) is None,
        10,
        "dead workers' assign nodes removed",
    )


def test_a_worker_dying_while_no_master_is_active_loses_nothing(roles: Roles, spawn, zk: KazooClient) -> None:
    """The book's recovery read the assign node's data instead of the task's, and ran empty tasks."""
    first = roles.master("m1")
    doomed = spawn("worker", "--id", "w1")
    tasks = submit_many(zk, [["sh", "-c", "sleep 30"], ["echo", "second"]])
    wait_until(lambda: len(assigned(zk, "w1")) == 2, 15, "both assigned to w1")
    roles.stop(first)
    assert master_id(zk) is None
    doomed.signal(signal.SIGKILL)
    wait_until(lambda: zk.exists("/workers/w1") is None, SESSION_TIMEOUT + 10, "w1's session to expire")
    roles.worker("w2", slots=2)
    roles.master("m2")
    wait_until(lambda: tasks[1] in zk.get_children("/status"), 20, "the second task done by w2")
    done = statuses(zk)
    assert done[tasks[1]].worker == "w2" and done[tasks[1]].output == "second\n"
    wait_until(lambda: tasks[0] in assigned(zk, "w2"), 5, "the long task reassigned to w2")
    spec = TaskSpec.decode(zk.get(assignment_path("w2", tasks[0]))[0])
    assert spec.argv == ["sh", "-c", "sleep 30"]  # the task's own data, not the assign node's
