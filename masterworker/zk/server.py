"""Starting and controlling real ZooKeeper servers on loopback (book chapters 9 and 10).

``LocalZooKeeper(servers=1)`` is a standalone server; ``servers=3`` or ``5`` is an ensemble
that elects a leader and needs a majority (a quorum) to accept writes: 2 of 3, 3 of 5. Each
server is a JVM started from generated configuration in its own data directory, so tests,
tutorials and the chaos runs can stop, kill, pause and restart servers one by one.

Caveats a reader should know:

- Other ZooKeeper servers may run on the same machine. Before trusting a port, we ask the
  server there for its configuration (the ``conf`` four-letter word) and check that its data
  directory is ours.
- Every JVM is started so that it dies with the Python process that started it (Linux's
  parent-death signal), and ``stop()`` runs at interpreter exit, so no server outlives us.
- With a ``peer_network`` (the chaos runs), servers name each other ``mw-zk<N>`` in their
  membership lines, and each JVM resolves those names through a hosts file of its own
  (``-Djdk.net.hosts.file``): itself at 127.0.0.1, every peer where the network says, e.g. a
  proxy on that one link. The membership stays the same text on every server, so a reconfig,
  which spreads the leader's text to all, changes nothing about who reaches whom how.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from kazoo.security import make_digest_acl_credential
from loguru import logger

from masterworker.zk.fourletter import four_letter, parse_lines
from masterworker.zk.install import ZooKeeperInstall, find_install

LOOPBACK = "127.0.0.1"
SERVING_MODES = ("standalone", "leader", "follower", "observer")


class ServerStartError(RuntimeError):
    """A server did not come up; the message says why in one line."""


class PortInUse(ServerStartError):
    """A port we were told to use is taken."""


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it when its parent dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass(frozen=True)
class ServerConfig:
    """One server's identity and ports; ``peer_port`` and ``election_port`` only matter in an ensemble."""

    sid: int
    client_port: int
    peer_port: int
    election_port: int
    data_dir: Path
    observer: bool = False  # receives every commit but does not vote (chapter 9)
    peer_host: str = LOOPBACK  # the host of the peer ports in the membership: an address, or a name (peer_network)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def role(self) -> str:
        return "observer" if self.observer else "participant"

    def server_line(self) -> str:
        """This server as a line of the dynamic configuration (3.5+): peer ports, role; client address."""
        return (
            f"server.{self.sid}={self.peer_host}:{self.peer_port}:{self.election_port}:{self.role}"
            f";{LOOPBACK}:{self.client_port}"
        )


LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File={log}
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} [myid:%X{{myid}}] %-5p [%t] %c{{1}} - %m%n
"""

LOGBACK_XML = """\
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%d{{ISO8601}} %-5level [%thread] %logger{{1}} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""


class PeerNetwork(Protocol):
    """Where server ``source`` reaches the peer ports (quorum, election) of server ``target``."""

    def address(self, source: int, target: ServerConfig) -> str: ...


