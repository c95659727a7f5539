"""``mw bench``: throughput, latency, failover, orphan recovery and scale, measured."""

from __future__ import annotations

import enum
import ipaddress
import json
import socket
from pathlib import Path
from typing import Annotated

import typer
from kazoo.hosts import collect_hosts

from masterworker.cli.common import LogLevel, console, err_console, friendly_errors, setup
from masterworker.lab.bench import scenarios, table, versus
from masterworker.lab.bench.book_system import book_java
from masterworker.lab.bench.report import plot, render
from masterworker.system.connection import validate_hosts
from masterworker.system.errors import BadInput
from masterworker.system.masters import Impl


class Scenario(enum.StrEnum):
    throughput = "throughput"
    exec = "exec"
    latency = "latency"
    failover = "failover"
    orphans = "orphans"
    scale = "scale"
    table = "table"
    versus_book = "versus-book"


class SystemKind(enum.StrEnum):
    mw = "mw"
    book = "book"


class ClientMode(enum.StrEnum):
    collect = "collect"
    book = "book"
    book_java = "book-java"
    count = "count"


class SubmitMode(enum.StrEnum):
    single = "single"
    batch = "batch"


def whole_numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter("comma-separated whole numbers, e.g. 1,2,4") from None


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
    scenario: Annotated[Scenario, typer.Argument(help="What to measure.")],
    tasks: Annotated[
        int | None, typer.Option("--tasks", min=1, max=100_000, help="How many tasks (each scenario has a default).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Workers (throughput, exec).")] = 3,
    submit: Annotated[
        SubmitMode,
        typer.Option("--submit", help="single: one create request per task; batch: 100 tasks per multi-op request."),
    ] = SubmitMode.single,
    prefetch: Annotated[
        int | None,
        typer.Option(
            "--prefetch", min=0, max=1024, help="Start workers with --prefetch N (default: the worker's own default)."
        ),
    ] = None,
    client: Annotated[
        ClientMode,
        typer.Option(
            "--client",
            help="throughput, exec: collect (what mw submit --file does: wait for every result, read and delete it); "
            "book (the book's Java client's operations: create, exists watch, get, delete per task); "
            "book-java (the book's own Client class in a JVM: needs --book-classpath); "
            "count (count /status children, collect nothing). "
            "versus-book: book-java drives both systems with it; otherwise book and collect.",
        ),
    ] = ClientMode.collect,
    system: Annotated[
        SystemKind,
        typer.Option(
            "--system",
            help="throughput: mw, or book (the book's Java system: 1 master, 1 backup, the workers; "
            "needs --book-classpath).",
        ),
    ] = SystemKind.mw,
    book_classpath: Annotated[
        str | None,
        typer.Option(
            "--book-classpath",
            envvar="MW_BOOK_CLASSPATH",
            help="The book's compiled classes and their jars (tools/book-example.sh prints it); "
            "for --system book and versus-book.",
        ),
    ] = None,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, max=20, help="throughput, exec, table: measured rounds (min/median/max).")
    ] = 3,
    warmup: Annotated[
        int | None,
        typer.Option(
            "--warmup",
            min=0,
            max=100_000,
            help="throughput, exec: tasks run first, unmeasured, so that ZooKeeper's JIT is warm "
            "(default: as many as --tasks; 0 measures a cold start).",
        ),
    ] = None,
    session_timeout: Annotated[float, typer.Option("--session-timeout", min=1, help="failover, orphans.")] = 5.0,
    worker_counts: Annotated[
        str, typer.Option("--worker-counts", callback=whole_numbers, help="scale: the workers sweep.")
    ] = "1,2,4,8,16,32",
    backlogs: Annotated[
        str, typer.Option("--backlogs", callback=whole_numbers, help="scale: the backlog sweep.")
    ] = "1000,5000,10000,20000",
    impl: Annotated[Impl, typer.Option("--impl", help="failover: which master.")] = Impl.default,
    zk: Annotated[
        str | None,
        typer.Option(
            "--zk",
            help="Use this (loopback) ZooKeeper instead of an embedded one; the bench works under a chroot of its own.",
        ),
    ] = None,
    plot_file: Annotated[Path | None, typer.Option("--plot", help="scale: draw tasks/s into this PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    as_markdown: Annotated[
        bool, typer.Option("--markdown", help="table: print the README's performance table (the default for table).")
    ] = False,
    log_level: LogLevel = "ERROR",
) -> None:
    """Measure masterworker on this machine: mw bench throughput --tasks 1000 --submit batch.

    throughput and exec report tasks/s, ZooKeeper requests per task and CPU-ms per task (each
    process and in all, ZooKeeper included), min/median/max over --rounds, and the conditions.
    mw bench table measures the README's performance table again and prints it as Markdown;
    mw bench versus-book measures mw side by side with the book's Java system, rounds alternating.
    """
    setup("127.0.0.1:2181", session_timeout, log_level, False)
    if zk is not None:
        loopback_only(zk)
    if plot_file is not None and scenario is not Scenario.scale:
        raise BadInput("--plot goes with the scale scenario")
    first_round = (tasks or 1000) if warmup is None else warmup  # throughput, exec: unmeasured tasks
    if system is SystemKind.book or scenario is Scenario.versus_book:
        if scenario not in (Scenario.throughput, Scenario.versus_book):
            raise BadInput("--system book goes with throughput (and versus-book)")
        if zk is not None:
            raise BadInput("the book's system runs on the bench's own ZooKeeper (absolute paths, no chroot): drop --zk")
        book_java(book_classpath)  # one line on what is missing, before anything starts
    if client is ClientMode.book_java:
        if scenario not in (Scenario.throughput, Scenario.versus_book):
            raise BadInput("--client book-java goes with throughput (and versus-book)")
        book_java(book_classpath, "BookDriver", "--client book-java")
    if scenario is Scenario.versus_book:
        say = lambda label: err_console.print(f"measuring {label}", highlight=False)  # noqa: E731
        clients = ("book-java",) if client is ClientMode.book_java else versus.PYTHON_CLIENTS
        run = versus.measure(book_classpath, tasks or 1000, first_round, rounds, say, clients)
        if as_json:
            console.print_json(json.dumps(run))
        else:
            console.out(versus.markdown(run), highlight=False)
        return
    if scenario is Scenario.table:
        say = lambda label: err_console.print(f"measuring {label}", highlight=False)  # noqa: E731
        rows = table.measure(zk, tasks or 1000, first_round, rounds, say)
        if as_json:
            console.print_json(json.dumps([{"row": label, **figures} for label, figures in rows]))
        else:
            console.out(table.markdown(rows), highlight=False)
        return
    run = {
        Scenario.throughput: lambda: scenarios.throughput(
            zk, tasks or 1000, workers, submit.value, prefetch=prefetch, warmup=first_round,
            client=client.value, rounds=rounds, system_kind=system.value, book_classpath=book_classpath,
        ),
        Scenario.exec: lambda: scenarios.exec_tasks(
            zk, tasks or 1000, workers, prefetch=prefetch, warmup=first_round, client=client.value, rounds=rounds
        ),
        Scenario.latency: lambda: scenarios.latency(zk, tasks or 200),
        Scenario.failover: lambda: scenarios.failover(zk, session_timeout, impl.value),
        Scenario.orphans: lambda: scenarios.orphans(zk, tasks or 300, session_timeout),
        Scenario.scale: lambda: scenarios.scale(zk, worker_counts, tasks or 2000, backlogs),  # tuples (callback)
    }  # fmt: skip
    result = run[scenario]()
    if plot_file is not None:
        plot(result, plot_file)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        render(console, result)
