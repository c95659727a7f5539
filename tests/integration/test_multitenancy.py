"""Chapter 10's chroot multi-tenancy: two systems on one ensemble, side by side, tasks never cross."""

from __future__ import annotations

import uuid

from masterworker.system.client import submit
from masterworker.system.connection import ZkSettings, close_quietly, connect
from masterworker.system.protocol import TaskSpec
from tests.helpers import Roles, all_done, statuses, wait_until


def test_two_systems_under_two_chroots_never_see_each_others_tasks(zk_server) -> None:
    admin = connect(ZkSettings(hosts=zk_server.connect_string))
    roots = [f"/tenant-{name}-{uuid.uuid4().hex[:6]}" for name in ("a", "b")]
    systems = []
    try:
        for root in roots:
            admin.create(root)
            system = Roles(zk_server.connect_string + root, 2.0)
            system.master("master")
            system.worker("worker", slots=2)  # the same ids in both systems: they never meet
            systems.append(system)
        clients = [system.client() for system in systems]
        tasks = [
            [submit(c, TaskSpec(argv=["echo", root])) for _ in range(5)] for c, root in zip(clients, roots, strict=True)
        ]
        for client, mine in zip(clients, tasks, strict=True):
            wait_until(lambda c=client, m=mine: all_done(c, m), 20, "each tenant's tasks")
        for client, mine, root in zip(clients, tasks, roots, strict=True):
            done = statuses(client)
            assert set(done) == set(mine)  # only its own tasks
            assert {s.output for s in done.values()} == {f"{root}\n"}
        assert sorted(admin.get_children("/")) >= sorted(r.lstrip("/") for r in roots)
        assert admin.exists("/tasks") is None  # nothing leaked outside the chroots
    finally:
        for system in systems:
            system.stop_all()
        for root in roots:
            admin.delete(root, recursive=True)
        close_quietly(admin)
