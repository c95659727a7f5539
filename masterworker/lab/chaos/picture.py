"""``mw chaos --report DIR``: the run as a person looks at it (Jepsen's and Maelstrom's timeline plots).

Three panels on one time axis, each fault a shaded band across all of them:

1. **masters**: who reigned when (one bar per reign, labelled with its epoch), the impaired parts
   of a reign hatched, the stretches without an active master in red;
2. **completions per second**, with the completion gaps the checker measured in red along the
   axis, each re-execution marked with a triangle and each duplicate completion with a black X;
3. **submit-to-done latency** of every task, as points at the time it completed.

Written beside it: ``history.jsonl`` (the merged history the checker read), ``report.json``,
and ``index.html``, a standalone page with the picture inlined and the liveness table.
matplotlib (the ``plot`` extra) is imported only here, with the Agg backend: no display needed.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from masterworker.lab.chaos.checker import CheckReport
from masterworker.lab.chaos.liveness import NO_FAULT, ZOOKEEPER_OUTAGES, Liveness, checked, measure
from masterworker.system.errors import MasterworkerError

PALETTE = ("#4c72b0", "#55a868", "#8172b2", "#ccb974", "#64b5cd", "#c44e52")


def require_matplotlib() -> None:
    """Fail early, before a run, when the picture could not be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MasterworkerError("--report needs matplotlib: pip install 'masterworker[plot]'") from None


def write_report(directory: Path, events: list[dict[str, Any]], report: CheckReport) -> Path:
    """history.jsonl, report.json, chaos.png and index.html in ``directory``; returns the PNG's path."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "history.jsonl", "w") as out:
        for event in events:
            out.write(json.dumps(event) + "\n")
    (directory / "report.json").write_text(json.dumps(report.as_dict(), indent=2))
    png = directory / "chaos.png"
    draw(events, report, png)
    page(report, png, directory / "index.html")
    return png


def draw(events: list[dict[str, Any]], report: CheckReport, path: Path) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    live = report.liveness or measure(events)
    events = checked(events)
    t0 = events[0]["t"] if events else 0.0
    end = (events[-1]["t"] - t0) if events else 1.0
    figure, (lane, rate, latency) = plt.subplots(
        3, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [1.0, 2.0, 1.5]}, dpi=80
    )
    for axis in (lane, rate, latency):
        _bands(axis, live, t0)
    for reign in live.reigns:  # each new epoch, across the lower panels
        for axis in (rate, latency):
            axis.axvline(reign.start - t0, color="#555555", ls=":", lw=0.8)
    _masters(lane, live, t0)
    _completions(rate, events, live, t0, end)
    _latency(latency, events, t0)
    latency.set_xlabel("seconds since the run started")
    latency.set_xlim(0, max(end, 1.0))
    verdict = "ok" if report.ok else f"{len(report.violations)} violation(s)"
    budget = "" if live.budget is None else f", liveness budget {live.budget:g} s"
    figure.suptitle(
        f"mw chaos: {report.acknowledged} tasks acknowledged, {len(report.lost)} lost, "
        f"{len(report.duplicates)} duplicated, {report.reexecuted_tasks} re-executed{budget}: {verdict}",
        fontsize=11,
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    small(buffer, path)


def small(buffer: io.BytesIO, path: Path) -> None:
    """Down to 128 colours: a third of the bytes, the same picture. Pillow is matplotlib's own
    dependency, not ours: without it the picture is written as drawn."""
    try:
        from PIL import Image
    except ImportError:
        path.write_bytes(buffer.getvalue())
        return
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(128).save(path, optimize=True)


def _bands(axis: Any, live: Liveness, t0: float) -> None:
    """Each fault from its start to its heal, shaded; unhealable ones grey up to the quorum's return."""
    for window in live.windows:
        if window.fault == NO_FAULT:
            continue
        until = window.measured_from if window.fault in ZOOKEEPER_OUTAGES else window.under_way[1]
        color = "#999999" if window.fault in ZOOKEEPER_OUTAGES else "#f4a582"
        axis.axvspan(window.start - t0, max(until, window.start + 0.2) - t0, color=color, alpha=0.35, lw=0)


def _masters(axis: Any, live: Liveness, t0: float) -> None:
    masters = sorted({reign.master for reign in live.reigns})
    rows = {master: n for n, master in enumerate(masters)}
    for reign in live.reigns:
        row, color = rows[reign.master], PALETTE[rows[reign.master] % len(PALETTE)]
        axis.broken_barh([(reign.start - t0, reign.end - reign.start)], (row - 0.35, 0.7), color=color)
        for a, b in reign.impaired:
            axis.broken_barh([(a - t0, b - a)], (row - 0.35, 0.7), facecolor="white", edgecolor=color, hatch="///")
        axis.annotate(f"e{reign.epoch}", (reign.start - t0, row + 0.38), fontsize=7, va="bottom", annotation_clip=False)
    for a, b in live.no_master:
        axis.axvspan(a - t0, b - t0, ymin=0, ymax=0.06, color="#d62728")
    axis.set_yticks(range(len(masters)), masters)
    axis.set_ylim(-0.6, len(masters) - 0.2)
    axis.set_ylabel("reigning\nmaster", fontsize=9)


