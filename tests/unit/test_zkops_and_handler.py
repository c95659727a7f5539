"""Transaction results, four-letter parsing and the poll-based select, without a server."""

from __future__ import annotations

import socket

from kazoo.exceptions import BadVersionError, NoNodeError, RolledBackError, RuntimeInconsistency
from kazoo.protocol.states import ZnodeStat

from masterworker.system.fast_handler import poll_select
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
