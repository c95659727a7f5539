"""How many tasks a master lets each worker hold: a window sized by the system, not by the user (ch. 4).

A worker announces ``slots`` and a small ``prefetch`` (``WorkerInfo.capacity``); that is where
its window starts. Short tasks then leave the worker idle between two assignments: it runs
everything it holds before the master has seen the completions and sent more, and each such
cycle costs a listing, a read and a transaction on both sides for a handful of tasks (at
prefetch 1, about 4 requests per task). A window of hundreds amortizes the cycle, but a window
that size with long tasks would park work on one worker while another idles.

So the master sizes it from what it sees, per worker, with no configuration:

- **grow** (double, up to ``MAX_WINDOW``) when the worker was given a full window, is found
  holding fewer tasks than it has slots (it drained its queue before the next assignment
  arrived: slots stood idle), and more tasks are pending than its window has room for;
- **keep up with its rate**: while tasks wait, the window is at least its slots plus the tasks
  it completes in ``HORIZON`` seconds, and never below what it announced. The rate is what left
  ``/assign/<worker>`` between two looks, counted over ``RATE_PERIOD`` seconds of *busy* time
  only (looks that found tasks waiting or its slots full): the idle time between two bursts
  says nothing of its speed, so the next burst starts with the window of the last one instead
  of growing again from the announced size. A worker is sized by the fastest worker's rate when
  that is higher (a worker given little measures little). Tasks of a few milliseconds that a
  worker finishes one at a time (``/bin/true``) never leave a slot idle, yet each would cost a
  cycle of its own; tasks longer than ``HORIZON`` keep the window the worker announced, so a
  worker does not queue long tasks while another may idle;
- **shrink** (halve, never below what it announced) when it is found with idle slots and
  nothing is pending: the burst is over; and **fall back** to the rate's size at once when a
  fresh rate, measured with its slots busy, is less than half its window: the tasks got longer
  (long tasks after short ones in one backlog), so it stops queueing them.

A worker running long tasks completes them one at a time and is found with its slots busy: its
window does not grow. Left open: the long tasks already queued when the rate falls stay where
they are (at most ``HORIZON`` of the short tasks' work, in count).

``MAX_WINDOW`` equals the liveness issue's clamp on a worker's capacity
(``protocol.MAX_CAPACITY``, 256). The master's ``Cluster`` keeps a ``Windows``; ``plan_moves``
adapts it before planning and marks who was filled after (``master_core.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from masterworker.system.protocol import MAX_CAPACITY

MAX_WINDOW = MAX_CAPACITY  # the liveness clamp: never more tasks on one worker, whatever it says
GROWTH = 2
HORIZON = 0.15  # seconds of a worker's work the window may queue beyond its slots
RATE_PERIOD = 0.1  # seconds of busy time over which the master counts a worker's completions
RATE_FRESH = 1.0  # seconds a worker's rate may size another worker's window


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


def rate_window(base: int, slots: int, rate: float, horizon: float = HORIZON) -> int:
    """Its slots plus ``horizon`` seconds of its work at ``rate`` tasks/s (whole tasks), at least
    what it announced, clamped. A worker whose tasks take longer than ``horizon`` keeps ``base``."""
    return max(1, min(MAX_WINDOW, max(base, slots + math.floor(max(0.0, rate) * horizon))))


@dataclass
class Windows:
    """Each worker's window as the active master sizes it; rebuilt empty with the master's picture."""

    size: dict[str, int] = field(default_factory=dict)
    filled: set[str] = field(default_factory=set)  # given a whole window since last looked at
    rate: dict[str, float] = field(default_factory=dict)  # tasks/s it completed, last measured
    measured_at: dict[str, float] = field(default_factory=dict)  # when (monotonic)
    _held: dict[str, int] = field(default_factory=dict)  # what it held after our last assignment
    # the last look, whether it found the worker busy, completions and seconds of busy time since the last rate
    _count: dict[str, tuple[float, bool, int, float]] = field(default_factory=dict)

    def of(self, worker: str, base: int) -> int:
        return max(self.size.get(worker, base), min(base, MAX_WINDOW))

    def adapt(self, worker: str, base: int, slots: int, held: int, pending: int, now: float) -> int:
        """Look at one worker before planning; ``pending``: tasks known to be waiting; ``now``: a monotonic clock."""
        window = self.of(worker, base)
        backlog = pending > window - held
        measured = self._measure(worker, held, now, busy=backlog or held >= slots)
        new = next_window(window, base, slots, held, worker in self.filled, backlog)
        if backlog:
            floor = rate_window(base, slots, self.pace(worker, now))
            if measured and held >= slots and floor * GROWTH <= new:
                new = floor  # busy slots, and a fresh rate says its tasks got longer: stop queueing them
            new = max(new, floor)
        if new != window or held < slots:
            self.filled.discard(worker)  # a new window, or a new cycle: it must be filled again to grow
        self.size[worker] = new
        return new

    def pace(self, worker: str, now: float) -> float:
        """The rate its window is sized by: its own, or a faster worker's measured in the last
        ``RATE_FRESH`` seconds.

        A worker that was given little measures little (it completes only what it gets), and its
        window would stay small while the others take the burst and finish it alone. The tasks
        of one backlog take about as long on every worker, so a busy worker's rate tells how short
        they are now; a slower worker then queues more than ``HORIZON`` of its own work, at most
        ``HORIZON`` of the fastest one's. Only fresh rates: a worker that has stopped getting
        tasks (the book's worker when commands wait) must not keep everyone's windows wide.
        """
        fresh = (rate for w, rate in self.rate.items() if now - self.measured_at.get(w, now) <= RATE_FRESH)
        return max(self.rate.get(worker, 0.0), *fresh, 0.0)

    def _measure(self, worker: str, held: int, now: float, busy: bool) -> bool:
        """Completions are what left /assign/<worker> since our last assignment (only we add to it).

        Only busy time counts: an interval between two looks that both found the worker busy
        (tasks waiting, or its slots full). Time idle between two bursts says nothing of how
        fast it works, so the rate measured in one burst is kept for the next one. True when a
        rate was just measured (after ``RATE_PERIOD`` seconds of busy time).
        """
        completed = max(0, self._held.get(worker, held) - held)
        self._held[worker] = held
        last, was_busy, count, spent = self._count.get(worker, (now, False, 0, 0.0))
        if busy and was_busy:
            count, spent = count + completed, spent + (now - last)
        measured = spent >= RATE_PERIOD
        if measured:
            self.rate[worker] = count / spent
            self.measured_at[worker] = now
            count, spent = 0, 0.0
        self._count[worker] = (now, busy, count, spent)
        return measured

    def gave(self, worker: str, held: int, base: int) -> None:
        """After planning: what it holds now; a worker that holds a whole window was filled."""
        self._held[worker] = held
        if held >= self.of(worker, base):
            self.filled.add(worker)

    def forget(self, workers: set[str]) -> None:
        """Workers that are gone."""
        for table in (self.size, self.rate, self.measured_at, self._held, self._count):
            for worker in set(table) - workers:
                del table[worker]
        self.filled &= workers
