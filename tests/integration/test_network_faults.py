"""Network partitions on a real ZooKeeper, through the chaos run's proxies.

A session behind a proxy: cut off both ways it expires after its timeout; with only the replies
dropped it lives on (the gray failure of oneway-master). Between servers, the chaos run's
partition-zk rests on the launcher's ``peer_network`` and ``PeerLinks``: a leader cut off from
its peers must give way, the two others elect a leader of their own, and once healed the old
leader rejoins as a follower. No peer connection may go around the proxies (ZooKeeper connects
back to the address a peer announces: ``partition.advertising`` rewrites it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient, KazooState

from masterworker.lab.chaos.partition import PeerLinks, ProxyGroup
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.zk.server import LocalZooKeeper
from tests.helpers import wait_until


def test_replies_dropped_keep_a_session_alive_and_a_cut_both_ways_expires_it(zk_hosts: str, zk: KazooClient) -> None:
    """A role of the chaos run: 2 s sessions, our connection settings, three proxies in its connect
    string (here all three to the one test server). kazoo misses its ping replies, drops the
    connection and reconnects, each attempt timing out after a third of the session timeout;
    every attempt reaches the server and renews the session, which outlives its timeout. (With
    one server in the string, or 1 s sessions, the attempts come too far apart: it expires.)"""
    address, chroot = zk_hosts.split("/", 1)
    host, port = address.split(":")
    links = ProxyGroup([(host, int(port))] * 3)
    client = connect(ZkSettings(hosts=f"{links.connect_string}/{chroot}", session_timeout=2.0))
    try:
        client.create("/alive", ephemeral=True)
        session = client.client_id[0]
        links.oneway()
        wait_until(lambda: client.state == KazooState.SUSPENDED, timeout=10, what="the client to notice")
        until = time.monotonic() + 6.0  # three session timeouts
        while time.monotonic() < until:
            assert zk.exists("/alive"), "the session expired although its requests reached the server"
            time.sleep(0.1)
        assert client.state == KazooState.SUSPENDED  # all that time the client heard nothing
        links.heal()
        wait_until(lambda: client.state == KazooState.CONNECTED, timeout=10, what="the reconnect")
        assert client.client_id[0] == session  # the same session, never expired
        links.freeze()
        wait_until(lambda: not zk.exists("/alive"), timeout=10, what="the session to expire")
    finally:
        links.heal()
        close_quietly(client)
        links.stop()


def _ip(hex_address: str) -> str:
    """/proc/net/tcp{,6} write an address as hex of its 32-bit words in host order (an IPv4 is the last)."""
    return ".".join(str(b) for b in reversed(bytes.fromhex(hex_address[-8:])))


def direct_peer_connections(zk: LocalZooKeeper) -> list[str]:
    """Connections a ZooKeeper JVM opened straight to another server's peer ports on 127.0.0.1."""
    peer_ports = {port for s in zk.servers for port in (s.config.peer_port, s.config.election_port)}
    found = []
    for server in zk.servers:
        inodes = set()
        for fd in Path(f"/proc/{server.pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{server.pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                remote, state, inode = fields[2], fields[3], fields[9]
                host, port = remote.split(":")
                if inode in inodes and state == "01" and int(port, 16) in peer_ports and _ip(host) == "127.0.0.1":
                    found.append(f"server {server.sid} -> 127.0.0.1:{int(port, 16)}")
    return found


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[tuple[LocalZooKeeper, PeerLinks]]:
    links = PeerLinks()
    try:
        with LocalZooKeeper(servers=3, data_dir=tmp_path / "zk", peer_network=links) as zk:
            yield zk, links
    finally:
        links.stop()


@pytest.mark.ensemble
@pytest.mark.timeout(120)
def test_a_leader_cut_off_from_its_peers_gives_way_and_rejoins_once_healed(ensemble) -> None:
    zk, links = ensemble
    leader = zk.wait_for_leader()
    assert direct_peer_connections(zk) == []
    for server in zk.servers:
        assert (server.config.data_dir / "hosts").read_text().count("mw-zk") == 3
    client: KazooClient = connect(ZkSettings(hosts=zk.connect_string, session_timeout=10))
    try:
        client.create("/before", b"x")
        links.cut_off(leader.sid)
        others = [s for s in zk.servers if s is not leader]
        # ZooKeeper's leader steps down after syncLimit (10 ticks of 500 ms) without a quorum behind it
        wait_until(lambda: leader.mode() != "leader", timeout=30, what="the cut-off leader to give way")
        wait_until(lambda: any(s.mode() == "leader" for s in others), timeout=30, what="a new leader")
        client.retry(client.ensure_path, "/during")  # the majority accepts writes
        assert leader.mode() == "not serving"  # the minority serves nobody
        assert direct_peer_connections(zk) == []  # nobody went around the proxies
        links.heal(leader.sid)
        wait_until(lambda: leader.mode() == "follower", timeout=30, what="the old leader to rejoin")
        assert client.exists("/during")
    finally:
        close_quietly(client)
