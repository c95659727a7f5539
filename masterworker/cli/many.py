"""Many tasks at once: how ``mw submit --file`` and ``mw result --file`` wait, collect and report (ch. 4).

The book's client waits for one task: a watch on its status znode, a read, a delete. A file of
tasks is thousands of such waits. Here they share one children watch on ``/status``
(``client.wait_for_all``), each successful result is collected as soon as it is read
(``client.Collector``), and the report keeps the file's order: every failed task named, its
record kept for ``mw result NAME``; the unfinished ones listed, one name per line; one summary
line; and an exit code a script can act on (0 all done, 1 some failed, 3 not all finished in
time, 130 Ctrl-C). What ``mw submit --file`` prints is what ``mw result --file`` reads: the
names of the unfinished tasks of a run can be asked for again in one command.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import typer
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from masterworker.cli.common import console, err_console, notice
from masterworker.system.client import (
    COLLECT_PATIENCE,
    Collector,
    check_task_name,
    task_exists,
    wait_for_all,
    whereabouts,
)
from masterworker.system.connection import close_quietly, connect
from masterworker.system.errors import BadInput, NotFound
from masterworker.system.protocol import ASSIGN, STATUS, TASKS, TaskStatus
from masterworker.system.zkops import RECOVERABLE

EXIT_TIMED_OUT = 3
INTERRUPTED_PATIENCE = 2.0  # how long a Ctrl-C'd wait still tries to collect what it read
PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def tasks_phrase(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def read_names(file: Path) -> list[str]:
    """The task names in a file ('-': standard input), in order, each once: the first word of each
    line that starts with ``task-``, so that what ``mw submit --file`` printed can be read as it is
    (its summary line and blank lines are skipped)."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror}") from None
    words = (line.split()[0] for line in text.splitlines() if line.split())
    names = list(dict.fromkeys(check_task_name(word) for word in words if word.startswith("task-")))
    if not names:
        raise BadInput(f"no task names in {'standard input' if str(file) == '-' else file}")
    return names


def _listed(client: KazooClient) -> set[str]:
    """Every task name under ``/tasks``, each ``/assign/<w>`` and ``/status``, listed in the order
    tasks move, so that a task moving on meanwhile is seen in the next place."""
    known: set[str] = set()
    for path in (TASKS, ASSIGN, STATUS):
        try:
            listed = client.get_children(path)
        except NoNodeError:
            continue
        if path != ASSIGN:
            known.update(listed)
            continue
        for worker in listed:
            try:
                known.update(client.get_children(f"{ASSIGN}/{worker}"))
            except NoNodeError:  # a dead worker's node, removed meanwhile: its tasks moved on
                continue
    return known


# Names missed by two listings are looked for one by one only this many at most (a few requests each).
LOOK_ONE_BY_ONE = 100


def unknown_tasks(client: KazooClient, names: list[str]) -> list[str]:
    """The names that are nowhere: not pending, assigned or finished. Listings, not a look per name
    (a file of 20,000 names collected by an earlier run is 20,000 names to refuse): a name missed by
    one round is looked for in a second (a master requeueing a dead worker's task moves it back,
    from ``/assign`` to ``/tasks``, while the first round listed them), then, if few, one by one."""
    known = _listed(client)
    missing = [name for name in names if name not in known]
    if missing:
        known = _listed(client)
        missing = [name for name in missing if name not in known]
    if len(missing) <= LOOK_ONE_BY_ONE:
        missing = [name for name in missing if not task_exists(client, name)]
    return missing


@dataclass
class Waited:
    interrupted: bool  # Ctrl-C (or SIGTERM) ended the wait
    uncollected: list[str] = field(default_factory=list)  # done and read, the delete not confirmed by a server


def wait_and_collect(
    client: KazooClient,
    tasks: list[str],
    timeout: float | None,
    statuses: dict[str, TaskStatus],
    collector: Collector | None,
    bar: Progress | None = None,
) -> Waited:
    """Waits for the tasks' statuses (``timeout`` 0: one look), collecting the successful ones as they
    are read. What Ctrl-C cut short is collected too. Collecting what was read waits for a server
    at most COLLECT_PATIENCE seconds, and within ``--timeout`` (or 2 s after Ctrl-C): the user asked
    for that long."""
    began = time.monotonic()
    interrupted = False
    finishing = bar.add_task("finished ", total=len(tasks)) if bar is not None else None
    try:
        with terminate_as_interrupt():
            progress = (lambda n: bar.advance(finishing, n)) if bar is not None else None
            wait_for_all(client, tasks, timeout, progress, statuses, collector)
    except KeyboardInterrupt:
        interrupted = True
    if collector is None:
        return Waited(interrupted)
    collector.send([task for task, status in statuses.items() if status.ok])
    if interrupted:
        patience = INTERRUPTED_PATIENCE
    elif timeout is None:
        patience = COLLECT_PATIENCE
    else:
        patience = min(COLLECT_PATIENCE, max(INTERRUPTED_PATIENCE, timeout - (time.monotonic() - began)))
    left = collector.finish(patience)
    if left:
        notice(
            f"collecting the records of {tasks_phrase(len(left))} was not confirmed (no ZooKeeper server answered "
            f"for {patience:g} s): those left stay under /status, and mw result --file OUT collects them (listed "
            "above as such; one already gone counts as not found)"
        )
    return Waited(interrupted, left)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI's cancel, ``timeout``, ``kill``) ends a wait as Ctrl-C does: the names printed,
    the rest said. Its default ended the process silently, and the names of every task with it."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def where_first(client: KazooClient, waiting: list[str]) -> str:
    """Where the first unfinished task is, for the notice ('' when ZooKeeper does not say)."""
    if not waiting:
        return ""
    try:
        return whereabouts(client, waiting[0])
    except RECOVERABLE:
        return ""


