"""What a measured round cost, and the conditions it ran in: plain arithmetic over two snapshots.

A rate alone says little on a shared 2-core machine (the same run moves by half from one hour to
the next); what each task cost does not move as much. A ``Snapshot`` is taken just before and
just after a round: the server's request counter (``mntr`` ``zk_packets_received``, summed over
the servers), each process's CPU time from ``/proc/<pid>/stat`` (user + system, plus that of
children it has waited for: a worker's task processes; and of its live children: its reaper),
and the clock. ``round_costs`` turns two snapshots into per-task figures; ``spread`` gives min,
median and max over rounds.
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, alive_too: bool = False) -> float:
    """User plus system CPU of one process so far, with its waited-for children's; ``alive_too``: and
    that of its children still alive, recursively (a worker's reaper lives as long as the worker).
    Not for the bench's own process: its children are the system it measures."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the ")": state is fields[0], so utime, stime, cutime, cstime are fields 11 to 14
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS
    return own + (sum(cpu_seconds(child, True) for child in live_children(pid)) if alive_too else 0.0)


def live_children(pid: int) -> list[int]:
    """The children of ``pid`` that are alive now (``/proc/<pid>/task/<tid>/children``)."""
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return children


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic()
    requests: int | None  # None: the server's counters could not be read
    cpu: dict[str, float] = field(default_factory=dict)  # process name -> CPU seconds so far


def round_costs(before: Snapshot, after: Snapshot, tasks: int) -> dict[str, Any]:
    """tasks/s, ZooKeeper requests per task and CPU-ms per task (each process, and all together)."""
    seconds = after.at - before.at
    per_process = {
        name: round(1000 * (after.cpu[name] - before.cpu.get(name, 0.0)) / tasks, 3)
        for name in sorted(after.cpu)
        if name in before.cpu
    }
    requests = None
    if before.requests is not None and after.requests is not None:
        requests = round((after.requests - before.requests) / tasks, 3)
    return {
        "tasks_per_s": round(tasks / seconds, 1) if seconds > 0 else None,
        "requests_per_task": requests,
        "cpu_ms_per_task": round(sum(per_process.values()), 3),
        "cpu_ms_per_task_by_process": per_process,
    }


def spread(values: list[float | None]) -> dict[str, float] | None:
    """min, median and max of the rounds' values (None when a value is missing)."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {"min": min(known), "median": round(statistics.median(known), 3), "max": max(known)}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians as the headline figures, the spread beside them, and each process's median cost."""
    keys = ("tasks_per_s", "requests_per_task", "cpu_ms_per_task")
    summary: dict[str, Any] = {key: (spread([r[key] for r in rounds]) or {}).get("median") for key in keys}
    summary["spread"] = {key: spread([r[key] for r in rounds]) for key in keys}
    names = sorted({name for r in rounds for name in r["cpu_ms_per_task_by_process"]})
    summary["cpu_ms_per_task_by_process"] = {
        name: (spread([r["cpu_ms_per_task_by_process"].get(name) for r in rounds]) or {}).get("median")
        for name in names
    }
    return summary


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The processor as Linux names it, with its clock: two machines "of the same kind" may differ."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return "?"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    model = fields.get("model name", "?")
    try:
        return f"{model} at {float(fields['cpu MHz']) / 1000:.1f} GHz"
    except (KeyError, ValueError):
        return model


def conditions(zookeeper_version: str | None, warmup: int) -> dict[str, Any]:
    """What a figure depends on besides the code: the machine, its load when the run began, versions."""
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "kazoo": _version("kazoo"),
        "masterworker": _version("masterworker"),
        "zookeeper": zookeeper_version or "?",
        "warm": warmup > 0,
        "warmup_tasks": warmup,
    }
