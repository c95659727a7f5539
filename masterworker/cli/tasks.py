"""``mw submit`` and ``mw result``: the book's client (ch. 3 and 4)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress

from masterworker.cli.common import (
    DEFAULTS,
    Auth,
    LogJson,
    LogLevel,
    SessionTimeout,
    ZkHosts,
    console,
    default_id,
    err_console,
    fail,
    friendly_errors,
    notice,
    positive,
    setup,
)
from masterworker.cli.many import (
    EXIT_TIMED_OUT,
    PROGRESS_COLUMNS,
    Waited,
    report,
    result_file,
    terminate_as_interrupt,
    wait_and_collect,
    where_first,
)
from masterworker.system.budget import TXN_BUDGET
from masterworker.system.client import (
    COLLECT_PATIENCE,
    DEFAULT_BACKLOG_CAP,
    Collector,
    OutcomeUnknown,
    SubmitStopped,
    check_task_name,
    consume_status,
    encode_task,
    parse_task_lines,
    read_status,
    require_known_task,
    submit,
    submit_all,
    wait_for_status,
    whereabouts,
)
from masterworker.system.connection import close_quietly, connect
from masterworker.system.errors import BadInput
from masterworker.system.history import History
from masterworker.system.protocol import DEFAULT_TASK_TIMEOUT, TaskSpec, TaskStatus
from masterworker.system.security import apply_role_acl
from masterworker.system.zkops import RECOVERABLE


def show_status(task: str, status: TaskStatus, as_json: bool) -> None:
    from rich.filesize import decimal  # imported here: this edit stays inside show_status

    from masterworker.system.protocol import MAX_OUTPUT_TAIL

    if as_json:
        console.print_json(
            json.dumps(
                {
                    "task": task,
                    "state": status.state,
                    "book_worker": status.book_worker,
                    "exit_code": status.exit_code,
                    "worker": status.worker,
                    "reason": status.reason,
                    "output": status.output,
                    "output_bytes": status.output_bytes,
                }
            )
        )
        return
    colour = "green" if status.ok else "red"
    detail = f"exit code {status.exit_code}" if status.exit_code is not None else ""
    if status.reason and not status.reason.startswith("exit code"):
        detail = f"{detail}: {status.reason}" if detail else status.reason
    where = f" on {status.worker}" if status.worker else ""
    console.print(f"{task} [{colour}]{status.summary}[/]{where} ({detail})", highlight=False)
    if status.output:
        console.out(status.output.rstrip("\n"), highlight=False)
    if status.output_cut:
        shown = f"last {MAX_OUTPUT_TAIL // 1024} KiB of {decimal(status.output_bytes)}"
        console.print(f"(output cut: {shown} shown)", highlight=False)


def finish(
    task: str, status: TaskStatus | None, as_json: bool, keep: bool, client, waited: float | None = None
) -> None:  # noqa: ANN001
    if status is None:
        where = whereabouts(client, task)
        if as_json:
            console.print_json(json.dumps({"task": task, "state": "waiting", "where": where}))
        else:
            after = f" after {waited:g} s" if waited else " yet"
            console.print(f"{task} has not finished{after}: {where}", highlight=False)
            notice(f"its result stays available: mw result {task} --wait", style="dim")
        raise typer.Exit(EXIT_TIMED_OUT)
    show_status(task, status, as_json)
    if not keep and not consume_status(client, task):
        notice(
            f"collecting its record was not confirmed (no ZooKeeper server answered for {COLLECT_PATIENCE:g} s): "
            f"if it is still under /status, mw result {task} collects it",
            style="dim",
        )
    raise typer.Exit(0 if status.ok else 1)


class Waiting:
    """What a waiting ``mw submit`` shows on a terminal: a spinner, the elapsed time, where the task is."""

    def __init__(self, client, task: str, enabled: bool) -> None:  # noqa: ANN001
        self.client, self.task = client, task
        self.started = time.monotonic()
        self.where = "submitted"
        self._looked = 0.0
        self._status = err_console.status(self._text()) if enabled and err_console.is_terminal else None

    def _text(self) -> str:
        return f"{self.task}: {escape(self.where)} ({time.monotonic() - self.started:.0f} s)"

    def tick(self) -> None:
        if self._status is None:
            return
        if time.monotonic() - self._looked >= 2.0:  # a few reads: not every second
            self._looked = time.monotonic()
            try:
                self.where = whereabouts(self.client, self.task)
            except RECOVERABLE:
                self.where = "ZooKeeper connection lost: reconnecting"
        self._status.update(self._text())

    def __enter__(self) -> Waiting:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()


@friendly_errors
def submit_command(
    command: Annotated[list[str] | None, typer.Argument(help="The program and its arguments, after '--'.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the task name and return at once.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds to wait for the result (exit code 3 when they run out)."),
    ] = None,
    task_timeout: Annotated[
        float, typer.Option("--task-timeout", help="Seconds the task may run on a worker.")
    ] = DEFAULT_TASK_TIMEOUT,
    backlog_cap: Annotated[
        int,
        typer.Option(
            "--backlog-cap",
            envvar="MW_BACKLOG_CAP",
            help="Refuse to submit while this many tasks are pending; --file stops before a batch that would pass it.",
        ),
    ] = DEFAULT_BACKLOG_CAP,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Submit many: one command per line ('-' reads stdin); all or nothing per --batch."),
    ] = None,
    batch: Annotated[
        int,
        typer.Option(
            "--batch", help=f"With --file: tasks per transaction (fewer when they would pass {TXN_BUDGET // 1024} KiB)."
        ),
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    zk: ZkHosts = DEFAULTS["zk"],
    session_timeout: SessionTimeout = DEFAULTS["session_timeout"],
    auth: Auth = None,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Submit a task and wait for its result: mw submit -- echo hello. Many: mw submit --file tasks.txt.

    Exit code 0 when the task is done, 1 when it failed, 3 when --timeout ran out.

    With --file: 0 all done; 1 some failed (each named, in submission order);
    3 --timeout ran out (the unfinished listed); 130 Ctrl-C;
    4 the backlog cap stopped it midway (the error says how to resume).
    What it prints (the task names) goes back in: mw result --file OUT --wait.

    A task is created so that a retry after a lost connection never makes two.
    """
    settings = setup(zk, session_timeout, log_level, log_json, auth=auth)
    positive(timeout, "--timeout")
    positive(backlog_cap, "--backlog-cap")
    if file is not None:
        if command:
            raise BadInput("give either a command after '--' or --file, not both")
        if not 1 <= batch <= 1000:
            raise BadInput(f"--batch must be between 1 and 1000, not {batch}")
        submit_file(settings, file, batch, no_wait, timeout, task_timeout, backlog_cap, as_json)
        return
    spec = TaskSpec(argv=list(command or []), timeout=task_timeout, client=default_id("client"))
    encode_task(spec)  # bad input fails here, before anything is written
    client = connect(settings)
    apply_role_acl(client, "client")
    try:
        task = submit(client, spec, backlog_cap=backlog_cap, history=History.for_role(spec.client))
    except OutcomeUnknown as exc:  # gave up on a request that kept losing the connection
        close_quietly(client)
        raise fail(str(exc), 1) from None
    except BaseException:
        close_quietly(client)
        raise
    try:
        if no_wait:
            console.print_json(json.dumps({"task": task})) if as_json else console.print(task, highlight=False)
            return
        if not as_json:
            notice(f"submitted {task}; waiting for its result (Ctrl-C stops the waiting, not the task)", "dim")
        with Waiting(client, task, enabled=not as_json) as waiting:
            status = wait_for_status(client, task, timeout, tick=waiting.tick)
        finish(task, status, as_json, keep=False, client=client, waited=timeout)
    except KeyboardInterrupt:
        notice(f"interrupted: {task} was submitted and goes on; its result later: mw result {task} --wait")
        raise typer.Exit(130) from None
    finally:
        close_quietly(client)


