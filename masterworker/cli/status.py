"""``mw status``: the book's admin view (ch. 3): master, workers, assignments, pending, done."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from typing import Annotated, Any

import typer
from kazoo.exceptions import ConnectionLoss
from rich.live import Live
from rich.table import Table
from rich.text import Text

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
from masterworker.lab.live import RateMeter, backlog_warning
from masterworker.lab.live import render as render_live
from masterworker.system.admin import describe_masters, system_view
from masterworker.system.client import DEFAULT_BACKLOG_CAP
from masterworker.system.connection import close_quietly, connect
from masterworker.system.errors import BadInput
from masterworker.system.zkops import RECOVERABLE

SHOWN_DONE = 50  # rows of finished records a terminal shows; --json has every one


def render(view: dict[str, Any]) -> None:
    console.print(describe_masters(view), highlight=False)
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
    for task, info in list(view["done"].items())[:SHOWN_DONE]:
        colour = "red" if info["state"] == "failed" else "green"
        exit_code = "-" if info["exit_code"] is None else str(info["exit_code"])
        done.add_row(task, f"[{colour}]{info['state']}[/]", exit_code, info["worker"] or "-")
    console.print(done)
    if len(view["done"]) > SHOWN_DONE:
        console.print(
            f"... and {len(view['done']) - SHOWN_DONE} more (mw status --json lists them all)", highlight=False
        )


@friendly_errors
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the view as JSON.")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Refresh in place until Ctrl-C: master, workers "
            "and their load, queue depth, tasks/s, recent failures.",
        ),
    ] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes with --watch.")] = 1.0,
    backlog_cap: Annotated[
        int, typer.Option("--backlog-cap", envvar="MW_BACKLOG_CAP", help="Warn as the pending tasks near this cap.")
    ] = DEFAULT_BACKLOG_CAP,
    zk: ZkHosts = DEFAULTS["zk"],
    session_timeout: SessionTimeout = DEFAULTS["session_timeout"],
    auth: Auth = None,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Show the system as ZooKeeper holds it: active master, workers and their tasks, queue, results."""
    settings = setup(zk, session_timeout, log_level, log_json, auth=auth)
    if interval <= 0:
        raise BadInput(f"--interval must be positive, not {interval:g}")
    client = connect(settings)
    try:
        if watch:
            watch_system(client, interval, backlog_cap)
            return
        view = system_view(client)
    finally:
        close_quietly(client)
    if as_json:
        console.print_json(json.dumps(view))
    else:
        render(view)
        warning = backlog_warning(len(view["pending"]), backlog_cap)
        if warning:
            console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)


def watch_system(client, interval: float, cap: int) -> None:  # noqa: ANN001
    """Refresh in place (rich Live) until Ctrl-C or SIGTERM.

    A signal during a look breaks the look off: a look whose server went away meanwhile waits
    for one (kazoo holds the request), and the signal would only have been noted for later."""
    stop = threading.Event()
    looking = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        if looking.is_set():
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    meter = RateMeter()
    with contextlib.suppress(KeyboardInterrupt), Live(console=console, auto_refresh=False, transient=False) as live:
        while not stop.is_set():
            try:
                if not client.connected:  # a look now would wait for a server
                    raise ConnectionLoss()
                looking.set()
                try:
                    view = system_view(client)
                    rates = meter.update(client)
                finally:
                    looking.clear()
                live.update(render_live(view, rates, cap), refresh=True)
            except RECOVERABLE:
                live.update(Text("no ZooKeeper server answers: reconnecting...", style="red"), refresh=True)
            stop.wait(interval)
