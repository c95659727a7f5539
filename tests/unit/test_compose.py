"""compose/docker-compose.yml against the Compose specification's schema, and what the demo needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML  # comes with check-jsonschema

COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"


def test_compose_file_is_valid_against_the_compose_schema() -> None:
    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_follow_the_conventions_the_chaos_backend_relies_on() -> None:
    spec = YAML(typ="safe").load(COMPOSE.read_text())
    services = spec["services"]
    zookeepers = {n: s for n, s in services.items() if s["labels"]["mw.role"] == "zookeeper"}
    assert sorted(s["environment"]["ZOO_MY_ID"] for s in zookeepers.values()) == ["1", "2", "3"]
    for service in zookeepers.values():
        assert service["environment"]["ZOO_4LW_COMMANDS_WHITELIST"] == "*"
        assert service["environment"]["ZOO_SERVERS"].count("server.") == 3
    roles = sorted(s["labels"]["mw.role"] for s in services.values())
    assert roles.count("master") == 2 and roles.count("worker") == 3 and "load" in roles and "chaos" in roles
    for name, service in services.items():
        if service["labels"]["mw.role"] in ("master", "worker", "load", "chaos"):
            assert service["environment"]["MW_ZK"] == "zk1:2181,zk2:2181,zk3:2181", name
            assert service["environment"]["MW_RUN_DIR"] == "/run/mw", name
    assert services["chaos"]["command"][:3] == ["chaos", "--backend", "docker"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["chaos"]["volumes"]
