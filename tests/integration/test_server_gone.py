"""A client whose ZooKeeper server goes away while it waits (chapter 5: losing the connection).

kazoo queues a call made while no server answers until one does: a waiter that asked then
waited past its own ``--timeout``, for ever if the server never came back (``mw submit
--timeout 5`` ran until killed). Here the suite's server is not the one that dies: each test
starts its own, runs ``mw`` as a user types it, and stops the server under it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from masterworker.lab.chaos.proxy import CREATE_OPS, OP_MULTI, DroppingProxy
from masterworker.lab.processes import mw_env
from masterworker.system.client import SERVER_PATIENCE
from masterworker.system.protocol import STATUS, TASKS, TaskStatus, status_path
from masterworker.zk.fourletter import four_letter
from masterworker.zk.server import LocalZooKeeper
from tests.conftest import SESSION_TIMEOUT
from tests.helpers import wait_until


@pytest.fixture
def server() -> Iterator[LocalZooKeeper]:
    with LocalZooKeeper() as zk:
        yield zk


def waiting_mw(server: LocalZooKeeper, tasks: int, *args: str) -> subprocess.Popen:
    """``mw ARGS`` started with no master running, once its ``tasks`` tasks are pending: it waits for them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "masterworker", *args],
        env=mw_env(server.connect_string, SESSION_TIMEOUT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    look = KazooClient(hosts=server.connect_string)
    look.start(timeout=15)
    try:
        wait_until(lambda: look.exists(TASKS) and len(look.get_children(TASKS)) == tasks, 30, "the tasks pending")
    finally:
        look.stop()
        look.close()
    return process


def ended(process: subprocess.Popen, within: float) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack, on stderr
        _, err = process.communicate()
        raise AssertionError(f"still running {within:g} s after its server went away: {err[-4000:]}") from None
    assert "Traceback" not in err, err[-3000:]
    return process.returncode, out, err


def test_submit_with_a_timeout_ends_on_time_when_the_server_goes_away(server: LocalZooKeeper) -> None:
    submit = waiting_mw(server, 1, "submit", "--timeout", "4", "--", "true")
    server.stop()
    code, out, _ = ended(submit, within=20)
    assert code == 3
    assert "has not finished after 4 s: unknown: no ZooKeeper server answers (reconnecting)" in out


def test_submit_file_with_a_timeout_ends_on_time_and_lists_its_tasks(server: LocalZooKeeper, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("true\ntrue\ntrue\n")
    submit = waiting_mw(server, 3, "submit", "--file", str(tasks), "--timeout", "4")
    server.stop()
    code, out, err = ended(submit, within=20)
    assert code == 3
    assert out.splitlines()[-1] == "0 done, 0 failed, 3 not finished"
    assert "3 tasks not finished after 4 s" in err


def test_a_wait_for_a_server_that_is_gone_says_so_once_and_ctrl_c_ends_it(
    server: LocalZooKeeper, tmp_path: Path
) -> None:
    """With no --timeout it waits for a server to come back, as asked; it says so, not only kazoo's retries."""
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("true\ntrue\n")
    submit = waiting_mw(server, 2, "submit", "--file", str(tasks))  # no timeout: it would wait for ever
    server.stop()
    assert submit.stderr is not None
    said = f"no ZooKeeper server has answered for {SERVER_PATIENCE:g} s: still waiting for one"
    for line in submit.stderr:
        if said in line:
            break
    asked = time.monotonic()
    submit.send_signal(signal.SIGINT)
    code, out, err = ended(submit, within=15)
    assert code == 130
    assert time.monotonic() - asked < 10
    assert "interrupted: 2 tasks not finished" in err


def through_a_proxy_that_stops(
    zk_hosts: str, zk_server: LocalZooKeeper, ops: tuple[int, ...], *args: str
) -> tuple[int, str, str, float]:
    """``mw ARGS`` connected through a proxy that forwards the first request of ``ops``, drops its
    reply and stops: from then on no server answers. Returns the exit code, stdout, stderr and the
    seconds it ran after that."""
    chroot = zk_hosts[zk_hosts.index("/") :]
    with DroppingProxy(zk_server.servers[0].config.client_port) as proxy:
        proxy.drop_reply_after(*ops)
        submit = subprocess.Popen(
            [sys.executable, "-m", "masterworker", *args],
            env=mw_env(proxy.address + chroot, SESSION_TIMEOUT),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proxy.dropped.wait(30), f"no request of {ops} ever reached the server"
        proxy.stop()
        began = time.monotonic()
        code, out, err = ended(submit, within=SERVER_PATIENCE + 20)
    return code, out, err, time.monotonic() - began


def test_a_submission_whose_server_goes_away_midway_stops_and_says_what_it_knows(
    zk_hosts: str, zk_server: LocalZooKeeper, tmp_path: Path
) -> None:
    """The first transaction reaches the server, its reply is lost, and no server answers after:
    the submission waited for one for ever; now it stops after SERVER_PATIENCE, exit 1, one line."""
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("true\n" * 500)
    code, _, err, took = through_a_proxy_that_stops(
        zk_hosts, zk_server, (OP_MULTI,), "submit", "--file", str(tasks), "--timeout", "5"
    )
    assert code == 1
    assert took >= SERVER_PATIENCE - 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: no ZooKeeper server answered for {SERVER_PATIENCE:g} s: stopped; 0 of 500 tasks were submitted, "
        "500 may have been (their reply was lost); lines 1-500 may be in: look for them with mw status before "
        "sending them again"
    ], err


def test_a_single_submit_whose_create_lost_its_reply_and_its_server_says_so(
    zk_hosts: str, zk_server: LocalZooKeeper, zk: KazooClient
) -> None:
    zk.ensure_path(TASKS)  # the create that loses its reply is the task's
    code, out, err, took = through_a_proxy_that_stops(zk_hosts, zk_server, CREATE_OPS, "submit", "--", "true")
    assert code == 1 and out == ""
    assert took >= SERVER_PATIENCE - 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: no ZooKeeper server answered for {SERVER_PATIENCE:g} s")
    assert errors[0].endswith("whether it was created is unknown (see mw status)"), err


def test_ctrl_c_ends_status_watch_while_no_server_answers(server: LocalZooKeeper) -> None:
    """Its Ctrl-C only asks the refresh loop to stop: a look waiting for a server kept it running."""
    port = server.servers[0].config.client_port
    watch = subprocess.Popen(
        [sys.executable, "-m", "masterworker", "status", "--watch", "--interval", "0.1"],
        env={**mw_env(server.connect_string, SESSION_TIMEOUT), "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def looked() -> bool:  # its session has sent more than its connect: it is refreshing (this look has no sid)
        cons = four_letter("127.0.0.1", port, "cons").splitlines()
        return any(",sid=0x" in line and int(re.search(r"recved=(\d+)", line)[1]) > 5 for line in cons)

    wait_until(looked, 30, "mw status --watch connected and refreshing")
    server.stop()
    assert watch.stderr is not None
    drops = 0
    for line in watch.stderr:  # kazoo says so at each attempt to reconnect: by the third, refreshes have run
        drops += "Connection dropped" in line
        if drops == 3:
            break
    watch.send_signal(signal.SIGINT)
    code, _, err = ended(watch, within=10)
    assert code in (0, 130), err


def test_results_read_whose_collection_is_unconfirmed_are_listed_for_mw_result(
    zk_hosts: str, zk_server: LocalZooKeeper, zk: KazooClient, mw_env: dict[str, str], tmp_path: Path
) -> None:
    """The collect's delete loses its reply and no server answers after: the output said 'mw result
    --file OUT collects them', yet named them nowhere. They are listed now, and the output settles them."""
    names = [f"task-0a1b2c3d4e5f-{n:010d}" for n in range(3)]
    for name in names:
        zk.create(status_path(name), TaskStatus(state="done", exit_code=0).encode(), makepath=True)
    listed = tmp_path / "names.txt"
    listed.write_text("\n".join(names) + "\n")
    code, out, err, _ = through_a_proxy_that_stops(zk_hosts, zk_server, (OP_MULTI,), "result", "--file", str(listed))
    assert code == 0, err
    assert out.splitlines() == [f"{name} done, its record perhaps not collected" for name in names] + [
        "3 done, 0 failed, 0 not finished"
    ]
    assert "collecting the records of 3 tasks was not confirmed" in err
    zk.create(status_path(names[0]), TaskStatus(state="done", exit_code=0).encode())  # as if that delete was lost
    given_back = tmp_path / "out.txt"
    given_back.write_text(out)
    again = subprocess.run(
        [sys.executable, "-m", "masterworker", "result", "--file", str(given_back)],
        env=mw_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["1 done, 0 failed, 0 not finished, 2 not found"]
    assert zk.get_children(STATUS) == []
