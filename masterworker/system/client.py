"""Clients: submitting tasks and waiting for their status (book chapters 3 to 5, and 8's protected creates).

Usage::

    task = submit(client, TaskSpec(argv=["echo", "hi"]))
    status = wait_for_status(client, task, timeout=30)   # None when the time runs out
    consume_status(client, task)                          # the client owns its result

**Submitting without duplicates.** A create that fails with ConnectionLoss may have happened:
the request reached the server, the reply was lost. Retrying a *sequential* create blindly can
make a second task. So the name carries a random id (``task-<guid>-<sequence>``, Curator's
"protected" idea): after ConnectionLoss the client syncs, looks for that id under ``/tasks``,
``/assign/*`` and ``/status``, and creates again only when it is nowhere.

**No master yet.** A client that finds no ``/tasks`` creates it, the same idempotent way a
master does, so a task can be queued before any master has run; it waits in ``/tasks``.
``whereabouts`` says in words where a task is and what it waits for.

**Waiting.** The client sets an ``exists`` watch on ``/status/<task>`` (the status may already be
there) and re-checks every second as well, so a watch lost with a session can never leave it
waiting forever.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from collections.abc import Callable, Iterator

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NodeExistsError, NoNodeError, OperationTimeoutError
from kazoo.retry import ForceRetryError, KazooRetry, RetryFailedError
from kazoo.retry import InterruptedError as RetryInterrupted
from loguru import logger

from masterworker.system.budget import TXN_BUDGET, OverBudget, op_bytes, split_by_bytes
from masterworker.system.errors import BacklogFull, BadInput, MasterworkerError, NotFound
from masterworker.system.history import History
from masterworker.system.multiread import get_many
from masterworker.system.pipelined import create_many
from masterworker.system.protocol import (
    ASSIGN,
    MASTER,
    MAX_TASK_BYTES,
    STATUS,
    TASK_PREFIX,
    TASKS,
    WORKERS,
    TaskSpec,
    TaskStatus,
    assignment_path,
    is_valid_name,
    new_guid,
    protected_prefix,
    status_path,
    task_path,
    worker_path,
)
from masterworker.system.zkops import RECOVERABLE, answer, failure, wait_connected

DEFAULT_BACKLOG_CAP = 20_000
# A request that lost the connection this many times in a row, while the connection came back each
# time (the look-up between two attempts answered), is itself the trouble: too big for the server,
# or dropped on the way. The command ends with one line instead of sending it for ever. Five is
# more than a flapping network takes from one request; a request over jute.maxbuffer was resent
# 331 times in 45 s before this bound.
MAX_LOSSES = 5
# How long a client waits for a server that stopped answering: a submission then stops (saying
# what was created), and collecting results already read leaves their records.
SERVER_PATIENCE = 15.0
COLLECT_PATIENCE = SERVER_PATIENCE


class OutcomeUnknown(Exception):
    """Asked to stop (or gave up) while a create's outcome was still unknown: the task may or may not exist."""


class SubmitStopped(MasterworkerError):
    """Submitting many tasks stopped midway (the backlog cap, a request that keeps failing).

    ``names`` has one entry per task, in order: its name if it was created, None if not (or, when
    ``known`` is False, if it could not be found out). The message says how many of each.
    """

    def __init__(
        self, reason: str, names: list[str | None], known: bool, exit_code: int, unsure: set[int] | None = None
    ) -> None:
        submitted = sum(1 for name in names if name is not None)
        self.unsure = sorted(unsure or ())  # when not known: the indices of the tasks whose outcome is unknown
        if known:
            others = "the others were not"
        elif self.unsure:
            rest = len(names) - submitted - len(self.unsure)
            others = f"{len(self.unsure):,} may have been (their reply was lost)" + (
                f", the other {rest:,} were not" if rest else ""
            )
        else:
            others = "whether the others were is unknown (see mw status)"
        super().__init__(f"{reason}: stopped; {submitted:,} of {len(names):,} tasks were submitted, {others}")
        self.names, self.known, self.exit_code = names, known, exit_code
        self.submitted = [name for name in names if name is not None]

    @property
    def first_missing(self) -> int | None:
        """The index of the first task not submitted (where a resumed submission starts)."""
        return next((i for i, name in enumerate(self.names) if name is None), None)

    @property
    def first_never_sent(self) -> int | None:
        """The index from which no task was submitted for certain (none created, none unsure), or None."""
        last = max([i for i, name in enumerate(self.names) if name is not None] + self.unsure, default=-1)
        return last + 1 if last + 1 < len(self.names) else None


