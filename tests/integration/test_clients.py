"""Guarantee 5 and the commands: mw submit, mw result, mw status, and bad input (ch. 3)."""

from __future__ import annotations

import json
import threading

import pytest
from kazoo.client import KazooClient

from masterworker.system import client as client_module
from masterworker.system.client import Collector, wait_for_all
from masterworker.system.protocol import MAX_TASK_BYTES, STATUS, TaskStatus, status_path
from tests.helpers import Roles, run_mw, wait_until


@pytest.fixture
def system(roles: Roles) -> Roles:
    roles.master("m1")
    roles.worker("w1", slots=2)
    return roles


def test_submit_waits_prints_the_result_and_collects_the_status(system: Roles, mw_env, zk: KazooClient) -> None:
    result = run_mw("submit", "--", "echo", "hello", "world", env=mw_env)
    assert result.returncode == 0, result.stderr
    first, output = result.stdout.splitlines()
    assert first.startswith("task-") and " done on w1 (exit code 0)" in first
    assert output == "hello world"
    assert zk.get_children("/status") == []  # the client consumed its record


def test_submit_exit_codes_failed_and_json(system: Roles, mw_env) -> None:
    failed = run_mw("submit", "--json", "--", "sh", "-c", "echo oops; exit 7", env=mw_env)
    assert failed.returncode == 1
    record = json.loads(failed.stdout)
    assert (record["state"], record["exit_code"], record["output"]) == ("failed", 7, "oops\n")


def test_no_wait_then_result(system: Roles, mw_env, zk: KazooClient) -> None:
    submitted = run_mw("submit", "--no-wait", "--", "echo", "later", env=mw_env)
    assert submitted.returncode == 0
    task = submitted.stdout.strip()
    result = run_mw("result", task, "--wait", "--timeout", "20", env=mw_env)
    assert result.returncode == 0 and result.stdout.splitlines()[1] == "later"
    assert zk.exists(f"/status/{task}") is None
    again = run_mw("result", task, env=mw_env)
    assert (
        again.returncode == 2 and again.stderr.strip() == f"error: no task named {task} (not pending, assigned or done)"
    )


def test_timeout_exits_3_and_the_task_stays_queued(roles: Roles, mw_env, zk: KazooClient) -> None:
    master = roles.master("m1")
    wait_until(master.elected.is_set, what="m1 elected")
    result = run_mw("submit", "--timeout", "0.5", "--", "true", env=mw_env)
    assert result.returncode == 3
    task = result.stdout.split()[0]
    assert zk.get_children("/tasks") == [task]
    pending = run_mw("result", task, env=mw_env)
    assert pending.returncode == 3 and "has not finished yet" in pending.stdout


