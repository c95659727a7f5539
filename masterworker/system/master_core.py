"""What a master decides, without any I/O (book chapters 3 to 5): shared by the three masters.

The three masters (``master.py``, ``master_async.py``, ``master_recipes.py``) differ only in how
they are driven: a thread of their own with blocking calls, completion callbacks, or kazoo's
recipes. What they *decide* lives here once, as plain data and functions, unit-tested case by
case (``tests/unit/test_master_core.py``):

- ``Cluster``: the system as the active master believes it (workers, what each holds, what is
  pending), rebuilt from ZooKeeper after every doubt;
- ``candidates`` and ``plan_moves``: which pending tasks to read, and which goes to which worker
  that runs its kind (chapter 4), within windows the master sizes itself (``window.py``);
- ``Leftover`` and ``leftover``: what recovery does with each kind of task a dead worker left,
  including a poison pill whose workers died ``max_attempts`` times;
- ``Outcome`` and ``outcome``: what each failure of a fenced assignment transaction means;
- ``MasterState`` and ``Dirty``, what must be re-read after the events of ``events.py``.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from masterworker.system.events import (
    AssignChanged,
    Event,
    MasterGone,
    TasksChanged,
    WorkerChanged,
    WorkersChanged,
)
from masterworker.system.protocol import TaskStatus, WorkerInfo, with_attempt
from masterworker.system.window import Windows
from masterworker.system.zkops import failure

# Tasks per assignment transaction at most (each task still moves atomically); the byte budget of
# budget.py cuts a transaction of large tasks shorter (batching.move_batches).
BATCH = 64
# Pending tasks looked at per assignment round beyond the room the workers have: tasks no worker
# with room can run (commands, while only the book's workers have room) are skipped, a bounded number.
SKIP_LIMIT = 1024
# A task is given up once its workers died this many times while holding it (``mw master --max-attempts``).
MAX_ATTEMPTS = 3


class MasterState(enum.Enum):
    """The book's master states, plus PAUSED for a connection in doubt."""

    BACKUP = "backup"  # not elected: watching /master
    ELECTED = "elected"  # the active master
    PAUSED = "paused"  # elected, but the connection is SUSPENDED: act on nothing
    STOPPED = "stopped"


class Deposed(Exception):
    """A fenced transaction failed on its token check: a newer master exists, or the token was removed."""


@dataclass
class Dirty:
    """What a master must look at again before it acts (set by events, cleared by reads)."""

    run: bool = True  # a backup: check /master and run for it
    workers: bool = False
    tasks: bool = False
    assign: set[str] = field(default_factory=set)  # workers whose /assign/<w> must be re-read
    info: set[str] = field(default_factory=set)  # workers whose /workers/<w> data changed
    leadership: bool = False  # PAUSED, then reconnected: confirm /master and the token are ours

    def note(self, event: Event) -> None:
        if isinstance(event, MasterGone):
            self.run = True
        elif isinstance(event, WorkersChanged):
            self.workers = True
        elif isinstance(event, WorkerChanged):
            self.info.add(event.worker)
        elif isinstance(event, TasksChanged):
            self.tasks = True
        elif isinstance(event, AssignChanged):
            self.assign.add(event.worker)


