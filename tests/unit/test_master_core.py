"""The master's decisions, case by case, without a server (master_core.py)."""

from __future__ import annotations

from collections import deque

import pytest
from kazoo.client import KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, RolledBackError

from masterworker.system.events import AssignChanged, MasterGone, SessionChanged, TasksChanged, WorkersChanged
from masterworker.system.master_core import Cluster, Dirty, Leftover, Move, Outcome, leftover, outcome, plan_moves
from masterworker.system.protocol import WorkerInfo

OK = object()  # a committed operation's result
RB = RolledBackError()


def cluster(pending: list[str], **workers: tuple[int, int, set[str] | None]) -> Cluster:
    """workers: name=(slots, prefetch, assigned or None when its /assign node is not read yet)."""
    c = Cluster(pending=deque(pending))
    for name, (slots, prefetch, assigned) in workers.items():
        c.workers[name] = WorkerInfo(slots=slots, prefetch=prefetch)
        if assigned is not None:
            c.assigned[name] = set(assigned)
    return c


def test_moves_go_in_submission_order_to_the_worker_with_most_room() -> None:
    c = cluster(["t1", "t2", "t3"], w1=(1, 0, set()), w2=(2, 0, set()))
    assert plan_moves(c) == [Move("t1", "w2"), Move("t2", "w1"), Move("t3", "w2")]


def test_moves_stop_when_nobody_has_room() -> None:
    c = cluster(["t1", "t2", "t3"], w1=(1, 1, {"old"}))
    assert plan_moves(c) == [Move("t1", "w1")]


def test_a_worker_whose_assign_node_is_unread_gets_nothing() -> None:
    assert plan_moves(cluster(["t1"], w1=(4, 1, None))) == []


def test_no_workers_no_moves() -> None:
    assert plan_moves(cluster(["t1"])) == []


def test_enough_pending_is_twice_the_capacity() -> None:
    c = cluster([f"t{n}" for n in range(4)], w1=(1, 1, set()))
    assert not c.enough_pending()
    c.pending.append("t4")
    assert c.enough_pending()


def test_forget_and_requeue_keep_the_order() -> None:
    c = cluster(["t3", "t4", "t5"])
    c.forget("t3")
    c.forget("t5")
    c.forget("absent")
    c.requeue(["t1", "t2"])
    assert list(c.pending) == ["t1", "t2", "t4"]
    c.assigned_to("t1", "w1")
    assert list(c.pending) == ["t2", "t4"] and c.assigned == {"w1": {"t1"}}


@pytest.mark.parametrize(
    ("has_status", "in_tasks", "kind"),
    [
        (True, False, Leftover.FINISHED),
        (True, True, Leftover.FINISHED),  # a status wins: the task must not run again
        (False, True, Leftover.DUPLICATE),
        (False, False, Leftover.ORPHAN),
    ],
)
def test_each_leftover_of_a_dead_worker(has_status: bool, in_tasks: bool, kind: Leftover) -> None:
    assert leftover(has_status, in_tasks) is kind


def test_a_committed_transaction() -> None:
    assert outcome([OK, OK, OK], 1, fenced=True) == (Outcome.COMMITTED, None)


@pytest.mark.parametrize("error", [NoNodeError(), BadVersionError()])
def test_a_failed_token_check_deposes(error: Exception) -> None:
    assert outcome([error, RB, RB], 1, fenced=True)[0] is Outcome.DEPOSED


def test_without_fencing_the_first_operation_is_the_create() -> None:
    assert outcome([NoNodeError(), RB], 1, fenced=False)[0] is Outcome.WORKER_NOT_READY


def test_a_missing_assign_node_fails_the_create() -> None:
    assert outcome([RB, NoNodeError(), RB], 1, fenced=True)[0] is Outcome.WORKER_NOT_READY


def test_a_task_gone_fails_the_delete_and_an_existing_assignment_the_create() -> None:
    assert outcome([RB, RB, NoNodeError()], 1, fenced=True)[0] is Outcome.TASK_GONE
    assert outcome([RB, NodeExistsError(), RB], 1, fenced=True)[0] is Outcome.TASK_GONE


def test_in_a_batch_the_index_does_not_say_which_move_failed() -> None:
    """The old code read index 1 as "the first create failed" for any batch size."""
    assert outcome([RB, NoNodeError(), RB, RB, RB], 2, fenced=True)[0] is Outcome.BATCH_FAILED


def test_dirty_marks_follow_events() -> None:
    dirty = Dirty(run=False)
    for event in (WorkersChanged(), TasksChanged(), AssignChanged("w1"), AssignChanged("w1"), MasterGone()):
        dirty.note(event)
    dirty.note(SessionChanged(KazooState.LOST))  # the driver handles sessions itself
    assert (dirty.run, dirty.workers, dirty.tasks, dirty.assign) == (True, True, True, {"w1"})
