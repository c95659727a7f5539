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
Then the book's chain, in ``_assign``: plan which pending task goes to which worker (the
least-loaded with room: its slots plus a small prefetch, which the worker announces), read each
task's data, and move it in one transaction: check the fencing token, create the assignment,
delete the task. Reading many tasks in one request and putting many moves in one transaction
are ``batching.py``'s business, behind two calls; each task still moves atomically.

The decisions (the cluster as believed, the plan, what each leftover and each failure means)
are ``master_core.py``'s, shared with the chapter-7 and chapter-8 masters.

**Capabilities.** A worker says what it runs: the book's worker ("Idle") gets only the book's
plain tasks, never a command it would "complete" without running (``protocol.py``). The master
reads the head of ``/tasks`` (each task's data and status in one request), learns each task's
kind, and plans only moves a worker can run; a task that already has a status is finished and
is removed from ``/tasks`` instead (``reconcile.py``). A worker's announced capacity is clamped
and read again whenever its ``/workers/<w>`` data changes (a data watch).

**Recovery (ch. 4 and 5).** When a worker's ephemeral node goes, its assigned tasks go back to
``/tasks`` (create the task, delete the assignment, in one transaction), except tasks that have
a status already, whose assignment is just removed. Each task going back records one more
attempt in its data; a task whose workers died ``max_attempts`` times is a poison pill and
completes as failed with the reason instead. Leftovers are written many per transaction and a
bounded number per round, between assignment rounds: a dead worker's 10,000 leftovers never delay
the takeover. A newly elected master reconciles the whole tree before assigning anything.

**Connection trouble (ch. 5).** On SUSPENDED the master stops assigning until it knows it still
holds ``/master``. On LOST its session is gone and so is everything it believed: it rejoins as
a backup with the new session kazoo opens. Watches and the state listener only put events in
a queue; this class's own thread does all the work, like the book's single event thread.
"""

from __future__ import annotations

import queue
import threading

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError, NotEmptyError
from kazoo.protocol.states import WatchedEvent
from loguru import logger

from masterworker.system.batching import commit_moves, read_tasks
from masterworker.system.connection import DEFAULT_SESSION_TIMEOUT
from masterworker.system.events import (
    AssignChanged,
    Event,
    MasterGone,
    SessionChanged,
    Stop,
    TasksChanged,
    WorkerChanged,
    WorkersChanged,
)
from masterworker.system.fencing import Token, claim, deposed, fence, next_token
from masterworker.system.history import History
from masterworker.system.leadership import LeadershipGuard
from masterworker.system.master_core import (
    MAX_ATTEMPTS,
    Cluster,
    Deposed,
    Dirty,
    Leftover,
    MasterState,
    Move,
    Outcome,
    candidates,
    outcome,
    plan_moves,
)
from masterworker.system.protocol import (
    ASSIGN,
    EPOCH,
    MASTER,
    TASKS,
    WORKERS,
    WorkerInfo,
    assign_dir,
    submission_order,
    task_kind,
    worker_path,
)
from masterworker.system.reconcile import (
    RECOVERY_CHUNK,
    commit_recoveries,
    read_candidates,
    read_leftovers,
    remove_finished,
)
from masterworker.system.security import Policy, load_policy
from masterworker.system.zkops import (
    RECOVERABLE,
    SessionEvents,
    ensure_nodes,
    failure,
    give_up_master,
    owns_ephemeral,
    release_when_stuck,
    session_id,
    wait_connected,
)

__all__ = ["Cluster", "Deposed", "Master", "MasterState"]


class Master:
    """An active or backup master; see the module docstring."""

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
        self.fenced = fenced  # False only for the teaching switch of chapter 5
        self.max_attempts = max_attempts  # a task whose workers died this many times fails (0: never)
        self.history = history or History(None)
        self.policy = policy  # None: use the policy the system has (chapter 6); installing one is the caller's
        self.state = MasterState.BACKUP
        self.token: Token | None = None  # our fencing token while elected
        self.cluster = Cluster()
        self.events: queue.Queue[Event] = queue.Queue()
        self.elected = threading.Event()  # set while ELECTED, for tests and the demo
        self._stop = threading.Event()
        self._stopped = threading.Event()  # run() returned (stop() checks it)
        self._resync = True  # re-read everything before the next assignment
        self._dirty = Dirty()
        self._recovering: dict[str, list[str]] = {}  # dead worker -> its leftovers not dealt with yet
        self._announced_backup = False
        self._watchers: dict[Event, object] = {}
        self._session_events = SessionEvents(client, self.events, SessionChanged)
        active = (MasterState.ELECTED, MasterState.PAUSED)
        self.guard = LeadershipGuard(client, lambda: self.state in active, session_timeout, self.history, master_id)

    @classmethod
    def frozen_since(cls, client: KazooClient, master_id: str, token: Token, fenced: bool = True) -> Master:
        """Chapter 5's zombie, for teaching and tests: a master that was elected with ``token`` and then
        froze (a GC pause, SIGSTOP). It still believes it is the active master; nothing runs it."""
        zombie = cls(client, master_id, fenced=fenced)
        zombie.token, zombie.state = token, MasterState.ELECTED
        zombie._bootstrap()
        return zombie

    def assign(self, task: str, worker: str) -> bool:
        """Move one pending task to a worker now, as ``_assign`` does (fenced); True when it moved.
        Raises Deposed when the fencing check refuses the write."""
        self.cluster.assigned.setdefault(worker, set())
        data = read_tasks(self.client, [task])
        if data[task] is not None:
            self._commit_moves([Move(task, worker)], data)
        return task in self.cluster.assigned[worker]

    # -- life cycle ----------------------------------------------------------------------------
    def run(self) -> None:
        logger.info("master {} starting", self.id)
        self.guard.start()
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
                    "{} during {} work: will re-read everything once connected", type(exc).__name__, self.state.value
                )
                self._resync = True
                wait_connected(self.client, self._stop, timeout=1.0)
        self.state = MasterState.STOPPED
        self.elected.clear()
        self._stopped.set()
        self.guard.stop()
        self._session_events.remove()
        logger.info("master {} stopped", self.id)

    def stop(self) -> None:
        """Ask run() to return; the caller then closes the session, which deletes /master at once."""
        self._stop.set()
        self.events.put(Stop())
        release_when_stuck(self.client, self._stopped, self.guard.session_timeout, f"master {self.id}")

    def _bootstrap(self) -> None:
        """The book's bootstrap: create the parents, idempotently; any master may do it, with the
        ACLs of the system's policy (chapter 6)."""
        if self.policy is None:
            self.policy = load_policy(self.client)
        ensure_nodes(self.client, acl_for=self.policy.for_node)
        self.client.default_acl = self.policy.created_by("master")  # tasks it requeues, assignments

    # -- the event loop -----------------------------------------------------------------------
    def _step(self) -> None:
        # Work waits for a connection: a master cut off from ZooKeeper blocks on its queue (a
        # CONNECTED event wakes it) instead of spinning (measured: 60 % of a core per master).
        busy = self._has_work() and self.client.connected
        self._drain_events(timeout=0.0 if busy else 1.0)
        if self._stop.is_set() or not self.client.connected:
            return
        if self.state is MasterState.PAUSED and self._dirty.leadership:
            self._dirty.leadership = False
            self._confirm_leadership()
        if self.state is MasterState.BACKUP and self._dirty.run:
            self._dirty.run = False
            self._elect_or_watch()
        if self.state is MasterState.ELECTED:
            if self._resync:
                self._reconcile()
            else:
                self._refresh_dirty()
            self._assign()
            if self._recovering:
                self._recover_some()

    def _has_work(self) -> bool:
        """Is there something to do now, so the loop must not sleep waiting for an event?"""
        if self.state is MasterState.BACKUP:
            return self._dirty.run
        if self.state is not MasterState.ELECTED:
            return False
        listing_due = self._dirty.tasks and not self.cluster.enough_pending()  # else deferred on purpose
        dirty = self._dirty.workers or bool(self._dirty.assign) or bool(self._dirty.info)
        return self._resync or dirty or listing_due or bool(self._recovering)

    def _drain_events(self, timeout: float) -> None:
        try:
            event = self.events.get(timeout=timeout) if timeout else self.events.get_nowait()
        except queue.Empty:
            if self.state is MasterState.BACKUP:
                self._dirty.run = True  # cheap periodic check: a missed watch can never strand us
            return
        while True:
            if isinstance(event, SessionChanged):
                self._on_session(event.state)
            else:
                self._dirty.note(event)
            try:
                event = self.events.get_nowait()
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
                self._dirty.leadership = True
            self._dirty.run = True

    # -- election (ch. 3) ---------------------------------------------------------------------
    def _elect_or_watch(self) -> None:
        """A backup's check: is there an active master? If not, run; either way, keep a watch.

        /master held by our own session while we are a backup means our election happened but its
        reply was lost on the way: give it up, so that an election runs at once."""
        stat = self.client.exists(MASTER, watch=self._watch(MasterGone()))
        if stat is None:
            self._run_for_master()
        elif stat.ephemeralOwner == session_id(self.client):
            logger.warning("/master is held by our own session, yet we are a backup: giving it up for an election")
            give_up_master(self.client)
            self._dirty.run = True
        else:
            self._announce_backup()

    def _run_for_master(self) -> None:
        """Create /master and our fencing token in one transaction; on ConnectionLoss, check who won."""
        try:
            token, older = next_token(self.client.get_children(EPOCH))
        except NoNodeError:  # /epoch was removed: create it again (bootstrap), then run
            self._bootstrap()
            self._dirty.run = True
            return
        txn = self.client.transaction()
        claim(txn, self.id, token, older, self.policy.for_node(MASTER), self.policy.for_node(EPOCH))
        try:
            results = txn.commit()
        except RECOVERABLE:
            # The create may have happened: the book's "ConnectionLoss means check whether you won".
            wait_connected(self.client, self._stop)
            if owns_ephemeral(self.client, MASTER) and self.client.exists(token.path):
                logger.info("ConnectionLoss on the /master create, read /master: it is ours")
                self._become_master(token)
            else:
                self._dirty.run = True
            return
        failed = failure(results)
        if failed is None:
            self._become_master(token)
        elif isinstance(failed[1], NodeExistsError) and failed[0] == 0:
            self._announce_backup()
        elif isinstance(failed[1], NoNodeError):  # /epoch, or an older token, changed meanwhile: again
            self._dirty.run = True
        else:
            raise failed[1]

    def _announce_backup(self) -> None:
        if self._announced_backup:
            return
        try:
            holder = self.client.get(MASTER)[0].decode("utf-8", "replace")
        except NoNodeError:
            self._dirty.run = True  # it went away between our create and this read: run again
            return
        logger.info("{} is the active master; {} is a backup watching /master", holder, self.id)
        self._announced_backup = True

    def _become_master(self, token: Token) -> None:
        """We hold /master: believe it first. A ConnectionLoss in anything after the election must
        not leave a master that holds /master yet thinks it is a backup (found by the chaos run:
        33 s with no master, every backup watching a /master nobody acted on)."""
        self.token = token
        self.state = MasterState.ELECTED
        self._resync = True
        self._announced_backup = False
        self.history.record("elected", master=self.id, epoch=token.number)
        logger.success("{} elected master (epoch {})", self.id, token.number)
        self.elected.set()  # whoever waits for it finds the history and the log written
        self._bootstrap()  # the parents again, idempotently; a failure here is retried by the resync

    def _become_backup(self) -> None:
        if self.state is not MasterState.BACKUP:
            self.history.record("deposed", master=self.id)  # the chaos checker's liveness (lab/chaos/liveness.py)
        self.state = MasterState.BACKUP
        self.elected.clear()
        self.token = None
        self.cluster = Cluster()
        self._resync = True
        self._dirty = Dirty()
        self._recovering.clear()

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

    # -- reading the system (ch. 4) ------------------------------------------------------------
    def _watch(self, event: Event):  # noqa: ANN202 - a kazoo watcher
        """One watcher per event, reused: kazoo keeps each distinct callable until the watch fires."""
        if event not in self._watchers:

            def watcher(_: WatchedEvent) -> None:
                self.events.put(event)  # kazoo's thread: hand over, nothing else

            self._watchers[event] = watcher
        return self._watchers[event]

    def _read_workers(self) -> set[str]:
        live = set(self.client.get_children(WORKERS, watch=self._watch(WorkersChanged())))
        known = self.cluster.workers
        for gone in set(known) - live:
            known.pop(gone)
        for worker in sorted(live - set(known)):
            if self._read_info(worker):
                info = known[worker]
                kinds = " and ".join(sorted(info.runs)) or "nothing"
                logger.info(
                    "worker {} joined ({} slot(s), runs {}, holds up to {})", worker, info.slots, kinds, info.capacity
                )
            else:
                live.discard(worker)
        return live

    def _read_info(self, worker: str) -> bool:
        """Read /workers/<w> (clamped by WorkerInfo.decode) with a data watch; False when it is gone."""
        try:
            data = self.client.get(worker_path(worker), watch=self._watch(WorkerChanged(worker)))[0]
        except NoNodeError:
            return False
        self.cluster.workers[worker] = WorkerInfo.decode(data)
        return True

    def _read_assigned(self, worker: str) -> None:
        watch = self._watch(AssignChanged(worker))
        try:
            tasks = self.client.get_children(assign_dir(worker), watch=watch)
        except NoNodeError:
            # The worker has not (re)created its assign node yet: hear when it does.
            self.cluster.assigned.pop(worker, None)
            self._assign_dir_missing(worker)
            if self.client.exists(assign_dir(worker), watch=watch) is not None:
                self._dirty.assign.add(worker)
            return
        self.cluster.assigned[worker] = set(tasks)

    def _assign_dir_missing(self, worker: str) -> None:
        """A hook for the recipes master, whose children watch on that path has stopped."""

    def _read_pending(self) -> None:
        self.cluster.pending.clear()
        listed = self.client.get_children(TASKS, watch=self._watch(TasksChanged()))
        self.cluster.pending.extend(submission_order(listed))

    def _reconcile(self) -> None:
        """A new master (or one that doubted) rebuilds its picture and repairs the tree."""
        self.cluster = Cluster()
        self._recovering.clear()
        self._dirty.workers = self._dirty.tasks = False
        self._dirty.assign.clear()
        self._dirty.info.clear()
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
        dirty = self._dirty
        if dirty.workers:
            dirty.workers = False
            before = set(self.cluster.workers)
            live = self._read_workers()
            for worker in sorted(before - live):
                logger.warning("worker {} is gone (its session ended)", worker)
                self.cluster.assigned.pop(worker, None)
                self._recover_worker(worker)
            for worker in sorted(live - before):
                self._read_assigned(worker)
        changed, dirty.assign = dirty.assign, set()
        for worker in changed:
            if worker in self.cluster.workers:
                self._read_assigned(worker)
        announced, dirty.info = dirty.info, set()
        for worker in announced:
            if worker in self.cluster.workers and self._read_info(worker):
                logger.info("worker {} now holds up to {} task(s)", worker, self.cluster.workers[worker].capacity)
        if dirty.tasks and not self.cluster.enough_pending():  # else listed later, when the known run low
            dirty.tasks = False
            self._read_pending()

    # -- fenced writes (ch. 5) -----------------------------------------------------------------
    def _transaction(self):  # noqa: ANN202 - kazoo's TransactionRequest
        txn = self.client.transaction()
        if self.fenced:
            fence(txn, self.token)
        return txn

    def _commit(self, txn) -> list[object]:  # noqa: ANN001
        results = txn.commit()
        if self.fenced and deposed(results):
            raise Deposed()
        return results

    # -- recovery (ch. 4 and 5) ----------------------------------------------------------------
    def _recover_worker(self, worker: str) -> None:
        """A dead worker's leftovers are dealt with ``RECOVERY_CHUNK`` at a time, between assignment
        rounds (``_recover_some``): a huge /assign/<w> never delays the takeover itself."""
        try:
            tasks = self.client.get_children(assign_dir(worker))
        except NoNodeError:
            self._recovering.pop(worker, None)
            return
        self._recovering[worker] = submission_order(tasks)
        if tasks:
            logger.info("dead worker {} left {} task(s) under {}", worker, len(tasks), assign_dir(worker))

    def _recover_some(self) -> None:
        """One chunk of one dead worker's leftovers (``master_core.recovery``); once none is left,
        remove its assign node."""
        worker, tasks = next(iter(self._recovering.items()))
        if worker in self.cluster.workers:  # it registered again: what is under /assign/<w> is its own
            del self._recovering[worker]
            return
        chunk, self._recovering[worker] = tasks[:RECOVERY_CHUNK], tasks[RECOVERY_CHUNK:]
        if chunk:
            leftovers = read_leftovers(self.client, worker, chunk, self.max_attempts)
            written = commit_recoveries(self._transaction, self.fenced, worker, leftovers)
            for task, done in written:
                self.history.record("recover", task=task, worker=worker, master=self.id, leftover=done.kind.value)
                if done.kind is Leftover.GIVEN_UP:
                    logger.error("{} of dead worker {} failed: {}", task, worker, "gave up after its workers died")
            back = [task for task, done in written if done.kind is Leftover.ORPHAN]
            self.cluster.requeue(back)
            if back:
                logger.warning("recovered {} task(s) of dead worker {}: back in {}", len(back), worker, TASKS)
            return
        del self._recovering[worker]
        txn = self._transaction()
        txn.delete(assign_dir(worker))
        failed = failure(self._commit(txn))
        if failed is None:
            logger.info("removed {} of dead worker {}", assign_dir(worker), worker)
        elif isinstance(failed[1], NotEmptyError):  # more arrived meanwhile (the book's master, a stranger)
            self._recover_worker(worker)
        elif not isinstance(failed[1], NoNodeError):
            raise failed[1]

    # -- assignment (ch. 4) --------------------------------------------------------------------
    def _assign(self) -> None:
        """The book's chain: which task goes where, each task's data, then create the assignment and
        delete the task, atomically (many tasks per request: batching.py). The data comes first:
        it says which workers can run the task, and its status says whether it is finished."""
        for _ in range(8):  # again while finished tasks free the room they were counted in (bounded)
            tasks = candidates(self.cluster)
            if not tasks:
                return
            data, finished = read_candidates(self.client, tasks)
            for task in tasks:
                if data[task] is None or task in finished:  # taken by a previous master's last write, or deleted
                    self.cluster.forget(task)
                else:
                    self.cluster.kinds[task] = task_kind(data[task])
            if finished:
                self._remove_finished(sorted(finished))
            moves = [move for move in plan_moves(self.cluster) if move.task in data]  # planned from this read only
            if moves:
                self._commit_moves(moves, data)
            if not finished:
                return

    def _remove_finished(self, tasks: list[str]) -> None:
        for task in remove_finished(self._transaction, self.fenced, tasks):
            logger.warning("{} already has a status: it is finished; removed it from {} unassigned", task, TASKS)
            self.history.record("drop-finished", task=task, master=self.id)

    def _commit_moves(self, moves: list[Move], data: dict[str, bytes | None]) -> None:
        for batch, results in commit_moves(self._transaction, moves, data):
            self._settle(batch, results)

    def _settle(self, batch: list[Move], results: list[object]) -> None:
        result, error = outcome(results, len(batch), self.fenced)
        if result is Outcome.COMMITTED:
            for move in batch:
                self.cluster.assigned_to(move.task, move.worker)
                logger.debug("assigned {} to {}", move.task, move.worker)
        elif result is Outcome.DEPOSED:
            raise Deposed()
        elif result is Outcome.BATCH_FAILED:  # which one failed? each again on its own
            data = read_tasks(self.client, [move.task for move in batch])
            for move in batch:
                if data[move.task] is None:
                    self.cluster.forget(move.task)
                    continue
                for single, single_results in commit_moves(self._transaction, [move], data):
                    self._settle(single, single_results)
        elif result is Outcome.WORKER_NOT_READY:
            worker = batch[0].worker
            logger.debug("{} is not ready: {} is missing", worker, assign_dir(worker))
            self.cluster.assigned.pop(worker, None)
            self._dirty.assign.add(worker)
        elif result is Outcome.TASK_GONE:
            self.cluster.forget(batch[0].task)
        else:
            raise error  # type: ignore[misc]
