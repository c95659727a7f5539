"""A system under measurement: ZooKeeper, masters and workers as processes, and what they cost.

Costs come from the operating system and the server, not from guesses: CPU seconds per
process from ``/proc/<pid>/stat``, ZooKeeper requests from the ``mntr`` counter
``zk_packets_received`` read before and after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.hosts import collect_hosts
from loguru import logger

from masterworker.lab.bench.costs import Snapshot, cpu_seconds
from masterworker.lab.processes import MwProcess, mw_env
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.system.protocol import MASTER, STATUS, WORKERS
from masterworker.system.zkops import ensure_nodes
from masterworker.zk.fourletter import four_letter, parse_lines
from masterworker.zk.server import LocalZooKeeper


class BenchSystem:
    """Start with ``with BenchSystem(...) as system``; everything stops on exit.

    With ``zk=None`` an embedded standalone server is started; otherwise the given ensemble is
    used, under a fresh chroot so nothing of the bench touches other data.
    """

    def __init__(self, zk: str | None = None, session_timeout: float = 5.0, log_level: str = "WARNING") -> None:
        self.session_timeout = session_timeout
        self.log_level = log_level
        self.log_dir = Path(tempfile.mkdtemp(prefix="mw-bench-"))
        self._embedded = LocalZooKeeper(servers=1, data_dir=self.log_dir / "zookeeper") if zk is None else None
        self._zk = zk
        self.processes: dict[str, MwProcess] = {}
        self.client: KazooClient | None = None

    def __enter__(self) -> BenchSystem:
        if self._embedded is not None:
            self._embedded.start()
            base = self._embedded.connect_string
        else:
            base = self._zk.split("/", 1)[0]
            admin = connect(ZkSettings(hosts=base))
            self._chroot = f"/mw-bench-{uuid.uuid4().hex[:8]}"
            admin.create(self._chroot)
            close_quietly(admin)
            base = base + self._chroot
        self.hosts = base
        self.client = connect(ZkSettings(hosts=self.hosts, session_timeout=30))
        ensure_nodes(self.client)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Stops everything; the logs and the server's data go too, unless the run failed (then they stay)."""
        for process in self.processes.values():
            process.terminate(10)
            process.stop()
        if self.client is not None:
            close_quietly(self.client)
        if self._embedded is not None:
            self._embedded.stop()
        else:
            admin = connect(ZkSettings(hosts=self._zk.split("/", 1)[0]))
            admin.delete(self._chroot, recursive=True)
            close_quietly(admin)
        if exc_type is None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        else:
            logger.warning("the bench's logs and ZooKeeper's data are kept in {}", self.log_dir)

    @property
    def embedded(self) -> LocalZooKeeper | None:
        """The bench's own server (None with ``--zk``)."""
        return self._embedded

    # -- roles ----------------------------------------------------------------------------------
    def start(self, name: str, *args: str) -> MwProcess:
        env = mw_env(self.hosts, self.session_timeout, self.log_level)
        self.processes[name] = MwProcess(list(args), env, self.log_dir / f"{name}.log")
        return self.processes[name]

    def start_master(self, name: str = "master-1", impl: str = "default") -> MwProcess:
        return self.start(name, "master", "--id", name, "--impl", impl)

    def start_worker(self, name: str, slots: int = 1, prefetch: int | None = None) -> MwProcess:
        """``prefetch=None``: the worker's own default, as a user starts it."""
        extra = () if prefetch is None else ("--prefetch", str(prefetch))
        return self.start(name, "worker", "--id", name, "--slots", str(slots), *extra)

    def wait(self, condition: Callable[[], object], timeout: float = 60, what: str = "the system") -> float:
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the bench waited {timeout:g} s for {what}")
            time.sleep(0.005)
        return time.monotonic() - started

    def ready(self, workers: int) -> None:
        self.wait(
            lambda: self.client.exists(MASTER) and len(self.client.get_children(WORKERS)) >= workers,
            60,
            "the master and workers",
        )

    def settle(self, timeout: float = 30, window: float = 0.25, share: float = 0.02) -> float:
        """Waits until the system's processes are quiet: together less than ``share`` of a core over ``window``.

        A process that is still starting (a backup master importing its modules, a JVM loading its
        classes) must not be charged to the round that happens to run beside it; neither system's.
        Gives up quietly after ``timeout`` (the rounds then say what they cost)."""
        started = time.monotonic()
        last = self._system_cpu()
        while time.monotonic() - started < timeout:
            time.sleep(window)
            now = self._system_cpu()
            if now - last < share * window:
                break
            last = now
        return time.monotonic() - started

    def _system_cpu(self) -> float:
        return sum(seconds for name, seconds in self.cpu().items() if name != "bench client")

    def statuses(self) -> int:
        return self.client.exists(STATUS).numChildren

    # -- costs ------------------------------------------------------------------------------------
    def _addresses(self) -> list[tuple[str, int]]:
        if self._embedded is not None:
            return [("127.0.0.1", s.config.client_port) for s in self._embedded.servers]
        return collect_hosts(self._zk)[0]

    def zookeeper_version(self) -> str | None:
        """From ``srvr`` (the launcher allows every four-letter word): "3.8.0" (the release, without the build)."""
        host, port = self._addresses()[0]
        try:
            return parse_lines(four_letter(host, port, "srvr"))["Zookeeper version"].split("-")[0].strip()
        except (OSError, KeyError):
            return None

    def snapshot(self) -> Snapshot:
        """Counters now: requests received by the server(s), CPU of every process, the clock."""
        return Snapshot(at=time.monotonic(), requests=self.server_requests(), cpu=self.cpu())

    def server_requests(self) -> int | None:
        """Requests received by the server(s) so far (mntr zk_packets_received, summed)."""
        total = 0
        for host, port in self._addresses():
            try:
                total += int(parse_lines(four_letter(host, port, "mntr"), "\t")["zk_packets_received"])
            except (OSError, KeyError, ValueError):
                return None
        return total

    def cpu(self) -> dict[str, float]:
        usage = {name: cpu_seconds(p.pid, alive_too=True) for name, p in self.processes.items() if p.alive}
        usage["bench client"] = cpu_seconds(os.getpid())
        if self._embedded is not None:
            usage["zookeeper"] = sum(cpu_seconds(s.pid) for s in self._embedded.servers if s.pid)
        return usage
