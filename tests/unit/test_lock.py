"""requirements.lock and pyproject.toml agree, and the suite runs on exactly what the lock pins.

setup.sh (and so CI) installs requirements.lock with ``--require-hashes``; pyproject.toml keeps the
ranges. A dependency added or a bound moved without ``bash setup.sh lock`` fails here, not on a
user's machine.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\#]+?))?\s*\\?\s*(?:#.*)?$")


def locked() -> dict[str, list[tuple[str, str | None]]]:
    """name -> [(version, marker)], one entry per pin (a universal lock may pin a name twice)."""
    pins: dict[str, list[tuple[str, str | None]]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            name, pinned, marker = match.groups()
            pins.setdefault(canonicalize_name(name), []).append((pinned, marker))
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = list(project["project"]["dependencies"])
    for extra in project["project"]["optional-dependencies"].values():
        requirements += extra
    requirements += project["build-system"]["requires"]
    return [Requirement(r) for r in requirements]


def applies(marker: str | None) -> bool:
    return marker is None or Marker(marker).evaluate()


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    pins = locked()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in pyproject.toml but not in requirements.lock: bash setup.sh lock"
        for pinned, _marker in pins[name]:
            assert requirement.specifier.contains(pinned, prereleases=True), (
                f"requirements.lock pins {name}=={pinned}, outside pyproject.toml's {requirement}: bash setup.sh lock"
            )


def test_every_range_has_an_upper_bound() -> None:
    for requirement in declared():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators & {"<", "<=", "==", "~=", "==="}, f"{requirement} has no upper bound"


def test_every_pin_carries_hashes() -> None:
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    for block in blocks:
        if block.startswith("#"):
            continue
        assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


def test_the_suite_runs_on_the_locked_versions() -> None:
    """What setup.sh installed is what the lock says (pip honoured it; nothing upgraded it since)."""
    mismatched = []
    for name, entries in locked().items():
        wanted = [pinned for pinned, marker in entries if applies(marker)]
        if not wanted or name in {"setuptools"}:  # the build backend may be absent from a venv
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            mismatched.append(f"{name} (not installed)")
            continue
        if installed not in wanted:
            mismatched.append(f"{name} {installed} (lock: {', '.join(wanted)})")
    assert not mismatched, "installed versions differ from requirements.lock: " + "; ".join(mismatched)
