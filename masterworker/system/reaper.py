"""The reaper: a task's processes die with their worker, even after kill -9 (book chapter 5's crashes).

Usage (the worker's end)::

    reaper = Reaper.start()     # one process per worker, for its whole life
    reaper.watch(pgid)          # a task's process group started
    reaper.forget(pgid)         # ... and has been ended by the worker itself
    reaper.close()              # a clean stop: the reaper exits

A worker ends each task's process group when the task ends (``execution.py``). A worker that
dies without a chance to clean up (kill -9, a crash, the OOM killer) cannot: its tasks'
processes would run on and keep writing while the master hands the same tasks to another worker
(at-least-once execution, chapter 5).

So each worker starts one long-lived reaper at start, ``python -m masterworker.system.reaper``, with a
pipe as its standard input. The worker writes ``+PGID`` on the pipe when a task's group starts
and ``-PGID`` when it has ended it. The worker holds the only write end (not inheritable, and
a task inherits no descriptor of its worker: ``execution.py``), so when the worker dies by any
means the kernel closes it, the reaper reads end-of-file, sends SIGTERM to every group still
listed, SIGKILL after a short grace to what is left, and exits. A clean stop is the same
end-of-file with nothing listed.

Why not the kernel's parent-death signal (PR_SET_PDEATHSIG) in each task: Linux sends it when
the *thread* that forked the task exits, not the process, and workers fork from pool threads;
setting it needs ``preexec_fn``, which is not safe in a threaded program; and a launcher process
per task would cost a process per task. One reaper costs one process per worker.

The reaper runs in a session of its own and ignores SIGINT, SIGHUP, SIGTERM and SIGQUIT: a
Ctrl-C in the terminal, or a service manager, signals the worker's whole process group, and the
reaper has to outlive the worker to do its job. It lives exactly as long as the pipe. Its limits:
a task process that leaves its group (setsid) escapes; a worker killed in the instant between
starting a task and writing its group id leaks that task.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

# Seconds between SIGTERM and SIGKILL when a task's group is ended.
TERM_GRACE = 2.0
READY = b"ready\n"  # what the reaper says once it ignores the signals it must outlive


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when it no longer exists (or is not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def end_groups(pgids: set[int], grace: float = TERM_GRACE) -> None:
    """SIGTERM to each group, then SIGKILL to the groups that still exist after ``grace`` seconds."""
    alive = {pgid for pgid in pgids if signal_group(pgid, signal.SIGTERM)}
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = {pgid for pgid in alive if signal_group(pgid, 0)}
    for pgid in alive:
        signal_group(pgid, signal.SIGKILL)


class Reaper:
    """The worker's end of the pipe; see the module docstring."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self._fd = process.stdin.fileno()  # type: ignore[union-attr]
        self._broken = False
        self._lock = threading.Lock()

    @classmethod
    def start(cls) -> Reaper:
        """Start the reaper and wait until it ignores the signals it must outlive (about 50 ms)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "masterworker.system.reaper", str(os.getpid())],
            stdin=subprocess.PIPE,  # its read end; ours is close-on-exec (PEP 446)
            stdout=subprocess.PIPE,  # one line: "ready"
            close_fds=True,
            start_new_session=True,  # out of the worker's group: a group-wide kill -9 spares it
        )
        ready = process.stdout.readline()  # type: ignore[union-attr]
        process.stdout.close()  # type: ignore[union-attr]
        if ready != READY:
            process.kill()
            process.wait()
            raise OSError(f"the reaper did not start (it said {ready!r})")
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def watch(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def _send(self, line: bytes) -> None:
        try:
            os.write(self._fd, line)  # one short write to a pipe is atomic: no lock needed
        except OSError as exc:
            with self._lock:
                if self._broken:
                    return
                self._broken = True
            from loguru import logger  # here: the reaper process itself never needs it

            logger.error("the reaper (pid {}) is gone ({}): a kill -9 of this worker leaves its tasks", self.pid, exc)

    def close(self, timeout: float = 5.0) -> None:
        """A clean stop: close our end; the reaper reads end-of-file and exits."""
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str]) -> int:
    """The reaper process: read ``+PGID``/``-PGID`` lines until end-of-file, then end what is listed."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    os.write(1, READY)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the worker stopped listening
    os.close(devnull)
    worker = argv[0] if argv else "?"
    groups: set[int] = set()
    pending = b""
    while chunk := os.read(0, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    if groups:
        print(
            f"reaper: worker pid {worker} is gone; ending {len(groups)} task process group(s): "
            + " ".join(str(g) for g in sorted(groups)),
            file=sys.stderr,
            flush=True,
        )
        end_groups(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
