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

import shlex
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.retry import ForceRetryError
from kazoo.retry import InterruptedError as RetryInterrupted
from loguru import logger

from masterworker.system.errors import BacklogFull, BadInput, NotFound
from masterworker.system.history import History
from masterworker.system.multiread import get_many
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
from masterworker.system.zkops import RECOVERABLE, failure, retrying, wait_connected

DEFAULT_BACKLOG_CAP = 20_000


class OutcomeUnknown(Exception):
    """Asked to stop while a create's outcome was still unknown: the task may or may not exist."""


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


def submit(
    client: KazooClient,
    spec: TaskSpec,
    backlog_cap: int = DEFAULT_BACKLOG_CAP,
    stop: threading.Event | None = None,
    history: History | None = None,
) -> str:
    """Create the task exactly once and return its name (``task-<guid>-<sequence>``).

    One attempt, retried by ``zkops.retrying`` after ConnectionLoss: a later attempt first looks
    for the task the earlier one may have created (the guid in its name), as kazoo's lock recipe
    looks for its own node. ``history`` (the chaos checker's input, under ``mw chaos``) records the
    invocation and whether the task was acknowledged, failed, or its outcome stayed unknown.
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
    attempts = 0

    def attempt() -> str:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            found = find_protected(client, guid)
            if found is not None:
                logger.info("the create did happen: our task is {}", found)
                return found
            logger.warning("ConnectionLoss while creating the task, and it is not there: creating it again")
        try:
            return client.create(task_path(protected_prefix(guid)), data, sequence=True).rsplit("/", 1)[1]
        except NoNodeError:  # /tasks vanished (an operator wiped the tree): create it again, then retry
            ensure_tasks(client)
            raise ForceRetryError() from None

    try:
        return retrying(stop)(attempt)
    except RetryInterrupted:
        raise OutcomeUnknown(f"stopped while looking for {protected_prefix(guid)}*") from None


def locate(client: KazooClient, guids: list[str]) -> dict[str, str]:
    """Find many protected tasks with one listing of each place (after a ConnectionLoss)."""
    prefixes = {protected_prefix(g): g for g in guids}
    client.sync(TASKS)
    found: dict[str, str] = {}
    for place in [TASKS, STATUS] + [f"{ASSIGN}/{w}" for w in client.get_children(ASSIGN)]:
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
) -> list[str]:
    """submit_all for task data already encoded (the bench's book tasks are plain bytes).

    First pass: every request in flight at once. Second pass, only after a ConnectionLoss: each
    group whose outcome is unknown is looked for (``locate``) and created again only if absent.
    """
    ensure_tasks(client)
    check_backlog(client, backlog_cap)
    guids = [new_guid() for _ in data]
    size = batch or 256
    groups = [list(range(start, min(start + size, len(data)))) for start in range(0, len(data), size)]
    names: dict[str, str] = {}
    started = [
        (group, _start(client, [guids[i] for i in group], [data[i] for i in group], batch is not None))
        for group in groups
    ]
    unresolved = []
    for group, pending in started:
        try:
            names.update(_finish(pending))
        except RECOVERABLE:
            unresolved.append(group)  # the second pass finds out
            continue
        if progress:
            progress(len(group))
    for group in unresolved:
        todo = [i for i in group if guids[i] not in names]
        while todo:
            wait_connected(client, threading.Event())
            try:
                names.update(locate(client, [guids[i] for i in todo]))
                todo = [i for i in todo if guids[i] not in names]
                if todo:
                    pending = _start(client, [guids[i] for i in todo], [data[i] for i in todo], batch is not None)
                    names.update(_finish(pending))
            except RECOVERABLE:
                pass
            todo = [i for i in todo if guids[i] not in names]
        if progress:
            progress(len(group))
    return [names[g] for g in guids]


def _start(client: KazooClient, guids: list[str], data: list[bytes], transactional: bool) -> tuple:
    """Send a group's creates: one multi-op transaction, or one create request per task."""
    if transactional:
        txn = client.transaction()
        for guid, value in zip(guids, data, strict=True):
            txn.create(task_path(protected_prefix(guid)), value, sequence=True)
        return ("multi", guids, txn.commit_async())
    return (
        "each",
        guids,
        [
            client.create_async(task_path(protected_prefix(g)), v, sequence=True)
            for g, v in zip(guids, data, strict=True)
        ],
    )


def _finish(pending: tuple) -> dict[str, str]:
    """Names of the tasks a started group created; raises the first ConnectionLoss (outcome unknown)."""
    kind, guids, results = pending
    if kind == "multi":
        outcome = results.get()
        failed = failure(outcome)
        if failed is not None:
            raise failed[1]
        return {guid: path.rsplit("/", 1)[1] for guid, path in zip(guids, outcome, strict=True)}
    created, lost = {}, None
    for guid, result in zip(guids, results, strict=True):
        try:
            created[guid] = result.get().rsplit("/", 1)[1]
        except RECOVERABLE as exc:
            lost = exc
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
    if client.exists(status_path(task)):
        return "finished"
    worker = assigned_to(client, task)
    if worker is not None:
        if client.exists(worker_path(worker)):
            return f"running on {worker}"
        return f"assigned to {worker}, which is gone: a master will give it to another worker"
    if not client.exists(task_path(task)):
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
    while True:
        try:
            if client.exists(status_path(task), watch=on_change) is not None:
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


# A listing of /status is one request, but its reply grows with every record nobody collected:
# above this many names the bulk waiter reads its own tasks' statuses instead (1 MB reply limit).
STATUS_LISTING_LIMIT = 10_000


def wait_for_all(
    client: KazooClient,
    tasks: list[str],
    timeout: float | None,
    progress: Callable[[int], None] | None = None,
    found: dict[str, TaskStatus] | None = None,
) -> dict[str, TaskStatus]:
    """Statuses of many tasks, read 64 per request, as they appear; stops early when ``timeout`` runs out.

    ``found`` is filled as statuses arrive, so a caller interrupted midway knows which finished.
    A children watch on ``/status`` wakes the waiter when records appear, and only records listed
    there are read: no polling interval delays a result, and waiting costs one listing per wake-up
    rather than a read of every unfinished task. With more than ``STATUS_LISTING_LIMIT`` records
    under ``/status`` it falls back to reading the unfinished tasks' statuses every 0.1 s.
    """
    found = {} if found is None else found
    remaining = [t for t in tasks if t not in found]
    deadline = None if timeout is None else time.monotonic() + timeout
    woke = threading.Event()

    def wake(_: object) -> None:  # one callable, reused: kazoo keeps a set of watchers per path
        woke.set()

    while remaining:
        woke.clear()
        try:
            stat = client.exists(STATUS)
            if stat is not None and stat.numChildren <= STATUS_LISTING_LIMIT:
                listed = set(client.get_children(STATUS, watch=wake))
                candidates, poll = [t for t in remaining if t in listed], False
            else:
                candidates, poll = remaining, True
            results = get_many(client, [status_path(t) for t in candidates])
        except RECOVERABLE:
            candidates, results, poll = [], [], True
        read = {}
        for task, result in zip(candidates, results, strict=True):
            if not isinstance(result, Exception):
                read[task] = TaskStatus.decode(result[0])
        found.update(read)
        if progress and read:
            progress(len(read))
        remaining = [t for t in remaining if t not in read]
        if not remaining:
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        woke.wait(min(0.1 if poll else 1.0, 1.0 if left is None else left))
    return found


def consume_statuses(client: KazooClient, tasks: list[str]) -> None:
    """Collect many results: up to 64 deletes per multi-op request, all in flight at once.

    A batch fails as a whole when one record is already gone (collected by someone else): its
    records are then deleted one by one, a missing one being no error.
    """
    sent = []
    for start in range(0, len(tasks), 64):
        batch = tasks[start : start + 64]
        txn = client.transaction()
        for task in batch:
            txn.delete(status_path(task))
        sent.append((batch, txn.commit_async()))
    retry = []
    for batch, pending in sent:
        if failure(pending.get()) is not None:
            retry.extend(client.delete_async(status_path(task)) for task in batch)
    for pending in retry:
        try:
            pending.get()
        except NoNodeError:
            pass


def parse_task_file(text: str, timeout: float, client_id: str) -> list[TaskSpec]:
    """One command per line, split like a shell would (no shell runs it); blank lines and # comments skipped."""
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
        specs.append(spec)
    if not specs:
        raise BadInput("the file holds no commands (one per line)")
    return specs


def consume_status(client: KazooClient, task: str) -> None:
    """The client that asked for the task removes its completion record once it has read it."""
    try:
        client.delete(status_path(task))
    except NoNodeError:
        pass


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