def encode_task(spec: TaskSpec) -> bytes:
    """Validate and encode; BadInput for what must never reach ZooKeeper."""
    if not spec.argv or not spec.argv[0]:
        raise BadInput("the command is empty: give it after '--', e.g. mw submit -- echo hi")
    if spec.timeout <= 0:
        raise BadInput(f"the task timeout must be positive, not {spec.timeout:g}")
    data = spec.encode()
    if len(data) > MAX_TASK_BYTES:
        raise BadInput(f"the task is {len(data):,} bytes; the limit is {MAX_TASK_BYTES:,} bytes")
    return data


def find_protected(client: KazooClient, guid: str) -> str | None:
    """Where did our task go? Pending, assigned to some worker, or already done."""
    return locate(client, [guid]).get(guid)


def check_backlog(client: KazooClient, cap: int) -> None:
    """Backpressure: refuse new work while too many tasks wait (a listing must stay under 1 MB)."""
    stat = client.exists(TASKS)
    if stat is not None and stat.numChildren >= cap:
        raise BacklogFull(f"{stat.numChildren:,} tasks are pending (the cap is {cap:,}): try again later")


def ensure_tasks(client: KazooClient) -> None:
    """Create /tasks if it is missing (NodeExists is success), as a master's bootstrap would.

    Only /tasks: a worker registers once it finds /workers and /assign, and a secure master
    writes /security before creating those, so that no worker registers with open ACLs. Had a
    client created them, a worker could register before the policy exists. A secure master sets
    the ACL of an existing /tasks when it starts.
    """
    if client.exists(TASKS) is None:
        try:
            client.create(TASKS, b"")
        except NodeExistsError:
            pass
        except NoAuthError:
            # A secure master created /tasks and locked its parent between our look and our create:
            # ZooKeeper checks the parent's ACL before it checks for the node, so this is NodeExists.
            if client.exists(TASKS) is None:
                raise


def submit(
    client: KazooClient,
    spec: TaskSpec,
    backlog_cap: int = DEFAULT_BACKLOG_CAP,
    stop: threading.Event | None = None,
    history: History | None = None,
) -> str:
    """Create the task exactly once and return its name (``task-<guid>-<sequence>``).

    One attempt, retried by kazoo's KazooRetry after ConnectionLoss: a later attempt first looks
    for the task the earlier one may have created (the guid in its name), as kazoo's lock recipe
    looks for its own node. The retries are bounded: a create that lost the connection MAX_LOSSES
    times while the look-ups answered is given up (KeepsFailing, nothing was created); look-ups
    that keep failing too end in OutcomeUnknown. ``history`` (the chaos checker's input, under
    ``mw chaos``) records the invocation and whether the task was acknowledged, failed, or its
    outcome stayed unknown.
    """
    history = history or History(None)
    data = encode_task(spec)
    history.record("submit-invoke")
    try:
        task = _submit(client, data, backlog_cap, stop)
    except BaseException as exc:
        unknown = isinstance(exc, OutcomeUnknown | KeyboardInterrupt)
        history.record("submit-unknown" if unknown else "submit-fail", error=type(exc).__name__)
        raise
    history.record("submit-ok", task=task)
    return task


