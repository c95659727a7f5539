"""The master assembled from kazoo's recipes (book chapter 8, Curator's way).

Usage::

    master = RecipesMaster(client, "master-1")
    master.run()            # blocks; master.stop() from a signal handler or another thread

Chapter 8 replaces hand-written ZooKeeper code with recipes. In kazoo:

- **Leadership: the ``Election`` recipe** (``/election``, built on the ``Lock`` recipe). Each
  contender creates a sequential ephemeral node and watches only its predecessor, so when the
  leader goes, one contender wakes up instead of all of them (no herd effect, chapter 4).
- **Membership and queue: ``ChildrenWatch`` recipes** on ``/workers``, ``/tasks`` and each
  ``/assign/<worker>``. kazoo re-arms them after every event and across reconnects; they put
  events in the master's queue and the shared code of ``master.py`` reads and acts.

What kazoo lacks next to Curator, as small helpers here:

- *Giving up leadership on SUSPENDED/LOST.* kazoo's ``Election`` never interrupts the leader
  function. The session events still reach the master's queue: SUSPENDED pauses assigning,
  LOST demotes the master, and ``_lead`` then returns, which releases the recipe's lock.
- *A protected create.* ``masterworker.system.client.submit`` puts a random id in the sequential name
  and looks for it after ConnectionLoss (Curator's ``withProtection()``).

**The /master contract is kept.** The recipe's leader still creates the ephemeral ``/master``
(with its fencing token, in one transaction, as every master does), and waits while someone
else holds it. So ``mw status``, the book's clients and masters of the other two kinds keep
working, and a recipes backup can stand behind a default master.
"""

from __future__ import annotations

import time

from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch
from loguru import logger

from masterworker.system.connection import DEFAULT_SESSION_TIMEOUT
from masterworker.system.events import AssignChanged, Event, TasksChanged, WorkerChanged, WorkersChanged
from masterworker.system.history import History
from masterworker.system.master import Deposed, Master
from masterworker.system.master_core import MAX_ATTEMPTS, MasterState
from masterworker.system.protocol import TASKS, WORKERS, assign_dir
from masterworker.system.security import Policy
from masterworker.system.zkops import RECOVERABLE, wait_connected

ELECTION = "/election"


class RecipesMaster(Master):
    """The default master's reading and writing, with recipes for leadership and watches."""

    def __init__(
        self,
        client: KazooClient,
        master_id: str,
        fenced: bool = True,
        history: History | None = None,
        policy: Policy | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
    ) -> None:
        super().__init__(
            client,
            master_id,
            fenced=fenced,
            history=history,
            policy=policy,
            max_attempts=max_attempts,
            session_timeout=session_timeout,
        )
        self.election = client.Election(ELECTION, identifier=master_id)
        self._recipe_watches: dict[str, ChildrenWatch] = {}

    def run(self) -> None:
        logger.info("recipes master {} starting", self.id)
        self.guard.start()
        while not self._stop.is_set():
            try:
                self._bootstrap()
                self.election.run(self._lead)  # blocks until the recipe makes us leader, then leads
            except RECOVERABLE as exc:
                logger.warning("{} in the election: trying again once connected", type(exc).__name__)
                wait_connected(self.client, self._stop, timeout=1.0)
        self.state = MasterState.STOPPED
        self.elected.clear()
        self._stopped.set()
        self.guard.stop()
        self._session_events.remove()
        logger.info("recipes master {} stopped", self.id)

    def stop(self) -> None:
        super().stop()
        self.election.cancel()  # if we are still waiting in the recipe's queue

    # -- leading --------------------------------------------------------------------------------
    def _lead(self) -> None:
        """We hold the recipe's lock: claim /master, then run the shared master loop until we lose it."""
        logger.info("{} leads the election recipe; claiming /master", self.id)
        self._become_backup()
        while not self._stop.is_set() and self.state is not MasterState.ELECTED:
            try:
                self._step()  # BACKUP: checks /master, watches it, runs for it when it is free
            except RECOVERABLE:
                wait_connected(self.client, self._stop, timeout=1.0)
        self._watch_with_recipes()
        last_check = time.monotonic()
        while not self._stop.is_set() and self.state in (MasterState.ELECTED, MasterState.PAUSED):
            try:
                self._step()
                if time.monotonic() - last_check > 1.0:  # a ChildrenWatch on a missing path stops silently
                    last_check = time.monotonic()
                    self._dirty.assign.update(w for w in self.cluster.workers if w not in self.cluster.assigned)
            except Deposed:
                self._step_down("our fencing token is gone (a newer master, or someone removed it)", give_up=True)
            except RECOVERABLE:
                self._resync = True
                wait_connected(self.client, self._stop, timeout=1.0)
        logger.info("{} gives up the election recipe's leadership", self.id)

    # -- watches: recipes instead of one-time watches --------------------------------------------
    def _watch(self, event: Event) -> None:  # type: ignore[override]
        """The shared code asks for a one-time watch with each read; the recipes watch children instead.
        A worker's data (its announced slots) keeps a one-time data watch, read again when it fires."""
        if isinstance(event, WorkerChanged):
            return super()._watch(event)
        if isinstance(event, AssignChanged):
            self._watch_children(assign_dir(event.worker), event)
        return None

    def _assign_dir_missing(self, worker: str) -> None:
        """kazoo's ChildrenWatch stops for good (and silently) when its path is deleted: forget ours,
        so that the next read of that worker's /assign node starts a new one."""
        self._recipe_watches.pop(assign_dir(worker), None)

    def _watch_with_recipes(self) -> None:
        self._watch_children(WORKERS, WorkersChanged())
        self._watch_children(TASKS, TasksChanged())

    def _watch_children(self, path: str, event: Event) -> None:
        if path in self._recipe_watches:
            return

        def changed(children: list[str]) -> bool:
            self.events.put(event)  # runs on kazoo's callback thread: hand over, nothing else
            return self.state is not MasterState.STOPPED

        self._recipe_watches[path] = ChildrenWatch(self.client, path, changed)
