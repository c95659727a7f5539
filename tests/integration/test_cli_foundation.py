"""The CLI skeleton: help, version, connection errors as one line and an exit code."""

from __future__ import annotations

import socket
import time

from masterworker import __version__
from tests.helpers import run_mw


def test_help_lists_every_command_with_a_line_of_help() -> None:
    result = run_mw("--help")
    assert result.returncode == 0
    for command in ("master", "worker", "submit", "result", "status", "demo", "zk"):
        assert f"│ {command} " in result.stdout, command


def test_version() -> None:
    result = run_mw("--version")
    assert result.stdout.strip() == f"mw {__version__}"


def test_unreachable_zookeeper_is_one_line_and_exit_1_within_the_connect_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens here once the socket closes
    started = time.monotonic()
    result = run_mw("status", "--zk", f"127.0.0.1:{port}", timeout=30)
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no ZooKeeper server answered at 127.0.0.1:{port}")


def test_malformed_hosts_string_exits_2_with_one_line() -> None:
    for hosts in ("localhost:notaport", "h:99999", "h:2181//double"):
        result = run_mw("status", "--zk", hosts)
        assert result.returncode == 2, hosts
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: malformed"), (hosts, lines)


def test_bad_log_level_exits_2() -> None:
    result = run_mw("status", "--log-level", "LOUD")
    assert result.returncode == 2
    assert "unknown log level" in result.stderr
