"""The leadership guard's rule (leadership.py), with a stand-in for the client: only its timing is tested here.

The end-to-end cases (a one-way cut and a freeze of the active master, against each master) are in
tests/integration/test_hostile_tree.py, on a real server.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from masterworker.system.leadership import LeadershipGuard
from tests.helpers import wait_until


class _Client:
    """Answers ``exists_async`` or not; records stop() and start_async()."""

    client_id = (0x1234, b"")

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def exists_async(self, path: str) -> Future:
        future: Future = Future()
        if self.answers:
            future.set_result(None)
        return future  # else never completes: Future.result(timeout) raises TimeoutError

    def stop(self) -> None:
        self.calls.append("stop")

    def start_async(self) -> threading.Event:
        self.calls.append("start")
        return threading.Event()


class _Async(Future):
    def get(self, timeout: float | None = None) -> object:
        return self.result(timeout)


def _guard(client: _Client, active: bool, session_timeout: float = 0.3) -> LeadershipGuard:
    client.exists_async = _wrap(client.exists_async)  # kazoo's results have get(), not result()
    return LeadershipGuard(client, lambda: active, session_timeout)  # type: ignore[arg-type]


def _wrap(method):  # noqa: ANN001, ANN202
    def call(path: str) -> _Async:
        inner, outer = method(path), _Async()
        inner.add_done_callback(lambda f: outer.set_result(f.result()))
        return outer

    return call


def test_an_active_master_without_answers_closes_its_session_and_starts_a_new_one() -> None:
    client = _Client(answers=False)
    guard = _guard(client, active=True)
    guard.start()
    try:
        wait_until(lambda: guard.gave_up >= 1, 5, "the guard to give up")
        assert client.calls[:2] == ["stop", "start"]
    finally:
        guard.stop()


def test_answers_or_a_backup_role_never_close_the_session() -> None:
    looks = {"answering": 0, "backup": 0}

    def active(name: str, answer: bool) -> bool:
        looks[name] += 1
        return answer

    answering = LeadershipGuard(_Answering(), lambda: active("answering", True), 0.3)  # type: ignore[arg-type]
    backup = LeadershipGuard(_Client(answers=False), lambda: active("backup", False), 0.3)  # type: ignore[arg-type]
    for guard in (answering, backup):
        guard.start()
    # Ten checks each span over three session timeouts: long enough for a give-up, and none comes.
    wait_until(lambda: min(looks.values()) >= 10, 10, "ten checks by each guard")
    for guard in (answering, backup):
        guard.stop()
        assert guard.gave_up == 0


class _Answering(_Client):
    def __init__(self) -> None:
        super().__init__(answers=True)

    def exists_async(self, path: str) -> _Async:  # type: ignore[override]
        answer = _Async()
        answer.set_result(None)
        return answer
