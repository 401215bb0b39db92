"""The composition root: discover the cluster, build the pipeline, serve until stopped.

anyio owns the lifetimes (one task group for node connects and the topology refresher; shutdown is
a drain bounded by a cancel scope, then cancellation); the per-byte work runs in asyncio protocol
callbacks, on uvloop when installed. ``Running`` is how the process steers it (cli.py maps
signals onto it).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gc
import logging
import re
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup, TaskStatus
from redis.exceptions import RedisError

from redis_ambassador.commands.auth import ClientAuth
from redis_ambassador.commands.state import ServerFacts
from redis_ambassador.commands.table import CommandTable
from redis_ambassador.config import Address, Config
from redis_ambassador.faults.api import ChaosApi
from redis_ambassador.faults.rules import Faults
from redis_ambassador.operations.listener import AdminRoutes, start_admin
from redis_ambassador.operations.metrics import registry_for
from redis_ambassador.reload import plan_reload
from redis_ambassador.rotation import Secrets
from redis_ambassador.routing.router import Router
from redis_ambassador.server.client import ClientConnection, ClientRegistry
from redis_ambassador.server.tls_listener import HANDSHAKE_TIMEOUT, ListenerContext
from redis_ambassador.tls import NodeTLS
from redis_ambassador.topology.backends import OneShard, backend_for
from redis_ambassador.topology.discovery import Discovered, discover
from redis_ambassador.topology.slotmap import ClusterUnreachable, SlotMap, control_client
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.dialer import Dialer
from redis_ambassador.upstream.health import run_health_checks
from redis_ambassador.upstream.names import Lookup, Names, system_lookup
from redis_ambassador.upstream.pool import Upstream

if TYPE_CHECKING:
    from redis_ambassador.faults.control import NodeControl

log = logging.getLogger(__name__)


class ListenError(RuntimeError):
    """The listen address cannot be bound; the message says why and what to do."""


async def _learn_cluster(
    slot_map: SlotMap,
    via: Address,
    timeout: float,
    credentials: Credentials,
    names: Names,
    tls: NodeTLS | None = None,
    via_named: Address | None = None,
) -> tuple[CommandTable, bytes]:
    """The command table (from the node that described the cluster) and the version to report:
    the lowest among all its masters and replicas, so a client never relies on a feature that
    some node lacks (during a rolling upgrade, say)."""
    client = await control_client(via, timeout, credentials, tls, via_named)
    try:
        table = CommandTable.from_reply(await client.execute_command("COMMAND"))
    finally:
        await client.aclose()
    versions: list[bytes] = []
    async with anyio.create_task_group() as tg:
        for address in sorted(slot_map.masters | slot_map.replicas | {via_named or via}, key=str):
            tg.start_soon(_collect_version, address, timeout, credentials, versions, names, tls)
    return table, lowest_version(versions)


async def _collect_version(
    address: Address,
    timeout: float,
    credentials: Credentials,
    versions: list[bytes],
    names: Names,
    tls: NodeTLS | None,
) -> None:
    """Append the node's ``redis_version``; a node that does not answer is left out (a replica
    that is down must not stop the ambassador from starting)."""
    try:
        dial = (await names.resolve(address))[0]
        client = await control_client(dial, timeout, credentials, tls, address)
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


async def _first_master(backend: OneShard) -> tuple[SlotMap, Address]:
    """The backend's first slot map, and its master (to learn the command table from)."""
    slot_map = await backend.fetch()
    if not slot_map.masters:
        raise ClusterUnreachable(f"the {backend.name} backend has no reachable master")
    return slot_map, next(iter(slot_map.masters))


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


def _tls_socket(config: Config, plain: socket.socket) -> socket.socket | None:
    """Bind the TLS listener's port, if one is configured (closing the plain one if it fails)."""
    if config.server.tls_listen is None:
        return None
    try:
        return _listen_socket(config.server.tls_listen)
    except ListenError as exc:
        plain.close()
        raise ListenError(f"TLS listener: {exc} (choose another with --tls-listen)") from None


async def _serve_tls(
    sock: socket.socket, context: ListenerContext, router: Router, clients: ClientRegistry
) -> asyncio.Server:
    """The TLS listener: ClientConnections as on the plain one, once their handshake is done."""
    return await asyncio.get_running_loop().create_server(
        lambda: ClientConnection(router, clients),
        sock=sock,
        ssl=context,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
    )