class ZooKeeperServer:
    """One ZooKeeper JVM: start, stop, kill -9, pause, restart, and ask it what it is."""

    def __init__(
        self,
        install: ZooKeeperInstall,
        config: ServerConfig,
        peers: list[ServerConfig],
        tick_ms: int,
        super_digest: str | None = None,
    ) -> None:
        self.install = install
        self.super_digest = super_digest
        self.config = config
        self.peers = peers
        self.tick_ms = tick_ms
        self.process: subprocess.Popen[bytes] | None = None
        self.hosts_file: Path | None = None  # names of the peers, for this JVM only (LocalZooKeeper's peer_network)
        self._configured = False  # after the first start the server owns its files (reconfig rewrites them)

    # -- configuration -------------------------------------------------------------------
    @property
    def sid(self) -> int:
        return self.config.sid

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def log_file(self) -> Path:
        return self.config.data_dir / "zookeeper.log"

    @property
    def config_file(self) -> Path:
        return self.config.data_dir / "zoo.cfg"

    @property
    def dynamic_config_file(self) -> Path:
        return self.config.data_dir / "zoo.cfg.dynamic"

    def write_config(self) -> None:
        """The generated zoo.cfg: loopback only, admin server off, every four-letter word allowed.

        An ensemble's membership goes to a separate dynamic file (``server.N=...`` lines with each
        server's role and client address), the form ZooKeeper 3.5+ rewrites itself when the
        ensemble is reconfigured (chapter 10): it then writes ``zoo.cfg.dynamic.<version>`` and
        points ``dynamicConfigFile`` at it, so a restarted server comes back with the new members.
        """
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        ensemble = len(self.peers) > 1 or cfg.observer
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=20",
            "syncLimit=10",
            f"dataDir={cfg.data_dir}",
            *([] if ensemble else [f"clientPort={cfg.client_port}", f"clientPortAddress={LOOPBACK}"]),
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "minSessionTimeout=1000",
            "maxSessionTimeout=60000",
            "maxClientCnxns=0",
            "autopurge.purgeInterval=0",
        ]
        if ensemble:
            (cfg.data_dir / "myid").write_text(f"{cfg.sid}\n")
            # reconfigEnabled: the ensemble can be changed while it runs, by an authorised client only
            # (the superuser whose digest the launcher passes to every server; see LocalZooKeeper).
            lines += ["standaloneEnabled=false", "reconfigEnabled=true"]
            lines += ["peerType=observer"] if cfg.observer else []
            lines += [f"dynamicConfigFile={self.dynamic_config_file}"]
            self.dynamic_config_file.write_text("".join(p.server_line() + "\n" for p in self.peers))
        self.config_file.write_text("\n".join(lines) + "\n")
        (cfg.data_dir / "log4j.properties").write_text(LOG4J_PROPERTIES.format(log=self.log_file))
        (cfg.data_dir / "logback.xml").write_text(LOGBACK_XML.format(log=self.log_file))

    def command(self) -> list[str]:
        data_dir = self.config.data_dir
        return [
            self.install.java,
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            os.pathsep.join(self.install.classpath),
            f"-Dlog4j.configuration=file:{data_dir / 'log4j.properties'}",
            f"-Dlogback.configurationFile={data_dir / 'logback.xml'}",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-Dzookeeper.admin.enableServer=false",
            *([f"-Djdk.net.hosts.file={self.hosts_file}"] if self.hosts_file else []),
            *(
                [f"-Dzookeeper.DigestAuthenticationProvider.superDigest={self.super_digest}"]
                if self.super_digest
                else []
            ),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(self.config_file),
        ]

    # -- life cycle ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        if self.running:
            return
        if not port_is_free(self.config.client_port):
            raise PortInUse(f"port {self.config.client_port} on {LOOPBACK} is already in use")
        if not self._configured:
            self.write_config()
            self._configured = True
        out = open(self.config.data_dir / "zookeeper.out", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.config.data_dir,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the JVM cleanly
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        out.close()
        _STARTED.add(self)
        logger.debug("started ZooKeeper server {} (pid {}) on {}", self.sid, self.pid, self.address)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not go. Idempotent."""
        if not self.process:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)  # a paused JVM cannot handle SIGTERM
                self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        logger.debug("stopped ZooKeeper server {}", self.sid)

    def kill(self) -> None:
        """kill -9: the server gets no chance to do anything."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self._wait_port_free(timeout)
        self.start()

    def _wait_port_free(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_is_free(self.config.client_port):
            if time.monotonic() > deadline:
                raise PortInUse(f"port {self.config.client_port} on {LOOPBACK} is still in use")
            time.sleep(0.05)

    # -- asking the server ----------------------------------------------------------------
    def ask(self, word: str, timeout: float = 2.0) -> str:
        return four_letter(LOOPBACK, self.config.client_port, word, timeout)

    def mode(self) -> str | None:
        """standalone, leader, follower, "not serving", or None when nothing answers."""
        try:
            reply = self.ask("srvr")
        except OSError:
            return None
        if "not currently serving" in reply:
            return "not serving"
        return parse_lines(reply).get("Mode")

    def is_ours(self) -> bool | None:
        """Whether the server answering on our port has our data directory (None: it won't say yet)."""
        try:
            conf = parse_lines(self.ask("conf"), "=")
        except OSError:
            return None
        if "dataDir" not in conf:  # a server still starting answers "not currently serving"
            return None
        return conf["dataDir"].startswith(str(self.config.data_dir))

    def log_tail(self, lines: int = 5) -> str:
        text = ""
        for path in (self.log_file, self.config.data_dir / "zookeeper.out"):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_serving(self, timeout: float = 60.0) -> str:
        """Wait until this server serves clients; return its mode. Raises ServerStartError."""
        deadline = time.monotonic() + timeout
        checked_identity = False
        while True:
            if self.process and self.process.poll() is not None:
                tail = self.log_tail(1) or f"exit code {self.process.returncode}"
                raise ServerStartError(f"ZooKeeper server {self.sid} exited during start: {tail}")
            mode = self.mode()
            if mode is not None and not checked_identity:
                ours = self.is_ours()
                if ours is False:
                    raise PortInUse(
                        f"another ZooKeeper server answers on {self.address} (its data directory is not ours)"
                    )
                checked_identity = ours is True
            if mode in SERVING_MODES and checked_identity:
                return mode
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"ZooKeeper server {self.sid} on {self.address} did not start in {timeout:.0f} s"
                )
            time.sleep(0.1)


# Every server started in this interpreter, so none survives it (see module docstring).
_STARTED: weakref.WeakSet[ZooKeeperServer] = weakref.WeakSet()


@atexit.register
def _stop_everything() -> None:
    for server in list(_STARTED):
        with contextlib.suppress(Exception):
            server.stop(timeout=5)


class LocalZooKeeper:
    """A standalone server (``servers=1``) or an ensemble of 3 or 5 voters, plus observers, on loopback.

    Usage::

        with LocalZooKeeper(servers=3, observers=1) as zk:
            client = KazooClient(hosts=zk.connect_string)
            zk.leader().kill()          # the others elect a new leader; the observer does not vote

    The data lives in ``data_dir`` (a temporary directory when not given, removed on stop).
    Ensembles can be reconfigured while they run (``masterworker.zk.reconfig``): ZooKeeper 3.5+
    accepts ``reconfig`` only from a superuser (or with ACL checks skipped, or with an ACL opened
    on ``/zookeeper/config``). Every server gets the digest of ``superuser``; when none is given a
    random password is made that only this process knows, so only the launcher can reconfigure.
    """

    def __init__(
        self,
        servers: int = 1,
        data_dir: Path | str | None = None,
        client_port: int | None = None,
        install: ZooKeeperInstall | None = None,
        tick_ms: int = 500,
        superuser: str | None = None,
        observers: int = 0,
        peer_network: PeerNetwork | None = None,
    ) -> None:
        """``superuser="super:PASSWORD"`` makes that digest user bypass every ACL (chapter 6's
        escape hatch for operators; the tests use it to clean up secured trees, the launcher to
        reconfigure). ``observers`` servers follow without voting (chapter 9). ``peer_network``
        decides where each server reaches each other's peer ports (see the module docstring)."""
        if not 1 <= servers <= 7:
            raise ValueError("a local ZooKeeper has 1 to 7 voting servers")
        if not 0 <= observers <= 7:
            raise ValueError("a local ZooKeeper has 0 to 7 observers")
        self.install = install or find_install()
        self.tick_ms = tick_ms
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mw-zk-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir).resolve()
        self.base_port = client_port
        if client_port is not None and not port_is_free(client_port):
            raise PortInUse(f"port {client_port} on {LOOPBACK} is already in use")
        self.superuser = superuser or f"super:{secrets.token_hex(16)}"
        self.super_digest = make_digest_acl_credential(*self.superuser.split(":", 1))
        self.peer_network = peer_network
        configs = [self._config(sid, observer=sid > servers) for sid in range(1, servers + observers + 1)]
        self.servers = [self._server(c, configs) for c in configs]
        self._next_sid = len(configs) + 1

    def _config(self, sid: int, observer: bool = False, check_port: bool = False) -> ServerConfig:
        """Ports count up from ``client_port`` when one was given (and is free), else the kernel picks."""
        port = self.base_port + sid - 1 if self.base_port is not None else None
        if port is None or port >= 65536 or (check_port and not port_is_free(port)):
            port = free_port()
        peer_host = f"mw-zk{sid}" if self.peer_network is not None else LOOPBACK
        return ServerConfig(sid, port, free_port(), free_port(), self.data_dir / f"server{sid}", observer, peer_host)

    def _server(self, config: ServerConfig, peers: list[ServerConfig]) -> ZooKeeperServer:
        server = ZooKeeperServer(self.install, config, peers, self.tick_ms, self.super_digest)
        if self.peer_network is not None:
            server.hosts_file = config.data_dir / "hosts"
        return server

    def _write_hosts(self) -> None:
        """Every server's hosts file: itself at 127.0.0.1, each peer where ``peer_network`` says."""
        if self.peer_network is None:
            return
        for server in self.servers:
            if server.hosts_file is None:
                continue
            lines = [f"{LOOPBACK} localhost {socket.gethostname()}"]
            for peer in self.servers:
                where = LOOPBACK if peer is server else self.peer_network.address(server.sid, peer.config)
                lines.append(f"{where} {peer.config.peer_host}")
            server.hosts_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = server.hosts_file.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(server.hosts_file)  # a JVM reads it at each lookup: never half-written

    # -- membership (changed by masterworker.zk.reconfig) ------------------------------------
    def voters(self) -> list[ZooKeeperServer]:
        return [s for s in self.servers if not s.config.observer]

    def observers(self) -> list[ZooKeeperServer]:
        return [s for s in self.servers if s.config.observer]

    def new_server(self, observer: bool = False) -> ZooKeeperServer:
        """A server that is not a member yet, configured to join: it knows the members and itself.

        Started, it syncs with the leader as a non-voting learner; it becomes a member when a
        ``reconfig`` adds it. Ids are never reused within a run (a removed id's data stays put).
        """
        config = self._config(self._next_sid, observer, check_port=True)
        self._next_sid += 1
        server = self._server(config, [s.config for s in self.servers] + [config])
        self.servers.append(server)
        self._write_hosts()
        return server

    def forget(self, server: ZooKeeperServer) -> None:
        """Stop a server that left the ensemble and drop it from the list."""
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def set_observer(self, server: ZooKeeperServer, observer: bool) -> None:
        """Record a role change a reconfig made (the server itself learns it from the new config)."""
        server.config = replace(server.config, observer=observer)

    @property
    def connect_string(self) -> str:
        return ",".join(s.address for s in self.servers)

    def server(self, sid: int) -> ZooKeeperServer:
        for server in self.servers:
            if server.sid == sid:
                return server
        raise KeyError(f"no ZooKeeper server {sid} in this ensemble")

    def start(self, timeout: float = 60.0) -> LocalZooKeeper:
        try:
            self._write_hosts()
            for server in self.servers:
                server.start()
            self.wait_serving(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until every running server serves; an ensemble also has a leader then."""
        deadline = time.monotonic() + timeout
        for server in self.servers:
            if server.running:
                server.wait_serving(max(0.1, deadline - time.monotonic()))

    def modes(self) -> dict[int, str | None]:
        return {s.sid: s.mode() if s.running else None for s in self.servers}

    def leader(self) -> ZooKeeperServer | None:
        for server in self.servers:
            if server.running and server.mode() in ("leader", "standalone"):
                return server
        return None

    def wait_for_leader(self, timeout: float = 60.0) -> ZooKeeperServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.1)
        raise ServerStartError(f"no leader was elected in {timeout:.0f} s")

    def stop(self) -> None:
        """Stop every server (in parallel: an ensemble losing quorum is slow to say goodbye)."""
        threads = [threading.Thread(target=s.stop) for s in self.servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalZooKeeper:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
