"""Guarantee 1's last part: a master paused past its session timeout changes nothing (ch. 5).

The zombie's picture of the world is stale; fencing with the /epoch version makes every one of
its writes fail. Without fencing (the teaching switch) the same stale write lands.
"""

from __future__ import annotations

import signal

import pytest
from kazoo.client import KazooClient

from masterworker.client import submit
from masterworker.master import Deposed, Master, MasterState
from masterworker.protocol import EPOCH, TaskSpec
from tests.conftest import SESSION_TIMEOUT
from tests.helpers import Roles, all_done, assigned, master_id, statuses, submit_many, wait_until


def zombie_master(roles: Roles, zk: KazooClient, fenced: bool) -> Master:
    """A master frozen just after its election: elected at the current epoch, then never woken."""
    zombie = Master(roles.client(), "zombie", fenced=fenced)
    zombie.epoch = zk.get(EPOCH)[1].version
    zombie.state = MasterState.ELECTED
    return zombie


@pytest.mark.parametrize("fenced", [True, False])
def test_a_stale_master_write_is_refused_only_with_fencing(roles: Roles, zk: KazooClient, fenced: bool) -> None:
    first = roles.master("m1")
    wait_until(first.elected.is_set, what="m1 elected")
    zombie = zombie_master(roles, zk, fenced)
    roles.stop(first)
    second = roles.master("m2")  # a newer master: the epoch moves on
    wait_until(second.elected.is_set, what="m2 elected")
    roles.stop(second)  # keep m2 from assigning the task itself
    zk.create("/assign/w9")
    task = submit(zk, TaskSpec(argv=["true"]))
    if fenced:
        with pytest.raises(Deposed):
            zombie._move([(task, "w9")])
        assert assigned(zk, "w9") == [] and zk.get_children("/tasks") == [task]
    else:
        zombie._move([(task, "w9")])  # the stale write lands
        assert assigned(zk, "w9") == [task]


def test_sigstop_of_the_master_past_its_session_timeout_then_sigcont(roles: Roles, spawn, zk: KazooClient) -> None:
    paused = spawn("master", "--id", "m1")
    wait_until(lambda: master_id(zk) == "m1", what="m1 elected")
    backup = roles.master("m2")
    roles.worker("w1", slots=2)
    roles.worker("w2", slots=2)
    first_batch = submit_many(zk, [["echo", f"a{n}"] for n in range(10)])
    wait_until(lambda: all_done(zk, first_batch), 20, "the first batch done")
    paused.signal(signal.SIGSTOP)
    wait_until(backup.elected.is_set, SESSION_TIMEOUT + 10, "m2 elected while m1 is frozen")
    second_batch = submit_many(zk, [["echo", f"b{n}"] for n in range(10)])
    paused.signal(signal.SIGCONT)
    wait_until(lambda: all_done(zk, second_batch), 20, "the second batch done")
    wait_until(lambda: "session LOST" in paused.log() or "steps down" in paused.log(), 15, "m1 to notice")
    assert master_id(zk) == "m2"
    done = statuses(zk)
    assert set(done) == set(first_batch) | set(second_batch)
    assert zk.get_children("/tasks") == []
