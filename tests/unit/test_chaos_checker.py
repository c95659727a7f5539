"""The checker and the nemesis schedule on histories made by hand."""

from __future__ import annotations

from itertools import islice

from masterworker.lab.chaos.checker import check
from masterworker.lab.chaos.nemesis import FAULTS, schedule


def ev(kind: str, **fields) -> dict:
    return {"t": 0.0, "type": kind, **fields}


def test_a_clean_history_passes_and_reexecutions_are_counted_not_condemned() -> None:
    events = [
        ev("submit-ok", task="t1"), ev("submit-ok", task="t2"),
        ev("exec-start", task="t1", worker="w1"), ev("exec-start", task="t1", worker="w2"),
        ev("complete", task="t1", worker="w2"), ev("discard", task="t1", worker="w1"),
        ev("exec-start", task="t2", worker="w1"), ev("complete", task="t2", worker="w1"),
        ev("fault", fault="kill-worker", target="w1"), ev("recovered", fault="kill-worker", seconds=2.5),
    ]  # fmt: skip
    report = check(events, {"t1", "t2"}, drain_seconds=0.2)
    assert report.ok and report.violations == []
    assert (report.acknowledged, report.executions, report.reexecuted_tasks, report.discarded_results) == (2, 3, 1, 1)
    assert report.as_dict()["recovery_seconds"] == {"kill-worker": {"count": 1, "max": 2.5, "mean": 2.5}}


def test_lost_duplicate_and_phantom_are_violations() -> None:
    events = [
        ev("submit-ok", task="lost"), ev("submit-ok", task="twice"),
        ev("complete", task="twice", worker="w1"), ev("complete", task="twice", worker="w2"),
    ]  # fmt: skip
    report = check(events, {"twice", "nobody-asked"})
    assert not report.ok
    assert report.lost == ["lost"]
    assert report.duplicates == {"twice": ["w1", "w2"]}
    assert "phantom: nobody-asked was completed but never submitted" in report.violations


def test_a_record_for_a_submit_whose_outcome_is_unknown_is_no_phantom() -> None:
    report = check([ev("submit-unknown", op=3)], {"maybe-mine"})
    assert report.ok and report.phantoms == ["maybe-mine"]


def test_the_schedule_is_seeded_and_fires_every_fault_in_each_round() -> None:
    first = list(islice(schedule(FAULTS, 7), 2 * len(FAULTS)))
    assert first == list(islice(schedule(FAULTS, 7), 2 * len(FAULTS)))
    assert first != list(islice(schedule(FAULTS, 8), 2 * len(FAULTS)))
    assert sorted(first[: len(FAULTS)]) == sorted(FAULTS) == sorted(first[len(FAULTS) :])
