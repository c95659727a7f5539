"""Helpers for tests against real ZooKeeper: waiting on conditions, running mw processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from masterworker.system.client import submit
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.system.master import Master
from masterworker.system.masters import IMPLEMENTATIONS
from masterworker.system.protocol import ASSIGN, MASTER, STATUS, TASKS, TaskSpec, TaskStatus
from masterworker.system.worker import Worker


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.02
) -> Any:
    """Poll until predicate() is truthy; fail the test with ``what`` when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Roles:
    """Masters and workers run in this test process, each with its own session, on threads."""

    def __init__(self, hosts: str, session_timeout: float) -> None:
        self.hosts = hosts
        self.session_timeout = session_timeout
        self._running: list[tuple[Any, KazooClient, threading.Thread]] = []
        self._clients: list[KazooClient] = []

    def client(self, session_timeout: float | None = None, auth: str | None = None) -> KazooClient:
        """A new session; closed by stop_all()."""
        settings = ZkSettings(hosts=self.hosts, session_timeout=session_timeout or self.session_timeout, auth=auth)
        client = connect(settings)
        self._clients.append(client)
        return client

    def _start(self, role: Any, client: KazooClient) -> Any:
        thread = threading.Thread(target=role.run, name=f"role-{role.id}", daemon=True)
        thread.start()
        self._running.append((role, client, thread))
        return role

    def master(self, master_id: str, auth: str | None = None, impl: str = "default", **kwargs: Any) -> Master:
        client = self.client(auth=auth)
        kwargs.setdefault("session_timeout", self.session_timeout)
        return self._start(IMPLEMENTATIONS[impl](client, master_id, **kwargs), client)

    def worker(self, worker_id: str, slots: int = 1, auth: str | None = None, **kwargs: Any) -> Worker:
        client = self.client(auth=auth)
        kwargs.setdefault("grace", 2.0)
        kwargs.setdefault("session_timeout", self.session_timeout)
        return self._start(Worker(client, worker_id, slots=slots, **kwargs), client)

    def stop(self, role: Any) -> None:
        """A clean stop: the role returns and its session is closed."""
        for entry in list(self._running):
            if entry[0] is role:
                self._running.remove(entry)
                role.stop()
                entry[2].join(15)
                close_quietly(entry[1])

    def session_of(self, role: Any) -> KazooClient:
        return next(client for r, client, _ in self._running if r is role)

    def stop_all(self) -> None:
        for role, _, _ in list(self._running):
            self.stop(role)
        for client in self._clients:
            close_quietly(client)
        self._clients.clear()


def run_mw(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess:
    """Run one mw command to completion and return the CompletedProcess (text); ``input`` is its stdin."""
    return subprocess.run(
        [sys.executable, "-m", "masterworker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
    )


def _command_lines() -> Iterator[tuple[int, str]]:
    """(pid, command line) of every live process (a zombie's command line is empty)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue


def jvm_pids_under(data_dir: Path) -> list[int]:
    """Pids of ZooKeeper JVMs whose command line mentions ``data_dir``: none should survive a test."""
    return [pid for pid, line in _command_lines() if "QuorumPeerMain" in line and str(data_dir) in line]


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker``.

    Tasks in tests carry a unique marker in their argv, so a leftover process is found without
    guessing at process names.
    """
    return [pid for pid, line in _command_lines() if marker in line]


def master_id(zk: KazooClient) -> str | None:
    try:
        return zk.get(MASTER)[0].decode()
    except NoNodeError:
        return None


def submit_many(zk: KazooClient, argvs: list[list[str]], **spec: Any) -> list[str]:
    return [submit(zk, TaskSpec(argv=argv, **spec)) for argv in argvs]


def statuses(zk: KazooClient) -> dict[str, TaskStatus]:
    return {t: TaskStatus.decode(zk.get(f"{STATUS}/{t}")[0]) for t in zk.get_children(STATUS)}


def all_done(zk: KazooClient, tasks: list[str]) -> bool:
    return set(tasks) <= set(zk.get_children(STATUS))


def assigned(zk: KazooClient, worker: str) -> list[str]:
    try:
        return zk.get_children(f"{ASSIGN}/{worker}")
    except NoNodeError:
        return []


def pending(zk: KazooClient) -> list[str]:
    return zk.get_children(TASKS)
