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
import threading

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

    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        for host in (upstream[0], listen[0]):
            if not host.startswith("127."):
                raise ValueError(f"a partition proxy stays on loopback (127.0.0.0/8), not {host}")
        self.upstream = upstream
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
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:  # the server is down: so is the connection through us
                client.close()
                continue
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
        try:
            while self._flowing():  # frozen: read nothing, so the bytes wait
                data = source.recv(65536)
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
