"""Per-node pools of pipelined connections, and the once-per-tick write coalescing.

Every client is assigned a lane (its id modulo the pool size), and uses that lane's connection on
every node: a client's commands to one node then travel one connection and run in the order sent,
as on a single Redis. Lanes ``0..size-1`` speak RESP2; lanes ``size..2*size-1`` speak RESP3 (opened
on first use, for clients that said ``HELLO 3``), so each client gets replies exactly as a node
encodes them in its protocol.

Those ``2*size`` lanes are one block, signed in with the ambassador's credentials (those current
when each connection opens: a reload may rotate them, ``Upstream.use``). Each ACL user
a client authenticates as (``server.client_auth = "acl"``) gets a block of its own after them,
whose connections sign in as that user, opened on first use: the router's hot path is the same
for every client, only the lane number differs.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import weakref
from collections.abc import Callable, Collection
from typing import Protocol

import anyio

from redis_ambassador.config import Address, UpstreamConfig
from redis_ambassador.loop import Scheduler
from redis_ambassador.operations.histogram import LatencyHistogram
from redis_ambassador.tls import NodeTLS
from redis_ambassador.upstream.breaker import BreakerSettings, CircuitBreaker, State
from redis_ambassador.upstream.connection import UNOPENED, ConnectionOwner, Entry, NodeConnection
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.names import Names
from redis_ambassador.upstream.subscriber import SubscriberConnection

log = logging.getLogger(__name__)


class NodePool:
    """The connections to one node, one per lane, reopened on demand after a failure, and the
    node's circuit breaker, which decides whether they may be reopened."""

    def __init__(self, address: Address, upstream: Upstream) -> None:
        self.address = address
        self.name = str(address)
        self._upstream = upstream
        self._size = upstream.pool_size
        self.breaker = CircuitBreaker(upstream.breaker_settings, random.random, self._changed)
        self.checking = False  # a health check is in progress
        self.latency = LatencyHistogram()  # sampled: a command's write to its reply
        self.next_check = 0.0  # loop time of the next health check
        self._retired_sent = 0  # commands written by connections since replaced
        self._reported_sent = 0  # of ``sent``, what the breaker has been told
        # Clients' own connections to the node (blocking commands, WATCH), failed with the pool.
        self.private: weakref.WeakSet[NodeConnection] = weakref.WeakSet()
        self.conns: list[NodeConnection] = [self._open(i) for i in range(self._size)]
        self.conns += [UNOPENED] * (self._size + upstream.block_size * (len(upstream.blocks) - 1))

    def lane(self, index: int) -> NodeConnection | None:
        """The connection for a lane, (re)opened first if it is not usable; None while the
        node's circuit breaker is open (nothing is sent to the node then)."""
        conn = self.conns[index]
        if conn.closed:
            if not self.breaker.allows:
                return None
            self._retired_sent += conn.sent if conn is not UNOPENED else 0
            conn = self.conns[index] = self._open(index)
        return conn

    def _open(self, index: int) -> NodeConnection:
        upstream = self._upstream
        block, lane = divmod(index, upstream.block_size)
        conn = NodeConnection(
            self.address,
            upstream,
            3 if lane >= self._size else 2,
            readonly=upstream.readonly,
            auth=upstream.blocks[block].auth_frame,
        )
        self._upstream.connect(conn, self.address)
        return conn

    @property
    def pending(self) -> int:
        """Commands awaiting replies on all of this node's connections."""
        return sum(c.pending for c in self.conns)

    @property
    def sent(self) -> int:
        """Commands written to the node since the pool was made."""
        return self._retired_sent + sum(c.sent for c in self.conns if c is not UNOPENED)

    def report_sent(self, now: float) -> None:
        """Tell the breaker how many commands were sent since last time (its rate's base)."""
        sent = self.sent
        self.breaker.sent(now, sent - self._reported_sent)
        self._reported_sent = sent

    def _changed(self, old: State, new: State, why: str) -> None:
        # Opening and closing are news; the probing in between (a node that stays down) is not.
        level = logging.DEBUG if State.HALF_OPEN in (old, new) else logging.WARNING
        if new is State.CLOSED:
            level = logging.WARNING
        log.log(
            level, "node %s: circuit breaker %s -> %s (%s)", self.name, old.value, new.value, why
        )
        if new is State.OPEN:
            # Commands already on its connections would wait out a timeout: fail them now
            # (those not yet written are routed again; the rest as a lost connection's).
            for conn in [*self.conns, *self.private]:
                if conn is not UNOPENED and not conn.closed:
                    conn.abort(f"circuit breaker open ({why})")
        self._upstream.on_breaker(self, new)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


