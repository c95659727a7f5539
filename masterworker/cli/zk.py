"""``mw zk``: start a local ZooKeeper and look at servers (book chapters 9 and 10)."""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import replace
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
    notice,
    setup,
)
from masterworker.system.connection import close_quietly, connect
from masterworker.system.errors import BadInput
from masterworker.zk import control
from masterworker.zk.fourletter import server_facts
from masterworker.zk.reconfig import CONFIG_NODE, Reconfigurer, read_membership
from masterworker.zk.server import LocalZooKeeper, ServerStartError

app = command_group("Run a local ZooKeeper (standalone or an ensemble) and look at its servers.")


@app.command("start")
@friendly_errors
def start(
    servers: Annotated[int, typer.Option("--servers", "-n", help="1 (standalone), 3 or 5 (an ensemble).")] = 1,
    observers: Annotated[
        int, typer.Option("--observers", help="Servers that follow without voting (0 to 3), after the voters.")
    ] = 0,
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
    """Start ZooKeeper on 127.0.0.1 in the foreground; print the connect string; Ctrl-C stops it.

    An ensemble can be changed while it runs: mw zk reconfig --data-dir (the same directory)."""
    setup(DEFAULTS["zk"], DEFAULTS["session_timeout"], log_level, log_json, role="zk")
    if servers not in (1, 3, 5):
        raise BadInput(f"--servers must be 1, 3 or 5, not {servers}")
    if not 0 <= observers <= 3:
        raise BadInput(f"--observers must be 0 to 3, not {observers}")
    if port is not None and not 0 < port < 65536 - servers - observers:
        raise BadInput(f"--port {port} is not a usable port")
    if data_dir is not None and control.launcher_pid(data_dir.resolve()) is not None:
        raise BadInput(f"another 'mw zk start' already runs with data directory {data_dir}")
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    zk = LocalZooKeeper(servers=servers, data_dir=data_dir, client_port=port, observers=observers)
    zk.start()
    reconfigurer = Reconfigurer(zk)
    try:
        control.announce(zk)
        kind = "standalone server" if servers + observers == 1 else f"ensemble of {servers} server"
        kind += "s" if servers > 1 else ""
        kind += f" and {observers} observer{'s' if observers > 1 else ''}" if observers else ""
        console.print(f"ZooKeeper {kind} running; data in {zk.data_dir}")
        console.print(zk.connect_string, highlight=False, soft_wrap=True)
        console.print(
            f"[dim]export MW_ZK={zk.connect_string}   # then try: mw zk status[/]",
            highlight=False,
            soft_wrap=True,
        )
        exited: set[int] = set()
        while not stopping.wait(0.5):
            control.serve(zk, reconfigurer)  # mw zk reconfig's requests (see masterworker/zk/control.py)
            _say_who_exited(zk, exited)
    finally:
        control.withdraw(zk.data_dir)
        zk.stop()
        console.print("ZooKeeper stopped")


def _say_who_exited(zk: LocalZooKeeper, exited: set[int]) -> None:
    """A server that died (killed, out of memory) is said once; when none is left, this command ends:
    it kept running, saying nothing, in front of a server that was gone."""
    for server in zk.servers:
        if not server.running and server.sid not in exited:
            exited.add(server.sid)
            code = server.process.returncode if server.process else None
            notice(f"ZooKeeper server {server.sid} exited (exit code {code}); its log: {server.log_file}")
    if zk.servers and all(not server.running for server in zk.servers):
        raise ServerStartError("every ZooKeeper server of this 'mw zk start' has exited")


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
            "config_version": "config",
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


def _sids(text: str) -> list[int]:
    try:
        sids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"server ids are numbers separated by commas, not {text!r}") from None
    if not sids:
        raise BadInput("name at least one server id")
    return sids