# -- the cluster as the master believes it --------------------------------------------------------------
@dataclass
class Cluster:
    """What the active master believes about the system; rebuilt from ZooKeeper after every doubt."""

    workers: dict[str, WorkerInfo] = field(default_factory=dict)
    assigned: dict[str, set[str]] = field(default_factory=dict)  # live worker -> its assigned tasks
    pending: deque[str] = field(default_factory=deque)  # in submission order
    kinds: dict[str, str] = field(default_factory=dict)  # pending task -> its kind, once its data was read
    windows: Windows = field(default_factory=Windows)  # each worker's window, sized by the master (window.py)

    def total_capacity(self) -> int:
        """What the workers announced (not their grown windows): the threshold of ``enough_pending``."""
        return sum(info.capacity for info in self.workers.values())

    def window(self, worker: str) -> int:
        return self.windows.of(worker, self.workers[worker].capacity)

    def free_slots(self, worker: str) -> int:
        return self.window(worker) - len(self.assigned.get(worker, ()))

    def enough_pending(self) -> bool:
        """With thousands of tasks waiting, listing /tasks on every new one would cost O(backlog) per
        event. While more tasks than the workers can take are known, new ones can wait: they come
        after the known ones in submission order anyway."""
        return len(self.pending) > 2 * self.total_capacity()

    def assigned_to(self, task: str, worker: str) -> None:
        self.assigned.setdefault(worker, set()).add(task)
        self.forget(task)

    def forget(self, task: str) -> None:
        """The task left /tasks (assigned, or gone): drop it from the pending queue."""
        self.kinds.pop(task, None)
        if self.pending and self.pending[0] == task:  # the usual case: tasks leave from the front, in order
            self.pending.popleft()
        elif task in self.pending:
            self.pending.remove(task)

    def requeue(self, tasks: list[str]) -> None:
        """Tasks taken back from a dead worker are older than anything pending: first in line."""
        self.pending.extendleft(reversed(tasks))


@dataclass(frozen=True)
class Move:
    """One assignment: the pending ``task`` goes to ``worker``."""

    task: str
    worker: str


def room(cluster: Cluster) -> dict[str, int]:
    """Free room of each worker the master can assign to (its /assign/<w> has been read)."""
    return {w: cluster.free_slots(w) for w in cluster.workers if w in cluster.assigned}


def adapt_windows(cluster: Cluster, now: float | None = None) -> None:
    """Size each ready worker's window by what the master finds before a round (``window.py``)."""
    now = time.monotonic() if now is None else now
    cluster.windows.forget(set(cluster.workers))
    for w in cluster.workers:
        if w in cluster.assigned:
            info = cluster.workers[w]
            cluster.windows.adapt(w, info.capacity, info.slots, len(cluster.assigned[w]), len(cluster.pending), now)


def candidates(cluster: Cluster, now: float | None = None) -> list[str]:
    """The pending tasks to read before planning, in submission order: as many as the workers' windows
    (adapted first) have room for, not counting tasks already known to fit no worker with room (at
    most SKIP_LIMIT of those are passed over). Their data says their kind, and whether they are finished."""
    adapt_windows(cluster, now)
    free = room(cluster)
    total = sum(max(0, f) for f in free.values())
    kinds_with_room = {k for w, f in free.items() if f > 0 for k in cluster.workers[w].runs}
    chosen: list[str] = []
    skipped = 0
    for task in cluster.pending:
        if len(chosen) >= total or skipped > SKIP_LIMIT:
            break
        kind = cluster.kinds.get(task)
        if kind is not None and kind not in kinds_with_room:
            skipped += 1
            continue
        chosen.append(task)
    return chosen


def plan_moves(cluster: Cluster) -> list[Move]:
    """Which pending task goes to which worker: in submission order, each to a worker that runs its
    kind with the most free room in its window (ties: the least loaded), until nobody has room. Only
    tasks whose kind is known (``Cluster.kinds``, from ``candidates``' reads) are planned; a task no
    worker with room can run is passed over. Workers whose /assign/<w> has not been read get nothing.
    Who was given a whole window is noted after (``window.py``)."""
    free = room(cluster)
    if not cluster.pending or not free:
        return []
    moves: list[Move] = []
    load = {w: len(cluster.assigned[w]) for w in free}
    skipped = 0
    for task in cluster.pending:
        kind = cluster.kinds.get(task)
        if kind is None or skipped > SKIP_LIMIT:
            break  # not read yet: the next round reads it
        able = [w for w in free if free[w] > 0 and cluster.workers[w].takes(kind)]
        if not able:
            if not any(f > 0 for f in free.values()):
                break
            skipped += 1
            continue
        worker = max(able, key=lambda w: (free[w], -load[w]))
        moves.append(Move(task, worker))
        free[worker] -= 1
        load[worker] += 1
    for w in free:
        cluster.windows.gave(w, load[w], cluster.workers[w].capacity)
    return moves


