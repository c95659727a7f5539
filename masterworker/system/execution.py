"""Running one task: argv without a shell, in a process group of its own, ended as a whole (ch. 3-5).

Usage::

    groups = ProcessGroups(reaper)           # the groups of the tasks running now
    status = run_command(spec, allow, groups)
    groups.end_all()                         # a stopping worker whose grace ran out

The book's worker (chapters 3 to 5) only says "execute the task". In Unix terms a task is not
one process: ``sh -c 'sleep 777; echo x'`` is a shell and its children. So each task starts a
new session (``start_new_session``: the task is its own process group, away from the worker's
terminal and its Ctrl-C), and everything that ends a task ends the whole group:

- **the task's first process exits**: whatever it left behind in its group gets SIGKILL, as the
  kernel does to a PID namespace when its init exits; a task's processes live and die with it;
- **its timeout passes**: SIGTERM to the group, SIGKILL to what is left once the first process
  is gone or ``TERM_GRACE`` seconds have passed;
- **its worker stops** and the grace period ran out: the same, from ``ProcessGroups.end_all``;
- **its worker dies** (kill -9): the worker's reaper does it (``reaper.py``).

A group's id is its first process's pid, so it is signalled only while that process is ours
and not yet reaped (running, or a zombie we wait on without reaping): the id cannot have been
reused by then. A process that leaves its group (``setsid``, ``setpgid``) escapes all this;
only a cgroup would hold it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import threading
import time

from masterworker.system.protocol import MAX_OUTPUT_TAIL, TaskSpec, TaskStatus
from masterworker.system.reaper import TERM_GRACE, Reaper, signal_group


class ProcessGroups:
    """The process groups of the tasks running now; the reaper (if any) hears of each one."""

    def __init__(self, reaper: Reaper | None = None) -> None:
        self.reaper = reaper
        self._pids: set[int] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def started(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
        if self.reaper is not None:
            self.reaper.watch(pid)

    def ended(self, pid: int) -> None:
        """Called once the group has had its SIGKILL, before its first process is reaped."""
        if self.reaper is not None:
            self.reaper.forget(pid)
        with self._changed:
            self._pids.discard(pid)
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pids)

    def end_all(self, grace: float = TERM_GRACE) -> int:
        """SIGTERM to every running task's group, SIGKILL after ``grace``; returns how many there were.

        Each task's runner notices its first process exit and finishes the job (SIGKILL to the
        rest of the group, reaping); this waits until every runner has, a bounded time.
        """
        with self._lock:
            pids = set(self._pids)
        for pid in pids:
            signal_group(pid, signal.SIGTERM)
        with self._changed:
            if not self._changed.wait_for(lambda: not (self._pids & pids), timeout=grace):
                for pid in self._pids & pids:
                    signal_group(pid, signal.SIGKILL)
                self._changed.wait_for(lambda: not (self._pids & pids), timeout=5.0)
        return len(pids)


def wait_exited(pid: int, timeout: float) -> bool:
    """Wait until our child ``pid`` has exited, without reaping it (its group id stays ours).

    A pidfd (Linux 5.3+) wakes us at once; elsewhere ``waitid(WNOWAIT)`` is polled with the
    same backoff as ``Popen.wait``.
    """
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            pass
        else:
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                return bool(poller.poll(min(timeout, 2_000_000) * 1000))
            finally:
                os.close(fd)
    deadline, delay = time.monotonic() + timeout, 0.0005
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        delay = min(delay * 2, remaining, 0.05)
        time.sleep(delay)
    return True


def run_command(spec: TaskSpec, allow: frozenset[str] | None = None, groups: ProcessGroups | None = None) -> TaskStatus:
    """Run a task's argv (no shell) in its own process group and describe the outcome; never raises."""
    started = time.time()
    if spec.book_task:
        return TaskStatus(
            "done",
            exit_code=0,
            started_at=started,
            ended_at=time.time(),
            reason="book task: data is not masterworker JSON, nothing to run",
        )
    if spec.invalid:
        return TaskStatus("failed", started_at=started, ended_at=time.time(), reason=spec.invalid)
    if allow is not None and spec.argv[0] not in allow and os.path.basename(spec.argv[0]) not in allow:
        return TaskStatus(
            "failed",
            started_at=started,
            ended_at=time.time(),
            reason=f"program {spec.argv[0]!r} is not allowed on this worker",
        )
    groups = groups if groups is not None else ProcessGroups()
    with tempfile.TemporaryFile() as output:  # a file, so a chatty task cannot fill our memory
        try:
            exit_code, reason = _run_group(spec, output.fileno(), groups), None
        except subprocess.TimeoutExpired:
            exit_code, reason = None, f"timed out after {spec.timeout:g} s"
        except OSError as exc:
            exit_code, reason = 127, f"cannot run {spec.argv[0]!r}: {exc.strerror or exc}"
        except (ValueError, OverflowError, TypeError) as exc:  # what Popen refuses before starting anything
            exit_code, reason = None, f"cannot start the task: {exc}"
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - MAX_OUTPUT_TAIL))
        tail = output.read().decode("utf-8", "replace")
    state = "done" if exit_code == 0 else "failed"
    if reason is None and exit_code != 0:
        reason = f"exit code {exit_code}"
    return TaskStatus(
        state,
        exit_code=exit_code,
        started_at=started,
        ended_at=time.time(),
        output=tail,
        output_bytes=size,
        reason=reason,
    )


