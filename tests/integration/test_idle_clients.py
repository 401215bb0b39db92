"""Idle clients cost little, and what they cost is given back when they leave."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador

CLIENTS = 3000


def _open_idle_clients(ambassador: Ambassador, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection((ambassador.host, ambassador.port), timeout=10)
        sock.sendall(b"PING\r\n")
        socks.append(sock)
    for sock in socks:  # every one accepted and answered: its per-client state exists
        assert sock.recv(16) == b"+PONG\r\n"
    return socks


def test_idle_clients_use_a_few_kilobytes_each_and_memory_returns_when_they_leave(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CLIENTS + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, CLIENTS + 1024), hard))
    ambassador = start_ambassador(cluster)
    assert ambassador.client().ping() is True
    baseline = ambassador.rss_bytes()
    socks = _open_idle_clients(ambassador, CLIENTS)
    grown = ambassador.rss_bytes() - baseline
    assert grown / CLIENTS < 8 * 1024, f"{grown / CLIENTS:.0f} bytes per idle client"
    for sock in socks:
        sock.close()
    deadline = time.monotonic() + 10
    retained = grown
    while time.monotonic() < deadline:
        retained = ambassador.rss_bytes() - baseline
        if retained < grown / 2:
            break
        time.sleep(0.2)
    assert retained < grown / 2, (
        f"{CLIENTS} idle clients grew RSS by {grown >> 10} KB; {retained >> 10} KB still held "
        "10 s after they left"
    )
