"""The local chaos backend: masters and workers as processes, ZooKeeper as local JVMs.

Everything the compose demo does to containers, done to processes on this machine: kill -9,
SIGSTOP/SIGCONT, restarts, and real session expiry through the session each role publishes.
Every role reaches ZooKeeper through proxies of its own (one per server, ``partition.ProxyGroup``),
so the nemesis can cut one process off the network, or let its requests through and drop the
replies, while everything else runs on. With ``PeerLinks`` as the ensemble's peer network, it
can also cut one ZooKeeper server off from its peers (its clients still reach it).
"""

from __future__ import annotations

import signal
from pathlib import Path

from masterworker.lab.chaos.partition import PeerLinks, ProxyGroup
from masterworker.lab.processes import MwProcess
from masterworker.system.history import read_session
from masterworker.system.zkops import expire_session_id
from masterworker.zk.reconfig import Reconfigurer
from masterworker.zk.server import LocalZooKeeper


class LocalBackend:
    """Implements ``nemesis.Backend`` over MwProcess and LocalZooKeeper."""

    def __init__(
        self,
        zk: LocalZooKeeper,
        env: dict[str, str],
        run_dir: Path,
        session_timeout: float,
        peers: PeerLinks | None = None,
    ) -> None:
        self.zk = zk
        self.peers = peers
        self.env = env
        self.run_dir = run_dir
        self.session_timeout = session_timeout
        self.processes: dict[str, MwProcess] = {}
        self._args: dict[str, list[str]] = {}
        self._paused: set[str] = set()
        self.links: dict[str, ProxyGroup] = {}  # each role's way to ZooKeeper

    def start(self, role: str, args: list[str]) -> MwProcess:
        """Start a role; its connect string lists its own proxies, one per ZooKeeper server."""
        self._args[role] = args
        if role not in self.links:
            self.links[role] = ProxyGroup([("127.0.0.1", s.config.client_port) for s in self.zk.servers])
        env = self.env | {"MW_ZK": self.links[role].connect_string}
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.processes[role] = MwProcess(args, env, self.run_dir / "logs" / f"{role}.log")
        return self.processes[role]

    def masters(self) -> list[str]:
        return sorted(r for r, a in self._args.items() if a[0] == "master")

    def workers(self) -> list[str]:
        return sorted(r for r, a in self._args.items() if a[0] == "worker")

    def kill(self, role: str) -> None:
        self.processes[role].kill9()

    def pause(self, role: str) -> None:
        self.processes[role].signal(signal.SIGSTOP)
        self._paused.add(role)

    def resume(self, role: str) -> None:
        self.processes[role].signal(signal.SIGCONT)
        self._paused.discard(role)

    def restart(self, role: str) -> None:
        if not self.processes[role].alive:
            self.processes[role].stop()
            self.start(role, self._args[role])

    def partition(self, role: str) -> None:
        """Cut the role off ZooKeeper: nothing either way, no connection closed."""
        self.links[role].freeze()

    def partition_oneway(self, role: str) -> None:
        """The role's requests reach ZooKeeper; ZooKeeper's replies never reach the role."""
        self.links[role].oneway()

    def heal_partition(self, role: str) -> None:
        self.links[role].heal()

    def expire(self, role: str) -> bool:
        session = read_session(self.run_dir, role)
        if session is None:
            return False
        try:
            expire_session_id(self.zk.connect_string, session, self.session_timeout)
        except Exception:  # the session was already gone: nothing to expire
            return False
        return True

    def zk_servers(self) -> list[str]:
        return [str(s.sid) for s in self.zk.servers]

    def zk_leader(self) -> str | None:
        leader = self.zk.leader()
        return str(leader.sid) if leader else None

    def zk_mode(self, server: str) -> str | None:
        target = self.zk.server(int(server))
        return target.mode() if target.running else None

    @property
    def can_partition_zk(self) -> bool:
        return self.peers is not None

    def partition_zk(self, server: str) -> None:
        assert self.peers is not None, "partition-zk needs an ensemble started with PeerLinks"
        self.peers.cut_off(int(server))

    def heal_partition_zk(self, server: str) -> None:
        if self.peers is not None:
            self.peers.heal(int(server))

    def kill_zk(self, server: str) -> None:
        self.zk.server(int(server)).kill()

    def restart_zk(self, server: str) -> None:
        target = self.zk.server(int(server))
        if not target.running:
            target.restart()

    def add_zk(self, count: int) -> list[str]:
        """Start ``count`` new servers and add them to the ensemble (ZooKeeper's reconfig)."""
        change = Reconfigurer(self.zk).add(count)
        return [str(sid) for sid in change.after.voters if sid not in change.before.voters]

    def remove_zk(self, servers: list[str]) -> None:
        Reconfigurer(self.zk).remove([int(s) for s in servers])

    def stop_load(self) -> None:
        """The local run's load generator lives in the controller process: nothing to stop here."""

    def heal(self) -> None:
        """Resume what is paused, restart what is dead: the end of the faults."""
        for role in list(self._paused):
            self.resume(role)
        for links in self.links.values():
            links.heal()
        if self.peers is not None:
            self.peers.heal()
        for server in self.zk.servers:
            if not server.running:
                server.restart()
        for role in self.processes:
            self.restart(role)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate(10)
            process.stop()
        for links in self.links.values():
            links.stop()
