"""mw bench smoke: every scenario runs, reports its figures and stops by itself (speed is not asserted)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from masterworker.lab.bench.book_system import start_book_driver
from masterworker.lab.bench.clients import RUNNERS
from masterworker.lab.bench.system import BenchSystem
from masterworker.system.client import check_backlog, submit_payloads
from masterworker.system.errors import BacklogFull
from masterworker.system.protocol import STATUS, TASKS
from tests.helpers import _command_lines, run_mw


def bench(*args: str) -> dict:
    result = run_mw("bench", *args, "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize(("submit", "warmup", "client"), [("single", None, "collect"), ("batch", 50, "count")])
def test_throughput_reports_rate_costs_and_conditions(submit: str, warmup: int | None, client: str) -> None:
    extra = ["--warmup", str(warmup)] if warmup else []
    report = bench("throughput", "--tasks", "200", "--rounds", "2", "--submit", submit, "--client", client, *extra)
    figures = report["figures"]
    assert {"tasks_per_s", "cpu_ms_per_task", "requests_per_task", "client", "prefetch"} <= set(figures)
    assert figures["client"] == client and figures["prefetch"] == "default"  # workers as a user starts them
    assert figures["tasks"] == 200 and figures["tasks_per_s"] > 0 and len(figures["each_round"]) == 2
    assert figures["warmup"] == (warmup or 200)  # by default a round of the same size, unmeasured
    assert figures["conditions"]["warm"] and figures["conditions"]["cores"] >= 1
    assert 0 < figures["done_after_submit_p50_ms"] <= figures["done_after_submit_p99_ms"]
    assert 0 < figures["requests_per_task"] < 10
    spread = figures["spread"]["cpu_ms_per_task"]
    assert 0 < spread["min"] <= figures["cpu_ms_per_task"] <= spread["max"]
    by_process = figures["cpu_ms_per_task_by_process"]
    assert {"master-1", "worker-1", "worker-2", "worker-3", "zookeeper", "bench client"} <= set(by_process)


@pytest.mark.parametrize("client", ["collect", "book"])
def test_the_collecting_clients_read_and_delete_every_status(zk_hosts: str, client: str) -> None:
    """The default client and the book's collect every result, as mw submit and the book's client do."""
    with BenchSystem(zk_hosts) as system:
        system.start_master()
        for n in (1, 2):
            system.start_worker(f"worker-{n}", slots=2)
        system.ready(2)
        done = RUNNERS[client](system, 40, None, None, 60)
        assert len(done) == 40
        assert system.client.get_children(STATUS) == []  # every result read and deleted
        assert system.client.get_children(TASKS) == []
        assert all(system.client.get_children(f"/assign/worker-{n}") == [] for n in (1, 2))


def _book_driver_classpath() -> str | None:
    """MW_BOOK_CLASSPATH if it holds the compiled BookDriver (tools/book-example.sh builds it) and java is there."""
    classpath = os.environ.get("MW_BOOK_CLASSPATH", "")
    driver = Path(classpath.split(":", 1)[0]) / "org/apache/zookeeper/book/BookDriver.class"
    return classpath if driver.is_file() and shutil.which("java") else None


NO_DRIVER = "no BookDriver in MW_BOOK_CLASSPATH (tools/book-example.sh)"


@pytest.mark.skipif(_book_driver_classpath() is None, reason=NO_DRIVER)
def test_the_books_java_client_collects_every_result_under_a_chroot(zk_hosts: str) -> None:
    """The book's own Client class in a JVM drives mw through the chroot in its connect string; it stops with it."""
    with BenchSystem(zk_hosts) as system:
        system.start_master()
        system.start_worker("worker-1", slots=2)
        system.ready(1)
        driver = start_book_driver(system, _book_driver_classpath())
        done = RUNNERS["book-java"](system, 40, None, None, 60)
        assert len(done) == 40 and all(d > 0 for d in done)
        assert system.client.get_children(STATUS) == [] and system.client.get_children(TASKS) == []
        assert system.cpu()["book-client"] > 0  # counted like every process
    assert not driver.alive


def test_the_books_java_client_without_its_class_is_refused_in_one_line(tmp_path: Path) -> None:
    """A classpath built before BookDriver existed (only the book's classes) is refused before anything starts."""
    book = tmp_path / "org/apache/zookeeper/book"
    book.mkdir(parents=True)
    (book / "Master.class").write_bytes(b"")
    env = dict(os.environ, MW_BOOK_CLASSPATH=str(tmp_path))
    result = run_mw("bench", "throughput", "--client", "book-java", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: no compiled org.apache.zookeeper.book.BookDriver under {tmp_path}: build it with tools/book-example.sh"
    ]


