"""The master again, driven only by completion callbacks (book chapter 7, the C client's master.c).

Usage::

    master = AsyncMaster(client, "master-1")
    master.run()        # only waits for stop(); every step happens in a callback

The default master (``master.py``) runs its own thread and makes blocking calls. This one makes
no blocking call at all: every ZooKeeper operation is a ``*_async`` call whose result is handled
by a callback attached with ``rawlink``, and each callback starts the next operations, the way
``master.c`` chains ``zoo_acreate``/``zoo_aget_children`` completions. The same protocol and
guarantees: election with a fencing token in one transaction (``fencing.py``), fenced transactional
assignment within each worker's capacity, recovery of dead workers' tasks, reconciliation by a
new master, SUSPENDED pausing and LOST demoting.

**Threads.** kazoo runs completions on its completion thread and watch events on its callback
thread; the session state listener runs on its connection thread and may not call ZooKeeper,
so it hands the event over with ``handler.dispatch_callback``. Two threads thus touch the
master's state: every callback takes one lock (callbacks never block, so it is held briefly).
``threads`` records which thread ran which kind of callback; ``mw master --impl async`` logs it.

**Stale callbacks.** After LOST, results of the old session's requests may still arrive.
Every callback carries the *generation* it was started in and is dropped when that has changed.

Reads of task data are pipelined, one request per task, with an ``exists`` of its status beside
it (the multi-read of ``multiread.py`` is the default master's): a task that has a status is
finished and removed from ``/tasks``; the others are planned by kind (``master_core``). A dead
worker's leftovers are read and written ``RECOVERY_CHUNK`` at a time, ``RECOVERY_BATCH`` per
transaction, each chunk starting when the last one is written. Assignment rounds never overlap:
a round that ends with more to do starts the next.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError, NotEmptyError
from kazoo.protocol.states import Callback
from loguru import logger

from masterworker.system.batching import add_moves, move_batches
from masterworker.system.connection import DEFAULT_SESSION_TIMEOUT
from masterworker.system.fencing import Token, claim, deposed, fence, next_token
from masterworker.system.history import History
from masterworker.system.leadership import LeadershipGuard
from masterworker.system.master_core import (
    MAX_ATTEMPTS,
    Cluster,
    Deposed,
    Leftover,
    MasterState,
    Move,
    Outcome,
    candidates,
    outcome,
    plan_moves,
    recovery,
)
from masterworker.system.protocol import (
    ASSIGN,
    EPOCH,
    MASTER,
    PARENTS,
    TASKS,
    WORKERS,
    WorkerInfo,
    assign_dir,
    assignment_path,
    status_path,
    submission_order,
    task_kind,
    task_path,
    worker_path,
)
from masterworker.system.reconcile import RECOVERY_BATCH, RECOVERY_CHUNK, add_recovery
from masterworker.system.security import SECURITY, Policy
from masterworker.system.zkops import failure, session_id

TICK = 1.0  # seconds between housekeeping ticks: a missed watch can never strand the master


class AsyncMaster:
    """See the module docstring."""

    def __init__(
        self,
        client: KazooClient,
        master_id: str,
        fenced: bool = True,
        history: History | None = None,
        policy: Policy | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
    ) -> None:
        self.client = client
        self.id = master_id
        self.fenced = fenced
        self.max_attempts = max_attempts
        self.history = history or History(None)
        self.policy = policy or Policy()
        self._policy_known = policy is not None  # else read /security first, as the default master does
        self.state = MasterState.BACKUP
        self.token: Token | None = None
        self.cluster = Cluster()
        self.elected = threading.Event()
        self.threads: dict[str, set[str]] = defaultdict(set)  # callback kind -> names of the threads that ran it
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._generation = 0
        self._announced_backup = False
        self._assigning = False
        self._again = False
        self._listing_tasks = False
        self._tasks_deferred = False
        self._needs_reconcile = False  # an operation failed while elected: re-read everything at the next tick
        self._dead_found: list[str] = []  # dead workers a reconciliation found: recovered after its first round
        active = (MasterState.ELECTED, MasterState.PAUSED)
        self.guard = LeadershipGuard(client, lambda: self.state in active, session_timeout, self.history, master_id)

    # -- life cycle ------------------------------------------------------------------------------
    def run(self) -> None:
        logger.info("async master {} starting", self.id)
        self.client.default_acl = self.policy.created_by("master")
        self.client.add_listener(self._on_session)
        self.guard.start()
        self._dispatch(self._bootstrap)
        while not self._stop.wait(TICK):
            self._dispatch(self._tick)
        self.guard.stop()
        self.client.remove_listener(self._on_session)
        self.state = MasterState.STOPPED
        self.elected.clear()
        logger.info(
            "async master {} stopped; callbacks ran on: {}",
            self.id,
            "; ".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(self.threads.items())),
        )

    def stop(self) -> None:
        self._stop.set()

    # -- plumbing: callbacks, generations, barriers ---------------------------------------------
    def _guarded(self, kind: str, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self.threads[kind].add(threading.current_thread().name)
            try:
                fn(*args)
            except Deposed:
                self._become_backup("our fencing token is gone (a newer master, or someone removed it)", give_up=True)
            except Exception as exc:  # ConnectionLoss and friends: start over once connected
                logger.warning("{} in {}: will start over once connected", type(exc).__name__, fn.__name__)
                self._trouble()

    def _dispatch(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` on kazoo's callback thread (the state listener may not call ZooKeeper itself)."""
        self.client.handler.dispatch_callback(Callback("master", lambda: self._guarded("dispatched", fn, *args), ()))

    def _then(self, result: Any, fn: Callable[..., None], *args: Any) -> None:
        """When ``result`` completes, call fn(result, *args) on the completion thread, unless stale."""
        generation = self._generation

        def done(completed: Any) -> None:
            if generation == self._generation and not self._stop.is_set():
                self._guarded("completion", fn, completed, *args)

        result.rawlink(done)

    def _all(self, results: list[Any], fn: Callable[..., None], *args: Any) -> None:
        """fn(results, *args) once every one of ``results`` has completed (a barrier of callbacks)."""
        if not results:
            self._guarded("completion", fn, results, *args)
            return
        remaining = [len(results)]

        def one(_: Any) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                fn(results, *args)

        for result in results:
            self._then(result, one)

    def _watcher(self, fn: Callable[..., None], *args: Any) -> Callable[[Any], None]:
        generation = self._generation

        def watch(event: Any) -> None:
            if generation == self._generation and not self._stop.is_set():
                self._guarded("watch", fn, *args)

        return watch

    # -- session ---------------------------------------------------------------------------------
    def _on_session(self, state: KazooState) -> None:  # connection thread: hand over, do nothing else
        self._dispatch(self._session_changed, state)

    def _session_changed(self, state: KazooState) -> None:
        if state == KazooState.SUSPENDED and self.state is MasterState.ELECTED:
            logger.warning("connection SUSPENDED: assigning nothing until we know we still hold /master")
            self.state = MasterState.PAUSED
            self.elected.clear()
        elif state == KazooState.LOST:
            self._become_backup("session LOST: /master and our watches are gone; rejoining as a backup")
        elif state == KazooState.CONNECTED:
            if self.state is MasterState.PAUSED:
                self._then(self.client.get_async(MASTER), self._on_master_after_suspension)
            elif self.state is MasterState.BACKUP:
                self._bootstrap()

    def _trouble(self) -> None:
        """An operation failed (ConnectionLoss...): the tick starts over once we are connected."""
        self._generation += 1
        self._assigning = self._listing_tasks = False
        if self.state is MasterState.ELECTED:
            self._needs_reconcile = True

    def _tick(self) -> None:
        if not self.client.connected:
            return
        if self.state is MasterState.BACKUP:
            self._watch_master()
        elif self.state is MasterState.ELECTED and self._needs_reconcile:
            self._reconcile()
        elif self.state is MasterState.ELECTED:
            self._recover_found()  # no worker, so no assignment round started them

    # -- election ----------------------------------------------------------------------------------
    def _bootstrap(self) -> None:
        if not self._policy_known:  # a master built without a policy uses the system's (chapter 6)
            self._then(self.client.get_async(SECURITY), self._on_policy)
            return
        creates = [self.client.create_async(p, b"", acl=self.policy.for_node(p)) for p in (*PARENTS, EPOCH)]
        self._all(creates, self._after_bootstrap)

    def _on_policy(self, result: Any) -> None:
        if not isinstance(result.exception, NoNodeError):
            self.policy = Policy.decode(result.get()[0])  # NoAuth and friends raise: start over
        self.client.default_acl = self.policy.created_by("master")
        self._policy_known = True
        self._bootstrap()

    def _after_bootstrap(self, results: list[Any]) -> None:
        for result in results:
            if result.exception is not None and not isinstance(result.exception, NodeExistsError):
                raise result.exception
        self._watch_master()

    def _watch_master(self) -> None:
        self._then(self.client.exists_async(MASTER, watch=self._watcher(self._watch_master)), self._on_master_exists)

    def _on_master_exists(self, result: Any) -> None:
        if self.state is not MasterState.BACKUP:
            return
        if result.value is None:
            self._then(self.client.get_children_async(EPOCH), self._on_tokens)
        elif result.value.ephemeralOwner == session_id(self.client):  # our election's reply was lost
            logger.warning("/master is held by our own session, yet we are a backup: giving it up for an election")
            self.client.delete_async(MASTER, version=result.value.version)
        elif not self._announced_backup:
            self._announced_backup = True
            logger.info("another master is active; {} is a backup watching /master", self.id)

    def _on_tokens(self, result: Any) -> None:
        if isinstance(result.exception, NoNodeError):  # /epoch was removed: create it again, then run
            self._bootstrap()
            return
        token, older = next_token(result.get())
        txn = self.client.transaction()
        claim(txn, self.id, token, older, self.policy.for_node(MASTER), self.policy.for_node(EPOCH))
        self._then(txn.commit_async(), self._on_run, token)

    def _on_run(self, result: Any, token: Token) -> None:
        if result.exception is not None:  # ConnectionLoss: did our create happen? Read /master.
            self._then(self.client.get_async(MASTER), self._on_master_after_loss, token)
            return
        failed = failure(result.value)
        if failed is None:
            self._become_master(token)
        elif isinstance(failed[1], NoNodeError):  # an older token changed meanwhile: run again
            self._watch_master()
        elif not isinstance(failed[1], NodeExistsError):
            raise failed[1]

    def _on_master_after_loss(self, result: Any, token: Token) -> None:
        if result.exception is None and result.value[1].ephemeralOwner == session_id(self.client):
            logger.info("ConnectionLoss on the /master create, read /master: it is ours")
            self._become_master(token)
        else:
            self._watch_master()

    def _on_master_after_suspension(self, result: Any) -> None:
        if result.exception is None and result.value[1].ephemeralOwner == session_id(self.client):
            self._then(self.client.exists_async(self.token.path), self._on_token_after_suspension)
        else:
            self._become_backup("reconnected, but /master is no longer ours")

    def _on_token_after_suspension(self, result: Any) -> None:
        if result.exception is None and result.value is not None:
            logger.info("reconnected and /master is still ours (epoch {}): resuming", self.token.number)
            self.state = MasterState.ELECTED
            self.elected.set()
            self._reconcile()
        else:
            self._become_backup("reconnected, but our fencing token is gone", give_up=True)

    def _become_master(self, token: Token) -> None:
        self.token, self.state = token, MasterState.ELECTED
        self._announced_backup = False
        self.history.record("elected", master=self.id, epoch=token.number)
        logger.success("{} elected master (epoch {})", self.id, token.number)
        self.elected.set()  # last: whoever waits for it finds the history and the log written
        self._reconcile()

    def _become_backup(self, why: str, give_up: bool = False) -> None:
        """Stop acting as master; with ``give_up``, delete /master if we hold it so an election runs."""
        was_active = self.state in (MasterState.ELECTED, MasterState.PAUSED)
        if was_active:
            logger.warning("{} steps down: {}", self.id, why)
            self.history.record("deposed", master=self.id, why=why)  # the chaos checker's liveness
        self._generation += 1  # callbacks of what we started as master are stale from now on
        self.state, self.token, self.cluster = MasterState.BACKUP, None, Cluster()
        self._dead_found = []
        if was_active and give_up:
            self._then(self.client.get_async(MASTER), self._on_master_to_give_up)
        self._assigning = self._listing_tasks = False
        self.elected.clear()
        if self.client.connected:
            self._watch_master()

    def _on_master_to_give_up(self, result: Any) -> None:
        if result.exception is None and result.value[1].ephemeralOwner == session_id(self.client):
            self.client.delete_async(MASTER, version=result.value[1].version)

    # -- reading the system ------------------------------------------------------------------------
    def _reconcile(self) -> None:
        self._needs_reconcile = False
        self.cluster = Cluster()
        reads = [
            self.client.get_children_async(WORKERS, watch=self._watcher(self._workers_changed)),
            self.client.get_children_async(ASSIGN),
            self.client.get_children_async(TASKS, watch=self._watcher(self._tasks_changed)),
        ]
        self._all(reads, self._on_tree)

    def _on_tree(self, results: list[Any]) -> None:
        workers, assign_dirs, tasks = (r.get() for r in results)
        # Recovered tasks go first in line: their recovery starts once the first assignment round has
        # sent its reads, so the tasks already pending are not held up by a dead worker's thousands.
        self._dead_found = [worker for worker in assign_dirs if worker not in workers]
        self.cluster.pending = deque(submission_order(tasks))
        self._join(workers)
        logger.info("reconciled: {} worker(s), {} pending task(s)", len(workers), len(tasks))

    def _recover_found(self) -> None:
        found, self._dead_found = self._dead_found, []
        for worker in found:
            self._recover(worker)

    def _join(self, workers: list[str]) -> None:
        for worker in workers:
            self._read_info(worker)

    def _read_info(self, worker: str) -> None:
        """/workers/<w> with a data watch: a worker that announces other slots is read again (clamped)."""
        watch = self._watcher(self._read_info, worker)
        self._then(self.client.get_async(worker_path(worker), watch=watch), self._on_worker_info, worker)

    def _on_worker_info(self, result: Any, worker: str) -> None:
        if result.exception is not None or self.state is not MasterState.ELECTED:
            return  # gone already: the /workers watch says so
        known = worker in self.cluster.workers
        self.cluster.workers[worker] = WorkerInfo.decode(result.value[0])
        if known:
            self._assign()
        else:
            self._read_assigned(worker)

    def _read_assigned(self, worker: str) -> None:
        watch = self._watcher(self._read_assigned, worker)
        self._then(self.client.get_children_async(assign_dir(worker), watch=watch), self._on_assigned, worker)

    def _on_assigned(self, result: Any, worker: str) -> None:
        if worker not in self.cluster.workers:
            return
        if isinstance(result.exception, NoNodeError):  # not (re)created yet: hear when it is
            self.cluster.assigned.pop(worker, None)
            self._then(
                self.client.exists_async(assign_dir(worker), watch=self._watcher(self._read_assigned, worker)),
                lambda _: None,
            )
            return
        self.cluster.assigned[worker] = set(result.get())
        self._assign()

    def _workers_changed(self) -> None:
        self._then(
            self.client.get_children_async(WORKERS, watch=self._watcher(self._workers_changed)), self._on_workers
        )

    def _on_workers(self, result: Any) -> None:
        if self.state is not MasterState.ELECTED:
            return
        live = set(result.get())
        for gone in sorted(set(self.cluster.workers) - live):
            logger.warning("worker {} is gone (its session ended)", gone)
            self.cluster.workers.pop(gone, None)
            self.cluster.assigned.pop(gone, None)
            self._recover(gone)
        self._join(sorted(live - set(self.cluster.workers)))

    def _tasks_changed(self) -> None:
        if self.cluster.enough_pending() or self._listing_tasks:
            self._tasks_deferred = True  # plenty known: new ones come after them; listed when the known run low
            return
        self._tasks_deferred = False
        self._listing_tasks = True
        self._then(self.client.get_children_async(TASKS, watch=self._watcher(self._tasks_changed)), self._on_tasks)

    def _on_tasks(self, result: Any) -> None:
        self._listing_tasks = False
        self.cluster.pending = deque(submission_order(result.get()))
        self._assign()

    # -- fenced writes ------------------------------------------------------------------------------
    def _transaction(self) -> Any:
        txn = self.client.transaction()
        if self.fenced:
            fence(txn, self.token)
        return txn

    def _checked(self, results: list[object]) -> tuple[int, Exception] | None:
        if self.fenced and deposed(results):
            raise Deposed()
        return failure(results)

    # -- recovery -------------------------------------------------------------------------------------
    def _recover(self, worker: str) -> None:
        self._then(self.client.get_children_async(assign_dir(worker)), self._on_orphans, worker)

    def _on_orphans(self, result: Any, worker: str) -> None:
        if result.exception is not None:
            return
        self._recover_chunk(worker, submission_order(result.get()))

    def _recover_chunk(self, worker: str, tasks: list[str]) -> None:
        """Read one chunk of leftovers (assignment, status, place in /tasks); the rest waits for it."""
        if worker in self.cluster.workers:  # it registered again: what is under /assign/<w> is its own
            return
        if not tasks:
            txn = self._transaction()
            txn.delete(assign_dir(worker))
            self._then(txn.commit_async(), self._on_assign_dir_removed, worker)
            return
        chunk, rest = tasks[:RECOVERY_CHUNK], tasks[RECOVERY_CHUNK:]
        reads = [
            r
            for t in chunk
            for r in (
                self.client.exists_async(status_path(t)),
                self.client.exists_async(task_path(t)),
                self.client.get_async(assignment_path(worker, t)),
            )
        ]
        self._all(reads, self._on_orphan_data, worker, chunk, rest)

    def _on_orphan_data(self, reads: list[Any], worker: str, tasks: list[str], rest: list[str]) -> None:
        """Each leftover by its kind (``master_core.recovery``), RECOVERY_BATCH per fenced transaction."""
        leftovers = []
        for index, task in enumerate(tasks):
            has_status, in_tasks, data = reads[3 * index].value, reads[3 * index + 1].value, reads[3 * index + 2]
            if data.exception is None:
                kind = recovery(has_status is not None, in_tasks is not None, data.value[0], self.max_attempts)
                leftovers.append((task, kind))
        batches = [leftovers[start : start + RECOVERY_BATCH] for start in range(0, len(leftovers), RECOVERY_BATCH)]
        commits = []
        for batch in batches:
            txn = self._transaction()
            for task, kind in batch:
                add_recovery(txn, worker, task, kind)
            commits.append(txn.commit_async())
        self._all(commits, self._on_recovered, worker, batches, rest)

    def _on_recovered(self, commits: list[Any], worker: str, batches: list[Any], rest: list[str]) -> None:
        requeued = []
        for batch, commit in zip(batches, commits, strict=True):
            if commit.exception is not None:
                raise commit.exception
            failed = self._checked(commit.value)
            if failed is not None:
                if not isinstance(failed[1], NoNodeError | NodeExistsError):
                    raise failed[1]
                if len(batch) > 1:  # one leftover moved meanwhile: read the batch again and write what is left
                    rest = [task for task, _ in batch] + rest
                continue
            for task, kind in batch:
                self.history.record("recover", task=task, worker=worker, master=self.id, leftover=kind.kind.value)
                if kind.kind is Leftover.ORPHAN:
                    requeued.append(task)
                elif kind.kind is Leftover.GIVEN_UP:
                    logger.error("{} of dead worker {} failed: gave up after its workers died", task, worker)
        self.cluster.requeue(requeued)
        if requeued:
            logger.warning("recovered {} task(s) of dead worker {}", len(requeued), worker)
        self._assign()
        self._recover_chunk(worker, rest)

    def _on_assign_dir_removed(self, result: Any, worker: str) -> None:
        failed = self._checked(result.get())
        if failed is not None and not isinstance(failed[1], NoNodeError | NotEmptyError):
            raise failed[1]

    # -- assignment ---------------------------------------------------------------------------------
    def _assign(self) -> None:
        if self.state is not MasterState.ELECTED:
            return
        if self._assigning:
            self._again = True
            return
        if self._tasks_deferred and not self.cluster.enough_pending():
            self._tasks_changed()
        tasks = candidates(self.cluster)
        if not tasks:
            self._recover_found()
            return
        self._assigning, self._again = True, False
        reads = [
            r
            for task in tasks
            for r in (self.client.get_async(task_path(task)), self.client.exists_async(status_path(task)))
        ]
        self._all(reads, self._on_task_data, tasks)
        self._recover_found()

    def _on_task_data(self, reads: list[Any], tasks: list[str]) -> None:
        data, finished = {}, []
        for index, task in enumerate(tasks):
            read, status = reads[2 * index], reads[2 * index + 1]
            if read.exception is not None:  # gone: taken or deleted
                self.cluster.forget(task)
            elif status.exception is None and status.value is not None:  # finished: never assign it
                self.cluster.forget(task)
                finished.append(task)
            else:
                data[task] = read.value[0]
                self.cluster.kinds[task] = task_kind(data[task])
        self._again |= bool(finished)  # their room is free again: read the next candidates
        for task in finished:
            txn = self._transaction()
            txn.delete(task_path(task))
            self._then(txn.commit_async(), self._on_finished_removed, task)
        ready = [move for move in plan_moves(self.cluster) if move.task in data]  # planned from this read only
        batches = move_batches(ready, data)  # by count and by bytes (budget.py)
        commits = []
        for batch in batches:
            txn = self._transaction()
            add_moves(txn, batch, data)
            commits.append(txn.commit_async())
        self._all(commits, self._on_assigned_batches, batches)

    def _on_finished_removed(self, result: Any, task: str) -> None:
        if self._checked(result.get()) is None:
            logger.warning("{} already has a status: it is finished; removed it from {} unassigned", task, TASKS)
            self.history.record("drop-finished", task=task, master=self.id)

    def _on_assigned_batches(self, commits: list[Any], batches: list[list[Move]]) -> None:
        self._assigning = False
        all_ok = True
        for batch, commit in zip(batches, commits, strict=True):
            if commit.exception is not None:
                raise commit.exception
            result, error = outcome(commit.value, len(batch), self.fenced)
            if result is Outcome.COMMITTED:
                for move in batch:
                    self.cluster.assigned_to(move.task, move.worker)
            elif result is Outcome.DEPOSED:
                raise Deposed()
            elif result is Outcome.UNEXPECTED:
                raise error  # type: ignore[misc]
            else:  # a task went away or a worker's /assign node is missing: the re-reads plan again
                all_ok = False
                for worker in {move.worker for move in batch}:
                    self._read_assigned(worker)
                self._listing_tasks = False
                self._tasks_changed()
        if self._again or (batches and all_ok):
            self._assign()
