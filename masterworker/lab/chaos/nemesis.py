"""The nemesis: a seeded schedule of the failures the book describes, injected one at a time.

Each fault picks its victim the way the failure hurts most (the *active* master, a *busy*
worker, the ZooKeeper *leader*), records itself in the history, waits for the system to
recover, and records how long that took. The same code drives real processes (the local
backend) and containers (the docker backend): a backend only knows how to kill, pause,
resume and restart a named role or ZooKeeper server, and how to expire a role's session.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from loguru import logger

from masterworker.system.history import History
from masterworker.system.protocol import MASTER, STATUS, assign_dir
from masterworker.system.zkops import poll_until

FAULTS = (
    "kill-master",  # kill -9 of the active master: a backup takes over after the session timeout
    "kill-worker",  # kill -9 of a busy worker: its tasks go to the others
    "pause-master",  # SIGSTOP past the session timeout, then SIGCONT: a zombie master
    "pause-worker",  # the same for a worker: a zombie worker
    "expire-session",  # a real server-side session expiry of the active master or a busy worker
    "kill-zk-leader",  # kill -9 of the ZooKeeper leader: the ensemble elects another
    "zk-quorum-loss",  # 2 of 3 ZooKeeper servers down for a while: no progress, no loss
    "reconfig",  # the ensemble grown 3 -> 5 and shrunk 5 -> 3 while it runs: no loss, the same master
)


class Backend(Protocol):
    """What the nemesis needs from the world it breaks."""

    session_timeout: float

    def masters(self) -> list[str]: ...
    def workers(self) -> list[str]: ...
    def kill(self, role: str) -> None: ...
    def pause(self, role: str) -> None: ...
    def resume(self, role: str) -> None: ...
    def restart(self, role: str) -> None: ...
    def expire(self, role: str) -> bool: ...
    def zk_servers(self) -> list[str]: ...
    def zk_leader(self) -> str | None: ...
    def kill_zk(self, server: str) -> None: ...
    def restart_zk(self, server: str) -> None: ...
    def add_zk(self, count: int) -> list[str]: ...
    def remove_zk(self, servers: list[str]) -> None: ...
    def heal(self) -> None: ...
    def stop_load(self) -> None: ...


def schedule(faults: tuple[str, ...], seed: int) -> Iterator[str]:
    """Every fault once in a seeded order, then again in another order, forever."""
    rng = random.Random(seed)
    while True:
        order = list(faults)
        rng.shuffle(order)
        yield from order


class Nemesis:
    """Injects one fault at a time through a backend, observing recovery with its own session."""

    def __init__(
        self,
        backend: Backend,
        observer: KazooClient,
        history: History,
        seed: int,
        say: Callable[[str], None] = logger.info,
    ) -> None:
        self.backend = backend
        self.zk = observer
        self.history = history
        self.rng = random.Random(seed)
        self.say = say
        self.bound = 4 * backend.session_timeout + 20  # how long recovery may take before we call it stuck

    # -- observing ---------------------------------------------------------------------------------
    def active_master(self) -> tuple[str, int] | None:
        try:
            data, stat = self.zk.get(MASTER)
        except (KazooException, NoNodeError):
            return None
        return data.decode(), stat.ephemeralOwner

    def busy_worker(self) -> tuple[str, list[str]]:
        """The worker holding the most tasks (a random one when all are idle)."""
        best, held = self.rng.choice(self.backend.workers()), []
        for worker in self.backend.workers():
            try:
                tasks = self.zk.get_children(assign_dir(worker))
            except (KazooException, NoNodeError):
                continue
            if len(tasks) > len(held):
                best, held = worker, tasks
        return best, held

    def _wait(self, condition: Callable[[], bool]) -> bool:
        return poll_until(condition, self.bound)

    def _new_master(self, old_session: int | None) -> bool:
        now = self.active_master()
        return now is not None and now[1] != old_session

    def _done(self, tasks: list[str]) -> bool:
        return all(self.zk.exists(f"{STATUS}/{task}") for task in tasks)

    def _writable(self) -> bool:
        path = self.zk.create("/chaos-probe-", ephemeral=True, sequence=True)
        self.zk.delete(path)
        return True

    # -- injecting ---------------------------------------------------------------------------------
    def inject(self, fault: str) -> None:
        getattr(self, "_" + fault.replace("-", "_"))()

    def _fault(self, fault: str, target: str, detail: str = "") -> float:
        self.history.record("fault", fault=fault, target=target)
        self.say(f"[red]{fault}[/] {target}{(' ' + detail) if detail else ''}")
        return time.monotonic()

    def _recovered(self, fault: str, started: float, ok: bool, what: str) -> None:
        seconds = time.monotonic() - started
        if ok:
            self.history.record("recovered", fault=fault, seconds=seconds)
            self.say(f"  [green]{what}[/] after {seconds:.2f} s")
        else:
            self.history.record("unrecovered", fault=fault, seconds=seconds)
            self.say(f"  [bold red]not recovered[/] ({what}) within {self.bound:.0f} s")

    def _kill_master(self) -> None:
        active = self.active_master()
        if active is None:
            return
        started = self._fault("kill-master", active[0])
        self.backend.kill(active[0])
        self._recovered("kill-master", started, self._wait(lambda: self._new_master(active[1])), "a backup took over")
        self.backend.restart(active[0])

    def _kill_worker(self) -> None:
        worker, held = self.busy_worker()
        started = self._fault("kill-worker", worker, f"holding {len(held)} task(s)")
        self.backend.kill(worker)
        self._recovered("kill-worker", started, self._wait(lambda: self._done(held)), "its tasks were done elsewhere")
        self.backend.restart(worker)

    def _pause_master(self) -> None:
        active = self.active_master()
        if active is None:
            return
        started = self._fault("pause-master", active[0], "(SIGSTOP past its session timeout)")
        self.backend.pause(active[0])
        recovered = self._wait(lambda: self._new_master(active[1]))
        time.sleep(1.0)  # stay frozen a little longer: the zombie wakes into a world that moved on
        self.backend.resume(active[0])
        self._recovered("pause-master", started, recovered, "a backup took over; the zombie was resumed")

    def _pause_worker(self) -> None:
        worker, held = self.busy_worker()
        started = self._fault("pause-worker", worker, f"holding {len(held)} task(s) (SIGSTOP)")
        self.backend.pause(worker)
        recovered = self._wait(lambda: self._done(held))
        time.sleep(0.5)
        self.backend.resume(worker)
        self._recovered("pause-worker", started, recovered, "its tasks were done elsewhere; the zombie was resumed")

    def _expire_session(self) -> None:
        if self.rng.random() < 0.5 and (active := self.active_master()) is not None:
            started = self._fault("expire-session", active[0], "(the active master's session, on the server)")
            expired = self.backend.expire(active[0])
            ok = expired and self._wait(lambda: self._new_master(active[1]))
            self._recovered("expire-session", started, ok, "a new master was elected")
        else:
            worker, held = self.busy_worker()
            started = self._fault("expire-session", worker, f"(a worker holding {len(held)} task(s))")
            expired = self.backend.expire(worker)
            ok = expired and self._wait(lambda: self._done(held))
            self._recovered("expire-session", started, ok, "its tasks were done")

    def _kill_zk_leader(self) -> None:
        leader = self.backend.zk_leader()
        if leader is None:
            return
        started = self._fault("kill-zk-leader", f"ZooKeeper server {leader}")
        self.backend.kill_zk(leader)
        self._recovered("kill-zk-leader", started, self._wait(self._writable), "writes accepted again")
        self.backend.restart_zk(leader)

    def _zk_quorum_loss(self) -> None:
        victims = self.rng.sample(self.backend.zk_servers(), 2)
        self._fault("zk-quorum-loss", f"ZooKeeper servers {' and '.join(victims)}", "(no quorum: no progress)")
        for server in victims:
            self.backend.kill_zk(server)
        time.sleep(max(3.0, self.backend.session_timeout))
        for server in victims:
            self.backend.restart_zk(server)
        restarted = time.monotonic()
        writable = self._wait(self._writable)
        self.history.record("heal", fault="zk-quorum-loss")  # the quorum is back: liveness counts from here
        self._recovered("zk-quorum-loss", restarted, writable, "quorum back, writes accepted")

    def _reconfig(self) -> None:
        """Grow the ensemble by two servers, then remove them, each in one reconfig (chapter 10).

        Nothing is killed: a reconfiguration alone must change no master, so a new master counts
        as not recovered. A backend that cannot change its ensemble (compose's is static) skips it.
        """
        if not hasattr(self.backend, "add_zk"):
            self.say("[yellow]reconfig[/] skipped: this backend's ensemble is static")
            return
        master = self.active_master()
        started = self._fault("reconfig", "the ZooKeeper ensemble", "(grow 3 -> 5, then shrink 5 -> 3)")
        try:
            added = self.backend.add_zk(2)
            grown = self._wait(self._writable)
            self.backend.remove_zk(added)
            shrunk = self._wait(self._writable)
        except Exception as exc:  # a refused reconfig is a finding of the run, not a crash of it
            self._recovered("reconfig", started, False, f"reconfig failed: {exc}")
            return
        now = self.active_master()
        same = master is None or (now is not None and now[1] == master[1])
        what = "grown and shrunk, writes accepted, the same master" if same else "THE MASTER CHANGED"
        self._recovered("reconfig", started, grown and shrunk and same, what)
