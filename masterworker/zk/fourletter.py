"""Four-letter words: ZooKeeper's tiny monitoring protocol (book chapter 10).

A client opens a TCP connection, sends four ASCII letters (``srvr``, ``conf``, ``mntr``,
``wchs``...), and the server answers with text and closes the connection. Since 3.5 each word
must be allowed by ``4lw.commands.whitelist``; our launcher allows them all.
"""

from __future__ import annotations

import socket


def four_letter(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    """Send one four-letter word and return the whole reply (raises OSError when nobody answers)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(word.encode("ascii"))
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def parse_lines(reply: str, separator: str = ":") -> dict[str, str]:
    """``srvr`` says ``Mode: leader``; ``conf`` says ``dataDir=...``; ``mntr`` separates with tabs."""
    fields: dict[str, str] = {}
    for line in reply.splitlines():
        key, sep, value = line.partition(separator)
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def server_facts(host: str, port: int, timeout: float = 2.0) -> dict[str, object]:
    """Mode, zxid, connections, znode count and configuration version of one server (``mw zk status``).

    A server that is up but not part of a working quorum answers ``srvr`` with "not currently
    serving requests"; that is reported as mode ``not serving``.
    """
    srvr = four_letter(host, port, "srvr", timeout)
    if "not currently serving" in srvr:
        return {"mode": "not serving", "zxid": None, "connections": None, "znodes": None}
    fields = parse_lines(srvr)
    zxid = fields.get("Zxid")
    mntr = parse_lines(four_letter(host, port, "mntr", timeout), "\t")
    conf = parse_lines(four_letter(host, port, "conf", timeout), "=")
    return {
        "outstanding_requests": _int(mntr.get("zk_outstanding_requests")),
        "avg_latency_ms": _float(mntr.get("zk_avg_latency")),
        "max_latency_ms": _int(mntr.get("zk_max_latency")),
        "watches": _int(mntr.get("zk_watch_count")),
        "ephemerals": _int(mntr.get("zk_ephemerals_count")),
        "mode": fields.get("Mode", "unknown"),
        "zxid": zxid,
        "epoch": int(zxid, 16) >> 32 if zxid else None,
        "connections": int(fields["Connections"]) if "Connections" in fields else None,
        "znodes": int(fields["Node count"]) if "Node count" in fields else None,
        # the version of the membership this server knows (3.5+; a standalone server has none)
        "config_version": f"0x{conf['version']}" if "version" in conf else None,
    }


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
