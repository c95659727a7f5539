"""What every command shares: connection options, logging, error handling, signals.

Each command parses its options and calls one library function; errors leave through
``typer.Exit`` with one readable line (exit 2 for bad input, 1 for an unreachable ZooKeeper).
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from kazoo.exceptions import NoAuthError
from loguru import logger
from rich.console import Console
from rich.markup import escape

from masterworker.logs import json_enabled, setup_logging
from masterworker.system.connection import DEFAULT_HOSTS, DEFAULT_SESSION_TIMEOUT, ZkSettings
from masterworker.system.errors import BadInput, MasterworkerError
from masterworker.system.protocol import is_valid_name
from masterworker.system.zkops import RECOVERABLE
from masterworker.zk.install import ZooKeeperNotInstalled
from masterworker.zk.server import ServerStartError

# soft_wrap: a message is one line however narrow the terminal or pipe (tables still fit the width).
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ZkHosts = Annotated[
    str,
    typer.Option(
        "--zk",
        envvar="MW_ZK",
        help=r"ZooKeeper hosts: host:port\[,host:port...]\[/chroot]. A chroot must exist (mw master creates it).",
        rich_help_panel="Connection",
    ),
]
SessionTimeout = Annotated[
    float,
    typer.Option(
        "--session-timeout",
        envvar="MW_SESSION_TIMEOUT",
        help="Seconds the ensemble waits after losing touch before it expires our session "
        "(and deletes our ephemeral znodes).",
        rich_help_panel="Connection",
    ),
]
Auth = Annotated[
    str | None,
    typer.Option(
        "--auth",
        envvar="MW_AUTH",
        help="USER:PASSWORD for ZooKeeper's digest scheme (a secured system, ch. 6).",
        rich_help_panel="Connection",
        show_default=False,
    ),
]
LogLevel = Annotated[
    str,
    typer.Option(
        "--log-level",
        envvar="MW_LOG_LEVEL",
        help="TRACE, DEBUG, INFO, WARNING or ERROR.",
        rich_help_panel="Logging",
    ),
]
LogJson = Annotated[
    bool,
    typer.Option("--log-json", help="Logs as JSON lines on stderr.", rich_help_panel="Logging"),
]
DEFAULTS = {
    "zk": DEFAULT_HOSTS,
    "session_timeout": DEFAULT_SESSION_TIMEOUT,
    "log_level": "INFO",
    "log_json": False,
}

F = TypeVar("F", bound=Callable[..., Any])


def command_group(help: str, **settings: Any) -> typer.Typer:  # noqa: A002 - typer's own name
    """A typer app with help rendered the same way by every typer release we accept.

    Help text is rich markup on purpose (typer's default since rich is installed, chosen here
    explicitly so a new release cannot change it): a literal bracket is written ``\\[``. An
    unescaped ``[/chroot]`` once crashed six help pages when a new typer turned markup on.
    """
    return typer.Typer(
        help=help,
        rich_markup_mode="rich",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        **settings,
    )


def setup(
    zk: str, session_timeout: float, log_level: str, log_json: bool, role: str | None = None, auth: str | None = None
) -> ZkSettings:
    """Logging first (so every later line is formatted), then validated connection settings."""
    try:
        setup_logging(log_level, log_json, role)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return ZkSettings(hosts=zk, session_timeout=session_timeout, auth=auth).validated()


def fail(message: str, code: int) -> typer.Exit:
    """One line on stderr (a JSON log line under --log-json) and the exit code to leave with."""
    if json_enabled():
        logger.error(message)
    else:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def notice(message: str, style: str = "yellow") -> None:
    """A line for the user on stderr that is not a log line (a JSON log line under --log-json)."""
    if json_enabled():
        logger.warning(message)
    else:
        err_console.print(f"[{style}]{escape(message)}[/]", highlight=False, soft_wrap=True)


def friendly_errors(command: F) -> F:
    """Turn the errors a user can cause or meet into one line and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MasterworkerError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except ZooKeeperNotInstalled as exc:
            raise fail(str(exc), 2) from None
        except ServerStartError as exc:
            raise fail(str(exc), 1) from None
        except NoAuthError as exc:
            raise fail(f"ZooKeeper refused: not authorised ({type(exc).__name__}); check --auth / MW_AUTH", 5) from None
        except RECOVERABLE as exc:  # what retries and bounded waits did not absorb: one line, not a traceback
            raise fail(
                f"the connection to ZooKeeper was lost in the middle of a request ({type(exc).__name__}); "
                "try again once 'mw zk status' answers",
                1,
            ) from None
        except TimeoutError as exc:  # a bounded wait of the demo, bench or chaos ran out
            raise fail(str(exc) or "timed out", 1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def default_id(role: str) -> str:
    """Unique and readable: the book's masters all got the same id, and two of them acted at once."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


def check_id(value: str | None, role: str) -> str:
    chosen = default_id(role) if value is None else value
    if not is_valid_name(chosen):
        raise BadInput(f"{chosen!r} is not a valid {role} id (letters, digits and _.:@- only)")
    return chosen


def positive(value: float | None, option: str) -> None:
    if value is not None and value <= 0:
        raise BadInput(f"{option} must be positive, not {value:g}")


def on_stop_signals(stop: Callable[[], None], patience: float = 10.0) -> None:
    """SIGTERM and Ctrl-C ask for a clean stop (close the session, so others react at once).

    A clean stop needs ZooKeeper: with the ensemble unreachable, kazoo's calls wait for it to come
    back. So if the stop has not finished after ``patience`` seconds, or at a second signal, the
    process exits anyway (its session, if any, then expires on the server).
    """
    asked = threading.Event()

    def give_up() -> None:
        if not _exiting.wait(patience):
            notice(f"could not stop cleanly within {patience:g} s (is ZooKeeper reachable?): exiting")
            os._exit(1)

    def handler(signum: int, frame: object) -> None:
        if asked.is_set():
            os._exit(130)
        asked.set()
        stop()
        threading.Thread(target=give_up, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


_exiting = threading.Event()


def stopped() -> None:
    """A long-running command finished its clean stop: the watchdog of on_stop_signals stands down."""
    _exiting.set()
