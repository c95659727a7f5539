"""Network partitions on loopback: a TCP proxy that stops forwarding on command (book chapter 5).

Chapter 5 is built around a partition: the master cut off from ZooKeeper, a backup taking over,
the old master still believing it is master. A partition closes nothing: as TCP sees it, bytes
simply stop arriving, and neither end learns why until a timeout says so. ``PartitionProxy``
sits between a client and a server (both on 127.0.0.0/8) and can

- ``freeze()``: forward nothing, either way, and close nothing. Bytes sent meanwhile wait, in the
  proxy or the kernel's buffers, and arrive after ``heal()``, as TCP's retransmissions would
  deliver them; a connection accepted meanwhile carries nothing either;
- ``oneway()``: forward the client's bytes, drop the server's (requests reach ZooKeeper, replies
  do not: a gray failure). New connections get the same treatment until ``heal()``, which cuts
  the connections that lost bytes (their stream is corrupt; the client reconnects);
- ``heal()``: forward both ways again.

Usage::

    with PartitionProxy(("127.0.0.1", zk_port)) as proxy:
        client = KazooClient(hosts=proxy.address)
        proxy.freeze()    # the client goes SUSPENDED; past the session timeout the session expires
        proxy.heal()      # the client reconnects and learns that its session is gone

Every thread is a daemon; ``stop()`` closes every socket. Throughput is not the point: two
threads per connection, fine for the handful of sessions a chaos run has.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from masterworker.lab.chaos.proxy import read_exactly

if TYPE_CHECKING:
    from masterworker.zk.server import ServerConfig

OPEN, FROZEN, ONEWAY, STOPPED = "open", "frozen", "oneway", "stopped"


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.lost_bytes = False  # oneway dropped some of the server's bytes

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class PartitionProxy:
    """Forward ``listen`` (default 127.0.0.1, a free port) to ``upstream``; freeze, one-way, heal."""

    def __init__(
        self,
        upstream: tuple[str, int],
        listen: tuple[str, int] = ("127.0.0.1", 0),
        patience: float = 0.0,
        greeting: Callable[[socket.socket], bytes] | None = None,
    ) -> None:
        """``patience``: how long to keep trying an upstream that refuses before closing the client's
        connection. The client's own connect already succeeded (to us), so it cannot see a refusal
        and retry the way it would without a proxy: a ZooKeeper follower connects to a new leader a
        moment before that leader listens, and without patience would give up on it for initLimit.
        ``greeting``: reads the client's opening message and returns what to send in its place."""
        for host in (upstream[0], listen[0]):
            if not host.startswith("127."):
                raise ValueError(f"a partition proxy stays on loopback (127.0.0.0/8), not {host}")
        self.upstream = upstream
        self.patience = patience
        self.greeting = greeting
        self._listener = socket.create_server(listen)
        self.host, self.port = self._listener.getsockname()[:2]
        self._state = OPEN
        self._changed = threading.Condition()
        self._links: set[_Link] = set()
        self._thread = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def state(self) -> str:
        return self._state

    def start(self) -> PartitionProxy:
        self._thread.start()
        return self

    def __enter__(self) -> PartitionProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the network's moods ------------------------------------------------------------------
    def freeze(self) -> None:
        self._set(FROZEN)

    def oneway(self) -> None:
        self._set(ONEWAY)

    def heal(self) -> None:
        with self._changed:
            corrupt = [link for link in self._links if link.lost_bytes]
            self._links.difference_update(corrupt)
        for link in corrupt:
            link.close()
        self._set(OPEN)

    def stop(self) -> None:
        self._set(STOPPED)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not on Linux)
        self._listener.close()
        with self._changed:
            links, self._links = list(self._links), set()
        for link in links:
            link.close()
        if self._thread.is_alive():
            self._thread.join(5)

    def _set(self, state: str) -> None:
        with self._changed:
            if self._state != STOPPED:
                self._state = state
            self._changed.notify_all()

    def _flowing(self) -> bool:
        """Wait while frozen; False once stopped."""
        with self._changed:
            self._changed.wait_for(lambda: self._state != FROZEN)
            return self._state != STOPPED

    # -- plumbing -----------------------------------------------------------------------------
    def _accept(self) -> None:
        while self._state != STOPPED:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        deadline = time.monotonic() + self.patience
        while True:
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                break
            except OSError:
                if time.monotonic() >= deadline or self._state == STOPPED:
                    client.close()  # the server is down: so is the connection through us
                    return
                time.sleep(0.05)
        server.settimeout(None)
        link = _Link(client, server)
        with self._changed:
            if self._state == STOPPED:
                link.close()
                return
            self._links.add(link)
        for source, target, replies in ((client, server, False), (server, client, True)):
            threading.Thread(target=self._pump, args=(link, source, target, replies), daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, target: socket.socket, replies: bool) -> None:
        greet = self.greeting if not replies else None
        try:
            while self._flowing():  # frozen: read nothing, so the bytes wait
                data, greet = (greet(source), None) if greet else (source.recv(65536), None)
                if not data:
                    break
                if not self._flowing():  # frozen since: hold these bytes until heal
                    break
                if replies and self._state == ONEWAY:
                    link.lost_bytes = True
                    continue
                target.sendall(data)
        except OSError:
            pass
        with self._changed:
            self._links.discard(link)
        link.close()


