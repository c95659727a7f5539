"""What a master repairs, many tasks per request (book chapters 4 and 5, and the book's mixed deployments).

Two kinds of debris reach an active master:

- **A pending task that already has a status.** The book's Java master assigns with two writes
  (create the assignment, then delete the task); if it dies between them the task stays in
  ``/tasks`` while its worker completes it. A careless operator or a hostile client can write a
  status too. A task with a status is finished: the master removes it from ``/tasks`` instead of
  assigning it, so it never runs again. The check costs nothing extra: each candidate's status is
  read in the same multi-read as its data (``read_candidates``).
- **What a dead worker left under ``/assign/<worker>``** (chapter 4's recovery): each leftover by
  its kind (``master_core.recovery``), read three paths per task in one multi-read and written
  ``RECOVERY_BATCH`` leftovers per fenced transaction. A stranger's 10,000 junk nodes under
  ``/assign/ghost`` cost a few hundred requests, not 40,000, and the default master takes them
  ``RECOVERY_CHUNK`` at a time between assignment rounds, so they never delay a takeover.

Usage (the default master)::

    data, finished = read_candidates(client, tasks)      # None for a task that is gone
    leftovers = read_leftovers(client, worker, tasks, max_attempts)
    done = commit_recoveries(master_transaction, worker, leftovers)
"""

from __future__ import annotations

from collections.abc import Callable

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import NodeExistsError, NoNodeError

from masterworker.system.batching import FENCING_BYTES
from masterworker.system.budget import op_bytes, split_by_bytes
from masterworker.system.fencing import deposed
from masterworker.system.master_core import Deposed, Leftover, Recovery, recovery
from masterworker.system.multiread import get_many
from masterworker.system.protocol import assignment_path, status_path, task_path
from masterworker.system.zkops import failure

# Leftovers per recovery transaction at most (two operations each); the byte budget of budget.py
# may cut a transaction shorter.
RECOVERY_BATCH = 32
# Leftovers the default master deals with between two assignment rounds.
RECOVERY_CHUNK = 512


def read_candidates(client: KazooClient, tasks: list[str]) -> tuple[dict[str, bytes | None], set[str]]:
    """Each pending task's data (None: gone) and the tasks that already have a status, in one read."""
    paths = [p for task in tasks for p in (task_path(task), status_path(task))]
    reads = get_many(client, paths)
    data: dict[str, bytes | None] = {}
    finished: set[str] = set()
    for index, task in enumerate(tasks):
        read, status = reads[2 * index], reads[2 * index + 1]
        for result in (read, status):
            if isinstance(result, Exception) and not isinstance(result, NoNodeError):
                raise result
        data[task] = None if isinstance(read, NoNodeError) else read[0]
        if data[task] is not None and not isinstance(status, NoNodeError):
            finished.add(task)
    return data, finished


def remove_finished(transaction: Callable[[], TransactionRequest], fenced: bool, tasks: list[str]) -> list[str]:
    """Delete pending tasks that have a status; the names actually removed by us.

    ``transaction`` makes a fenced transaction when ``fenced``; raises Deposed when the fencing
    check refuses the write.
    """
    removed = []
    for task in tasks:  # rare debris: one small transaction each keeps every outcome clear
        txn = transaction()
        txn.delete(task_path(task))
        failed = _failed(txn.commit(), fenced)
        if failed is None:
            removed.append(task)
        elif not isinstance(failed, NoNodeError):
            raise failed
    return removed


def _failed(results: list[object], fenced: bool) -> Exception | None:
    """The error that made a transaction fail (None: committed); Deposed when it was the token check."""
    if fenced and deposed(results):
        raise Deposed()
    failed = failure(results)
    return None if failed is None else failed[1]


def read_leftovers(client: KazooClient, worker: str, tasks: list[str], max_attempts: int) -> list[tuple[str, Recovery]]:
    """What to do with each of a dead worker's tasks: its assignment's data, its status and its
    place in /tasks, three paths per task in one multi-read. Tasks already gone are left out."""
    paths = [p for task in tasks for p in (assignment_path(worker, task), status_path(task), task_path(task))]
    reads = get_many(client, paths)
    leftovers = []
    for index, task in enumerate(tasks):
        assigned, status, pending = reads[3 * index : 3 * index + 3]
        for result in (assigned, status, pending):
            if isinstance(result, Exception) and not isinstance(result, NoNodeError):
                raise result
        if isinstance(assigned, NoNodeError):
            continue
        has_status, in_tasks = not isinstance(status, NoNodeError), not isinstance(pending, NoNodeError)
        leftovers.append((task, recovery(has_status, in_tasks, assigned[0], max_attempts)))
    return leftovers


def add_recovery(txn: TransactionRequest, worker: str, task: str, leftover: Recovery) -> None:
    """One leftover's operations: back to /tasks, or a failed status, or nothing; then drop the assignment."""
    if leftover.kind is Leftover.ORPHAN:
        txn.create(task_path(task), leftover.data or b"")
    elif leftover.kind is Leftover.GIVEN_UP:
        txn.create(status_path(task), leftover.data or b"")
    txn.delete(assignment_path(worker, task))


def _leftover_bytes(worker: str, task: str, leftover: Recovery) -> int:
    size = op_bytes(assignment_path(worker, task))
    if leftover.kind is Leftover.ORPHAN:
        size += op_bytes(task_path(task), leftover.data or b"")
    elif leftover.kind is Leftover.GIVEN_UP:
        size += op_bytes(status_path(task), leftover.data or b"")
    return size


def commit_recoveries(
    transaction: Callable[[], TransactionRequest], fenced: bool, worker: str, leftovers: list[tuple[str, Recovery]]
) -> list[tuple[str, Recovery]]:
    """Write the leftovers, RECOVERY_BATCH per transaction, all sent before the first reply is
    awaited; a failed batch is written again one leftover at a time. Returns the leftovers written.
    A leftover that moved meanwhile (NoNode, NodeExists) is skipped: the next read sees where it is.
    ``transaction`` makes a fenced transaction when ``fenced``; raises Deposed when the fencing
    check refuses a write."""
    sizes = [_leftover_bytes(worker, task, leftover) for task, leftover in leftovers]
    sent = []
    for group in split_by_bytes(sizes, max_count=RECOVERY_BATCH, fixed=FENCING_BYTES):
        batch = leftovers[group.start : group.stop]
        txn = transaction()
        for task, leftover in batch:
            add_recovery(txn, worker, task, leftover)
        sent.append((batch, txn.commit_async()))
    written = []
    for batch, pending in sent:
        failed = _failed(pending.get(), fenced)
        if failed is None:
            written.extend(batch)
            continue
        for task, leftover in batch:
            if len(batch) > 1:
                txn = transaction()
                add_recovery(txn, worker, task, leftover)
                failed = _failed(txn.commit(), fenced)
            if failed is None:
                written.append((task, leftover))
            elif not isinstance(failed, NoNodeError | NodeExistsError):
                raise failed
    return written
