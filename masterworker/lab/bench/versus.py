"""``mw bench versus-book``: mw side by side with the book's Java system, one driver, one window.

Six configurations, each system driven by the same clients (1 master, 1 backup, 3 workers
each): the book's system and mw at its defaults, with the book client's operations and with the
collecting client (what ``mw submit --file`` does; the book's worker writes "done", which it
reads as done), once with one create request per task and once with ``mw submit --file``'s own
default, 100 creates per transaction. Rounds
alternate: cycle after cycle, each configuration gets a fresh system (a fresh ZooKeeper, warmed
up, one measured round), so that a change in the machine's load falls on all four alike. The
ratio mw/book is taken within each cycle (same client, minutes apart) and given as its median
with min-max, beside the ratio of the medians. A round that stalls (the book's worker refuses
tasks past its queue of 200, and a refused task stays in ``/assign`` for ever) is counted, not
measured, and the run goes on.

With ``--client book-java`` both systems are driven by the book's own ``Client`` class in one JVM
(``tools/BookDriver.java``) instead, two configurations per cycle: the issue's own measurement
used the book's Java client, and a Python client's own CPU bounds both systems alike.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import Any

from masterworker.lab.bench import scenarios
from masterworker.lab.bench.costs import summarize

BOOK, MW = "the book's system (Java)", "mw at its defaults"
# Each client of the table: its label, and for throughput() its driver and how it submits.
CLIENTS = {
    "book": ("book client's operations", "book", "single"),
    "collect": ("collecting client, one create per task", "collect", "single"),
    "collect-file": ("collecting client as `mw submit --file` (100 creates per transaction)", "collect", "batch"),
    "book-java": ("the book's Java client (its Client class)", "book-java", "single"),
}
PYTHON_CLIENTS = ("book", "collect", "collect-file")  # the default; ("book-java",) with --client book-java


def label(system: str, client: str) -> str:
    return f"{BOOK if system == 'book' else MW}, {CLIENTS[client][0]}"


def measure(
    classpath: str,
    tasks: int,
    warmup: int,
    rounds: int,
    progress: Callable[[str], None] | None = None,
    clients: tuple[str, ...] = PYTHON_CLIENTS,
) -> dict[str, Any]:
    """``rounds`` cycles of the configurations (each client, each system); per configuration its rounds' figures."""
    configs = [(system, client) for client in clients for system in ("book", "mw")]
    each: dict[tuple[str, str], list[dict[str, Any]]] = {config: [] for config in configs}
    stalled: dict[tuple[str, str], list[str]] = {config: [] for config in configs}
    conditions = None
    for cycle in range(1, rounds + 1):
        for system, client in configs:
            if progress:
                progress(f"cycle {cycle}/{rounds}: {label(system, client)}")
            try:
                _, driver, submit = CLIENTS[client]
                result = scenarios.throughput(
                    None, tasks, submit=submit, warmup=warmup, client=driver, rounds=1, system_kind=system,
                    book_classpath=classpath, backups=1,
                )  # fmt: skip
            except TimeoutError as exc:  # bounded by throughput's own budget per round
                stalled[(system, client)].append(str(exc))
                each[(system, client)].append({})
                continue
            conditions = conditions or result.figures["conditions"]
            each[(system, client)].append(result.figures["each_round"][0])
    rows = []
    for system, client in configs:
        measured = [r for r in each[(system, client)] if r]
        rows.append({
            "system": system, "client": client, "label": label(system, client),
            "rounds": len(measured), "stalled": stalled[(system, client)],
            **(summarize(measured) if measured else {}),
        })  # fmt: skip
    ratios = {}
    for client in clients:
        pairs = zip(each[("mw", client)], each[("book", client)], strict=True)
        per_cycle = [m["tasks_per_s"] / b["tasks_per_s"] for m, b in pairs if m and b]
        ratios[client] = {
            "median": round(statistics.median(per_cycle), 2) if per_cycle else None,
            "min": round(min(per_cycle), 2) if per_cycle else None,
            "max": round(max(per_cycle), 2) if per_cycle else None,
        }
    when = dict(conditions or {}, load_average_at_end=round(os.getloadavg()[0], 2))
    return {
        "tasks": tasks, "warmup": warmup, "rounds": rounds, "clients": list(clients),
        "rows": rows, "ratios": ratios, "conditions": when,
    }  # fmt: skip


def _range(figures: dict[str, Any], key: str, digits: int) -> str:
    spread = (figures.get("spread") or {}).get(key)
    if not spread:
        return "n/a"
    form = f"{{:,.{digits}f}}"
    return f"{form.format(spread['median'])} ({form.format(spread['min'])}-{form.format(spread['max'])})"


def markdown(run: dict[str, Any]) -> str:
    """The side-by-side table with the ratio mw/book per client, and the conditions line."""
    lines = [
        "| what ran | tasks/s, median (min-max) | mw/book, same client, per cycle | ZooKeeper requests/task "
        "| CPU-ms/task, all processes | of which ZooKeeper | stalled rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in run["rows"]:
        ratio = run["ratios"][row["client"]]
        shown = "1.00x" if row["system"] == "book" else "n/a"
        if row["system"] == "mw" and ratio["median"] is not None:
            shown = f"**{ratio['median']:.2f}x** ({ratio['min']:.2f}-{ratio['max']:.2f})"
        zookeeper = (row.get("cpu_ms_per_task_by_process") or {}).get("zookeeper")
        lines.append(
            f"| {row['label']} | {_range(row, 'tasks_per_s', 0)} | {shown} | {_range(row, 'requests_per_task', 2)} "
            f"| {_range(row, 'cpu_ms_per_task', 2)} | {'n/a' if zookeeper is None else f'{zookeeper:.2f}'} "
            f"| {len(row['stalled'])} of {row['rounds'] + len(row['stalled'])} |"
        )
    c = run["conditions"]
    lines.append("")
    lines.append(
        f"Conditions: {c.get('cores')} cores ({c.get('cpu', '?')}), "
        f"load average {c.get('load_average_at_start')} at the start and "
        f"{c.get('load_average_at_end')} at the end; Python {c.get('python')}, kazoo {c.get('kazoo')}, ZooKeeper "
        f"{c.get('zookeeper')} standalone (the book's JVMs on the same jars), masterworker {c.get('masterworker')}; "
        "the book's system: 1 master, 1 backup, 3 workers; mw: 1 master, 1 backup, 3 workers x 2 slots, "
        "no tuning flag; "
        f"{run['tasks']:,} tasks at once per round, {run['rounds']} cycles of its {len(run['rows'])} configurations, "
        "each round a fresh system "
        f"warmed up with {run['warmup']:,} tasks; CPU from /proc over each round only (every process: ZooKeeper, "
        "the JVMs or mw processes, the bench's client), requests from mntr."
    )
    return "\n".join(lines)
