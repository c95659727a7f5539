"""Every help page renders, as a user asks for it: ``mw ... --help`` and ``-h`` in a subprocess.

A new typer release once turned help text into rich markup and ``[/chroot]`` crashed six pages;
the suite imported the commands and never asked for their help. This walks the whole command
tree that typer builds, so a command added later is covered without naming it here.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer

from masterworker.cli import app
from tests.helpers import run_mw


def command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) for the root and every visible subcommand.

    Duck-typed on purpose: typer 0.12 builds click objects, recent typers their own copy of click.
    """
    found = [(prefix, command)]
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            if not sub.hidden:
                found += command_paths(sub, (*prefix, name))
    return found


COMMANDS = command_paths(typer.main.get_command(app))


def test_the_tree_has_every_command_of_the_readme() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    expected = {"master", "worker", "submit", "result", "status", "demo", "bench", "chaos"}
    expected |= {"zk start", "zk status", "tutorial list", "tutorial run"}
    assert expected <= names, expected - names


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "mw" for p, _ in COMMANDS])
def test_help_renders_and_lists_every_option(path: tuple[str, ...], command: Any, flag: str) -> None:
    result = run_mw(*path, flag, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout.lstrip().startswith("Usage:")
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            assert param.opts[0] in result.stdout, f"{param.opts[0]} missing from mw {' '.join(path)} {flag}"


def test_a_usage_error_points_at_a_help_page_that_works() -> None:
    result = run_mw("submit", "--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--help" in result.stderr or "-h" in result.stderr
