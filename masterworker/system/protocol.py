"""The znode protocol of the book's master-worker example (chapters 2 to 4) and its data codecs.

=============================  ====================  ===========================================
path                           mode                  written by, and its data
=============================  ====================  ===========================================
``/master``                    ephemeral             the active master: its id (UTF-8)
``/epoch``                     persistent            bumped by every newly elected master (fencing)
``/workers``, ``/tasks``,      persistent            any master at start, idempotently; empty
``/assign``, ``/status``
``/assign/<worker>``           persistent            the worker, before it registers; empty
``/workers/<worker>``          ephemeral             the worker: JSON slots, host, pid, start time
``/tasks/<task>``              persistent sequential the client: JSON argv, timeout, submit time
``/assign/<worker>/<task>``    persistent            the master: a copy of the task's data
``/status/<task>``             persistent            the worker: JSON state, exit code, output tail and size
``/masters/<id>``              ephemeral             every running master (not in the book): JSON
                                                     id, impl, host, pid (``roster.py``)
=============================  ====================  ===========================================

The book's own Java client, worker and master can join a system run by ``mw``: task data that
is not our JSON is a "book task" (completed as done without running anything), worker data
that is not JSON (the book writes "Idle") means one slot, status data that is not JSON (the
book writes "done") reads as done.

Task names are *protected* (the idea of Curator's protected mode, chapter 8): the client puts a
random id in the sequential name, ``task-<12 hex>-<sequence>``, so that after a ConnectionLoss it
can look for its task instead of blindly creating a second one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

MASTER = "/master"
EPOCH = "/epoch"
WORKERS = "/workers"
TASKS = "/tasks"
ASSIGN = "/assign"
STATUS = "/status"
PARENTS = (WORKERS, TASKS, ASSIGN, STATUS)
# Not in the book: every running master, active or backup, holds /masters/<id> (see roster.py).
MASTERS = "/masters"

TASK_PREFIX = "task-"
# Well below ZooKeeper's 1 MB packet limit (jute.maxbuffer): a task is a command line, not a payload,
# and 64 tasks of 8 KiB still fit in one multi-op transaction or one multi-read reply.
MAX_TASK_BYTES = 8 * 1024
# The output tail a worker keeps of stdout and stderr, in bytes.
MAX_OUTPUT_TAIL = 4 * 1024
DEFAULT_TASK_TIMEOUT = 3600.0

_SEQUENCE = re.compile(r"(\d{10})$")
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")


def task_path(task: str) -> str:
    return f"{TASKS}/{task}"


def worker_path(worker: str) -> str:
    return f"{WORKERS}/{worker}"


def assign_dir(worker: str) -> str:
    return f"{ASSIGN}/{worker}"


def assignment_path(worker: str, task: str) -> str:
    return f"{ASSIGN}/{worker}/{task}"


def status_path(task: str) -> str:
    return f"{STATUS}/{task}"


def is_valid_name(name: str) -> bool:
    """Ids of masters and workers become znode names: keep them to a safe alphabet."""
    return bool(_NAME.fullmatch(name)) and name not in (".", "..", "zookeeper")


def master_entry(master_id: str, impl: str) -> bytes:
    """The data of ``/masters/<id>``: who runs it, where, since when (for ``mw status``)."""
    return json.dumps(
        {"id": master_id, "impl": impl, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    ).encode()


def new_guid() -> str:
    """48 random bits: unique enough to find our own task, short enough for 20,000 names per listing."""
    return secrets.token_hex(6)


def protected_prefix(guid: str) -> str:
    return f"{TASK_PREFIX}{guid}-"


def task_sequence(task: str) -> int:
    """The sequence number ZooKeeper appended: the order of submission. Foreign names sort last."""
    match = _SEQUENCE.search(task)
    return int(match.group(1)) if match else 1 << 62


def submission_order(tasks: list[str] | set[str]) -> list[str]:
    return sorted(tasks, key=lambda t: (task_sequence(t), t))


def _json_object(data: bytes | None) -> dict[str, Any] | None:
    if not data:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class TaskSpec:
    """What a client asks a worker to run. ``invalid`` says why the data cannot be run."""

    argv: list[str]
    timeout: float = DEFAULT_TASK_TIMEOUT
    submitted_at: float = field(default_factory=time.time)
    client: str = ""
    book_task: bool = False  # the book's client sends a plain string: completed without running
    invalid: str | None = None

    def encode(self) -> bytes:
        return json.dumps(
            {
                "argv": self.argv,
                "timeout": self.timeout,
                "submitted": self.submitted_at,
                "client": self.client,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> TaskSpec:
        """Never raises. Plain text that is not a JSON object is a book task; anything else that is
        not a valid task (binary, oversized, JSON without argv) is invalid, with the reason."""
        data = data or b""
        if len(data) > MAX_TASK_BYTES:
            return cls(argv=[], invalid=f"task data is {len(data):,} bytes; the limit is {MAX_TASK_BYTES:,}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return cls(argv=[], invalid="task data is binary, not a command")
        if not text.lstrip().startswith("{"):
            return cls(argv=[], book_task=True)
        obj = _json_object(data)
        marker = obj.get("invalid") if obj is not None else None
        if isinstance(marker, str) and marker.strip():  # the master's marker, see oversized()
            return cls(argv=[], invalid=obj["invalid"][:500])
        if obj is None or "argv" not in obj:
            return cls(argv=[], invalid="task data is JSON but not a masterworker task (no argv)")
        argv, timeout = obj.get("argv"), obj.get("timeout", DEFAULT_TASK_TIMEOUT)
        spec = cls(argv=[], submitted_at=_number(obj.get("submitted"), 0.0), client=str(obj.get("client", "")))
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            spec.invalid = "task data has no valid argv (a non-empty list of strings)"
        elif not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            spec.invalid = "task timeout is not a positive number"
        else:
            spec.argv, spec.timeout = list(argv), float(timeout)
        return spec


def oversized(size: int) -> bytes:
    """What a master assigns in place of task data over the limit: a worker fails it with this reason.

    Copying it would put megabytes in every assignment transaction and multi-read reply.
    """
    return json.dumps({"invalid": f"task data is {size:,} bytes; the limit is {MAX_TASK_BYTES:,}"}).encode()


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


@dataclass
class WorkerInfo:
    """What a worker says about itself in ``/workers/<id>``."""

    slots: int = 1
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    prefetch: int = 1  # tasks it takes beyond its slots, so it never idles waiting for the master

    @property
    def capacity(self) -> int:
        return self.slots + self.prefetch

    def encode(self) -> bytes:
        return json.dumps(
            {
                "slots": self.slots,
                "prefetch": self.prefetch,
                "host": self.host,
                "pid": self.pid,
                "started": self.started_at,
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> WorkerInfo:
        """Tolerant: the book's worker writes "Idle"; anything odd means one slot."""
        obj = _json_object(data) or {}
        slots = obj.get("slots", 1)
        if not isinstance(slots, int) or isinstance(slots, bool) or not 0 < slots <= 1024:
            slots = 1
        pid = obj.get("pid", 0)
        prefetch = obj.get("prefetch", 1)
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or not 0 <= prefetch <= 1024:
            prefetch = 1
        return cls(
            slots=slots,
            prefetch=prefetch,
            host=str(obj.get("host", "")),
            pid=pid if isinstance(pid, int) else 0,
            started_at=_number(obj.get("started"), 0.0),
        )


