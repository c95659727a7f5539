"""``mw demo``: the book's example end to end, with a master and a worker killed midway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masterworker.cli.common import DEFAULTS, LogLevel, console, friendly_errors, setup
from masterworker.lab.demo import Demo, render_report
from masterworker.system.errors import BadInput


@friendly_errors
def demo_command(
    tasks: Annotated[int, typer.Option("--tasks", help="How many tasks to submit.")] = 30,
    workers: Annotated[int, typer.Option("--workers", help="How many workers (2 slots each).")] = 3,
    session_timeout: Annotated[
        float, typer.Option("--session-timeout", help="Seconds; the takeover waits this long after the kill.")
    ] = 3.0,
    log_dir: Annotated[Path | None, typer.Option("--log-dir", help="Keep every process's log here.")] = None,
    log_level: LogLevel = "WARNING",
) -> None:
    """Start ZooKeeper, 2 masters and 3 workers; submit tasks; kill -9 the master and a busy worker.

    Exits 0 only when every task finished exactly once.
    """
    setup(DEFAULTS["zk"], session_timeout, log_level, False)
    if tasks < 4:
        raise BadInput(f"--tasks must be at least 4 (to kill things midway), not {tasks}")
    if workers < 2:
        raise BadInput(f"--workers must be at least 2 (one of them is killed), not {workers}")
    if session_timeout < 1:
        raise BadInput(f"--session-timeout must be at least 1 second (ZooKeeper's minimum), not {session_timeout:g}")
    try:
        report = Demo(console, tasks=tasks, workers=workers, session_timeout=session_timeout, log_dir=log_dir).run()
    except TimeoutError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        raise typer.Exit(1) from None
    render_report(console, report)
    raise typer.Exit(0 if report.exactly_once else 1)
