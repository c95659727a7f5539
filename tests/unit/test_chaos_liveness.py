"""Liveness on histories made by hand: time without a master, completion gaps, the budget."""

from __future__ import annotations

from masterworker.lab.chaos.checker import check
from masterworker.lab.chaos.liveness import NO_FAULT, measure


def ev(t: float, kind: str, **fields) -> dict:
    return {"t": t, "type": kind, **fields}


def steady(start: float, end: float, every: float = 0.5, prefix: str = "t") -> list[dict]:
    """A task acknowledged and completed every ``every`` seconds."""
    events, t, n = [], start, 0
    while t < end:
        events += [ev(t, "submit-ok", task=f"{prefix}{n}"), ev(t + 0.3, "complete", task=f"{prefix}{n}", worker="w1")]
        t += every
        n += 1
    return events


def test_a_killed_master_leaves_the_system_without_a_master_until_the_next_election() -> None:
    events = [
        ev(0.0, "elected", master="m1", epoch=1),
        *steady(0.1, 10.0),
        ev(10.0, "fault", fault="kill-master", target="m1"),
        ev(10.2, "submit-ok", task="late"),
        ev(12.4, "elected", master="m2", epoch=2),
        ev(12.4, "recovered", fault="kill-master", seconds=2.4),
        ev(12.9, "complete", task="late", worker="w2"),
        *steady(13.0, 15.0, prefix="u"),
    ]
    live = measure(events, budget=5.0)
    [before, kill] = live.windows
    assert before.fault == NO_FAULT and before.without_master == 0.0
    assert kill.fault == "kill-master" and round(kill.without_master, 3) == 2.4
    assert round(kill.completion_gap, 3) == 2.7  # from the arrival of work at 10.2 (nothing was owed before)
    assert live.violations == []
    assert live.worst()["kill-master"] == {"without_master_s": 2.4, "completion_gap_s": 2.7}


def test_a_master_that_blows_the_budget_fails_the_run_naming_the_fault() -> None:
    events = [
        ev(0.0, "elected", master="m1", epoch=1),
        ev(0.5, "submit-ok", task="a"),
        ev(1.0, "fault", fault="oneway-master", target="m1"),
        ev(9.0, "healed", fault="oneway-master"),  # it survived the cut: still master, after 8 s of nothing
        ev(9.5, "complete", task="a", worker="w1"),
    ]
    report = check(events, {"a"}, budget=4.0)
    assert not report.ok
    assert report.violations == [
        "liveness: oneway-master on m1 left the system without an active master for 8.0 s (budget 4.0 s)",
        "liveness: oneway-master on m1 left the system without a completion for 9.0 s (budget 4.0 s)",
    ]
    assert report.as_dict()["liveness"]["per_fault"]["oneway-master"] == {
        "without_master_s": 8.0,
        "completion_gap_s": 9.0,
    }


def test_a_deposed_master_counts_until_the_next_election_and_stale_depositions_are_ignored() -> None:
    events = [
        ev(0.0, "elected", master="m1", epoch=1),
        ev(1.0, "fault", fault="kill-zk-leader", target="ZooKeeper server 2"),
        ev(1.5, "deposed", master="m1"),  # its session was lost with the leader
        ev(2.5, "elected", master="m1", epoch=2),
        ev(3.0, "recovered", fault="kill-zk-leader", seconds=2.0),
        ev(4.0, "fault", fault="partition-master", target="m1"),
        ev(6.0, "elected", master="m3", epoch=3),
        ev(7.0, "deposed", master="m1"),  # the zombie hears of it after the heal: m3 reigns on
        ev(8.0, "fault", fault="kill-worker", target="w1"),
        ev(9.0, "recovered", fault="kill-worker", seconds=1.0),
    ]
    windows = {w.fault: w for w in measure(events).windows}
    assert windows["kill-zk-leader"].without_master == 1.0
    assert windows["partition-master"].without_master == 2.0
    assert windows["kill-worker"].without_master == 0.0
    assert measure(events).violations == []  # no budget given: measured, not judged


def test_an_unhealable_fault_is_measured_from_its_heal() -> None:
    events = [
        ev(0.0, "elected", master="m1", epoch=1),
        *steady(0.1, 5.0),
        ev(5.0, "submit-ok", task="stuck"),
        ev(5.1, "fault", fault="zk-quorum-loss", target="ZooKeeper servers 1 and 2"),
        ev(13.0, "healed", fault="zk-quorum-loss"),  # the servers restarted...
        ev(15.0, "recovered", fault="zk-quorum-loss", seconds=2.0),  # ...and writes accepted: measured from here
        ev(16.5, "complete", task="stuck", worker="w1"),
    ]
    [_, loss] = measure(events, budget=3.0).windows
    assert loss.measured_from == 15.0 and round(loss.completion_gap, 3) == 1.5
    assert measure(events, budget=3.0).violations == []
    without_recovery = [e for e in events if e["type"] != "recovered"]  # then from the heal
    [_, loss] = measure(without_recovery, budget=3.0).windows
    assert loss.measured_from == 13.0 and round(loss.completion_gap, 3) == 3.5
    assert measure(events, budget=1.0).violations == [
        "liveness: zk-quorum-loss on ZooKeeper servers 1 and 2 left the system without a completion for 1.5 s "
        "(budget 1.0 s)"
    ]


