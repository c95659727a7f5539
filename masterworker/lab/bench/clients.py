"""The clients of ``mw bench throughput``: what drives the system decides what is measured.

- ``collect`` (the default) does what ``mw submit --file`` does, with the same library calls:
  submit every task (one create per task, or 100 per multi-op request with ``--submit batch``),
  wait for every status (``client.wait_for_all``: a children watch on ``/status``, 64 statuses per
  read) and collect each result as it is read (``client.Collector``: 64 deletes per request). A
  round ends when the last result is collected.
- ``book`` repeats the book's Java client's znode operations exactly, one task at a time but all
  in flight (chapter 4's asynchronous client): a sequential create of ``/tasks/task-`` with a
  plain string, an ``exists`` watch on ``/status/<task>``, a ``getData`` once it exists, a
  ``delete``. It drives any system that speaks the book's protocol, so two systems can be compared
  with one driver.
- ``book-java`` is the book's own ``Client`` class doing the same, in one JVM
  (``tools/BookDriver.java``, started with the system: ``book_system.start_book_driver``); the
  Python process only asks for a round and waits for its one-line answer.
- ``count`` only counts ``/status`` children and collects nothing: the cheapest possible client,
  kept to compare with earlier figures. A user never gets it.

Each returns, for every task, the seconds from the start of the round until the client saw it done.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.protocol.states import EventType, WatchedEvent

from masterworker.lab.bench.system import BenchSystem
from masterworker.system.client import Collector, submit_all, submit_payloads, wait_for_all
from masterworker.system.multiread import get_many
from masterworker.system.protocol import TASKS, TaskSpec, status_path

TRIVIAL = b"noop"  # not JSON: a book task, completed without running anything
CHUNK = 100  # tasks per multi-op request with --submit batch
CLIENTS = ("collect", "book", "book-java", "count")


def _submit(client: KazooClient, n: int, batch: int | None, argv: list[str] | None) -> list[str]:
    if argv is None:
        return submit_payloads(client, [TRIVIAL] * n, batch=batch)
    return submit_all(client, [TaskSpec(argv=argv, timeout=60)] * n, batch=batch)


def collect(system: BenchSystem, n: int, batch: int | None, argv: list[str] | None, timeout: float) -> list[float]:
    """``mw submit --file``'s way: submit all, then wait for all, collecting the successful results as they come."""
    began = time.monotonic()
    seen: dict[str, float] = {}
    statuses: dict = {}

    def mark(_: int) -> None:  # the statuses read since the last call are the last ones in the dict
        now = time.monotonic()
        for task in itertools.islice(statuses, len(seen), None):
            seen[task] = now

    tasks = _submit(system.client, n, batch, argv)
    collector = Collector(system.client)
    wait_for_all(system.client, tasks, timeout, progress=mark, found=statuses, collector=collector)
    collector.finish()
    if len(statuses) < n:
        raise TimeoutError(f"{n - len(statuses)} of {n} tasks had no status after {timeout:g} s")
    failed = [task for task, status in statuses.items() if not status.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} task(s) failed, e.g. {failed[0]}: {statuses[failed[0]].reason}")
    return [seen.get(task, time.monotonic()) - began for task in tasks]


def count(system: BenchSystem, n: int, batch: int | None, argv: list[str] | None, timeout: float) -> list[float]:
    """Counts ``/status`` children until n more exist; the results stay where they are."""
    done_before = system.statuses()
    began_wall, began = time.time(), time.monotonic()
    tasks = _submit(system.client, n, batch, argv)
    system.wait(lambda: system.statuses() >= done_before + n, timeout, "every status")
    ended = time.monotonic() - began
    results = get_many(system.client, [status_path(t) for t in tasks])  # after the round: not measured
    return [
        (r[1].ctime / 1000 - began_wall) if not isinstance(r, Exception) else ended
        for r in results  # the server's clock, same machine
    ]


class BookClient:
    """The book's client (``Client.java``), task for task, on kazoo's asynchronous calls.

    All of it runs in kazoo's completion and watch callbacks, which only send requests: none blocks.
    """

    def __init__(self, client: KazooClient, data: bytes = TRIVIAL) -> None:
        self.client = client
        self.data = data
        self._lock = threading.Lock()
        self._handled: set[str] = set()
        self._done = threading.Event()
        self._left = 0
        self._began = 0.0
        self.finished: list[float] = []
        self.errors: list[BaseException] = []

    def run(self, n: int, timeout: float) -> list[float]:
        self._left, self._began = n, time.monotonic()
        self._handled.clear()
        self._done.clear()
        self.finished = []
        for _ in range(n):  # submitTask: create("/tasks/task-", data, PERSISTENT_SEQUENTIAL)
            self.client.create_async(f"{TASKS}/task-", self.data, sequence=True).rawlink(self._created)
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self._left} of {n} tasks were not collected within {timeout:g} s")
        if self.errors:
            raise self.errors[0]
        return self.finished

    def _fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self._done.set()

    def _created(self, result) -> None:  # noqa: ANN001 - kazoo's async result
        try:
            path = result.get()
        except Exception as exc:
            self._fail(exc)
            return
        status = status_path(path.rsplit("/", 1)[1])  # watchStatus: exists(/status/<task>, watcher)
        self.client.exists_async(status, watch=self._watcher(status)).rawlink(self._exists(status))

    def _watcher(self, status: str) -> Callable[[WatchedEvent], None]:
        def watcher(event: WatchedEvent) -> None:  # statusWatcher: NodeCreated -> getData
            if event.type == EventType.CREATED:
                self._read(status)

        return watcher

    def _exists(self, status: str) -> Callable[[object], None]:
        def callback(result) -> None:  # noqa: ANN001 - existsCallback: OK with a stat -> getData
            try:
                stat = result.get()
            except Exception as exc:
                self._fail(exc)
                return
            if stat is not None:
                self._read(status)

        return callback

    def _read(self, status: str) -> None:
        with self._lock:  # the watch and the exists reply may both see the node: read it once
            if status in self._handled:
                return
            self._handled.add(status)
        self.client.get_async(status).rawlink(self._got(status))

    def _got(self, status: str) -> Callable[[object], None]:
        def callback(result) -> None:  # noqa: ANN001 - getDataCallback: print, then delete the status
            try:
                result.get()
            except Exception as exc:
                self._fail(exc)
                return
            self.client.delete_async(status).rawlink(self._deleted)

        return callback

    def _deleted(self, result) -> None:  # noqa: ANN001 - taskDeleteCallback
        try:
            result.get()
        except Exception as exc:
            self._fail(exc)
            return
        with self._lock:
            self.finished.append(time.monotonic() - self._began)
            self._left -= 1
            if self._left == 0:
                self._done.set()


def book(system: BenchSystem, n: int, batch: int | None, argv: list[str] | None, timeout: float) -> list[float]:
    """The book client's operations (``--submit`` and the task's command do not apply: a plain string)."""
    return BookClient(system.client).run(n, timeout)


def book_java(system: BenchSystem, n: int, batch: int | None, argv: list[str] | None, timeout: float) -> list[float]:
    """The book's own Java client (the JVM started with the system): one round, timed by the JVM."""
    return system.processes["book-client"].round(n, timeout)


RUNNERS = {"collect": collect, "book": book, "book-java": book_java, "count": count}
