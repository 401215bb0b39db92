"""Per-node pools of pipelined connections, and the once-per-tick write coalescing.

Every client is assigned a lane (its id modulo the pool size), and uses that lane's connection on
every node: a client's commands to one node then travel one connection and run in the order sent,
as on a single Redis. Lanes ``0..size-1`` speak RESP2; lanes ``size..2*size-1`` speak RESP3 (opened
on first use, for clients that said ``HELLO 3``), so each client gets replies exactly as a node
encodes them in its protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from redis_ambassador.config import Address
from redis_ambassador.upstream.connection import UNOPENED, ConnectionOwner, Entry, NodeConnection

log = logging.getLogger(__name__)


class NodePool:
    """The connections to one node, one per lane, reopened on demand after a failure."""

    def __init__(self, address: Address, upstream: Upstream) -> None:
        self.address = address
        self.name = str(address)
        self._upstream = upstream
        self._size = upstream.pool_size
        self.conns: list[NodeConnection] = [self._open(i) for i in range(self._size)]
        self.conns += [UNOPENED] * self._size

    def lane(self, index: int) -> NodeConnection:
        """The connection for a lane, (re)opening it first if it is not usable."""
        conn = self.conns[index]
        if conn.closed:
            conn = self.conns[index] = self._open(index)
        return conn

    def _open(self, index: int) -> NodeConnection:
        conn = NodeConnection(self.address, self._upstream, 3 if index >= self._size else 2)
        self._upstream.connect(conn, self.address)
        return conn

    @property
    def pending(self) -> int:
        """Commands awaiting replies on all of this node's connections."""
        return sum(c.pending for c in self.conns)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


class Upstream(ConnectionOwner):
    """All node pools; owns their connect tasks and flushes dirty connections once per tick."""

    def __init__(self, task_group: TaskGroup, pool_size: int, connect_timeout: float) -> None:
        self.pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._tg = task_group
        self._pools: dict[Address, NodePool] = {}
        self._dirty: list[NodeConnection] = []
        self._loop = asyncio.get_running_loop()
        # Set by the router: what to do when a reply is a redirection or a connection fails.
        self.on_redirect: Callable[[Entry, bytes, NodeConnection], None] = _unset
        self.on_failure: Callable[[NodeConnection, list[Entry], list[Entry]], None] = _unset

    def pool(self, address: Address) -> NodePool:
        """The pool for a node, created (and connecting) on first use."""
        pool = self._pools.get(address)
        if pool is None:
            pool = self._pools[address] = NodePool(address, self)
        return pool

    @property
    def pools(self) -> dict[Address, NodePool]:
        return self._pools

    def private(self, address: Address, protocol: int) -> NodeConnection:
        """A new connection to a node for one client alone (not pooled, not watched for
        silence: a blocked command may legitimately wait for minutes)."""
        conn = NodeConnection(address, self, protocol, private=True)
        self.connect(conn, address)
        return conn

    def discard(self, address: Address) -> None:
        """Close and forget a node's pool (it left the cluster)."""
        pool = self._pools.pop(address, None)
        if pool is not None:
            pool.close()

    def connect(self, conn: asyncio.Protocol, address: Address) -> None:
        self._tg.start_soon(self._connect, conn, address, name=f"connect {address}")

    async def _connect(self, conn: asyncio.Protocol, address: Address) -> None:
        try:
            with anyio.fail_after(self._connect_timeout):
                await self._loop.create_connection(lambda: conn, address.host, address.port)
        except (OSError, TimeoutError) as exc:
            log.warning("cannot connect to node %s: %s", address, exc or "timed out")
            conn.connection_lost(exc)

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
        self.on_failure(conn, unsent, sent)

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
                        conn.abort(f"no reply within {timeout:g}s")
                        waiting.pop(conn)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def _unset(*_: object) -> None:
    raise RuntimeError("Upstream used before a router was attached")
