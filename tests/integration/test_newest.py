"""The newest releases inside pyproject.toml's ranges still work: the lock is not the only truth.

setup.sh installs the pinned versions of requirements.lock; a user who runs ``pip install
masterworker`` gets whatever is newest inside the ranges on that day (a new typer once broke
every help page). This installs the package that way into a fresh virtual environment and runs,
as that user would: every help page, then a master, a worker and a submitted task.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

from masterworker.lab.processes import MwProcess, mw_env
from tests.conftest import SESSION_TIMEOUT
from tests.unit.test_help_pages import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def newest_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("newest") / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    return python


@pytest.mark.timeout(600)
def test_every_help_page_renders_with_the_newest_releases(newest_python: Path) -> None:
    broken = []
    for path, _ in COMMANDS:
        result = subprocess.run(
            [str(newest_python), "-m", "masterworker", *path, "--help"], capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0 or "Traceback" in result.stderr:
            broken.append(f"mw {' '.join(path)} --help: {result.stderr.strip().splitlines()[-1:]}")
    versions = subprocess.run(
        [str(newest_python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, timeout=60
    ).stdout
    assert not broken, "\n".join(broken) + "\nwith:\n" + versions


@pytest.mark.timeout(600)
def test_a_task_runs_end_to_end_with_the_newest_releases(newest_python: Path, zk_hosts: str, tmp_path: Path) -> None:
    env = mw_env(zk_hosts, SESSION_TIMEOUT)
    roles = []
    try:
        for args in (["master", "--id", "m1"], ["worker", "--id", "w1"]):
            roles.append(MwProcess(args, env, tmp_path / f"{args[0]}.log", python=str(newest_python)))
        result = subprocess.run(
            [str(newest_python), "-m", "masterworker", "submit", "--timeout", "60", "--", "echo", "newest"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr
        assert "done on w1" in result.stdout and "newest" in result.stdout
    finally:
        for role in roles:
            role.stop()
