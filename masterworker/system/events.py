"""What watches and the session tell a role, as types (book chapters 3 to 5).

kazoo runs watch callbacks and session listeners on its own threads, where a role may neither
block nor call ZooKeeper; they only put one of these in the role's queue, and the role's own
thread (or, for the chapter-7 master, its callbacks) acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from kazoo.client import KazooState


@dataclass(frozen=True)
class MasterGone:
    """/master changed (deleted, or a periodic check): a backup runs for master."""


@dataclass(frozen=True)
class WorkersChanged:
    """The children of /workers changed: a worker joined or its session ended."""


@dataclass(frozen=True)
class TasksChanged:
    """The children of /tasks changed: new tasks to assign."""


@dataclass(frozen=True)
class AssignChanged:
    """The children of /assign/<worker> changed: a task was assigned or completed, or the node appeared."""

    worker: str


@dataclass(frozen=True)
class WorkerChanged:
    """The data of /workers/<worker> changed: it announced other slots (read again, and clamped)."""

    worker: str


@dataclass(frozen=True)
class SessionChanged:
    """kazoo's connection state: SUSPENDED, LOST or CONNECTED."""

    state: KazooState


@dataclass(frozen=True)
class Stop:
    """The driver was asked to stop."""


Event = MasterGone | WorkersChanged | WorkerChanged | TasksChanged | AssignChanged | SessionChanged | Stop