@dataclass
class TaskStatus:
    """The completion record in ``/status/<task>``: exactly one per task, written by one worker."""

    state: str  # "done" or "failed"
    exit_code: int | None = None
    worker: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    output: str = ""  # the last MAX_OUTPUT_TAIL bytes of stdout and stderr
    reason: str | None = None
    run_id: str | None = None  # which execution wrote it: how a worker recognises its own record
    output_bytes: int | None = None  # the whole output's size: more than the tail means it was cut

    @property
    def output_cut(self) -> bool:
        """Did the task write more than the tail kept in ``output``?"""
        return self.output_bytes is not None and self.output_bytes > MAX_OUTPUT_TAIL

    def encode(self) -> bytes:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> TaskStatus:
        """Tolerant: the book's worker writes "done"; anything that is not our JSON reads as done."""
        obj = _json_object(data)
        if obj is None or obj.get("state") not in ("done", "failed"):
            return cls(state="done", reason=None if obj is None else "status data is not masterworker's")
        exit_code, size = obj.get("exit_code"), obj.get("output_bytes")
        return cls(
            state=obj["state"],
            exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
            worker=obj.get("worker") if isinstance(obj.get("worker"), str) else None,
            started_at=_number(obj.get("started_at"), 0.0) or None,
            ended_at=_number(obj.get("ended_at"), 0.0) or None,
            output=obj.get("output") if isinstance(obj.get("output"), str) else "",
            reason=obj.get("reason") if isinstance(obj.get("reason"), str) else None,
            run_id=obj.get("run_id") if isinstance(obj.get("run_id"), str) else None,
            output_bytes=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        )

    @property
    def ok(self) -> bool:
        return self.state == "done"
