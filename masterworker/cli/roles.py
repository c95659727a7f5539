"""``mw master`` and ``mw worker``: the long-running processes of the book's example."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masterworker.cli.common import (
    DEFAULTS,
    Auth,
    LogJson,
    LogLevel,
    SessionTimeout,
    ZkHosts,
    check_id,
    friendly_errors,
    on_stop_signals,
    setup,
    stopped,
)
from masterworker.system.connection import close_quietly, connect, granted_session_timeout
from masterworker.system.errors import BadInput, MasterworkerError
from masterworker.system.history import History, publish_session
from masterworker.system.master_core import MAX_ATTEMPTS
from masterworker.system.masters import IMPLEMENTATIONS as MASTERS_BY_IMPL
from masterworker.system.masters import Impl
from masterworker.system.protocol import MASTERS, MAX_CAPACITY
from masterworker.system.roster import Roster
from masterworker.system.security import Policy, install_policy, load_policy
from masterworker.system.worker import Worker, WorkerIdInUse


@friendly_errors
def master(
    master_id: Annotated[str | None, typer.Option("--id", help="This master's id (default: master-HOST-PID).")] = None,
    impl: Annotated[
        Impl,
        typer.Option(
            "--impl",
            help="default: its own thread and blocking calls (ch. 3-5); async: completion callbacks only (ch. 7); "
            "recipes: kazoo's recipes (ch. 8).",
        ),
    ] = Impl.default,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure", help="Secure the system with ACLs (ch. 6): needs --users and --auth of a master user."
        ),
    ] = False,
    users: Annotated[
        Path | None,
        typer.Option(
            "--users",
            envvar="MW_USERS",
            help="With --secure: lines of 'ROLE USER:PASSWORD', ROLE master, worker or client.",
        ),
    ] = None,
    no_fencing: Annotated[
        bool,
        typer.Option("--no-fencing", hidden=True, help="Teaching switch: assign without the epoch check."),
    ] = False,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts",
            help="Give a task up (failed, with the reason) once its worker died this many times while "
            "holding it: a task that kills its worker must not kill them all in turn. 0: never.",
        ),
    ] = MAX_ATTEMPTS,
    zk: ZkHosts = DEFAULTS["zk"],
    session_timeout: SessionTimeout = DEFAULTS["session_timeout"],
    auth: Auth = None,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Run for master: the active master assigns tasks; the others wait as backups (ch. 3-5).

    kill -9 of the active master: a backup takes over once its session expires. SIGTERM or
    Ctrl-C: the master closes its session, so a backup takes over at once.
    """
    chosen = check_id(master_id, "master")
    if max_attempts < 0:
        raise BadInput(f"--max-attempts must be 0 (never give up) or more, not {max_attempts}")
    settings = setup(zk, session_timeout, log_level, log_json, role=chosen, auth=auth)
    policy = None
    if secure:
        if users is None or auth is None:
            raise BadInput("--secure needs --users FILE and --auth USER:PASSWORD of a master user")
        policy = Policy.from_users_file(users)
    client = connect(settings, create_chroot=True)
    publish_session(client, chosen)
    roster = None
    try:
        if policy is not None:  # every implementation finds the installed policy at start
            install_policy(client, policy)
        installed = load_policy(client)
        roster = Roster(
            client,
            chosen,
            impl,
            expiry_wait=expiry_wait(client, settings.session_timeout),
            acl=installed.for_node(MASTERS),
        )
        role = MASTERS_BY_IMPL[impl](
            client,
            chosen,
            fenced=not no_fencing,
            history=History.for_role(chosen),
            policy=installed,
            max_attempts=max_attempts,
            session_timeout=granted_session_timeout(client, settings.session_timeout) or settings.session_timeout,
        )
        on_stop_signals(role.stop)
        role.run()
    finally:
        if roster is not None:
            roster.leave()
        close_quietly(client)
        stopped()


def expiry_wait(client, asked: float) -> float:  # noqa: ANN001
    """How long an id held by a killed previous run can take to be freed: its session timeout, and a margin."""
    return (granted_session_timeout(client, asked) or asked) + 2.0


@friendly_errors
def worker(
    worker_id: Annotated[str | None, typer.Option("--id", help="This worker's id (default: worker-HOST-PID).")] = None,
    slots: Annotated[int, typer.Option("--slots", help="Tasks run at once.")] = 1,
    prefetch: Annotated[
        int,
        typer.Option(
            "--prefetch",
            help="Tasks held beyond --slots to start with; the master widens the window by itself (up to 256) "
            "while short tasks drain it faster than assignments arrive.",
        ),
    ] = 1,
    allow: Annotated[list[str] | None, typer.Option("--allow", help="Only run this program (repeatable).")] = None,
    grace: Annotated[float, typer.Option("--grace", help="Seconds running tasks get to finish on SIGTERM.")] = 30.0,
    unsafe_completion: Annotated[
        bool, typer.Option("--unsafe-completion", hidden=True, help="Teaching switch: complete with two writes.")
    ] = False,
    zk: ZkHosts = DEFAULTS["zk"],
    session_timeout: SessionTimeout = DEFAULTS["session_timeout"],
    auth: Auth = None,
    log_level: LogLevel = DEFAULTS["log_level"],
    log_json: LogJson = False,
) -> None:
    """Register as a worker and run the tasks the master assigns (ch. 3-5).

    Each task runs without a shell, on its own thread, in a process group of its own that ends
    with the task, and completes with one transaction that creates /status/<task> and deletes
    the assignment. SIGTERM or Ctrl-C: prefetched tasks go back at once, running ones get
    --grace seconds; a second Ctrl-C exits at once, and the worker's reaper ends its tasks.
    """
    if not 0 < slots <= MAX_CAPACITY:
        raise BadInput(f"--slots must be between 1 and {MAX_CAPACITY}, not {slots}")
    if not 0 <= prefetch <= MAX_CAPACITY:
        raise BadInput(f"--prefetch must be between 0 and {MAX_CAPACITY}, not {prefetch}")
    if grace < 0:
        raise BadInput(f"--grace must not be negative, not {grace:g}")
    chosen = check_id(worker_id, "worker")
    settings = setup(zk, session_timeout, log_level, log_json, role=chosen, auth=auth)
    client = connect(settings)
    publish_session(client, chosen)
    try:
        role = Worker(
            client,
            chosen,
            slots=slots,
            prefetch=prefetch,
            allow=frozenset(allow) if allow else None,
            grace=grace,
            history=History.for_role(chosen),
            unsafe_completion=unsafe_completion,
            session_timeout=settings.session_timeout,
        )
        on_stop_signals(role.stop, patience=grace + 10)
        try:
            role.run()
        except WorkerIdInUse as exc:
            raise MasterworkerError(str(exc)) from None
    finally:
        close_quietly(client)
        stopped()
