"""The command line as a user types it: exit codes, one readable line, no traceback, no hang.

Every test runs ``mw`` as a subprocess against the suite's real ZooKeeper, in a chroot of the
test's own, and checks what a refusal leaves behind in ZooKeeper (nothing).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from masterworker.system.protocol import MASTERS, STATUS, TASKS, task_sequence
from masterworker.zk.server import LocalZooKeeper
from tests.helpers import run_mw, wait_until


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single line a refusal prints on stderr (and no traceback anywhere)."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return lines[0]


def mw_bytes(*args: str | bytes, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    """Like run_mw, but arguments may be bytes (a name that is not UTF-8, as a shell can pass it)."""
    return subprocess.run(
        [sys.executable.encode(), b"-m", b"masterworker", *(a if isinstance(a, bytes) else a.encode() for a in args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# -- no master ---------------------------------------------------------------------------------


def test_submit_without_any_master_queues_the_task_and_says_why_it_waits(
    mw_env: dict[str, str], zk: KazooClient
) -> None:
    started = time.monotonic()
    result = run_mw("submit", "--timeout", "2", "--", "echo", "hi", env=mw_env, timeout=30)
    assert time.monotonic() - started < 15
    assert result.returncode == 3, result.stderr
    task, _, why = result.stdout.strip().partition(" has not finished after 2 s: ")
    assert "no master is running" in why, result.stdout
    assert zk.get_children(TASKS) == [task]  # queued: the first master will assign it
    assert f"mw result {task} --wait" in result.stderr


def test_submit_no_wait_never_waits_for_a_master(mw_env: dict[str, str], zk: KazooClient, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_mw("submit", "--no-wait", "--", "echo", "hi", env={**mw_env, "MW_RUN_DIR": str(tmp_path)}, timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 0, result.stderr
    task = result.stdout.strip()
    assert zk.get_children(TASKS) == [task]
    recorded = [json.loads(line) for f in (tmp_path / "history").iterdir() for line in f.read_text().splitlines()]
    assert [(r["type"], r.get("task")) for r in recorded] == [("submit-invoke", None), ("submit-ok", task)]


def test_status_tells_no_master_from_backups_waiting(mw_env: dict[str, str], spawn, zk: KazooClient) -> None:
    never = run_mw("status", env=mw_env)
    assert never.returncode == 0
    assert never.stdout.splitlines()[0].startswith("no master is running, and none has ever run here")
    spawn("master", "--id", "m1")
    spawn("master", "--id", "m2")
    wait_until(lambda: sorted(zk.get_children(MASTERS)) == ["m1", "m2"] if zk.exists(MASTERS) else False)
    both = run_mw("status", env=mw_env)
    assert both.stdout.splitlines()[0] in ("active master: m1; backups: m2", "active master: m2; backups: m1")
    view = json.loads(run_mw("status", "--json", env=mw_env).stdout)
    assert sorted([view["master"], *view["backups"]]) == ["m1", "m2"]


# -- chroots -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("submit", "--no-wait", "--", "echo", "hi"),
        ("submit", "--timeout", "2", "--", "echo", "hi"),
        ("result", "task-0123456789ab-0000000001"),
        ("worker", "--id", "w1"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_missing_chroot_is_one_line_and_nothing_is_created(
    args: tuple[str, ...], mw_env: dict[str, str], zk: KazooClient
) -> None:
    env = {**mw_env, "MW_ZK": mw_env["MW_ZK"] + "/nope"}
    result = run_mw(*args, env=env, timeout=30)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "/nope does not exist" in line and "UserWarning" not in result.stderr
    assert zk.get_children("/") == []


def test_a_master_creates_its_missing_chroot(mw_env: dict[str, str], spawn, zk: KazooClient) -> None:
    env = {**mw_env, "MW_ZK": mw_env["MW_ZK"] + "/team-a/prod"}
    spawn("master", "--id", "m1", env=env)
    wait_until(lambda: zk.exists("/team-a/prod/master"), what="the master under its new chroot")


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".", "..", "/", "a/b", "a\x01b", "", b"task-\xff"], ids=repr)
def test_bad_task_names_are_refused_before_zookeeper(name: str | bytes, mw_env: dict[str, str]) -> None:
    result = mw_bytes("result", name, env=mw_env)
    assert result.returncode == 2
    assert "is not a task name" in one_error_line(result)


def test_result_of_an_unknown_task_before_any_master(mw_env: dict[str, str], zk: KazooClient) -> None:
    result = run_mw("result", "task-0123456789ab-0000000001", env=mw_env)
    assert result.returncode == 2
    assert "no task named" in one_error_line(result)
    assert zk.get_children("/") == []


@pytest.mark.parametrize("role", ["master", "worker"])
def test_an_empty_id_is_bad_input(role: str, mw_env: dict[str, str], zk: KazooClient) -> None:
    result = run_mw(role, "--id", "", env=mw_env)
    assert result.returncode == 2
    assert "is not a valid" in one_error_line(result)
    assert zk.get_children("/") == []


def test_a_second_master_with_the_same_id_is_refused(mw_env: dict[str, str], spawn, zk: KazooClient) -> None:
    spawn("master", "--id", "m1")
    wait_until(lambda: zk.exists(f"{MASTERS}/m1"), what="m1 in the roster")
    started = time.monotonic()
    result = run_mw("master", "--id", "m1", env=mw_env, timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "master id 'm1' is already in use by a running process" in one_error_line(result)
    assert zk.get("/master")[0] == b"m1" and zk.exists(f"{MASTERS}/m1")  # the running m1 is undisturbed


# -- results are never silently lost ---------------------------------------------------------------


def test_ctrl_c_of_a_waiting_submit_names_the_task_and_the_result_survives(
    mw_env: dict[str, str], spawn, interactive, zk: KazooClient
) -> None:
    spawn("master", "--id", "m1")
    spawn("worker", "--id", "w1")
    submit = interactive("submit", "--", "sh", "-c", "sleep 1; echo later")
    wait_until(lambda: zk.exists("/assign/w1") and zk.get_children("/assign/w1"), what="the task running")
    asked = time.monotonic()
    submit.send_signal(signal.SIGINT)
    _, err = submit.communicate(timeout=10)
    assert time.monotonic() - asked < 2
    assert submit.returncode == 130
    assert "Traceback" not in err
    task = err.split("interrupted: ", 1)[1].split()[0]
    assert f"mw result {task} --wait" in err
    later = run_mw("result", task, "--wait", "--timeout", "30", env=mw_env)
    assert later.returncode == 0, later.stderr
    assert later.stdout.splitlines() == [f"{task} done on w1 (exit code 0)", "later"]


def test_result_with_a_timeout_and_no_wait_flag_waits_that_long(mw_env: dict[str, str], tmp_path: Path) -> None:
    """--timeout alone was ignored: the user got 'has not finished yet' at once, single and --file."""
    submitted = run_mw("submit", "--no-wait", "--", "true", env=mw_env)  # no master: it stays pending
    task = submitted.stdout.split()[0]
    began = time.monotonic()
    single = run_mw("result", task, "--timeout", "1", env=mw_env)
    assert single.returncode == 3, single.stderr
    assert time.monotonic() - began >= 1
    assert single.stdout.startswith(f"{task} has not finished after 1 s: pending in /tasks: no master")
    names = tmp_path / "names.txt"
    names.write_text(task + "\n")
    began = time.monotonic()
    many = run_mw("result", "--file", str(names), "--timeout", "1", env=mw_env)
    assert many.returncode == 3, many.stderr
    assert time.monotonic() - began >= 1
    assert "1 task not finished after 1 s" in many.stderr


def test_submit_file_names_each_failed_task_and_keeps_its_output(
    mw_env: dict[str, str], spawn, zk: KazooClient, tmp_path: Path
) -> None:
    spawn("master", "--id", "m1")
    spawn("worker", "--id", "w1", "--slots", "2")
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo fine\nsh -c 'echo broken; exit 3'\n")
    result = run_mw("submit", "--file", str(tasks), "--timeout", "60", env=mw_env, timeout=90)
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stdout.splitlines() if " failed on " in line]
    assert len(failed) == 1 and "(exit code 3)" in failed[0], result.stdout
    task = failed[0].split()[0]
    assert f"see mw result {task}" in failed[0]
    assert result.stdout.splitlines()[-1] == "1 done, 1 failed, 0 not finished"
    kept = run_mw("result", task, env=mw_env)
    assert kept.returncode == 1
    assert kept.stdout.splitlines()[1] == "broken"
    assert zk.get_children(STATUS) == []  # collected now; the done task was collected by the submit


def test_submit_file_names_the_failed_tasks_in_the_order_they_were_submitted(
    mw_env: dict[str, str], spawn, tmp_path: Path
) -> None:
    """The second task fails a second before the first: both are named in the file's order, also in --json."""
    spawn("master", "--id", "m1")
    spawn("worker", "--id", "w1", "--slots", "2")
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("sh -c 'sleep 1; exit 3'\nsh -c 'exit 4'\n")
    result = run_mw("submit", "--file", str(tasks), "--timeout", "60", env=mw_env, timeout=90)
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stdout.splitlines() if " failed on " in line]
    assert ["(exit code 3)" in failed[0], "(exit code 4)" in failed[1]] == [True, True], result.stdout
    names = [line.split()[0] for line in failed]
    assert names == sorted(names, key=task_sequence)
    again = run_mw("submit", "--file", str(tasks), "--timeout", "60", "--json", env=mw_env, timeout=90)
    report = json.loads(again.stdout)
    assert report["failed"] == report["tasks"]  # both failed; the later one first, as before
    assert [report["failures"][t]["exit_code"] for t in report["failed"]] == [3, 4]


