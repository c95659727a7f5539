"""The errors a user can cause or meet, each with the exit code the CLI gives it.

The CLI turns these into one readable line: bad input exits 2 (as argument errors do),
ZooKeeper being unreachable exits 1. Nothing else should reach a user as a traceback.
"""

from __future__ import annotations


class MasterworkerError(Exception):
    """Base class: the message is the line the user sees."""

    exit_code = 1


class BadInput(MasterworkerError, ValueError):
    """The user asked for something invalid; nothing was written to ZooKeeper."""

    exit_code = 2


class ZooKeeperUnavailable(MasterworkerError):
    """No ZooKeeper server answered within the connect timeout."""

    exit_code = 1


class NotFound(MasterworkerError):
    """A task or node the user named does not exist."""

    exit_code = 2


class BacklogFull(MasterworkerError):
    """Backpressure: too many tasks are pending; submit refuses rather than break the ensemble."""

    exit_code = 4
