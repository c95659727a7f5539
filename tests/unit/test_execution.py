"""A task's process group lives and dies with the task, and with its worker (execution.py, reaper.py).

No ZooKeeper here: ``run_command`` and the reaper are driven directly. Each task carries a
unique marker in its argv; a leftover process is found by scanning ``/proc/*/cmdline``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time

from masterworker.system.execution import ProcessGroups, keep_descriptors_from_tasks, run_command
from masterworker.system.protocol import MAX_OUTPUT_TAIL, TaskSpec
from masterworker.system.reaper import Reaper
from tests.helpers import processes_with, wait_until


def marker() -> str:
    return str(secrets.randbelow(10**12)).zfill(12)


def test_what_a_task_leaves_in_its_group_dies_when_the_task_ends() -> None:
    mark = marker()
    status = run_command(TaskSpec(argv=["sh", "-c", f"sleep 777.{mark} & echo started", mark]))
    assert status.state == "done" and status.output == "started\n"
    wait_until(lambda: not processes_with(mark), 2, "the background sleep gone")


def test_a_timeout_ends_the_whole_group_with_sigterm_then_sigkill() -> None:
    mark = marker()
    spec = TaskSpec(argv=["sh", "-c", f"trap '' TERM; sleep 777.{mark}; echo x", mark], timeout=0.5)
    started = time.monotonic()
    status = run_command(spec)
    elapsed = time.monotonic() - started
    assert status.state == "failed" and status.reason == "timed out after 0.5 s" and status.exit_code is None
    assert 2.3 < elapsed < 8  # the timeout, then 2 s of grace for a group that ignores SIGTERM
    assert "x" not in status.output
    wait_until(lambda: not processes_with(mark), 2, "no process of the timed-out task")


def test_a_timeout_of_a_group_that_obeys_sigterm_takes_no_grace() -> None:
    mark = marker()
    started = time.monotonic()
    status = run_command(TaskSpec(argv=["sh", "-c", f"sleep 777.{mark}; echo x", mark], timeout=0.3))
    assert status.reason == "timed out after 0.3 s" and time.monotonic() - started < 2.2  # no 2 s grace
    wait_until(lambda: not processes_with(mark), 2, "no process of the timed-out task")


def test_the_status_records_the_whole_output_size() -> None:
    status = run_command(TaskSpec(argv=["sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x"]))
    assert status.output_bytes == 10_000 and status.output_cut and len(status.output) == MAX_OUTPUT_TAIL
    short = run_command(TaskSpec(argv=["echo", "hi"]))
    assert short.output_bytes == 3 and not short.output_cut


def test_end_all_ends_every_running_group() -> None:
    groups = ProcessGroups()
    mark = marker()
    results = []
    runner = threading.Thread(
        target=lambda: results.append(run_command(TaskSpec(argv=["sh", "-c", f"sleep 777.{mark}", mark]), None, groups))
    )
    runner.start()
    wait_until(lambda: len(processes_with(mark)) == 2, 5, "the task running")
    assert groups.end_all() == 1
    runner.join(5)
    assert results and results[0].state == "failed" and results[0].exit_code == -signal.SIGTERM
    assert len(groups) == 0 and not processes_with(mark)


WORKER = textwrap.dedent(
    """
    import os, threading, time
    from masterworker.system.execution import ProcessGroups, run_command
    from masterworker.system.protocol import TaskSpec
    from masterworker.system.reaper import Reaper
    groups = ProcessGroups(Reaper.start())
    mark = os.environ["MARK"]  # not in our own argv: only the task's processes carry it
    spec = TaskSpec(argv=["sh", "-c", f"sleep 777.{mark}; echo x", mark])
    threading.Thread(target=run_command, args=(spec, None, groups), daemon=True).start()
    time.sleep(3600)
    """
)


def test_the_reaper_ends_the_tasks_of_a_worker_killed_with_sigkill() -> None:
    mark = marker()
    env = dict(os.environ, MARK=mark)
    worker = subprocess.Popen([sys.executable, "-c", WORKER], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(processes_with(mark)) == 2, 10, "the task running")
        reaper = processes_with(f"masterworker.system.reaper {worker.pid}")
        assert len(reaper) == 1
        worker.kill()
        worker.wait(5)
        wait_until(lambda: not processes_with(mark), 5, "the task's processes gone")
        wait_until(lambda: not processes_with(f"masterworker.system.reaper {worker.pid}"), 5, "the reaper gone")
        assert f"reaper: worker pid {worker.pid} is gone; ending 1 task process group(s)" in worker.stderr.read()
    finally:
        worker.kill()
        worker.wait(5)
        for pid in processes_with(mark):
            os.kill(pid, signal.SIGKILL)


def test_the_reaper_ignores_ctrl_c_and_exits_when_its_worker_closes_the_pipe() -> None:
    reaper = Reaper.start()
    try:
        os.kill(reaper.pid, signal.SIGINT)
        os.kill(reaper.pid, signal.SIGTERM)
        time.sleep(0.2)  # a signal the reaper did not ignore would have ended it by now
        assert reaper.process.poll() is None
    finally:
        reaper.close()
    assert reaper.process.returncode == 0


def test_a_task_inherits_no_descriptor_of_its_worker_only_its_standard_streams() -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # as if the worker had been started with it
    try:
        keep_descriptors_from_tasks()
        status = run_command(TaskSpec(argv=["sh", "-c", "ls /proc/self/fd; read x && echo read; true"]))
    finally:
        os.close(read_end)
        os.close(write_end)
    # sh's own descriptors: 0, 1, 2 and the one ls lists /proc/self/fd with; nothing of ours.
    assert str(write_end) not in status.output.split(), status.output
    assert "read" not in status.output  # standard input is /dev/null: end of file at once


def test_a_task_starts_in_a_session_of_its_own_with_sigpipe_at_its_default() -> None:
    status = run_command(TaskSpec(argv=["sh", "-c", "ps -o sid= -p $$; echo $$; grep SigIgn /proc/self/status"]))
    session, pid, ignored = status.output.split("\n")[:3]
    assert session.strip() == pid.strip(), status.output  # the task leads its own session and group
    assert int(ignored.split()[1], 16) & (1 << (signal.SIGPIPE - 1)) == 0, ignored  # Python ignores it; the task not


def test_a_program_that_cannot_start_fails_with_the_reason(tmp_path) -> None:
    missing = run_command(TaskSpec(argv=["no-such-program-" + marker()]))
    assert missing.state == "failed" and missing.exit_code == 127
    assert missing.reason is not None and "No such file or directory" in missing.reason
    script = tmp_path / "script"
    script.write_text("echo no shebang\n")
    script.chmod(0o644)
    denied = run_command(TaskSpec(argv=[str(script)]))
    assert denied.state == "failed" and denied.reason is not None and "Permission denied" in denied.reason
    script.chmod(0o755)
    foreign = run_command(TaskSpec(argv=[str(script)]))  # no shell is tried behind the user's back
    assert foreign.state == "failed" and foreign.reason is not None and "Exec format error" in foreign.reason
    killed = run_command(TaskSpec(argv=["sh", "-c", "kill -9 $$"]))
    assert killed.state == "failed" and killed.exit_code == -signal.SIGKILL
