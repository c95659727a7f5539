"""Liveness: how long each fault left the system without an active master, and without progress.

Safety (the checker's first half) says nothing bad happened; liveness says something good kept
happening. Both measures come from the recorded history alone, held against a budget (the
session timeout plus a margin): a fault the system should heal by itself (a backup takes over, a
task goes to another worker) must not stall it for longer than a session takes to expire and a
little more. A run that blows the budget fails, naming the fault.

- **without a master**: a master *reigns* from its ``elected`` record until it records
  ``deposed``, or another master is elected. A fault aimed at the reigning master (killed,
  paused, cut off, its session expired) *impairs* the reign from the fault's start: the master
  may still believe it is master, but it cannot act. The impairment ends with the reign, or with
  the fault's heal when the master survived it. Time covered by no unimpaired reign is time
  without an active master.
- **completion gap**: a stretch with work outstanding (a task acknowledged and not yet
  completed) and no completion record written.

Faults inside ZooKeeper that leave no quorum to write to are measured from the moment ZooKeeper
accepts writes again: until then no client can progress, and how long ZooKeeper takes is its own
doing (the restarted JVMs' start, its election, its failure detection of ``syncLimit`` ticks),
not masterworker's. ``zk-quorum-loss`` (2 of 3 servers down: unhealable on purpose until the
nemesis restarts them) and ``partition-zk`` (the leader cut off from its peers: it holds on for
``syncLimit`` ticks, 5 s with the launcher's settings, before the others elect a new one) count
from their ``writable`` record (an older history's quorum loss has only ``recovered``). The time
between such a fault's start and then is cut out of both measures.

A stretch is charged, with its whole length, to the fault under way (from its start to its heal
or recovery) when the stretch began, or to the ZooKeeper outage it began in (cut where writes were
accepted again: the masters electing one of them again afterwards is that outage's doing); else
to the first fault that started during it (a gap that began in the lull just before a fault is
that fault's doing); else to the fault whose window (from its start to the next fault's start)
it began in, or to ``(no fault)`` before the first.
A stretch that runs on past its fault's heal into the next fault stays its own fault's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Faults that leave ZooKeeper unable to write for a while (zk-quorum-loss on purpose, partition-zk for syncLimit ticks)
ZOOKEEPER_OUTAGES = frozenset({"zk-quorum-loss", "partition-zk"})
NO_FAULT = "(no fault)"
DEFAULT_MARGIN = 3.0  # seconds on top of the session timeout; see README ("Liveness") for the measurements


@dataclass
class Reign:
    """A master's time as the elected master, and the parts of it a fault impaired."""

    master: str
    epoch: int | None
    start: float
    end: float
    impaired: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class FaultWindow:
    fault: str
    target: str
    start: float
    end: float  # the next fault's start, or the end of the history
    healed: float | None  # when the nemesis removed the cause (None: not recorded)
    recovered: float | None = None  # when the nemesis saw the recovery it waits for (or gave up)
    writable: float | None = None  # when the nemesis saw ZooKeeper accept writes again (the outages)
    without_master: float = 0.0  # the longest stretch without an active master charged to this fault
    completion_gap: float = 0.0  # the longest stretch without a completion, work outstanding

    @property
    def measured_from(self) -> float:
        """From when the fault's stretches count: its start, or when ZooKeeper accepted writes again."""
        if self.fault not in ZOOKEEPER_OUTAGES:
            return self.start
        return next((t for t in (self.writable, self.recovered, self.healed) if t is not None), self.end)

    @property
    def under_way(self) -> tuple[float, float]:
        """From its start to its heal or recovery, whichever came first (else its window's end)."""
        ends = [t for t in (self.healed, self.recovered) if t is not None]
        return self.start, min(ends) if ends else self.end

    def as_dict(self, budget: float | None) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "target": self.target,
            "start": self.start,
            "healed": self.healed,
            "measured_from": self.measured_from,
            "writable": self.writable,
            "zookeeper_outage": self.fault in ZOOKEEPER_OUTAGES,
            "without_master_s": round(self.without_master, 3),
            "completion_gap_s": round(self.completion_gap, 3),
            "within_budget": None if budget is None else max(self.without_master, self.completion_gap) <= budget,
        }


@dataclass
class Liveness:
    windows: list[FaultWindow]
    reigns: list[Reign]
    no_master: list[tuple[float, float]]  # healable stretches without an active master
    gaps: list[tuple[float, float]]  # healable stretches without a completion while work was outstanding
    budget: float | None = None

    def worst(self) -> dict[str, dict[str, float]]:
        """Per fault type: the worst time without a master and the worst completion gap."""
        worst: dict[str, dict[str, float]] = {}
        for window in self.windows:
            entry = worst.setdefault(window.fault, {"without_master_s": 0.0, "completion_gap_s": 0.0})
            entry["without_master_s"] = round(max(entry["without_master_s"], window.without_master), 3)
            entry["completion_gap_s"] = round(max(entry["completion_gap_s"], window.completion_gap), 3)
        return worst

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget_s": self.budget,
            "per_fault": self.worst(),
            "windows": [w.as_dict(self.budget) for w in self.windows],
        }

    @property
    def violations(self) -> list[str]:
        if self.budget is None:
            return []
        found = []
        for window in self.windows:
            for what, seconds in (("without an active master", window.without_master),
                                  ("without a completion", window.completion_gap)):  # fmt: skip
                if seconds > self.budget:
                    on = f" on {window.target}" if window.target else ""
                    found.append(
                        f"liveness: {window.fault}{on} left the system {what} for {seconds:.1f} s "
                        f"(budget {self.budget:.1f} s)"
                    )
        return found


