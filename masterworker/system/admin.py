"""The system view behind ``mw status`` (book chapter 3's AdminClient).

Everything is read straight from ZooKeeper: who holds ``/master``, the registered workers and
what is assigned to each, the pending tasks, and the completion records not yet consumed. Reads
are batched, 64 nodes per multi-read request (``multiread.py``), so a view of a thousand
nodes costs a few dozen requests.
"""

from __future__ import annotations

from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from masterworker.system.multiread import get_many
from masterworker.system.protocol import (
    ASSIGN,
    EPOCH,
    MASTER,
    MASTERS,
    STATUS,
    TASKS,
    WORKERS,
    TaskStatus,
    WorkerInfo,
    assign_dir,
    status_path,
    submission_order,
    worker_path,
)


def _children(client: KazooClient, path: str) -> list[str]:
    try:
        return client.get_children(path)
    except NoNodeError:
        return []


def _read_all(client: KazooClient, paths: list[str]) -> dict[str, bytes]:
    """Read many nodes, 64 per request (multi-read); nodes that vanished are left out."""
    return {path: r[0] for path, r in zip(paths, get_many(client, paths), strict=True) if not isinstance(r, Exception)}


def system_view(client: KazooClient) -> dict[str, Any]:
    """``{"master", "backups", "ever_had_master", "workers": {id: {"assigned", "slots"}}, "pending",
    "done", "orphaned"}``.

    ``backups`` are the running masters other than the active one (``/masters``, see roster.py);
    ``ever_had_master`` is False while no master has ever run here.
    """
    try:
        master: str | None = client.get(MASTER)[0].decode("utf-8", "replace")
    except NoNodeError:
        master = None
    backups = sorted(m for m in _children(client, MASTERS) if m != master)
    workers = _children(client, WORKERS)
    infos = _read_all(client, [worker_path(w) for w in workers])
    view_workers = {}
    for worker in sorted(workers):
        info = WorkerInfo.decode(infos.get(worker_path(worker)))
        view_workers[worker] = {
            "assigned": submission_order(_children(client, assign_dir(worker))),
            "slots": info.slots,
            "host": info.host,
            "pid": info.pid,
        }
    # Assignments of workers that are gone: a master will give them back to /tasks.
    orphaned = {
        w: submission_order(_children(client, assign_dir(w)))
        for w in _children(client, ASSIGN)
        if w not in view_workers
    }
    statuses = _read_all(client, [status_path(t) for t in _children(client, STATUS)])
    done = {}
    names = {path.rsplit("/", 1)[1]: path for path in statuses}
    for task in submission_order(names):  # by name, the random guid ordered them, not their submission
        status = TaskStatus.decode(statuses[names[task]])
        done[task] = {
            "state": status.summary,
            "exit_code": status.exit_code,
            "worker": status.worker,
        }
    return {
        "master": master,
        "backups": backups,
        "ever_had_master": client.exists(EPOCH) is not None,  # every master's bootstrap creates /epoch
        "workers": view_workers,
        "pending": submission_order(_children(client, TASKS)),
        "done": done,
        "orphaned": {w: t for w, t in orphaned.items() if t},
    }


def describe_masters(view: dict[str, Any], brief: bool = False) -> str:
    """One line that tells an active master, a takeover under way and no master at all apart.

    ``brief``: without the advice, for the one-line header of the live view.
    """
    backups = ", ".join(view["backups"])
    if view["master"]:
        return f"active master: {view['master']}" + (f"; backups: {backups}" if backups else "; no backup running")
    if backups:
        return f"no active master: backups {backups} are running for it" + (
            "" if brief else " (a takeover is under way)"
        )
    if brief:
        return "no master is running"
    if not view["ever_had_master"]:
        return "no master is running, and none has ever run here: start one with 'mw master'"
    return "no master is running: start one with 'mw master' (tasks wait in /tasks until then)"
