"""The checker: does a recorded history keep masterworker's guarantees? (book chapters 1 and 5)

It reads what every process recorded (submits, executions, completions, faults) and what
ZooKeeper holds at the end (the completion records), and decides:

- **lost**: an acknowledged submit with no completion record once the faults have healed;
- **duplicate**: a task completed by more than one execution (two workers each wrote a
  record, or one overwrote the other);
- **phantom**: a completion record for a task nobody submitted (only submits whose outcome is
  unknown may explain one);
- re-executions are counted, not condemned: execution is at-least-once by design;
- **liveness** (``liveness.py``): per fault, the time without an active master and the longest
  gap in completions, held against a budget (the session timeout plus a margin).

A violation makes ``mw chaos`` exit non-zero.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from masterworker.lab.chaos.liveness import Liveness, measure


@dataclass
class CheckReport:
    acknowledged: int = 0
    unknown_submits: int = 0
    failed_submits: int = 0
    completion_records: int = 0
    executions: int = 0
    reexecuted_tasks: int = 0
    discarded_results: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    phantoms: list[str] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)
    recoveries: dict[str, list[float]] = field(default_factory=dict)
    drain_seconds: float | None = None
    liveness: Liveness | None = None

    @property
    def violations(self) -> list[str]:
        found = [f"lost: {task} was acknowledged but never completed" for task in self.lost]
        found += [
            f"duplicate: {task} was completed {len(who)} times (by {', '.join(who)})"
            for task, who in self.duplicates.items()
        ]
        if len(self.phantoms) > self.unknown_submits:
            found += [f"phantom: {task} was completed but never submitted" for task in self.phantoms]
        if self.liveness is not None:
            found += self.liveness.violations
        return found

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": self.violations,
            "acknowledged": self.acknowledged,
            "unknown_submits": self.unknown_submits,
            "failed_submits": self.failed_submits,
            "completion_records": self.completion_records,
            "lost": len(self.lost),
            "duplicates": len(self.duplicates),
            "phantoms": len(self.phantoms),
            "executions": self.executions,
            "reexecuted_tasks": self.reexecuted_tasks,
            "discarded_results": self.discarded_results,
            "faults": dict(self.faults),
            "recovery_seconds": {
                fault: {"count": len(times), "max": round(max(times), 3), "mean": round(sum(times) / len(times), 3)}
                for fault, times in self.recoveries.items()
                if times
            },
            "drain_seconds": None if self.drain_seconds is None else round(self.drain_seconds, 3),
            "liveness": None if self.liveness is None else self.liveness.as_dict(),
        }


def check(
    events: list[dict[str, Any]], records: set[str], drain_seconds: float | None = None, budget: float | None = None
) -> CheckReport:
    """``events``: the merged history, in time order; ``records``: task names with a ``/status`` node at
    the end; ``budget``: the liveness budget in seconds (None: measure, judge nothing)."""
    report = CheckReport(drain_seconds=drain_seconds, completion_records=len(records), liveness=measure(events, budget))
    acknowledged: set[str] = set()
    completions: dict[str, list[str]] = defaultdict(list)
    executions: Counter = Counter()
    for event in events:
        kind = event.get("type")
        if kind == "submit-ok":
            acknowledged.add(event["task"])
        elif kind == "submit-unknown":
            report.unknown_submits += 1
        elif kind == "submit-fail":
            report.failed_submits += 1
        elif kind == "exec-start":
            executions[event["task"]] += 1
        elif kind == "complete":
            completions[event["task"]].append(event["worker"])
        elif kind == "discard":
            report.discarded_results += 1
        elif kind == "fault":
            report.faults[event["fault"]] += 1
        elif kind == "recovered":
            report.recoveries.setdefault(event["fault"], []).append(event["seconds"])
    report.acknowledged = len(acknowledged)
    report.executions = sum(executions.values())
    report.reexecuted_tasks = sum(1 for n in executions.values() if n > 1)
    report.lost = sorted(acknowledged - records)
    report.duplicates = {task: who for task, who in sorted(completions.items()) if len(who) > 1}
    report.phantoms = sorted(records - acknowledged)
    return report