def _resumable(stopped: SubmitStopped, file: Path, numbers: list[int], as_json: bool) -> typer.Exit:
    """A submission stopped midway: the created tasks' names on stdout, one line on stderr saying
    where to resume (the tasks created are the file's first ones: batches go in order)."""
    message = str(stopped)
    first = stopped.first_missing
    resume = None
    if not stopped.known and stopped.unsure:  # resume after the uncertain ones: each would run twice if it went in
        first, unsure = stopped.first_never_sent, stopped.unsure
        lines = (
            f"line {numbers[unsure[0]]:,}"
            if len(unsure) == 1
            else f"lines {numbers[unsure[0]]:,}-{numbers[unsure[-1]]:,}"
        )
        message += f"; {lines} may be in: look for them with mw status before sending them again"
    if (stopped.known or stopped.unsure) and first is not None and all(name is None for name in stopped.names[first:]):
        resume = numbers[first]
        if str(file) == "-":
            message += f"; resume from line {resume:,} of standard input"
        else:  # the command too: the lines before it are in, and must not go in again
            message += f"; resume from line {resume:,} of {file}: {_resume_command(file, resume)}"
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "tasks": stopped.submitted,
                    "not_submitted": len(stopped.names) - len(stopped.submitted),
                    "resume_from_line": resume,
                    "error": message,
                }
            )
        )
    elif stopped.submitted:
        console.out("\n".join(stopped.submitted), highlight=False)
    return fail(message, stopped.exit_code)


