"""The nemesis: a seeded schedule of the failures the book describes, injected one at a time.

Each fault picks its victim the way the failure hurts most (the *active* master, a *busy*
worker, the ZooKeeper *leader*), records itself in the history, waits for the system to
recover, and records how long that took. The same code drives real processes (the local
backend) and containers (the docker backend): a backend only knows how to kill, pause,
resume and restart a named role or ZooKeeper server, how to expire a role's session, and how to
cut a role or a ZooKeeper server off the network and heal it.

History records of a fault: ``fault`` when it starts; ``healed`` when its cause ends (the
network faults: the partition healed); ``recovered`` (or ``unrecovered``) with ``seconds``,
the time from the start to the recovery the fault waits for.
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
    "partition-master",  # the active master cut off the network past its session timeout, then healed
    "partition-worker",  # the same for a busy worker: its tasks run again elsewhere, its late result is discarded
    "oneway-master",  # the active master's requests reach ZooKeeper, the replies do not (a gray failure)
    "partition-zk",  # the ZooKeeper leader cut off from its peers: it must give way to a new leader
)
NETWORK_FAULTS = ("partition-master", "partition-worker", "oneway-master", "partition-zk")


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
    def partition(self, role: str) -> None: ...
    def partition_oneway(self, role: str) -> None: ...
    def heal_partition(self, role: str) -> None: ...
    def zk_servers(self) -> list[str]: ...
    def zk_leader(self) -> str | None: ...
    def kill_zk(self, server: str) -> None: ...
    def restart_zk(self, server: str) -> None: ...
    def zk_mode(self, server: str) -> str | None: ...
    def partition_zk(self, server: str) -> None: ...
    def heal_partition_zk(self, server: str) -> None: ...
    def add_zk(self, count: int) -> list[str]: ...
    def remove_zk(self, servers: list[str]) -> None: ...
    def heal(self) -> None: ...
    def stop_load(self) -> None: ...


def schedule(faults: tuple[str, ...], seed: int) -> Iterator[str]:
    """Every fault once in a seeded order, then again in another order, forever (no faults: none)."""
    rng = random.Random(seed)
    while faults:
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

    def _healed(self, fault: str, target: str) -> None:
        self.history.record("healed", fault=fault, target=target)
        self.say(f"  healed: {target} is connected again")

    def _recovered(self, fault: str, started: float, ok: bool, what: str, seconds: float | None = None) -> None:
        seconds = time.monotonic() - started if seconds is None else seconds
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
        target = f"ZooKeeper servers {' and '.join(victims)}"
        before = self.active_master()
        old_session = before[1] if before else None
        self._fault("zk-quorum-loss", target, "(no quorum: no progress)")
        for server in victims:
            self.backend.kill_zk(server)
        time.sleep(max(3.0, self.backend.session_timeout))
        for server in victims:
            self.backend.restart_zk(server)
        self.history.record("healed", fault="zk-quorum-loss", target=target)  # restarted; liveness waits for writes
        restarted = time.monotonic()
        writable = self._wait(self._writable)
        if writable:
            self.history.record("writable", fault="zk-quorum-loss")  # liveness counts from here
        writable_at = time.monotonic()

        def serving() -> bool:
            """A master elected since, or the old one still there a session timeout later (it survived)."""
            if self._new_master(old_session):
                return True
            survived = time.monotonic() - writable_at > self.backend.session_timeout + 1.0
            return survived and self.active_master() is not None

        # A master silent longer than its session gives it up, and the others elect one of them again
        # (its /master may linger a moment): the next fault waits for that, or it would land on a
        # system still recovering from this one and be charged with what this one did.
        served = writable and self._wait(serving)
        self._recovered("zk-quorum-loss", restarted, served, "quorum back, writes accepted, a master serving")

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

    # -- the network ---------------------------------------------------------------------------
    def _partition_master(self) -> None:
        self._cut_master("partition-master", self.backend.partition, "(cut off the network past its session timeout)")

    def _oneway_master(self) -> None:
        self._cut_master("oneway-master", self.backend.partition_oneway, "(its requests pass, the replies are dropped)")

    def _cut_master(self, fault: str, cut: Callable[[str], None], detail: str) -> None:
        """Chapter 5's zombie made by the network: the master lives on, cut off, and must lose /master.

        Cut off both ways, its session expires after the session timeout. With only the replies
        dropped, its requests (pings, reconnects) still reach ZooKeeper and keep the session alive:
        the master has to notice by itself that it cannot confirm /master and let go.
        """
        active = self.active_master()
        if active is None:
            return
        started = self._fault(fault, active[0], detail)
        cut(active[0])
        self._recovered(fault, started, self._wait(lambda: self._new_master(active[1])), "a backup took over")
        time.sleep(1.0)  # stay cut off a little longer: the zombie reconnects into a world that moved on
        self.backend.heal_partition(active[0])
        self._healed(fault, active[0])

    def _partition_worker(self) -> None:
        worker, held = self.busy_worker()
        started = self._fault("partition-worker", worker, f"holding {len(held)} task(s) (cut off the network)")
        self.backend.partition(worker)
        self._recovered(
            "partition-worker", started, self._wait(lambda: self._done(held)), "its tasks were done elsewhere"
        )
        time.sleep(0.5)
        self.backend.heal_partition(worker)
        self._healed("partition-worker", worker)

    def _partition_zk(self) -> None:
        """Cut the ZooKeeper leader off from its peers (its clients still reach it).

        Without a majority behind it the leader must stop leading (after ZooKeeper's syncLimit);
        the other two elect a new leader and accept writes. Once healed, the old leader rejoins
        as a follower. A backend whose servers cannot be cut off (compose's) skips it.
        """
        if not getattr(self.backend, "can_partition_zk", False):
            self.say("[yellow]partition-zk[/] skipped: this backend cannot cut a ZooKeeper server off its peers")
            return
        leader = self.backend.zk_leader()
        if leader is None:
            return
        started = self._fault("partition-zk", f"ZooKeeper server {leader}", "(the leader, cut off from its peers)")
        self.backend.partition_zk(leader)

        def replaced() -> bool:
            return self.backend.zk_mode(leader) != "leader" and self.backend.zk_leader() not in (None, leader)

        recovered = self._wait(lambda: replaced() and self._writable())
        seconds = time.monotonic() - started
        self.history.record("writable", fault="partition-zk")  # ZooKeeper serves again: liveness counts from here
        time.sleep(1.0)
        self.backend.heal_partition_zk(leader)
        self._healed("partition-zk", f"ZooKeeper server {leader}")
        rejoined = self._wait(lambda: self.backend.zk_mode(leader) == "follower")
        what = "a new leader accepted writes (the old one rejoined as a follower since)"
        if recovered and not rejoined:
            what = "a new leader accepted writes, but the old leader did not rejoin"
        self._recovered("partition-zk", started, recovered and rejoined, what, seconds)