def _submit(client: KazooClient, data: bytes, backlog_cap: int, stop: threading.Event | None) -> str:
    guid = new_guid()
    ensure_tasks(client)
    check_backlog(client, backlog_cap)
    losses = 0

    def attempt() -> str:
        nonlocal losses
        if not wait_connected(client, stop or threading.Event(), timeout=SERVER_PATIENCE):  # a call would wait
            if stop is not None and stop.is_set():
                raise RetryInterrupted()
            if losses:
                raise OutcomeUnknown(
                    f"no ZooKeeper server answered for {SERVER_PATIENCE:g} s after a create of "
                    f"{protected_prefix(guid)}* lost its reply: whether it was created is unknown (see mw status)"
                )
            raise NoServer(f"no ZooKeeper server answered for {SERVER_PATIENCE:g} s: the task was not submitted")
        if losses:
            found = find_protected(client, guid)
            if found is not None:
                logger.info("the create did happen: our task is {}", found)
                return found
            if losses >= MAX_LOSSES:  # the look-up answered, the create never does: stop sending it
                raise KeepsFailing(
                    f"creating the task lost the connection {losses} times in a row: gave up; it was not created"
                )
            logger.warning("ConnectionLoss while creating the task, and it is not there: creating it again")
        try:
            sent = client.create_async(task_path(protected_prefix(guid)), data, sequence=True)
            return answer(client, sent, SERVER_PATIENCE).rsplit("/", 1)[1]
        except NoNodeError:  # /tasks vanished (an operator wiped the tree): create it again, then retry
            ensure_tasks(client)
            raise ForceRetryError() from None
        except RECOVERABLE:
            losses += 1
            raise

    # kazoo's retry with backoff, bounded: the look-ups may fail too, at most as often again.
    retry = KazooRetry(max_tries=3 * MAX_LOSSES, delay=0.1, max_delay=1.0, interrupt=stop.is_set if stop else None)
    try:
        return retry(attempt)
    except RetryInterrupted:
        raise OutcomeUnknown(f"stopped while looking for {protected_prefix(guid)}*") from None
    except RetryFailedError:
        raise OutcomeUnknown(
            f"{retry.max_tries} attempts to create {protected_prefix(guid)}* or look for it lost the connection: "
            "gave up; whether it was created is unknown (see mw status)"
        ) from None


class NoServer(MasterworkerError):
    """No ZooKeeper server answered for SERVER_PATIENCE seconds while a command needed one."""


class KeepsFailing(MasterworkerError):
    """The same request failed MAX_LOSSES times in a row while others succeeded: given up, nothing was written."""


def locate(client: KazooClient, guids: list[str]) -> dict[str, str]:
    """Find many protected tasks with one listing of each place (after a ConnectionLoss)."""
    prefixes = {protected_prefix(g): g for g in guids}
    client.sync(TASKS)
    found: dict[str, str] = {}
    try:
        workers = client.get_children(ASSIGN)
    except NoNodeError:  # no master has run yet: the task can only be pending
        workers = []
    for place in [TASKS, STATUS] + [f"{ASSIGN}/{w}" for w in workers]:
        try:
            names = client.get_children(place)
        except NoNodeError:
            continue
        for name in names:
            guid = prefixes.get(name[: len(TASK_PREFIX) + 13])
            if guid is not None:
                found[guid] = name
    return found


