"""``mw bench``: throughput, latency, failover, orphan recovery and scale, measured."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path
from typing import Annotated

import typer
from kazoo.hosts import collect_hosts

from masterworker.bench import scenarios
from masterworker.bench.report import plot, render
from masterworker.cli.common import LogLevel, console, friendly_errors, setup
from masterworker.connection import validate_hosts
from masterworker.errors import BadInput

SCENARIOS = ("throughput", "exec", "latency", "failover", "orphans", "scale")


def loopback_only(hosts: str) -> None:
    """Benchmarks send load only to this machine (127.0.0.0/8 or ::1)."""
    validate_hosts(hosts)
    for host, _port in collect_hosts(hosts)[0]:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            raise BadInput(f"cannot resolve {host}") from None
        if not address.is_loopback:
            raise BadInput(f"mw bench only runs against ZooKeeper on this machine (loopback), not {host}")


@friendly_errors
def bench_command(
    scenario: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCENARIOS)}.")],
    tasks: Annotated[int | None, typer.Option("--tasks", help="How many tasks (each scenario has a default).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Workers (throughput, exec).")] = 3,
    submit: Annotated[
        str,
        typer.Option("--submit", help="single: one create request per task; batch: 100 tasks per multi-op request."),
    ] = "single",
    prefetch: Annotated[int | None, typer.Option("--prefetch", help="Tasks a worker holds beyond its slots.")] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            "--warmup",
            help="throughput, exec: tasks run first, unmeasured, so that ZooKeeper's JIT is warm "
            "(default: as many as --tasks; 0 measures a cold start).",
        ),
    ] = None,
    session_timeout: Annotated[float, typer.Option("--session-timeout", help="failover, orphans.")] = 5.0,
    worker_counts: Annotated[str, typer.Option("--worker-counts", help="scale: the workers sweep.")] = "1,2,4,8,16,32",
    backlogs: Annotated[str, typer.Option("--backlogs", help="scale: the backlog sweep.")] = "1000,5000,10000,20000",
    impl: Annotated[str, typer.Option("--impl", help="failover: which master (default, async, recipes).")] = "default",
    zk: Annotated[
        str | None,
        typer.Option(
            "--zk",
            help="Use this (loopback) ZooKeeper instead of an embedded one; the bench works under a chroot of its own.",
        ),
    ] = None,
    plot_file: Annotated[Path | None, typer.Option("--plot", help="scale: draw tasks/s into this PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    log_level: LogLevel = "ERROR",
) -> None:
    """Measure masterworker on this machine: mw bench throughput --tasks 1000 --submit batch.

    Targets (2 cores, 1 master, 3 workers): trivial tasks 1,500/s single, 5,000/s batched;
    /bin/true 700/s; SIGTERM failover < 1 s; 300 orphans done within 1 s of the expiry.
    """
    setup("127.0.0.1:2181", session_timeout, log_level, False)
    if scenario not in SCENARIOS:
        raise BadInput(f"unknown scenario {scenario!r}: choose from {', '.join(SCENARIOS)}")
    if submit not in ("single", "batch"):
        raise BadInput("--submit must be single or batch")
    if tasks is not None and not 1 <= tasks <= 100_000:
        raise BadInput("--tasks must be between 1 and 100,000")
    if warmup is not None and not 0 <= warmup <= 100_000:
        raise BadInput("--warmup must be between 0 and 100,000")
    if not 1 <= workers <= 64:
        raise BadInput("--workers must be between 1 and 64")
    if zk is not None:
        loopback_only(zk)
    if impl not in ("default", "async", "recipes"):
        raise BadInput(f"unknown --impl {impl!r}: choose default, async or recipes")
    try:
        counts = tuple(int(x) for x in worker_counts.split(","))
        sizes = tuple(int(x) for x in backlogs.split(","))
    except ValueError:
        raise BadInput("--worker-counts and --backlogs are comma-separated whole numbers") from None
    if plot_file is not None and scenario != "scale":
        raise BadInput("--plot goes with the scale scenario")
    first_round = (tasks or 1000) if warmup is None else warmup  # throughput, exec: unmeasured tasks
    if scenario == "throughput":
        result = scenarios.throughput(
            zk,
            tasks or 1000,
            workers,
            submit,
            prefetch=128 if prefetch is None else prefetch,
            warmup=first_round,
        )
    elif scenario == "exec":
        result = scenarios.exec_tasks(
            zk,
            tasks or 1000,
            workers,
            prefetch=8 if prefetch is None else prefetch,
            warmup=first_round,
        )
    elif scenario == "latency":
        result = scenarios.latency(zk, tasks or 200)
    elif scenario == "failover":
        result = scenarios.failover(zk, session_timeout, impl)
    elif scenario == "orphans":
        result = scenarios.orphans(zk, tasks or 300, session_timeout)
    else:
        result = scenarios.scale(zk, counts, tasks or 2000, sizes)
    if plot_file is not None:
        plot(result, plot_file)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        render(console, result)
