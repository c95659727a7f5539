"""ACLs and digest authentication (book chapter 6, "Dealing with ACLs").

ZooKeeper checks permissions per znode (READ, WRITE, CREATE, DELETE, ADMIN) and ACLs are not
inherited: whoever creates a node says who may do what with it. A secured masterworker has
three roles, each with one or more digest users:

======================  ==========================  ==========================================
node                    written by                  who may do what
======================  ==========================  ==========================================
``/master``, ``/epoch``  masters                     masters everything; others read /master
``/tasks``              (parent)                    clients create; masters create and delete
``/tasks/<task>``       a client (or a master)      masters read; clients read
``/workers``            (parent)                    workers create (register)
``/assign``             (parent)                    workers create their own ``/assign/<id>``
``/assign/<worker>``    the worker                  masters create and delete (assign,
                                                    recover); the worker reads and deletes
                                                    (completes); nobody else writes
``/status``             (parent)                    workers create; clients delete (collect)
``/security``           the first secure master     the policy below, readable by every role
======================  ==========================  ==========================================

Every authenticated role may read everything but ``/epoch``; anonymous users may read nothing.
Under a chroot (``--zk host:port/app``) the chroot node itself gets masters-only writes, since
creating and deleting ``/master`` is governed by its parent's ACL; without a chroot the real
root is shared by everyone on the ensemble, so securing it is left to the operator.
A worker cannot assign (no CREATE under any ``/assign/<worker>``), a client cannot fake a
status (no CREATE under ``/status``), nobody but a master can write ``/master`` or ``/epoch``.

The first master started with ``--secure --users FILE`` writes the policy to ``/security``:
the digest ids (``user:base64(sha1(user:password))``, never the passwords) of each role. Workers
and clients read it and put the right ACL on the nodes they create. Users file::

    # role user:password
    master alice:s3cret
    worker bob:hunter2
    client carol:letmein
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NodeExistsError, NoNodeError
from kazoo.security import ACL, Id, Permissions, make_digest_acl_credential

from masterworker.system.errors import BadInput, MasterworkerError
from masterworker.system.protocol import ASSIGN, EPOCH, MASTER, MASTERS, STATUS, TASKS, WORKERS
from masterworker.system.zkops import ensure_nodes

SECURITY = "/security"
ROLES = ("master", "worker", "client")

READ, WRITE, CREATE, DELETE, ALL = (
    Permissions.READ,
    Permissions.WRITE,
    Permissions.CREATE,
    Permissions.DELETE,
    Permissions.ALL,
)


class NotAuthorised(MasterworkerError):
    """ZooKeeper refused an operation (NoAuth): wrong or missing --auth."""

    exit_code = 5


def check_auth(auth: str | None) -> str | None:
    if auth is None:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise BadInput("--auth must be USER:PASSWORD")
    return auth


@dataclass
class Policy:
    """The digest ids of each role; empty in an open (unsecured) system."""

    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def secure(self) -> bool:
        return bool(self.ids)

    @classmethod
    def from_users_file(cls, path: Path) -> Policy:
        try:
            text = path.read_text()
        except OSError as exc:
            raise BadInput(f"cannot read the users file {path}: {exc.strerror}") from None
        ids: dict[str, list[str]] = {role: [] for role in ROLES}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            role, _, credential = line.strip().partition(" ")
            user, sep, password = credential.strip().partition(":")
            if role not in ROLES or not sep or not user or not password:
                raise BadInput(f"{path}:{number}: expected 'ROLE USER:PASSWORD' with ROLE one of {', '.join(ROLES)}")
            ids[role].append(make_digest_acl_credential(user, password))
        if not all(ids.values()):
            raise BadInput(f"{path}: give at least one user for each role ({', '.join(ROLES)})")
        return cls(ids)

    def encode(self) -> bytes:
        return json.dumps(self.ids).encode()

    @classmethod
    def decode(cls, data: bytes) -> Policy:
        try:
            ids = json.loads(data)
        except ValueError:
            raise MasterworkerError(f"{SECURITY} does not hold a masterworker policy") from None
        if not isinstance(ids, dict) or not all(isinstance(ids.get(r), list) for r in ROLES):
            raise MasterworkerError(f"{SECURITY} does not hold a masterworker policy")
        return cls({r: [str(i) for i in ids[r]] for r in ROLES})

    # -- ACLs ----------------------------------------------------------------------------------
    def acl(self, **perms_by_role: int) -> list[ACL] | None:
        """An ACL giving each named role its permissions (None in an open system: kazoo's default)."""
        if not self.secure:
            return None
        return [
            ACL(perms, Id("digest", ident))
            for role, perms in perms_by_role.items()
            if perms
            for ident in self.ids[role]
        ]

    def readable(self, **extra: int) -> list[ACL] | None:
        """Every role may read; ``extra`` adds permissions on top."""
        perms = {role: READ for role in ROLES}
        for role, more in extra.items():
            perms[role] |= more
        return self.acl(**perms)

    def for_node(self, path: str) -> list[ACL] | None:
        """The ACL of each node a master creates (parents included)."""
        return {
            MASTER: self.readable(master=ALL),
            MASTERS: self.readable(master=ALL),
            EPOCH: self.acl(master=ALL),
            TASKS: self.readable(master=ALL, client=CREATE),
            WORKERS: self.readable(master=ALL, worker=CREATE),
            ASSIGN: self.readable(master=ALL, worker=CREATE),
            STATUS: self.readable(master=ALL, worker=CREATE, client=DELETE),
            SECURITY: self.readable(master=ALL),
        }.get(path)

    def created_by(self, role: str) -> list[ACL] | None:
        """The ACL a worker or client puts on what it creates (tasks; assign dirs, registrations, statuses).

        On a worker's ``/assign/<id>`` masters may create and delete children and the worker may
        delete them (complete), but not create them (assign).
        """
        if role == "worker":
            return self.readable(master=ALL, worker=DELETE)
        return self.readable(master=ALL)

    @property
    def assignment(self) -> list[ACL] | None:
        return self.readable(master=ALL)


def install_policy(client: KazooClient, policy: Policy) -> None:
    """A secure master: write /security, then create the parents with their ACLs (idempotent).

    The order matters. Workers and clients wait for ``/workers`` and ``/assign`` and then read
    ``/security`` to learn the ACLs of what they create; had the parents come first, a worker
    could find them, read no policy yet, and register with open ACLs (world may assign to it).
    """
    try:
        client.create(SECURITY, policy.encode(), acl=policy.for_node(SECURITY))
    except NodeExistsError:
        existing = Policy.decode(client.get(SECURITY)[0])
        if existing.ids != policy.ids:
            raise MasterworkerError(
                f"{SECURITY} holds another policy: start every master with the same users file"
            ) from None
    ensure_nodes(client, acl_for=policy.for_node)
    for path in (MASTER, EPOCH, TASKS, WORKERS, ASSIGN, STATUS):
        try:
            client.set_acls(path, policy.for_node(path))
        except NoNodeError:
            continue
    if client.chroot:
        # Creating or deleting /master is governed by its parent: the chroot node. (Never the real
        # "/": other systems share it. Without a chroot, the operator secures "/" by hand.)
        client.set_acls("/", policy.readable(master=ALL))


def load_policy(client: KazooClient) -> Policy:
    """The policy of the system this client talks to (an empty one when it is not secured)."""
    try:
        return Policy.decode(client.get(SECURITY)[0])
    except NoNodeError:
        return Policy()
    except NoAuthError:
        raise NotAuthorised(
            "ZooKeeper refused: not authorised to read the security policy; give --auth USER:PASSWORD (or MW_AUTH)"
        ) from None


def apply_role_acl(client: KazooClient, role: str) -> Policy:
    """Workers and clients: from now on this client's creates carry the role's ACL."""
    policy = load_policy(client)
    client.default_acl = policy.created_by(role)
    return policy