class Running:
    """A serving ambassador, as the process steers it: ``stop`` (drain, then ``serve``
    returns) and ``reload``."""

    def __init__(
        self,
        config: Config,
        router: Router,
        clients: ClientRegistry,
        servers: list[asyncio.Server],
        secrets: Secrets,
        use_secrets: Callable[[Secrets], None],
    ) -> None:
        self.config = config
        self.router = router
        self.clients = clients
        self._servers = servers  # the plain listener, and the TLS one if configured
        self._secrets = secrets
        self._use_secrets = use_secrets  # hands rotated secrets to whatever uses them
        self._stop_requested = anyio.Event()
        self._stop_reasons: list[str] = []  # for the log: which signals
        self._drain_scope = anyio.CancelScope()  # cancelled by a second stop

    def unready(self) -> str | None:
        """Why /readyz says no (None: ready): draining, or slots without a reachable master."""
        if self._stop_requested.is_set():
            return "shutting down (draining)"
        return self.router.unready()

    def stop(self, reason: str = "stop") -> None:
        """The first call drains (``serve`` returns when done); a second cuts the drain short."""
        self._stop_reasons.append(reason)
        if not self._stop_requested.is_set():
            self._stop_requested.set()
        else:
            self._drain_scope.cancel()

    def reload(self, loaded: Config) -> None:
        """Take the live keys of a freshly loaded config, and the secrets it names (files read
        again); log what needs a restart instead, and each secret that cannot be read."""
        plan = plan_reload(self.config, loaded)
        reread = self._secrets.reread(plan.config)
        plan = plan.amended(self.config, reread.changed, reread.failed)
        self.config = plan.config
        if reread.secrets is not self._secrets:
            self._secrets = reread.secrets
            self._use_secrets(reread.secrets)
        if plan.applied:
            self.router.reconfigure(plan.config)
            log.info("config reloaded: %s now in effect", ", ".join(plan.applied))
        elif not plan.pending and not reread.failed:
            log.info("config reloaded: nothing changed")
        warning = plan.restart_warning()
        if warning is not None:
            log.warning("%s", warning)

    async def _serve_until_stopped(self) -> None:
        await self._stop_requested.wait()
        # Refuse new connections at once; answer what every client already sent, then close it.
        for server in self._servers:
            server.close()
        clients = self.clients
        timeout = self.config.server.drain_timeout
        started = time.monotonic()
        clients.drain()
        log.info(
            "%s received: draining: %d clients open, %d commands awaiting replies; "
            "waiting up to %gs",
            self._stop_reasons[0], len(clients.connected), sum(c.owed for c in clients.connected),
            timeout,
        )  # fmt: skip
        with self._drain_scope:
            self._drain_scope.deadline = anyio.current_time() + timeout
            await clients.drained()
        left = list(clients.connected)
        elapsed = time.monotonic() - started
        if not left:
            log.info("drained in %.2fs: every reply written", elapsed)
            return
        why = self._stop_reasons[1] if len(self._stop_reasons) > 1 else "drain_timeout"
        log.warning(
            "drain cut off by %s after %.2fs: closing %d clients with %d commands unanswered",
            why, elapsed, len(left), sum(c.owed for c in left),
        )  # fmt: skip
        for client in left:
            client.abort()