def report(
    tasks: list[str],
    statuses: dict[str, TaskStatus],
    timeout: float | None,
    as_json: bool,
    interrupted: bool,
    why: str,
    not_found: list[str] | None = None,
    uncollected: list[str] | None = None,
) -> NoReturn:
    """Prints the outcome of many tasks in their order and exits with its code (see the module);
    ``why``: where the first unfinished task is. A failed task's record is never collected here.
    ``not_found`` (``mw result --file``): names found nowhere, most likely collected by an earlier
    run; they are counted and named, and leave the exit code to the others."""
    not_found = not_found or []
    waiting = [t for t in tasks if t not in statuses]
    failed = {t: statuses[t] for t in tasks if t in statuses and not statuses[t].ok}
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "tasks": tasks,
                    "done": len(statuses) - len(failed),
                    "failed": list(failed),
                    "failures": {t: {"exit_code": s.exit_code, "reason": s.reason} for t, s in failed.items()},
                    "waiting": waiting,
                    **({"not_found": not_found} if not_found else {}),
                    **({"not_collected": uncollected} if uncollected else {}),
                }
            )
        )
    else:
        for task, status in failed.items():
            console.print(
                f"{task} [red]failed[/] on {status.worker or '?'} ({status.reason or 'no reason given'})"
                f": record kept, see mw result {task}",
                highlight=False,
            )
        for task in uncollected or []:  # listed, so that the output given back to mw result --file collects them
            console.print(f"{task} done, its record perhaps not collected", highlight=False)
        if waiting:
            console.out("\n".join(waiting), highlight=False)
        console.print(
            f"{len(statuses) - len(failed)} done, {len(failed)} failed, {len(waiting)} not finished"
            + (f", {len(not_found)} not found" if not_found else ""),
            highlight=False,
        )
    if not_found:
        notice(
            f"{tasks_phrase(len(not_found))} not found (not pending, assigned or done: collected already, "
            f"or never submitted here), the first: {not_found[0]}"
        )
    again = "mw result NAME --wait" if len(waiting) == 1 else "mw result --file OUT --wait, OUT being this output"
    if interrupted:
        goes = "goes" if len(waiting) == 1 else "go"
        notice(f"interrupted: {tasks_phrase(len(waiting))} not finished (listed above) {goes} on; {again}")
        raise typer.Exit(130)
    if waiting:
        notice(
            f"{tasks_phrase(len(waiting))} not finished "
            + (f"after {timeout:g} s" if timeout else "yet")
            + " (listed above)"
            + (f"; the first is {why}" if why and why != "finished" else "")
            + ("; the first has finished since" if why == "finished" else "")
            + ("; it goes on" if len(waiting) == 1 else "; they go on")
            + f": {again}"
        )
        raise typer.Exit(EXIT_TIMED_OUT)
    raise typer.Exit(1 if failed else 0)


def result_file(settings, file: Path, wait: bool, timeout: float | None, keep: bool, as_json: bool) -> None:  # noqa: ANN001
    """``mw result --file``: the results of many tasks, as ``mw submit --file`` reports them."""
    names = read_names(file)
    client = connect(settings)
    statuses: dict[str, TaskStatus] = {}
    try:
        unknown = unknown_tasks(client, names)
        if len(unknown) == len(names):
            which = f"{names[0]} is not" if len(names) == 1 else f"none of the {len(names):,} tasks is"
            raise NotFound(
                f"{which} known here: not pending, assigned or done (collected already, or never submitted here)"
                + ("" if len(names) == 1 else f"; the first: {names[0]}")
            )
        missing = set(unknown)
        known = [name for name in names if name not in missing]
        collector = None if keep else Collector(client)
        if wait:
            with Progress(*PROGRESS_COLUMNS, console=err_console, transient=as_json) as bar:
                waited = wait_and_collect(client, known, timeout, statuses, collector, bar)
        else:
            waited = wait_and_collect(client, known, 0, statuses, collector)
        why = "" if waited.interrupted else where_first(client, [t for t in known if t not in statuses])
    finally:
        close_quietly(client)
    report(
        known,
        statuses,
        timeout if wait else None,
        as_json,
        waited.interrupted,
        why,
        not_found=unknown,
        uncollected=waited.uncollected,
    )
