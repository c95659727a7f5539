"""Finding, configuring, starting and controlling real ZooKeeper servers (chapters 9 and 10)."""

from masterworker.zk.fourletter import four_letter, server_facts
from masterworker.zk.install import ZooKeeperInstall, ZooKeeperNotInstalled, find_install
from masterworker.zk.server import LocalZooKeeper, PortInUse, ServerStartError, ZooKeeperServer

__all__ = [
    "LocalZooKeeper",
    "PortInUse",
    "ServerStartError",
    "ZooKeeperInstall",
    "ZooKeeperNotInstalled",
    "ZooKeeperServer",
    "find_install",
    "four_letter",
    "server_facts",
]
