"""``mw status``: the book's admin view (ch. 3): master, workers, assignments, pending, done."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from masterworker.admin import system_view
from masterworker.cli.common import (
    DEFAULTS,
    Auth,
    LogJson,
    LogLevel,
    SessionTimeout,
    ZkHosts,
    console,
    friendly_errors,
    setup,
)
from masterworker.connection import close_quietly, connect


def render(view: dict[str, Any]) -> None:
    console.print(f"active master: [bold]{view['master'] or '(none: backups are running for it)'}[/]", highlight=False)
    workers = Table(title=f"workers ({len(view['workers'])})")
    for column in ("worker", "slots", "assigned"):
        workers.add_column(column)
    for worker, info in view["workers"].items():
        workers.add_row(worker, str(info["slots"]), ", ".join(info["assigned"]) or "-")
    console.print(workers)
    for worker, tasks in view["orphaned"].items():
        console.print(f"[yellow]{worker} is gone; a master will reassign: {', '.join(tasks)}[/]", highlight=False)
    console.print(
        f"pending tasks: {len(view['pending'])}"
        + (
            f" ({', '.join(view['pending'][:5])}" + (", ..." if len(view["pending"]) > 5 else "") + ")"
            if view["pending"]
            else ""
        ),
        highlight=False,
    )
    done = Table(title=f"finished, not yet collected ({len(view['done'])})")
    for column in ("task", "state", "exit code", "worker"):
        done.add_column(column)
    for task, info in list(view["done"].items())[:50]:
        colour = "green" if info["state"] == "done" else "red"
        done.add_row(task, f"[{colour}]{info['state']}[/]", str(info["exit_code"]), info["worker"] or "-")
    console.print(done)


@friendly_errors
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the view as JSON.")] = False,
    zk: ZkHosts = DEFAULTS["zk"],
    session_timeout: SessionTimeout = DEFAULTS["session_timeout"],
    auth: Auth = None,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Show the system as ZooKeeper holds it: active master, workers and their tasks, queue, results."""
    settings = setup(zk, session_timeout, log_level, log_json, auth=auth)
    client = connect(settings)
    try:
        view = system_view(client)
    finally:
        close_quietly(client)
    if as_json:
        console.print_json(json.dumps(view))
    else:
        render(view)
