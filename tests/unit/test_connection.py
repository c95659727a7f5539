"""Hosts strings and settings are checked before kazoo sees them."""

from __future__ import annotations

import pytest

from masterworker.system.connection import ZkSettings, validate_hosts
from masterworker.system.errors import BadInput


@pytest.mark.parametrize("hosts", ["127.0.0.1:2181", "a:1,b:2,c:3", "127.0.0.1:2181/app", "[::1]:2181/a/b", "host"])
def test_good_hosts(hosts: str) -> None:
    assert validate_hosts(hosts) == hosts


@pytest.mark.parametrize("hosts", ["", "  ", "h:port", "h:99999", "h:0", ":2181", "h:2181//x", "h:2181/x/", "h:1/./x"])
def test_bad_hosts(hosts: str) -> None:
    with pytest.raises(BadInput):
        validate_hosts(hosts)


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_ZK", "10.0.0.1:1/x")
    monkeypatch.setenv("MW_SESSION_TIMEOUT", "3.5")
    settings = ZkSettings.from_env()
    assert (settings.hosts, settings.session_timeout) == ("10.0.0.1:1/x", 3.5)
    assert ZkSettings.from_env(hosts="h:1").hosts == "h:1"


def test_non_positive_timeouts_are_bad_input() -> None:
    with pytest.raises(BadInput):
        ZkSettings(session_timeout=0).validated()
    with pytest.raises(BadInput):
        ZkSettings(connect_timeout=-1).validated()
