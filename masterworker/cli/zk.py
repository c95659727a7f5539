"""``mw zk``: start a local ZooKeeper and look at servers (book chapters 9 and 10)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from kazoo.hosts import collect_hosts
from rich import box
from rich.table import Table

from masterworker.cli.common import (
    DEFAULTS,
    LogJson,
    LogLevel,
    ZkHosts,
    command_group,
    console,
    fail,
    friendly_errors,
    setup,
)
from masterworker.errors import BadInput
from masterworker.zk.fourletter import server_facts
from masterworker.zk.server import LocalZooKeeper

app = command_group("Run a local ZooKeeper (standalone or an ensemble) and look at its servers.")


@app.command("start")
@friendly_errors
def start(
    servers: Annotated[int, typer.Option("--servers", "-n", help="1 (standalone), 3 or 5 (an ensemble).")] = 1,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Client port of the first server (the next ones count up). Default: free ports."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Keep the data here (default: a temporary directory, removed at exit)."),
    ] = None,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Start ZooKeeper on 127.0.0.1 in the foreground; print the connect string; Ctrl-C stops it."""
    setup(DEFAULTS["zk"], DEFAULTS["session_timeout"], log_level, log_json, role="zk")
    if servers not in (1, 3, 5):
        raise BadInput(f"--servers must be 1, 3 or 5, not {servers}")
    if port is not None and not 0 < port < 65536 - servers:
        raise BadInput(f"--port {port} is not a usable port")
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    zk = LocalZooKeeper(servers=servers, data_dir=data_dir, client_port=port)
    zk.start()
    try:
        kind = "standalone server" if servers == 1 else f"ensemble of {servers} servers"
        console.print(f"ZooKeeper {kind} running; data in {zk.data_dir}")
        console.print(zk.connect_string, highlight=False, soft_wrap=True)
        console.print(
            f"[dim]export MW_ZK={zk.connect_string}   # then try: mw zk status[/]",
            highlight=False,
            soft_wrap=True,
        )
        while not stopping.wait(0.5):
            pass
    finally:
        zk.stop()
        console.print("ZooKeeper stopped")


def _serving(host: str, port: int) -> bool:
    try:
        return server_facts(host, port)["mode"] in ("standalone", "leader", "follower", "observer")
    except OSError:
        return False


@app.command("status")
@friendly_errors
def status(
    zk: ZkHosts = DEFAULTS["zk"],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    wait: Annotated[
        float, typer.Option("--wait", help="Wait up to this many seconds for a server to serve (for scripts).")
    ] = 0.0,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Ask each server of --zk (four-letter words srvr and mntr): mode, zxid, connections, znodes, outstanding
    requests, latency, watches."""
    setup(zk, DEFAULTS["session_timeout"], log_level, log_json)
    hosts, _chroot = collect_hosts(zk)
    deadline = time.monotonic() + wait
    while wait > 0 and time.monotonic() < deadline and not any(_serving(h, p) for h, p in hosts):
        time.sleep(0.1)
    report = {}
    for host, port in hosts:
        try:
            report[f"{host}:{port}"] = server_facts(host, port)
        except OSError:
            report[f"{host}:{port}"] = {"mode": "down", "zxid": None, "connections": None, "znodes": None}
    if as_json:
        console.print_json(json.dumps(report))
    else:
        table = Table(title="ZooKeeper servers", box=box.SIMPLE, collapse_padding=True, pad_edge=False)
        headers = {
            "mode": "mode",
            "zxid": "zxid",
            "connections": "conns",
            "znodes": "znodes",
            "outstanding_requests": "queued",
            "avg_latency_ms": "lat ms",
            "watches": "watches",
        }
        columns = tuple(headers)
        table.add_column("server", no_wrap=True)
        for column in columns:
            table.add_column(headers[column], no_wrap=True)
        for address, facts in report.items():
            table.add_row(address, *(str(facts[k]) if facts.get(k) is not None else "-" for k in columns))
        console.print(table)
    if all(f["mode"] == "down" for f in report.values()):
        raise fail(f"no ZooKeeper server answered at {zk}", 1)
