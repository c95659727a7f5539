"""The master's window per worker (system/window.py) and its use in plan_moves: pure, no server."""

from __future__ import annotations

from collections import deque

import pytest

from masterworker.system.master_core import Cluster, Move, candidates, plan_moves
from masterworker.system.protocol import COMMAND, WorkerInfo
from masterworker.system.window import HORIZON, MAX_WINDOW, Windows, next_window, rate_window


def test_a_worker_found_drained_while_work_waits_gets_twice_the_window() -> None:
    assert next_window(3, base=3, slots=2, held=0, filled=True, backlog=True) == 6
    assert next_window(6, base=3, slots=2, held=1, filled=True, backlog=True) == 12


def test_the_window_never_passes_the_clamp() -> None:
    assert next_window(200, base=3, slots=2, held=0, filled=True, backlog=True) == MAX_WINDOW
    assert next_window(MAX_WINDOW, base=3, slots=2, held=0, filled=True, backlog=True) == MAX_WINDOW
    assert next_window(5000, base=9000, slots=2, held=0, filled=False, backlog=False) == MAX_WINDOW


def test_busy_slots_mean_the_window_is_big_enough() -> None:
    """Long tasks complete one at a time: the worker is found with its slots busy, and never grows."""
    assert next_window(3, base=3, slots=2, held=2, filled=True, backlog=True) == 3
    assert next_window(64, base=3, slots=2, held=40, filled=True, backlog=False) == 64


def test_no_growth_without_evidence() -> None:
    assert next_window(3, base=3, slots=2, held=0, filled=False, backlog=True) == 3  # never given a whole window
    assert next_window(12, base=3, slots=2, held=0, filled=True, backlog=False) == 6  # nothing waits: shrink


def test_shrinking_stops_at_what_the_worker_announced() -> None:
    assert next_window(4, base=3, slots=2, held=0, filled=False, backlog=False) == 3
    assert next_window(3, base=3, slots=2, held=0, filled=False, backlog=False) == 3


def test_windows_must_be_filled_again_before_each_growth() -> None:
    windows = Windows()
    assert windows.adapt("w1", base=3, slots=2, held=0, pending=100, now=0.0) == 3  # new: not filled yet
    windows.gave("w1", held=3, base=3)
    assert windows.adapt("w1", base=3, slots=2, held=3, pending=97, now=0.0) == 3  # our belief after assigning
    assert windows.adapt("w1", base=3, slots=2, held=0, pending=97, now=0.0) == 6  # found drained: grows once
    assert windows.adapt("w1", base=3, slots=2, held=0, pending=97, now=0.0) == 6  # not filled since: no more
    windows.forget(set())
    assert windows.of("w1", 3) == 3


def cluster(pending: int, workers: int = 2) -> Cluster:
    c = Cluster(pending=deque(f"task-{i:010d}" for i in range(pending)))
    for n in range(1, workers + 1):
        c.workers[f"w{n}"] = WorkerInfo(slots=2, prefetch=1)
        c.assigned[f"w{n}"] = set()
    return c


def drain(c: Cluster) -> None:
    """The workers ran everything they held (what the master reads after their completions)."""
    for worker in c.assigned:
        c.assigned[worker] = set()


def plan_round(c: Cluster, now: float) -> list[Move]:
    """One assignment round as a master runs it: candidates (the windows adapt), their data read, the plan."""
    c.kinds.update(dict.fromkeys(candidates(c, now=now), COMMAND))
    return plan_moves(c)


def test_a_rate_sets_a_floor_of_horizon_seconds_of_work() -> None:
    assert rate_window(3, 2, rate=400.0) == 2 + int(400 * HORIZON)
    assert rate_window(3, 2, rate=10.0) == 3  # tasks longer than the horizon: what the worker announced
    assert rate_window(3, 2, rate=1e9) == MAX_WINDOW
    assert rate_window(3, 2, rate=0.0) == 3


def test_plan_moves_grows_windows_cycle_by_cycle_under_a_backlog() -> None:
    c = cluster(pending=2000)
    sizes = []
    for _ in range(9):
        for move in plan_round(c, now=0.0):
            c.assigned_to(move.task, move.worker)
        sizes.append(len(c.assigned["w1"]))
        drain(c)
    assert sizes == [3, 6, 12, 24, 48, 96, 192, 256, 256]