# -- recovery -------------------------------------------------------------------------------------------
class Leftover(enum.Enum):
    """A task found under a dead worker's /assign/<w>, by what else exists for it."""

    FINISHED = "finished"  # it has a status (the book's worker completes with two writes): drop the assignment
    DUPLICATE = "duplicate"  # it is in /tasks too (the book's master assigns with two writes): drop the copy
    ORPHAN = "orphan"  # only here: back to /tasks, one attempt more, then drop the assignment, in one transaction
    GIVEN_UP = "given up"  # its workers died max_attempts times: a failed status, then drop the assignment


@dataclass(frozen=True)
class Recovery:
    """What recovery writes for one leftover: ``data`` goes to /tasks/<task> (ORPHAN) or to
    /status/<task> (GIVEN_UP); the assignment is deleted in the same transaction."""

    kind: Leftover
    data: bytes | None = None


def leftover(has_status: bool, in_tasks: bool) -> Leftover:
    if has_status:
        return Leftover.FINISHED
    if in_tasks:
        return Leftover.DUPLICATE
    return Leftover.ORPHAN


def recovery(has_status: bool, in_tasks: bool, data: bytes | None, max_attempts: int = MAX_ATTEMPTS) -> Recovery:
    """A leftover's fate. An orphan goes back to /tasks with one more attempt recorded in its data
    (chapter 4's recovery), unless that makes ``max_attempts``: a task whose every worker died
    is a poison pill, and reassigning it would kill the workers one after another for ever."""
    kind = leftover(has_status, in_tasks)
    if kind is not Leftover.ORPHAN:
        return Recovery(kind)
    again, attempts = with_attempt(data)
    if attempts >= max_attempts > 0:
        reason = f"gave up after {attempts} attempts: its worker died each time"
        return Recovery(Leftover.GIVEN_UP, TaskStatus("failed", reason=reason).encode())
    return Recovery(Leftover.ORPHAN, again)


# -- what a fenced transaction's failure means ------------------------------------------------------------
class Outcome(enum.Enum):
    COMMITTED = "committed"
    DEPOSED = "deposed"  # the token check failed: stop acting as master
    WORKER_NOT_READY = "worker not ready"  # /assign/<worker> is missing: re-read it, assign elsewhere
    TASK_GONE = "task gone"  # /tasks/<task> was deleted, or the assignment exists: forget the task
    BATCH_FAILED = "batch failed"  # one of many moves failed: retry each on its own to find which
    UNEXPECTED = "unexpected"


def outcome(results: list[object], moves: int, fenced: bool) -> tuple[Outcome, Exception | None]:
    """Classify an assignment transaction: [check token]? then (create assignment, delete task) per move.

    The index of the failed operation says which step failed; it means "this move's create" or
    "this move's delete" only once the fencing check's offset is taken off.
    """
    failed = failure(results)
    if failed is None:
        return Outcome.COMMITTED, None
    index, error = failed
    offset = 1 if fenced else 0
    if fenced and index == 0:
        return (Outcome.DEPOSED if isinstance(error, NoNodeError | BadVersionError) else Outcome.UNEXPECTED), error
    if moves > 1:
        return Outcome.BATCH_FAILED, error
    step = index - offset  # 0: create /assign/<w>/<task>, 1: delete /tasks/<task>
    if step == 0 and isinstance(error, NoNodeError):
        return Outcome.WORKER_NOT_READY, error
    if isinstance(error, NoNodeError | NodeExistsError):
        return Outcome.TASK_GONE, error
    return Outcome.UNEXPECTED, error
