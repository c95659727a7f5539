"""``mw chaos``: fault injection with a history checker (local processes; see compose/ for docker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from masterworker.cli.common import DEFAULTS, LogLevel, console, err_console, friendly_errors, setup
from masterworker.lab.chaos.liveness import DEFAULT_MARGIN
from masterworker.lab.chaos.nemesis import FAULTS
from masterworker.lab.chaos.picture import require_matplotlib
from masterworker.lab.chaos.run import BREAKS, ChaosConfig, LocalChaosRun, render, run_docker
from masterworker.system.errors import BadInput


@friendly_errors
def chaos_command(
    duration: Annotated[
        float, typer.Option("--duration", help="Seconds of faults (every fault fires at least once).")
    ] = 60.0,
    rate: Annotated[float, typer.Option("--rate", help="Tasks submitted per second.")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the order and the victims of the faults.")] = 1,
    faults: Annotated[str, typer.Option("--faults", help=f"Comma-separated, from: {', '.join(FAULTS)}.")] = ",".join(
        FAULTS
    ),
    breaks: Annotated[
        str | None,
        typer.Option(
            "--break",
            help=f"Teaching switch: break a guarantee on purpose ({', '.join(BREAKS)}) and watch the checker catch it.",
        ),
    ] = None,
    session_timeout: Annotated[float, typer.Option("--session-timeout", help="Sessions of masters and workers.")] = 2.0,
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", help="Where history, logs and report go (default: a new temporary directory)."),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="local (processes on this machine) or docker (the containers of compose/, from its chaos service).",
        ),
    ] = "local",
    zk: Annotated[
        str, typer.Option("--zk", envvar="MW_ZK", help="With --backend docker: the ensemble.")
    ] = "zk1:2181,zk2:2181,zk3:2181",
    liveness_margin: Annotated[
        float,
        typer.Option(
            "--liveness-margin",
            help="Seconds on top of the session timeout: the longest a healable fault may leave the system "
            "without a master or without a completion before the run fails.",
        ),
    ] = DEFAULT_MARGIN,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write the history, a picture of the run (chaos.png) and a page (index.html) into this directory "
            "(needs matplotlib: pip install 'masterworker\\[plot]').",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    log_level: LogLevel = "ERROR",
) -> None:
    """Run masters, workers and a 3-server ensemble locally; break them while tasks flow; check the history.

    Exit code 0 when no acknowledged task was lost, none was completed twice and no fault left the
    system without a master or without progress for longer than the budget; 1 otherwise.
    """
    setup(DEFAULTS["zk"], session_timeout, log_level, False)
    chosen = tuple(f.strip() for f in faults.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FAULTS]
    if not chosen or unknown:
        raise BadInput(f"unknown fault(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(FAULTS)}")
    if breaks is not None and breaks not in BREAKS:
        raise BadInput(f"unknown --break {breaks!r}: choose from {', '.join(BREAKS)}")
    if duration <= 0 or rate <= 0 or rate > 500:
        raise BadInput("--duration must be positive and --rate between 0 and 500 tasks/s")
    if session_timeout < 1:
        raise BadInput("--session-timeout must be at least 1 second (ZooKeeper's minimum)")
    if liveness_margin < 0:
        raise BadInput("--liveness-margin must not be negative")
    if report_dir is not None:
        require_matplotlib()
        if report_dir.exists() and not report_dir.is_dir():
            raise BadInput(f"--report {report_dir}: not a directory")
    config = ChaosConfig(
        duration=duration,
        rate=rate,
        seed=seed,
        faults=chosen,
        session_timeout=session_timeout,
        breaks=breaks,
        run_dir=run_dir,
        liveness_margin=liveness_margin,
        report_dir=report_dir,
    )
    if backend not in ("local", "docker"):
        raise BadInput(f"unknown --backend {backend!r}: choose local or docker")
    out = err_console if as_json else console
    if backend == "docker":
        if breaks:
            raise BadInput("--break is for the local backend (it starts the workers itself)")
        report = run_docker(config, out, zk)
        where = config.run_dir or "/run/mw"
    else:
        run = LocalChaosRun(config, out)
        report = run.run()
        where = run.run_dir
    if as_json:
        console.print_json(json.dumps(report.as_dict() | {"run_dir": str(where)}))
    else:
        render(console, report)
        console.print(f"history, logs and report.json in {where}", highlight=False)
        if report_dir is not None:
            console.print(f"picture of the run: {report_dir / 'chaos.png'} (and {report_dir / 'index.html'})")
    raise typer.Exit(0 if report.ok else 1)
