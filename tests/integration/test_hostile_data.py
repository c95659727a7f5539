"""Hostile and broken data (chapter 6's caveats): nothing crashes or stalls; bad tasks fail with a reason."""

from __future__ import annotations

from kazoo.client import KazooClient

from masterworker.system.client import submit
from masterworker.system.protocol import MAX_TASK_BYTES, TaskSpec
from masterworker.system.zkops import ensure_nodes
from tests.helpers import Roles, all_done, statuses, wait_until


def test_foreign_binary_huge_and_strangely_named_tasks_fail_with_reasons_and_the_rest_runs(
    roles: Roles, zk: KazooClient
) -> None:
    ensure_nodes(zk)
    huge = [zk.create("/tasks/huge-", b"x" * 1_000_000, sequence=True).rsplit("/", 1)[1] for _ in range(3)]
    binary = zk.create("/tasks/weird name \u00e9 ", b"\x00\x01\x02\xff", sequence=True).rsplit("/", 1)[1]
    foreign = zk.create("/tasks/task-", b'{"cmd": "rm -rf /"}', sequence=True).rsplit("/", 1)[1]
    zk.create("/workers/ghost", b"\xff not json")  # malformed worker data (and no such worker)
    zk.create("/assign/stray/not-a-task", b"\x00", makepath=True)  # a stray node under /assign
    roles.master("m1")
    roles.worker("w1", slots=2)
    normal = submit(zk, TaskSpec(argv=["echo", "still fine"]))
    everything = [*huge, binary, foreign, normal, "not-a-task"]
    wait_until(lambda: all_done(zk, everything), 30, "every task to have a status")
    done = statuses(zk)
    for task in huge:
        assert done[task].state == "failed" and done[task].reason == (
            f"task data is 1,000,000 bytes; the limit is {MAX_TASK_BYTES:,}"
        )
    assert done[binary].state == "failed" and done[binary].reason == "task data is binary, not a command"
    assert done[foreign].state == "failed" and "no argv" in done[foreign].reason
    assert done[normal].state == "done" and done[normal].output == "still fine\n"
    assert zk.get_children("/tasks") == []
