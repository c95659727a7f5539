"""A worker: registration, the assignment watch, execution and completion (book chapters 3 to 5).

Usage::

    worker = Worker(client, "worker-1", slots=2)
    worker.run()            # blocks; worker.stop() from a signal handler or another thread

**Registration (ch. 3 and 4).** The worker creates its persistent ``/assign/<id>`` first and its
ephemeral ``/workers/<id>`` second, so a master never sees a worker it cannot assign to. The
ephemeral node lives as long as the worker's session: when the worker crashes, the ensemble
deletes it after the session timeout and the master hands its tasks to others.

**Execution.** A children watch on ``/assign/<id>`` tells the worker about new tasks; it reads
them on its own thread and runs each on a pool of ``slots`` threads, never inside a kazoo
callback: argv without a shell, in a process group of its own that ends with the task (a
timeout ends the whole group; ``execution.py``), the exit code and a bounded tail of output.
A reaper process ends the groups of a worker that dies by kill -9 (``reaper.py``).

**Completion (ch. 4 and 5).** One transaction creates ``/status/<task>`` and deletes the
assignment (a completer thread puts many finished tasks in one transaction; each still
completes atomically, and a failed batch falls back to one transaction per task). If the
task was taken away meanwhile (this worker was a zombie: paused or cut off
past its session timeout, and the master reassigned the task), the delete fails, so the whole
transaction changes nothing: the result is discarded and logged, and a task never gets two
completion records. Execution is at-least-once; completion is exactly once.

**Session loss (ch. 5).** After LOST the worker's ephemeral node and watches are gone: it
registers again with the new session and carries on. Tasks still running keep running; their
completion transaction decides whether their result still counts.

**Stopping (SIGTERM, Ctrl-C).** Prefetched tasks, assigned but not started, go back to
``/tasks`` at once (one transaction each, like a master's recovery); running ones get
``grace`` seconds, then their groups are ended and their results discarded; the worker returns
as soon as nothing runs, and the caller closes the session: the master recovers whatever is
still assigned to us.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoAuthError, NodeExistsError, NoNodeError
from kazoo.protocol.states import WatchedEvent
from kazoo.retry import InterruptedError as RetryInterrupted
from loguru import logger

from masterworker.system.connection import DEFAULT_SESSION_TIMEOUT
from masterworker.system.events import AssignChanged, SessionChanged, Stop
from masterworker.system.execution import ProcessGroups, keep_descriptors_from_tasks, run_command
from masterworker.system.history import History
from masterworker.system.multiread import get_many
from masterworker.system.protocol import (
    ASSIGN,
    TASKS,
    WORKERS,
    TaskSpec,
    TaskStatus,
    WorkerInfo,
    assign_dir,
    assignment_path,
    new_guid,
    status_path,
    submission_order,
    task_path,
    worker_path,
)
from masterworker.system.reaper import Reaper
from masterworker.system.roster import dead_here, holder
from masterworker.system.security import apply_role_acl
from masterworker.system.zkops import (
    RECOVERABLE,
    SessionEvents,
    failure,
    owns_ephemeral,
    release_when_stuck,
    retrying,
    wait_connected,
    wait_for_nodes,
)

# Completions per transaction when many tasks finish at once (each task still completes atomically).
COMPLETION_BATCH = 64
# Seconds a stopping worker waits for the replies to its give-back transactions.
GIVE_BACK_TIMEOUT = 5.0


class WorkerIdInUse(RuntimeError):
    """Another live session is registered under this worker id."""


class Worker:
    """A worker process's logic; see the module docstring."""

    def __init__(
        self,
        client: KazooClient,
        worker_id: str,
        slots: int = 1,
        prefetch: int = 1,
        allow: frozenset[str] | None = None,
        grace: float = 30.0,
        history: History | None = None,
        unsafe_completion: bool = False,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
        reaper: bool = True,
    ) -> None:
        self.client = client
        self.id = worker_id
        self.slots = slots
        self.allow = allow
        self.grace = grace
        self.session_timeout = session_timeout  # the one we asked for: kazoo has no public negotiated value
        self.use_reaper = reaper
        self.history = history or History(None)
        self.unsafe_completion = unsafe_completion  # the chaos checker's teaching switch
        self.info = WorkerInfo(
            slots=slots, prefetch=prefetch, host=socket.gethostname(), pid=os.getpid(), started_at=time.time()
        )
        self.events: queue.Queue = queue.Queue()
        self.registered = threading.Event()
        self._loop_done = threading.Event()  # the reading loop returned (stop() checks it)
        self.executions = 0  # started executions, for tests and the demo
        self.completed = 0  # completion records written by us
        self.discarded = 0  # results thrown away because the task was no longer ours
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()  # read and handed to the pool, not completed yet
        self._waiting: dict[str, bytes] = {}  # in flight but not started (prefetched): task -> data
        self._abandon = False  # the grace period ran out: results of tasks ended now do not count
        self._groups = ProcessGroups()  # the process groups of the tasks running now
        self._reaper: Reaper | None = None
        self._finished: set[str] = set()  # completed by us, until a listing no longer shows them
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"task-{worker_id}")
        self._completions: queue.Queue[tuple[str, TaskStatus] | None] = queue.Queue()
        self._completer = threading.Thread(target=self._complete_loop, name=f"completer-{worker_id}", daemon=True)
        self._session_events = SessionEvents(client, self.events, SessionChanged)

    # -- life cycle ----------------------------------------------------------------------------
    def run(self) -> None:
        logger.info("worker {} starting with {} slot(s)", self.id, self.slots)
        keep_descriptors_from_tasks()
        self._completer.start()
        self._start_reaper()
        try:
            if not wait_for_nodes(self.client, (WORKERS, ASSIGN), self._stop, "registering", logger.info):
                return
            apply_role_acl(self.client, "worker")  # what we create carries the worker's ACL (chapter 6)
            self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> None:
        try:
            self._read_loop()
        finally:
            self._loop_done.set()

    def _read_loop(self) -> None:
        dirty = True
        while not self._stop.is_set():
            try:
                dirty |= self._drain_events()
                if not self.client.connected:
                    continue
                if not self.registered.is_set():
                    self._register()
                    dirty = True
                if dirty:
                    dirty = False
                    self._read_assignments()
            except RECOVERABLE as exc:
                logger.warning("{} while reading assignments: retrying once connected", type(exc).__name__)
                dirty = True
                wait_connected(self.client, self._stop, timeout=1.0)

    def stop(self) -> None:
        self._stop.set()
        self.events.put(Stop())
        release_when_stuck(self.client, self._loop_done, self.session_timeout, f"worker {self.id}")

    def _start_reaper(self) -> None:
        """One reaper process for this worker's life: it ends our tasks' groups if we die (reaper.py)."""
        if not self.use_reaper:
            return
        try:
            self._reaper = Reaper.start()
        except OSError as exc:
            logger.warning("cannot start the reaper ({}): a kill -9 of this worker would leave its tasks running", exc)
            return
        self._groups.reaper = self._reaper

    def _shutdown(self) -> None:
        """Give prefetched tasks back at once, let running ones finish within the grace period, end the
        rest, and return as soon as nothing runs; the caller then closes the session."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._in_flight.difference_update(waiting)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if waiting:
            self._give_back(waiting)
        deadline = time.monotonic() + self.grace
        if self._in_flight:
            logger.info("waiting up to {:g} s for {} running task(s) to finish", self.grace, len(self._in_flight))
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._in_flight:
            self._abandon = True
            left = len(self._in_flight)
            ended = self._groups.end_all()
            unrecorded = (
                ""
                if self.client.connected or left <= ended
                else f", {left - ended} finished but not recorded (no ZooKeeper server answers)"
            )
            logger.warning(
                "grace period of {:g} s over: ended {} running task(s){}; the master gives them to another worker "
                "once this worker's session closes",
                self.grace,
                ended,
                unrecorded,
            )
            deadline = time.monotonic() + 5.0
            while self._in_flight and time.monotonic() < deadline:
                time.sleep(0.02)
        self._completions.put(None)
        self._completer.join(timeout=5)
        if self._reaper is not None:
            self._reaper.close()
        self._session_events.remove()
        logger.info("worker {} stopped", self.id)

    def _give_back(self, tasks: dict[str, bytes]) -> None:
        """Prefetched tasks go back to /tasks now, so another worker can run them during our grace period.

        Each in one transaction, as a master's recovery does it: create ``/tasks/<task>`` again
        under its own name (its place in submission order kept) and delete our assignment. If the
        task was taken away from us meanwhile, the delete fails and nothing changes; if the
        transaction fails for any reason, the assignment stays and the master recovers it when
        our session closes. Either way it is neither lost nor run twice by us. (A master may hand
        it straight back: masters know nothing of stopping workers. We read no more assignments,
        so it waits for our session to close, as every task did before.)

        A secured system (chapter 6) does not let workers create under ``/tasks`` (a worker posing
        as a client is refused): there the prefetched tasks go back when our session closes, which
        is as soon as the running tasks end.
        """
        if not self.client.connected:
            logger.warning(
                "not connected: {} prefetched task(s) go back when this worker's session closes or expires", len(tasks)
            )
            return
        deadline = time.monotonic() + GIVE_BACK_TIMEOUT
        sent = []
        for task, data in tasks.items():
            txn = self.client.transaction()
            txn.create(task_path(task), data)
            txn.delete(assignment_path(self.id, task))
            sent.append((task, txn.commit_async()))
        given: list[str] = []
        refused = 0
        for task, result in sent:
            try:
                failed = failure(result.get(timeout=max(0.0, deadline - time.monotonic())))
                error = None if failed is None else failed[1]
            except Exception as exc:  # ConnectionLoss, a timeout: the outcome is unknown, nothing is lost
                error = exc
            if error is None:
                given.append(task)
                self.history.record("give-back", task=task, worker=self.id)
            elif isinstance(error, NoAuthError):
                refused += 1
            else:
                logger.warning(
                    "could not give {} back ({}): the master recovers it when this worker's session closes",
                    task,
                    type(error).__name__,
                )
        if refused:
            logger.info(
                "this secured system does not let workers create tasks: {} prefetched task(s) go back "
                "when this worker's session closes",
                refused,
            )
        if given:
            names = " ".join(given[:8]) + (" ..." if len(given) > 8 else "")
            logger.info("gave {} prefetched task(s) back to {}: {}", len(given), TASKS, names)

    def _drain_events(self) -> bool:
        """Returns True when the assignments should be read again."""
        dirty = False
        try:
            item = self.events.get(timeout=1.0)
        except queue.Empty:
            return True  # a cheap periodic re-read: a missed watch can never strand a task
        while True:
            if isinstance(item, AssignChanged):
                dirty = True
            elif isinstance(item, SessionChanged) and item.state == KazooState.LOST:
                logger.warning("session LOST: our registration and watches are gone; registering again")
                self.registered.clear()
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return dirty

    # -- registration ----------------------------------------------------------------------------
    def _register(self) -> None:
        """/assign/<id> first, then the ephemeral /workers/<id> (NodeExists on a retry is success).

        Another session may hold our id: a previous run killed with -9 (its session expires within
        its session timeout) or a second worker started with the same ``--id``. Either way we say
        so once, naming the holder, and wait a bounded time (twice our session timeout) for it to go.
        """
        try:
            self.client.create(assign_dir(self.id))
        except NodeExistsError:
            pass
        deadline, holder, patience = None, "", 2 * self.session_timeout
        while True:
            try:
                self.client.create(worker_path(self.id), self.info.encode(), ephemeral=True)
                break
            except NodeExistsError:
                if owns_ephemeral(self.client, worker_path(self.id)):
                    break  # our own create, retried after ConnectionLoss
                if deadline is None:
                    deadline, holder = time.monotonic() + patience, self._holder()
                    logger.warning(
                        "worker id {} is registered by {}; waiting up to {:g} s for it to expire",
                        self.id,
                        holder,
                        patience,
                    )
                elif time.monotonic() > deadline:
                    raise WorkerIdInUse(
                        f"worker id {self.id} is still registered by {holder} after {patience:g} s: "
                        "stop that worker or choose another --id"
                    ) from None
                if self._stop.wait(0.25):
                    return
        self.registered.set()
        logger.success("worker {} registered", self.id)

    def _holder(self) -> str:
        """Who holds /workers/<our id>, in words, from the host and pid it wrote (``roster.py``)."""
        found = holder(self.client, worker_path(self.id))
        if found is None:
            return "another session (now gone)"
        info, _ = found
        if not info.get("pid"):
            return "another live session (its data does not say which process)"
        where = f"pid {info['pid']} on {info.get('host') or '?'}"
        if dead_here(info):
            return f"the session of a previous run ({where}, no longer running)"
        return f"another live session ({where})"

    # -- assignments -------------------------------------------------------------------------------
    def _on_assign_event(self, event: WatchedEvent) -> None:
        self.events.put(AssignChanged(self.id))

    def _read_assignments(self) -> None:
        try:
            tasks = self.client.get_children(assign_dir(self.id), watch=self._on_assign_event)
        except NoNodeError:
            # A master removed it while we were away: recreate it, or nobody can assign to us.
            logger.warning("{} is missing: creating it again", assign_dir(self.id))
            try:
                self.client.create(assign_dir(self.id))
            except NodeExistsError:
                pass
            self.events.put(AssignChanged(self.id))
            return
        listed = set(tasks)
        with self._lock:
            self._finished &= listed
            new = [t for t in submission_order(listed) if t not in self._in_flight and t not in self._finished]
            self._in_flight.update(new)
        # Each assignment's data and its task's status, in the same request: a task with a status is finished.
        paths = [p for task in new for p in (assignment_path(self.id, task), status_path(task))]
        try:
            reads = get_many(self.client, paths)
        except RECOVERABLE:
            with self._lock:
                self._in_flight.difference_update(new)
            raise
        for index, task in enumerate(new):
            result, status = reads[2 * index], reads[2 * index + 1]
            if isinstance(result, Exception) or self._stop.is_set():  # taken away before we read it, or stopping
                with self._lock:
                    self._in_flight.discard(task)
                continue
            if not isinstance(status, Exception):
                self._drop_finished(task, "it already has a status")
                continue
            with self._lock:
                self._waiting[task] = result[0]
            self._pool.submit(self._execute, task)

    def _drop_finished(self, task: str, why: str) -> None:
        """A task with a status is finished, whoever wrote it (another worker while we were cut off, the
        book's worker, an operator): remove our assignment and move on, instead of running it again."""
        try:
            self._remove_assignment(task)
        except RECOVERABLE:
            pass  # the next read of our assignments finds it again and retries
        else:
            logger.warning("{} is finished ({}): removed our assignment without running it again", task, why)
        with self._lock:
            self._in_flight.discard(task)

    def _execute(self, task: str) -> None:
        """Runs on a pool thread: the task; its completion is the completer thread's job."""
        with self._lock:
            data = self._waiting.pop(task, None)
            if data is None:
                return  # a stopping worker gave it back before it started
            self.executions += 1
        try:
            status = self._run(task, data)
            status.worker, status.run_id = self.id, new_guid()
            self.history.record("exec-end", task=task, worker=self.id, state=status.state)
            if self._abandon:
                logger.warning("not completing {}: ended when the grace period ran out", task)
                with self._lock:
                    self._in_flight.discard(task)
            elif self.unsafe_completion:
                self._settle(task, self._complete_unsafely(task, status))
            else:
                self._completions.put((task, status))
        except Exception:  # a bug here must not kill the pool thread silently
            logger.exception("unexpected error while executing {}", task)
            with self._lock:
                self._in_flight.discard(task)

    def _run(self, task: str, data: bytes) -> TaskStatus:
        """Run one task. Whatever the data, this ends in a status: a task that cannot even start
        completes as failed with the reason, instead of being dropped and picked up again for ever."""
        started = time.time()
        try:
            spec = TaskSpec.decode(data)
            logger.info("running {}: {}", task, " ".join(spec.argv) if spec.argv else "(book task)")
            self.history.record("exec-start", task=task, worker=self.id)
            return run_command(spec, self.allow, self._groups)
        except Exception as exc:  # a bug or a case decode() did not foresee: fail the task, not the loop
            logger.opt(exception=True).warning("{} cannot start: {}", task, exc)
            reason = f"cannot start the task: {type(exc).__name__}: {exc}"[:500]
            return TaskStatus("failed", started_at=started, ended_at=time.time(), reason=reason)

    def _settle(self, task: str, counted: bool) -> None:
        self.history.record("complete" if counted else "discard", task=task, worker=self.id)
        with self._lock:
            if counted:
                self._finished.add(task)
                self.completed += 1
            else:
                self.discarded += 1
            self._in_flight.discard(task)

    # -- completion ---------------------------------------------------------------------------------
    def _complete_loop(self) -> None:
        """Completes finished tasks, many per transaction when many finish at once."""
        while True:
            batch = [self._completions.get()]
            while len(batch) < COMPLETION_BATCH:
                try:
                    batch.append(self._completions.get_nowait())
                except queue.Empty:
                    break
            done = [item for item in batch if item is not None]
            try:
                for (task, _), counted in zip(done, self._complete_batch(done), strict=True):
                    self._settle(task, counted)
            except RECOVERABLE as exc:  # our session closed by release_when_stuck, or expired: one line
                logger.warning(
                    "{} task(s) finished, their records not confirmed ({}): a master gives each one not "
                    "recorded to another worker",
                    len(done),
                    type(exc).__name__,
                )
                for task, _ in done:
                    self._settle(task, False)
            except Exception:
                logger.exception("unexpected error while completing {} task(s)", len(done))
                for task, _ in done:
                    self._settle(task, False)
            if len(done) < len(batch):  # None: the worker is shutting down
                return

    def _complete_batch(self, batch: list[tuple[str, TaskStatus]]) -> list[bool]:
        """One transaction for all; if it fails (or its outcome is unknown), each task is completed,
        or found completed by us, or discarded, on its own."""
        if len(batch) > 1:
            txn = self.client.transaction()
            for task, status in batch:
                txn.create(status_path(task), status.encode())
                txn.delete(assignment_path(self.id, task))
            try:
                committed = failure(txn.commit()) is None
            except RECOVERABLE:  # unknown outcome: each _complete below finds out by its run id
                committed = False
            if committed:
                for task, status in batch:
                    logger.info("{} {} (exit code {})", task, status.state, status.exit_code)
                return [True] * len(batch)
        return [self._complete(task, status) for task, status in batch]

    def _complete(self, task: str, status: TaskStatus) -> bool:
        """Create the status and delete the assignment, atomically. True when our record counts.

        One attempt, retried by ``zkops.retrying`` after ConnectionLoss: a later attempt first looks
        for our own record (its run id), since the earlier commit may have happened.
        """
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and self._is_our_record(task, status):
                return True  # the commit whose reply we lost did happen
            txn = self.client.transaction()
            txn.create(status_path(task), status.encode())
            txn.delete(assignment_path(self.id, task))
            failed = failure(txn.commit())
            if failed is None or (failed[0] == 0 and self._is_our_record(task, status)):
                return True
            if failed[0] == 0:  # a status exists: the task is finished, and our assignment must not stay
                logger.warning("discarding our result of {}: it already has a status", task)
                self._remove_assignment(task)
            else:
                logger.warning("discarding our result of {}: it was taken away from us (reassigned)", task)
            return False

        try:
            counted = retrying(self._stop)(attempt)
        except RetryInterrupted:
            return False  # stopping while disconnected: the task runs again elsewhere
        if counted:
            logger.info("{} {} (exit code {})", task, status.state, status.exit_code)
        return counted

    def _remove_assignment(self, task: str) -> None:
        """Left in place, the assignment would be read and run again every second, for ever."""
        try:
            self.client.delete(assignment_path(self.id, task))
            self.history.record("drop-finished", task=task, worker=self.id)
        except NoNodeError:
            pass

    def _is_our_record(self, task: str, status: TaskStatus) -> bool:
        try:
            return TaskStatus.decode(self.client.get(status_path(task))[0]).run_id == status.run_id
        except NoNodeError:
            return False

    def _complete_unsafely(self, task: str, status: TaskStatus) -> bool:
        """The teaching switch: two separate writes, NodeExists taken as success, like the book's worker.

        A zombie worker's late result then overwrites the record of the worker the task was
        given to: two workers each believe they completed it, which the chaos checker reports.
        """

        def attempt() -> None:
            try:
                self.client.create(status_path(task), status.encode())
            except NodeExistsError:
                self.client.set(status_path(task), status.encode())
            try:
                self.client.delete(assignment_path(self.id, task))
            except NoNodeError:
                pass

        try:
            retrying(self._stop)(attempt)
        except RetryInterrupted:
            return False
        logger.info("{} {} (exit code {}) [unsafe completion]", task, status.state, status.exit_code)
        return True
