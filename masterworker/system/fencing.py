"""The fencing token: why a zombie master's writes change nothing (book chapter 5).

A master paused past its session timeout wakes up believing it is still master. kazoo may even
have given it a new session by then (after LOST it reconnects by itself), so a write of its
could still reach ZooKeeper. Every master transaction therefore starts with a check of the
token the master got when it was elected; a newer master's election removes that token, so the
zombie's transaction fails on its first operation and changes nothing.

**The token is a node, not a version.** Each election is one transaction: create the
ephemeral ``/master``, create ``/epoch/epoch-<N>-<guid>``, delete the tokens before it. A
master's transactions begin with ``check(/epoch/<its token>)``. The guid makes every token
unique for ever: had the token been the version of ``/epoch`` (our first design), an operator
who deleted ``/epoch`` would reset the version to 0, and a zombie elected at epoch 7 would pass
the check again seven elections later. Nothing an outsider does to ``/epoch`` can make an old
token valid again: deleting a token, or all of ``/epoch``, fences its master (which then gives
up ``/master`` at once, so that an election runs); ``set /epoch`` changes no token.

``N`` counts elections for people (logs, history, ``mw status``); it restarts at 1 only if
``/epoch`` is wiped, which loses no safety.

Usage (a driver's election, then every fenced write)::

    token, older = next_token(client.get_children(EPOCH))
    txn = client.transaction()
    claim(txn, master_id, token, older, master_acl, epoch_acl)
    ...
    txn = client.transaction(); fence(txn, token); txn.create(...); ...
    if deposed(txn.commit()): give up /master
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kazoo.client import TransactionRequest
from kazoo.exceptions import BadVersionError, NoNodeError

from masterworker.system.protocol import EPOCH, MASTER, new_guid
from masterworker.system.zkops import failure

TOKEN = re.compile(r"epoch-(\d{10})-[0-9a-f]+")


@dataclass(frozen=True)
class Token:
    """One election's fencing token: ``/epoch/epoch-<number>-<guid>``."""

    number: int
    name: str

    @property
    def path(self) -> str:
        return f"{EPOCH}/{self.name}"


def tokens(children: list[str]) -> list[str]:
    """The token nodes among ``/epoch``'s children (anything else there is someone else's)."""
    return sorted(c for c in children if TOKEN.fullmatch(c))


def next_token(children: list[str]) -> tuple[Token, list[str]]:
    """The token a candidate claims, and the older tokens its election removes."""
    older = tokens(children)
    number = max((int(TOKEN.fullmatch(c).group(1)) for c in older), default=0) + 1  # type: ignore[union-attr]
    return Token(number, f"epoch-{number:010d}-{new_guid()}"), older


def token_of(name: str) -> Token:
    match = TOKEN.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a fencing token")
    return Token(int(match.group(1)), name)


def claim(
    txn: TransactionRequest,
    master_id: str,
    token: Token,
    older: list[str],
    master_acl: list | None = None,
    epoch_acl: list | None = None,
) -> None:
    """The election's operations: /master (index 0), our token (1), the older tokens' removal (2...)."""
    txn.create(MASTER, master_id.encode(), ephemeral=True, acl=master_acl)
    txn.create(token.path, master_id.encode(), acl=epoch_acl)
    for name in older:
        txn.delete(f"{EPOCH}/{name}")


def fence(txn: TransactionRequest, token: Token) -> None:
    """A fenced transaction's first operation: our token must still exist (any version)."""
    txn.check(token.path, -1)


def deposed(results: list[object]) -> bool:
    """Did a fenced transaction fail on its token check? Then a newer master exists, or an outsider
    removed the token: either way this master must stop acting and give up /master."""
    failed = failure(results)
    return failed is not None and failed[0] == 0 and isinstance(failed[1], NoNodeError | BadVersionError)
