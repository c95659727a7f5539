"""setup.sh as a new user meets it: a line per step, a half-made .venv repaired, the Python it needs named.

Runs the real script on a copy of the project (the files a clone has), so the suite's own .venv
is never touched. The install is from requirements.lock with hashes, as on a fresh machine.
"""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "masterworker-clone"
    copy.mkdir()
    for name in ("setup.sh", "pyproject.toml", "requirements.lock", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "masterworker", copy / "masterworker", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def setup_sh(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "setup.sh", *args], cwd=project, capture_output=True, text=True, timeout=600, env=env
    )


@pytest.mark.timeout(660)
def test_a_half_made_venv_is_made_again_and_every_step_is_said(project: Path) -> None:
    venv.create(project / ".venv", with_pip=False)  # what an interrupted first run can leave
    result = setup_sh(project, "test", "--version")
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [line for line in result.stderr.splitlines() if line.startswith("setup: ")]
    assert steps[0] == "setup: .venv is incomplete (no working python or pip in it): making it again"
    assert any(line.startswith("setup: installing ") and "requirements.lock" in line for line in steps)
    assert steps[-1] == "setup: running: pytest --version"
    again = setup_sh(project, "test", "--version")  # idempotent: nothing to install the second time
    assert [line for line in again.stderr.splitlines() if line.startswith("setup: ")] == [
        "setup: running: pytest --version"
    ]


def test_a_python_too_old_or_missing_is_named_in_one_line(project: Path) -> None:
    result = setup_sh(project, "test", env={"PATH": "/usr/bin:/bin", "PYTHON": "/nonexistent/python3"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs Python 3.11 or newer" in lines[0] and "/nonexistent/python3" in lines[0]
    assert not (project / ".venv").exists()


def test_an_unknown_job_prints_the_usage(project: Path) -> None:
    result = setup_sh(project, "deploy")
    assert result.returncode == 2
    assert result.stderr.strip() == "usage: bash setup.sh demo|test|lock [extra arguments for mw demo or pytest]"
