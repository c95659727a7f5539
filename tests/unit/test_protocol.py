"""The znode protocol's codecs: ours round-trip, the book's data is tolerated, nothing raises."""

from __future__ import annotations

import json

import pytest

from masterworker.system.protocol import (
    MAX_TASK_BYTES,
    TaskSpec,
    TaskStatus,
    WorkerInfo,
    is_valid_name,
    new_guid,
    protected_prefix,
    submission_order,
    task_sequence,
)


def test_task_spec_round_trips() -> None:
    spec = TaskSpec(argv=["echo", "hi"], timeout=5, submitted_at=12.5, client="c1")
    decoded = TaskSpec.decode(spec.encode())
    assert (decoded.argv, decoded.timeout, decoded.submitted_at, decoded.client) == (
        ["echo", "hi"],
        5,
        12.5,
        "c1",
    )
    assert not decoded.book_task and decoded.invalid is None


@pytest.mark.parametrize("data", [b"some task from the book's client", b"", None, b"[1,2]", b'"x"'])
def test_text_that_is_not_ours_is_a_book_task(data: bytes | None) -> None:
    spec = TaskSpec.decode(data)
    assert spec.book_task and spec.argv == [] and spec.invalid is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe\x00binary", "binary"),
        (b"x" * (MAX_TASK_BYTES + 1), "the limit is"),
        (b'{"cmd": "rm -rf /"}', "no argv"),
        (b"{not json", "no argv"),
    ],
)
def test_binary_oversized_and_foreign_json_are_invalid_tasks(data: bytes, reason: str) -> None:
    spec = TaskSpec.decode(data)
    assert not spec.book_task and spec.invalid and reason in spec.invalid


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"argv": []}, "argv"),
        ({"argv": "echo hi"}, "argv"),
        ({"argv": ["echo", 3]}, "argv"),
        ({"argv": ["true"], "timeout": -1}, "timeout"),
        ({"argv": ["true"], "timeout": "soon"}, "timeout"),
        ({"argv": ["true"], "timeout": True}, "timeout"),
    ],
)
def test_malformed_tasks_are_invalid_not_crashes(obj: dict, reason: str) -> None:
    spec = TaskSpec.decode(json.dumps(obj).encode())
    assert spec.invalid and reason in spec.invalid


def test_status_round_trips_and_says_done() -> None:
    status = TaskStatus("done", exit_code=0, worker="w1", output="hi\n", run_id="r1")
    data = status.encode()
    assert b"done" in data  # the book's client looks for the word
    # fields in their order, the unset ones and book_worker (known only to a reader) left out
    assert json.loads(data) == {"state": "done", "exit_code": 0, "worker": "w1", "output": "hi\n", "run_id": "r1"}
    assert list(json.loads(data)) == ["state", "exit_code", "worker", "output", "run_id"]
    assert TaskStatus.decode(data) == TaskStatus("done", exit_code=0, worker="w1", output="hi\n", run_id="r1")


@pytest.mark.parametrize("data", [b"done", b"", None, b"{}", b'{"state": "weird"}', b"\x00\x01"])
def test_status_that_is_not_ours_reads_as_done(data: bytes | None) -> None:
    assert TaskStatus.decode(data).state == "done"


def test_worker_info_tolerates_the_books_idle() -> None:
    assert WorkerInfo.decode(b"Idle").slots == 1
    assert WorkerInfo.decode(b'{"slots": 0}').slots == 1
    assert WorkerInfo.decode(WorkerInfo(slots=4, host="h", pid=7).encode()).slots == 4


def test_protected_names_sort_in_submission_order() -> None:
    names = [f"{protected_prefix(new_guid())}{n:010d}" for n in (12, 3, 7)]
    assert [task_sequence(n) for n in submission_order(names)] == [3, 7, 12]
    assert submission_order(["stray", "task-0000000001"]) == ["task-0000000001", "stray"]
    assert len(new_guid()) == 12 and new_guid() != new_guid()


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("w1", True),
        ("worker-host.x-12", True),
        ("", False),
        ("a/b", False),
        ("..", False),
        ("zookeeper", False),
        ("x" * 201, False),
    ],
)
def test_ids_that_become_znode_names(name: str, ok: bool) -> None:
    assert is_valid_name(name) is ok


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (b"done", None),  # the book's worker
        (b'{"state":"done","exit_code":0}', None),  # a status written before output_bytes existed
        (b'{"state":"done","output_bytes":10000000}', 10_000_000),
        (b'{"state":"done","output_bytes":-1}', None),
        (b'{"state":"done","output_bytes":true}', None),
        (b'{"state":"done","output_bytes":"big"}', None),
        (b'{"state":"done","output_bytes":1.5}', None),
    ],
)
def test_the_output_size_decodes_defensively(data: bytes, size: int | None) -> None:
    status = TaskStatus.decode(data)
    assert status.state == "done" and status.output_bytes == size
    assert status.output_cut == (size is not None and size > 4096)


def test_a_status_round_trips_its_output_size() -> None:
    status = TaskStatus("failed", exit_code=1, output="x" * 4096, output_bytes=123_456, run_id="r")
    decoded = TaskStatus.decode(status.encode())
    assert decoded.output_bytes == 123_456 and decoded.output_cut and decoded.output == "x" * 4096