def test_windows_go_back_to_the_announced_size_once_the_burst_is_over() -> None:
    c = cluster(pending=600)
    for _ in range(6):
        for move in plan_round(c, now=0.0):
            c.assigned_to(move.task, move.worker)
        drain(c)
    assert c.window("w1") > 3
    while c.pending:  # the rest, then idle steps
        for move in plan_round(c, now=0.0):
            c.assigned_to(move.task, move.worker)
        drain(c)
    for _ in range(8):
        plan_round(c, now=0.0)
    assert c.window("w1") == c.window("w2") == 3


def complete_one_at_a_time(seconds_per_task: float, steps: int) -> int:
    """A worker with 2 slots whose tasks finish one by one (never an idle slot); its window after ``steps``."""
    c = cluster(pending=5000, workers=1)
    now = 0.0
    for _ in range(steps):
        for move in plan_round(c, now=now):
            c.assigned_to(move.task, move.worker)
        c.assigned["w1"].remove(min(c.assigned["w1"]))  # one task completed
        now += seconds_per_task
    return c.window("w1")


def test_long_tasks_keep_the_announced_window() -> None:
    """Tasks that finish one at a time, a second each: the worker is found with busy slots, its rate is
    low, and its window stays what it announced."""
    assert complete_one_at_a_time(1.0, steps=20) == 3
    assert complete_one_at_a_time(0.1, steps=50) == 3  # 0.1 s tasks: still no queue beyond the announced one


def test_short_tasks_finished_one_at_a_time_widen_the_window_to_their_rate() -> None:
    """/bin/true-like tasks, 3 ms each: no slot ever idles, but the window grows to the rate's floor."""
    assert complete_one_at_a_time(0.003, steps=200) == rate_window(3, 2, 1 / 0.003) > 40


def busy_burst(windows: Windows, worker: str, start: float, seconds: float, per_look: int, step: float = 0.01) -> float:
    """A worker found every ``step`` seconds with its slots full, having completed ``per_look`` tasks since."""
    now, held = start, 200
    windows.adapt(worker, base=3, slots=2, held=held, pending=1000, now=now)
    while now < start + seconds:
        now += step
        windows.gave(worker, held=held, base=3)
        windows.adapt(worker, base=3, slots=2, held=held - per_look, pending=1000, now=now)
    return now


def test_the_rate_of_a_burst_is_kept_for_the_next_one() -> None:
    """Idle time between two bursts says nothing of a worker's speed: the next burst starts with
    the window of the rate measured in the last one, instead of growing again from 3."""
    windows = Windows()
    end = busy_burst(windows, "w1", 0.0, 0.3, per_look=10)  # 1,000 tasks/s while busy
    assert windows.rate["w1"] == pytest.approx(1000, rel=0.05)
    for idle in range(20):  # idle and nothing pending: looks that must not dilute the rate
        windows.adapt("w1", base=3, slots=2, held=0, pending=0, now=end + 0.5 * idle)
    assert windows.of("w1", 3) == 3
    assert windows.rate["w1"] == pytest.approx(1000, rel=0.05)
    # the next burst: the first look already sizes the window by that rate
    first = windows.adapt("w1", base=3, slots=2, held=0, pending=1000, now=end + 60)
    assert first == rate_window(3, 2, windows.rate["w1"]) > 140


def test_a_worker_given_little_is_sized_by_the_fastest_workers_rate() -> None:
    """A worker that got little measures little; the tasks of one backlog are alike, so its window
    is sized by the fastest worker's rate and it takes its share of the burst."""
    windows = Windows()
    busy_burst(windows, "fast", 0.0, 0.3, per_look=10)
    first = windows.adapt("new", base=3, slots=2, held=0, pending=1000, now=1.0)
    assert first == rate_window(3, 2, windows.rate["fast"]) > 140


def test_a_fresh_rate_of_longer_tasks_stops_the_queueing_at_once() -> None:
    """Short tasks grew the window; then the tasks got long (busy slots, a low fresh rate): the
    window falls back to the rate's size instead of staying grown until the worker idles."""
    windows = Windows()
    end = busy_burst(windows, "w1", 0.0, 0.3, per_look=10)
    assert windows.of("w1", 3) > 100
    busy_burst(windows, "w1", end, 0.3, per_look=0, step=0.05)  # nothing completes for 0.3 s
    assert windows.of("w1", 3) == 3


def test_a_rate_gone_stale_sizes_nobody_else() -> None:
    """A worker that stopped getting tasks (the book's worker while commands wait) keeps its own
    rate for its next burst, but does not keep the other workers' windows wide."""
    windows = Windows()
    end = busy_burst(windows, "book", 0.0, 0.3, per_look=10)
    assert windows.adapt("other", base=3, slots=2, held=0, pending=1000, now=end + 5.0) == 3
