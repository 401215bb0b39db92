"""Host names of seeds and nodes, resolved where they are dialed, and again at most every
``cluster.resolve_interval`` seconds: a pod that comes back with a new IP is found, and a storm
of reconnects does not become a storm of DNS queries.

The lookup is a plain callable, ``(host, port) -> IP addresses`` (``system_lookup``, the OS
resolver, by default), run in a worker thread; tests pass their own to make a name move.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence

import anyio

from redis_ambassador.config import Address

log = logging.getLogger(__name__)

Lookup = Callable[[str, int], Sequence[str]]


def system_lookup(host: str, port: int) -> list[str]:
    """The OS resolver's IP addresses for ``host`` (several for a name with several A records)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# Seconds after which a name nobody asked for is forgotten: node names come and go (pods
# announced by name), and the cache must not grow with every one ever seen.
FORGET_AFTER = 3600.0


class NameCache:
    """Each name's last answer and when it was asked for (sans-IO: the time is passed in)."""

    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self._answers: dict[str, tuple[str, ...]] = {}
        self._asked: dict[str, float] = {}

    def due(self, host: str, now: float) -> bool:
        """Whether ``host`` may be looked up again (never asked, or not within the interval)."""
        asked = self._asked.get(host)
        return asked is None or now - asked >= self.min_interval

    def asked(self, host: str, now: float) -> None:
        """A lookup of ``host`` starts (failed ones count too: a dead DNS is not hammered);
        names not looked up for ``FORGET_AFTER`` seconds are dropped."""
        self._asked[host] = now
        for name in [n for n, at in self._asked.items() if now - at > FORGET_AFTER]:
            del self._asked[name]
            self._answers.pop(name, None)

    def store(self, host: str, answer: Sequence[str]) -> None:
        self._answers[host] = tuple(answer)

    def answer(self, host: str) -> tuple[str, ...]:
        """The last answer for ``host``; empty if it never resolved."""
        return self._answers.get(host, ())


class Names:
    """Resolves the host of an ``Address`` to the addresses to dial (IPs pass through)."""

    def __init__(self, lookup: Lookup, min_interval: float, timeout: float) -> None:
        self._lookup = lookup
        self._cache = NameCache(min_interval)
        self._timeout = timeout
        self.lookups = {"ok": 0, "failed": 0}  # for the metrics

    async def resolve(self, address: Address) -> list[Address]:
        """Where to dial ``address``: itself for an IP, else its name's addresses, looked up
        again if the last lookup is older than the interval. A failed lookup falls back on the
        last answer; with none, OSError says why."""
        host = address.host
        if is_ip(host):
            return [address]
        cache = self._cache
        now = anyio.current_time()
        if cache.due(host, now):
            cache.asked(host, now)
            try:
                with anyio.fail_after(self._timeout):
                    answer = await anyio.to_thread.run_sync(
                        self._lookup, host, address.port, abandon_on_cancel=True
                    )
                if not answer:
                    raise OSError("no addresses")
            except (OSError, TimeoutError) as exc:
                self.lookups["failed"] += 1
                problem = str(exc) or "lookup timed out"
                if not cache.answer(host):
                    raise OSError(f"cannot resolve {host}: {problem}") from None
                log.warning("cannot resolve %s (%s): using its last addresses", host, problem)
            else:
                self.lookups["ok"] += 1
                if tuple(answer) != cache.answer(host) and cache.answer(host):
                    log.info("%s now resolves to %s", host, ", ".join(answer))
                cache.store(host, answer)
        ips = cache.answer(host)
        if not ips:
            raise OSError(f"cannot resolve {host}: no addresses yet")
        return [Address(ip, address.port) for ip in ips]
