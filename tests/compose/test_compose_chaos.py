"""The compose chaos demo on a real Docker engine, run with the command compose/README.md gives.

Installs what is missing (Debian's docker.io, compose v2), starts a dockerd of its own without
bridge networking, builds or reuses the images (compose/offline-images.sh where no registry
answers), runs the chaos service for 30 s and holds the checker to its verdict: nothing lost,
nothing completed twice, every fault type fired and recovered from. Then ``down -v`` and dockerd
stopped by its PID, also when the run fails. An engine that cannot start fails the test: it is
never skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from masterworker.lab.chaos.docker_backend import UNSUPPORTED
from masterworker.lab.chaos.nemesis import FAULTS
from tests.compose.engine import EngineError, PrivateDockerd, compose_version, install_compose, install_docker, run

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
FILES = ["-f", "compose/docker-compose.yml", "-f", "compose/host-network.yml"]
README_COMMAND = ["docker", "compose", *FILES, "run", "--rm", "--build", "chaos"]
DOWN = ["docker", "compose", *FILES, "down", "-v"]
DURATION = 30  # seconds of faults (mw chaos defaults to 60)


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    return {}


@pytest.fixture(scope="module")
def engine(timings: dict[str, float]) -> Iterator[PrivateDockerd]:
    try:
        for step, install in (("docker.io", install_docker), ("compose v2", install_compose)):
            started = time.monotonic()
            timings[step] = install() and time.monotonic() - started  # 0 when it was there already
    except EngineError as exc:
        pytest.fail(f"no Docker engine for the compose demo: {exc}")
    dockerd = PrivateDockerd(Path(os.environ.get("MW_DOCKER_DIR", "/var/lib/mw-compose")))
    started = time.monotonic()
    try:
        dockerd.start()
    except Exception as exc:  # EngineError, or a docker CLI that hung: stop what was started either way
        dockerd.stop()
        pytest.fail(f"dockerd did not start: {exc}")
    timings["dockerd"] = time.monotonic() - started
    try:
        yield dockerd
    finally:
        leftovers = dockerd.stop()
    assert not leftovers, f"still running after dockerd stopped: {leftovers}"


def test_the_readme_command_is_the_one_tested() -> None:
    for readme in (REPO / "compose" / "README.md", REPO / "compose" / "host-network.yml"):
        assert " ".join(README_COMMAND) in readme.read_text(), readme


def test_compose_itself_accepts_both_forms(engine: PrivateDockerd) -> None:
    """Compose's own loader, stricter than the schema: the default form is never run here."""
    for files in (FILES[:2], FILES):
        result = run(["docker", "compose", *files, "config", "--quiet"], 60, engine.env, REPO)
        assert result.returncode == 0, (files, result.stderr)


def test_the_chaos_demo_keeps_every_guarantee_on_a_real_engine(
    engine: PrivateDockerd, timings: dict[str, float], capsys: pytest.CaptureFixture[str]
) -> None:
    env = engine.env
    started = time.monotonic()
    images = run(["bash", "compose/offline-images.sh"], 600, env, REPO)
    timings["images"] = time.monotonic() - started
    assert images.returncode == 0, images.stderr[-3000:]

    run(DOWN, 120, env, REPO)  # a run that died before its clean-up would leave its history in the volume
    started = time.monotonic()
    try:
        chaos = run([*README_COMMAND, "--duration", str(DURATION), "--json"], 600, env, REPO)
        timings["run"] = time.monotonic() - started
    finally:
        started = time.monotonic()
        down = run(DOWN, 120, env, REPO)
        timings["down"] = time.monotonic() - started
        containers = run(["docker", "ps", "-aq"], 30, env).stdout.split()
        volumes = run(["docker", "volume", "ls", "-q"], 30, env).stdout.split()
        networks = run(["docker", "network", "ls", "--format", "{{.Name}}"], 30, env).stdout.split()
        run(["docker", "image", "prune", "-f"], 60, env)  # the mw images that earlier builds left untagged

    assert chaos.returncode == 0, _why_it_failed(chaos)
    report = _report(chaos.stdout)
    assert report["ok"] and report["violations"] == []
    assert report["lost"] == 0 and report["duplicates"] == 0 and report["phantoms"] == 0
    assert report["acknowledged"] > 0 and report["completion_records"] >= report["acknowledged"]
    # compose's ensemble is static and its network shared: no reconfig, no network faults (mw chaos runs them locally)
    assert set(report["faults"]) == set(FAULTS) - set(UNSUPPORTED), report["faults"]
    for fault, fired in report["faults"].items():
        assert report["recovery_seconds"].get(fault, {}).get("count") == fired, (fault, report["recovery_seconds"])
    assert report["drain_seconds"] is not None

    assert down.returncode == 0, down.stderr[-3000:]
    assert containers == [] and volumes == [], f"left after down -v: {containers} {volumes}"
    assert sorted(networks) == ["host", "none"], f"a network was created: {networks}"
    # Every PID 1 forwards SIGTERM (init: true): down stops the stack at once, not after docker's 10 s.
    assert timings["down"] < 8, f"down -v took {timings['down']:.1f} s: a container ignored SIGTERM"

    with capsys.disabled():
        steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items())
        print(
            f"\ncompose chaos on dockerd {_server_version(env)}, compose {compose_version()}: {steps}; "
            f"{report['acknowledged']} acknowledged, {report['completion_records']} completed, "
            f"{report['lost']} lost, {report['duplicates']} duplicates, faults {report['faults']}"
        )
        print("\n".join(line for line in images.stderr.splitlines() if line.startswith("offline-images:")))


def _why_it_failed(chaos: subprocess.CompletedProcess) -> str:
    """The checker's violations and the liveness per fault first: the whole report does not fit a message."""
    try:
        report = _report(chaos.stdout)
    except ValueError:  # no report at all: the run itself broke
        return f"exit code {chaos.returncode}\n{chaos.stdout[-3000:]}\n{chaos.stderr[-5000:]}"
    per_fault = report.get("liveness", {}).get("per_fault")
    return (
        f"exit code {chaos.returncode}; violations: {report.get('violations')}; lost {report.get('lost')}, "
        f"duplicates {report.get('duplicates')}; liveness per fault: {per_fault}\n{chaos.stderr[-3000:]}"
    )


def _report(stdout: str) -> dict:
    """The JSON report: the last thing on stdout (compose may print a dependency's build before it)."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def _server_version(env: dict[str, str]) -> str:
    return run(["docker", "version", "--format", "{{.Server.Version}}"], 30, env).stdout.strip()
