"""multiread.get_many against a real server: order, per-path errors, chunks, chroot, and the fallback."""

from __future__ import annotations

import pytest
from kazoo.exceptions import NoNodeError

from masterworker.system import multiread
from masterworker.system.multiread import MAX_PATHS, get_many


@pytest.fixture
def nodes(zk) -> list[str]:
    zk.create("/data")
    paths = []
    for n in range(MAX_PATHS * 2 + 5):  # more than two chunks
        path = f"/data/n{n:03d}"
        if n % 7 != 3:  # every seventh is missing
            zk.create(path, f"value {n}".encode())
        paths.append(path)
    return paths


def expected(path: str) -> bytes | type:
    n = int(path[-3:])
    return NoNodeError if n % 7 == 3 else f"value {n}".encode()


def check(results: list, paths: list[str]) -> None:
    assert len(results) == len(paths)
    for path, result in zip(paths, results, strict=True):
        want = expected(path)
        if want is NoNodeError:
            assert isinstance(result, NoNodeError), path
        else:
            assert result[0] == want and result[1].dataLength == len(want), path


def test_many_nodes_in_order_with_per_path_errors_through_a_chroot(zk, nodes: list[str]) -> None:
    check(get_many(zk, nodes), nodes)
    assert get_many(zk, []) == []


def test_the_fallback_for_servers_without_multi_read_gives_the_same_answer(zk, nodes: list[str]) -> None:
    multiread._UNSUPPORTED.add(zk)
    try:
        check(get_many(zk, nodes), nodes)
    finally:
        multiread._UNSUPPORTED.discard(zk)


def test_one_request_per_chunk_of_64(zk, nodes: list[str], zk_server) -> None:
    from masterworker.zk.fourletter import four_letter, parse_lines

    port = zk_server.servers[0].config.client_port

    def received() -> int:
        return int(parse_lines(four_letter("127.0.0.1", port, "mntr"), "\t")["zk_packets_received"])

    before = received()
    get_many(zk, nodes)
    assert received() - before <= 3 + 1  # three chunks (and the mntr connection itself is no client packet)
