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
that is not JSON (the book writes "Idle") means one slot and a worker that runs only book
tasks, status data that is not JSON (the book writes "done") reads as "done (book worker)".

**Capabilities.** A worker says what it can run (``runs``): ``command`` (an argv) and ``book``
(a plain string, completed without running). A master gives each task only to a worker that
runs its kind, so the book's worker never swallows a command it would "complete" unrun.

**Bounds.** Whatever a stranger writes, a worker's capacity is at most ``MAX_CAPACITY``, a task's
timeout at most ``MAX_TASK_TIMEOUT``, and a task whose worker died ``attempts`` times is given up
by the master past its ``--max-attempts`` (a poison pill, ``master_core.leftover``).

Task names are *protected* (the idea of Curator's protected mode, chapter 8): the client puts a
random id in the sequential name, ``task-<12 hex>-<sequence>``, so that after a ConnectionLoss it
can look for its task instead of blindly creating a second one.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
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
# Well below ZooKeeper's 1 MB packet limit (jute.maxbuffer): a task is a command line, not a payload.
# 64 tasks of 8 KiB fit one multi-read reply; transactions are cut by bytes too (budget.py).
MAX_TASK_BYTES = 8 * 1024
# The output tail a worker keeps of stdout and stderr, in bytes.
MAX_OUTPUT_TAIL = 4 * 1024
DEFAULT_TASK_TIMEOUT = 3600.0
# A year: anything longer is a mistake (or 400 digits written to break a worker), not a timeout.
MAX_TASK_TIMEOUT = 366 * 24 * 3600.0
# Tasks a master assigns to one worker at most, whatever it announces: a stranger's /workers/evil
# announcing 1,024 slots must not swallow every task (slots and prefetch are clamped too).
MAX_CAPACITY = 256
# What a worker can run: an argv, or the book's plain-string task (completed without running).
COMMAND = "command"
BOOK = "book"

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
    attempts: int = 0  # how many times a worker died while it held this task (raised by recovery)

    @property
    def kind(self) -> str:
        """What a worker must run to take it: ``book`` tasks anyone, the rest (commands, and invalid
        data our workers fail with a reason) only workers that run commands."""
        return BOOK if self.book_task else COMMAND

    def encode(self) -> bytes:
        fields: dict[str, Any] = {
            "argv": self.argv,
            "timeout": self.timeout,
            "submitted": self.submitted_at,
            "client": self.client,
        }
        if self.attempts:
            fields["attempts"] = self.attempts
        return json.dumps(fields, separators=(",", ":")).encode()

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
        spec = cls(
            argv=[],
            submitted_at=_number(obj.get("submitted"), 0.0),
            client=str(obj.get("client", "")),
            attempts=attempts_of(obj),
        )
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            spec.invalid = "task data has no valid argv (a non-empty list of strings)"
        elif any("\0" in a for a in argv):
            spec.invalid = "task argv contains a NUL byte: no program can receive it"
        elif not _in_range(timeout, 0.0, MAX_TASK_TIMEOUT):
            spec.invalid = f"task timeout is not a number of seconds between 0 and {MAX_TASK_TIMEOUT:.0f}"
        else:
            spec.argv, spec.timeout = list(argv), float(timeout)
        return spec


def attempts_of(obj: dict[str, Any]) -> int:
    value = obj.get("attempts", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31 else 0


def task_kind(data: bytes | None) -> str:
    """``book`` or ``command``: which workers may take a task, as ``TaskSpec.decode(data).kind`` says,
    without parsing the JSON (the master asks for every task it assigns)."""
    data = data or b""
    if len(data) > MAX_TASK_BYTES:
        return COMMAND
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return COMMAND
    return COMMAND if text.lstrip().startswith("{") else BOOK


def with_attempt(data: bytes | None) -> tuple[bytes, int]:
    """The task's data with one more attempt recorded, and the new count (chapter 4's recovery).

    The book's plain-string tasks cannot carry a count: they come back unchanged, with 0 (they
    run nothing, so they cannot kill a worker). Other fields are kept as they are.
    """
    data = data or b""
    obj = _json_object(data) if len(data) <= MAX_TASK_BYTES else None
    if obj is None or "argv" not in obj:
        return data, 0
    obj["attempts"] = attempts_of(obj) + 1
    return json.dumps(obj, separators=(",", ":")).encode(), obj["attempts"]


def _in_range(value: Any, low: float, high: float) -> bool:
    """A JSON number with low < value <= high (no bool, no NaN, no 400-digit integer)."""
    number = _number(value, math.nan)
    return math.isfinite(number) and low < number <= high


def oversized(size: int) -> bytes:
    """What a master assigns in place of task data over the limit: a worker fails it with this reason.

    Copying it would put megabytes in every assignment transaction and multi-read reply.
    """
    return json.dumps({"invalid": f"task data is {size:,} bytes; the limit is {MAX_TASK_BYTES:,}"}).encode()


def _number(value: Any, default: float) -> float:
    """A finite JSON number, or the default (a 400-digit integer does not fit a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    try:
        number = float(value)
    except OverflowError:
        return default
    return number if math.isfinite(number) else default


@dataclass
class WorkerInfo:
    """What a worker says about itself in ``/workers/<id>``."""

    slots: int = 1
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    prefetch: int = 1  # tasks it takes beyond its slots, so it never idles waiting for the master
    runs: frozenset[str] = frozenset({COMMAND, BOOK})  # the kinds of task it can run

    @property
    def capacity(self) -> int:
        """How many tasks a master lets it hold: never more than MAX_CAPACITY, whatever it says."""
        return min(self.slots + self.prefetch, MAX_CAPACITY)

    def takes(self, kind: str) -> bool:
        return kind in self.runs

    def encode(self) -> bytes:
        return json.dumps(
            {
                "slots": self.slots,
                "prefetch": self.prefetch,
                "runs": sorted(self.runs),
                "host": self.host,
                "pid": self.pid,
                "started": self.started_at,
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> WorkerInfo:
        """Tolerant and bounded: the book's worker writes "Idle" (one slot, book tasks only); a number
        out of range is clamped or means the default; a JSON worker that names no kinds (an older
        mw) runs both."""
        obj = _json_object(data)
        if obj is None:
            return cls(runs=frozenset({BOOK}))
        slots = _count(obj.get("slots"), 1, low=1)
        prefetch = _count(obj.get("prefetch"), 1, low=0)
        runs = obj.get("runs")
        kinds = frozenset(k for k in runs if k in (COMMAND, BOOK)) if isinstance(runs, list) else None
        pid = obj.get("pid", 0)
        return cls(
            slots=slots,
            prefetch=prefetch,
            runs=kinds if kinds is not None else frozenset({COMMAND, BOOK}),
            host=str(obj.get("host", ""))[:200],
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
            started_at=_number(obj.get("started"), 0.0),
        )


def _count(value: Any, default: int, low: int) -> int:
    """An integer announced by a worker: the default if it is not one, clamped to [low, MAX_CAPACITY]."""
    if not isinstance(value, int) or isinstance(value, bool):
        return default
    return max(low, min(value, MAX_CAPACITY))


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
    book_worker: bool = False  # written by the book's worker ("done"): nothing was run

    @property
    def summary(self) -> str:
        """The state as a person reads it: "done", "failed", or "done (book worker)"."""
        return f"{self.state} (book worker)" if self.book_worker else self.state

    @property
    def output_cut(self) -> bool:
        """Did the task write more than the tail kept in ``output``?"""
        return self.output_bytes is not None and self.output_bytes > MAX_OUTPUT_TAIL

    def encode(self) -> bytes:
        # vars(), not dataclasses.asdict: every field is a plain value, and asdict's deep copy was a
        # fifth of a worker's CPU with trivial tasks (26 against 7 microseconds per record).
        fields = {k: v for k, v in vars(self).items() if v is not None and k != "book_worker"}
        return json.dumps(fields).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> TaskStatus:
        """Tolerant: the book's worker writes "done"; anything that is not our JSON reads as done."""
        obj = _json_object(data)
        if obj is None:
            return cls(state="done", book_worker=True, reason="written by the book's worker: nothing was run")
        if obj.get("state") not in ("done", "failed"):
            return cls(state="done", reason="status data is not masterworker's")
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