class ProxyGroup:
    """One process's proxies, one per ZooKeeper server, cut and healed together."""

    def __init__(self, upstreams: list[tuple[str, int]]) -> None:
        self.proxies = [PartitionProxy(upstream).start() for upstream in upstreams]

    @property
    def connect_string(self) -> str:
        return ",".join(p.address for p in self.proxies)

    def freeze(self) -> None:
        for proxy in self.proxies:
            proxy.freeze()

    def oneway(self) -> None:
        for proxy in self.proxies:
            proxy.oneway()

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()


class PeerLinks:
    """Every link between two ZooKeeper servers through a proxy of its own (``LocalZooKeeper``'s
    ``peer_network``): server S reaches server T's quorum and election ports at 127.77.S.T, the
    same port numbers, forwarded to T's real ones. A distinct address per direction lets the
    proxies tell who connects, so ``cut_off(N)`` severs server N from every peer, whichever side
    opened the connection, while its clients still reach it.
    """

    def __init__(self) -> None:
        self.links: dict[tuple[int, int], list[PartitionProxy]] = {}
        self.configs: dict[int, ServerConfig] = {}

    def address(self, source: int, target: ServerConfig) -> str:
        host = f"127.77.{source}.{target.sid}"
        if (source, target.sid) not in self.links:
            self.configs[target.sid] = target
            way_back = f"127.77.{target.sid}.{source}"

            def announce(sock: socket.socket) -> bytes:
                return advertising(f"{way_back}:{self.configs[source].election_port}")(sock)

            quorum = PartitionProxy(("127.0.0.1", target.peer_port), (host, target.peer_port), patience=3.0)
            election = PartitionProxy(
                ("127.0.0.1", target.election_port), (host, target.election_port), patience=3.0, greeting=announce
            )
            self.links[(source, target.sid)] = [quorum.start(), election.start()]
        return host

    def _of(self, sid: int) -> list[PartitionProxy]:
        return [proxy for pair, proxies in self.links.items() if sid in pair for proxy in proxies]

    def cut_off(self, sid: int) -> None:
        for proxy in self._of(sid):
            proxy.freeze()

    def heal(self, sid: int | None = None) -> None:
        for proxy in self._of(sid) if sid is not None else [p for ps in self.links.values() for p in ps]:
            proxy.heal()

    def stop(self) -> None:
        for proxies in self.links.values():
            for proxy in proxies:
                proxy.stop()


def advertising(address: str) -> Callable[[socket.socket], bytes]:
    """Rewrite the election address a ZooKeeper server announces when it opens an election link.

    The opening message is: protocol version (a negative long), the server's id (long), the length
    of its election address (int) and the address ("127.0.0.1:port"). The server receiving it
    connects *back* to that address when the caller's id is the lower one: straight to the peer,
    around every proxy. Announcing ``address`` instead (the proxy of the way back) keeps both
    directions of every election link on a proxy.
    """

    def rewrite(sock: socket.socket) -> bytes:
        head = read_exactly(sock, 8)
        if struct.unpack(">q", head)[0] >= 0:  # the oldest protocol: the id alone, no address
            return head
        sid, length = struct.unpack(">qi", read_exactly(sock, 12))
        read_exactly(sock, length)
        announced = address.encode()
        return head + struct.pack(">qi", sid, len(announced)) + announced

    return rewrite
