"""The load generator: submits tasks at a steady rate and records each submit's outcome.

A submit is *invoked*, then *acknowledged* (we know the task's name), *failed* (it certainly did
not happen) or *unknown* (the run ended while it was still trying, as during a quorum loss).
Only acknowledged tasks are owed a completion record.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from kazoo.client import KazooClient

from masterworker.system.client import KeepsFailing, submit
from masterworker.system.errors import MasterworkerError
from masterworker.system.history import History
from masterworker.system.protocol import TaskSpec


class LoadGenerator:
    def __init__(self, client: KazooClient, rate: float, history: History, argv: list[str]) -> None:
        self.client = client
        self.interval = 1.0 / rate
        self.history = history
        self.argv = argv
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="load")
        self._pending: dict[int, Future] = {}
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.submitted = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        for op in itertools.count():
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                return
            next_at += self.interval
            self.history.record("submit-invoke", op=op)
            self._pending[op] = self._pool.submit(self._submit, op)

    def _submit(self, op: int) -> None:
        try:
            task = submit(self.client, TaskSpec(argv=self.argv, timeout=60), stop=self._stop)
        except KeepsFailing as exc:
            # Its create lost the connection again and again and a look-up did not find it; but a look-up
            # on a server that lags behind the leader can miss a create still being committed: unknown.
            self.history.record("submit-unknown", op=op, error=str(exc))
        except MasterworkerError as exc:
            self.history.record("submit-fail", op=op, error=str(exc))
        except Exception as exc:  # the run stopped while it was retrying: we do not know
            self.history.record("submit-unknown", op=op, error=type(exc).__name__)
        else:
            self.history.record("submit-ok", op=op, task=task)
            self.submitted += 1
        finally:
            self._pending.pop(op, None)

    def stop(self, patience: float = 10.0) -> None:
        """Stop submitting; give submits in flight ``patience`` seconds, then call them unknown."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + patience
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.05)
        for op in list(self._pending):
            self.history.record("submit-unknown", op=op, error="still trying when the run ended")
        self._pool.shutdown(wait=False, cancel_futures=True)
