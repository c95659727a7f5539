"""Transaction results, four-letter parsing and the poll-based select, without a server."""

from __future__ import annotations

import socket
import threading
import time

from kazoo.exceptions import BadVersionError, NoNodeError, RolledBackError, RuntimeInconsistency
from kazoo.protocol.states import ZnodeStat

from masterworker.system.fast_handler import BufferedSocket, buffered_select, poll_select
from masterworker.system.zkops import failure
from masterworker.zk.fourletter import parse_lines


def test_failure_names_the_operation_that_broke_the_transaction() -> None:
    assert failure([ZnodeStat(*([0] * 11)), "/x", True]) is None
    results = [RolledBackError(), BadVersionError(), RuntimeInconsistency()]
    index, error = failure(results)
    assert index == 1 and isinstance(error, BadVersionError)
    assert failure([NoNodeError(), RolledBackError()])[0] == 0


def test_parse_four_letter_replies() -> None:
    srvr = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.1/3\nMode: leader\nNode count: 5\n"
    assert parse_lines(srvr)["Mode"] == "leader"
    assert parse_lines("dataDir=/tmp/x/version-2\nclientPort=1\n", "=")["dataDir"] == "/tmp/x/version-2"


def test_poll_select_reports_readable_and_writable_sockets() -> None:
    left, right = socket.socketpair()
    try:
        readable, writable, _ = poll_select([left], [right], [], 0)
        assert readable == [] and writable == [right]
        right.sendall(b"x")
        readable, _, _ = poll_select([left], [], [], 1.0)
        assert readable == [left]
        assert poll_select([right], [], [], 0)[0] == []
    finally:
        left.close()
        right.close()


def test_a_buffered_socket_reads_in_bulk_and_serves_small_reads_from_memory() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    reader = BufferedSocket(left, send_timeout=1.0)
    try:
        right.sendall(b"\x00\x00\x00\x03abc\x00\x00\x00\x02de")  # two of kazoo's frames in one burst
        assert buffered_select([reader], [], [], 1.0)[0] == [reader]
        assert reader.recv(4) == b"\x00\x00\x00\x03" and reader.pending() == 9
        # The kernel holds nothing now: only the buffer says there is more to read, at once.
        assert poll_select([left], [], [], 0)[0] == []
        assert buffered_select([reader], [], [], 5.0)[0] == [reader]
        assert reader.recv(3) == b"abc" and reader.recv(4) == b"\x00\x00\x00\x02"
        assert reader.recv(10) == b"de" and reader.pending() == 0
        assert buffered_select([reader], [], [], 0)[0] == []
    finally:
        left.close()
        right.close()


def test_a_buffered_socket_keeps_other_descriptors_in_turn_and_waits_for_room_to_send() -> None:
    left, right = socket.socketpair()
    wake_r, wake_w = socket.socketpair()
    left.setblocking(False)
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock = BufferedSocket(left, send_timeout=5.0)
    try:
        right.sendall(b"0123456789")
        sock.recv(2)
        wake_w.sendall(b"\0")  # a request waits to be sent while replies are buffered
        assert buffered_select([sock, wake_r], [], [], 1.0)[0] == [sock, wake_r]
        assert buffered_select([], [sock], [], 1.0)[1] == [sock]  # writable at once: send waits itself
        total = 200_000  # far more than the kernel buffers between the two ends
        received = []

        def read_later() -> None:
            while sum(received) < total:
                received.append(len(right.recv(65536)))

        reader = threading.Timer(0.3, read_later)
        reader.start()
        began, sent = time.monotonic(), 0
        while sent < total:
            sent += sock.send(b"x" * min(8192, total - sent))  # a full buffer makes send wait, not fail
        assert time.monotonic() - began >= 0.25  # it did wait for the reader
        reader.join(5)
        assert sum(received) == total
    finally:
        for s in (left, right, wake_r, wake_w):
            s.close()
