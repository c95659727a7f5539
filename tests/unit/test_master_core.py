"""The master's decisions, case by case, without a server (master_core.py)."""

from __future__ import annotations

from collections import deque

import pytest
from kazoo.client import KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, RolledBackError

from masterworker.system.events import (
    AssignChanged,
    MasterGone,
    SessionChanged,
    TasksChanged,
    WorkerChanged,
    WorkersChanged,
)
from masterworker.system.master_core import (
    Cluster,
    Dirty,
    Leftover,
    Move,
    Outcome,
    candidates,
    leftover,
    outcome,
    plan_moves,
    recovery,
)
from masterworker.system.protocol import BOOK, COMMAND, MAX_CAPACITY, TaskSpec, TaskStatus, WorkerInfo

OK = object()  # a committed operation's result
RB = RolledBackError()


def cluster(pending: list[str], **workers: tuple[int, int, set[str] | None]) -> Cluster:
    """workers: name=(slots, prefetch, assigned or None when its /assign node is not read yet)."""
    c = Cluster(pending=deque(pending), kinds=dict.fromkeys(pending, COMMAND))
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


def test_tasks_not_read_yet_are_not_planned_and_candidates_are_as_many_as_the_room() -> None:
    c = cluster([], w1=(2, 1, {"old"}))
    c.pending.extend(["t1", "t2", "t3", "t4"])
    assert plan_moves(c) == []
    assert candidates(c) == ["t1", "t2"]


def test_commands_go_only_to_workers_that_run_them_and_book_tasks_to_anyone() -> None:
    c = cluster(["cmd1", "book1", "cmd2", "book2"], mw=(1, 0, set()))
    c.workers["book-worker"] = WorkerInfo.decode(b"Idle")
    c.assigned["book-worker"] = set()
    c.kinds.update(book1=BOOK, book2=BOOK)
    assert plan_moves(c) == [Move("cmd1", "mw"), Move("book1", "book-worker"), Move("book2", "book-worker")]


def test_commands_nobody_with_room_can_run_are_passed_over_when_choosing_what_to_read() -> None:
    c = cluster(["cmd1", "cmd2", "new1", "new2"])
    c.workers["book-worker"] = WorkerInfo.decode(b"Idle")
    c.assigned["book-worker"] = set()
    del c.kinds["new1"], c.kinds["new2"]
    assert candidates(c) == ["new1", "new2"]  # room for two ("Idle": one slot, one prefetched); commands skipped
    assert plan_moves(c) == []  # new1's kind is not known until it is read


def test_a_stranger_announcing_a_huge_capacity_gets_at_most_the_clamp() -> None:
    evil = WorkerInfo.decode(b'{"slots": 1, "prefetch": 1024}')
    assert evil.capacity == MAX_CAPACITY
    assert WorkerInfo.decode(b'{"slots": 100000, "prefetch": 100000}').capacity == MAX_CAPACITY


def test_the_books_worker_runs_book_tasks_only_and_an_older_mw_worker_both() -> None:
    assert WorkerInfo.decode(b"Idle").runs == {BOOK}
    assert WorkerInfo.decode(b'{"slots": 2}').runs == {BOOK, COMMAND}
    assert WorkerInfo.decode(WorkerInfo(runs=frozenset({COMMAND})).encode()).runs == {COMMAND}


def test_a_worker_data_change_marks_it_for_a_re_read() -> None:
    dirty = Dirty()
    dirty.note(WorkerChanged("w1"))
    assert dirty.info == {"w1"}


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


def test_an_orphan_goes_back_with_one_more_attempt_recorded() -> None:
    data = TaskSpec(argv=["sh", "-c", "kill -9 $PPID"]).encode()
    first = recovery(has_status=False, in_tasks=False, data=data)
    assert first.kind is Leftover.ORPHAN and TaskSpec.decode(first.data).attempts == 1
    second = recovery(False, False, first.data)
    assert second.kind is Leftover.ORPHAN and TaskSpec.decode(second.data).argv == ["sh", "-c", "kill -9 $PPID"]


def test_a_task_whose_worker_died_max_attempts_times_is_given_up_with_the_reason() -> None:
    data = TaskSpec(argv=["crash"], attempts=2).encode()
    given_up = recovery(False, False, data, max_attempts=3)
    assert given_up.kind is Leftover.GIVEN_UP
    status = TaskStatus.decode(given_up.data)
    assert status.state == "failed" and status.reason == "gave up after 3 attempts: its worker died each time"
    assert recovery(False, False, data, max_attempts=0).kind is Leftover.ORPHAN  # 0: never give up


def test_a_book_task_carries_no_count_and_always_goes_back() -> None:
    assert recovery(False, False, b"plain string", max_attempts=1) == recovery(False, False, b"plain string")
    assert recovery(False, False, b"plain string").data == b"plain string"


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
