"""Guarantee 1's last part: a master paused past its session timeout changes nothing (ch. 5).

The zombie's picture of the world is stale; fencing with its election's token makes every one of
its writes fail. Without fencing (the teaching switch) the same stale write lands.
"""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient

from masterworker.system.client import submit
from masterworker.system.fencing import token_of
from masterworker.system.master import Deposed, Master
from masterworker.system.protocol import EPOCH, TaskSpec
from tests.helpers import Roles, assigned, wait_until


def zombie_master(roles: Roles, zk: KazooClient, fenced: bool) -> Master:
    """A master frozen just after its election: elected at the current epoch, then never woken."""
    [token] = zk.get_children(EPOCH)
    return Master.frozen_since(roles.client(), "zombie", token_of(token), fenced=fenced)


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
            zombie.assign(task, "w9")
        assert assigned(zk, "w9") == [] and zk.get_children("/tasks") == [task]
    else:
        assert zombie.assign(task, "w9")  # the stale write lands
        assert assigned(zk, "w9") == [task]


# SIGSTOP of a master process past its session timeout, then SIGCONT: test_conformance.py
# (test_a_paused_master_is_fenced) runs it for all three masters.