def test_submit_file_collects_results_while_it_waits_and_ctrl_c_lists_the_rest(
    spawn, interactive, zk: KazooClient, tmp_path: Path
) -> None:
    """A done task's record is collected before the file is finished; Ctrl-C then names what goes on."""
    spawn("master", "--id", "m1")
    spawn("worker", "--id", "w1", "--slots", "2")
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo quick\nsleep 60\n")
    submit = interactive("submit", "--file", str(tasks))

    def only_the_long_task_left() -> bool:  # the quick one done and collected while the other runs
        assigned = [t for w in zk.get_children("/assign") for t in zk.get_children(f"/assign/{w}")]
        return zk.get_children(TASKS) == [] and len(assigned) == 1 and zk.get_children(STATUS) == []

    wait_until(lambda: zk.exists("/assign") and zk.exists(STATUS) and only_the_long_task_left(), 30, "quick collected")
    assert submit.poll() is None
    submit.send_signal(signal.SIGINT)
    out, err = submit.communicate(timeout=10)
    assert submit.returncode == 130 and "Traceback" not in err
    (running,) = [t for w in zk.get_children("/assign") for t in zk.get_children(f"/assign/{w}")]
    assert out.splitlines() == [running, "1 done, 0 failed, 1 not finished"]
    assert "interrupted: 1 task not finished (listed above) goes on; mw result NAME --wait" in err


