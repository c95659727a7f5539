"""Bounds on what a client sends (issue 13, item 4): bytes per transaction, the backlog cap per
batch, and a request that keeps losing the connection.

Found before: ``mw submit --file --batch 200`` with lines of about 7.9 KB built a 1.6 MB
transaction, over ZooKeeper's jute.maxbuffer; the server dropped the connection and the client
sent it again, 331 times in 45 s, never exiting. One ``--file`` made 36,000 tasks pending past
the 20,000 cap. Here ``mw`` runs as a user types it, against the suite's real ZooKeeper.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from masterworker.system.budget import TXN_BUDGET
from masterworker.system.client import MAX_LOSSES, KeepsFailing, SubmitStopped, _submit, submit_payloads
from masterworker.system.protocol import MAX_TASK_BYTES, TASKS, TaskSpec
from tests.helpers import run_mw

LINE = "echo " + "x" * 7750  # about 7.9 KB once encoded, under the 8 KiB limit


def test_the_long_line_is_what_the_issue_measured() -> None:
    size = len(TaskSpec(argv=LINE.split(), timeout=3600, client="client-somehost-12345").encode())
    assert 7_800 < size < MAX_TASK_BYTES


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a stopped command prints on stderr."""
    no_traceback(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


def test_a_batch_of_200_long_lines_is_sent_in_transactions_under_the_budget(
    mw_env: dict[str, str], zk: KazooClient, tmp_path: Path
) -> None:
    tasks = tmp_path / "long.txt"
    tasks.write_text(f"{LINE}\n" * 200)
    started = time.monotonic()
    result = run_mw(
        "submit", "--file", str(tasks), "--batch", "200", "--no-wait", "--log-level", "DEBUG", env=mw_env, timeout=60
    )
    took = time.monotonic() - started
    no_traceback(result)
    assert result.returncode == 0, result.stderr[-3000:]
    names = result.stdout.split()
    assert len(names) == 200 and sorted(names) == sorted(zk.get_children(TASKS))
    sent = re.findall(r"sending a transaction of (\d+) creates \(([\d,]+) bytes", result.stderr)
    assert sum(int(count) for count, _ in sent) == 200
    assert len(sent) == 4 and all(int(size.replace(",", "")) < TXN_BUDGET for _, size in sent), sent
    assert took < 20, took


def test_long_tasks_are_assigned_and_run_to_the_end(
    mw_env: dict[str, str], spawn, zk: KazooClient, tmp_path: Path
) -> None:
    """The masters cut their assignment transactions by bytes too: 7.9 KB tasks all finish."""
    spawn("master", "--id", "m1")
    spawn("worker", "--id", "w1", "--slots", "4")
    tasks = tmp_path / "long.txt"
    tasks.write_text(f"{LINE}\n" * 150)
    result = run_mw("submit", "--file", str(tasks), "--batch", "150", "--timeout", "90", env=mw_env, timeout=120)
    no_traceback(result)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "150 done, 0 failed, 0 not finished"


def test_the_backlog_cap_holds_per_batch_and_says_where_to_resume(
    mw_env: dict[str, str], zk: KazooClient, tmp_path: Path
) -> None:
    tasks = tmp_path / "many.txt"
    tasks.write_text("# 60 tasks, 20 per batch\n" + "".join(f"echo {n}\n" for n in range(60)))
    options = ["--batch", "20", "--no-wait", "--backlog-cap", "50"]
    result = run_mw("submit", "--file", str(tasks), *options, env=mw_env, timeout=60)
    assert result.returncode == 4, result.stderr
    resume = f"tail -n +42 {tasks} | mw submit --file - {' '.join(options)}"  # the user's own options
    assert error_line(result) == (
        "error: 40 tasks are pending and the next 20 would pass the backlog cap of 50: stopped; "
        f"40 of 60 tasks were submitted, the others were not; resume from line 42 of {tasks}: {resume}"
    )
    names = result.stdout.split()
    assert len(names) == 40 and sorted(names) == sorted(zk.get_children(TASKS))
    for name in names:  # a master drains the backlog; then the rest goes in, as the error says
        zk.delete(f"{TASKS}/{name}")
    mw = Path(tmp_path / "bin")
    mw.mkdir()
    (mw / "mw").write_text(f'#!/bin/sh\nexec {sys.executable} -m masterworker "$@"\n')
    (mw / "mw").chmod(0o755)
    env = {**mw_env, "PATH": f"{mw}:{mw_env.get('PATH', '/usr/bin:/bin')}"}
    resumed = subprocess.run(["sh", "-c", resume], env=env, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    echoed = [TaskSpec.decode(zk.get(f"{TASKS}/{task}")[0]).argv for task in resumed.stdout.split()]
    assert echoed == [["echo", str(n)] for n in range(40, 60)] and len(zk.get_children(TASKS)) == 20


def test_a_full_backlog_submits_nothing(mw_env: dict[str, str], zk: KazooClient, tmp_path: Path) -> None:
    tasks = tmp_path / "few.txt"
    tasks.write_text("echo a\necho b\n")
    first = run_mw("submit", "--file", str(tasks), "--no-wait", env={**mw_env, "MW_BACKLOG_CAP": "2"})
    assert first.returncode == 0, first.stderr
    again = run_mw("submit", "--file", str(tasks), "--no-wait", env={**mw_env, "MW_BACKLOG_CAP": "2"})
    assert again.returncode == 4
    assert error_line(again) == (
        "error: 2 tasks are pending and the next 2 would pass the backlog cap of 2: stopped; "
        f"0 of 2 tasks were submitted, the others were not; resume from line 1 of {tasks}: "
        f"tail -n +1 {tasks} | mw submit --file - --no-wait"
    )
    assert again.stdout == ""
    as_json = run_mw("submit", "--file", str(tasks), "--json", env={**mw_env, "MW_BACKLOG_CAP": "3"})
    assert as_json.returncode == 4
    stopped = json.loads(as_json.stdout)
    assert stopped["tasks"] == [] and stopped["not_submitted"] == 2 and stopped["resume_from_line"] == 1
    assert error_line(as_json) == f"error: {stopped['error']}"
    assert len(zk.get_children(TASKS)) == 2


# -- a request the server drops every time (over jute.maxbuffer, sent with the budget raised) --------


@pytest.mark.parametrize("batch", [200, None], ids=["transaction", "creates"])
def test_a_request_that_always_loses_the_connection_ends_the_submission(zk: KazooClient, batch: int | None) -> None:
    data = [b"x" * 7900] * 200 if batch else [b"x" * 1_100_000]
    started = time.monotonic()
    with pytest.raises(SubmitStopped) as stopped:
        submit_payloads(zk, data, batch=batch, budget=4 * 1024 * 1024)
    assert time.monotonic() - started < 30
    assert stopped.value.exit_code == 1 and stopped.value.known
    assert stopped.value.names == [None] * len(data)
    assert f"lost the connection {MAX_LOSSES} times in a row: stopped; 0 of {len(data)} tasks" in str(stopped.value)
    assert zk.get_children(TASKS) == []
    assert submit_payloads(zk, [b"still fine"])  # the session survived


def test_a_single_create_that_always_loses_the_connection_is_given_up(zk: KazooClient) -> None:
    """``_submit`` is what ``mw submit`` calls once the task is encoded (which caps it at 8 KiB)."""
    started = time.monotonic()
    with pytest.raises(KeepsFailing, match=f"lost the connection {MAX_LOSSES} times in a row: gave up"):
        _submit(zk, b"x" * 1_100_000, backlog_cap=10, stop=None)
    assert time.monotonic() - started < 30
    assert zk.get_children(TASKS) == []


def test_a_stop_midway_reports_the_tasks_created_before_it_and_none_after(zk: KazooClient) -> None:
    """Groups go out pipelined; the one the server drops takes the connection and those behind it."""
    data = [b"small"] * 10 + [b"x" * 1_100_000] + [b"small"] * 10
    with pytest.raises(SubmitStopped) as stopped:
        submit_payloads(zk, data, batch=10, budget=4 * 1024 * 1024)
    assert stopped.value.known and stopped.value.first_missing == 10
    assert stopped.value.names[10:] == [None] * 11
    assert sorted(stopped.value.submitted) == sorted(zk.get_children(TASKS)) and len(stopped.value.submitted) == 10
    assert str(stopped.value).startswith(
        f"a transaction of 10 tasks (1,100,045 bytes of task data) lost the connection {MAX_LOSSES} times in a row"
    )
