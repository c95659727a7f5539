"""Guarantee 1, election: one active master; backups take over on kill -9, SIGTERM, expiry (ch. 3-5).

Ported from the book's scenario "master election with a backup", then pushed through the
failures the book's own code does not survive.
"""

from __future__ import annotations

import signal
import time

from kazoo.client import KazooClient

from masterworker.system.fencing import token_of
from masterworker.system.master import MasterState
from masterworker.system.protocol import EPOCH
from masterworker.system.zkops import expire_session
from tests.conftest import SESSION_TIMEOUT
from tests.helpers import Roles, master_id, wait_until


def test_one_master_is_elected_and_the_backup_takes_over_on_a_clean_stop(roles: Roles, zk: KazooClient) -> None:
    first = roles.master("m1")
    wait_until(first.elected.is_set, what="m1 elected")
    backup = roles.master("m2")
    wait_until(lambda: backup._announced_backup, what="m2 to become a backup")
    assert master_id(zk) == "m1" and backup.state is MasterState.BACKUP
    [token_before] = zk.get_children(EPOCH)
    started = time.monotonic()
    roles.stop(first)  # closes its session: /master goes at once
    wait_until(backup.elected.is_set, 5, "m2 elected")
    assert time.monotonic() - started < 1.0
    assert master_id(zk) == "m2"
    [token_after] = zk.get_children(EPOCH)  # a new master, a new token; the old one is gone
    assert token_of(token_after).number == token_of(token_before).number + 1
    assert token_after == backup.token.name


def test_masters_sharing_an_id_never_both_believe_they_are_master(roles: Roles) -> None:
    """The book's masters got the same id and both acted; ownership is by session here."""
    masters = [roles.master("same-id") for _ in range(3)]
    wait_until(lambda: any(m.elected.is_set() for m in masters), what="one elected")
    time.sleep(0.5)  # give a wrong second election every chance to happen
    assert sum(m.elected.is_set() for m in masters) == 1


def test_kill_9_of_the_master_process_takeover_within_the_session_timeout(spawn, zk: KazooClient) -> None:
    first = spawn("master", "--id", "m1")
    wait_until(lambda: master_id(zk) == "m1", what="m1 elected")
    backup = spawn("master", "--id", "m2")
    wait_until(lambda: "is a backup" in backup.log(), what="m2 a backup")
    first.kill9()
    killed = time.monotonic()
    wait_until(lambda: master_id(zk) == "m2", SESSION_TIMEOUT + 5, "m2 elected")
    takeover = time.monotonic() - killed
    assert takeover < SESSION_TIMEOUT + 1.5, takeover


def test_sigterm_of_the_master_process_takeover_is_immediate(spawn, zk: KazooClient) -> None:
    first = spawn("master", "--id", "m1")
    wait_until(lambda: master_id(zk) == "m1", what="m1 elected")
    backup = spawn("master", "--id", "m2")
    wait_until(lambda: "is a backup" in backup.log(), what="m2 a backup")
    started = time.monotonic()
    first.signal(signal.SIGTERM)
    wait_until(lambda: master_id(zk) == "m2", 5, "m2 elected")
    assert time.monotonic() - started < 1.0
    assert first.proc.wait(10) == 0


def test_real_session_expiry_makes_the_master_rejoin_as_a_backup(roles: Roles, zk: KazooClient) -> None:
    first = roles.master("m1")
    wait_until(first.elected.is_set, what="m1 elected")
    backup = roles.master("m2")
    wait_until(lambda: backup._announced_backup, what="m2 a backup")
    expire_session(roles.session_of(first))  # on the server: /master is deleted now
    wait_until(backup.elected.is_set, 10, "m2 elected")
    wait_until(lambda: first.state is MasterState.BACKUP and not first.elected.is_set(), 10, "m1 a backup")
    assert master_id(zk) == "m2"
    # m1 has a new session and watches /master again: it takes over when m2 goes.
    roles.stop(backup)
    wait_until(first.elected.is_set, 10, "m1 elected again")