class Dial(Protocol):
    """How node connections are opened (upstream/dialer.py's ``Dialer``; tests give a fake)."""

    names: Names  # node host names (discovery and health checks resolve them too)
    tls: NodeTLS | None  # every connection to a node uses it (health probes and discovery too)

    def dial(self, conn: asyncio.Protocol, address: Address) -> None:
        """Start connecting ``conn`` to the node at ``address``."""
        ...

    def start_soon(self, task: Callable[[], object], name: str) -> None:
        """Run a task beside the connects (a health check)."""
        ...


class Upstream(ConnectionOwner):
    """All node pools; flushes dirty connections once per loop turn."""

    def __init__(
        self,
        config: UpstreamConfig,
        credentials: Credentials,
        scheduler: Scheduler,
        dialer: Dial,
    ) -> None:
        self.dialer = dialer
        self.pool_size = config.pool_size
        self.credentials = credentials
        # Each block of lanes and who its connections sign in as; block 0 is the ambassador's.
        self.block_size = 2 * config.pool_size
        self.blocks: list[Credentials] = [credentials]
        self._block_of = {_identity(credentials): 0}
        self._rotated: set[bytes] = set()  # AUTH frames block 0 signed in with before a reload
        self.readonly = config.read_policy != "master"  # pooled connections send READONLY
        self.breaker_settings = BreakerSettings.from_config(config)
        self._pools: dict[Address, NodePool] = {}
        self._discarded_sent = 0
        self._dirty: list[NodeConnection] = []
        self._loop = scheduler
        self.partitioned: frozenset[Address] = frozenset()  # cut off by chaos rules
        self._subscribers: weakref.WeakSet[SubscriberConnection] = weakref.WeakSet()
        # Set by the router: what to do when a reply is a redirection, a connection fails, or
        # a node's circuit breaker changes state.
        self.on_redirect: Callable[[Entry, bytes, NodeConnection], None] = _unset
        self.on_failure: Callable[[NodeConnection, list[Entry], list[Entry]], None] = _unset
        self.on_breaker: Callable[[NodePool, State], None] = _unset
        self.on_error: Callable[[bytes], None] = _unset  # a node answered a command with an error

    @property
    def names(self) -> Names:
        return self.dialer.names

    @property
    def tls(self) -> NodeTLS | None:
        return self.dialer.tls

    def pool(self, address: Address) -> NodePool:
        """The pool for a node, created (and connecting) on first use."""
        pool = self._pools.get(address)
        if pool is None:
            pool = self._pools[address] = NodePool(address, self)
        return pool

    @property
    def pools(self) -> dict[Address, NodePool]:
        return self._pools

    def block_for(self, credentials: Credentials) -> int:
        """The block whose connections sign in as ``credentials``' user. A block is made on
        first use (every pool grows by a block of lanes, opened when a client uses them); the
        ambassador's own user gets block 0."""
        key = _identity(credentials)
        block = self._block_of.get(key)
        if block is None:
            block = self._block_of[key] = len(self.blocks)
            self.blocks.append(credentials)
            for pool in self._pools.values():
                pool.conns += [UNOPENED] * self.block_size
        return block

    def use(self, credentials: Credentials, tls: NodeTLS | None) -> None:
        """Sign in and shake hands with these on every connection opened from now on (a reload
        rotated them): block 0's lanes as they are reopened, clients' own connections, probes,
        discovery. Connections already open stay as they are."""
        self.dialer.tls = tls
        old = self.credentials
        if credentials == old:
            return
        self._rotated.add(old.auth_frame)
        del self._block_of[_identity(old)]
        # A client that signs in (ACL mode) with the old credentials gets a block of its own.
        self._block_of[_identity(credentials)] = 0
        self.blocks[0] = self.credentials = credentials

    def signs_in_as(self, auth: bytes, block: int) -> bool:
        """Whether a connection that signed in with ``auth`` runs as block ``block``'s user: its
        AUTH frame, or for block 0 one that the ambassador's credentials had before a reload."""
        return auth == self.blocks[block].auth_frame or (block == 0 and auth in self._rotated)

    def private(self, address: Address, protocol: int, auth: bytes) -> NodeConnection:
        """A new connection to a node for one client alone (not pooled, not watched for
        silence: a blocked command may legitimately wait for minutes), signed in with
        ``auth`` (the client's AUTH frame)."""
        conn = NodeConnection(address, self, protocol, private=True, auth=auth)
        pool = self._pools.get(address)
        if pool is not None:
            pool.private.add(conn)
        self.connect(conn, address)
        return conn

    def discard(self, address: Address) -> None:
        """Close and forget a node's pool (it left the cluster)."""
        pool = self._pools.pop(address, None)
        if pool is not None:
            self._discarded_sent += pool.sent
            pool.close()

    @property
    def sent(self) -> int:
        """Commands written to every node since start (the retry budget grows with it)."""
        return self._discarded_sent + sum(pool.sent for pool in self._pools.values())

    def usable(self, address: Address) -> bool:
        """Whether commands may be sent to a node now (its breaker is closed)."""
        pool = self._pools.get(address)
        return pool is None or pool.breaker.allows

    def set_breaker_settings(self, settings: BreakerSettings) -> None:
        """New thresholds for every node's breaker (config reload); states are kept."""
        self.breaker_settings = settings
        for pool in self._pools.values():
            pool.breaker.settings = settings

    def partition(self, nodes: Collection[str]) -> None:
        """Cut the ambassador off from these nodes ("host:port"; a chaos partition): their
        connections are aborted and new ones refused, as if the nodes refused them, until they
        are left out of a later call."""
        cut = frozenset(Address.parse(node) for node in nodes)
        if cut == self.partitioned:
            return
        for address in cut - self.partitioned:
            log.warning("chaos: node %s partitioned from the ambassador", address)
            pool = self._pools.get(address)
            if pool is not None:
                for conn in [*pool.conns, *pool.private]:
                    if conn is not UNOPENED and not conn.closed:
                        conn.abort(_PARTITIONED)
            for subscriber in list(self._subscribers):
                if subscriber.address == address and not subscriber.closed:
                    subscriber.abort(_PARTITIONED)
        for address in self.partitioned - cut:
            log.warning("chaos: node %s reachable again", address)
        self.partitioned = cut

    def start_soon(self, task: Callable[[], object], name: str) -> None:
        self.dialer.start_soon(task, name)

    def subscribe(self, conn: SubscriberConnection, address: Address) -> None:
        """Connect a client's subscriber connection (kept track of: a partition cuts it too)."""
        self._subscribers.add(conn)
        self.connect(conn, address)

    def connect(self, conn: asyncio.Protocol, address: Address) -> None:
        """Connect ``conn`` to a node; a node partitioned by a chaos rule refuses, as if it did."""
        if address in self.partitioned:
            refused = ConnectionRefusedError(errno.ECONNREFUSED, _PARTITIONED)
            if isinstance(conn, NodeConnection) and not conn.closing:
                conn.failure = "cannot connect"
            self._loop.call_soon(conn.connection_lost, refused)
            return
        self.dialer.dial(conn, address)

    # -- ConnectionOwner ----------------------------------------------------------------------

    def schedule_flush(self, conn: NodeConnection) -> None:
        if not self._dirty:
            self._loop.call_soon(self._flush)
        self._dirty.append(conn)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()

    def redirected(self, entry: Entry, reply: bytes, via: NodeConnection) -> None:
        self.on_redirect(entry, reply, via)

    def connection_failed(
        self, conn: NodeConnection, unsent: list[Entry], sent: list[Entry]
    ) -> None:
        pool = self._pools.get(conn.address)
        # A client's user refused (its password changed since) is that client's problem, not
        # the node's: only the ambassador's own credentials failing counts against the node.
        theirs = conn.auth_refused and conn.auth != self.credentials.auth_frame
        # A node closing a connection it accepted is only a hint: one client's command could
        # make it do that (a limit of the node's), and must not cut every client off. A node
        # that died is confirmed by the reconnect that fails, or by the health checks.
        if pool is not None and not conn.closing and not theirs:
            hint = conn.closed_by_node
            pool.breaker.failure(
                self._loop.time(), conn.failure, 0 if hint else len(sent), conclusive=not hint
            )
        self.on_failure(conn, unsent, sent)

    def errored(self, frame: bytes) -> None:
        self.on_error(frame)

    def observed(self, conn: NodeConnection, seconds: float) -> None:
        pool = self._pools.get(conn.address)
        if pool is not None:
            pool.latency.observe(seconds)

    def alive(self, conn: NodeConnection) -> None:
        pool = self._pools.get(conn.address)
        if pool is not None:
            pool.breaker.success()

    async def run_watchdog(self, timeout: float) -> None:
        """Abort connections whose node has not sent a byte for ``timeout`` seconds while
        commands wait on it (a hung or paused node): its clients get an error, not a hang."""
        waiting: dict[NodeConnection, tuple[int, float]] = {}
        while True:
            await anyio.sleep(min(1.0, timeout / 4))
            now = self._loop.time()
            for pool in list(self._pools.values()):
                for conn in pool.conns:
                    if conn is UNOPENED:
                        continue
                    if not conn.pending or conn.closed:
                        waiting.pop(conn, None)
                        continue
                    seen = waiting.get(conn)
                    if seen is None or seen[0] != conn.reads:
                        waiting[conn] = (conn.reads, now)
                    elif now - seen[1] >= timeout:
                        log.warning("node %s silent for %.1fs: reconnecting", pool.name, timeout)
                        conn.abort(f"no reply within {timeout:g}s", timed_out=True)
                        waiting.pop(conn)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


_PARTITIONED = "partitioned by a chaos rule"


def _identity(credentials: Credentials) -> tuple[str, bytes]:
    return credentials.user, credentials.password


def _unset(*_: object) -> None:
    raise RuntimeError("Upstream used before a router was attached")