@app.command("reconfig")
@friendly_errors
def reconfig(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The data directory of the running 'mw zk start' to change.")
    ],
    add: Annotated[int, typer.Option("--add", help="Start this many new voting servers and add them.")] = 0,
    add_observers: Annotated[int, typer.Option("--add-observers", help="Start and add this many observers.")] = 0,
    remove: Annotated[
        str | None, typer.Option("--remove", help="Remove these servers (ids, comma-separated) and stop them.")
    ] = None,
    observer: Annotated[
        int | None, typer.Option("--observer", help="Turn this voting server into an observer.")
    ] = None,
    participant: Annotated[
        int | None, typer.Option("--participant", help="Turn this observer into a voting server.")
    ] = None,
    from_config: Annotated[
        str | None,
        typer.Option(
            "--from-config", help="Only if the configuration is still this version (hex, as printed); default: current."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a line.")] = False,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Change the running ensemble (ZooKeeper's reconfig): add, remove, or re-role servers; print the new
    configuration version and connect string."""
    setup(DEFAULTS["zk"], DEFAULTS["session_timeout"], log_level, log_json)
    requests = []
    if add or add_observers:
        count = add or add_observers
        if add and add_observers or not 1 <= count <= 4:
            raise BadInput("--add or --add-observers: 1 to 4 servers at a time, one kind at a time")
        requests.append({"op": "add", "count": count, "observer": bool(add_observers)})
    if remove is not None:
        requests.append({"op": "remove", "sids": _sids(remove)})
    if observer is not None:
        requests.append({"op": "role", "sid": observer, "observer": True})
    if participant is not None:
        requests.append({"op": "role", "sid": participant, "observer": False})
    if len(requests) != 1:
        raise BadInput("say one change: --add N, --add-observers N, --remove IDS, --observer ID or --participant ID")
    request = requests[0]
    if from_config is not None:
        try:
            request["from_config"] = int(from_config, 16)
        except ValueError:
            raise BadInput(f"--from-config is a hexadecimal version like 0x100000000, not {from_config!r}") from None
    answer = control.ask(data_dir, request)
    if not answer["ok"]:
        raise fail(answer["error"], answer.get("exit_code", 1))
    if as_json:
        console.print_json(json.dumps(answer))
        return
    observers = f", observers {','.join(map(str, answer['observers']))}" if answer["observers"] else ""
    console.print(
        f"configuration version {answer['version']} (was {answer['version_before']}): "
        f"voters {','.join(map(str, answer['voters']))}{observers}; "
        f"reconfig {answer['reconfig_seconds']:.3f} s, {answer['total_seconds']:.2f} s in all",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"export MW_ZK={answer['connect_string']}", highlight=False, soft_wrap=True)


@app.command("config")
@friendly_errors
def config(
    zk: ZkHosts = DEFAULTS["zk"],
    connect_string: Annotated[
        bool, typer.Option("--connect-string", help="Print only the members' connect string (for export MW_ZK=...).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """The ensemble's membership as any of its servers knows it (/zookeeper/config): version, members, and
    the connect string a new client should use."""
    settings = setup(zk, DEFAULTS["session_timeout"], log_level, log_json)
    hosts, _chroot = collect_hosts(settings.hosts)  # /zookeeper/config is outside any chroot
    plain = ",".join(f"{host}:{port}" for host, port in hosts)
    client = connect(replace(settings, hosts=plain))
    try:
        membership = read_membership(client)
        text = client.get(CONFIG_NODE)[0].decode()
    finally:
        close_quietly(client)
    if not membership.members:
        raise fail(f"{plain} is a standalone server: it has no membership to show", 1)
    if connect_string:
        console.print(membership.connect_string, highlight=False, soft_wrap=True)
    elif as_json:
        voters, observers = membership.voters, membership.observers
        console.print_json(
            json.dumps(
                {
                    "version": f"{membership.version:#x}",
                    "voters": voters,
                    "observers": observers,
                    "connect_string": membership.connect_string,
                }
            )
        )
    else:
        console.print(membership.describe(), highlight=False)
        console.print(text.strip(), highlight=False, soft_wrap=True)
