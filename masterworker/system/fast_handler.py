"""A cheaper ``select`` for kazoo's connection thread.

kazoo 2.11's threading handler builds and closes a new epoll selector on every ``select()``
call (three system calls and Python objects per wake-up); on a busy master most of the CPU goes
there. ``poll()`` needs no kernel object of its own and, unlike ``select.select``, has no limit
on descriptor numbers. The handler is otherwise kazoo's own; it was checked against kazoo
2.11.0, which pyproject.toml pins.

What it buys (``mw bench throughput --tasks 1000``, 1 master and 3 workers, the same 2-core
machine and hour, three rounds each, alternated): 2,583-3,058 tasks/s (median 2,728) with it,
2,201-2,436 (median 2,245) with kazoo's own handler; the master's and each worker's CPU time
0.05-0.06 s against 0.08 s, and 0.03-0.05 s against 0.05-0.07 s.

**Reading in bulk.** kazoo's connection thread reads each reply with two ``select`` and two
``recv`` calls (its length, then its body), after the ``select`` of its loop, and waits for
writability before every send. Replies come in bursts (a client's pipelined creates, a master's
batches): ``BufferedSocket`` reads up to 64 KiB at once and serves kazoo's small reads from
that, and says so through ``pending()``, the method kazoo 2.11's ``_read`` asks an SSL socket
before it selects (``ConnectionHandler._read``); ``poll_select`` reports such a socket readable
without a system call. A send that would block waits for writability itself, so the
writability check before each send is answered at once. Measured (one client, a standalone
server on the same 2-core machine, medians of 24 alternated rounds): the client's CPU for 1,000
pipelined creates 196 ms with ``poll_select`` alone, 160 ms with the bulk reads too; for 1,000
pipelined reads 87 and 70 ms. TLS sockets are left as they are (an SSL socket buffers by itself).
"""

from __future__ import annotations

import select
import socket
import threading
from collections import defaultdict

from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.handlers.utils import fileobj_to_fd

_READABLE = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_WRITABLE = select.POLLOUT | select.POLLHUP | select.POLLERR


READ_SIZE = 64 * 1024  # bytes asked of the kernel per read: a burst of replies in one call


class BufferedSocket:
    """A plain, non-blocking TCP socket that reads in bulk and serves kazoo's small reads from memory.

    Everything but ``recv``, ``send`` and ``pending`` goes to the socket itself.
    """

    __slots__ = ("_sock", "_buffer", "_at", "_send_timeout")

    def __init__(self, sock: socket.socket, send_timeout: float | None) -> None:
        self._sock = sock
        self._buffer = b""
        self._at = 0
        self._send_timeout = send_timeout

    def pending(self) -> int:
        """Bytes read from the kernel and not yet handed out (kazoo does not select while any are)."""
        return len(self._buffer) - self._at

    def recv(self, size: int) -> bytes:
        if self._at >= len(self._buffer):
            data = self._sock.recv(max(size, READ_SIZE))
            if len(data) <= size:
                return data
            self._buffer, self._at = data, 0
        end = min(self._at + size, len(self._buffer))
        chunk = self._buffer[self._at : end]
        self._at = end
        if end == len(self._buffer):
            self._buffer, self._at = b"", 0
        return chunk

    def send(self, data: bytes) -> int:
        """Sends what the kernel takes now; when it takes nothing, waits for room (kazoo asked no select)."""
        try:
            return self._sock.send(data)
        except BlockingIOError:
            waiting = select.poll()
            waiting.register(self._sock.fileno(), _WRITABLE)
            if not waiting.poll(None if self._send_timeout is None else self._send_timeout * 1000.0):
                raise TimeoutError("socket time-out during write") from None
            return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str):  # noqa: ANN204 - whatever the socket has
        return getattr(self._sock, name)


def buffered_select(rlist, wlist, xlist, timeout=None):  # noqa: ANN001 - select()'s own signature
    """``poll_select``, except that a ``BufferedSocket`` with bytes in memory is readable at once
    (the other descriptors are still looked at, without waiting, so sends keep their turn), and
    one waited on for writing alone is writable at once (its ``send`` waits if it must)."""
    ready = [fileobj for fileobj in rlist if type(fileobj) is BufferedSocket and fileobj.pending()]
    if ready:
        others = [fileobj for fileobj in rlist if fileobj not in ready]
        return ready + (poll_select(others, [], [], 0)[0] if others else []), [], []
    if wlist and not rlist and all(type(fileobj) is BufferedSocket for fileobj in wlist):
        return [], list(wlist), []
    return poll_select(rlist, wlist, xlist, timeout)


def poll_select(rlist, wlist, xlist, timeout=None):  # noqa: ANN001 - select()'s own signature
    """Same contract as ``select.select`` for the lists kazoo passes (xlist is always empty)."""
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be non-negative")
    masks: dict[int, int] = defaultdict(int)
    objects: dict[int, list] = defaultdict(list)
    for mask, fileobjs in ((select.POLLIN | select.POLLPRI, rlist), (select.POLLOUT, wlist)):
        for fileobj in fileobjs:
            fd = fileobj_to_fd(fileobj)
            masks[fd] |= mask
            objects[fd].append(fileobj)
    poller = select.poll()
    for fd, mask in masks.items():
        poller.register(fd, mask)
    ready = poller.poll(None if timeout is None else timeout * 1000.0)
    readable, writable = [], []
    for fd, events in ready:
        if events & _READABLE and masks[fd] & select.POLLIN:
            readable.extend(o for o in objects[fd] if o in rlist)
        elif events & _WRITABLE and masks[fd] & select.POLLOUT:
            writable.extend(o for o in objects[fd] if o in wlist)
    return readable, writable, []


class SelectHandler(SequentialThreadingHandler):
    """kazoo's threading handler with ``poll_select`` in place of a selector per call, and bulk reads.

    It also names kazoo's two worker threads (completions of requests; watch events and
    dispatched callbacks), so logs and chapter 7's threading lesson can tell them apart.
    """

    def select(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return buffered_select(*args, **kwargs)

    def create_connection(self, *args, **kwargs):  # noqa: ANN002, ANN003
        sock = super().create_connection(*args, **kwargs)
        if kwargs.get("use_ssl"):
            return sock
        return BufferedSocket(sock, kwargs.get("timeout"))

    def start(self) -> None:
        super().start()
        # Each worker thread runs the callables of its queue: the first one names the thread.
        for work, name in ((self.completion_queue, "kazoo-completion"), (self.callback_queue, "kazoo-callback")):
            work.put(lambda name=name: setattr(threading.current_thread(), "name", name))
