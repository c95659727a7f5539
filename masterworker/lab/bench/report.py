"""Tables and the optional plot of ``mw bench``."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from masterworker.lab.bench.scenarios import BenchResult
from masterworker.system.errors import MasterworkerError


def render(console: Console, result: BenchResult) -> None:
    if result.figures:
        table = Table(title=f"mw bench {result.scenario}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in result.figures.items():
            if key == "spread":
                for figure, spread in value.items():
                    if spread:
                        table.add_row(f"{figure.replace('_', ' ')} (min-max)", f"{spread['min']} - {spread['max']}")
            elif key == "conditions":
                table.add_row(key, ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items()))
            elif key not in ("each_round", "cpu_ms_per_task_by_process"):
                table.add_row(key.replace("_", " "), str(value))
        console.print(table)
    by_process = result.figures.get("cpu_ms_per_task_by_process")
    if by_process:
        cpu = Table(title="CPU-ms per task, by process (median of the rounds)")
        cpu.add_column("process")
        cpu.add_column("ms/task", justify="right")
        for name, ms in sorted(by_process.items()):
            cpu.add_row(name, "n/a" if ms is None else f"{ms:.3f}")
        console.print(cpu)
    if result.cpu:
        cpu = Table(title="CPU seconds during the run")
        cpu.add_column("process")
        cpu.add_column("seconds", justify="right")
        for name, seconds in sorted(result.cpu.items()):
            cpu.add_row(name, f"{seconds:.2f}")
        console.print(cpu)
    if result.series:
        columns = list(dict.fromkeys(k for row in result.series for k in row))
        table = Table(title=f"mw bench {result.scenario}")
        for column in columns:
            table.add_column(column.replace("_", " "))
        for row in result.series:
            table.add_row(*(str(row.get(c, "")) for c in columns))
        console.print(table)


def plot(result: BenchResult, path: Path) -> None:
    """tasks/s against workers and against backlog, side by side (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MasterworkerError("--plot needs matplotlib: pip install 'masterworker[plot]'") from None
    workers = [r for r in result.series if r["sweep"] == "workers"]
    backlog = [r for r in result.series if r["sweep"] == "backlog"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([r["workers"] for r in workers], [r["tasks_per_s"] for r in workers], marker="o")
    left.set(xlabel="workers", ylabel="tasks/s", title="tasks/s against workers", xscale="log", xticks=[])
    left.set_xticks([r["workers"] for r in workers], [str(r["workers"]) for r in workers])
    right.plot([r["backlog"] for r in backlog], [r["tasks_per_s"] for r in backlog], marker="o")
    right.set(xlabel="pending tasks when workers start", ylabel="tasks/s", title="tasks/s against backlog")
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