def test_no_outstanding_work_is_no_gap_and_a_gap_stays_with_the_fault_it_began_under() -> None:
    events = [
        ev(0.0, "elected", master="m1", epoch=1),
        ev(1.0, "submit-ok", task="a"),
        ev(1.5, "complete", task="a", worker="w1"),
        ev(2.0, "fault", fault="kill-worker", target="w1"),
        ev(20.0, "fault", fault="pause-worker", target="w2"),  # 18 s idle: nothing was owed
        ev(21.0, "submit-ok", task="b"),
        ev(22.0, "fault", fault="expire-session", target="w3"),
        ev(25.0, "complete", task="b", worker="w2"),
    ]
    windows = {w.fault: w for w in measure(events, budget=3.5).windows}
    assert windows["kill-worker"].completion_gap == 0.0
    assert windows["pause-worker"].completion_gap == 4.0  # began under it, ran on into the next fault
    assert windows["expire-session"].completion_gap == 0.0
    assert measure(events, budget=3.5).violations == [
        "liveness: pause-worker on w2 left the system without a completion for 4.0 s (budget 3.5 s)"
    ]


def test_a_lost_task_is_a_gap_to_the_end_of_the_history() -> None:
    events = [ev(0.0, "elected", master="m1", epoch=1), ev(1.0, "submit-ok", task="lost"), ev(9.0, "drained")]
    live = measure(events, budget=5.0)
    assert live.gaps == [(1.0, 9.0)] and live.windows[0].completion_gap == 8.0


def test_an_empty_history_measures_nothing() -> None:
    assert measure([], budget=1.0).violations == [] and check([], set()).ok


def test_what_comes_after_the_end_record_is_not_measured() -> None:
    events = [
        ev(0.0, "elected", master="m1", epoch=1),
        ev(1.0, "fault", fault="kill-worker", target="w1"),
        ev(2.0, "recovered", fault="kill-worker", seconds=1.0),
        ev(3.0, "end"),
        ev(3.5, "deposed", master="m1"),  # the run's processes being stopped
        ev(20.0, "give-back", task="t9", worker="w2"),
    ]
    live = measure(events, budget=1.0)
    assert live.no_master == [] and live.violations == []


def test_a_cut_off_zookeeper_leader_counts_from_writable_and_a_finished_fault_is_not_blamed() -> None:
    events = [
        ev(0.0, "elected", master="m1", epoch=1),
        ev(1.0, "fault", fault="reconfig", target="the ZooKeeper ensemble"),
        ev(4.0, "recovered", fault="reconfig", seconds=3.0),
        ev(4.4, "submit-ok", task="a"),  # the gap begins after reconfig was over...
        ev(4.5, "fault", fault="partition-zk", target="ZooKeeper server 3"),  # ...and is this fault's doing
        ev(10.0, "writable", fault="partition-zk"),  # the leader held on for syncLimit ticks: ZooKeeper's time
        ev(11.0, "healed", fault="partition-zk"),
        ev(11.2, "complete", task="a", worker="w1"),
        ev(11.5, "recovered", fault="partition-zk", seconds=5.5),
    ]
    windows = {w.fault: w for w in measure(events, budget=2.0).windows}
    assert windows["reconfig"].completion_gap == 0.0
    assert windows["partition-zk"].measured_from == 10.0
    assert round(windows["partition-zk"].completion_gap, 3) == 1.2
    assert measure(events, budget=2.0).violations == []


def test_what_follows_a_quorum_loss_is_the_quorum_loss_even_when_the_next_fault_came() -> None:
    """Masters whose sessions ran out while ZooKeeper had no quorum elect one again once it is back:
    a gap in progress when writes were accepted again is the outage's, not the next fault's."""
    events = [
        ev(0.0, "elected", master="m1", epoch=1),
        *steady(0.1, 5.0),
        ev(5.0, "submit-ok", task="stuck"),
        ev(5.1, "fault", fault="zk-quorum-loss", target="ZooKeeper servers 1 and 3"),
        ev(8.1, "healed", fault="zk-quorum-loss"),
        ev(9.0, "writable", fault="zk-quorum-loss"),
        ev(9.5, "fault", fault="pause-worker", target="w2"),
        ev(10.0, "elected", master="m2", epoch=2),
        ev(11.0, "complete", task="stuck", worker="w1"),
    ]
    windows = {w.fault: w for w in measure(events, budget=5.0).windows}
    assert windows["zk-quorum-loss"].measured_from == 9.0
    assert round(windows["zk-quorum-loss"].completion_gap, 3) == 2.0
    assert windows["pause-worker"].completion_gap == 0.0
