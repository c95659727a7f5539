"""``mw demo``: the whole book example in one command, with the two crashes of chapter 1.

It starts an embedded ZooKeeper, two masters and three workers as real processes, submits a
batch of tasks, and midway kills the active master (kill -9) and then a busy worker. The
backup takes over once the dead master's session expires, reconciles the tree, and gives the
dead worker's tasks to the others. The demo succeeds only if every task ends with exactly one
completion record, counted twice: in ZooKeeper and in the workers' own logs.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from masterworker.lab.live import RateMeter
from masterworker.lab.live import render as render_live
from masterworker.lab.processes import MwProcess, mw_env
from masterworker.system.admin import system_view
from masterworker.system.client import DEFAULT_BACKLOG_CAP, submit
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.system.protocol import MASTER, STATUS, TASKS, WORKERS, TaskSpec, TaskStatus, assign_dir
from masterworker.system.zkops import RECOVERABLE, poll_until
from masterworker.zk.server import LocalZooKeeper

_COMPLETION = re.compile(r"(task-[0-9a-f]{12}-\d{10}) (done|failed) \(exit code")


@dataclass
class DemoReport:
    tasks: list[str]
    statuses: dict[str, TaskStatus]
    completions_in_logs: Counter
    executions_in_logs: Counter
    events: list[tuple[float, str]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def exactly_once(self) -> bool:
        return (
            set(self.statuses) == set(self.tasks)
            and all(s.ok for s in self.statuses.values())
            and all(self.completions_in_logs[t] == 1 for t in self.tasks)
            and not self.leftovers
        )


class Demo:
    """One run of the demo; ``run()`` returns a DemoReport, and everything is stopped afterwards."""

    def __init__(
        self,
        console: Console,
        tasks: int = 30,
        workers: int = 3,
        session_timeout: float = 3.0,
        task_seconds: float = 0.4,
        log_dir: Path | None = None,
    ) -> None:
        self.console = console
        self.task_count = tasks
        self.worker_count = workers
        self.session_timeout = session_timeout
        self.task_seconds = task_seconds
        self.log_dir = log_dir
        self.started = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self.masters: dict[str, MwProcess] = {}
        self.workers: dict[str, MwProcess] = {}

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        self.events.append((elapsed, message))
        self.console.print(f"[dim]{elapsed:6.1f}s[/] {message}", highlight=False)

    def run(self) -> DemoReport:
        with tempfile.TemporaryDirectory(prefix="mw-demo-") as tmp:
            log_dir = self.log_dir or Path(tmp)
            log_dir.mkdir(parents=True, exist_ok=True)
            with LocalZooKeeper(servers=1, data_dir=log_dir / "zookeeper") as zk:
                self.say(f"ZooKeeper running at {zk.connect_string}")
                env = mw_env(zk.connect_string, self.session_timeout)
                client = connect(ZkSettings(hosts=zk.connect_string, session_timeout=10))
                try:
                    return self._run(client, env, log_dir)
                finally:
                    for process in [*self.masters.values(), *self.workers.values()]:
                        process.terminate(5)
                        process.stop()
                    close_quietly(client)

    def _spawn(self, args: list[str], env: dict[str, str], log_dir: Path) -> MwProcess:
        return MwProcess(args, env, log_dir / f"{args[2]}.log")

    def _wait(self, condition, timeout: float, what: str) -> None:  # noqa: ANN001
        if not poll_until(condition, timeout):
            raise TimeoutError(f"the demo waited {timeout:g} s for {what}")

    def _run(self, client: KazooClient, env: dict[str, str], log_dir: Path) -> DemoReport:
        for n in (1, 2):
            self.masters[f"master-{n}"] = self._spawn(["master", "--id", f"master-{n}"], env, log_dir)
        for n in range(1, self.worker_count + 1):
            self.workers[f"worker-{n}"] = self._spawn(["worker", "--id", f"worker-{n}", "--slots", "2"], env, log_dir)
        self._wait(lambda: self._active_master(client), 30, "a master to be elected")
        self._wait(
            lambda: client.exists(WORKERS) and len(client.get_children(WORKERS)) == self.worker_count,
            30,
            "the workers to register",
        )
        self.say(
            f"{self._active_master(client)} is the active master, the other is a backup; "
            f"{self.worker_count} workers registered"
        )
        tasks = self._submit_and_break_things(client)
        return self._report(client, tasks, log_dir)

    def _active_master(self, client: KazooClient) -> str | None:
        try:
            return client.get(MASTER)[0].decode()
        except NoNodeError:
            return None

    def _submit_and_break_things(self, client: KazooClient) -> list[str]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        tasks: list[str] = []
        progress = Progress(*columns, console=self.console)  # drawn by the Live below, with the system view
        meter = RateMeter()

        def frame() -> Group:
            try:
                view = system_view(client)
            except RECOVERABLE:
                return Group(progress)
            return Group(
                progress,
                Panel(
                    render_live(view, meter.update(client), DEFAULT_BACKLOG_CAP),
                    title="the system, live from ZooKeeper",
                    expand=False,
                ),
            )

        with Live(Group(progress), console=self.console, refresh_per_second=4) as live:
            submitting = progress.add_task("submitted", total=self.task_count)
            finishing = progress.add_task("finished ", total=self.task_count)
            for n in range(self.task_count):
                argv = ["sh", "-c", f"sleep {self.task_seconds}; echo task {n} ok"]
                tasks.append(submit(client, TaskSpec(argv=argv, timeout=60)))
                progress.advance(submitting)
            master_killed = worker_killed = False
            deadline = time.monotonic() + 120 + 4 * self.session_timeout
            while True:
                done = len(client.get_children(STATUS))
                progress.update(finishing, completed=done)
                live.update(frame())
                if done >= len(tasks):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the demo's tasks did not all finish in time")
                if not master_killed and done >= len(tasks) // 4:
                    master_killed = self._kill_active_master(client)
                    if master_killed:
                        worker_killed = self._kill_busy_worker(client)  # while work is in flight
                        self._wait_for_takeover(client)
                elif master_killed and not worker_killed:
                    worker_killed = self._kill_busy_worker(client)
                time.sleep(0.25)
            live.update(frame())
        self.console.print()
        return tasks

    def _kill_active_master(self, client: KazooClient) -> bool:
        active = self._active_master(client)
        if active not in self.masters:
            return False
        self.masters[active].kill9()
        self._killed_master, self._killed_at = active, time.monotonic()
        self.say(
            f"[red]kill -9 {active}[/] (the active master): its session lives on until it expires "
            f"({self.session_timeout:g} s), then the backup takes over"
        )
        return True

    def _wait_for_takeover(self, client: KazooClient) -> None:
        self._wait(
            lambda: self._active_master(client) not in (None, self._killed_master),
            10 * self.session_timeout,
            "the backup to take over",
        )
        self.say(
            f"[green]{self._active_master(client)} took over[/] {time.monotonic() - self._killed_at:.1f} s "
            "after the kill, reconciled the tree and resumed assigning"
        )

    def _kill_busy_worker(self, client: KazooClient) -> bool:
        for worker, process in self.workers.items():
            try:
                held = client.get_children(assign_dir(worker))
            except NoNodeError:
                continue
            if held and process.alive:
                process.kill9()
                self.say(
                    f"[red]kill -9 {worker}[/] while it holds {len(held)} task(s): once its session "
                    "expires the master puts them back in /tasks for the others"
                )
                return True
        return False

    def _report(self, client: KazooClient, tasks: list[str], log_dir: Path) -> DemoReport:
        statuses = {t: TaskStatus.decode(client.get(f"{STATUS}/{t}")[0]) for t in client.get_children(STATUS)}
        completions: Counter = Counter()
        executions: Counter = Counter()
        for name in self.workers:
            text = (log_dir / f"{name}.log").read_text(errors="replace")
            completions.update(m.group(1) for m in _COMPLETION.finditer(text))
            executions.update(re.findall(r"running (task-[0-9a-f]{12}-\d{10})", text))
        leftovers = client.get_children(TASKS)
        for worker in client.get_children("/assign"):
            leftovers += client.get_children(assign_dir(worker))
        self.say("every task finished; checking each has exactly one completion record")
        return DemoReport(tasks, statuses, completions, executions, self.events, leftovers)


def render_report(console: Console, report: DemoReport) -> None:
    table = Table(title="demo result")
    table.add_column("check")
    table.add_column("value", justify="right")
    by_worker = Counter(s.worker for s in report.statuses.values())
    reruns = sum(max(0, report.executions_in_logs[t] - 1) for t in report.tasks)
    table.add_row("tasks submitted", str(len(report.tasks)))
    table.add_row("completion records in ZooKeeper", str(len(report.statuses)))
    table.add_row(
        "tasks with exactly one completion in the logs",
        str(sum(report.completions_in_logs[t] == 1 for t in report.tasks)),
    )
    table.add_row("re-executions (allowed: execution is at-least-once)", str(reruns))
    table.add_row("left in /tasks or /assign", str(len(report.leftovers)))
    for worker, count in sorted(by_worker.items()):
        table.add_row(f"done by {worker}", str(count))
    console.print(table)
    if report.exactly_once:
        console.print("[bold green]every task finished exactly once[/]")
    else:
        console.print("[bold red]a task was lost or completed twice[/]")
