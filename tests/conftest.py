"""Fixtures on a real ZooKeeper: one standalone server for the session, a fresh chroot per test.

Tests that stop servers start a 3-server ensemble of their own (``ensemble``). Every process and
JVM started here is stopped at teardown, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from masterworker.lab.processes import MwProcess
from masterworker.lab.processes import mw_env as mw_env_for
from masterworker.logs import setup_logging
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.zk.server import LocalZooKeeper
from tests.helpers import Roles

# A run started in the background of a non-interactive shell (`cmd &`, nohup) inherits SIGINT
# ignored, and so would every mw it starts: the Ctrl-C tests would find their Ctrl-C ignored,
# as it is for the user's own background jobs. The tests are about a user at a terminal: restore
# Python's handler, which an exec'd child sees as SIGINT at its default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SESSION_TIMEOUT = 2.0  # short sessions make takeover tests quick; the server's minimum is 1 s
SUPERUSER = "super:test-only"  # bypasses ACLs: the clean-up of secured trees


@pytest.fixture(scope="session", autouse=True)
def _logs() -> None:
    setup_logging(os.environ.get("MW_TEST_LOG_LEVEL", "WARNING"))


@pytest.fixture(scope="session")
def zk_server() -> Iterator[LocalZooKeeper]:
    with LocalZooKeeper(servers=1, superuser=SUPERUSER) as zk:
        yield zk


@pytest.fixture
def zk_hosts(zk_server: LocalZooKeeper) -> Iterator[str]:
    """A connect string with a chroot of this test's own: tests never see each other's znodes."""
    chroot = f"/test-{uuid.uuid4().hex[:12]}"
    admin = KazooClient(hosts=zk_server.connect_string, auth_data=[("digest", SUPERUSER)])
    admin.start(timeout=15)
    admin.create(chroot)
    yield zk_server.connect_string + chroot
    admin.delete(chroot, recursive=True)
    close_quietly(admin)


@pytest.fixture
def zk(zk_hosts: str) -> Iterator[KazooClient]:
    """A client inside the test's chroot, to look at and tamper with the tree."""
    client = connect(ZkSettings(hosts=zk_hosts, session_timeout=10))
    yield client
    close_quietly(client)


@pytest.fixture
def roles(zk_hosts: str) -> Iterator[Roles]:
    group = Roles(zk_hosts, SESSION_TIMEOUT)
    yield group
    group.stop_all()


@pytest.fixture
def mw_env(zk_hosts: str) -> dict[str, str]:
    return mw_env_for(zk_hosts, SESSION_TIMEOUT)


@pytest.fixture
def spawn(mw_env: dict[str, str], tmp_path: Path) -> Iterator:
    """spawn("master", "--id", "m1") runs ``python -m masterworker master --id m1``."""
    started: list[MwProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> MwProcess:
        name = "-".join(a.lstrip("-") for a in args[:3])
        process = MwProcess(list(args), env or mw_env, tmp_path / f"{len(started)}-{name}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def interactive(mw_env: dict[str, str]) -> Iterator:
    """interactive("submit", "--file", f) starts ``mw`` with pipes, to be signalled like a user at a terminal.

    Whatever the test's outcome, a process still running at its end is killed and reaped.
    """
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "masterworker", *args],
            env=mw_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture
def ensemble() -> Iterator[LocalZooKeeper]:
    with LocalZooKeeper(servers=3) as zk:
        yield zk
