"""compose/ against the Compose specification's schema, and what the demo needs from its files.

Both forms are checked: compose/docker-compose.yml alone (any engine, the project's default
network) and with compose/host-network.yml on top (host networking, no network created).
tests/compose/ runs the host-network form on a real engine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML  # comes with check-jsonschema

HERE = Path(__file__).resolve().parents[2] / "compose"
COMPOSE = HERE / "docker-compose.yml"
HOST_NETWORK = HERE / "host-network.yml"
MW_ROLES = ("master", "worker", "load", "chaos")


def load(path: Path) -> dict[str, Any]:
    return YAML(typ="safe").load(path.read_text())


def merge(base: Any, override: Any) -> Any:
    """Compose's merge for what host-network.yml sets: mappings merge, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {key: merge(base.get(key), override[key]) if key in base else override[key] for key in override} | {
            key: value for key, value in base.items() if key not in override
        }
    return override


def host_form() -> dict[str, Any]:
    return merge(load(COMPOSE), load(HOST_NETWORK))


@pytest.mark.parametrize("path", [COMPOSE, HOST_NETWORK], ids=lambda p: p.name)
def test_compose_files_are_valid_against_the_compose_schema(path: Path) -> None:
    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("spec", [load(COMPOSE), host_form()], ids=["default", "host-network"])
def test_compose_services_follow_the_conventions_the_chaos_backend_relies_on(spec: dict[str, Any]) -> None:
    services = spec["services"]
    zookeepers = {n: s for n, s in services.items() if s["labels"]["mw.role"] == "zookeeper"}
    assert sorted(s["environment"]["ZOO_MY_ID"] for s in zookeepers.values()) == ["1", "2", "3"]
    for service in zookeepers.values():
        assert service["environment"]["ZOO_4LW_COMMANDS_WHITELIST"] == "*"
        assert service["environment"]["ZOO_SERVERS"].count("server.") == 3
        assert "zk$$ZOO_MY_ID/2181" in service["healthcheck"]["test"][-1]  # healthy = serving, in a quorum
    roles = sorted(s["labels"]["mw.role"] for s in services.values())
    assert roles.count("master") == 2 and roles.count("worker") == 3 and "load" in roles and "chaos" in roles
    for name, service in services.items():
        if service["labels"]["mw.role"] in MW_ROLES:
            assert service["environment"]["MW_ZK"] == "zk1:2181,zk2:2181,zk3:2181", name
            assert service["environment"]["MW_RUN_DIR"] == "/run/mw", name
            assert {service["depends_on"][zk]["condition"] for zk in zookeepers} == {"service_healthy"}, name
    chaos = services["chaos"]
    assert chaos["entrypoint"][:4] == ["mw", "chaos", "--backend", "docker"]
    assert chaos["environment"]["MW_SESSION_TIMEOUT"] in chaos["entrypoint"]  # one session timeout for all
    assert any(v.endswith(":/var/run/docker.sock") for v in chaos["volumes"])
    assert set(chaos["depends_on"]) == set(services) - {"chaos"}  # `run chaos` starts everything else


@pytest.mark.parametrize("spec", [load(COMPOSE), host_form()], ids=["default", "host-network"])
def test_one_build_of_the_mw_image_and_an_init_as_pid_1(spec: dict[str, Any]) -> None:
    services = spec["services"]
    mw = {n: s for n, s in services.items() if s["labels"]["mw.role"] in MW_ROLES}
    builders = [n for n, s in services.items() if "build" in s]
    assert builders == ["master-1"], "exactly one service builds the mw image: a dependency of chaos"
    assert {s["image"] for s in mw.values()} == {"masterworker:local"}
    assert all(s["pull_policy"] == "never" for n, s in mw.items() if n not in builders)
    assert all(s["init"] is True for s in services.values()), "PID 1 must forward SIGTERM"
    assert services["master-1"]["build"]["dockerfile"] == "compose/Dockerfile"


def test_the_host_network_form_creates_no_network_and_gives_each_server_its_own_loopback_address() -> None:
    spec = host_form()
    assert "networks" not in spec
    addresses: dict[str, str] = {}
    for name, service in spec["services"].items():
        assert service["network_mode"] == "host", name
        assert "networks" not in service and "ports" not in service, name
        hosts = dict(entry.split(":", 1) for entry in service["extra_hosts"])
        assert set(hosts) == {"zk1", "zk2", "zk3"}, name
        assert addresses in ({}, hosts), name
        addresses = hosts
    assert len(set(addresses.values())) == 3 and all(a.startswith("127.") for a in addresses.values())
    for n in ("1", "2", "3"):
        servers = spec["services"][f"zk{n}"]["environment"]["ZOO_SERVERS"].split()
        assert servers == [f"server.{i}=zk{i}:2888:3888;zk{i}:2181" for i in (1, 2, 3)]
    assert spec["services"]["master-1"]["build"]["network"] == "host"


def test_the_offline_script_provides_the_images_the_compose_file_and_the_dockerfile_use() -> None:
    listed = subprocess.run(["bash", str(HERE / "offline-images.sh"), "--list"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    zookeeper = {s["image"] for s in load(COMPOSE)["services"].values() if s["labels"]["mw.role"] == "zookeeper"}
    python = re.search(r"^FROM (\S+)", (HERE / "Dockerfile").read_text(), re.M)
    assert python is not None
    assert listed.stdout.split() == [*zookeeper, python.group(1)]
    for kind in ("zookeeper", "python"):
        assert (HERE / "offline" / kind / "Dockerfile").read_text().count("FROM debian:bookworm-slim") == 1


def test_the_zookeeper_stand_in_writes_the_configuration_the_official_image_would(tmp_path: Path) -> None:
    """Its entrypoint, run here on the host form's zk2 variables (with `true` as the server)."""
    env = dict(host_form()["services"]["zk2"]["environment"])
    dockerfile = (HERE / "offline" / "zookeeper" / "Dockerfile").read_text()
    image_env = re.search(r"^ENV (.*?)\n(?=\S)", dockerfile, re.M | re.S)
    assert image_env is not None
    defaults = dict(pair.split("=", 1) for pair in image_env.group(1).replace("\\\n", " ").split())
    dirs = {"ZOO_CONF_DIR": "conf", "ZOO_DATA_DIR": "data", "ZOO_DATA_LOG_DIR": "datalog", "ZOO_LOG_DIR": "logs"}
    for variable, sub in dirs.items():
        (tmp_path / sub).mkdir()
        defaults[variable] = str(tmp_path / sub)
    entrypoint = HERE / "offline" / "zookeeper" / "docker-entrypoint.sh"
    result = subprocess.run(
        ["bash", str(entrypoint), "true"], env={"PATH": "/usr/bin:/bin"} | defaults | env, capture_output=True
    )
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "conf" / "zoo.cfg").read_text().splitlines()
    assert (tmp_path / "data" / "myid").read_text().strip() == "2"
    for line in (
        "tickTime=500",
        "standaloneEnabled=false",
        "admin.enableServer=false",
        "4lw.commands.whitelist=*",
        f"dataDir={tmp_path / 'data'}",
        "server.2=zk2:2888:3888;zk2:2181",
    ):
        assert line in config, (line, config)
    assert sum(line.startswith("server.") for line in config) == 3
