"""The decoders face whatever anyone wrote into ZooKeeper: they never raise, and ours round-trip."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from masterworker.system.protocol import (
    MAX_CAPACITY,
    MAX_TASK_BYTES,
    MAX_TASK_TIMEOUT,
    TaskSpec,
    TaskStatus,
    WorkerInfo,
    oversized,
    task_kind,
)
from masterworker.system.security import Policy

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
task_like = st.fixed_dictionaries(
    {},
    optional={
        "argv": json_values,
        "timeout": json_values,
        "submitted": json_values,
        "client": json_values,
        "invalid": json_values,
    },
)
raw = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | task_like.map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=400)
@given(raw)
def test_task_decode_never_raises_and_is_runnable_book_or_invalid(data: bytes) -> None:
    spec = TaskSpec.decode(data)
    assert task_kind(data) == spec.kind  # the master's cheap reading agrees with the worker's
    runnable = bool(spec.argv) and spec.invalid is None and not spec.book_task
    assert runnable or spec.book_task or spec.invalid
    if runnable:
        assert all(isinstance(a, str) for a in spec.argv) and spec.timeout > 0


@settings(max_examples=300)
@given(raw)
def test_status_and_worker_decode_never_raise(data: bytes) -> None:
    assert TaskStatus.decode(data).state in ("done", "failed")
    info = WorkerInfo.decode(data)
    assert 1 <= info.slots <= MAX_CAPACITY and 0 <= info.prefetch <= MAX_CAPACITY
    assert info.capacity <= MAX_CAPACITY and info.runs <= {"command", "book"}


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["argv", "timeout", "attempts", "submitted", "client", "invalid"]),
        st.one_of(
            st.integers(-(10**400), 10**400),
            st.floats(allow_nan=True, allow_infinity=True),
            st.lists(st.text(max_size=5), max_size=3),
            st.text(max_size=5),
            st.booleans(),
            st.none(),
        ),
    )
)
def test_task_decode_never_raises_on_hostile_json(obj: dict) -> None:
    spec = TaskSpec.decode(json.dumps(obj).encode())
    if spec.invalid is None and not spec.book_task:
        assert "\0" not in "".join(spec.argv) and 0 < spec.timeout <= MAX_TASK_TIMEOUT


_NO_NUL = st.text(alphabet=st.characters(blacklist_characters="\x00"), min_size=1, max_size=30)


@given(st.lists(_NO_NUL, min_size=1, max_size=8), st.floats(0.001, 1e6))
def test_our_tasks_round_trip(argv: list[str], timeout: float) -> None:
    spec = TaskSpec.decode(TaskSpec(argv=argv, timeout=timeout).encode())
    assert spec.argv == argv and spec.timeout == timeout and spec.invalid is None


@given(st.lists(st.text(max_size=10), min_size=1, max_size=4).map(lambda a: [*a, "x\x00y"]))
def test_an_argv_with_a_nul_byte_is_invalid_not_a_crash_at_start(argv: list[str]) -> None:
    assert "NUL" in (TaskSpec.decode(TaskSpec(argv=argv).encode()).invalid or "")


@given(st.integers(MAX_TASK_BYTES + 1, 10**7))
def test_the_oversize_marker_fails_the_task_with_its_size(size: int) -> None:
    assert TaskSpec.decode(oversized(size)).invalid == f"task data is {size:,} bytes; the limit is {MAX_TASK_BYTES:,}"


@given(st.binary(max_size=200))
def test_a_foreign_security_node_is_an_error_not_a_crash(data: bytes) -> None:
    try:
        Policy.decode(data)
    except Exception as exc:  # noqa: BLE001 - the point: only our one error type comes out
        assert type(exc).__name__ == "MasterworkerError"
