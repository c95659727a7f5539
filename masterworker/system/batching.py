"""Many tasks per request: the layer under the book's assignment chain (chapter 4, made fast).

The book's master reads one task's data and moves one task per transaction. On a 2-core machine
the cost of a request decides throughput, so the masters read up to 64 tasks' data in one
multi-read (``multiread.py``) and move up to ``BATCH`` tasks in one transaction, with every
transaction in flight at once. A transaction also stays within a byte budget (``budget.py``):
each move's create carries up to 8 KiB of task data and the task's name twice, and a request
over ZooKeeper's ``jute.maxbuffer`` would only lose the connection, again and again. Each task
still moves atomically: its assignment is created and the task deleted in the same transaction,
behind the master's fencing check. What a failed transaction means is ``master_core.outcome``'s
to say; this module only reads and sends.

Usage (the default master's ``_assign``)::

    data = read_tasks(client, [move.task for move in moves])
    for batch, results in commit_moves(master_transaction, moves, data):
        ...  # settle each batch
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import NoNodeError

from masterworker.system.budget import OverBudget, op_bytes, split_by_bytes
from masterworker.system.master_core import BATCH, Move
from masterworker.system.multiread import get_many
from masterworker.system.protocol import EPOCH, MAX_TASK_BYTES, assignment_path, oversized, task_path

# What every master transaction carries besides its moves: the fencing check of its token
# (``/epoch/epoch-<N>-<guid>``; 80 characters is a generous name).
FENCING_BYTES = op_bytes(EPOCH + "/" + "x" * 80)


def read_tasks(client: KazooClient, tasks: list[str]) -> dict[str, bytes | None]:
    """Each task's data, None for a task that is gone; 64 tasks per request."""
    data: dict[str, bytes | None] = {}
    for task, result in zip(tasks, get_many(client, [task_path(t) for t in tasks]), strict=True):
        if isinstance(result, NoNodeError):
            data[task] = None
        elif isinstance(result, Exception):
            raise result
        else:
            data[task] = result[0]
    return data


def add_moves(txn: TransactionRequest, moves: list[Move], data: dict[str, bytes | None]) -> None:
    """Each move's two operations: create ``/assign/<worker>/<task>`` with the task's data, delete the task.

    A task over the size limit (written by someone else) gets a small marker instead of its data,
    so that no transaction outgrows ZooKeeper's 1 MB request limit; its worker fails it with a reason.
    """
    for move in moves:
        txn.create(assignment_path(move.worker, move.task), _payload(move, data))
        txn.delete(task_path(move.task))


def _payload(move: Move, data: dict[str, bytes | None]) -> bytes:
    payload = data[move.task] or b""
    return oversized(len(payload)) if len(payload) > MAX_TASK_BYTES else payload


def move_bytes(move: Move, data: dict[str, bytes | None]) -> int:
    """What one move adds to a transaction: the create of its assignment (with the data) and the delete."""
    return op_bytes(assignment_path(move.worker, move.task), _payload(move, data)) + op_bytes(task_path(move.task))


def move_batches(moves: list[Move], data: dict[str, bytes | None]) -> list[list[Move]]:
    """The moves in order, in transactions of at most BATCH moves and at most ``budget.TXN_BUDGET`` bytes.

    Task data is capped (``add_moves``), so only a move whose names alone take half a megabyte (a
    stranger's node) cannot fit: OverBudget, naming the task and the worker.
    """
    try:
        groups = split_by_bytes([move_bytes(m, data) for m in moves], max_count=BATCH, fixed=FENCING_BYTES)
    except OverBudget as exc:
        move = moves[exc.index]
        raise OverBudget(exc.index, exc.size, exc.budget, f"moving {move.task} to {move.worker}") from None
    return [moves[group.start : group.stop] for group in groups]


def commit_moves(
    transaction: Callable[[], TransactionRequest], moves: list[Move], data: dict[str, bytes | None]
) -> Iterator[tuple[list[Move], list[object]]]:
    """(batch, results) for each transaction of ``move_batches``; all are sent before the first reply
    is awaited. ``transaction`` makes a fenced transaction (it starts with the token check)."""
    sent = []
    for batch in move_batches(moves, data):
        txn = transaction()
        add_moves(txn, batch, data)
        sent.append((batch, txn.commit_async()))
    for batch, pending in sent:
        yield batch, pending.get()