def test_status_json_shape(system: Roles, mw_env, zk: KazooClient) -> None:
    run_mw("submit", "--no-wait", "--", "true", env=mw_env)
    wait_until(lambda: zk.get_children("/status"), 15, "a status")
    view = json.loads(run_mw("status", "--json", env=mw_env).stdout)
    assert view["master"] == "m1"
    assert view["workers"]["w1"]["assigned"] == [] and view["pending"] == []
    (record,) = view["done"].values()
    assert record == {"state": "done", "exit_code": 0, "worker": "w1"}
    human = run_mw("status", env=mw_env)
    assert "active master: m1" in human.stdout and "w1" in human.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit"], "error: the command is empty"),
        (["submit", "--", ""], "error: the command is empty"),
        (["submit", "--", "echo", "x" * MAX_TASK_BYTES], "error: the task is"),
        (["submit", "--timeout", "0", "--", "true"], "error: --timeout must be positive"),
        (["submit", "--task-timeout", "-1", "--", "true"], "error: the task timeout must be positive"),
        (["worker", "--slots", "0"], "error: --slots must be between 1 and 256, not 0"),
        (["master", "--id", "a/b"], "error: 'a/b' is not a valid master id"),
        (["result", "no/such"], "error: 'no/such' is not a task name"),
        (["result", "task-nosuch-0000000001"], "error: no task named task-nosuch-0000000001"),
        (["submit", "--zk", "127.0.0.1:notaport", "--", "true"], "error: malformed ZooKeeper hosts string"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(roles: Roles, mw_env, zk: KazooClient, args, message) -> None:
    master = roles.master("m1")
    wait_until(master.elected.is_set, what="m1 elected")
    before = {p: zk.get_children(p) for p in ("/tasks", "/workers", "/assign", "/status")}
    result = run_mw(*args, env=mw_env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert {p: zk.get_children(p) for p in before} == before


# -- waiting for many results (mw submit --file's waiter), with a test standing in for the workers --


def _wait_in_background(zk: KazooClient, tasks: list[str], **kwargs) -> tuple[threading.Thread, dict]:
    found: dict = {}
    waiter = threading.Thread(target=wait_for_all, args=(zk, tasks, 20), kwargs={"found": found, **kwargs})
    waiter.start()
    return waiter, found


def test_wait_for_all_reads_each_task_while_status_is_too_big_to_list(
    zk: KazooClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "STATUS_LISTING_LIMIT", 1)
    zk.ensure_path(STATUS)
    for n in (1, 2):  # somebody else's records, never collected: more than the limit
        zk.create(status_path(f"task-0000000000ff-000000000{n}"), b"done")
    listings: list[str] = []
    real = zk.get_children
    monkeypatch.setattr(zk, "get_children", lambda path, *a, **k: listings.append(path) or real(path, *a, **k))
    tasks = ["task-000000000001-0000000001", "task-000000000002-0000000002"]
    waiter, found = _wait_in_background(zk, tasks)
    for task in tasks:
        zk.create(status_path(task), TaskStatus("done", exit_code=0).encode())
    waiter.join(20)
    assert not waiter.is_alive() and set(found) == set(tasks)
    assert listings == []  # each of our tasks was read instead


def test_wait_for_all_reads_only_listed_records_of_its_tasks_in_submission_order(
    zk: KazooClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wake-up reads what the listing shows of our tasks (not every task still awaited, not others'
    records) and records them in the order they were submitted, whatever order they finished in."""
    zk.ensure_path(STATUS)
    zk.create(status_path("task-0000000000ff-0000000001"), b"done")  # somebody else's record
    tasks = [f"task-000000000001-{n:010d}" for n in range(2_000)]
    finished = tasks[10:310]
    asked: list[int] = []
    real = client_module.get_many
    monkeypatch.setattr(
        client_module, "get_many", lambda c, paths, **k: asked.append(len(paths)) or real(c, paths, **k)
    )
    txn = zk.transaction()
    for task in reversed(finished):
        txn.create(status_path(task), TaskStatus("done", exit_code=0).encode())
    assert all(r is True or isinstance(r, str) for r in txn.commit())
    found = wait_for_all(zk, tasks, 0.5)
    assert list(found) == finished
    assert sum(asked) == len(finished)


def _count_looks(zk: KazooClient, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    looks = {"exists": 0, "get_children": 0}  # the waiter asks asynchronously, with a bound on each reply
    for name in looks:
        real = getattr(zk, f"{name}_async")

        def counted(path, *a, _real=real, _name=name, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            looks[_name] += path == STATUS
            return _real(path, *a, **k)

        monkeypatch.setattr(zk, f"{name}_async", counted)
    return looks


def test_wait_for_all_wakes_to_one_listing_and_polls_once_status_grows_too_big(
    zk: KazooClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wake-up is one listing (its reply says how big /status is: no exists first); once a listing
    shows more than the limit, the waiter reads its own tasks instead of listing again."""
    monkeypatch.setattr(client_module, "STATUS_LISTING_LIMIT", 3)
    zk.ensure_path(STATUS)
    looks = _count_looks(zk, monkeypatch)
    tasks = [f"task-000000000001-000000000{n}" for n in range(3)]
    waiter, found = _wait_in_background(zk, tasks)
    for task in tasks[:2]:
        zk.create(status_path(task), TaskStatus("done", exit_code=0).encode())
        wait_until(lambda task=task: task in found, 20, f"{task} read")
    assert looks["exists"] == 1 and looks["get_children"] >= 2  # the first look, then listings only
    txn = zk.transaction()  # somebody else's records, at once: 5 under /status, more than the limit
    for n in range(3):
        txn.create(status_path(f"task-0000000000ff-000000000{n}"), b"done")
    assert all(isinstance(r, str) for r in txn.commit())
    wait_until(lambda: looks["exists"] > 1, 20, "the waiter polling")
    listings = looks["get_children"]
    zk.create(status_path(tasks[2]), TaskStatus("done", exit_code=0).encode())
    waiter.join(20)
    assert not waiter.is_alive() and set(found) == set(tasks)
    assert looks["get_children"] == listings  # polling: our task's status read, /status not listed again


def test_wait_for_all_before_status_exists(zk: KazooClient) -> None:
    """A waiter started before anything ever completed here finds /status missing, then its records."""
    assert zk.exists(STATUS) is None
    tasks = ["task-000000000001-0000000001"]
    waiter, found = _wait_in_background(zk, tasks)
    zk.create(status_path(tasks[0]), TaskStatus("done", exit_code=0).encode(), makepath=True)
    waiter.join(20)
    assert not waiter.is_alive() and found[tasks[0]].ok


def test_wait_for_all_collects_each_result_as_it_is_read_and_keeps_failures(zk: KazooClient) -> None:
    """With a collector, a done record is gone while the waiter still waits; a failed one stays for mw result."""
    zk.ensure_path(STATUS)
    done, failed = "task-000000000001-0000000001", "task-000000000002-0000000002"
    collector = Collector(zk)
    waiter, found = _wait_in_background(zk, [done, failed], collector=collector)
    zk.create(status_path(done), TaskStatus("done", exit_code=0).encode())
    wait_until(lambda: zk.exists(status_path(done)) is None, 20, "the first result collected while waiting")
    assert waiter.is_alive()
    zk.create(status_path(failed), TaskStatus("failed", exit_code=7).encode())
    waiter.join(20)
    collector.finish()
    assert not waiter.is_alive() and set(found) == {done, failed}
    assert zk.get_children(STATUS) == [failed]


def test_collector_finishes_when_someone_else_collected_part_of_a_batch(zk: KazooClient) -> None:
    """One record of a batch already gone fails the whole multi-op: the others are still collected."""
    tasks = [f"task-000000000001-000000000{n}" for n in range(3)]
    for task in tasks:
        zk.create(status_path(task), TaskStatus("done", exit_code=0).encode(), makepath=True)
    zk.delete(status_path(tasks[1]))
    collector = Collector(zk)
    collector.send(tasks)
    collector.finish()
    assert zk.get_children(STATUS) == []
