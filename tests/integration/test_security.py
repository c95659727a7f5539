"""Chapter 6 on a real server: a secured system refuses every unauthorised write, with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from kazoo.exceptions import NoAuthError

from masterworker.system.client import submit
from masterworker.system.protocol import PARENTS, TaskSpec
from masterworker.system.security import SECURITY, Policy, apply_role_acl, install_policy
from tests.helpers import Roles, all_done, run_mw, statuses, wait_until

MASTER, WORKER, CLIENT = "alice:s3cret", "bob:hunter2", "carol:letmein"
USERS = f"master {MASTER}\nworker {WORKER}\nclient {CLIENT}\n"


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.txt"
    path.write_text("# role user:password\n" + USERS)
    return path


@pytest.fixture
def secured(roles: Roles, users_file: Path) -> Roles:
    install_policy(roles.client(auth=MASTER), Policy.from_users_file(users_file))  # what mw master --secure does
    master = roles.master("m1", auth=MASTER)
    wait_until(master.elected.is_set, what="the secure master elected")
    worker = roles.worker("w1", auth=WORKER)
    wait_until(worker.registered.is_set, what="w1 registered")
    return roles


def test_authorised_roles_work_end_to_end(secured: Roles, mw_env) -> None:
    result = run_mw("submit", "--auth", CLIENT, "--", "echo", "secure", env=mw_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "secure"


@pytest.mark.parametrize("auth", [None, "carol:wrong", WORKER, "mallory:x"])
def test_anonymous_wrong_and_worker_users_cannot_submit(secured: Roles, mw_env, auth: str | None) -> None:
    admin = secured.client(auth=MASTER)
    before = admin.get_children("/tasks")
    result = run_mw("submit", *(["--auth", auth] if auth else []), "--", "true", env=mw_env)
    assert result.returncode == 5
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ZooKeeper refused")
    assert admin.get_children("/tasks") == before  # nothing written


def test_anonymous_users_read_nothing(secured: Roles, mw_env) -> None:
    anonymous = secured.client()
    for path in ("/tasks", "/workers", "/assign", "/status", "/master", "/epoch", "/security"):
        with pytest.raises(NoAuthError):
            anonymous.get(path)
    assert run_mw("status", env=mw_env).returncode == 5


def test_a_worker_cannot_assign_or_touch_the_master_and_a_client_cannot_fake_a_status(secured: Roles) -> None:
    worker = secured.client(auth=WORKER)
    for attempt in (
        lambda: worker.create("/assign/w1/task-000000000000-0000000001", b"x"),
        lambda: worker.create("/tasks/task-000000000000-", b"x", sequence=True),
        lambda: worker.set("/epoch", b"x"),
        lambda: worker.delete("/master"),
    ):
        with pytest.raises(NoAuthError):
            attempt()
    client = secured.client(auth=CLIENT)
    with pytest.raises(NoAuthError):
        client.create("/status/task-000000000000-0000000001", b"done")
    with pytest.raises(NoAuthError):
        client.delete("/assign/w1")


def test_tasks_and_statuses_carry_the_roles_acls(secured: Roles) -> None:
    client = secured.client(auth=CLIENT)
    apply_role_acl(client, "client")
    task = submit(client, TaskSpec(argv=["true"]))
    wait_until(lambda: all_done(client, [task]), 15, "the task done")
    status_acl = {(a.id.id.split(":")[0], a.perms) for a in client.get_acls(f"/status/{task}")[0]}
    assert ("carol", 1) in status_acl and ("alice", 31) in status_acl  # clients read, masters all
    assert statuses(client)[task].worker == "w1"


def test_the_policy_exists_before_any_parent_a_worker_waits_for(roles: Roles, users_file: Path) -> None:
    """Regression (CI, tutorial 6): a worker found /assign before /security and registered open.

    ZooKeeper orders all writes, so "created before" is "smaller czxid".
    """
    master = roles.client(auth=MASTER)
    install_policy(master, Policy.from_users_file(users_file))
    policy_created = master.exists(SECURITY).czxid
    for parent in PARENTS:
        assert master.exists(parent).czxid > policy_created, parent


def test_a_worker_started_before_the_secure_master_registers_closed(roles: Roles, users_file: Path) -> None:
    worker = roles.worker("w1", auth=WORKER)  # waits for a master to create the parents
    install_policy(roles.client(auth=MASTER), Policy.from_users_file(users_file))  # what mw master --secure does
    master = roles.master("m1", auth=MASTER)
    wait_until(worker.registered.is_set, what="w1 registered")
    wait_until(master.elected.is_set, what="the secure master elected")
    admin = roles.client(auth=MASTER)
    for path in ("/assign/w1", "/workers/w1"):
        schemes = {acl.id.scheme for acl in admin.get_acls(path)[0]}
        assert schemes == {"digest"}, (path, schemes)
    with pytest.raises(NoAuthError):
        roles.client(auth=WORKER).create("/assign/w1/task-000000000000-0000000001", b"x")


def test_a_bad_users_file_is_one_line_exit_2(tmp_path: Path, mw_env) -> None:
    bad = tmp_path / "users.txt"
    bad.write_text("boss alice:pw\n")
    result = run_mw("master", "--secure", "--users", str(bad), "--auth", MASTER, env=mw_env)
    assert result.returncode == 2 and "expected 'ROLE USER:PASSWORD'" in result.stderr
    result = run_mw("master", "--secure", env=mw_env)
    assert result.returncode == 2 and "--secure needs --users FILE" in result.stderr