async def serve(
    config: Config,
    ready: Callable[[Address], None] | None = None,
    *,
    nodes: NodeControl | None = None,
    lookup: Lookup = system_lookup,
    task_status: TaskStatus[Running] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the ambassador until ``Running.stop`` has drained it, or until cancelled; ``ready``
    is called with the bound address, and ``task_status`` (``TaskGroup.start``) given the
    ``Running`` handle. ``nodes``: the cluster's processes, when this process started them
    (``dev``), for the chaos API's node actions. ``lookup`` resolves host names (seeds, nodes
    announced by name).

    Start-up failures (port in use, no reachable seed) raise ListenError or ClusterUnreachable
    themselves, before any task starts.
    """
    if not config.cluster.seeds:
        raise ValueError("no seed nodes configured (cluster.seeds / --seed HOST:PORT)")
    loop = asyncio.get_running_loop()
    _fit_open_files_limit(config.server.max_clients)
    # Secrets and certificates read before binding: an unreadable file stops the start with a
    # clear error.
    secrets = Secrets.load(config)
    client_auth = ClientAuth.from_config(config.server, secrets.requirepass)
    sock = _listen_socket(config.server.listen)
    tls_sock = _tls_socket(config, sock)
    routes = AdminRoutes(secrets.admin_token)
    admin = None
    try:
        # Up before the cluster is found, so a readiness probe hears "starting", not silence.
        admin = await _start_admin(config, routes)
        names = Names(lookup, config.cluster.resolve_interval, config.upstream.connect_timeout)
        backend = backend_for(config, secrets)
        start = await _find(config, secrets, names, backend)
    except BaseException:
        for closing in (sock, tls_sock, admin):
            if closing is not None:
                closing.close()
        raise
    clients = ClientRegistry()
    facts = ServerFacts(start.version, backend is not None, clients.sessions)
    async with anyio.create_task_group() as tg:
        dialer = Dialer(tg, names, secrets.node_tls, config.upstream.connect_timeout)
        upstream = Upstream(config.upstream, secrets.upstream, loop, dialer)
        router = _router(config, upstream, start, facts, client_auth, backend)
        faults = router.faults
        servers, listener = await _listen(secrets, sock, tls_sock, router, clients)

        def use_secrets(rotated: Secrets) -> None:
            client_auth.requirepass = rotated.requirepass
            routes.use_token(rotated.admin_token)
            upstream.use(rotated.upstream, rotated.node_tls)
            if backend is not None:
                backend.use(rotated)
            if listener is not None and rotated.listener_tls is not None:
                listener.use(rotated.listener_tls)

        running = Running(config, router, clients, servers, secrets, use_secrets)
        _supervise_all(tg, running, upstream, backend)
        chaos = None if faults is None else ChaosApi(faults, nodes)
        routes.attach(registry_for(router, upstream, clients), running.unready, chaos)
        address = _serving(config, sock, tls_sock)
        # Start-up objects (command table, slot table) live forever: keep them out of the
        # collector's full passes, which then only walk what the traffic allocates.
        gc.freeze()
        if ready is not None:
            ready(address)
        task_status.started(running)
        try:
            await running._serve_until_stopped()
        finally:
            for server in servers:
                server.close()
            if admin is not None:
                admin.close()
            for client in list(clients.connected):
                client.abort()
            upstream.close()
            tg.cancel_scope.cancel()


async def _listen(
    secrets: Secrets,
    sock: socket.socket,
    tls_sock: socket.socket | None,
    router: Router,
    clients: ClientRegistry,
) -> tuple[list[asyncio.Server], ListenerContext | None]:
    """Serve clients on the bound sockets: the plain listener, and the TLS one if configured
    (with the context each new handshake asks for, which rotation replaces)."""
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(lambda: ClientConnection(router, clients), sock=sock)]
    listener = None
    if tls_sock is not None and secrets.listener_tls is not None:
        listener = ListenerContext(secrets.listener_tls, clients)
        servers.append(await _serve_tls(tls_sock, listener, router, clients))
    return servers, listener


async def _start_admin(config: Config, routes: AdminRoutes) -> asyncio.Server | None:
    """The admin HTTP listener, if configured (``server.admin``)."""
    if config.server.admin is None:
        return None
    admin_sock = _admin_socket(config.server.admin)
    admin = await start_admin(routes, admin_sock)
    admin_address = Address(config.server.admin.host, admin_sock.getsockname()[1])
    log.info("admin HTTP on http://%s (/metrics, /healthz, /readyz)", admin_address)
    return admin


def _router(
    config: Config,
    upstream: Upstream,
    start: _Found,
    facts: ServerFacts,
    client_auth: ClientAuth,
    backend: OneShard | None,
) -> Router:
    """The router over the node pools, routing by the slot map start-up found."""
    if backend is not None:
        # A server without cluster support refuses READONLY; its replicas read without it.
        upstream.readonly = False
    faults = _chaos(config, start.table)
    loop = asyncio.get_running_loop()
    router = Router(config, upstream, start.table, facts, client_auth, loop, faults, backend)
    router.refresher.apply(start.slot_map)
    if start.found is not None:
        router.stats.epoch, router.stats.views = start.found.epoch, start.found.answered
    return router


@dataclass(frozen=True)
class _Found:
    """What start-up learned of the cluster before serving it."""

    slot_map: SlotMap
    table: CommandTable
    version: bytes  # the lowest Redis version among the nodes
    found: Discovered | None  # how discovery found a cluster (None: another backend)


async def _find(config: Config, secrets: Secrets, names: Names, backend: OneShard | None) -> _Found:
    """The first slot map, the command table and the version to report."""
    timeout = config.upstream.connect_timeout
    found = None
    if backend is None:
        cluster = config.cluster
        found = await discover(
            cluster.seeds, names, timeout, cluster.refresh_nodes, cluster.address_map,
            secrets.upstream, secrets.node_tls,
        )  # fmt: skip
        slot_map, via = found.slot_map, found.via
    else:
        slot_map, via = await _first_master(backend)
    named = None if found is None else found.via_named
    table, version = await _learn_cluster(
        slot_map, via, timeout, secrets.upstream, names, secrets.node_tls, named
    )
    log.info(
        "%s found via %s: %d masters, %d commands known, Redis %s",
        config.cluster.backend, via, len(slot_map.masters), len(table), version.decode(),
    )  # fmt: skip
    return _Found(slot_map, table, version, found)


def _supervise_all(
    tg: TaskGroup, running: Running, upstream: Upstream, backend: OneShard | None
) -> None:
    """Start the ambassador's lifelong tasks: refreshes, the watchdog, health checks, memory
    and client housekeeping, and chaos's partition windows."""
    config, router, clients = running.config, running.router, running.clients
    supervise(tg, "topology refresher", router.refresher.run)
    if backend is not None:
        supervise(tg, "backend events", backend.watch, router.request_refresh)
    supervise(tg, "watchdog", upstream.run_watchdog, config.upstream.command_timeout)
    supervise(
        tg, "health checks", run_health_checks, upstream, config.upstream.health_check_interval,
        config.upstream.health_check_timeout,
    )  # fmt: skip
    supervise(tg, "memory", _return_memory_after_departures, clients)
    if router.faults is not None:
        supervise(tg, "chaos partitions", _follow_partition_windows, router.faults, upstream)
    supervise(tg, "client sweep", _sweep_clients, running, clients)


