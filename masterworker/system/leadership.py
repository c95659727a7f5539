"""Does this master still hold ``/master``? The guard against gray failures (book chapter 5).

Chapter 5's partitioned master learns nothing for a while: its session may already have expired
while it still believes it is master, which is why every write it makes is fenced. A worse case
is a *gray* failure: requests reach ZooKeeper but replies do not (a one-way cut, a half-broken
NIC). The client's pings still arrive, so the server keeps the session, and ``/master``, alive;
the client hears nothing, stays SUSPENDED, reconnects with the same session, which the server
renews again. The master can do nothing, yet no backup ever takes over.

So an active master (ELECTED or PAUSED) asks ZooKeeper every sixth of its session timeout
whether ``/master`` is still its own, and if no answer has come for longer than its session
timeout it **closes its session**: kazoo stops talking with the old session (or its close
request reaches the server at once), the server removes ``/master`` within a session timeout at
most, a backup takes over, and this master starts a new session and rejoins as a backup (the
session LOST event does that). Curator's LeaderLatch gives up leadership on a suspended
connection the same way; here it waits a session timeout first, because a short blip (a leader
election in the ensemble) is no reason to hand over.

Usage (each of the three masters)::

    guard = LeadershipGuard(client, lambda: master.state in (ELECTED, PAUSED), session_timeout)
    guard.start()
    ...
    guard.stop()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from loguru import logger

from masterworker.system.history import History
from masterworker.system.protocol import MASTER
from masterworker.system.zkops import session_id


class LeadershipGuard:
    """A thread that closes the session of an active master ZooKeeper no longer answers."""

    def __init__(
        self,
        client: KazooClient,
        is_active: Callable[[], bool],
        session_timeout: float,
        history: History | None = None,
        name: str = "master",
    ) -> None:
        self.client = client
        self.is_active = is_active
        self.session_timeout = session_timeout
        # Six looks per session timeout: the give-up comes at most a sixth of it late (one-way cuts in
        # chaos runs, 2 s sessions: a backup elected 4.0-4.5 s after the cut with three looks).
        self.interval = max(0.1, session_timeout / 6)
        self.history = history or History(None)
        self.name = name
        self.gave_up = 0  # sessions closed by this guard, for tests and the log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"leadership-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + 1)

    def _run(self) -> None:
        confirmed = time.monotonic()
        while not self._stop.wait(self.interval):
            if not self.is_active() or self._confirmed():
                confirmed = time.monotonic()
            elif time.monotonic() - confirmed > self.session_timeout:
                self._give_up(time.monotonic() - confirmed)
                confirmed = time.monotonic()

    def _confirmed(self) -> bool:
        """An answer about /master within one interval. Whether it is still ours is the master's own
        business (its fenced writes and reconnection checks); only silence counts here."""
        try:
            self.client.exists_async(MASTER).get(timeout=self.interval)
        except Exception:  # noqa: BLE001 - a timeout, ConnectionLoss, a closed client: no answer
            return False
        return True

    def _give_up(self, silent: float) -> None:
        logger.error(
            "{}: no answer from ZooKeeper for {:.1f} s while active (session timeout {:g} s): closing our session "
            "(0x{:x}) so that a backup takes over; rejoining as a backup with a new one",
            self.name,
            silent,
            self.session_timeout,
            session_id(self.client) or 0,
        )
        self.history.record("give-up-session", master=self.name, silent=round(silent, 3))
        self.gave_up += 1
        try:
            self.client.stop()  # LOST: the master steps down; the old session ends on the server
        except Exception as exc:  # noqa: BLE001 - kazoo's writer did not close in time: start anyway
            logger.warning("{}: closing the session: {}", self.name, exc)
        if not self._stop.is_set():
            self.client.start_async()  # a new session, retried by kazoo until ZooKeeper answers
