"""pipelined.create_many against a real server: order, chroot, ACL, per-request errors, a closed client."""

from __future__ import annotations

from kazoo.exceptions import ConnectionClosedError, NoNodeError
from kazoo.security import make_acl

from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.system.pipelined import create_many


def test_many_sequential_creates_come_back_in_order_without_the_chroot(zk) -> None:
    zk.create("/q")
    count = 700  # more replies than one bulk read of the connection holds
    data = [f"value {n}".encode() for n in range(count)]
    paths = create_many(zk, ["/q/task-"] * count, data).wait()
    assert all(path.startswith("/q/task-") for path in paths), paths[:3]
    assert paths == sorted(paths) and len(set(paths)) == count
    assert [zk.get(path)[0] for path in paths[::97]] == data[::97]
    assert not zk.chroot or not any(zk.chroot in path for path in paths)


def test_plain_creates_use_the_default_acl_and_report_each_failure_in_place(zk) -> None:
    zk.create("/p")
    acl = [make_acl("world", "anyone", read=True, create=True, delete=True, write=True)]
    zk.default_acl = acl
    try:
        results = create_many(zk, ["/p/a", "/missing/b", "/p/c"], [b"1", b"2", b"3"], sequence=False).wait()
    finally:
        zk.default_acl = None
    assert results[0] == "/p/a" and results[2] == "/p/c"
    assert isinstance(results[1], NoNodeError)
    assert zk.get_acls("/p/a")[0] == acl
    assert create_many(zk, [], []).wait() == []


def test_a_closed_client_answers_every_request_with_an_error(zk_hosts: str) -> None:
    client = connect(ZkSettings(hosts=zk_hosts, session_timeout=10))
    close_quietly(client)
    results = create_many(client, ["/x-"] * 5, [b""] * 5).wait()  # returns: nothing is left waiting
    assert len(results) == 5 and all(isinstance(r, ConnectionClosedError) for r in results)
