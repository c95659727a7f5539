"""Network partitions between ZooKeeper servers: every peer link through a proxy of its own.

The chaos run's partition-zk rests on this: the launcher's ``peer_network`` and ``PeerLinks``.
A leader cut off from its peers must give way, the two others elect a leader of their own, and
once healed the old leader rejoins as a follower. No peer connection may go around the proxies
(ZooKeeper connects back to the address a peer announces: ``partition.advertising`` rewrites it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from masterworker.lab.chaos.partition import PeerLinks
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.zk.server import LocalZooKeeper
from tests.helpers import wait_until


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