def test_sigterm_to_a_waiting_submit_file_lists_the_tasks_as_ctrl_c_does(
    interactive, zk: KazooClient, tmp_path: Path
) -> None:
    """A CI's cancel or a ``timeout`` sends SIGTERM: it ended the process silently, every name lost."""
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo a\necho b\n")
    submit = interactive("submit", "--file", str(tasks))  # no master: both stay pending
    wait_until(lambda: zk.exists(TASKS) and len(zk.get_children(TASKS)) == 2, 30, "the tasks pending")
    submit.send_signal(signal.SIGTERM)
    out, err = submit.communicate(timeout=10)
    assert submit.returncode == 130 and "Traceback" not in err
    assert out.splitlines() == sorted(zk.get_children(TASKS), key=task_sequence) + ["0 done, 0 failed, 2 not finished"]
    assert "interrupted: 2 tasks not finished (listed above) go on" in err


def test_submit_file_timeout_lists_the_unfinished_tasks_and_says_why(
    mw_env: dict[str, str], zk: KazooClient, tmp_path: Path
) -> None:
    """As ``mw submit --timeout`` does for one task: the names to ask for later, and the cause (no master)."""
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo a\necho b\n")
    result = run_mw("submit", "--file", str(tasks), "--timeout", "1", env=mw_env)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    *names, summary = result.stdout.splitlines()
    assert sorted(names) == sorted(zk.get_children(TASKS)) and len(names) == 2
    assert summary == "0 done, 0 failed, 2 not finished"
    assert (
        "2 tasks not finished after 1 s (listed above); the first is pending in /tasks: no master is running"
        " (start one with 'mw master'); they go on: mw result --file OUT --wait, OUT being this output" in result.stderr
    )


