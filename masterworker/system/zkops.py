"""Small ZooKeeper idioms every role uses (book chapters 3 to 5).

- Parents are created idempotently: NodeExists means someone else already did it, which is
  success (chapter 3's bootstrap).
- Ownership of an ephemeral znode is decided by its ``ephemeralOwner``, the session that
  created it, never by the data in it: two processes may share an id, never a session.
- A transaction (``multi``) is all or nothing; kazoo's ``commit()`` *returns* the exception of
  each operation instead of raising, so callers look at the results with ``failure()``.
- Session state changes are handed to the role's own thread through a queue: kazoo's state
  listeners run on its connection thread and must neither block nor call ZooKeeper.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
)
from kazoo.retry import KazooRetry
from loguru import logger

from masterworker.system.protocol import EPOCH, MASTER, PARENTS

# The errors after which an operation's outcome is unknown, or the session must be waited for.
RECOVERABLE = (ConnectionLoss, OperationTimeoutError, SessionExpiredError)


def ensure_nodes(
    client: KazooClient, paths: Iterable[str] = (*PARENTS, EPOCH), acl_for: Callable[[str], list | None] | None = None
) -> None:
    """Create persistent nodes that may already exist (NodeExists is success), each with its ACL."""
    for path in paths:
        try:
            client.create(path, b"", acl=acl_for(path) if acl_for else None)
        except NodeExistsError:
            pass


def wait_for_nodes(
    client: KazooClient, paths: Iterable[str], stop: threading.Event, what: str, log: Callable[[str], None]
) -> bool:
    """Workers and clients started before any master wait for its parents, with backoff.

    Returns False if ``stop`` was set first.
    """
    delay, told = 0.1, False
    paths = list(paths)
    while not stop.is_set():
        try:
            if all(client.exists(p) is not None for p in paths):
                return True
        except RECOVERABLE:
            pass
        if not told:
            log(f"waiting for a master to create {', '.join(paths)} before {what}")
            told = True
        stop.wait(delay)
        delay = min(delay * 2, 2.0)
    return False


def session_id(client: KazooClient) -> int | None:
    client_id = client.client_id
    return client_id[0] if client_id else None


def owns_ephemeral(client: KazooClient, path: str) -> bool:
    """Does our current session own this ephemeral node? (False when it does not exist.)"""
    try:
        _, stat = client.get(path)
    except NoNodeError:
        return False
    return stat.ephemeralOwner == session_id(client)


def give_up_master(client: KazooClient) -> None:
    """Delete /master if our session holds it (best effort: a lost connection leaves it to expiry)."""
    try:
        _, stat = client.get(MASTER)
        if stat.ephemeralOwner == session_id(client):
            client.delete(MASTER, version=stat.version)
    except (NoNodeError, BadVersionError, *RECOVERABLE):
        pass


def failure(results: list[object]) -> tuple[int, Exception] | None:
    """The operation that made a transaction fail, as (index, error); None when it committed.

    The other operations of a failed transaction report RolledBackError (or
    RuntimeInconsistency), which say nothing about why.
    """
    for index, result in enumerate(results):
        if isinstance(result, Exception) and not isinstance(result, RolledBackError | RuntimeInconsistency):
            return index, result
    return None


def retrying(stop: threading.Event | None = None) -> KazooRetry:
    """kazoo's own retry for an *idempotent attempt*: run again after ConnectionLoss (and friends),
    with backoff, until it returns, or until ``stop`` is set (then kazoo raises InterruptedError).

    The attempt itself must make a retry safe, the way kazoo's lock recipe does: a create that
    may have happened looks for its own node first (``client.submit``), a completion looks for
    its own record (``Worker._complete``). Raising kazoo's ForceRetryError asks for another try.
    """
    return KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0, interrupt=stop.is_set if stop else None)


def answer(client: KazooClient, pending: object, timeout: float | None) -> object:
    """A request's reply within ``timeout`` seconds (None: whenever it comes), else OperationTimeoutError
    (one of RECOVERABLE: the outcome is unknown). kazoo holds a request sent while no server answers
    until one does: a command that must end on time awaits its replies with a bound."""
    try:
        return pending.get(timeout=timeout)
    except client.handler.timeout_exception:
        raise OperationTimeoutError(f"no reply from ZooKeeper within {timeout:g} s") from None


def wait_connected(client: KazooClient, stop: threading.Event, timeout: float | None = None) -> bool:
    """Block until the client is connected (or ``stop``/timeout); polled, so nothing is missed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not stop.is_set():
        if client.connected:
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        stop.wait(0.05)
    return False


def release_when_stuck(client: KazooClient, done: threading.Event, after: float, who: str) -> None:
    """A role asked to stop whose thread is still waiting on ZooKeeper ``after`` seconds later, while
    no server answers, gets its session closed: kazoo fails every call waiting in its queue (with
    ConnectionClosedError, a SessionExpiredError), so the thread returns instead of hanging until
    a server comes back. A call made while disconnected otherwise waits for ever (kazoo 2.11).
    Runs on a daemon timer; does nothing once ``done`` is set or the client is connected."""

    def release() -> None:
        if done.is_set() or client.connected:
            return
        logger.warning("{} is stopping while no ZooKeeper server answers: closing its session", who)
        client.stop()

    timer = threading.Timer(after, release)
    timer.daemon = True
    timer.start()


def poll_until(condition: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """True once ``condition()`` is truthy, False after ``timeout``; ZooKeeper errors count as not yet
    (for observers that keep looking while servers die and come back)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except KazooException:
            pass
        time.sleep(interval)
    return False


class SessionEvents:
    """Puts kazoo's session states into a queue, as ``wrap(state)`` (a role's own event type).

    SUSPENDED: the connection is gone, the session may still be alive (a recoverable failure);
    LOST: the session expired, our ephemeral nodes and watches are gone (unrecoverable: start
    again with the new session kazoo opens); CONNECTED: connected again, same or new session.
    """

    def __init__(self, client: KazooClient, events: queue.Queue, wrap: Callable[[KazooState], object]) -> None:
        self.client = client
        self.events = events
        self.wrap = wrap
        client.add_listener(self._listener)

    def _listener(self, state: KazooState) -> None:
        self.events.put(self.wrap(state))

    def remove(self) -> None:
        self.client.remove_listener(self._listener)


def expire_session(client: KazooClient, timeout: float = 10.0) -> None:
    """Expire ``client``'s session for real, on the server.

    kazoo's own ``expire_session()`` test helper only fakes the expiry inside the client. Here a
    second client joins the same session (id and password) and closes it: the ensemble deletes
    the session's ephemeral nodes, and the first client learns of it (LOST) when it next talks
    to the server.
    """
    if client.client_id is None:
        raise RuntimeError("the client has no session to expire")
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in client.hosts)
    expire_session_id(hosts, client.client_id, timeout=timeout)


def expire_session_id(
    hosts: str, session: tuple[int, bytes], session_timeout: float = 10.0, timeout: float = 10.0
) -> None:
    """Join the session ``(id, password)`` from another client and close it: a real expiry."""
    twin = KazooClient(hosts=hosts, client_id=session, timeout=session_timeout)
    twin.start(timeout=timeout)
    twin.stop()
    twin.close()