def _serving(config: Config, sock: socket.socket, tls_sock: socket.socket | None) -> Address:
    """Log where Redis is served; the plain listener's address (its port if 0 was asked)."""
    address = Address(config.server.listen.host, sock.getsockname()[1])
    log.info("serving Redis on %s", address)
    if tls_sock is not None and config.server.tls_listen is not None:
        log.info(
            "serving Redis over TLS on %s%s",
            Address(config.server.tls_listen.host, tls_sock.getsockname()[1]),
            " (mutual TLS)" if config.server.tls_listen_ca_file else "",
        )
    return address


def supervise(
    tg: TaskGroup, name: str, run: Callable[..., Awaitable[object]], *args: object
) -> None:
    """Start one of the ambassador's lifelong tasks in ``tg``. An unexpected exception in it is
    logged and the task started again a second later: a bug in a housekeeping loop must not
    end the task group, and with it every client's service."""

    async def supervised() -> None:
        while True:
            try:
                await run(*args)
                return
            except Exception:
                log.exception("%s failed unexpectedly; restarting it in %gs", name, _RESTART_AFTER)
                await anyio.sleep(_RESTART_AFTER)

    tg.start_soon(supervised, name=name)


_RESTART_AFTER = 1.0


def _chaos(config: Config, table: CommandTable) -> Faults | None:
    """The fault rules, when chaos is enabled (``[chaos]``, ``--chaos``), the config's in place."""
    if not config.chaos.enabled:
        return None

    def categories(name: str) -> frozenset[str]:
        spec = table.get(name.encode())
        return spec.categories if spec is not None else frozenset()

    faults = Faults.seeded(config.chaos.seed, config.chaos.rules, time.monotonic, categories)
    log.warning(
        "chaos enabled: fault rules accepted (seed %d; %d rules from the config%s)",
        faults.seed, len(faults.rules), "; CHAOS command on" if config.chaos.in_band else "",
    )  # fmt: skip
    return faults


async def _follow_partition_windows(faults: Faults, upstream: Upstream) -> None:
    """Partitions begin and end with their rules' time windows, not only when rules change."""
    while True:
        await anyio.sleep(0.25)
        upstream.partition(faults.partitioned())


async def _sweep_clients(running: Running, clients: ClientRegistry) -> None:
    """Once a second, close the clients idle longer than ``server.idle_timeout``, and those
    whose unread replies stayed over the soft output buffer limit too long (both read on each
    pass: a reload changes them): a sweep, so reading a command costs only a timestamp."""
    while True:
        await anyio.sleep(1)
        settings = running.config.server
        now = time.monotonic()
        if settings.idle_timeout:
            closed = clients.close_idle(settings.idle_timeout, now)
            if closed:
                log.debug("closed %d clients idle for more than %gs", closed, settings.idle_timeout)
        if settings.output_buffer_soft_seconds:
            clients.close_over_soft_limit(settings.output_buffer_soft_seconds, now)


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

# Descriptors beyond one per client: node connections, listeners, logs (Redis reserves 32; the
# ambassador also holds pools per node and clients' own node connections).
_RESERVED_FILES = 1024


def _fit_open_files_limit(max_clients: int) -> None:
    """Raise the soft open-files limit so ``max_clients`` clients fit, as Redis does for its
    maxclients; if the hard limit forbids it, say so once (clients past it are refused by
    the OS, not with Redis's error)."""
    wanted = max_clients + _RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft
    if target < wanted:
        log.warning(
            "open files limit is %d, below server.max_clients (%d) + %d for node connections: "
            "raise it (ulimit -n) or lower server.max_clients", target, max_clients,
            _RESERVED_FILES,
        )  # fmt: skip


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: nothing to trim


def _admin_socket(address: Address) -> socket.socket:
    try:
        return _listen_socket(address)
    except ListenError as exc:
        raise ListenError(
            f"admin listener: {exc} (choose another with --admin HOST:PORT, or --admin off)"
        ) from None


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