def test_result_file_reads_what_submit_file_printed_and_waits_for_the_rest(
    mw_env: dict[str, str], spawn, zk: KazooClient, tmp_path: Path
) -> None:
    """A --timeout leaves a task running: the names printed go back in as they are, and all is settled."""
    spawn("master", "--id", "m1")
    spawn("worker", "--id", "w1", "--slots", "3")
    wait_until(lambda: zk.exists("/master") and zk.exists("/workers/w1"), 30, "a master and a worker")
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo fine\nsh -c 'sleep 6; echo late'\nsh -c 'exit 3'\n")
    first = run_mw("submit", "--file", str(tasks), "--timeout", "3", env=mw_env, timeout=60)
    assert first.returncode == 3, first.stderr
    assert first.stdout.splitlines()[-1] == "1 done, 1 failed, 1 not finished"
    printed = tmp_path / "printed.txt"
    printed.write_text(first.stdout)  # the failed line, the unfinished name, the summary
    later = run_mw("result", "--file", str(printed), "--wait", "--timeout", "30", env=mw_env, timeout=60)
    assert later.returncode == 1 and "Traceback" not in later.stderr, later.stderr
    lines = later.stdout.splitlines()
    assert len(lines) == 2 and "(exit code 3): record kept" in lines[0], lines
    assert lines[1] == "1 done, 1 failed, 0 not finished"
    failed = lines[0].split()[0]
    assert zk.get_children(STATUS) == [failed]  # the late one collected, the failed one kept
    again = run_mw("result", "--file", str(printed), env=mw_env)  # the same file once more: the late one is gone
    assert again.returncode == 1, again.stderr  # what is left decides: the failed one
    assert again.stdout.splitlines()[-1] == "0 done, 1 failed, 0 not finished, 1 not found"
    assert "1 task not found (not pending, assigned or done: collected already" in again.stderr
    assert zk.get_children(STATUS) == [failed]
    typo = "task-000000000000-0000099999"
    unknown = run_mw("result", "--file", "-", env=mw_env, input=f"{typo}\n")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        f"error: {typo} is not known here: not pending, assigned or done (collected already, or never submitted here)"
    ]


def test_status_says_how_many_finished_records_it_does_not_show(mw_env: dict[str, str], zk: KazooClient) -> None:
    for n in range(53):
        zk.create(f"{STATUS}/task-00000000000{n % 10}-00000000{n:02d}", b"done", makepath=True)  # the book's worker
    result = run_mw("status", env=mw_env)
    assert result.returncode == 0, result.stderr
    assert "finished, not yet collected (53)" in result.stdout
    assert "... and 3 more (mw status --json lists them all)" in result.stdout


def test_status_lists_finished_records_in_the_order_they_were_submitted(
    mw_env: dict[str, str], zk: KazooClient
) -> None:
    """Names begin with a random guid: sorted by name, the records came in a random order."""
    names = [f"task-{guid}-{n:010d}" for n, guid in enumerate(["ffffffffffff", "000000000000", "888888888888"])]
    for name in names:
        zk.create(f"{STATUS}/{name}", b"done", makepath=True)  # the book's worker
    result = run_mw("status", "--json", env=mw_env)
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)["done"]) == names
    text = run_mw("status", env=mw_env).stdout
    assert [text.index(name) for name in names] == sorted(text.index(name) for name in names)


# -- logs ----------------------------------------------------------------------------------------


def test_log_json_makes_every_stderr_line_json(mw_env: dict[str, str], zk_server: LocalZooKeeper) -> None:
    env = {**mw_env, "MW_ZK": mw_env["MW_ZK"] + "/nope"}
    refused = run_mw("status", "--log-json", env=env)
    warned = run_mw("status", "--log-json", "--session-timeout", "1000000", env=mw_env)
    assert refused.returncode == 2 and warned.returncode == 0
    for result in (refused, warned):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines, "expected a line on stderr"
        for line in lines:
            record = json.loads(line)["record"]
            assert record["level"]["name"] in ("ERROR", "WARNING")
    assert "does not exist" in json.loads(refused.stderr)["record"]["message"]
    usage = run_mw("status", "--log-json", "--no-such-option", env=mw_env)  # typer's own usage error
    assert usage.returncode == 2
    assert json.loads(usage.stderr)["record"]["message"] == "No such option: --no-such-option"


def test_a_session_timeout_beyond_the_servers_bounds_says_what_was_granted(mw_env: dict[str, str]) -> None:
    result = run_mw("status", "--session-timeout", "1000000", env=mw_env)
    assert result.returncode == 0
    assert "asked for a 1000000 s session timeout; the server grants" in result.stderr


def test_a_waiting_submit_shows_a_spinner_with_where_the_task_is(mw_env: dict[str, str], spawn) -> None:
    from tests.integration.test_live_view import Terminal

    env = dict(mw_env, TERM="xterm-256color", COLUMNS="100", LINES="30")
    terminal = Terminal(["submit", "--", "sleep", "30"], env)
    try:
        wait_until(lambda: "no master is running" in terminal.text(), 20, "the spinner to say why it waits")
        assert "submitted task-" in terminal.text()
        spawn("master", "--id", "m1")
        spawn("worker", "--id", "w1")
        wait_until(lambda: "running on w1" in terminal.text(), 30, "the spinner to follow the task")
        terminal.child.sendintr()
        wait_until(lambda: "interrupted: task-" in terminal.text(), 10, "the interrupted line")
    finally:
        terminal.child.close(force=True)
