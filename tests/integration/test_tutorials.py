"""Every tutorial, every command, against real ZooKeeper: a tutorial that drifts from the code fails CI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from masterworker.lab.tutorial import chapters, run_tutorial
from masterworker.zk.server import free_port
from tests.helpers import run_mw


@pytest.mark.timeout(300)
@pytest.mark.parametrize("chapter", chapters(), ids=lambda p: p.stem)
def test_every_step_shows_what_the_tutorial_says(chapter: Path) -> None:
    outcomes = list(run_tutorial(chapter, Path(sys.executable).parent, free_port()))
    assert outcomes, f"{chapter.name} has no runnable steps"
    last = outcomes[-1]
    assert last.ok, f"{chapter.name}:{last.step.line}: $ {last.step.command}\nexpected: {last.missing}\n{last.output}"


def test_every_chapter_has_a_break_it_step_and_the_index_lists_it() -> None:
    index = (chapters()[0].parent / "README.md").read_text()
    assert len(chapters()) == 10
    for chapter in chapters():
        assert "## Break it" in chapter.read_text(), chapter.name
        assert chapter.name in index, chapter.name


def test_mw_tutorial_list_and_run() -> None:
    listing = run_mw("tutorial", "list")
    assert listing.returncode == 0 and "Introduction" in listing.stdout
    missing = run_mw("tutorial", "run", "99")
    assert missing.returncode == 2 and "no tutorial 99" in missing.stderr