def measure(events: list[dict[str, Any]], budget: float | None = None) -> Liveness:
    """``events``: the merged history, in time order."""
    if not events:
        return Liveness([], [], [], [], budget)
    events = checked(events)
    if not events:
        return Liveness([], [], [], [], budget)
    first, last = events[0]["t"], events[-1]["t"]
    windows = _windows(events, last)
    unhealable = [(w.start, w.measured_from) for w in windows if w.fault in ZOOKEEPER_OUTAGES]
    reigns = _reigns(events, windows, last)
    no_master = _cut(_complement(_active(reigns), reigns[0].start if reigns else first, last), unhealable)
    gaps = _cut(_completion_gaps(events, last), unhealable)
    for stretches, attribute in ((no_master, "without_master"), (gaps, "completion_gap")):
        for start, end in stretches:
            for window in _charged(windows, start, end):
                setattr(window, attribute, max(getattr(window, attribute), end - start))
    return Liveness(windows, reigns, no_master, gaps, budget)


def checked(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history in time order, up to the controller's ``end`` record: what comes after it (the
    processes being stopped one by one, masters handing over as they go) is not the run's."""
    events = sorted(events, key=lambda e: e["t"])  # stable: records of one instant keep their order
    end = next((i for i, e in enumerate(events) if e.get("type") == "end"), None)
    return events if end is None else events[: end + 1]


def _windows(events: list[dict[str, Any]], last: float) -> list[FaultWindow]:
    """One window per fault, from its start to the next fault's start, with its ``healed`` and
    ``recovered`` (or ``unrecovered``) records' times when the nemesis wrote them."""
    windows: list[FaultWindow] = []
    for event in events:
        kind = event.get("type")
        if kind == "fault":
            if windows:
                windows[-1].end = event["t"]
            windows.append(FaultWindow(event["fault"], str(event.get("target", "")), event["t"], last, None))
        elif kind in ("healed", "writable", "recovered", "unrecovered") and windows[-1:] and ours(windows[-1], event):
            setattr(windows[-1], "recovered" if kind == "unrecovered" else kind, event["t"])
    windows.insert(0, FaultWindow(NO_FAULT, "", events[0]["t"], windows[0].start if windows else last, None))
    return windows


def ours(window: FaultWindow, event: dict[str, Any]) -> bool:
    return window.fault == event.get("fault")


def _reigns(events: list[dict[str, Any]], windows: list[FaultWindow], last: float) -> list[Reign]:
    reigns: list[Reign] = []
    for event in events:
        kind = event.get("type")
        if kind == "elected":
            if reigns and reigns[-1].end == last:
                reigns[-1].end = event["t"]
            reigns.append(Reign(str(event.get("master")), event.get("epoch"), event["t"], last))
        elif kind == "deposed" and reigns and reigns[-1].master == event.get("master") and reigns[-1].end == last:
            reigns[-1].end = event["t"]
    for reign in reigns:
        for window in windows:
            if window.target == reign.master and reign.start <= window.start < reign.end:
                reign.impaired.append((window.start, min(max(window.under_way[1], window.start), reign.end)))
    return reigns


def _active(reigns: list[Reign]) -> list[tuple[float, float]]:
    """The stretches some reign covers unimpaired, merged."""
    active: list[tuple[float, float]] = []
    for reign in reigns:
        active += _cut([(reign.start, reign.end)], reign.impaired)
    return _merge(active)


def _completion_gaps(events: list[dict[str, Any]], last: float) -> list[tuple[float, float]]:
    outstanding: set[str] = set()
    completed: set[str] = set()
    since: float | None = None  # the last completion (or the arrival of work), while work is outstanding
    gaps = []
    for event in events:
        kind = event.get("type")
        if kind == "submit-ok" and event["task"] not in completed:
            outstanding.add(event["task"])
            if since is None:
                since = event["t"]
        elif kind == "complete":
            if since is not None:
                gaps.append((since, event["t"]))
            outstanding.discard(event["task"])
            completed.add(event["task"])
            since = event["t"] if outstanding else None
    if since is not None:
        gaps.append((since, last))
    return gaps


def _merge(stretches: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(s for s in stretches if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _complement(covered: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    holes, at = [], start
    for a, b in covered:
        if a > at:
            holes.append((at, min(a, end)))
        at = max(at, b)
    if at < end:
        holes.append((at, end))
    return [h for h in holes if h[1] > h[0]]


def _cut(stretches: list[tuple[float, float]], removed: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``stretches`` without the parts inside any of ``removed``."""
    result = []
    for start, end in stretches:
        pieces = [(start, end)]
        for a, b in removed:
            pieces = [p for s, e in pieces for p in ((s, min(e, a)), (max(s, b), e)) if p[1] > p[0]]
        result += pieces
    return result


def _charged(windows: list[FaultWindow], start: float, end: float) -> list[FaultWindow]:
    """The fault(s) a stretch is charged to; see the module docstring."""
    faults = [w for w in windows if w.fault != NO_FAULT]
    under_way = [w for w in faults if w.under_way[0] <= start < w.under_way[1]]
    # cut where ZooKeeper came back: it began during the outage (masters re-electing afterwards)
    resumed = [w for w in faults if w.fault in ZOOKEEPER_OUTAGES and w.start < start == w.measured_from]
    began = [w for w in faults if start < w.start <= end][:1]
    return under_way or resumed or began or [w for w in windows if w.start <= start < w.end][:1]
