"""Changing a running ensemble: dynamic reconfiguration (book chapter 10, ZooKeeper 3.5+).

The membership of an ensemble is itself data: ZooKeeper keeps it in ``/zookeeper/config``
(one ``server.N=host:peer:election:role;host:clientPort`` line per server and a ``version``,
the zxid of the change that made it). ``reconfig`` changes it with a transaction through the
leader like any write, so every server learns the new membership in the same order as the
data around it. We use the incremental form:

- **grow**: start a new server configured with the members and itself; it syncs with the
  leader as a non-voting learner; then ``reconfig(joining="server.N=...")`` makes it a member.
- **shrink**: ``reconfig(leaving="N")``, then stop the server that left (a removed server
  keeps running alone until stopped: stopping it is the operator's job).
- **change a role**: ``joining`` an existing id with ``:observer`` (or ``:participant``).

Each change is conditional on the configuration version it was computed from (``from_config``),
like a conditional ``setData``: two operators changing the ensemble at once cannot both win.
Only an authorised client may reconfigure: ZooKeeper 3.5+ requires the superuser, or ACL checks
skipped (``skipACL``), or an ACL opened on ``/zookeeper/config``. ``LocalZooKeeper`` gives every
server a superuser digest whose password only the launching process knows.

What clients do about it (chapter 10's "managing client connect strings"): a session keeps its
server as long as that server stays in the ensemble, whatever connect string it started with;
a client whose server leaves reconnects to another server of *its own* list. kazoo never reads
``/zookeeper/config`` by itself and does not rebalance the way the Java client's
``updateServerList`` does (moving a computed share of clients to new servers); ``set_hosts``
replaces the list it uses at its next reconnect. ``follow_membership`` below does that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    ConnectionLoss,
    KazooException,
    NewConfigNoQuorumError,
    NoAuthError,
    ReconfigInProcessError,
    SessionExpiredError,
    UnimplementedError,
)
from loguru import logger

from masterworker.system.errors import BadInput, MasterworkerError

if TYPE_CHECKING:
    from masterworker.zk.server import LocalZooKeeper, ZooKeeperServer

CONFIG_NODE = "/zookeeper/config"


class ReconfigRefused(MasterworkerError):
    """ZooKeeper (or the launcher) refused to change the ensemble; nothing changed."""

    exit_code = 1


@dataclass(frozen=True)
class Member:
    sid: int
    role: str  # participant (votes) or observer
    client_address: str  # host:port

    @property
    def voter(self) -> bool:
        return self.role == "participant"


@dataclass(frozen=True)
class Membership:
    """What ``/zookeeper/config`` says: the members and the version of the configuration."""

    version: int
    members: tuple[Member, ...]

    @classmethod
    def parse(cls, data: bytes | str) -> Membership:
        text = data.decode() if isinstance(data, bytes) else data
        version, members = 0, []
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key == "version":
                version = int(value, 16)
            elif key.startswith("server."):
                peers, _, client = value.partition(";")
                parts = peers.split(":")
                role = parts[3] if len(parts) > 3 else "participant"
                members.append(Member(int(key.split(".", 1)[1]), role, client.strip()))
        return cls(version, tuple(sorted(members, key=lambda m: m.sid)))

    @property
    def voters(self) -> list[int]:
        return [m.sid for m in self.members if m.voter]

    @property
    def observers(self) -> list[int]:
        return [m.sid for m in self.members if not m.voter]

    @property
    def connect_string(self) -> str:
        """Every member's client address: observers serve clients too."""
        return ",".join(m.client_address for m in self.members if m.client_address)

    def describe(self) -> str:
        observers = f" + observers {','.join(map(str, self.observers))}" if self.observers else ""
        return f"version {self.version:#x}: voters {','.join(map(str, self.voters))}{observers}"


def read_membership(client: KazooClient) -> Membership:
    """The configuration as the server this client talks to knows it (``sync`` first for the newest)."""
    client.sync(CONFIG_NODE)
    return Membership.parse(client.get(CONFIG_NODE)[0])


@dataclass(frozen=True)
class Change:
    """One reconfiguration: before, after, and how long ZooKeeper took to commit it."""

    before: Membership
    after: Membership
    reconfig_seconds: float  # the reconfig request alone
    total_seconds: float  # with starting and syncing new servers, or stopping removed ones

    def as_dict(self) -> dict[str, object]:
        return {
            "version_before": f"{self.before.version:#x}",
            "version": f"{self.after.version:#x}",
            "voters": self.after.voters,
            "observers": self.after.observers,
            "connect_string": self.after.connect_string,
            "reconfig_seconds": round(self.reconfig_seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
        }


_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (BadVersionError, "the configuration changed since version {version} (another reconfiguration came first)"),
    (NewConfigNoQuorumError, "a quorum of the new configuration is not connected to the leader and in sync"),
    (ReconfigInProcessError, "another reconfiguration is in progress"),
    (NoAuthError, "not authorised: reconfig needs the superuser (or skipACL, or an ACL on /zookeeper/config)"),
    (UnimplementedError, "reconfiguration is disabled on this ensemble (reconfigEnabled=false)"),
    (BadArgumentsError, "ZooKeeper found the change invalid"),
)


