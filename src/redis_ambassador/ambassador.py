"""The composition root: discover the cluster, build the pipeline, serve until cancelled.

anyio owns the lifetimes (one task group for node connects and the topology refresher; shutdown is
cancellation); the per-byte work runs in asyncio protocol callbacks, on uvloop when installed.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gc
import logging
import socket
from collections.abc import Callable, Collection

import anyio

from redis_ambassador.commands.table import CommandTable
from redis_ambassador.config import Address, Config
from redis_ambassador.routing.router import Router, ServerFacts
from redis_ambassador.routing.topology import control_client, discover
from redis_ambassador.server.client import ClientConnection, ClientRegistry
from redis_ambassador.upstream.pool import Upstream

log = logging.getLogger(__name__)


class ListenError(RuntimeError):
    """The listen address cannot be bound; the message says why and what to do."""


class _Facts(ServerFacts):
    """HELLO's version, plus the clients connected to this ambassador (CLIENT LIST)."""

    def __init__(self, version: bytes, clients: ClientRegistry) -> None:
        super().__init__(version)
        self._registry = clients

    @property
    def clients(self) -> Collection[ClientConnection]:
        return self._registry.connected


async def _learn_cluster(address: Address, timeout: float) -> tuple[CommandTable, ServerFacts]:
    """The command table and the server version, from the node that described the cluster."""
    client = await control_client(address, timeout)
    try:
        table = CommandTable.from_reply(await client.execute_command("COMMAND"))
        info = await client.execute_command("INFO", "server")
    finally:
        await client.aclose()
    version = b"0.0.0"
    for line in info.splitlines():
        if line.startswith(b"redis_version:"):
            version = line.split(b":", 1)[1].strip()
    return table, ServerFacts(version)


def _listen_socket(address: Address) -> socket.socket:
    """Bind the client port first: a port in use is reported before anything else starts."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        sock = socket.create_server((address.host, address.port), family=family, backlog=1024)
    except OSError as exc:
        raise ListenError(_listen_problem(address, exc)) from exc
    sock.setblocking(False)
    return sock


async def serve(config: Config, ready: Callable[[Address], None] | None = None) -> None:
    """Run the ambassador until cancelled; ``ready`` is called with the bound address.

    Start-up failures (port in use, no reachable seed) raise ListenError or ClusterUnreachable
    themselves, before any task starts.
    """
    if not config.cluster.seeds:
        raise ValueError("no seed nodes configured (cluster.seeds / --seed HOST:PORT)")
    loop = asyncio.get_running_loop()
    timeout = config.upstream.connect_timeout
    sock = _listen_socket(config.server.listen)
    try:
        slot_map, via = await discover(config.cluster.seeds, timeout)
        table, facts = await _learn_cluster(via, timeout)
    except BaseException:
        sock.close()
        raise
    log.info(
        "cluster found via %s: %d masters, %d commands known, Redis %s",
        via, len(slot_map.masters), len(table), facts.version.decode(),
    )  # fmt: skip
    clients = ClientRegistry()
    facts = _Facts(facts.version, clients)
    async with anyio.create_task_group() as tg:
        upstream = Upstream(tg, config.upstream.pool_size, timeout)
        router = Router(config, upstream, table, facts)
        router.apply(slot_map)
        server = await loop.create_server(lambda: ClientConnection(router, clients), sock=sock)
        tg.start_soon(router.run_refresher, name="topology refresher")
        tg.start_soon(upstream.run_watchdog, config.upstream.command_timeout, name="watchdog")
        tg.start_soon(_return_memory_after_departures, clients, name="memory")
        address = Address(config.server.listen.host, sock.getsockname()[1])
        log.info("serving Redis on %s", address)
        # Start-up objects (command table, slot table) live forever: keep them out of the
        # collector's full passes, which then only walk what the traffic allocates.
        gc.freeze()
        if ready is not None:
            ready(address)
        try:
            await anyio.sleep_forever()
        finally:
            server.close()
            for client in list(clients.connected):
                client.close()
            upstream.close()
            tg.cancel_scope.cancel()


async def _return_memory_after_departures(clients: ClientRegistry) -> None:
    """Give freed memory back to the OS once many clients have left.

    glibc keeps what a burst of connections used (about 3.5 KB each) in its heap after they
    close; ``malloc_trim`` hands it back, so RSS returns near its baseline.
    """
    trim = _malloc_trim()
    if trim is None:
        return
    trimmed_at = 0
    while True:
        await anyio.sleep(1)
        if clients.departed - trimmed_at >= _DEPARTURES_BEFORE_TRIM:
            trimmed_at = clients.departed
            trim(0)


_DEPARTURES_BEFORE_TRIM = 256


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: nothing to trim


def _listen_problem(listen: Address, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        hint = ""
        if listen.port == 6379:
            hint = (
                " (a system Redis may be running there: stop it with "
                "'systemctl stop redis-server' or 'service redis-server stop', "
                "or choose another port with --listen/--port)"
            )
        return f"cannot listen on {listen}: the port is already in use{hint}"
    return f"cannot listen on {listen}: {exc.strerror or exc}"
