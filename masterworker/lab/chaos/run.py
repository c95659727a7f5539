"""``mw chaos``: a local chaos run (real processes on a real 3-server ensemble) and its report.

1. start a 3-server ensemble whose servers reach each other through proxies (``PeerLinks``),
   masters and workers, each role reaching ZooKeeper through proxies of its own (each recording
   its history);
2. submit tasks at a steady rate while the nemesis injects one fault after another, every
   fault type at least once (a round is never cut short);
3. heal everything (resume, restart), wait for the backlog to drain (bounded), and
4. check the whole history: nothing acknowledged lost, no task completed twice.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kazoo.client import KazooClient
from rich.console import Console
from rich.table import Table

from masterworker.lab.chaos.checker import CheckReport, check
from masterworker.lab.chaos.liveness import DEFAULT_MARGIN
from masterworker.lab.chaos.load import LoadGenerator
from masterworker.lab.chaos.local import LocalBackend
from masterworker.lab.chaos.nemesis import FAULTS, Backend, Nemesis, schedule
from masterworker.lab.chaos.partition import PeerLinks
from masterworker.lab.processes import mw_env
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.system.history import RUN_DIR_ENV, History, read_history
from masterworker.system.protocol import MASTER, STATUS, TASKS, WORKERS
from masterworker.system.zkops import poll_until
from masterworker.zk.server import LocalZooKeeper

BREAKS = {
    "completion": "workers complete with two separate writes, NodeExists taken as success (the book's way)",
    "fencing": "masters assign without checking their fencing token (mw master --no-fencing)",
}


@dataclass
class ChaosConfig:
    duration: float = 60.0
    rate: float = 10.0
    seed: int = 1
    faults: tuple[str, ...] = FAULTS
    session_timeout: float = 2.0
    masters: int = 3
    workers: int = 4
    slots: int = 2
    task_argv: tuple[str, ...] = ("sh", "-c", "sleep 0.2")
    breaks: str | None = None
    run_dir: Path | None = None
    liveness_margin: float = DEFAULT_MARGIN  # the liveness budget is the session timeout plus this
    report_dir: Path | None = None  # mw chaos --report: the history, a picture and a page

    @property
    def budget(self) -> float:
        return self.session_timeout + self.liveness_margin


class LocalChaosRun:
    def __init__(self, config: ChaosConfig, console: Console) -> None:
        self.config = config
        self.console = console
        self.run_dir = config.run_dir or Path(tempfile.mkdtemp(prefix="mw-chaos-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f}s[/] {message}", highlight=False)

    def run(self) -> CheckReport:
        config = self.config
        peers = PeerLinks()
        try:
            with LocalZooKeeper(servers=3, data_dir=self.run_dir / "zookeeper", peer_network=peers) as zk:
                self.say(f"3-server ensemble at {zk.connect_string}; run directory {self.run_dir}")
                env = mw_env(zk.connect_string, config.session_timeout) | {RUN_DIR_ENV: str(self.run_dir)}
                backend = LocalBackend(zk, env, self.run_dir, config.session_timeout, peers)
                observer = connect(ZkSettings(hosts=zk.connect_string, session_timeout=10))
                try:
                    records, drain = self._run(backend, observer)
                finally:
                    backend.stop_all()
                    close_quietly(observer)
        finally:
            peers.stop()
        return finish(config, self.run_dir, records, drain)

    def _run(self, backend: LocalBackend, observer: KazooClient) -> tuple[set[str], float | None]:
        config = self.config
        master_args = ["--no-fencing"] if config.breaks == "fencing" else []
        for n in range(1, config.masters + 1):
            backend.start(f"master-{n}", ["master", "--id", f"master-{n}", *master_args])
        unsafe = ["--unsafe-completion"] if config.breaks == "completion" else []
        worker_args = ["--slots", str(config.slots), *unsafe]
        for n in range(1, config.workers + 1):
            backend.start(f"worker-{n}", ["worker", "--id", f"worker-{n}", *worker_args])
        if config.breaks:
            self.say(f"[bold yellow]teaching switch on:[/] {BREAKS[config.breaks]}")
        history = History(self.run_dir / "history" / f"controller-{os.getpid()}.jsonl")
        load = LoadGenerator(observer, config.rate, history, list(config.task_argv))
        return drive(config, backend, observer, history, self.say, self.started, load)


def drive(
    config: ChaosConfig,
    backend: Backend,
    observer: KazooClient,
    history: History,
    say: Callable[[str], None],
    started: float,
    load: LoadGenerator | None = None,
) -> tuple[set[str], float | None]:
    """The part both backends share: load, faults, heal, drain. Returns the completion records."""
    nemesis = Nemesis(backend, observer, history, config.seed, say=say)
    unsupported: dict[str, str] = getattr(backend, "unsupported", {})
    for fault in config.faults:
        if fault in unsupported:
            say(f"[yellow]{fault}[/] left out: {unsupported[fault]}")
    faults = tuple(f for f in config.faults if f not in unsupported)
    if not poll_until(
        lambda: observer.exists(MASTER) and len(observer.get_children(WORKERS)) >= len(backend.workers()), 120
    ):
        say("[bold red]the system did not come up: no master or not every worker registered[/]")
    say(
        f"{len(backend.masters())} masters, {len(backend.workers())} workers"
        + (f"; submitting {config.rate:g} tasks/s" if load else "")
    )
    if load is not None:
        load.start()
    time.sleep(min(2.0, config.duration / 10))
    fired: set[str] = set()
    for fault in schedule(faults, config.seed):
        if time.monotonic() - started > config.duration and fired >= set(faults):
            break
        nemesis.inject(fault)
        fired.add(fault)
        time.sleep(0.5)
    if load is not None:
        load.stop()
    backend.stop_load()
    say("faults over; healing everything")
    backend.heal()
    drain = _drain(observer, nemesis.bound, say)
    history.record("end")  # the checker's liveness and the picture stop here, before the processes are stopped
    return set(observer.get_children(STATUS)), drain


def _drain(observer: KazooClient, bound: float, say: Callable[[str], None]) -> float | None:
    """Time until nothing is pending or assigned, or None when the bound runs out (stuck)."""
    started = time.monotonic()

    def empty() -> bool:
        if observer.get_children(TASKS):
            return False
        return not any(observer.get_children(f"/assign/{w}") for w in observer.get_children("/assign"))

    if poll_until(empty, bound):
        seconds = time.monotonic() - started
        say(f"backlog drained {seconds:.2f} s after healing")
        return seconds
    say(f"[bold red]backlog not drained within {bound:.0f} s of healing[/]")
    return None


def run_docker(
    config: ChaosConfig, console: Console, zk_hosts: str, docker_client: object | None = None
) -> CheckReport:
    """The compose demo's chaos service: the same nemesis and checker, acting on containers."""
    from masterworker.lab.chaos.docker_backend import DockerBackend, docker_from_env

    run_dir = config.run_dir or Path("/run/mw")
    started = time.monotonic()

    def say(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {message}", highlight=False)

    backend = DockerBackend(docker_client or docker_from_env(), zk_hosts, run_dir, config.session_timeout)
    observer = connect(ZkSettings(hosts=zk_hosts, session_timeout=10))
    try:
        history = History(run_dir / "history" / f"chaos-{os.getpid()}.jsonl")
        records, drain = drive(config, backend, observer, history, say, started)
    finally:
        close_quietly(observer)
    return finish(config, run_dir, records, drain)


def finish(config: ChaosConfig, run_dir: Path, records: set[str], drain: float | None) -> CheckReport:
    """Check the history; write report.json, and with ``--report`` the history and its picture."""
    events = read_history(run_dir)
    report = check(events, records, drain, budget=config.budget)
    (run_dir / "report.json").write_text(json.dumps(report.as_dict(), indent=2))
    if config.report_dir is not None:
        from masterworker.lab.chaos.picture import write_report

        write_report(config.report_dir, events, report)
    return report


def render(console: Console, report: CheckReport) -> None:
    data = report.as_dict()
    table = Table(title="chaos check")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in (
        "acknowledged",
        "unknown_submits",
        "failed_submits",
        "completion_records",
        "lost",
        "duplicates",
        "phantoms",
        "executions",
        "reexecuted_tasks",
        "discarded_results",
        "drain_seconds",
    ):
        table.add_row(key.replace("_", " "), str(data[key]))
    console.print(table)
    faults = Table(title="faults and recovery (seconds)")
    for column in ("fault", "fired", "recovered", "mean", "max"):
        faults.add_column(column, justify="right" if column != "fault" else "left")
    for fault, count in sorted(report.faults.items()):
        times = data["recovery_seconds"].get(fault, {})
        faults.add_row(
            fault, str(count), str(times.get("count", 0)), str(times.get("mean", "-")), str(times.get("max", "-"))
        )
    console.print(faults)
    if report.liveness is not None:
        budget = report.liveness.budget
        title = "liveness: worst per fault (seconds)" + (f", budget {budget:g} s" if budget is not None else "")
        live = Table(title=title)
        for column in ("fault", "without a master", "completion gap", "verdict"):
            live.add_column(column, justify="right" if column != "fault" else "left")
        for fault, worst in report.liveness.worst().items():
            over = budget is not None and max(worst.values()) > budget
            verdict = "[bold red]over budget[/]" if over else ("[green]ok[/]" if budget is not None else "-")
            live.add_row(fault, f"{worst['without_master_s']:.2f}", f"{worst['completion_gap_s']:.2f}", verdict)
        console.print(live)
    for violation in report.violations[:20]:
        console.print(f"[bold red]violation:[/] {violation}", highlight=False, soft_wrap=True)
    if report.ok:
        console.print("[bold green]no acknowledged task lost, no task completed twice, every fault within budget[/]")
