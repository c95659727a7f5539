"""What a process did, as JSON lines, for the chaos checker (the Jepsen idea of a recorded history).

Roles record only when ``MW_RUN_DIR`` is set (``mw chaos`` sets it for the processes it starts):
each process appends to ``<run dir>/history/<role>-<pid>.jsonl`` and publishes its current
session (id and password) in ``<run dir>/sessions/<role>.json``, so the nemesis can expire that
session for real from outside, the way ``zkops.expire_session`` does.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient, KazooState

RUN_DIR_ENV = "MW_RUN_DIR"


class History:
    """Append-only JSON lines with wall-clock timestamps; a no-op without a path."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1)  # noqa: SIM115 - line-buffered for the life of the process

    @classmethod
    def for_role(cls, role: str) -> History:
        run_dir = os.environ.get(RUN_DIR_ENV)
        if not run_dir:
            return cls(None)
        return cls(Path(run_dir) / "history" / f"{role}-{os.getpid()}.jsonl")

    def record(self, kind: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = json.dumps({"t": time.time(), "type": kind, **fields})
        with self._lock:
            self._file.write(line + "\n")


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """Every event of every process of a run, in time order."""
    events = []
    for path in sorted((run_dir / "history").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by kill -9
    return sorted(events, key=lambda e: e["t"])


def publish_session(client: KazooClient, role: str) -> None:
    """Keep ``sessions/<role>.json`` up to date (a file write: fine in a state listener)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return
    path = Path(run_dir) / "sessions" / f"{role}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(state: KazooState | None = None) -> None:
        if state not in (None, KazooState.CONNECTED) or client.client_id is None:
            return
        session_id, password = client.client_id
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"session_id": session_id, "password": password.hex()}))
        tmp.replace(path)

    write()
    client.add_listener(write)


def read_session(run_dir: Path, role: str) -> tuple[int, bytes] | None:
    path = run_dir / "sessions" / f"{role}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data["session_id"], bytes.fromhex(data["password"])
