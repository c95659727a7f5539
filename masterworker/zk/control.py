"""How ``mw zk reconfig`` reaches the ``mw zk start`` running in another terminal (chapter 10).

The launcher owns the JVMs (they die with it, by design), so only the launcher can start a new
server or stop one that left the ensemble; it is also the only process that knows the superuser
password that ``reconfig`` needs. It records itself in ``<data-dir>/launcher.json`` (its pid and
servers) and, twice a second, looks for requests in ``<data-dir>/requests/``: a request is a
small JSON file written atomically (written, then renamed into place); the answer is a JSON file
beside it. Whoever may write in the data directory may change the ensemble: the directory's
permissions are the authorisation (the launcher creates it 0700 when it makes it).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from masterworker.system.errors import BadInput, MasterworkerError
from masterworker.zk.reconfig import Reconfigurer
from masterworker.zk.server import LocalZooKeeper

LAUNCHER = "launcher.json"
REQUESTS = "requests"


def _write_atomically(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value))
    tmp.rename(path)


def announce(zk: LocalZooKeeper) -> None:
    """Tell other commands that a launcher runs this data directory, and what it runs."""
    (zk.data_dir / REQUESTS).mkdir(mode=0o700, parents=True, exist_ok=True)
    servers = [{"sid": s.sid, "address": s.address, "role": s.config.role} for s in zk.servers]
    _write_atomically(
        zk.data_dir / LAUNCHER, {"pid": os.getpid(), "connect_string": zk.connect_string, "servers": servers}
    )


def withdraw(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / LAUNCHER).unlink()


def launcher_pid(data_dir: Path) -> int | None:
    """The pid of the launcher serving ``data_dir``, or None when none runs."""
    try:
        pid = int(json.loads((data_dir / LAUNCHER).read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid


def ask(data_dir: Path, request: dict, timeout: float = 120.0) -> dict:
    """Hand a request to the running launcher and wait for its answer."""
    data_dir = data_dir.resolve()
    if launcher_pid(data_dir) is None:
        raise MasterworkerError(f"no 'mw zk start' is running with data directory {data_dir}")
    name = uuid.uuid4().hex
    requests = data_dir / REQUESTS
    _write_atomically(requests / f"{name}.request.json", request)
    answer = requests / f"{name}.answer.json"
    deadline = time.monotonic() + timeout
    while not answer.exists():
        if time.monotonic() > deadline or launcher_pid(data_dir) is None:
            with contextlib.suppress(FileNotFoundError):
                (requests / f"{name}.request.json").unlink()
            raise MasterworkerError(f"the launcher of {data_dir} did not answer within {timeout:g} s")
        time.sleep(0.05)
    result = json.loads(answer.read_text())
    answer.unlink()
    return result


def serve(zk: LocalZooKeeper, reconfigurer: Reconfigurer) -> None:
    """In the launcher: carry out every waiting request, one at a time, and answer each."""
    requests = zk.data_dir / REQUESTS
    for path in sorted(requests.glob("*.request.json")):
        try:
            request = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not fully there, or a stranger's file
        path.unlink()
        try:
            answer = {"ok": True, **carry_out(reconfigurer, request)}
        except MasterworkerError as exc:
            answer = {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
        except Exception as exc:  # one line back to the asker; the launcher goes on serving
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "exit_code": 1}
        _write_atomically(requests / path.name.replace(".request.", ".answer."), answer)
        announce(zk)


def carry_out(reconfigurer: Reconfigurer, request: dict) -> dict:
    """One change of the ensemble, as ``mw zk reconfig`` asked for it."""
    op = request.get("op")
    from_config = request.get("from_config")
    actions: dict[str, Callable[[], object]] = {
        "add": lambda: reconfigurer.add(int(request["count"]), bool(request.get("observer")), from_config),
        "remove": lambda: reconfigurer.remove([int(s) for s in request["sids"]], from_config),
        "role": lambda: reconfigurer.set_role(int(request["sid"]), bool(request["observer"]), from_config),
    }
    if op not in actions:
        raise BadInput(f"unknown reconfiguration {op!r}")
    return actions[op]().as_dict()  # type: ignore[attr-defined]
