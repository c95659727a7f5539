"""The benchmark scenarios of ``mw bench``. Each returns a BenchResult of figures.

Trivial tasks are "book tasks" (data that is not masterworker JSON): a worker completes them
without running anything, as the book's own benchmark tasks are never run either. ``exec``
tasks really run ``/bin/true``. Every scenario is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import NoNodeError

from masterworker.lab.bench.book_system import start_book_driver, start_book_system
from masterworker.lab.bench.clients import CHUNK, RUNNERS, TRIVIAL
from masterworker.lab.bench.costs import conditions, round_costs, summarize
from masterworker.lab.bench.system import BenchSystem
from masterworker.system.client import check_backlog, submit_payloads, wait_for_status
from masterworker.system.errors import BacklogFull
from masterworker.system.multiread import get_many
from masterworker.system.protocol import MASTER, WORKERS, status_path, worker_path


@dataclass
class BenchResult:
    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)  # scale: one row per point

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "figures": self.figures, "cpu_seconds": self.cpu, "series": self.series}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def throughput(
    zk: str | None = None,
    tasks: int = 1000,
    workers: int = 3,
    submit: str = "single",
    slots: int = 2,
    prefetch: int | None = None,
    argv: list[str] | None = None,
    name: str = "throughput",
    warmup: int = 0,
    client: str = "collect",
    rounds: int = 3,
    system_kind: str = "mw",
    book_classpath: str | None = None,
    backups: int = 0,
) -> BenchResult:
    """N tasks submitted at once to 1 master and W workers, ``rounds`` times: tasks/s and what each task cost.

    ``warmup`` tasks go through the same way first, unmeasured: a freshly started ZooKeeper runs
    interpreted Java until its JIT compiler has seen the hot paths, and the first round measures
    that more than masterworker. ``prefetch=None`` starts the workers as a user does (no flag).
    Each round's costs cover that round only (``costs.py``); the figures are the medians, with
    min and max beside them. ``system_kind="book"`` measures the book's Java system instead
    (``book_system.py``: 1 master, 1 backup, W workers; slots and prefetch do not apply);
    ``backups`` adds backup masters to mw's (idle, as the book's backup is).
    """
    batch = None if submit == "single" else CHUNK
    run = RUNNERS[client]
    budget = 120 + tasks / 50
    with BenchSystem(zk) as system:
        if system_kind == "book":
            start_book_system(system, book_classpath, workers)
        else:
            system.start_master()
            for n in range(1, workers + 1):
                system.start_worker(f"worker-{n}", slots=slots, prefetch=prefetch)
            system.ready(workers)
            for n in range(2, backups + 2):
                system.start_master(f"master-{n}")
        system.ready(workers)
        if client == "book-java":
            start_book_driver(system, book_classpath)
        system.settle()  # the backups and JVMs still starting are no round's cost
        when = conditions(system.zookeeper_version(), warmup)
        if warmup:
            run(system, warmup, batch, argv, budget + warmup / 50)
        measured, done = [], []
        for _ in range(rounds):
            before = system.snapshot()
            done = run(system, tasks, batch, argv, budget)
            measured.append(round_costs(before, system.snapshot(), tasks))
    result = BenchResult(name)
    result.figures = {
        "system": system_kind, "client": client,
        "prefetch": None if system_kind == "book" else "default" if prefetch is None else prefetch,
        "tasks": tasks, "rounds": rounds, "warmup": warmup, "workers": workers,
        "slots": None if system_kind == "book" else slots, "submit": submit,
        **summarize(measured),
        "done_after_submit_p50_ms": round(1000 * percentile(done, 50), 1),  # the last round, from its start
        "done_after_submit_p99_ms": round(1000 * percentile(done, 99), 1),
        "conditions": when,
        "each_round": measured,
    }  # fmt: skip
    return result


def exec_tasks(
    zk: str | None = None,
    tasks: int = 1000,
    workers: int = 3,
    slots: int = 2,
    prefetch: int | None = None,
    warmup: int = 0,
    client: str = "collect",
    rounds: int = 3,
) -> BenchResult:
    """Tasks that really run a program (/bin/true): bounded by the cost of spawning processes."""
    return throughput(
        zk, tasks, workers, "batch", slots, prefetch, ["/bin/true"], "exec", warmup, client=client, rounds=rounds
    )


def latency(zk: str | None = None, tasks: int = 200) -> BenchResult:
    """One task at a time, each waited for: the end-to-end latency a single client sees."""
    samples = []
    with BenchSystem(zk) as system:
        system.start_master()
        system.start_worker("worker-1", slots=1, prefetch=1)
        system.ready(1)
        for _ in range(tasks):
            began = time.perf_counter()
            (task,) = submit_payloads(system.client, [TRIVIAL])
            if wait_for_status(system.client, task, 30) is None:
                raise TimeoutError(f"{task} did not finish within 30 s")
            samples.append(time.perf_counter() - began)
            system.client.delete(status_path(task))
    return BenchResult("latency", figures={
        "tasks": tasks,
        "latency_p50_ms": round(1000 * percentile(samples, 50), 2),
        "latency_p99_ms": round(1000 * percentile(samples, 99), 2),
        "tasks_per_s": round(tasks / sum(samples), 1),
    })  # fmt: skip


def _active(system: BenchSystem) -> str | None:
    try:
        return system.client.get(MASTER)[0].decode()
    except NoNodeError:
        return None


def failover(zk: str | None = None, session_timeout: float = 5.0, impl: str = "default") -> BenchResult:
    """Time from killing the active master (kill -9, then SIGTERM) until the backup assigns again."""
    figures: dict[str, Any] = {"impl": impl, "session_timeout_s": session_timeout}
    with BenchSystem(zk, session_timeout=session_timeout, log_level="INFO") as system:  # backups say so at INFO
        system.start_master("master-1", impl)
        system.wait(lambda: system.client.exists(MASTER), 30, "master-1")
        system.start_master("master-2", impl)
        system.start_worker("worker-1", slots=2, prefetch=2)
        system.ready(1)
        for how, sig in (("kill9", signal.SIGKILL), ("sigterm", signal.SIGTERM)):
            _wait_for_backup(system)
            active = _active(system)
            began = time.monotonic()
            system.processes[active].signal(sig)
            (task,) = submit_payloads(system.client, [TRIVIAL])
            system.wait(
                lambda t=task: system.client.exists(status_path(t)), 10 * session_timeout + 30, "the backup to assign"
            )
            figures[f"{how}_takeover_s"] = round(time.monotonic() - began, 3)
            system.processes[active].proc.wait(30)
            system.start_master(active, impl)  # back as a backup for the next round
    figures["kill9_budget_s"] = session_timeout + 1
    return BenchResult("failover", figures=figures)


def _wait_for_backup(system: BenchSystem) -> None:
    """One master active, the others started (each kind says "starting"); then a moment to settle as
    backups (a recipes backup waits in the election's queue and says nothing more)."""

    def ready() -> bool:
        masters = [p for name, p in system.processes.items() if name.startswith("master")]
        return _active(system) is not None and all(p.alive and "starting" in p.log() for p in masters)

    system.wait(ready, 60, "a backup master")
    time.sleep(0.5)


def orphans(zk: str | None = None, tasks: int = 300, session_timeout: float = 3.0) -> BenchResult:
    """A worker holding many tasks is killed: time from its session's expiry until all are done elsewhere."""
    with BenchSystem(zk, session_timeout=session_timeout) as system:
        system.start_master()
        doomed = system.start_worker("worker-1", slots=1, prefetch=tasks - 1)
        system.ready(1)
        doomed.signal(signal.SIGSTOP)  # it holds what the master gives it, and runs none of it
        names = submit_payloads(system.client, [TRIVIAL] * tasks, batch=CHUNK)
        system.wait(lambda: len(system.client.get_children("/assign/worker-1")) == tasks, 60, "assignments")
        system.start_worker("worker-2", slots=4, prefetch=tasks)
        system.ready(2)
        doomed.kill9()  # its session lives on until the server expires it
        system.wait(
            lambda: system.client.exists(worker_path("worker-1")) is None,
            60 + session_timeout,
            "worker-1's session to expire",
        )
        expired = time.time()  # seen within a few ms of the server deleting the ephemeral node
        system.wait(lambda: system.statuses() >= tasks, 60, "the orphans")
        results = get_many(system.client, [status_path(t) for t in names])
        last = max(r[1].ctime / 1000 for r in results if not isinstance(r, Exception))
    return BenchResult("orphans", figures={
        "tasks": tasks, "session_timeout_s": session_timeout,
        "all_done_after_expiry_s": round(last - expired, 3),
    })  # fmt: skip


def scale(
    zk: str | None = None,
    worker_counts: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
    tasks: int = 2000,
    backlogs: tuple[int, ...] = (1000, 5000, 10000, 20000),
    cap: int = 20_000,
) -> BenchResult:
    """tasks/s against the number of workers, and against the backlog waiting when workers start."""
    result = BenchResult("scale")
    for count in worker_counts:
        point = throughput(zk, tasks, count, "batch", slots=2, client="count", rounds=1)
        result.series.append(
            {"sweep": "workers", "workers": count, "tasks": tasks, "tasks_per_s": point.figures["tasks_per_s"]}
        )
    for backlog in backlogs:
        with BenchSystem(zk) as system:
            for n in range(1, 4):  # workers first: they register and wait, with no master to assign
                system.start_worker(f"worker-{n}", slots=2, prefetch=64)
            system.wait(lambda: len(system.client.get_children(WORKERS)) == 3, 60, "the workers")
            submit_payloads(system.client, [TRIVIAL] * backlog, batch=CHUNK)
            refused = None
            if backlog >= cap:
                try:
                    check_backlog(system.client, cap)
                except BacklogFull as exc:
                    refused = str(exc)
            system.start_master()
            system.wait(lambda: system.client.exists(MASTER), 60, "the master")
            began = time.time()  # from the election: the master reconciles, then drains the backlog
            system.wait(lambda b=backlog: system.statuses() >= b, 300, "the backlog to drain")
            seconds = time.time() - began
        row = {
            "sweep": "backlog",
            "backlog": backlog,
            "workers": 3,
            "drain_s": round(seconds, 2),
            "tasks_per_s": round(backlog / seconds, 1),
        }
        if backlog >= cap:
            row["refused_past_cap"] = refused
        result.series.append(row)
    return result
