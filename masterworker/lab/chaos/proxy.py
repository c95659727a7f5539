"""A TCP proxy that loses a reply on purpose (book chapter 5: "recoverable failures").

A ConnectionLoss is the worst kind of failure for a writer: the request may or may not have
been applied. This proxy sits between one client and a ZooKeeper server, reads the client's
requests, and when armed it forwards the next request of a given kind (create, multi...) to the
server, swallows the server's reply, and cuts the connection. The client sees ConnectionLoss
for an operation that did happen; it reconnects through the proxy with the same session.

Usage::

    with DroppingProxy(server_port) as proxy:
        client = KazooClient(hosts=proxy.address)
        proxy.drop_reply_after(OP_CREATE)
        client.create("/x")     # raises ConnectionLoss, yet /x exists
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

OP_CREATE = 1
OP_DELETE = 2
OP_SET_DATA = 5
OP_MULTI = 14
OP_CREATE2 = 15
CREATE_OPS = (OP_CREATE, OP_CREATE2)


class DroppingProxy:
    """Forward 127.0.0.1:<port> to a ZooKeeper server; drop the reply to an armed operation."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._armed: tuple[int, ...] = ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.dropped = threading.Event()  # set when an armed drop happened
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DroppingProxy:
        self._thread.start()
        return self

    def drop_reply_after(self, *ops: int) -> None:
        """Arm: the next request whose op code is in ``ops`` reaches the server; its reply does not."""
        with self._lock:
            self._armed = ops or CREATE_OPS
            self.dropped.clear()

    def cut(self) -> None:
        """Cut every current connection (the clients reconnect)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # close() alone leaves a thread blocked in accept() accepting
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()

    def __enter__(self) -> DroppingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- plumbing ---------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((downstream, upstream))
            swallow = threading.Event()
            threading.Thread(target=self._client_to_server, args=(downstream, upstream, swallow), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(upstream, downstream, swallow), daemon=True).start()

    def _client_to_server(self, src: socket.socket, dst: socket.socket, swallow: threading.Event) -> None:
        """Forward frame by frame (4-byte length, then the body) so we can see each request's op."""
        first = True  # the connect request has no request header
        try:
            while True:
                header = read_exactly(src, 4)
                (length,) = struct.unpack(">i", header)
                body = read_exactly(src, length)
                op = None if first or length < 8 else struct.unpack(">ii", body[:8])[1]
                first = False
                with self._lock:
                    trigger = op is not None and op in self._armed
                    if trigger:
                        self._armed = ()
                if trigger:
                    swallow.set()  # from now on nothing reaches the client
                dst.sendall(header + body)
                if trigger:
                    time.sleep(0.3)  # let the server apply it; then the client loses the connection
                    self.dropped.set()
                    break
        except (OSError, ConnectionError):
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _server_to_client(self, src: socket.socket, dst: socket.socket, swallow: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not swallow.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()


def read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
