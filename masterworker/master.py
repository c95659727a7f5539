"""The master and its backups (book chapters 3 to 5).

Usage::

    master = Master(client, "master-1")
    master.run()            # blocks; master.stop() from a signal handler or another thread

**Election (ch. 3).** Every master tries to create the ephemeral ``/master``; one succeeds and
is the active master, the others are backups that watch ``/master`` and run again when it is
deleted (its owner's session closed or expired). The create and the master's fencing token
(``/epoch/epoch-<N>-<guid>``, replacing the older tokens) are one transaction (``fencing.py``).

**Fencing (ch. 5).** A master paused past its session timeout (a long GC, SIGSTOP) wakes up
believing it is still master: a zombie. Every transaction a master writes begins with a check
of its token; once a newer master has been elected the token is gone, the zombie's writes fail
and change nothing, and it gives up ``/master`` (if it still holds it) and becomes a backup.

**Assignment (ch. 4).** One-time watches on ``/workers``, ``/tasks`` and each ``/assign/<w>``
tell the master what changed; after each it re-reads the children (and sets the watch again).
Each pending task moves to the least-loaded worker with room (its slots plus a small
prefetch, which the worker announces), in submission order, in one transaction: check the
fencing token, create the assignment, delete the task. Many tasks may share one transaction;
each still moves atomically.

**Recovery (ch. 4 and 5).** When a worker's ephemeral node goes, its assigned tasks go back to
``/tasks`` (create the task, delete the assignment, in one transaction), except tasks that have
a status already, whose assignment is just removed. A newly elected master reconciles the
whole tree before assigning anything.

**Connection trouble (ch. 5).** On SUSPENDED the master stops assigning until it knows it still
holds ``/master``. On LOST its session is gone and so is everything it believed: it rejoins as
a backup with the new session kazoo opens. Watches and the state listener only put events in
a queue; this class's own thread does all the work, like the book's single event thread.
"""

from __future__ import annotations

import enum
import queue
import threading
from collections import deque
from dataclasses import dataclass, field

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError, NotEmptyError
from kazoo.protocol.states import WatchedEvent
from loguru import logger

from masterworker.fencing import Token, claim, deposed, fence, next_token
from masterworker.history import History
from masterworker.multiread import get_many
from masterworker.protocol import (
    ASSIGN,
    EPOCH,
    MASTER,
    MAX_TASK_BYTES,
    TASKS,
    WORKERS,
    WorkerInfo,
    assign_dir,
    assignment_path,
    oversized,
    status_path,
    submission_order,
    task_path,
    worker_path,
)
from masterworker.security import Policy, install_policy, load_policy
from masterworker.zkops import (
    RECOVERABLE,
    SessionEvents,
    ensure_nodes,
    failure,
    give_up_master,
    owns_ephemeral,
    wait_connected,
)

# Tasks per assignment transaction: each task is still moved atomically.
BATCH = 64


class MasterState(enum.Enum):
    """The book's master states, plus PAUSED for a connection in doubt."""

    BACKUP = "backup"  # not elected: watching /master
    ELECTED = "elected"  # the active master
    PAUSED = "paused"  # elected, but the connection is SUSPENDED: act on nothing
    STOPPED = "stopped"


class Deposed(Exception):
    """A fenced transaction failed on its token check: a newer master exists, or the token was removed."""


@dataclass
class Cluster:
    """What the active master believes about the system; rebuilt from ZooKeeper after every doubt."""

    workers: dict[str, WorkerInfo] = field(default_factory=dict)
    assigned: dict[str, set[str]] = field(default_factory=dict)  # live worker -> its assigned tasks
    pending: deque[str] = field(default_factory=deque)  # in submission order

    def total_capacity(self) -> int:
        return sum(info.capacity for info in self.workers.values())

    def free_slots(self, worker: str) -> int:
        return self.workers[worker].capacity - len(self.assigned.get(worker, ()))


