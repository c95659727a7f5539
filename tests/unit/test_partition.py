"""The partition proxy against a plain echo server: freeze, one-way and heal, as TCP would see them."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from masterworker.lab.chaos.partition import FROZEN, OPEN, PartitionProxy, advertising

QUIET = 0.3  # how long "nothing arrives" is watched for: the proxy forwards in well under a millisecond


class EchoServer:
    """Echoes every byte back and keeps what it received, so a test sees both directions."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()
        self.got = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                with self.got:
                    self.received += data
                    self.got.notify_all()
                conn.sendall(data)

    def wait_received(self, size: int, timeout: float = 5.0) -> bool:
        with self.got:
            return self.got.wait_for(lambda: len(self.received) >= size, timeout)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[PartitionProxy]:
    with PartitionProxy(("127.0.0.1", echo.port)) as proxy:
        yield proxy


def connect(proxy: PartitionProxy) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=5)


def read(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    """Up to ``size`` bytes; fewer when the connection closes (b"": closed)."""
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def silent(sock: socket.socket) -> bool:
    """True when nothing arrives within QUIET seconds (and the connection is not closed)."""
    sock.settimeout(QUIET)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False


def test_an_open_proxy_forwards_both_ways(proxy: PartitionProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"ping")
        assert read(sock, 4) == b"ping"
    assert proxy.state == OPEN and bytes(echo.received) == b"ping"


def test_frozen_nothing_passes_nothing_closes_and_heal_delivers_what_waited(
    proxy: PartitionProxy, echo: EchoServer
) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"a")
        assert read(sock, 1) == b"a"
        proxy.freeze()
        assert proxy.state == FROZEN
        sock.sendall(b"bc")
        assert silent(sock) and bytes(echo.received) == b"a"
        with connect(proxy) as late:  # a connection made during the partition carries nothing either
            late.sendall(b"d")
            assert silent(late)
            proxy.heal()
            assert read(late, 1) == b"d"
        assert read(sock, 2) == b"bc"  # the bytes sent into the partition arrive once it heals
    assert echo.wait_received(4) and sorted(bytes(echo.received)) == sorted(b"abcd")


def test_oneway_requests_pass_replies_are_dropped_new_connections_too_and_heal_cuts_them(
    proxy: PartitionProxy, echo: EchoServer
) -> None:
    with connect(proxy) as sock, connect(proxy) as kept:
        kept.sendall(b"k")
        assert read(kept, 1) == b"k"
        proxy.oneway()
        sock.sendall(b"request")
        assert echo.wait_received(len(b"k" + b"request"))  # the request reached the server...
        assert silent(sock)  # ...the reply did not
        with connect(proxy) as fresh:  # a reconnect meets the same one-way network
            fresh.sendall(b"again")
            assert echo.wait_received(len(b"krequestagain")) and silent(fresh)
            proxy.heal()
            assert read(fresh, 1) == b""  # it lost bytes: heal cuts it, the client reconnects
        assert read(sock, 1) == b""
        kept.sendall(b"x")  # a connection that lost nothing carries on
        assert read(kept, 1) == b"x"


def test_stop_closes_every_connection_and_the_port(echo: EchoServer) -> None:
    proxy = PartitionProxy(("127.0.0.1", echo.port)).start()
    sock = connect(proxy)
    proxy.freeze()
    proxy.stop()
    assert read(sock, 1) == b""
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection((proxy.host, proxy.port), timeout=1)


def test_a_server_that_is_down_closes_the_connection_through_the_proxy() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with PartitionProxy(("127.0.0.1", port)) as proxy, connect(proxy) as sock:
            assert read(sock, 1) == b""


def test_only_loopback_addresses_are_proxied() -> None:
    with pytest.raises(ValueError, match="loopback"):
        PartitionProxy(("10.0.0.1", 2181))


def test_an_election_greeting_announces_the_way_back() -> None:
    """ZooKeeper's election handshake: version, id, address; the address becomes the proxy's."""
    original = b"127.0.0.1:3888"
    greeting = struct.pack(">qqi", -65536, 3, len(original)) + original
    left, right = socket.socketpair()
    with left, right:
        left.sendall(greeting + b"rest")
        rewritten = advertising("127.77.1.3:3888")(right)
        assert rewritten == struct.pack(">qqi", -65536, 3, 15) + b"127.77.1.3:3888"
        assert right.recv(4) == b"rest"  # what follows the greeting is left for the pump
        left.sendall(struct.pack(">q", 2))  # the oldest protocol: the id alone
        assert advertising("127.77.1.3:3888")(right) == struct.pack(">q", 2)
