"""The roster of masters: who is running for master, active or backup (book chapter 3's admin view).

In the book only the winner is visible (``/master``); backups are invisible until they win, so
an operator cannot tell "no master process at all" from "backups are waiting". Every ``mw
master`` therefore also holds an ephemeral ``/masters/<id>`` for as long as it runs, whichever
implementation it is. It is an addition to the book's protocol that nothing depends on for
correctness: election is still ``/master`` alone.

It also keeps ids unique among live masters: a second ``mw master --id m1`` while m1 runs is
refused, instead of both logging "m1 is the active master" and "m1 is a backup". The same
check serves workers (``/workers/<id>``): an id held by a live process elsewhere is refused at
once; one held by a dead process of this host (a kill -9 a moment ago) is waited for until its
session expires.

Usage::

    roster = Roster(client, "m1")   # raises IdInUse when another live master is m1
    ...
    roster.leave()

After LOST the ephemeral node is gone with the session: a thread re-creates it once kazoo has a
new session (state listeners must not call ZooKeeper themselves).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError
from loguru import logger

from masterworker.system.errors import MasterworkerError
from masterworker.system.protocol import MASTERS, master_entry
from masterworker.system.zkops import RECOVERABLE, owns_ephemeral, session_id, wait_connected

__all__ = ["IdInUse", "Roster", "claim_id", "dead_here", "holder"]


class IdInUse(MasterworkerError):
    """Another live process holds this id."""

    exit_code = 1


def holder(client: KazooClient, path: str) -> tuple[dict, int] | None:
    """(its JSON data, its session id) of an ephemeral node; None when nobody holds it."""
    try:
        data, stat = client.get(path)
    except NoNodeError:
        return None
    try:
        info = json.loads(data)
    except ValueError:
        info = {}
    return (info if isinstance(info, dict) else {}), stat.ephemeralOwner


def dead_here(info: dict) -> bool:
    """Was the holder a process of this host that no longer runs (a previous run, killed)?"""
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return pid == os.getpid()


def claim_id(
    client: KazooClient,
    path: str,
    data: bytes,
    what: str,
    expiry_wait: float,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = logger.warning,
    acl: list | None = None,
) -> bool:
    """Create the ephemeral ``path`` for this session; True once held, False if ``stop`` came first.

    NodeExists is success when our own session holds it (a retried create after ConnectionLoss).
    A live holder elsewhere: IdInUse at once. A dead process of this host: wait (one line) up to
    ``expiry_wait`` seconds for its session to expire, then IdInUse.
    """
    stop = stop or threading.Event()
    deadline: float | None = None
    while not stop.is_set():
        try:
            client.create(path, data, ephemeral=True, acl=acl)
            return True
        except NodeExistsError:
            pass
        if owns_ephemeral(client, path):
            return True
        found = holder(client, path)
        if found is None:
            continue  # it expired between our create and our read: create again
        info, owner = found
        where = f"pid {info.get('pid', '?')} on {info.get('host') or '?'}, session 0x{owner:x}"
        if not dead_here(info):
            raise IdInUse(f"{what} is already in use by a running process ({where}): choose another --id")
        if deadline is None:
            deadline = time.monotonic() + expiry_wait
            say(
                f"{what} is still held by the session of a previous run ({where}); "
                f"waiting up to {expiry_wait:g} s for it to expire"
            )
        if time.monotonic() > deadline:
            raise IdInUse(f"{what} is still held by session 0x{owner:x} after {expiry_wait:g} s: choose another --id")
        stop.wait(0.2)
    return False


class Roster:
    """This master's entry in ``/masters`` for as long as it runs; see the module docstring."""

    def __init__(self, client: KazooClient, master_id: str, impl: str, expiry_wait: float, acl: list | None = None):
        self.client = client
        self.path = f"{MASTERS}/{master_id}"
        self.data = master_entry(master_id, impl)
        self.acl = acl
        self.expiry_wait = expiry_wait
        self._events: queue.Queue[KazooState | None] = queue.Queue()
        self._stop = threading.Event()
        try:
            client.create(MASTERS, b"", acl=acl)
        except NodeExistsError:
            pass
        claim_id(client, self.path, self.data, f"master id {master_id!r}", expiry_wait, self._stop, acl=acl)
        self._session = session_id(client)
        client.add_listener(self._events.put)
        self._thread = threading.Thread(target=self._keep, name=f"roster-{master_id}", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        """After LOST (a new session), put our entry back; a stranger holding it by then is logged.

        Our own old session may still hold the entry: a session this master closed while cut off
        (leadership.py) or one the server has not expired yet. So the re-entry waits for it as long
        as for a killed previous run, instead of giving up at once."""
        while (state := self._events.get()) is not None:
            if state != KazooState.CONNECTED or session_id(self.client) == self._session:
                continue
            if not wait_connected(self.client, self._stop, timeout=30):
                continue
            try:
                wait = self.expiry_wait
                claim_id(self.client, self.path, self.data, self.path, wait, self._stop, say=logger.info, acl=self.acl)
                self._session = session_id(self.client)
            except (IdInUse, *RECOVERABLE) as exc:
                logger.warning("could not re-enter the roster of masters: {}", exc)

    def leave(self) -> None:
        self._stop.set()
        self.client.remove_listener(self._events.put)
        self._events.put(None)
