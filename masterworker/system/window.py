"""How many tasks a master lets each worker hold: a window sized by the system, not by the user (ch. 4).

A worker announces ``slots`` and a small ``prefetch`` (``WorkerInfo.capacity``); that is where
its window starts. Short tasks then leave the worker idle between two assignments: it runs
everything it holds before the master has seen the completions and sent more, and each such
cycle costs a listing, a read and a transaction on both sides for a handful of tasks (at
prefetch 1, about 4 requests per task). A window of hundreds amortizes the cycle, but a window
that size with long tasks would park work on one worker while another idles.

So the master sizes it from what it sees, per worker, with no clock and no configuration:

- **grow** (double, up to ``MAX_WINDOW``) when the worker was given a full window, is found
  holding fewer tasks than it has slots (it drained its queue before the next assignment
  arrived: slots stood idle), and more tasks are pending than its window has room for;
- **shrink** (halve, never below what it announced) when it is found with idle slots and
  nothing is pending: the burst is over, and the next one starts small again.

A worker running long tasks completes them one at a time and is found with its slots busy: its
window does not grow. ``MAX_WINDOW`` equals the liveness issue's clamp on a worker's capacity
(``protocol.MAX_CAPACITY``, 256). The master's ``Cluster`` keeps a ``Windows``; ``plan_moves``
adapts it before planning and marks who was filled after (``master_core.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_WINDOW = 256  # the same clamp as protocol.MAX_CAPACITY: never more tasks on one worker
GROWTH = 2


def next_window(window: int, base: int, slots: int, held: int, filled: bool, backlog: bool) -> int:
    """The window after the master has found a worker holding ``held`` tasks.

    ``window``: its size now; ``base``: what the worker announced (slots + prefetch);
    ``filled``: it was given a whole window since it was last looked at; ``backlog``: more tasks
    are pending than its window has room for now.
    """
    base = max(1, min(base, MAX_WINDOW))
    window = max(base, min(window, MAX_WINDOW))
    if held >= slots:  # its slots are busy: the window is big enough
        return window
    if backlog and filled:  # it drained everything before more arrived, and more was waiting
        return min(MAX_WINDOW, window * GROWTH)
    if not backlog:  # idle slots and nothing waiting: the burst is over
        return max(base, window // GROWTH)
    return window


@dataclass
class Windows:
    """Each worker's window as the active master sizes it; rebuilt empty with the master's picture."""

    size: dict[str, int] = field(default_factory=dict)
    filled: set[str] = field(default_factory=set)  # given a whole window since last looked at

    def of(self, worker: str, base: int) -> int:
        return max(self.size.get(worker, base), min(base, MAX_WINDOW))

    def adapt(self, worker: str, base: int, slots: int, held: int, pending: int) -> int:
        """Look at one worker before planning; ``pending``: tasks known to be waiting."""
        window = self.of(worker, base)
        new = next_window(window, base, slots, held, worker in self.filled, pending > window - held)
        if new != window or held < slots:
            self.filled.discard(worker)  # a new window, or a new cycle: it must be filled again to grow
        self.size[worker] = new
        return new

    def gave(self, worker: str, held: int, base: int) -> None:
        """After planning: a worker that now holds a whole window was filled."""
        if held >= self.of(worker, base):
            self.filled.add(worker)

    def forget(self, workers: set[str]) -> None:
        """Workers that are gone."""
        for worker in set(self.size) - workers:
            del self.size[worker]
        self.filled &= workers