def test_bench_table_prints_the_readme_table_with_its_conditions() -> None:
    result = run_mw("bench", "table", "--tasks", "30", "--warmup", "0", "--rounds", "1", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| what ran | tasks/s") and len([x for x in lines if x.startswith("| `mw")]) == 5
    assert lines[-1].startswith("Conditions: ") and "cold" in lines[-1]


def test_exec_latency_failover_and_orphans_run() -> None:
    assert bench("exec", "--tasks", "60")["figures"]["tasks_per_s"] > 0
    latency = bench("latency", "--tasks", "10")["figures"]
    assert 0 < latency["latency_p50_ms"] <= latency["latency_p99_ms"]
    failover = bench("failover", "--session-timeout", "2")["figures"]
    assert failover["sigterm_takeover_s"] < failover["kill9_takeover_s"]
    assert failover["kill9_takeover_s"] >= 1.0  # the dead master's session has to expire first
    orphans = bench("orphans", "--tasks", "50", "--session-timeout", "2")["figures"]
    assert orphans["tasks"] == 50 and orphans["all_done_after_expiry_s"] >= 0


def test_scale_sweeps_refuses_past_the_cap_and_plots(tmp_path: Path) -> None:
    plot = tmp_path / "scale.png"
    report = bench("scale", "--worker-counts", "1,2", "--tasks", "100", "--backlogs", "100,300", "--plot", str(plot))
    rows = report["series"]
    assert [r["workers"] for r in rows if r["sweep"] == "workers"] == [1, 2]
    assert [r["backlog"] for r in rows if r["sweep"] == "backlog"] == [100, 300]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_submit_refuses_new_tasks_past_the_backlog_cap(zk, mw_env) -> None:
    from masterworker.system.zkops import ensure_nodes

    ensure_nodes(zk)
    submit_payloads(zk, [b"noop"] * 30, batch=30)
    with pytest.raises(BacklogFull, match="30 tasks are pending"):
        check_backlog(zk, 30)
    result = run_mw("submit", "--backlog-cap", "30", "--", "true", env=mw_env)
    assert result.returncode == 4
    assert result.stderr.strip() == "error: 30 tasks are pending (the cap is 30): try again later"
    assert len(zk.get_children("/tasks")) == 30  # nothing was added


def test_bench_only_targets_loopback() -> None:
    result = run_mw("bench", "throughput", "--zk", "192.0.2.1:2181")
    assert result.returncode == 2 and "only runs against ZooKeeper on this machine" in result.stderr


def test_the_book_system_without_its_classes_is_refused_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MW_BOOK_CLASSPATH"}
    result = run_mw("bench", "throughput", "--system", "book", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: the book's system needs --book-classpath (or MW_BOOK_CLASSPATH): see tools/book-example.sh"
    ]


def _book_jvms() -> set[int]:
    return {pid for pid, line in _command_lines() if "org.apache.zookeeper.book." in line}


@pytest.mark.skipif(not os.environ.get("MW_BOOK_CLASSPATH"), reason="MW_BOOK_CLASSPATH not set (tools/book-example.sh)")
def test_versus_book_drives_both_systems_with_one_client_and_stops_the_jvms() -> None:
    """The book's JVMs run, cost CPU that is counted, and are gone at the end; no speed is asserted."""
    before = _book_jvms()
    run = bench("versus-book", "--tasks", "40", "--rounds", "1")
    assert _book_jvms() <= before
    rows = {(row["system"], row["client"]): row for row in run["rows"]}
    assert set(rows) == {(s, c) for s in ("book", "mw") for c in ("book", "collect", "collect-file")}
    assert all(row["rounds"] == 1 and row["stalled"] == [] for row in rows.values())
    book = rows[("book", "book")]["cpu_ms_per_task_by_process"]
    assert {"book-master-1", "book-master-2", "book-worker-1", "book-worker-3", "zookeeper"} <= set(book)
    assert book["book-master-1"] > 0  # the active master's JVM assigned the tasks
    assert rows[("mw", "collect")]["cpu_ms_per_task_by_process"]["master-2"] is not None  # mw with a backup too
    assert all(run["ratios"][client]["median"] > 0 for client in ("book", "collect", "collect-file"))


def test_a_bench_system_leaves_no_files_behind_unless_it_failed(zk_hosts: str) -> None:
    with BenchSystem(zk_hosts) as system:
        system.start_master()
        system.wait(lambda: system.client.exists("/master"), 30, "the master")
        kept = system.log_dir
    assert not kept.exists()
    with pytest.raises(TimeoutError), BenchSystem(zk_hosts) as system:
        failed = system.log_dir
        system.start_master()
        system.wait(lambda: False, 0.1, "something that never happens")
    try:
        assert (failed / "master-1.log").is_file()  # what a failed run leaves to read
    finally:
        shutil.rmtree(failed, ignore_errors=True)
