"""``mw tutorial``: list the chapters, or step through one in the terminal (show, run, check)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from masterworker.cli.common import command_group, console, friendly_errors
from masterworker.lab.tutorial import Outcome, Step, chapters, run_tutorial, title
from masterworker.system.errors import BadInput
from masterworker.zk.server import free_port

app = command_group("Executable tutorials, one per chapter of the book.")


@app.command("list")
def list_chapters() -> None:
    """The chapters, with their titles."""
    table = Table(title="tutorials (mw tutorial run N)")
    table.add_column("N", justify="right")
    table.add_column("chapter")
    for path in chapters():
        table.add_row(path.name[:2].lstrip("0"), title(path))
    console.print(table)


@app.command("run")
@friendly_errors
def run(
    number: Annotated[int, typer.Argument(help="The chapter number (mw tutorial list).")],
    pause: Annotated[
        bool | None,
        typer.Option(
            "--pause/--no-pause", help="Wait for Enter before each step (default: when the terminal is interactive)."
        ),
    ] = None,
) -> None:
    """Show each step, run it in a shell, show what happened and whether it matched the tutorial."""
    found = [p for p in chapters() if p.name.startswith(f"{number:02d}-")]
    if not found:
        raise BadInput(f"no tutorial {number}: see mw tutorial list")
    interactive = sys.stdin.isatty() if pause is None else pause
    console.print(f"[bold]{escape(title(found[0]))}[/]  ({found[0]})")

    def before(step: Step) -> None:
        console.print(f"\n[bold cyan]$[/] {escape(step.command)}", highlight=False)
        if interactive:
            input()

    def after(outcome: Outcome) -> None:
        console.out(outcome.output.rstrip(), highlight=False)
        if outcome.ok:
            console.print("[green]as the tutorial says[/]")
        else:
            console.print(f"[bold red]expected, not seen:[/] {escape(outcome.missing or '')}", highlight=False)

    outcomes = list(run_tutorial(found[0], Path(sys.executable).parent, free_port(), on_step=after, before_step=before))
    if not outcomes or not outcomes[-1].ok:
        raise typer.Exit(1)
    console.print(f"\n[bold green]all {len(outcomes)} steps ran as the tutorial says[/]")