def submit_all(
    client: KazooClient,
    specs: list[TaskSpec],
    batch: int | None = None,
    backlog_cap: int = DEFAULT_BACKLOG_CAP,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Submit many tasks fast; returns their names in order.

    ``batch=None``: one create request per task, many in flight at once (pipelined, as chapter 3's
    asynchronous API allows). ``batch=N``: N creates per multi-op transaction, all or nothing per
    batch. Either way names are protected: after a ConnectionLoss the tasks that did get created
    are found, and only the others are created again.
    """
    return submit_payloads(client, [encode_task(spec) for spec in specs], batch, backlog_cap, progress)


def submit_payloads(
    client: KazooClient,
    data: list[bytes],
    batch: int | None = None,
    backlog_cap: int = DEFAULT_BACKLOG_CAP,
    progress: Callable[[int], None] | None = None,
    budget: int = TXN_BUDGET,
) -> list[str]:
    """submit_all for task data already encoded (the bench's book tasks are plain bytes).

    Groups are cut by count and by bytes (``budget.split_by_bytes``), in order. Every group is
    sent at once (pipelined) as long as the pending tasks known (``/tasks``' count from the last
    look plus what we sent since) leave room under ``backlog_cap`` for it; when they do not, the
    groups in flight are settled and ``/tasks`` counted again, and if there is still no room the
    submission stops: SubmitStopped names the tasks created, a prefix of ``data``. After a
    ConnectionLoss each group whose outcome is unknown is looked for (``locate``) and created
    again only if absent, at most MAX_LOSSES times.
    """
    ensure_tasks(client)
    guids = [new_guid() for _ in data]
    chroot = client.chroot or ""
    sizes = [op_bytes(chroot + task_path(protected_prefix(g)), d) for g, d in zip(guids, data, strict=True)]
    try:
        groups = split_by_bytes(sizes, max_count=batch or 256, budget=budget)
    except OverBudget as exc:
        big = OverBudget(exc.index, exc.size, exc.budget, f"task {exc.index + 1} of {len(data)}")
        raise BadInput(f"{big}: nothing was submitted") from None
    run = _Batches(client, guids, data, batch is not None, progress)
    try:
        pending = run.pending()
        for group in groups:
            if pending + len(group) > backlog_cap:
                run.settle()  # count again with nothing in flight: masters drain /tasks meanwhile
                pending = run.pending()
                if pending + len(group) > backlog_cap:
                    raise run.stopped(
                        f"{pending:,} tasks are pending and the next {len(group):,} would pass the backlog cap "
                        f"of {backlog_cap:,}",
                        BacklogFull.exit_code,
                    )
            if not client.connected:  # wait (bounded) rather than pile requests up for no server
                run.settle()
                if not wait_connected(client, threading.Event(), timeout=SERVER_PATIENCE):
                    raise run.stopped(f"no ZooKeeper server answered for {SERVER_PATIENCE:g} s", 1)
            run.send(group)
            pending += len(group)
        run.settle()
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, see cli/many.py): what went in, and where to resume
        raise run.stopped("interrupted", 130) from None
    return [run.names[g] for g in guids]


class _Batches:
    """Groups of creates in flight, and what became of them (the second pass of submit_payloads)."""

    def __init__(
        self,
        client: KazooClient,
        guids: list[str],
        data: list[bytes],
        transactional: bool,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.client, self.guids, self.data, self.transactional = client, guids, data, transactional
        self.progress = progress or (lambda n: None)
        self.names: dict[str, str] = {}
        self.in_flight: list[tuple[range, tuple]] = []
        self.unresolved: list[range] = []  # sent, and the reply lost: each is looked for, in order

    def pending(self) -> int:
        """How many tasks wait in /tasks: the children count of one ``exists``, not a listing."""
        try:
            stat = answer(self.client, self.client.exists_async(TASKS), SERVER_PATIENCE)
        except OperationTimeoutError:
            raise self.stopped(f"no ZooKeeper server answered for {SERVER_PATIENCE:g} s", 1) from None
        return 0 if stat is None else stat.numChildren

    def send(self, group: range) -> None:
        guids = [self.guids[i] for i in group]
        logger.debug(
            "sending {} of {} creates ({:,} bytes of task data)",
            "a transaction" if self.transactional else "a group",
            len(group),
            sum(len(self.data[i]) for i in group),
        )
        self.in_flight.append((group, _start(self.client, guids, [self.data[i] for i in group], self.transactional)))

    def settle(self) -> None:
        """Wait for every group in flight; then resolve, in order, those whose outcome is unknown."""
        deadline = time.monotonic() + SERVER_PATIENCE
        for group, pending in self.in_flight:
            try:
                self.names.update(_finish(self.client, pending, max(0.0, deadline - time.monotonic())))
            except RECOVERABLE:
                self.unresolved.append(group)
                continue
            self.progress(len(group))
        self.in_flight = []
        while self.unresolved:
            group = self.unresolved[0]
            self._resolve(group)
            self.unresolved.pop(0)
            self.progress(len(group))

    def _resolve(self, group: range) -> None:
        """Look for the group's tasks, create the missing ones again; the connection may be lost
        MAX_LOSSES times in a row, counting the first pass, and then the command ends."""
        losses = 1
        todo = self._missing(group)
        while todo:
            if not wait_connected(self.client, threading.Event(), timeout=SERVER_PATIENCE):
                raise self.stopped(f"no ZooKeeper server answered for {SERVER_PATIENCE:g} s", 1)
            if losses >= 2 * MAX_LOSSES:  # even the look-ups keep failing
                raise self.stopped(self._lost(group, losses), 1)
            try:
                self.names.update(locate(self.client, [self.guids[i] for i in todo]))
            except RECOVERABLE:
                losses += 1
                continue
            todo = self._missing(group)
            if not todo:
                return
            if losses >= MAX_LOSSES:  # the look-up just answered: the same request is what fails
                raise self.stopped(self._lost(group, losses), 1, settled=group)
            try:
                guids = [self.guids[i] for i in todo]
                sent = _start(self.client, guids, [self.data[i] for i in todo], self.transactional)
                self.names.update(_finish(self.client, sent, SERVER_PATIENCE))
            except RECOVERABLE:
                losses += 1
            todo = self._missing(group)

    def _missing(self, group: range) -> list[int]:
        return [i for i in group if self.guids[i] not in self.names]

    def _lost(self, group: range, losses: int) -> str:
        if self.transactional:
            what = f"a transaction of {len(group)} tasks"
        else:
            what = "a create request" if len(group) == 1 else f"a group of {len(group)} create requests"
        size = sum(len(self.data[i]) for i in group)
        return f"{what} ({size:,} bytes of task data) lost the connection {losses} times in a row"

    def stopped(self, reason: str, exit_code: int, settled: range | None = None) -> SubmitStopped:
        """Stop now: settle what is in flight, find out which of the tasks sent exist, and say so.

        Tasks never sent, and those of ``settled`` (looked for just now), certainly do not exist;
        the others whose outcome is unknown are looked for once more (a listing of each place), unless
        no server answers: then they stay unknown (a look would wait for a server).
        """
        for group, pending in self.in_flight:
            try:
                self.names.update(_finish(self.client, pending, 0.0 if not self.client.connected else SERVER_PATIENCE))
            except RECOVERABLE:
                self.unresolved.append(group)
        self.in_flight = []
        unsure = [i for group in self.unresolved if group != settled for i in self._missing(group)]
        known = not unsure
        if unsure and self.client.connected:
            try:
                self.names.update(locate(self.client, [self.guids[i] for i in unsure]))
                known = True
            except RECOVERABLE:
                pass
        names = [self.names.get(g) for g in self.guids]
        return SubmitStopped(reason, names, known, exit_code, unsure={i for i in unsure if names[i] is None})


def _start(client: KazooClient, guids: list[str], data: list[bytes], transactional: bool) -> tuple:
    """Send a group's creates: one multi-op transaction, or one create request per task."""
    if transactional:
        txn = client.transaction()
        for guid, value in zip(guids, data, strict=True):
            txn.create(task_path(protected_prefix(guid)), value, sequence=True)
        return ("multi", guids, txn.commit_async())
    return ("each", guids, create_many(client, [task_path(protected_prefix(g)) for g in guids], data))


def _finish(client: KazooClient, pending: tuple, timeout: float | None = None) -> dict[str, str]:
    """Names of the tasks a started group created; raises the first ConnectionLoss (outcome unknown),
    or OperationTimeoutError when no reply came within ``timeout`` seconds (no server answers)."""
    kind, guids, results = pending
    if kind == "multi":
        outcome = answer(client, results, timeout)
        failed = failure(outcome)
        if failed is not None:
            raise failed[1]
        return {guid: path.rsplit("/", 1)[1] for guid, path in zip(guids, outcome, strict=True)}
    created, lost = {}, None
    for guid, result in zip(guids, results.wait(timeout), strict=True):
        if isinstance(result, RECOVERABLE):
            lost = result
        elif isinstance(result, Exception):
            raise result
        else:
            created[guid] = result.rsplit("/", 1)[1]
    if lost is not None:
        raise lost
    return created


def task_exists(client: KazooClient, task: str) -> bool:
    """Is the task known anywhere: pending, assigned or done?"""
    if client.exists(task_path(task)) or client.exists(status_path(task)):
        return True
    return assigned_to(client, task) is not None


def assigned_to(client: KazooClient, task: str) -> str | None:
    """The worker the task is assigned to, if any."""
    try:
        workers = client.get_children(ASSIGN)
    except NoNodeError:
        return None
    return next((w for w in workers if client.exists(assignment_path(w, task))), None)


def whereabouts(client: KazooClient, task: str) -> str:
    """Where the task is and what it waits for, in a few words (a spinner's text, a timeout's reason)."""
    if not client.connected:  # a look now would wait for a server (see _woken_by_reconnection)
        return "unknown: no ZooKeeper server answers (reconnecting)"
    if client.exists(status_path(task)):
        return "finished"
    worker = assigned_to(client, task)
    if worker is not None:
        if client.exists(worker_path(worker)):
            return f"running on {worker}"
        return f"assigned to {worker}, which is gone: a master will give it to another worker"
    if not client.exists(task_path(task)):
        if client.exists(status_path(task)):  # it moved on while we looked: finished meanwhile
            return "finished"
        return "not found under /tasks, /assign or /status (collected by someone else?)"
    if not client.exists(MASTER):
        return "pending in /tasks: no master is running (start one with 'mw master')"
    try:
        workers = client.get_children(WORKERS)
    except NoNodeError:
        workers = []
    if not workers:
        return "pending in /tasks: no worker is registered (start one with 'mw worker')"
    return f"pending in /tasks: waiting for a free slot on {len(workers)} worker(s)"


def read_status(client: KazooClient, task: str) -> TaskStatus | None:
    try:
        return TaskStatus.decode(client.get(status_path(task))[0])
    except NoNodeError:
        return None


def wait_for_status(
    client: KazooClient, task: str, timeout: float | None, tick: Callable[[], None] | None = None
) -> TaskStatus | None:
    """Block until ``/status/<task>`` exists; None when ``timeout`` seconds pass first.

    ``tick`` is called about once a second while waiting (a spinner updates itself from it).
    """
    changed = threading.Event()

    def on_change(event: object) -> None:  # one callable: kazoo keeps a set of watchers per path
        changed.set()

    deadline = None if timeout is None else time.monotonic() + timeout
    outage = _Outage(client)
    with _woken_by_reconnection(client, changed):
        while True:
            outage.look()
            try:
                if client.connected and client.exists(status_path(task), watch=on_change) is not None:
                    status = read_status(client, task)
                    if status is not None:
                        return status
            except RECOVERABLE:
                pass
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            if tick is not None:
                tick()
            changed.wait(min(1.0, remaining))
            changed.clear()


class _Outage:
    """Says once, in a wait with no deadline, that no server has answered for SERVER_PATIENCE seconds:
    kazoo's own line per attempt to reconnect does not say what the command is doing meanwhile."""

    def __init__(self, client: KazooClient) -> None:
        self.client, self.since, self.said = client, None, False

    def look(self) -> None:
        if self.client.connected:
            if self.said:
                logger.info("a ZooKeeper server answers again: waiting as before")
            self.since, self.said = None, False
        elif self.since is None:
            self.since = time.monotonic()
        elif not self.said and time.monotonic() - self.since >= SERVER_PATIENCE:
            logger.warning(
                "no ZooKeeper server has answered for {:g} s: still waiting for one (Ctrl-C stops the waiting; "
                "the tasks go on)",
                SERVER_PATIENCE,
            )
            self.said = True


@contextlib.contextmanager
def _woken_by_reconnection(client: KazooClient, woke: threading.Event) -> Iterator[None]:
    """A waiter asks ZooKeeper nothing while no server answers: kazoo queues a call made then until
    one does, past any deadline (``mw submit --timeout 5`` waited for ever for a server that was
    gone). It looks again when the connection comes back: a state listener sets ``woke`` (it
    neither blocks nor calls ZooKeeper, as kazoo requires)."""

    def listener(_: str) -> None:
        woke.set()

    client.add_listener(listener)
    try:
        yield
    finally:
        client.remove_listener(listener)


# A listing of /status is one request, but its reply grows with every record nobody collected:
# above this many names the bulk waiter reads its own tasks' statuses instead (1 MB reply limit).
STATUS_LISTING_LIMIT = 10_000


def wait_for_all(
    client: KazooClient,
    tasks: list[str],
    timeout: float | None,
    progress: Callable[[int], None] | None = None,
    found: dict[str, TaskStatus] | None = None,
    collector: Collector | None = None,
) -> dict[str, TaskStatus]:
    """Statuses of many tasks, read 64 per request, as they appear; stops early when ``timeout`` runs out.

    ``found`` is filled as statuses arrive, so a caller interrupted midway knows which finished.
    With a ``collector``, every successful result is collected as soon as it is read (a failed
    task's record stays, so that its output can still be read); the caller calls its ``finish``.
    A children watch on ``/status`` wakes the waiter when records appear, and only records listed
    there are read: no polling interval delays a result, and waiting costs one listing per wake-up
    rather than a read of every unfinished task. With more than ``STATUS_LISTING_LIMIT`` records
    under ``/status`` it falls back to reading the unfinished tasks' statuses every 0.1 s.
    """
    found = {} if found is None else found
    # Each wake-up costs what the listing holds, not what is still awaited: a scan of every
    # unfinished name per wake-up (8.9 ms with 100,000 awaited, 0.016 ms now) made the waiter's
    # work grow with the square of the file's length. mw bench exec --tasks 20000 (2 cores, two
    # runs alternated): the client's CPU 0.26-0.28 -> 0.19 ms per task. The index is the
    # submission order, in which each read is sorted.
    waiting = {t: i for i, t in enumerate(tasks) if t not in found}
    deadline = None if timeout is None else time.monotonic() + timeout
    woke = threading.Event()

    def wake(_: object) -> None:  # one callable, reused: kazoo keeps a set of watchers per path
        woke.set()

    poll = True  # until a look at /status says its listing is small enough
    outage = _Outage(client)
    with _woken_by_reconnection(client, woke):
        while waiting:
            woke.clear()
            outage.look()
            if not client.connected:  # see _woken_by_reconnection: a call now would wait for a server
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                woke.wait(1.0 if left is None else min(1.0, left))
                poll = True
                continue
            try:
                # The size of /status comes with each listing: only while polling (none yet, or the
                # last one was too big) is it asked for first, so a wake-up is one round trip less
                # (mw bench exec, 4 runs alternated: 1.16-1.68 -> 1.06-1.39 requests per task; rates
                # within noise). A listing that grew past the limit since the last look is read once.
                # Each reply is awaited until the deadline at most (at least a second, which a reply
                # from a server that answers takes far less than: one look has a deadline of now):
                # the connection may go between the look at it above and the request, and kazoo then
                # holds the request until a server answers.
                bound = None if deadline is None else max(1.0, deadline - time.monotonic())
                stat = answer(client, client.exists_async(STATUS), bound) if poll else None
                if not poll or (stat is not None and stat.numChildren <= STATUS_LISTING_LIMIT):
                    listing = client.get_children_async(STATUS, watch=wake, include_data=True)
                    listed, stat = answer(client, listing, bound)
                    candidates = sorted((t for t in listed if t in waiting), key=waiting.__getitem__)
                    poll = stat.numChildren > STATUS_LISTING_LIMIT
                else:
                    candidates, poll = list(waiting), True
                results = get_many(client, [status_path(t) for t in candidates], timeout=bound)
            except NoNodeError:  # /status went away between two looks: poll until it is back
                candidates, results, poll = [], [], True
            except RECOVERABLE:
                candidates, results, poll = [], [], True
            read = {}
            for task, result in zip(candidates, results, strict=True):
                if not isinstance(result, Exception):
                    read[task] = TaskStatus.decode(result[0])
            found.update(read)
            if collector is not None:
                collector.send([task for task, status in read.items() if status.ok])
            if progress and read:
                progress(len(read))
            for task in read:
                del waiting[task]
            if not waiting:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            woke.wait(min(0.1 if poll else 1.0, 1.0 if left is None else left))
    return found


class Collector:
    """Collects results (deletes their status records): up to 64 deletes per multi-op request, all in flight.

    ``send`` returns at once, so a waiter collects what it has read while it waits for the rest: the
    deletes travel beside the reads instead of after the last one, and the wait for the last
    result is no longer followed by a round trip per 64 results. ``finish`` waits for every
    request sent. A batch fails as a whole when one record is already gone (collected by
    someone else): its records are then deleted one by one, a missing one being no error.
    """

    def __init__(self, client: KazooClient) -> None:
        self.client = client
        self._sent: list[tuple[list[str], object]] = []
        self._asked: set[str] = set()

    def send(self, tasks: list[str]) -> None:
        """Collects ``tasks``, each once: a task already sent is skipped (Ctrl-C may stop a waiter mid-send)."""
        tasks = [task for task in dict.fromkeys(tasks) if task not in self._asked]
        self._asked.update(tasks)
        for start in range(0, len(tasks), 64):
            batch = tasks[start : start + 64]
            self._sent.append((batch, self._send_batch(batch)))

    def finish(self, patience: float = COLLECT_PATIENCE) -> list[str]:
        """Waits for every request sent; returns the tasks whose records are left (none, unless no server
        answered for ``patience`` seconds). A batch whose reply was lost (ConnectionLoss: the server
        went away, it may or may not have committed) is sent again; a batch that failed because a
        record was gone is deleted record by record, a missing one being no error. Nothing is sent
        while no server answers: kazoo would hold each request, and thousands of them block the
        sender itself (each wakes kazoo's connection thread through a socket nobody reads then).
        Collecting is bounded: the results are read already, and a record left behind costs a later
        ``mw result`` one more read, while a wait for a server that is gone would keep the user from
        them for ever."""
        sent, self._sent = self._sent, []
        deadline = time.monotonic() + patience
        again = [self._outcome(batch, pending, deadline) for batch, pending in sent]
        again = [item for item in again if item is not None]
        while again and wait_connected(self.client, threading.Event(), timeout=max(0.0, deadline - time.monotonic())):
            retry, again = again, []
            for batch, one_by_one in retry:
                if not self.client.connected or time.monotonic() >= deadline:
                    again.append((batch, one_by_one))
                elif one_by_one:
                    deletes = [(task, self.client.delete_async(status_path(task))) for task in batch]
                    rest = [task for task, pending in deletes if not self._deleted(pending, deadline)]
                    if rest:
                        again.append((rest, True))
                else:
                    outcome = self._outcome(batch, self._send_batch(batch), deadline)
                    if outcome is not None:
                        again.append(outcome)
            if time.monotonic() >= deadline:
                break
        return [task for batch, _ in again for task in batch]

    def _send_batch(self, batch: list[str]) -> object:
        txn = self.client.transaction()
        for task in batch:
            txn.delete(status_path(task))
        return txn.commit_async()

    def _outcome(self, batch: list[str], pending: object, deadline: float) -> tuple[list[str], bool] | None:
        """None when the batch committed; else the batch, and whether to delete it record by record."""
        try:
            results = pending.get(timeout=max(0.0, deadline - time.monotonic()))
        except (*RECOVERABLE, self.client.handler.timeout_exception):
            return batch, False  # outcome unknown: the batch again
        return None if failure(results) is None else (batch, True)

    def _deleted(self, pending: object, deadline: float) -> bool:
        try:
            pending.get(timeout=max(0.0, deadline - time.monotonic()))
        except NoNodeError:
            pass
        except (*RECOVERABLE, self.client.handler.timeout_exception):
            return False
        return True


def parse_task_file(text: str, timeout: float, client_id: str) -> list[TaskSpec]:
    """One command per line, split like a shell would (no shell runs it); blank lines and # comments skipped."""
    return [spec for _, spec in parse_task_lines(text, timeout, client_id)]


def parse_task_lines(text: str, timeout: float, client_id: str) -> list[tuple[int, TaskSpec]]:
    """parse_task_file with each command's line number (a stopped submission says where to resume)."""
    specs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise BadInput(f"line {number}: {exc}") from None
        spec = TaskSpec(argv=argv, timeout=timeout, client=client_id)
        try:
            encode_task(spec)
        except BadInput as exc:
            raise BadInput(f"line {number}: {exc}") from None
        specs.append((number, spec))
    if not specs:
        raise BadInput("the file holds no commands (one per line)")
    return specs


def consume_status(client: KazooClient, task: str, patience: float = COLLECT_PATIENCE) -> bool:
    """The client that asked for the task removes its completion record once it has read it; False
    when no server answered for ``patience`` seconds (the record stays: a later read collects it)."""
    collector = Collector(client)
    collector.send([task])
    return not collector.finish(patience)


def check_task_name(task: str) -> str:
    """A task name becomes a znode name: refuse what kazoo or ZooKeeper would choke on, before it is sent."""
    if not is_valid_name(task):
        shown = repr(task.encode("utf-8", "surrogateescape"))[2:-1]  # bytes as typed, escaped: one line
        raise BadInput(
            f"'{shown}' is not a task name (expected something like task-0a1b2c3d4e5f-0000000001, "
            "as mw submit printed it)"
        )
    return task


def require_known_task(client: KazooClient, task: str) -> None:
    check_task_name(task)
    if client.exists(TASKS) is None:
        raise NotFound(f"no task named {task}: nothing was ever submitted here (no /tasks)")
    if not task_exists(client, task):
        raise NotFound(f"no task named {task} (not pending, assigned or done)")
