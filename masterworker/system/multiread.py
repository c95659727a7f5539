"""Reading many znodes in one request: ZooKeeper's multi-read (op 22, ZooKeeper 3.6+).

kazoo 2.11 has no call for it. Without it the master, the worker and the client each pay one
getData request per task, and on a 2-core machine the cost of a request (about 0.5 ms of
Python, 0.3 ms of server) decides throughput. This module adds the request on top of kazoo's
protocol layer, the way kazoo's own ``Transaction`` is built, and falls back to pipelined plain
reads when the server does not know the operation (before 3.6).

It uses kazoo internals (``_call``, ``serialization``): checked against kazoo 2.11.0, which
pyproject.toml pins. Keep each batch's replies under ZooKeeper's 1 MB packet limit: callers read
at most ``MAX_PATHS`` nodes of at most a few KiB each.
"""

from __future__ import annotations

import time
import weakref
from collections import namedtuple

from kazoo.client import KazooClient
from kazoo.exceptions import EXCEPTIONS, ConnectionLoss, KazooException, UnimplementedError
from kazoo.protocol.paths import _prefix_root
from kazoo.protocol.serialization import (
    MultiHeader,
    ZnodeStat,
    multiheader_struct,
    read_buffer,
    stat_struct,
    write_string,
)

from masterworker.system.zkops import RECOVERABLE, answer

MAX_PATHS = 64
_GET_DATA = 4
_ERROR = -1


class MultiRead(namedtuple("MultiRead", "paths")):
    """The request: a getData sub-operation per path, each framed by a MultiHeader."""

    type = 22

    def serialize(self) -> bytearray:
        b = bytearray()
        for path in self.paths:
            b.extend(MultiHeader(_GET_DATA, False, -1).serialize() + write_string(path) + b"\x00")
        return b + multiheader_struct.pack(-1, True, -1)

    @classmethod
    def deserialize(cls, data: bytes, offset: int) -> list[tuple[bytes, ZnodeStat] | Exception]:
        results: list[tuple[bytes, ZnodeStat] | Exception] = []
        header, offset = MultiHeader.deserialize(data, offset)
        while not header.done:
            if header.type == _GET_DATA:
                value, offset = read_buffer(data, offset)
                stat = ZnodeStat._make(stat_struct.unpack_from(data, offset))
                offset += stat_struct.size
                results.append((value or b"", stat))
            elif header.type == _ERROR:
                code = int.from_bytes(data[offset : offset + 4], "big", signed=True)
                offset += 4
                results.append(EXCEPTIONS[code]())
            header, offset = MultiHeader.deserialize(data, offset)
        return results


_UNSUPPORTED: weakref.WeakSet[KazooClient] = weakref.WeakSet()  # clients whose server answered "unimplemented"


def get_many(
    client: KazooClient, paths: list[str], timeout: float | None = None
) -> list[tuple[bytes, ZnodeStat] | Exception]:
    """(data, stat) or the exception (NoNodeError...) for each path, in order; raises on ConnectionLoss.

    Every chunk's request is sent before the first reply is awaited. With a ``timeout``, raises
    OperationTimeoutError when the replies take longer: kazoo holds a request sent while no
    server answers until one does (a client's ``--timeout`` must still end its wait).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks = [paths[start : start + MAX_PATHS] for start in range(0, len(paths), MAX_PATHS)]
    if client in _UNSUPPORTED:
        return [r for chunk in chunks for r in _pipelined(client, chunk, deadline)]
    sent = []
    for chunk in chunks:
        async_result = client.handler.async_result()
        client._call(MultiRead([_prefix_root(client.chroot, p) for p in chunk]), async_result)
        sent.append((chunk, async_result))
    results: list[tuple[bytes, ZnodeStat] | Exception] = []
    for chunk, async_result in sent:
        try:
            results.extend(_reply(client, async_result, deadline))
        except UnimplementedError:
            _UNSUPPORTED.add(client)
            results.extend(_pipelined(client, chunk, deadline))
        except ConnectionLoss:
            # A reply over ZooKeeper's 1 MB packet limit (someone wrote huge nodes) makes the
            # server drop the connection. One node always fits in a reply: read them one by one.
            results.extend(_pipelined(client, chunk, deadline))
    return results


def _reply(client: KazooClient, async_result: object, deadline: float | None) -> object:
    return answer(client, async_result, None if deadline is None else max(0.0, deadline - time.monotonic()))


def _pipelined(
    client: KazooClient, paths: list[str], deadline: float | None = None
) -> list[tuple[bytes, ZnodeStat] | Exception]:
    """The fallback: one getData per path, all in flight at once."""
    pending = [client.get_async(path) for path in paths]
    results: list[tuple[bytes, ZnodeStat] | Exception] = []
    for result in pending:
        try:
            results.append(_reply(client, result, deadline))
        except RECOVERABLE:
            raise
        except KazooException as exc:  # NoNodeError and friends belong to one path only
            results.append(exc)
    return results
