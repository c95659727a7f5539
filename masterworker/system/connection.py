"""Opening a ZooKeeper session (book chapter 3, "Getting started with the ZooKeeper API").

Every ``mw`` command connects the same way: a hosts string (``host:port,host:port/chroot``),
a session timeout, and a connect timeout after which it gives up with one clear line instead
of hanging. The session timeout is the time the ensemble waits, after hearing nothing from a
client, before it declares the session expired and deletes its ephemeral znodes: it is how a
crashed master or worker is detected.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.hosts import collect_hosts
from kazoo.retry import KazooRetry
from loguru import logger

from masterworker.system.errors import BadInput, NotFound, ZooKeeperUnavailable

# kazoo warns once per connection when the chroot is missing; connect() says it in one line instead.
warnings.filterwarnings("ignore", message="No chroot path exists", module="kazoo")

DEFAULT_HOSTS = "127.0.0.1:2181"
DEFAULT_SESSION_TIMEOUT = 10.0


def validate_hosts(hosts: str) -> str:
    """Check a kazoo hosts string before kazoo sees it; raise BadInput with the reason."""
    text = hosts.strip()
    if not text:
        raise BadInput("the ZooKeeper hosts string is empty (expected host:port[,host:port][/chroot])")
    try:
        servers, chroot = collect_hosts(text)
    except ValueError as exc:
        raise BadInput(f"malformed ZooKeeper hosts string {hosts!r}: {exc}") from None
    explicit_ports = [part.rpartition(":")[2] for part in text.partition("/")[0].split(",")]
    for (_host, port), explicit in zip(servers, explicit_ports, strict=True):
        if explicit == "0" or not 0 < port < 65536:
            raise BadInput(f"malformed ZooKeeper hosts string {hosts!r}: port {port} is out of range")
    if chroot is not None:
        parts = chroot.split("/")[1:]
        if chroot.endswith("/") or any(p in ("", ".", "..") for p in parts):
            raise BadInput(f"malformed chroot {chroot!r} in {hosts!r} (expected /name[/name...])")
    return text


@dataclass(frozen=True)
class ZkSettings:
    """The connection settings every command shares (``--zk``/``MW_ZK`` and friends)."""

    hosts: str = DEFAULT_HOSTS
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    connect_timeout: float = 10.0
    auth: str | None = None  # "user:password" for ZooKeeper's digest scheme (chapter 6)

    @classmethod
    def from_env(cls, **overrides: object) -> ZkSettings:
        values: dict[str, object] = {
            "hosts": os.environ.get("MW_ZK", DEFAULT_HOSTS),
            "session_timeout": float(os.environ.get("MW_SESSION_TIMEOUT", DEFAULT_SESSION_TIMEOUT)),
            "auth": os.environ.get("MW_AUTH") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def validated(self) -> ZkSettings:
        validate_hosts(self.hosts)
        if self.session_timeout <= 0:
            raise BadInput(f"the session timeout must be positive, not {self.session_timeout}")
        if self.connect_timeout <= 0:
            raise BadInput(f"the connect timeout must be positive, not {self.connect_timeout}")
        if self.auth is not None:
            user, sep, password = self.auth.partition(":")
            if not (user and sep and password):
                raise BadInput("--auth must be USER:PASSWORD")
        return self


def make_client(settings: ZkSettings) -> KazooClient:
    """A client that retries connecting forever in the background and retries no command by itself.

    Commands are not retried by kazoo because a retried create may have succeeded the first
    time: each caller decides what ConnectionLoss means for its own operation (chapter 5).
    """
    from masterworker.system.fast_handler import SelectHandler

    settings.validated()
    return KazooClient(
        hosts=settings.hosts,
        timeout=settings.session_timeout,
        connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
        handler=SelectHandler(),
        auth_data=[("digest", settings.auth)] if settings.auth else None,  # re-sent on every reconnect
    )


def connect(settings: ZkSettings, create_chroot: bool = False) -> KazooClient:
    """Start a session or raise ZooKeeperUnavailable within ``settings.connect_timeout``.

    A chroot that does not exist makes every later call fail with NoNode: it is created here when
    ``create_chroot`` (masters, as Curator creates a namespace), and refused in one line otherwise.
    A session timeout outside the server's bounds is granted as the nearest bound: said once.
    """
    client = _start(settings)
    try:
        if client.chroot and client.exists("/") is None:
            if not create_chroot:
                raise NotFound(
                    f"the chroot {client.chroot} does not exist on {settings.hosts.partition('/')[0]} "
                    "(a master creates it: start 'mw master' with the same --zk)"
                )
            _create_chroot(settings, client.chroot)
        granted = granted_session_timeout(client, settings.session_timeout)
        if granted is not None and abs(granted - settings.session_timeout) > 0.001:
            logger.warning(
                "asked for a {:.10g} s session timeout; the server grants {:.10g} s (its minSessionTimeout and "
                "maxSessionTimeout bound it)",
                settings.session_timeout,
                granted,
            )
    except BaseException:
        close_quietly(client)
        raise
    return client


def _start(settings: ZkSettings) -> KazooClient:
    client = make_client(settings)
    kazoo_logger = logging.getLogger("kazoo.client")
    level = kazoo_logger.level
    kazoo_logger.setLevel(logging.CRITICAL)  # one clear line below, not a warning per attempt
    try:
        client.start(timeout=settings.connect_timeout)
    except KazooTimeoutError:
        client.stop()
        client.close()
        raise ZooKeeperUnavailable(
            f"no ZooKeeper server answered at {settings.hosts} within {settings.connect_timeout:g} s "
            "(start one with 'mw zk start', or set --zk / MW_ZK)"
        ) from None
    finally:
        kazoo_logger.setLevel(level)
    return client


def _create_chroot(settings: ZkSettings, chroot: str) -> None:
    """Create the chroot from a session without one (a chrooted client cannot name its own root)."""
    root = _start(ZkSettings(settings.hosts.partition("/")[0], settings.session_timeout, auth=settings.auth))
    try:
        root.ensure_path(chroot)
    finally:
        close_quietly(root)


def granted_session_timeout(client: KazooClient, asked: float) -> float | None:
    """The session timeout the server grants for ``asked`` seconds (None when it will not say).

    A server clamps the asked timeout into [minSessionTimeout, maxSessionTimeout] (by default 2
    and 20 ticks: 4 s to 40 s). kazoo 2.11 logs the negotiated value but keeps it nowhere, so the
    bounds are read with the ``conf`` four-letter word, where the server allows it.
    """
    from masterworker.zk.fourletter import four_letter, parse_lines

    for host, port in client.hosts:
        try:
            conf = parse_lines(four_letter(host, port, "conf", timeout=1.0), "=")
            low, high = int(conf["minSessionTimeout"]) / 1000, int(conf["maxSessionTimeout"]) / 1000
        except (OSError, KeyError, ValueError):
            continue
        return min(max(asked, low), high)
    return None


def close_quietly(client: KazooClient) -> None:
    """Close the session now, so the ensemble deletes our ephemeral znodes at once (chapter 3).

    Closing while no server answers makes kazoo log that it failed to connect "within the
    connection retry policy", after the command's last line: it says nothing then, and is muted."""
    kazoo_logger = logging.getLogger("kazoo.client")
    level = kazoo_logger.level
    if not client.connected:
        kazoo_logger.setLevel(logging.ERROR)
    try:
        client.stop()
    finally:
        client.close()
        kazoo_logger.setLevel(level)