def _run_group(spec: TaskSpec, output: int, groups: ProcessGroups) -> int:
    """The exit code of the task's first process; TimeoutExpired once its whole group is ended."""
    pid = _spawn(spec.argv, output)
    timed_out = False
    try:
        groups.started(pid)
        if not wait_exited(pid, spec.timeout):
            timed_out = True
            signal_group(pid, signal.SIGTERM)
            wait_exited(pid, TERM_GRACE)
    finally:
        signal_group(pid, signal.SIGKILL)  # what is left of the group; the id is still ours
        groups.ended(pid)
        _, wait_status = os.waitpid(pid, 0)  # reaped only now
    if timed_out:
        raise subprocess.TimeoutExpired(spec.argv, spec.timeout)
    return os.waitstatus_to_exitcode(wait_status)


def _spawn(argv: list[str], output: int) -> int:
    """Start argv (searched on PATH) in a session and process group of its own; its pid.

    ``posix_spawnp`` rather than ``subprocess.Popen``: the same vfork and exec, the same errors
    (OSError with the exec's errno, ValueError for a NUL byte), without Popen's Python around
    them (its error pipe, its bookkeeping). Popen's ``close_fds`` is not needed: every
    descriptor Python opens is close-on-exec (PEP 446), and a worker makes the ones it inherited
    close-on-exec at start (``keep_descriptors_from_tasks``). Like Popen's ``restore_signals``,
    the signals Python ignores are the default again in the task. Measured with ``mw bench exec``
    (``/bin/true``, 3 workers x 2 slots), 3 runs of 5 rounds each, alternated with Popen:
    845-914 -> 993-1,110 tasks/s, 2.09-2.28 -> 1.66-1.89 CPU-ms per task, all processes.
    What it costs: Python 3.11 holds the GIL through ``posix_spawnp``'s vfork until the exec has
    replaced the child (tenths of a millisecond; Popen releases it). A program whose exec itself
    hangs (its file on a hung network filesystem) therefore stalls its whole worker, heartbeats
    included, and the session expires: its tasks go to other workers, as for a worker that died.
    Releasing the GIL there (libc's posix_spawnp through ctypes) was measured and is slower:
    599-741 against 729-1,029 tasks/s, 1.43-1.54 against 1.03-1.35 requests per task (4 runs of 3
    rounds, alternated): a worker whose threads wait on the exec completes more per transaction.
    """
    return os.posix_spawnp(
        argv[0],
        argv,
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, output, 1),
            (os.POSIX_SPAWN_DUP2, output, 2),
        ],
        setsid=True,
        setsigdef=_RESTORED_SIGNALS,
    )


_RESTORED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))


def keep_descriptors_from_tasks() -> None:
    """Make every descriptor this process inherited (beyond 0, 1 and 2) close-on-exec, once at start:
    what a task inherits is its standard input, output and error, and nothing of its worker's."""
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed by now
