"""A task's processes live and die with the task; a stopping worker gives back what it has not started.

Black-box: ``mw worker`` and ``mw submit`` run as subprocesses, as a user types them. Each task
carries a unique marker in its argv (the shell's ``$0`` and the sleep's duration), so a leftover
process is found by scanning ``/proc/*/cmdline``. Only the masters run in this test process.
"""

from __future__ import annotations

import json
import secrets
import signal
import time

import pytest
from kazoo.client import KazooClient

from masterworker.system.protocol import PARENTS, TASKS, worker_path
from masterworker.system.security import Policy
from tests.helpers import Roles, assigned, processes_with, run_mw, statuses, wait_until

MASTER, WORKER, CLIENT = "alice:s3cret", "bob:hunter2", "carol:letmein"  # a secured system's users


def marked_task(marker: str) -> list[str]:
    """``sh -c 'sleep 777.<marker>; echo x' <marker>``: two processes, both with the marker in their argv."""
    return ["sh", "-c", f"sleep 777.{marker}; echo x", marker]


def new_marker() -> str:
    return str(secrets.randbelow(10**12)).zfill(12)


def submit_no_wait(mw_env: dict[str, str], *argv: str, auth: str | None = None) -> str:
    result = run_mw("submit", "--no-wait", "--json", "--", *argv, env=dict(mw_env, MW_AUTH=auth) if auth else mw_env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["task"]


def start_worker(spawn, zk: KazooClient, worker_id: str, *options: str):  # noqa: ANN001, ANN201
    worker = spawn("worker", "--id", worker_id, *options)
    wait_until(lambda: zk.exists(worker_path(worker_id)), 15, f"{worker_id} registered")
    return worker


def test_a_timed_out_task_leaves_no_process_and_its_rest_never_runs(roles: Roles, spawn, mw_env, zk) -> None:
    roles.master("m1")
    start_worker(spawn, zk, "w1")
    marker = new_marker()
    result = run_mw("submit", "--task-timeout", "2", "--timeout", "30", "--", *marked_task(marker), env=mw_env)
    assert result.returncode == 1, result.stderr
    assert "timed out after 2 s" in result.stdout and "\nx" not in result.stdout  # the echo never ran
    wait_until(lambda: not processes_with(marker), 2, "no process of the timed-out task")


def test_kill_9_of_a_worker_its_task_processes_are_gone_within_seconds(roles: Roles, spawn, mw_env, zk) -> None:
    roles.master("m1")
    worker = start_worker(spawn, zk, "w1")
    marker = new_marker()
    submit_no_wait(mw_env, *marked_task(marker))
    wait_until(lambda: len(processes_with(marker)) == 2, 15, "the task's shell and sleep running")
    killed = time.monotonic()
    worker.kill9()
    wait_until(lambda: not processes_with(marker), 5, "the dead worker's task processes gone")
    print(f"kill -9 of the worker to its task processes gone: {time.monotonic() - killed:.3f} s")
    wait_until(lambda: not processes_with(f"masterworker.system.reaper {worker.pid}"), 5, "the reaper gone too")
    assert f"reaper: worker pid {worker.pid} is gone; ending 1 task process group(s)" in worker.log()


def test_ctrl_c_twice_leaves_no_task_process(roles: Roles, spawn, mw_env, zk) -> None:
    roles.master("m1")
    worker = start_worker(spawn, zk, "w1")
    marker = new_marker()
    submit_no_wait(mw_env, *marked_task(marker))
    wait_until(lambda: len(processes_with(marker)) == 2, 15, "the task running")
    worker.signal(signal.SIGINT)  # a clean stop: waits up to --grace (30 s) for the task
    wait_until(lambda: "running task(s) to finish" in worker.log(), 10, "the worker waiting for its task")
    worker.signal(signal.SIGINT)  # impatient: exit now
    assert worker.proc.wait(10) == 130
    wait_until(lambda: not processes_with(marker), 5, "no task process after the second Ctrl-C")


def test_a_stopping_worker_ends_its_tasks_after_the_grace_and_the_task_is_not_lost(
    roles: Roles, spawn, mw_env, zk
) -> None:
    roles.master("m1")
    worker = start_worker(spawn, zk, "w1", "--grace", "1")
    marker = new_marker()
    task = submit_no_wait(mw_env, *marked_task(marker))
    wait_until(lambda: len(processes_with(marker)) == 2, 15, "the task running")
    worker.signal(signal.SIGINT)
    assert worker.proc.wait(10) == 0
    assert not processes_with(marker)
    assert "not completing" in worker.log() and "\nTraceback" not in worker.log()
    wait_until(lambda: task in zk.get_children(TASKS), 10, "the task back in /tasks, waiting for a worker")
    assert task not in zk.get_children("/status")


@pytest.mark.parametrize("secure", [False, True], ids=["open", "secured"])
def test_sigterm_gives_the_prefetched_task_back_and_exits_when_the_running_one_ends(
    roles: Roles, spawn, mw_env, tmp_path, secure: bool
) -> None:
    """Open: the prefetched task goes back at once. Secured (workers may not create tasks, ch. 6): it goes
    back when w1's session closes, as soon as its running task ends. Either way: done once, by w2."""
    worker_auth, client_auth = ("--auth", WORKER), CLIENT
    if secure:
        users = tmp_path / "users.txt"
        users.write_text(f"master {MASTER}\nworker {WORKER}\nclient {CLIENT}\n")
        roles.master("m1", auth=MASTER, policy=Policy.from_users_file(users))
    else:
        roles.master("m1")
        worker_auth = client_auth = ()
    zk = roles.client(auth=MASTER if secure else None)
    wait_until(lambda: all(zk.exists(p) for p in PARENTS), 15, "the parents")
    w1 = start_worker(spawn, zk, "w1", "--slots", "1", "--prefetch", "1", *worker_auth)
    go = tmp_path / "go"  # the running task ends when the test creates this file
    wait_for_go = f"while [ ! -e {go} ]; do sleep 0.02; done; echo first"
    running = submit_no_wait(mw_env, "sh", "-c", wait_for_go, auth=client_auth)
    prefetched = submit_no_wait(mw_env, "echo", "second", auth=client_auth)
    wait_until(lambda: sorted(assigned(zk, "w1")) == sorted([running, prefetched]), 15, "both assigned to w1")
    wait_until(lambda: f"running {running}" in w1.log(), 15, "w1 running the first")
    w2 = start_worker(spawn, zk, "w2", *worker_auth)
    asked = time.monotonic()
    w1.signal(signal.SIGTERM)
    if secure:
        wait_until(lambda: "does not let workers create tasks" in w1.log(), 10, "w1 refused to give it back")
        assert prefetched not in zk.get_children("/status")
    else:  # given back at once: done by w2 while w1 still runs the first task
        wait_until(lambda: prefetched in zk.get_children("/status"), 10, "the prefetched task done elsewhere")
        print(f"SIGTERM: the prefetched task done by w2 after {time.monotonic() - asked:.2f} s")
        assert f"gave 1 prefetched task(s) back to /tasks: {prefetched}" in w1.log()
    assert w1.alive and running not in zk.get_children("/status")
    go.touch()
    ended = time.monotonic()
    assert w1.proc.wait(15) == 0
    drained = time.monotonic() - ended
    print(f"SIGTERM ({'secured' if secure else 'open'}): w1 exited {drained:.2f} s after its running task ended")
    assert drained < 2.0  # as soon as its running task ends, not after its 30 s grace period
    wait_until(lambda: len(zk.get_children("/status")) == 2, 15, "both tasks done")
    done = statuses(zk)
    assert done[running].worker == "w1" and done[running].output == "first\n"
    assert done[prefetched].worker == "w2" and done[prefetched].output == "second\n"
    assert f"running {prefetched}" not in w1.log() and w2.log().count(f"running {prefetched}") == 1


def test_a_worker_id_held_by_a_live_worker_is_one_line_a_bounded_wait_and_exit_1(
    roles: Roles, spawn, mw_env, zk
) -> None:
    roles.master("m1")
    first = start_worker(spawn, zk, "w1")
    started = time.monotonic()
    result = run_mw("worker", "--id", "w1", env=mw_env, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    waiting = [line for line in lines if "waiting up to" in line]
    assert len(waiting) == 1 and f"registered by another live session (pid {first.pid} on " in waiting[0]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "worker id w1 is still registered by another live session" in errors[0]
    assert "Traceback" not in result.stderr
    assert elapsed < 2 * float(mw_env["MW_SESSION_TIMEOUT"]) + 8
    assert first.alive and zk.exists(worker_path("w1")).ephemeralOwner != 0


def test_an_output_tail_says_it_was_cut_and_from_how_much(roles: Roles, spawn, mw_env, zk) -> None:
    roles.master("m1")
    start_worker(spawn, zk, "w1")
    result = run_mw("submit", "--", "sh", "-c", "head -c 10000000 /dev/zero | tr '\\0' x; echo END", env=mw_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("xxxEND\n(output cut: last 4 KiB of 10.0 MB shown)".rstrip())
    small = run_mw("submit", "--", "echo", "short", env=mw_env)
    assert small.returncode == 0 and "output cut" not in small.stdout
