"""Active health checks: a PING to every node on an interval, feeding its circuit breaker.

A node that stops answering is found without any client traffic (an open breaker is probed as
soon as its reset timeout passes, probe after probe until it closes), and so is its recovery.
Each node has a probe connection of its own, kept between checks (so a probe never queues
behind client commands, and checking allocates next to nothing), dropped and dialed again
after any failure.
"""

from __future__ import annotations

import asyncio
import logging

import anyio

from redis_ambassador.config import Address
from redis_ambassador.tls import connect_options, describe
from redis_ambassador.upstream.breaker import State
from redis_ambassador.upstream.pool import NodePool, Upstream

log = logging.getLogger(__name__)

_PING = b"*1\r\n$4\r\nPING\r\n"
# How often the checker looks for a due check while some node is failing or its breaker open
# (checks then follow each other without waiting for the next scan); with every node healthy,
# once per interval. (Waking ten times a second for nothing also left a burst of clients'
# memory harder to give back.)
_TICK = 0.1


class Prober:
    """One node's probe connection, signed in and shaking hands as the upstream's connections
    do when it (re)connects (a reload may have rotated the credentials or certificates)."""

    def __init__(self, address: Address, upstream: Upstream) -> None:
        self.address = address
        self._upstream = upstream
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def ping(self, timeout: float) -> str | None:
        """None if the node answers PING with PONG within ``timeout``; otherwise why not."""
        try:
            with anyio.fail_after(timeout):
                if self._reader is None or self._writer is None:
                    upstream = self._upstream
                    dial = (await upstream.names.resolve(self.address))[0]
                    tls = connect_options(upstream.tls, self.address, timeout)
                    auth = upstream.credentials.auth_frame  # before its first PING
                    self._reader, self._writer = await asyncio.open_connection(
                        dial.host, dial.port, **tls
                    )
                    if auth:
                        self._writer.write(auth)
                        line = await self._reader.readline()
                        if not line.startswith(b"+OK"):
                            self.close()
                            return "authentication failed: " + _reason(line)
                self._writer.write(_PING)
                line = await self._reader.readline()
        except TimeoutError:
            self.close()  # a late PONG would answer the next PING
            return f"no PONG within {timeout:g}s"
        except (OSError, RuntimeError) as exc:
            # RuntimeError: uvloop's, for a transport the node closed under us.
            self.close()
            return describe(exc) or type(exc).__name__
        if line.startswith(b"+PONG"):
            return None
        self.close()
        return _reason(line)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def run_health_checks(upstream: Upstream, interval: float, timeout: float) -> None:
    """Check every node's pool forever (nodes come and go with the topology)."""
    loop = asyncio.get_running_loop()
    probers: dict[Address, Prober] = {}
    try:
        while True:
            now = loop.time()
            pools = upstream.pools
            for address in [a for a in probers if a not in pools]:
                probers.pop(address).close()
            for pool in list(pools.values()):
                if pool.checking:
                    continue
                breaker = pool.breaker
                due = breaker.state is State.CLOSED and now >= pool.next_check
                if due or breaker.probe_due(now):
                    pool.report_sent(now)
                    if pool.address in upstream.partitioned:
                        pool.next_check = now + interval
                        breaker.failure(now, "health check: partitioned by a chaos rule")
                        continue
                    pool.checking = True
                    pool.next_check = now + interval
                    prober = probers.get(pool.address)
                    if prober is None:
                        prober = probers[pool.address] = Prober(pool.address, upstream)
                    upstream.start_soon(
                        lambda p=pool, q=prober: _check(p, q, timeout, loop),
                        name=f"health check {pool.name}",
                    )
            calm = all(
                pool.breaker.state is State.CLOSED and not pool.breaker.consecutive
                for pool in pools.values()
            )
            await anyio.sleep(interval if calm else min(_TICK, interval))
    finally:
        for prober in probers.values():
            prober.close()


async def _check(
    pool: NodePool, prober: Prober, timeout: float, loop: asyncio.AbstractEventLoop
) -> None:
    try:
        problem = await prober.ping(timeout)
    except Exception:  # a bug: the node is not known to be fine, and the checks go on
        log.exception("health check of %s failed unexpectedly", pool.name)
        prober.close()
        problem = "unexpected error"
    finally:
        pool.checking = False
    if problem is None:
        pool.breaker.success()
    else:
        log.debug("health check of %s failed: %s", pool.name, problem)
        pool.breaker.failure(loop.time(), f"health check: {problem}")


def _reason(line: bytes) -> str:
    """What a node's unexpected reply line says (its error without the leading '-')."""
    if not line:
        return "connection closed"
    return line.rstrip(b"\r\n").lstrip(b"-").decode(errors="replace")
