"""Masters and workers as real processes, for the demo, the chaos runs and the tests.

Failures the book talks about only happen to processes: kill -9 gives a process no chance to
close its session; SIGSTOP freezes it while its session runs out (a zombie when it wakes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class MwProcess:
    """One ``mw`` command (``python -m masterworker ...``) in a subprocess, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, python: str = sys.executable) -> None:
        self.args = args
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [python, "-m", "masterworker", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        """kill -9: no clean-up, the session stays until the ensemble expires it."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM: a clean stop that closes the session."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def stop(self) -> None:
        """Make sure it is gone (tests and demos call this in their clean-up)."""
        if self.alive:
            self.signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def mw_env(hosts: str, session_timeout: float, log_level: str = "INFO") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {"MW_ZK": hosts, "MW_SESSION_TIMEOUT": str(session_timeout), "MW_LOG_LEVEL": log_level, "PYTHONUNBUFFERED": "1"}
    )
    return env
