"""The docker chaos backend: the same nemesis, acting on the containers of compose/.

Containers are chosen by compose labels: ``mw.role`` (``master``, ``worker``, ``zookeeper``,
``load``) and ``mw.id`` (the role's id, or the ZooKeeper server's number). kill -9 is
``container.kill("SIGKILL")``; a SIGSTOP pause is ``container.pause()`` (the cgroup freezer:
the same effect, the process stops running and its session runs out); a restart is
``container.start()``. Sessions are expired from the session files every role publishes in
the shared ``/run/mw`` volume, exactly as the local backend does.

What it cannot do: the network faults (``nemesis.NETWORK_FAULTS``). Every container shares the
host's network (compose/host-network.yml) and reaches ZooKeeper straight at zkN:2181, its servers
each other at zkN:2888/3888: there is no link of one container's own to cut. Cutting one would
take iptables on the host (we change no host firewall) or a network per container for
``docker network disconnect`` (we create no network), or routing every role through proxies of
the chaos service, which compose starts last. ``UNSUPPORTED`` names them, and ``drive`` leaves
them out of this backend's schedule; ``mw chaos`` runs them locally.

Tested two ways: its logic with a fake docker client (tests/unit/test_docker_backend.py), and
the whole compose demo against a real engine, dockerd of its own, in tests/compose/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masterworker.system.errors import MasterworkerError
from masterworker.system.history import read_session
from masterworker.system.zkops import expire_session_id
from masterworker.zk.fourletter import four_letter, parse_lines

ROLE = "mw.role"
ID = "mw.id"
_NO_LINKS = "host networking: no link of one container's own to cut (see docker_backend.py)"
UNSUPPORTED = {
    "reconfig": "compose's ensemble is static",
    "partition-master": _NO_LINKS,
    "partition-worker": _NO_LINKS,
    "oneway-master": _NO_LINKS,
    "partition-zk": _NO_LINKS,
}


def docker_from_env() -> Any:
    """The docker SDK's client, or one clear error when there is no SDK or no engine."""
    try:
        import docker
    except ImportError:
        raise MasterworkerError("the docker backend needs the docker SDK: pip install 'masterworker[docker]'") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # docker.errors.DockerException and friends
        raise MasterworkerError(f"no Docker engine is reachable ({type(exc).__name__}); run: mw chaos") from None
    return client


class DockerBackend:
    """Implements ``nemesis.Backend`` over a compose project's containers (but the faults in ``UNSUPPORTED``)."""

    unsupported = UNSUPPORTED

    def __init__(
        self,
        docker: Any,
        zk_hosts: str,
        run_dir: Path,
        session_timeout: float,
        project: str | None = None,
        zk_port: int = 2181,
    ) -> None:
        self.docker = docker
        self.zk_hosts = zk_hosts
        self.run_dir = run_dir
        self.session_timeout = session_timeout
        self.project = project
        self.zk_port = zk_port

    def _containers(self, role: str) -> dict[str, Any]:
        labels = [f"{ROLE}={role}"] + ([f"com.docker.compose.project={self.project}"] if self.project else [])
        found = self.docker.containers.list(all=True, filters={"label": labels})
        return {c.labels[ID]: c for c in found}

    def _one(self, role: str, name: str) -> Any:
        for kind in ("master", "worker", "zookeeper", "load"):
            container = self._containers(kind).get(name) if kind == role or role == "any" else None
            if container is not None:
                return container
        raise KeyError(f"no container labelled {ID}={name}")

    def masters(self) -> list[str]:
        return sorted(self._containers("master"))

    def workers(self) -> list[str]:
        return sorted(self._containers("worker"))

    def kill(self, role: str) -> None:
        self._one("any", role).kill(signal="SIGKILL")

    def pause(self, role: str) -> None:
        self._one("any", role).pause()

    def resume(self, role: str) -> None:
        self._one("any", role).unpause()

    def restart(self, role: str) -> None:
        container = self._one("any", role)
        container.reload()
        if container.status != "running":
            container.start()

    def expire(self, role: str) -> bool:
        session = read_session(self.run_dir, role)
        if session is None:
            return False
        try:
            expire_session_id(self.zk_hosts, session, self.session_timeout)
        except Exception:
            return False
        return True

    def zk_servers(self) -> list[str]:
        return sorted(self._containers("zookeeper"))

    def zk_mode(self, server: str) -> str | None:
        container = self._containers("zookeeper")[server]
        host = container.labels.get("mw.host", container.name)
        try:
            return parse_lines(four_letter(host, self.zk_port, "srvr")).get("Mode")
        except OSError:
            return None

    def zk_leader(self) -> str | None:
        for sid in self._containers("zookeeper"):
            if self.zk_mode(sid) in ("leader", "standalone"):
                return sid
        return None

    def partition(self, role: str) -> None:
        raise MasterworkerError(f"partition-master/partition-worker: {_NO_LINKS}")

    def partition_oneway(self, role: str) -> None:
        raise MasterworkerError(f"oneway-master: {_NO_LINKS}")

    def heal_partition(self, role: str) -> None:
        """Nothing was cut."""

    def partition_zk(self, server: str) -> None:
        raise MasterworkerError(f"partition-zk: {_NO_LINKS}")

    def heal_partition_zk(self, server: str) -> None:
        """Nothing was cut."""

    def kill_zk(self, server: str) -> None:
        self._containers("zookeeper")[server].kill(signal="SIGKILL")

    def restart_zk(self, server: str) -> None:
        container = self._containers("zookeeper")[server]
        container.reload()
        if container.status != "running":
            container.start()

    def stop_load(self) -> None:
        for container in self._containers("load").values():
            container.stop(timeout=10)

    def heal(self) -> None:
        for role in ("zookeeper", "master", "worker"):
            for container in self._containers(role).values():
                container.reload()
                if container.status == "paused":
                    container.unpause()
                elif container.status != "running":
                    container.start()
