"""The ``mw`` command line: a thin typer layer over the library (one module per command group)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from loguru import logger

from masterworker import __version__
from masterworker.cli import tutorial, zk
from masterworker.cli.bench import bench_command
from masterworker.cli.chaos import chaos_command
from masterworker.cli.common import command_group, console
from masterworker.cli.demo import demo_command
from masterworker.cli.roles import master, worker
from masterworker.cli.status import status_command
from masterworker.cli.tasks import result_command, submit_command
from masterworker.logs import setup_logging

app = command_group(
    "masterworker: the master-worker example of 'ZooKeeper: Distributed Process Coordination', "
    "on a real ZooKeeper. Start with: mw zk start (one shell), then mw master, mw worker, "
    "mw submit -- echo hi, mw status.",
    name="mw",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"mw {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """masterworker: masters, workers and clients coordinating only through ZooKeeper."""


app.add_typer(tutorial.app, name="tutorial", help="Executable tutorials, one per chapter of the book.")
app.add_typer(zk.app, name="zk", help="Run a local ZooKeeper (standalone or an ensemble) and look at its servers.")
app.command("master", help="Run for master; backups wait and take over (ch. 3-5).")(master)
app.command("worker", help="Register as a worker and run assigned tasks (ch. 3-5).")(worker)
app.command("submit")(submit_command)  # its help: the docstring (the exit codes too)
app.command("result")(result_command)
app.command("demo", help="The whole example in one command: kill -9 a master and a worker midway.")(demo_command)
app.command("chaos", help="Kill, pause and expire masters, workers and ZooKeeper servers; check the history.")(
    chaos_command
)
app.command("bench", help="Measure throughput, latency, failover, orphan recovery and scale.")(bench_command)
app.command("status", help="Show master, workers, assignments, pending tasks and results.")(status_command)


def main() -> None:
    if "--log-json" in sys.argv[1:]:
        sys.exit(_main_with_json_errors(sys.argv[1:]))
    app(prog_name="mw")


def _main_with_json_errors(args: list[str]) -> int:
    """Under --log-json even a usage error (an unknown option, a bad value) is a JSON line on stderr.

    typer prints those itself, as rich panels, before any command runs; here click's own
    exception is caught instead and logged like every other error.
    """
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="mw", standalone_mode=False)
    except Exception as exc:
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):  # not a usage error
            raise
        setup_logging(json=True)
        logger.error(exc.format_message())
        return exc.exit_code
    return result if isinstance(result, int) else 0