def _completions(axis: Any, events: list[dict[str, Any]], live: Liveness, t0: float, end: float) -> None:
    width = 1.0 if end > 60 else 0.5 if end > 20 else 0.25  # bins of a second, finer for a short run
    bins = Counter(int((e["t"] - t0) / width) for e in events if e.get("type") == "complete")
    per_second = {n: count / width for n, count in bins.items()}
    slots = range(int(end / width) + 1)
    axis.step([n * width for n in slots], [per_second.get(n, 0) for n in slots], where="post", color="#4c72b0", lw=1.2)
    budget = live.budget
    for a, b in live.gaps:
        if budget is None or b - a > budget / 2:
            axis.axvspan(a - t0, b - t0, ymin=0, ymax=0.05, color="#d62728" if budget and b - a > budget else "#ff9896")
    starts, completed = Counter(), Counter()
    reexecutions, duplicates = [], []
    for event in events:
        if event.get("type") == "exec-start":
            starts[event["task"]] += 1
            if starts[event["task"]] > 1:
                reexecutions.append(event["t"] - t0)
        elif event.get("type") == "complete":
            completed[event["task"]] += 1
            if completed[event["task"]] > 1:  # a second completion record: the checker's duplicate
                duplicates.append(event["t"] - t0)
    top = max(per_second.values(), default=1)
    for window in live.windows:  # upright at each band's start: faults close together stay readable
        if window.fault != NO_FAULT:
            axis.text(window.start - t0, top * 1.55, f" {window.fault}", rotation=90, fontsize=7, va="top", ha="left")
    if reexecutions:
        axis.plot(reexecutions, [top * 1.08] * len(reexecutions), "v", color="#c44e52", ms=5, label="re-execution")
    if duplicates:
        axis.plot(duplicates, [top * 0.95] * len(duplicates), "X", color="black", ms=9, label="DUPLICATE completion")
    if reexecutions or duplicates:
        axis.legend(loc="upper right", fontsize=8)
    axis.set_ylim(0, top * 1.6)
    axis.set_ylabel("completions\nper second", fontsize=9)


def _latency(axis: Any, events: list[dict[str, Any]], t0: float) -> None:
    invoked, submitted, done = {}, {}, {}
    for event in events:
        kind = event.get("type")
        if kind == "submit-invoke" and "op" in event:
            invoked[event["op"]] = event["t"]
        elif kind == "submit-ok":
            submitted[event["task"]] = invoked.get(event.get("op"), event["t"])
        elif kind == "complete" and event["task"] not in done:
            done[event["task"]] = event["t"]
    points = [(done[task] - t0, done[task] - at) for task, at in submitted.items() if task in done]
    if points:
        axis.scatter(*zip(*points, strict=True), s=7, color="#2ca02c", alpha=0.6, lw=0)
        axis.set_yscale("log")
        axis.yaxis.set_major_locator(matplotlib_ticker().LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(matplotlib_ticker().FormatStrFormatter("%g"))
        axis.yaxis.set_minor_formatter(matplotlib_ticker().NullFormatter())
    axis.set_ylabel("submit to done\n(seconds)", fontsize=9)


def matplotlib_ticker() -> Any:
    import matplotlib.ticker

    return matplotlib.ticker


def page(report: CheckReport, png: Path, path: Path) -> None:
    """A standalone HTML page: the picture inlined, the verdict, the liveness table, the violations."""
    image = base64.b64encode(png.read_bytes()).decode()
    data = report.as_dict()
    live = data.get("liveness") or {"budget_s": None, "windows": []}
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{:.2f}</td><td>{:.2f}</td><td>{}</td></tr>".format(
            html.escape(w["fault"]),
            html.escape(w["target"]),
            w["without_master_s"],
            w["completion_gap_s"],
            {True: "ok", False: "<b>over budget</b>", None: "-"}[w["within_budget"]],
        )
        for w in live["windows"]
    )
    violations = "".join(f"<li>{html.escape(v)}</li>" for v in data["violations"]) or "<li>none</li>"
    summary = ", ".join(
        f"{key.replace('_', ' ')} {data[key]}"
        for key in ("acknowledged", "completion_records", "lost", "duplicates", "reexecuted_tasks", "drain_seconds")
    )
    path.write_text(
        f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mw chaos report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}
tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>mw chaos: {"ok" if data["ok"] else "violations found"}</h1>
<p>{html.escape(summary)}</p>
<img src="data:image/png;base64,{image}" alt="timeline of the run" style="max-width:100%">
<h2>Violations</h2><ul>{violations}</ul>
<h2>Liveness per fault (budget {live["budget_s"]} s)</h2>
<table><tr><th>fault</th><th>target</th><th>without a master (s)</th><th>longest completion gap (s)</th>
<th>verdict</th></tr>{rows}</table>
<p>Bands: each fault from its start to its heal (grey: no quorum, measured from the heal). Top: the reigning
master per epoch, hatched while a fault impaired it, red below where no master was active. Middle: completions
per second, red below for gaps, triangles for re-executions. Bottom: each task's submit-to-done latency.</p>
</body></html>
"""
    )
