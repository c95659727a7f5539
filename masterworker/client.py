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

**Waiting.** The client sets an ``exists`` watch on ``/status/<task>`` (the status may already be
there) and re-checks every second as well, so a watch lost with a session can never leave it
waiting forever.
"""

from __future__ import annotations

import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from loguru import logger

from masterworker.errors import BacklogFull, BadInput, MasterworkerError, NotFound
from masterworker.protocol import (
    ASSIGN,
    MAX_TASK_BYTES,
    STATUS,
    TASKS,
    TaskSpec,
    TaskStatus,
    new_guid,
    protected_prefix,
    status_path,
    task_path,
)
from masterworker.zkops import RECOVERABLE, wait_connected, wait_for_nodes

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
    prefix = protected_prefix(guid)
    client.sync(TASKS)
    places = [TASKS, STATUS] + [f"{ASSIGN}/{w}" for w in client.get_children(ASSIGN)]
    for place in places:
        try:
            for name in client.get_children(place):
                if name.startswith(prefix):
                    return name
        except NoNodeError:
            continue
    return None


def check_backlog(client: KazooClient, cap: int) -> None:
    """Backpressure: refuse new work while too many tasks wait (a listing must stay under 1 MB)."""
    stat = client.exists(TASKS)
    if stat is not None and stat.numChildren >= cap:
        raise BacklogFull(f"{stat.numChildren:,} tasks are pending (the cap is {cap:,}): try again later")


def submit(
    client: KazooClient,
    spec: TaskSpec,
    backlog_cap: int = DEFAULT_BACKLOG_CAP,
    stop: threading.Event | None = None,
) -> str:
    """Create the task exactly once and return its name (``task-<guid>-<sequence>``)."""
    data = encode_task(spec)
    stop = stop or threading.Event()
    guid = new_guid()
    if not wait_for_nodes(client, (TASKS,), stop, "submitting", logger.info):
        raise MasterworkerError("stopped before the task was submitted")
    check_backlog(client, backlog_cap)
    while True:
        try:
            path = client.create(task_path(protected_prefix(guid)), data, sequence=True)
            return path.rsplit("/", 1)[1]
        except RECOVERABLE as exc:
            logger.warning("{} while creating the task: looking for it before trying again", type(exc).__name__)
            while True:
                if not wait_connected(client, stop):
                    raise OutcomeUnknown(f"stopped while looking for {protected_prefix(guid)}*") from None
                try:
                    found = find_protected(client, guid)
                    break
                except RECOVERABLE:
                    continue
            if found is not None:
                logger.info("the create did happen: our task is {}", found)
                return found
        except NoNodeError:  # /tasks vanished (an operator wiped the tree): wait for a master
            if not wait_for_nodes(client, (TASKS,), stop, "submitting", logger.info):
                raise MasterworkerError("stopped before the task was submitted") from None


def task_exists(client: KazooClient, task: str) -> bool:
    """Is the task known anywhere: pending, assigned or done?"""
    if client.exists(task_path(task)) or client.exists(status_path(task)):
        return True
    return any(client.exists(f"{ASSIGN}/{worker}/{task}") for worker in client.get_children(ASSIGN))


def read_status(client: KazooClient, task: str) -> TaskStatus | None:
    try:
        return TaskStatus.decode(client.get(status_path(task))[0])
    except NoNodeError:
        return None


def wait_for_status(client: KazooClient, task: str, timeout: float | None) -> TaskStatus | None:
    """Block until ``/status/<task>`` exists; None when ``timeout`` seconds pass first."""
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
        changed.wait(min(1.0, remaining))
        changed.clear()


def consume_status(client: KazooClient, task: str) -> None:
    """The client that asked for the task removes its completion record once it has read it."""
    try:
        client.delete(status_path(task))
    except NoNodeError:
        pass


def require_known_task(client: KazooClient, task: str) -> None:
    if "/" in task or not task:
        raise BadInput(f"{task!r} is not a task name (expected something like task-0a1b2c3d4e5f-0000000001)")
    if not task_exists(client, task):
        raise NotFound(f"no task named {task} (not pending, assigned or done)")