def _resume_command(file: Path, line: int) -> str:
    """The user's own command with the rest of the file on its stdin: the same options (--zk, --batch,
    --timeout...), and the same program (a venv's mw by its path)."""
    args, rebuilt = iter(sys.argv[1:]), []
    for arg in args:
        if arg == "--file":
            next(args, None)
            rebuilt += ["--file", "-"]
        else:
            rebuilt.append("--file=-" if arg.startswith("--file=") else arg)
    program = sys.argv[0] if Path(sys.argv[0]).name == "mw" else "mw"
    return f"tail -n +{line} {shlex.quote(str(file))} | {shlex.join([program, *rebuilt])}"


@friendly_errors
def result_command(
    task: Annotated[str | None, typer.Argument(help="The task name that 'mw submit --no-wait' printed.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the task finishes.")] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Wait at most this many seconds (implies --wait).")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the status node in place.")] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Many: the task names in a file ('-' reads stdin), one per line, as mw submit --file printed them.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    zk: ZkHosts = DEFAULTS["zk"],
    session_timeout: SessionTimeout = DEFAULTS["session_timeout"],
    auth: Auth = None,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Show a task's result (and remove its status node, unless --keep).

    Exit code 0 when done, 1 when failed, 2 for an unknown task, 3 if unfinished.

    Many: mw result --file names.txt --wait, where names.txt is what
    mw submit --file printed (lines not starting with a task name are skipped).
    The done are collected, the failed named (their records kept), the
    unfinished listed, names found nowhere (collected already?) counted.
    Exit codes: 0 all done; 1 some failed; 3 some unfinished; 130 Ctrl-C;
    2 none of the names is known.
    """
    settings = setup(zk, session_timeout, log_level, log_json, auth=auth)
    positive(timeout, "--timeout")
    wait = wait or timeout is not None  # a time to wait is a wish to wait: it was ignored without --wait
    if (task is None) == (file is None):
        raise BadInput("give either a task name or --file, not both" if task else "give a task name, or --file")
    if file is not None:
        result_file(settings, file, wait, timeout, keep, as_json)
        return
    check_task_name(task)
    client = connect(settings)
    try:
        require_known_task(client, task)
        if wait:
            with Waiting(client, task, enabled=not as_json) as waiting:
                status = wait_for_status(client, task, timeout, tick=waiting.tick)
        else:
            status = read_status(client, task)
        finish(task, status, as_json, keep, client, waited=timeout if wait else None)
    except KeyboardInterrupt:
        notice(f"interrupted: {task} goes on; ask again later: mw result {task} --wait")
        raise typer.Exit(130) from None
    finally:
        close_quietly(client)


def submit_file(
    settings,
    file: Path,
    batch: int,
    no_wait: bool,
    timeout: float | None,
    task_timeout: float,  # noqa: ANN001
    backlog_cap: int,
    as_json: bool,
) -> None:
    """Every line is checked before anything is written; then batches, a progress bar, the results."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror}") from None
    lines = parse_task_lines(text, task_timeout, default_id("client"))
    specs = [spec for _, spec in lines]
    client = connect(settings)
    tasks: list[str] = []
    statuses: dict[str, TaskStatus] = {}
    collector = Collector(client)  # successful results only: a failed task's record stays for mw result
    waited = Waited(interrupted=False)
    why = ""
    try:
        apply_role_acl(client, "client")
        with Progress(*PROGRESS_COLUMNS, console=err_console, transient=as_json) as bar:
            submitting = bar.add_task("submitted", total=len(specs))
            try:
                with terminate_as_interrupt():
                    tasks = submit_all(
                        client,
                        specs,
                        batch=batch,
                        backlog_cap=backlog_cap,
                        progress=lambda n: bar.advance(submitting, n),
                    )
            except SubmitStopped as stopped:
                bar.stop()
                raise _resumable(stopped, file, [number for number, _ in lines], as_json) from None
            if not no_wait:
                waited = wait_and_collect(client, tasks, timeout, statuses, collector, bar)
        if not no_wait and not waited.interrupted:  # --timeout ran out: say why, as mw submit does
            why = where_first(client, [t for t in tasks if t not in statuses])
    finally:
        close_quietly(client)
    if not no_wait:
        report(tasks, statuses, timeout, as_json, waited.interrupted, why, uncollected=waited.uncollected)
    if as_json:
        console.print_json(json.dumps({"tasks": tasks, "done": 0, "failed": [], "failures": {}, "waiting": []}))
    else:
        console.out("\n".join(tasks), highlight=False)
