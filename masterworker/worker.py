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
callback: argv without a shell, the task's timeout, the exit code and a bounded tail of output.

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
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.protocol.states import WatchedEvent
from loguru import logger

from masterworker.history import History
from masterworker.multiread import get_many
from masterworker.protocol import (
    ASSIGN,
    MAX_OUTPUT_TAIL,
    WORKERS,
    TaskSpec,
    TaskStatus,
    WorkerInfo,
    assign_dir,
    assignment_path,
    new_guid,
    status_path,
    submission_order,
    worker_path,
)
from masterworker.security import apply_role_acl
from masterworker.zkops import (
    RECOVERABLE,
    SessionEvents,
    failure,
    owns_ephemeral,
    wait_connected,
    wait_for_nodes,
)

# Completions per transaction when many tasks finish at once (each task still completes atomically).
COMPLETION_BATCH = 64


class WorkerIdInUse(RuntimeError):
    """Another live session is registered under this worker id."""


def run_command(spec: TaskSpec, allow: frozenset[str] | None = None) -> TaskStatus:
    """Run a task's argv (no shell) and describe the outcome; never raises."""
    started = time.time()
    if spec.book_task:
        return TaskStatus(
            "done",
            exit_code=0,
            started_at=started,
            ended_at=time.time(),
            reason="book task: data is not masterworker JSON, nothing to run",
        )
    if spec.invalid:
        return TaskStatus("failed", started_at=started, ended_at=time.time(), reason=spec.invalid)
    if allow is not None and spec.argv[0] not in allow and os.path.basename(spec.argv[0]) not in allow:
        return TaskStatus(
            "failed",
            started_at=started,
            ended_at=time.time(),
            reason=f"program {spec.argv[0]!r} is not allowed on this worker",
        )
    with tempfile.TemporaryFile() as output:  # a file, so a chatty task cannot fill our memory
        try:
            completed = subprocess.run(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=spec.timeout,
                check=False,
            )
            exit_code, reason = completed.returncode, None
        except subprocess.TimeoutExpired:
            exit_code, reason = None, f"timed out after {spec.timeout:g} s"
        except OSError as exc:
            exit_code, reason = 127, f"cannot run {spec.argv[0]!r}: {exc.strerror or exc}"
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - MAX_OUTPUT_TAIL))
        tail = output.read().decode("utf-8", "replace")
    state = "done" if exit_code == 0 else "failed"
    if reason is None and exit_code != 0:
        reason = f"exit code {exit_code}"
    return TaskStatus(state, exit_code=exit_code, started_at=started, ended_at=time.time(), output=tail, reason=reason)


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
    ) -> None:
        self.client = client
        self.id = worker_id
        self.slots = slots
        self.allow = allow
        self.grace = grace
        self.history = history or History(None)
        self.unsafe_completion = unsafe_completion  # the chaos checker's teaching switch
        self.info = WorkerInfo(
            slots=slots, prefetch=prefetch, host=socket.gethostname(), pid=os.getpid(), started_at=time.time()
        )
        self.events: queue.Queue = queue.Queue()
        self.registered = threading.Event()
        self.executions = 0  # started executions, for tests and the demo
        self.completed = 0  # completion records written by us
        self.discarded = 0  # results thrown away because the task was no longer ours
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()  # read and handed to the pool, not completed yet
        self._finished: set[str] = set()  # completed by us, until a listing no longer shows them
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"task-{worker_id}")
        self._completions: queue.Queue[tuple[str, TaskStatus] | None] = queue.Queue()
        self._completer = threading.Thread(target=self._complete_loop, name=f"completer-{worker_id}", daemon=True)
        self._session_events = SessionEvents(client, self.events)

    # -- life cycle ----------------------------------------------------------------------------
    def run(self) -> None:
        logger.info("worker {} starting with {} slot(s)", self.id, self.slots)
        self._completer.start()
        if not wait_for_nodes(self.client, (WORKERS, ASSIGN), self._stop, "registering", logger.info):
            return self._shutdown()
        apply_role_acl(self.client, "worker")  # what we create carries the worker's ACL (chapter 6)
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
        self._shutdown()

    def stop(self) -> None:
        self._stop.set()
        self.events.put(("stop", None))

    def _shutdown(self) -> None:
        """Start nothing new; let running tasks finish (up to the grace period); the caller closes."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + self.grace
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self._completions.put(None)
        self._completer.join(timeout=5)
        self._session_events.remove()
        logger.info("worker {} stopped", self.id)

    def _drain_events(self) -> bool:
        """Returns True when the assignments should be read again."""
        dirty = False
        try:
            item = self.events.get(timeout=1.0)
        except queue.Empty:
            return True  # a cheap periodic re-read: a missed watch can never strand a task
        while True:
            kind, value = item
            if kind == "assign":
                dirty = True
            elif kind == "session" and value == KazooState.LOST:
                logger.warning("session LOST: our registration and watches are gone; registering again")
                self.registered.clear()
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return dirty

    # -- registration ----------------------------------------------------------------------------
    def _register(self) -> None:
        """/assign/<id> first, then the ephemeral /workers/<id> (NodeExists on a retry is success)."""
        try:
            self.client.create(assign_dir(self.id))
        except NodeExistsError:
            pass
        deadline = time.monotonic() + 3 * self.client._session_timeout / 1000.0
        while True:
            try:
                self.client.create(worker_path(self.id), self.info.encode(), ephemeral=True)
                break
            except NodeExistsError:
                if owns_ephemeral(self.client, worker_path(self.id)):
                    break  # our own create, retried after ConnectionLoss
                if time.monotonic() > deadline:
                    raise WorkerIdInUse(f"worker id {self.id!r} is registered by another live session") from None
                logger.info(
                    "{} is held by an older session (a previous run?): waiting for it to expire",
                    worker_path(self.id),
                )
                if self._stop.wait(0.5):
                    return
        self.registered.set()
        logger.success("worker {} registered", self.id)

    # -- assignments -------------------------------------------------------------------------------
    def _on_assign_event(self, event: WatchedEvent) -> None:
        self.events.put(("assign", None))

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
            self.events.put(("assign", None))
            return
        listed = set(tasks)
        with self._lock:
            self._finished &= listed
            new = [t for t in submission_order(listed) if t not in self._in_flight and t not in self._finished]
            self._in_flight.update(new)
        try:
            reads = get_many(self.client, [assignment_path(self.id, task) for task in new])
        except RECOVERABLE:
            with self._lock:
                self._in_flight.difference_update(new)
            raise
        for task, result in zip(new, reads, strict=True):
            if isinstance(result, Exception) or self._stop.is_set():  # taken away before we read it, or stopping
                with self._lock:
                    self._in_flight.discard(task)
                continue
            self.executions += 1
            self._pool.submit(self._execute, task, result[0])

    def _execute(self, task: str, data: bytes) -> None:
        """Runs on a pool thread: the task; its completion is the completer thread's job."""
        try:
            spec = TaskSpec.decode(data)
            logger.info("running {}: {}", task, " ".join(spec.argv) if spec.argv else "(book task)")
            self.history.record("exec-start", task=task, worker=self.id)
            status = run_command(spec, self.allow)
            status.worker, status.run_id = self.id, new_guid()
            self.history.record("exec-end", task=task, worker=self.id, state=status.state)
            if self.unsafe_completion:
                self._settle(task, self._complete_unsafely(task, status))
            else:
                self._completions.put((task, status))
        except Exception:  # a bug here must not kill the pool thread silently
            logger.exception("unexpected error while executing {}", task)
            with self._lock:
                self._in_flight.discard(task)

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
            except Exception:
                logger.exception("unexpected error while completing {} task(s)", len(done))
                for task, _ in done:
                    self._settle(task, False)
            if len(done) < len(batch):  # None: the worker is shutting down
                return

    def _complete_batch(self, batch: list[tuple[str, TaskStatus]]) -> list[bool]:
        """One transaction for all; when it fails, each task is completed (or discarded) on its own."""
        if len(batch) > 1:
            txn = self.client.transaction()
            for task, status in batch:
                txn.create(status_path(task), status.encode())
                txn.delete(assignment_path(self.id, task))
            try:
                failed = failure(txn.commit())
            except RECOVERABLE:
                failed = (-1, None)  # unknown outcome: each _complete below finds out by its run id
            if failed is None:
                for task, status in batch:
                    logger.info("{} {} (exit code {})", task, status.state, status.exit_code)
                return [True] * len(batch)
        return [self._complete(task, status) for task, status in batch]

    def _complete(self, task: str, status: TaskStatus) -> bool:
        """Create the status and delete the assignment, atomically. True when our record counts."""
        while True:
            txn = self.client.transaction()
            txn.create(status_path(task), status.encode())
            txn.delete(assignment_path(self.id, task))
            try:
                failed = failure(txn.commit())
            except RECOVERABLE:
                # Did the commit happen before the connection dropped? Our run_id says.
                if not wait_connected(self.client, self._stop, timeout=self.grace):
                    return False
                try:
                    data = self.client.get(status_path(task))[0]
                except NoNodeError:
                    continue  # not ours, nobody else's: try again
                except RECOVERABLE:
                    continue
                if TaskStatus.decode(data).run_id == status.run_id:
                    break
                failed = (0, NodeExistsError())
            if failed is None:
                break
            if failed[0] == 0 and self._is_our_record(task, status):
                break  # an earlier attempt of ours did commit
            why = "it already has a status" if failed[0] == 0 else "it was taken away from us (reassigned)"
            logger.warning("discarding our result of {}: {}", task, why)
            return False
        logger.info("{} {} (exit code {})", task, status.state, status.exit_code)
        return True

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
        while True:
            try:
                try:
                    self.client.create(status_path(task), status.encode())
                except NodeExistsError:
                    self.client.set(status_path(task), status.encode())
                try:
                    self.client.delete(assignment_path(self.id, task))
                except NoNodeError:
                    pass
                break
            except RECOVERABLE:
                if not wait_connected(self.client, self._stop, timeout=self.grace):
                    return False
        logger.info("{} {} (exit code {}) [unsafe completion]", task, status.state, status.exit_code)
        return True
