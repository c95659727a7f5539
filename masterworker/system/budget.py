"""The byte budget of one request: how many operations a transaction may carry (book chapter 3's ``multi``).

ZooKeeper reads each request into a buffer of at most ``jute.maxbuffer`` bytes (0xfffff, 1 MB
less one byte, by default). A bigger request gets no error reply: the server closes the
connection, the client sees ConnectionLoss, reconnects with the same session and sends it again,
for ever. Measured before this module: ``mw submit --file F --batch 200`` with lines of about
7.9 KB (each under the 8 KiB task limit) built a 1.6 MB transaction and resent it 331 times in
45 s, with no error and no exit. So operations are grouped into transactions by bytes, not only
by count, *before* anything is sent; an operation that cannot fit even alone is refused.

Usage::

    sizes = [op_bytes(path, data) for path, data in creates]
    for group in split_by_bytes(sizes, max_count=100):   # ranges of indexes, in order
        ...  # one transaction with the operations of ``group``
"""

from __future__ import annotations

from collections.abc import Sequence

# Half of ZooKeeper's default jute.maxbuffer. The other half is the margin for what the estimate
# below does not see exactly: the chroot kazoo prepends to every path, the request header, and a
# secured system's longer ACLs; and a transaction travels further than the first server: a
# follower forwards it to the leader, which proposes it to every follower wrapped in a bigger
# packet (a transaction header and the quorum packet's own fields), each read under the same limit.
# It still carries more than 50 tasks of the full 8 KiB, and thousands of ordinary command lines.
TXN_BUDGET = 512 * 1024

# What one operation costs on the wire besides its path and data: the multi header (9 bytes), the
# length prefixes of path and data (8), the flags or version (4), and the create's ACL list: 27
# bytes for world:anyone, about 60 per entry in a secured system (digest ids), which has three or
# four entries. tests/unit/test_budget.py checks the estimate against kazoo's own serialisation.
OP_OVERHEAD = 320


class OverBudget(ValueError):
    """One operation is larger than a whole request may be: no split can send it."""

    def __init__(self, index: int, size: int, budget: int, what: str | None = None) -> None:
        what = what or f"operation {index + 1}"
        super().__init__(f"{what} needs {size:,} bytes; one request to ZooKeeper carries at most {budget:,}")
        self.index, self.size, self.budget = index, size, budget


def op_bytes(path: str, data: bytes | int = 0) -> int:
    """What one operation (create, delete or check) adds to a transaction, estimated from above."""
    return len(path.encode("utf-8")) + (data if isinstance(data, int) else len(data)) + OP_OVERHEAD


def split_by_bytes(sizes: Sequence[int], max_count: int, budget: int = TXN_BUDGET, fixed: int = 0) -> list[range]:
    """Consecutive groups of indexes into ``sizes``, in order, covering every one.

    Each group has at most ``max_count`` items, and its sizes plus ``fixed`` (what every
    transaction carries anyway, such as a master's fencing check) stay within ``budget``.
    Greedy: a group closes when the next item would overflow it, so order is kept (a client's
    batches are prefixes of its file). Raises OverBudget for the first item that cannot fit alone.
    """
    if max_count < 1:
        raise ValueError(f"max_count must be at least 1, not {max_count}")
    groups: list[range] = []
    start, used = 0, fixed
    for index, size in enumerate(sizes):
        if fixed + size > budget:
            raise OverBudget(index, fixed + size, budget)
        if index > start and (index - start >= max_count or used + size > budget):
            groups.append(range(start, index))
            start, used = index, fixed
        used += size
    if start < len(sizes):
        groups.append(range(start, len(sizes)))
    return groups