class Reconfigurer:
    """Grows, shrinks and re-roles the ensemble a ``LocalZooKeeper`` runs, through ``reconfig``."""

    def __init__(self, zk: LocalZooKeeper, timeout: float = 60.0) -> None:
        self.zk = zk
        self.timeout = timeout

    def _admin(self) -> KazooClient:
        hosts = ",".join(s.address for s in self.zk.servers if s.running)
        client = KazooClient(hosts=hosts, timeout=10, auth_data=[("digest", self.zk.superuser)])
        client.start(timeout=15)
        return client

    def membership(self) -> Membership:
        client = self._admin()
        try:
            return read_membership(client)
        finally:
            client.stop()
            client.close()

    def _reconfig(
        self, joining: str | None, leaving: str | None, from_config: int | None, done: Callable[[Membership], bool]
    ) -> tuple[Membership, Membership, float]:
        """One ``reconfig``; ``done`` tells from a membership whether it happened.

        A reconfig that removes the server our admin session uses, or the ZooKeeper leader, drops
        the connection as it commits: the reply is lost and kazoo raises ConnectionLoss. As with a
        create (chapter 3), that means "find out": we read the configuration again once reconnected.
        """
        client = self._admin()
        try:
            before = read_membership(client)
            version = before.version if from_config is None else from_config
            started = time.monotonic()
            try:
                data, _stat = client.reconfig(joining=joining, leaving=leaving, new_members=None, from_config=version)
                after = Membership.parse(data)
            except (ConnectionLoss, SessionExpiredError):
                after = self._find_out(client, done)
                logger.info("the connection dropped as the reconfig committed; it did happen: {}", after.describe())
            except KazooException as exc:
                for kind, reason in _REFUSALS:
                    if isinstance(exc, kind):
                        raise ReconfigRefused(f"reconfig refused: {reason.format(version=f'{version:#x}')}") from None
                raise ReconfigRefused(f"reconfig failed: {type(exc).__name__}") from None
            seconds = time.monotonic() - started
        finally:
            client.stop()
            client.close()
        logger.info("reconfigured in {:.3f} s: {} -> {}", seconds, before.describe(), after.describe())
        return before, after, seconds

    def _find_out(self, client: KazooClient, done: Callable[[Membership], bool]) -> Membership:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                membership = read_membership(client)
            except (ConnectionLoss, SessionExpiredError):
                time.sleep(0.1)
                continue
            if done(membership):
                return membership
            time.sleep(0.1)  # a follower may not have applied the commit yet
        raise ReconfigRefused("the connection dropped during reconfig and the change was not seen afterwards")

    def add(self, count: int = 1, observer: bool = False, from_config: int | None = None) -> Change:
        """Start ``count`` new servers, wait until each follows the leader, then add them in one reconfig."""
        if not 1 <= count <= 4:
            raise BadInput("add 1 to 4 servers at a time")
        started = time.monotonic()
        new = [self.zk.new_server(observer) for _ in range(count)]
        try:
            for server in new:
                server.start()
            for server in new:
                server.wait_serving(self.timeout)  # synced with the leader, not yet a member
            joining = ",".join(s.config.server_line() for s in new)
            sids = {s.sid for s in new}
            before, after, seconds = self._reconfig(
                joining, None, from_config, lambda m: sids <= {x.sid for x in m.members}
            )
        except BaseException:
            for server in new:
                self.zk.forget(server)
            raise
        return Change(before, after, seconds, time.monotonic() - started)

    def remove(self, sids: list[int], from_config: int | None = None) -> Change:
        """Remove members in one reconfig, then stop them."""
        started = time.monotonic()
        leaving = [self._server(sid) for sid in sids]
        gone = set(sids)
        before, after, seconds = self._reconfig(
            None, ",".join(str(s) for s in sids), from_config, lambda m: not gone & {x.sid for x in m.members}
        )
        for server in leaving:
            self.zk.forget(server)
        return Change(before, after, seconds, time.monotonic() - started)

    def set_role(self, sid: int, observer: bool, from_config: int | None = None) -> Change:
        """Turn a voter into an observer or back: the same server, re-added with another role."""
        started = time.monotonic()
        server = self._server(sid)
        line = server.config.server_line().replace(
            f":{server.config.role};", ":observer;" if observer else ":participant;"
        )
        role = "observer" if observer else "participant"
        before, after, seconds = self._reconfig(
            line, None, from_config, lambda m: any(x.sid == sid and x.role == role for x in m.members)
        )
        self.zk.set_observer(server, observer)
        return Change(before, after, seconds, time.monotonic() - started)

    def _server(self, sid: int) -> ZooKeeperServer:
        try:
            return self.zk.server(sid)
        except KeyError:
            members = ", ".join(str(s.sid) for s in self.zk.servers)
            raise BadInput(f"no server {sid} in this ensemble (servers: {members})") from None


def follow_membership(client: KazooClient) -> None:
    """Keep ``client``'s server list equal to the ensemble's membership, as it changes.

    A data watch on ``/zookeeper/config`` calls ``set_hosts`` with every member's client address.
    kazoo uses the new list at its next reconnect; it does not move a connected session, so load
    is not rebalanced onto new servers until clients reconnect. kazoo puts a client's chroot in
    front of every path, ``/zookeeper/config`` included, so a chrooted client cannot watch it:
    give such a client a second, unchrooted session for this (the Java client's ``getConfig``
    bypasses the chroot).
    """
    if client.chroot:
        raise BadInput("follow_membership needs a client without a chroot (kazoo would chroot /zookeeper/config)")

    def changed(data: bytes | None, _stat: object) -> None:
        hosts = Membership.parse(data).connect_string if data else ""
        if hosts:
            client.set_hosts(hosts)
            logger.info("the ensemble's membership changed: server list now {}", hosts)

    client.DataWatch(CONFIG_NODE, changed)