def plan_moves(cluster: Cluster) -> list[tuple[str, str]]:
    """Which pending task goes to which worker: in submission order, each to the worker with the most
    free room (ties: the least loaded), until nobody has room. Shared by all three masters."""
    ready = [w for w in cluster.workers if w in cluster.assigned]
    if not cluster.pending or not ready:
        return []
    moves: list[tuple[str, str]] = []
    free = {w: cluster.free_slots(w) for w in ready}
    load = {w: len(cluster.assigned[w]) for w in ready}
    for task in cluster.pending:
        worker = max(ready, key=lambda w: (free[w], -load[w]))
        if free[worker] <= 0:
            break
        moves.append((task, worker))
        free[worker] -= 1
        load[worker] += 1
    return moves


class Master:
    """An active or backup master; see the module docstring."""

    def __init__(
        self,
        client: KazooClient,
        master_id: str,
        fenced: bool = True,
        history: History | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.client = client
        self.id = master_id
        self.fenced = fenced  # False only for the teaching switch of chapter 5
        self.history = history or History(None)
        self.policy = policy  # None: use the policy the system already has (chapter 6)
        self.state = MasterState.BACKUP
        self.token: Token | None = None  # our fencing token while elected
        self.cluster = Cluster()
        self.events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._resync = True  # re-read everything before the next assignment
        self._dirty: set[str] = {"run"}  # "run", "workers", "tasks", or "assign:<worker>"
        self._announced_backup = False
        self._watchers: dict[tuple[str, str | None], object] = {}
        self._session_events = SessionEvents(client, self.events)
        self.elected = threading.Event()  # set while ELECTED, for tests and the demo

    # -- life cycle ----------------------------------------------------------------------------
    def run(self) -> None:
        logger.info("master {} starting", self.id)
        while not self._stop.is_set():
            try:
                self._bootstrap()
                break
            except RECOVERABLE:
                wait_connected(self.client, self._stop, timeout=1.0)
        while not self._stop.is_set():
            try:
                self._step()
            except Deposed:
                self._step_down("our fencing token is gone (a newer master, or someone removed it)", give_up=True)
            except RECOVERABLE as exc:
                logger.warning(
                    "{} during {} work: will re-read everything once connected",
                    type(exc).__name__,
                    self.state.value,
                )
                self._resync = True
                wait_connected(self.client, self._stop, timeout=1.0)
        self.state = MasterState.STOPPED
        self.elected.clear()
        self._session_events.remove()
        logger.info("master {} stopped", self.id)

    def stop(self) -> None:
        """Ask run() to return; the caller then closes the session, which deletes /master at once."""
        self._stop.set()
        self.events.put(("stop", None))

    def _bootstrap(self) -> None:
        """The book's bootstrap: create the parents, idempotently; any master may do it.

        A secure master (``--secure``) also installs the security policy; every master then
        creates what it creates with the ACLs of that policy.
        """
        if self.policy is not None and self.policy.secure:
            install_policy(self.client, self.policy)  # /security first, then the parents
        else:
            self.policy = load_policy(self.client)
            ensure_nodes(self.client, acl_for=self.policy.for_node)
        self.client.default_acl = self.policy.created_by("master")  # tasks it requeues, assignments

    # -- the event loop -----------------------------------------------------------------------
    def _step(self) -> None:
        busy = (self.state is MasterState.ELECTED and (self._resync or bool(self._actionable()))) or (
            self.state is MasterState.BACKUP and "run" in self._dirty
        )
        self._drain_events(timeout=0.0 if busy else 1.0)
        if self._stop.is_set() or not self.client.connected:
            return
        if "check-leadership" in self._dirty and self.state is MasterState.PAUSED:
            self._dirty.discard("check-leadership")
            self._confirm_leadership()
        if self.state is MasterState.BACKUP and "run" in self._dirty:
            self._dirty.discard("run")
            self._elect_or_watch()
        if self.state is MasterState.ELECTED:
            if self._resync:
                self._reconcile()
            else:
                self._refresh_dirty()
            self._assign()

    def _actionable(self) -> set[str]:
        """Dirty marks there is work for now (a deferred /tasks listing is not)."""
        deferred = {"run"} | ({"tasks"} if self._enough_pending() else set())
        return self._dirty - deferred

    def _drain_events(self, timeout: float) -> None:
        try:
            item = self.events.get(timeout=timeout) if timeout else self.events.get_nowait()
        except queue.Empty:
            if self.state is MasterState.BACKUP:
                self._dirty.add("run")  # cheap periodic check: a missed watch can never strand us
            return
        while True:
            kind, value = item
            if kind == "session":
                self._on_session(value)
            elif kind in ("workers", "tasks", "run"):
                self._dirty.add(kind)
            elif kind == "assign":
                self._dirty.add(f"assign:{value}")
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return

    def _on_session(self, state: KazooState) -> None:
        if state == KazooState.SUSPENDED:
            if self.state is MasterState.ELECTED:
                logger.warning("connection SUSPENDED: assigning nothing until we know we still hold /master")
                self.state = MasterState.PAUSED
                self.elected.clear()
        elif state == KazooState.LOST:
            if self.state in (MasterState.ELECTED, MasterState.PAUSED):
                logger.warning("session LOST: /master and our watches are gone; rejoining as a backup")
            self._become_backup()
        elif state == KazooState.CONNECTED:
            if self.state is MasterState.PAUSED:
                self._dirty.add("check-leadership")
            self._dirty.add("run")

    # -- election --------------------------------------------------------------------------------
    def _elect_or_watch(self) -> None:
        """A backup's check: is there an active master? If not, run; either way, keep a watch."""
        if self.client.exists(MASTER, watch=self._on_master_event) is None:
            self._run_for_master()
        else:
            self._announce_backup()

    def _run_for_master(self) -> None:
        """Create /master and our fencing token in one transaction; on ConnectionLoss, check who won."""
        try:
            token, older = next_token(self.client.get_children(EPOCH))
        except NoNodeError:  # /epoch was removed: create it again (bootstrap), then run
            self._bootstrap()
            self._dirty.add("run")
            return
        txn = self.client.transaction()
        acl = self.policy.for_node if self.policy else (lambda _: None)
        claim(txn, self.id, token, older, acl(MASTER), acl(EPOCH))
        try:
            results = txn.commit()
        except RECOVERABLE:
            # The create may have happened: the book's "ConnectionLoss means check whether you won".
            wait_connected(self.client, self._stop)
            if owns_ephemeral(self.client, MASTER) and self.client.exists(token.path):
                logger.info("ConnectionLoss on the /master create, read /master: it is ours")
                self._become_master(token)
            else:
                self._dirty.add("run")
            return
        failed = failure(results)
        if failed is None:
            self._become_master(token)
        elif isinstance(failed[1], NodeExistsError) and failed[0] == 0:
            self._announce_backup()
        elif isinstance(failed[1], NoNodeError):  # /epoch, or an older token, changed meanwhile: again
            self._dirty.add("run")
        else:
            raise failed[1]

    def _announce_backup(self) -> None:
        if self._announced_backup:
            return
        try:
            holder = self.client.get(MASTER)[0].decode("utf-8", "replace")
        except NoNodeError:
            self._dirty.add("run")  # it went away between our create and this read: run again
            return
        logger.info("{} is the active master; {} is a backup watching /master", holder, self.id)
        self._announced_backup = True

    def _on_master_event(self, event: WatchedEvent) -> None:
        self.events.put(("run", None))

    def _become_master(self, token: Token) -> None:
        self._bootstrap()
        self.token = token
        self.state = MasterState.ELECTED
        self._resync = True
        self._announced_backup = False
        self.history.record("elected", master=self.id, epoch=token.number)
        logger.success("{} elected master (epoch {})", self.id, token.number)
        self.elected.set()  # last: whoever waits for it finds the history and the log written

    def _become_backup(self) -> None:
        self.state = MasterState.BACKUP
        self.elected.clear()
        self.token = None
        self.cluster = Cluster()
        self._resync = True
        self._dirty = {"run"}

    def _step_down(self, why: str, give_up: bool = False) -> None:
        """Become a backup; with ``give_up``, also delete /master if we still hold it, so that an
        election runs at once (standing down while holding /master would stall every backup)."""
        logger.warning("{} steps down: {}", self.id, why)
        if give_up:
            give_up_master(self.client)
        self._become_backup()

    def _confirm_leadership(self) -> None:
        """After SUSPENDED then CONNECTED: the same session, but did we keep /master and our token?"""
        token_there = self.token is not None and self.client.exists(self.token.path) is not None
        if owns_ephemeral(self.client, MASTER) and token_there:
            logger.info("reconnected and /master is still ours (epoch {}): resuming", self.token.number)
            self.state = MasterState.ELECTED
            self.elected.set()
            self._resync = True
        else:
            self._step_down("reconnected, but /master or our fencing token is no longer ours", give_up=True)

    # -- reading the system ----------------------------------------------------------------------
    def _watch(self, kind: str, value: str | None = None):  # noqa: ANN202 - a kazoo watcher
        """One watcher per (kind, value), reused: kazoo keeps each distinct callable until the watch fires."""
        key = (kind, value)
        if key not in self._watchers:

            def watcher(event: WatchedEvent) -> None:
                self.events.put((kind, value))

            self._watchers[key] = watcher
        return self._watchers[key]

    def _read_workers(self) -> set[str]:
        live = set(self.client.get_children(WORKERS, watch=self._watch("workers")))
        known = self.cluster.workers
        for gone in set(known) - live:
            known.pop(gone)
        for worker in sorted(live - set(known)):
            try:
                known[worker] = WorkerInfo.decode(self.client.get(worker_path(worker))[0])
                logger.info("worker {} joined ({} slot(s))", worker, known[worker].slots)
            except NoNodeError:
                live.discard(worker)
        return live

    def _read_assigned(self, worker: str) -> None:
        try:
            tasks = self.client.get_children(assign_dir(worker), watch=self._watch("assign", worker))
        except NoNodeError:
            # The worker has not (re)created its assign node yet: hear when it does.
            self.cluster.assigned.pop(worker, None)
            if self.client.exists(assign_dir(worker), watch=self._watch("assign", worker)) is not None:
                self._dirty.add(f"assign:{worker}")
            return
        self.cluster.assigned[worker] = set(tasks)

    def _read_pending(self) -> None:
        self.cluster.pending = deque(submission_order(self.client.get_children(TASKS, watch=self._watch("tasks"))))

    def _enough_pending(self) -> bool:
        """With thousands of tasks waiting, listing /tasks on every new one would cost O(backlog) per
        event. While more tasks than the workers can take are known, new ones can wait: they come
        after the known ones in submission order anyway."""
        return len(self.cluster.pending) > 2 * self.cluster.total_capacity()

    def _reconcile(self) -> None:
        """A new master (or one that doubted) rebuilds its picture and repairs the tree."""
        self.cluster = Cluster()
        self._dirty = {d for d in self._dirty if not d.startswith(("assign:", "workers", "tasks"))}
        live = self._read_workers()
        for worker in self.client.get_children(ASSIGN):
            if worker not in live:
                self._recover_worker(worker)
        for worker in live:
            self._read_assigned(worker)
        self._read_pending()
        self._resync = False
        logger.info(
            "reconciled: {} worker(s), {} assigned task(s), {} pending task(s)",
            len(live),
            sum(len(t) for t in self.cluster.assigned.values()),
            len(self.cluster.pending),
        )

    def _refresh_dirty(self) -> None:
        dirty, self._dirty = self._dirty, {d for d in self._dirty if d == "run"}
        if "workers" in dirty:
            before = set(self.cluster.workers)
            live = self._read_workers()
            for worker in sorted(before - live):
                logger.warning("worker {} is gone (its session ended)", worker)
                self.cluster.assigned.pop(worker, None)
                self._recover_worker(worker)
            for worker in sorted(live - before):
                self._read_assigned(worker)
        for item in dirty:
            if item.startswith("assign:"):
                worker = item.partition(":")[2]
                if worker in self.cluster.workers:
                    self._read_assigned(worker)
        if "tasks" in dirty:
            if self._enough_pending():
                self._dirty.add("tasks")  # listed later, when the known tasks run low
            else:
                self._read_pending()

    # -- fenced writes -----------------------------------------------------------------------------
    def _transaction(self):  # noqa: ANN202 - kazoo's TransactionRequest
        txn = self.client.transaction()
        if self.fenced:
            fence(txn, self.token)
        return txn

    def _commit(self, txn) -> list[object]:  # noqa: ANN001
        return self._check_fencing(txn.commit())

    def _offset(self) -> int:
        return 1 if self.fenced else 0

    # -- recovery --------------------------------------------------------------------------------
    def _recover_worker(self, worker: str) -> None:
        """Give a dead worker's tasks back to /tasks, then remove its assign node."""
        try:
            tasks = self.client.get_children(assign_dir(worker))
        except NoNodeError:
            return
        requeued = [task for task in submission_order(tasks) if self._recover_task(worker, task)]
        self.cluster.pending.extendleft(reversed(requeued))  # older than anything pending: first in line
        txn = self._transaction()
        txn.delete(assign_dir(worker))
        results = self._commit(txn)
        failed = failure(results)
        if failed is None:
            logger.info("removed {} of dead worker {}", assign_dir(worker), worker)
        elif not isinstance(failed[1], NoNodeError | NotEmptyError):
            raise failed[1]
        if tasks:
            logger.warning("recovered {} task(s) of dead worker {}", len(tasks), worker)

    def _recover_task(self, worker: str, task: str) -> bool:
        """True when the task went back to /tasks."""
        path = assignment_path(worker, task)
        txn = self._transaction()
        if self.client.exists(status_path(task)) is None:
            try:
                data = self.client.get(path)[0]
            except NoNodeError:
                return False
            txn.create(task_path(task), data)
            reassign = True
        else:  # it finished but the worker did not remove the assignment (the book's worker)
            reassign = False
        txn.delete(path)
        failed = failure(self._commit(txn))
        if failed is None:
            logger.info("{} of dead worker {} {}", task, worker, "back to /tasks" if reassign else "had a status")
            return reassign
        if isinstance(failed[1], NodeExistsError):  # a leftover /tasks/<task>: keep it, drop the copy
            txn = self._transaction()
            txn.delete(path)
            self._commit(txn)
            return False
        if not isinstance(failed[1], NoNodeError):
            raise failed[1]
        return False

    # -- assignment ------------------------------------------------------------------------------
    def _assign(self) -> None:
        """Move pending tasks to workers with room, in submission order, least-loaded first."""
        moves = plan_moves(self.cluster)
        if moves:
            self._move(moves)

    def _move(self, moves: list[tuple[str, str]]) -> None:
        """Batches of BATCH tasks, one transaction each, all in flight at once; a failed batch is
        retried task by task."""
        reads = get_many(self.client, [task_path(t) for t, _ in moves])
        batches: list[list[tuple[str, str]]] = [[]]
        txns = [self._transaction()]
        for (task, worker), result in zip(moves, reads, strict=True):
            if isinstance(result, NoNodeError):  # taken by a previous master's last transaction, or deleted
                self._forget_pending(task)
                continue
            if isinstance(result, Exception):
                raise result
            if len(batches[-1]) == BATCH:
                batches.append([])
                txns.append(self._transaction())
            data = result[0] if len(result[0]) <= MAX_TASK_BYTES else oversized(len(result[0]))
            txns[-1].create(assignment_path(worker, task), data)
            txns[-1].delete(task_path(task))
            batches[-1].append((task, worker))
        sent = [(batch, txn.commit_async()) for batch, txn in zip(batches, txns, strict=True) if batch]
        for batch, async_result in sent:
            self._settle_batch(batch, self._check_fencing(async_result.get()))

    def _check_fencing(self, results: list[object]) -> list[object]:
        if self.fenced and deposed(results):
            raise Deposed()
        return results

    def _settle_batch(self, batch: list[tuple[str, str]], results: list[object]) -> None:
        failed = failure(results)
        if failed is None:
            for task, worker in batch:
                self.cluster.assigned.setdefault(worker, set()).add(task)
                self._forget_pending(task)
                logger.debug("assigned {} to {}", task, worker)
            return
        if len(batch) > 1:
            for move in batch:
                self._move([move])
            return
        task, worker = batch[0]
        error = failed[1]
        if isinstance(error, NoNodeError) and failed[0] == self._offset():  # /assign/<worker> is missing
            logger.debug("{} is not ready: {} is missing", worker, assign_dir(worker))
            self.cluster.assigned.pop(worker, None)
            self._dirty.add(f"assign:{worker}")
        elif isinstance(error, NoNodeError | NodeExistsError):
            self._forget_pending(task)
        else:
            raise error

    def _forget_pending(self, task: str) -> None:
        pending = self.cluster.pending
        if pending and pending[0] == task:  # the usual case: tasks leave from the front, in order
            pending.popleft()
            return
        try:
            pending.remove(task)
        except ValueError:
            pass
