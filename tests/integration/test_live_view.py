"""mw status --watch in a real pseudo-terminal: what the screen shows, and that it refreshes."""

from __future__ import annotations

import sys

import pexpect
import pyte

from masterworker.system.client import submit
from masterworker.system.protocol import TaskSpec
from tests.helpers import Roles, run_mw, wait_until


class Terminal:
    """A 100x30 terminal: pexpect feeds the program's bytes to pyte, which keeps the screen."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.screen = pyte.Screen(100, 30)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(sys.executable, ["-m", "masterworker", *args], env=env, dimensions=(30, 100))

    def text(self) -> str:
        try:
            while True:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
        except (pexpect.TIMEOUT, pexpect.EOF):
            pass
        return "\n".join(self.screen.display)


def test_watch_shows_the_system_and_refreshes_in_place(roles: Roles, zk, mw_env) -> None:
    roles.master("m1")
    roles.worker("w1", slots=2)
    env = dict(mw_env, TERM="xterm-256color", COLUMNS="100", LINES="30")
    terminal = Terminal(["status", "--watch", "--interval", "0.2", "--backlog-cap", "4"], env)
    try:
        wait_until(lambda: "active master: m1" in terminal.text() and "w1" in terminal.text(), 20, "the first frame")
        assert "pending: 0" in terminal.text()
        roles.stop_all()  # no master, no worker: submitted tasks stay pending
        wait_until(lambda: "no master is running" in terminal.text(), 20, "the master to be gone")
        for _ in range(4):
            submit(zk, TaskSpec(argv=["true"]))
        wait_until(lambda: "pending: 4" in terminal.text(), 20, "the queue depth to change")
        screen = terminal.text()
        assert "backlog: 4 tasks pending, the submit cap is 4" in screen
        assert screen.count("no master is running") == 1  # refreshed in place, not printed again
        terminal.child.sendintr()  # Ctrl-C
        terminal.child.expect(pexpect.EOF, timeout=10)
        terminal.child.close()
        assert terminal.child.exitstatus == 0
    finally:
        terminal.child.terminate(force=True)


def test_status_warns_when_the_backlog_nears_the_cap(roles: Roles, zk, mw_env) -> None:
    master = roles.master("m1")
    wait_until(master.elected.is_set, what="m1 elected")
    for _ in range(5):
        submit(zk, TaskSpec(argv=["true"]))
    result = run_mw("status", "--backlog-cap", "6", env=mw_env)
    assert "warning: backlog: 5 tasks pending, the submit cap is 6" in result.stdout
