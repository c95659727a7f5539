"""The live view of a running system: ``mw status --watch`` and the panel ``mw demo`` shows.

Everything comes from ZooKeeper each refresh. Tasks/s needs no counter of our own: ``/status``'s
``cversion`` counts its children created plus deleted, and ``numChildren`` is created minus
deleted, so completions so far = (cversion + numChildren) / 2.
"""

from __future__ import annotations

import time
from typing import Any

from kazoo.client import KazooClient
from rich.console import Group
from rich.table import Table
from rich.text import Text

from masterworker.system.admin import describe_masters
from masterworker.system.protocol import STATUS

BACKLOG_WARNING = 0.8  # warn when the pending tasks reach this share of the backlog cap


class RateMeter:
    """Completed tasks per second between two looks at /status."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None
        self.rate: float | None = None

    def update(self, client: KazooClient) -> float | None:
        stat = client.exists(STATUS)
        if stat is None:
            return None
        completed, now = (stat.cversion + stat.numChildren) // 2, time.monotonic()
        if self._last is not None and now > self._last[0]:
            self.rate = (completed - self._last[1]) / (now - self._last[0])
        self._last = (now, completed)
        return self.rate


def backlog_warning(pending: int, cap: int) -> str | None:
    if pending >= BACKLOG_WARNING * cap:
        return f"backlog: {pending:,} tasks pending, the submit cap is {cap:,}"
    return None


def render(view: dict[str, Any], rate: float | None, cap: int) -> Group:
    running = sum(len(w["assigned"]) for w in view["workers"].values())
    header = Text.assemble(
        (describe_masters(view, brief=True), "green" if view["master"] else "red"),
        f"   workers: {len(view['workers'])}   pending: {len(view['pending']):,}   assigned: {running:,}   ",
        ("tasks/s: ", "bold"), "-" if rate is None else f"{rate:,.1f}",
    )  # fmt: skip
    workers = Table(title="workers", expand=False)
    for column in ("worker", "slots", "load", "assigned"):
        workers.add_column(column)
    for name, info in view["workers"].items():
        load = len(info["assigned"])
        bar = "█" * min(load, 20) + "·" * max(0, min(info["slots"], 20) - load)
        workers.add_row(name, str(info["slots"]), bar, str(load))
    parts: list[Any] = [header, workers]
    failed = [(t, s) for t, s in view["done"].items() if s["state"] == "failed"][-5:]
    if failed:
        parts.append(
            Text("recent failures: " + ", ".join(f"{t} (exit {s['exit_code']})" for t, s in failed), style="red")
        )
    for worker, tasks in view["orphaned"].items():
        parts.append(Text(f"{worker} is gone; {len(tasks)} task(s) wait for reassignment", style="yellow"))
    warning = backlog_warning(len(view["pending"]), cap)
    if warning:
        parts.append(Text(warning, style="bold yellow"))
    return Group(*parts)
