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
import re
import socket
from collections.abc import Callable, Collection, Iterable

import anyio
from redis.exceptions import RedisError

from redis_ambassador.commands.table import CommandTable
from redis_ambassador.config import Address, Config
from redis_ambassador.routing.router import Router, ServerFacts
from redis_ambassador.routing.topology import SlotMap, control_client, discover
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


async def _learn_cluster(
    slot_map: SlotMap, via: Address, timeout: float
) -> tuple[CommandTable, bytes]:
    """The command table (from the node that described the cluster) and the version to report:
    the lowest among all its masters and replicas, so a client never relies on a feature that
    some node lacks (during a rolling upgrade, say)."""
    client = await control_client(via, timeout)
    try:
        table = CommandTable.from_reply(await client.execute_command("COMMAND"))
    finally:
        await client.aclose()
    versions: list[bytes] = []
    async with anyio.create_task_group() as tg:
        for address in sorted(slot_map.masters | slot_map.replicas | {via}, key=str):
            tg.start_soon(_collect_version, address, timeout, versions)
    return table, lowest_version(versions)


async def _collect_version(address: Address, timeout: float, versions: list[bytes]) -> None:
    """Append the node's ``redis_version``; a node that does not answer is left out (a replica
    that is down must not stop the ambassador from starting)."""
    try:
        client = await control_client(address, timeout)
        try:
            info = await client.execute_command("INFO", "server")
        finally:
            await client.aclose()
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("could not read the Redis version of %s: %s", address, exc)
        return
    for line in info.splitlines():
        if line.startswith(b"redis_version:"):
            versions.append(line.split(b":", 1)[1].strip())


def lowest_version(versions: Iterable[bytes]) -> bytes:
    """The lowest version, compared numerically part by part (``7.0.15`` < ``7.2.4`` <
    ``7.10.0``); ``0.0.0`` when there is none."""
    return min(versions, key=_version_key, default=b"0.0.0")


def _version_key(version: bytes) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(rb"\d+", version))


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
        table, version = await _learn_cluster(slot_map, via, timeout)
    except BaseException:
        sock.close()
        raise
    log.info(
        "cluster found via %s: %d masters, %d commands known, Redis %s",
        via, len(slot_map.masters), len(table), version.decode(),
    )  # fmt: skip
    clients = ClientRegistry()
    facts = _Facts(version, clients)
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
