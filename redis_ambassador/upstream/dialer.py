"""Opening connections to nodes: the node's name resolved (at most so often), TLS when the
upstream uses it, all within the connect timeout. A connection that cannot be made is reported
to its protocol object as lost, with the failure (the breaker's business)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from redis_ambassador.config import Address
from redis_ambassador.tls import NodeTLS, connect_options, describe
from redis_ambassador.upstream.connection import NodeConnection
from redis_ambassador.upstream.names import Names

log = logging.getLogger("redis_ambassador.upstream.pool")


class Dialer:
    """Connects protocol objects to nodes, each connect a task of the ambassador's task group."""

    def __init__(
        self, task_group: TaskGroup, names: Names, tls: NodeTLS | None, timeout: float
    ) -> None:
        self._tg = task_group
        self.names = names  # node host names: resolved on each connect, at most so often
        self.tls = tls  # every connection to a node uses it (health probes and discovery too)
        self._timeout = timeout

    def dial(self, conn: asyncio.Protocol, address: Address) -> None:
        """Start connecting ``conn`` to the node at ``address``."""
        self._tg.start_soon(self._connect, conn, address, name=f"connect {address}")

    def start_soon(self, task: Callable[[], object], name: str) -> None:
        """Run a task beside the connects (a health check)."""
        self._tg.start_soon(task, name=name)  # type: ignore[arg-type]

    async def _connect(self, conn: asyncio.Protocol, address: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(self._timeout):
                dial = (await self.names.resolve(address))[0]
                tls = connect_options(self.tls, address, self._timeout)
                await loop.create_connection(lambda: conn, dial.host, dial.port, **tls)
        except Exception as exc:
            # ssl.SSLError is an OSError: a failed handshake is a failed connect (the breaker's).
            # Anything else is a bug, logged in full, but still only this connect's failure.
            if isinstance(exc, OSError | TimeoutError | RuntimeError):
                log.warning("cannot connect to node %s: %s", address, describe(exc) or "timed out")
            else:
                log.exception("cannot connect to node %s: unexpected error", address)
            if isinstance(conn, NodeConnection) and not conn.closing:
                conn.failure = "cannot connect"
            conn.connection_lost(exc)
