"""Active health checks: a PING to every node on an interval, feeding its circuit breaker.

A node that stops answering is found without any client traffic (an open breaker is probed as
soon as its reset timeout passes, probe after probe until it closes), and so is its recovery.
Each probe is its own short connection, so a probe never queues behind client commands and a
hung node cannot hold more than one probe at a time.
"""

from __future__ import annotations

import asyncio
import logging

import anyio

from redis_ambassador.config import Address
from redis_ambassador.upstream.breaker import State
from redis_ambassador.upstream.pool import NodePool, Upstream

log = logging.getLogger(__name__)

_PING = b"*1\r\n$4\r\nPING\r\n"
# How often the checker looks for a due check (probes of an open breaker are not kept waiting
# for the next interval).
_TICK = 0.1


async def ping(address: Address, timeout: float) -> str | None:
    """None if the node answers PING with PONG within ``timeout``; otherwise why not."""
    try:
        with anyio.fail_after(timeout):
            async with await anyio.connect_tcp(address.host, address.port) as stream:
                await stream.send(_PING)
                reply = b""
                while b"\r\n" not in reply:
                    reply += await stream.receive()
    except TimeoutError:
        return f"no PONG within {timeout:g}s"
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
        return str(exc) or type(exc).__name__
    if reply.startswith(b"+PONG"):
        return None
    return reply.split(b"\r\n", 1)[0].lstrip(b"-").decode(errors="replace")


async def run_health_checks(upstream: Upstream, interval: float, timeout: float) -> None:
    """Check every node's pool forever (nodes come and go with the topology)."""
    loop = asyncio.get_running_loop()
    while True:
        await anyio.sleep(min(_TICK, interval))
        now = loop.time()
        for pool in list(upstream.pools.values()):
            pool.report_sent(now)
            if pool.checking:
                continue
            breaker = pool.breaker
            if breaker.probe_due(now) or (breaker.state is State.CLOSED and now >= pool.next_check):
                pool.checking = True
                pool.next_check = now + interval
                upstream.start_soon(
                    lambda p=pool: _check(p, timeout, loop), name=f"health check {pool.name}"
                )


async def _check(pool: NodePool, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
    try:
        problem = await ping(pool.address, timeout)
    finally:
        pool.checking = False
    if problem is None:
        pool.breaker.success()
    else:
        log.debug("health check of %s failed: %s", pool.name, problem)
        pool.breaker.failure(loop.time(), f"health check: {problem}")
