"""The byte budget of a transaction (system/budget.py) and the master's batches cut by it (batching.py)."""

from __future__ import annotations

import pytest
from kazoo.protocol.serialization import CheckVersion, Create, Delete, Transaction
from kazoo.security import ACL, Id, make_digest_acl_credential

from masterworker.system.batching import FENCING_BYTES, move_batches, move_bytes
from masterworker.system.budget import OP_OVERHEAD, TXN_BUDGET, OverBudget, op_bytes, split_by_bytes
from masterworker.system.master_core import BATCH, Move
from masterworker.system.protocol import MAX_TASK_BYTES


def test_small_items_are_cut_by_count_only() -> None:
    assert split_by_bytes([10] * 7, max_count=3, budget=1000) == [range(0, 3), range(3, 6), range(6, 7)]


def test_large_items_are_cut_by_bytes_and_every_group_fits() -> None:
    sizes = [400, 400, 400, 100, 100, 900, 50]
    groups = split_by_bytes(sizes, max_count=100, budget=1000)
    assert groups == [range(0, 2), range(2, 5), range(5, 7)]
    assert all(sum(sizes[i] for i in group) <= 1000 for group in groups)


def test_groups_keep_order_and_cover_every_item_once() -> None:
    sizes = [(n * 37) % 500 + 1 for n in range(1000)]
    groups = split_by_bytes(sizes, max_count=64, budget=4000, fixed=300)
    assert [i for group in groups for i in group] == list(range(1000))
    assert all(len(group) <= 64 and 300 + sum(sizes[i] for i in group) <= 4000 for group in groups)


def test_an_item_exactly_at_the_budget_goes_alone() -> None:
    assert split_by_bytes([1, 1000, 1], max_count=10, budget=1000) == [range(0, 1), range(1, 2), range(2, 3)]


def test_an_item_that_cannot_fit_alone_is_named() -> None:
    with pytest.raises(OverBudget) as raised:
        split_by_bytes([10, 10, 2000, 10], max_count=10, budget=1000)
    assert (raised.value.index, raised.value.size, raised.value.budget) == (2, 2000, 1000)
    assert str(raised.value) == "operation 3 needs 2,000 bytes; one request to ZooKeeper carries at most 1,000"


def test_the_fixed_part_counts_against_each_group() -> None:
    assert split_by_bytes([400, 400], max_count=10, budget=1000, fixed=300) == [range(0, 1), range(1, 2)]
    with pytest.raises(OverBudget):
        split_by_bytes([800], max_count=10, budget=1000, fixed=300)


def test_nothing_to_split_is_no_group() -> None:
    assert split_by_bytes([], max_count=10) == []
    with pytest.raises(ValueError):
        split_by_bytes([1], max_count=0)


def test_the_estimate_is_above_what_kazoo_sends_even_with_a_secured_systems_acls() -> None:
    """kazoo's own serialisation of a multi of creates, deletes and a check stays under the estimate."""
    acl = [ACL(31, Id("digest", make_digest_acl_credential(f"role-user-{n}", "password"))) for n in range(4)]
    path, data = "/some/chroot/tasks/task-0123456789ab-", b"x" * 7900
    ops = [Create(path, data, acl, 2), Delete(path + "0000000001", -1), CheckVersion("/epoch/epoch-1-abc", 0)]
    sent = len(Transaction(ops).serialize()) + 12  # length prefix and request header (xid, type)
    assert sent <= op_bytes(path, data) + op_bytes(path + "0000000001") + op_bytes("/epoch/epoch-1-abc")
    assert OP_OVERHEAD < 1024  # and not so wasteful that it matters


def test_the_reported_case_is_cut_under_the_budget() -> None:
    """200 lines of about 7.9 KB with --batch 200 were one 1.6 MB transaction: now four."""
    sizes = [op_bytes("/tasks/task-0123456789ab-", 7900)] * 200
    groups = split_by_bytes(sizes, max_count=200)
    assert len(groups) == 4
    assert all(sum(sizes[i] for i in group) <= TXN_BUDGET for group in groups)


def test_master_batches_of_full_size_tasks_stay_under_the_budget() -> None:
    moves = [Move(f"task-{n:012x}-{n:010d}", f"worker-{n % 3}") for n in range(200)]
    data: dict[str, bytes | None] = {move.task: b"y" * MAX_TASK_BYTES for move in moves}
    data[moves[5].task] = b"z" * (10 * MAX_TASK_BYTES)  # over the limit: assigned as a small marker
    batches = move_batches(moves, data)
    assert [move for batch in batches for move in batch] == moves
    assert all(len(b) <= BATCH and FENCING_BYTES + sum(move_bytes(m, data) for m in b) <= TXN_BUDGET for b in batches)
    assert move_bytes(moves[5], data) < 1024


def test_master_batches_of_small_tasks_are_cut_by_count() -> None:
    moves = [Move(f"task-{n:012x}-{n:010d}", "w1") for n in range(130)]
    batches = move_batches(moves, {move.task: b'{"argv": ["true"]}' for move in moves})
    assert [len(batch) for batch in batches] == [BATCH, BATCH, 2]


def test_a_move_that_cannot_fit_names_its_task_and_worker() -> None:
    move = Move("task-0123456789ab-0000000001", "w" * TXN_BUDGET)
    with pytest.raises(OverBudget, match="moving task-0123456789ab-0000000001 to w{10}"):
        move_batches([move], {move.task: b"{}"})
