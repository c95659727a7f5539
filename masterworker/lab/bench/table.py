"""``mw bench table``: the README's performance table, measured again in one window, as Markdown.

Every row starts a system of its own (a fresh ZooKeeper, 1 master, 3 workers with 2 slots),
warms it up, and measures 3 rounds (``scenarios.throughput``). The rows run one after another
within minutes, so their *ratios* to the first row hold on a shared machine even when the
absolute rates move with the load; the conditions line says what the machine was doing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from masterworker.lab.bench import scenarios

ROWS: list[tuple[str, dict[str, Any]]] = [
    ("`mw bench throughput` (collecting client, defaults)", {}),
    ("`mw bench throughput --submit batch`", {"submit": "batch"}),
    ("`mw bench throughput --client book` (the book client's operations)", {"client": "book"}),
    ("`mw bench throughput --client count` (counts, collects nothing)", {"client": "count"}),
    ("`mw bench exec` (`/bin/true`, collecting client, defaults)", {"name": "exec"}),
]


def measure(
    zk: str | None, tasks: int, warmup: int, rounds: int, progress: Callable[[str], None] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for label, options in ROWS:
        if progress:
            progress(label)
        if options.get("name") == "exec":
            result = scenarios.exec_tasks(zk, tasks, warmup=warmup, rounds=rounds)
        else:
            result = scenarios.throughput(zk, tasks, warmup=warmup, rounds=rounds, **options)
        rows.append((label, result.figures))
    return rows


def _range(spread: dict[str, float] | None, digits: int) -> str:
    if not spread:
        return "n/a"
    form = f"{{:,.{digits}f}}"
    return f"{form.format(spread['median'])} ({form.format(spread['min'])}-{form.format(spread['max'])})"


def markdown(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """The table, medians with (min-max) over the rounds, and the conditions of the first row."""
    first = rows[0][1]["tasks_per_s"] or 1
    lines = [
        "| what ran | tasks/s, median (min-max) | ratio to the first row | ZooKeeper requests/task "
        "| CPU-ms/task, all processes | of which ZooKeeper |",
        "|---|---|---|---|---|---|",
    ]
    for label, f in rows:
        zookeeper = f["cpu_ms_per_task_by_process"].get("zookeeper")
        lines.append(
            f"| {label} | {_range(f['spread']['tasks_per_s'], 0)} | {f['tasks_per_s'] / first:.2f}x "
            f"| {_range(f['spread']['requests_per_task'], 2)} | {_range(f['spread']['cpu_ms_per_task'], 2)} "
            f"| {'n/a' if zookeeper is None else f'{zookeeper:.2f}'} |"
        )
    c = rows[0][1]["conditions"]
    f = rows[0][1]
    lines.append("")
    lines.append(
        f"Conditions: {c['cores']} cores ({c.get('cpu', '?')}), "
        f"load average {c['load_average_at_start']} at the start; "
        f"Python {c['python']}, kazoo {c['kazoo']}, ZooKeeper {c['zookeeper']} standalone, masterworker "
        f"{c['masterworker']}; 1 master, {f['workers']} workers x {f['slots']} slots, worker prefetch "
        f"{f['prefetch']}; {f['tasks']:,} tasks at once per round, {f['rounds']} rounds per row, "
        f"{'warm (' + format(c['warmup_tasks'], ',') + ' tasks first, unmeasured)' if c['warm'] else 'cold'}; "
        "CPU from /proc over each round only, requests from mntr."
    )
    return "\n".join(lines)
