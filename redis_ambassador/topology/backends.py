"""Backends that are not a cluster: one standalone Redis, or a master/replica set managed by
Redis Sentinel.

Each describes itself to the router as a one-shard slot map (its master owns all 16384 slots,
its replicas are that master's readers), so node pools, circuit breakers, retries, health checks
and ``read_policy`` are the cluster's code unchanged. The router is told it has such a backend
(``Router(..., backend=...)``) and then never checks slots: keys in "different slots" go to the
one server together, as they would to a plain Redis (a Redis Cluster backend has no object
here: ``discovery.discover`` is how it is found).

Sentinel: the master's address comes from ``SENTINEL GET-MASTER-ADDR-BY-NAME`` (the first
sentinel that knows the name), confirmed by the master's own ``ROLE``; its replicas from
``SENTINEL REPLICAS`` (only those up and replicating that master). A failover is followed when a
sentinel publishes ``+switch-master`` (``watch`` listens on every sentinel) and by the
refresher's periodic and on-failure re-queries, so a missed message only delays it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import anyio
import redis.asyncio
from redis.exceptions import RedisError

from redis_ambassador.config import Address, AddressMap, Config
from redis_ambassador.tls import NodeTLS
from redis_ambassador.topology.slotmap import SLOTS, ClusterUnreachable, SlotMap, control_client
from redis_ambassador.upstream.credentials import Credentials

if TYPE_CHECKING:
    from redis_ambassador.rotation import Secrets

log = logging.getLogger(__name__)

# Failures of one control-plane exchange (RuntimeError: uvloop's, for a node dying while
# redis-py is still connecting).
_EXCHANGE_ERRORS = (RedisError, OSError, TimeoutError, RuntimeError)
# A reply not shaped as a sentinel's (another server on that port): that sentinel's problem.
_MALFORMED = (ValueError, IndexError, TypeError, AttributeError)
# Sentinel events that may change where the master or its readers are (the rest are noise).
_EVENTS = ("+switch-master", "+slave", "+sdown", "-sdown")
# Seconds a sentinel's event subscription waits before connecting again after losing it.
_RESUBSCRIBE_DELAY = 1.0
# Seconds each wait for an event lasts (cancellation is only seen between waits).
_EVENT_POLL = 1.0


class OneShard(Protocol):
    """A backend whose data lives on one master (and its replicas): no slots."""

    name: str  # cluster.backend's word

    async def fetch(self) -> SlotMap:
        """The current master (none: all slots unowned, commands wait for one) and its
        readers; raises ClusterUnreachable when nothing can be asked."""
        ...

    async def watch(self, changed: Callable[[], None]) -> None:
        """Until cancelled: call ``changed`` when the backend announces a new topology."""
        ...

    def use(self, secrets: Secrets) -> None:
        """Sign in and shake hands with these from now on (a reload rotated them)."""
        ...


def one_shard(master: Address | None, readers: Iterable[Address] = ()) -> SlotMap:
    """The slot map of one master owning every slot (None: no master now)."""
    online = tuple(readers)
    return SlotMap(
        (master,) * SLOTS,
        frozenset(online),
        {master: online} if master is not None else {},
    )


def backend_for(config: Config, secrets: Secrets) -> OneShard | None:
    """The backend ``cluster.backend`` names (its data nodes signed in to with the upstream
    credentials, over TLS if set); None for a Redis Cluster."""
    cluster = config.cluster
    timeout = config.upstream.connect_timeout
    if cluster.backend == "standalone":
        return Standalone(cluster.seeds[0], timeout, secrets.upstream, secrets.node_tls)
    if cluster.backend == "sentinel":
        return Sentinel(
            cluster.seeds,
            cluster.sentinel_master,
            timeout,
            secrets.upstream,
            cluster.address_map,
            secrets.node_tls,
            secrets.sentinel,
        )
    return None


class Standalone:
    """One plain Redis server, every command passed through to it."""

    name = "standalone"

    def __init__(
        self,
        server: Address,
        timeout: float,
        credentials: Credentials,
        tls: NodeTLS | None = None,
    ) -> None:
        self.server = server
        self._timeout = timeout
        self._credentials = credentials
        self._tls = tls

    async def fetch(self) -> SlotMap:
        """The server, once it answered (a cluster node is refused: it would answer MOVED)."""
        try:
            client = await control_client(self.server, self._timeout, self._credentials, self._tls)
            try:
                info = await client.execute_command("INFO", "cluster")
            finally:
                await client.aclose()
        except _EXCHANGE_ERRORS as exc:
            raise ClusterUnreachable(f"the standalone server {self.server}: {exc}") from None
        if b"cluster_enabled:1" in info:
            raise ClusterUnreachable(
                f"{self.server} is a Redis Cluster node: serve it with cluster.backend = "
                "'cluster' (--backend cluster)"
            )
        return one_shard(self.server)

    async def watch(self, changed: Callable[[], None]) -> None:
        """A standalone server announces nothing: its breaker and the refresher follow it."""

    def use(self, secrets: Secrets) -> None:
        """Sign in and shake hands with these from now on (a reload rotated them)."""
        self._credentials = secrets.upstream
        self._tls = secrets.node_tls


class Sentinel:
    """The master that Redis Sentinels monitor under ``master_name``, and its replicas."""

    name = "sentinel"

    def __init__(
        self,
        sentinels: Iterable[Address],
        master_name: str,
        timeout: float,
        credentials: Credentials,
        address_map: AddressMap,
        tls: NodeTLS | None = None,
        sentinel_auth: Credentials | None = None,
    ) -> None:
        self.sentinels = tuple(sentinels)
        self.master_name = master_name
        self._timeout = timeout
        # The data nodes' credentials and TLS (sentinels are asked in plain text).
        self._credentials = credentials
        self._tls = tls
        self._auth = sentinel_auth or Credentials()  # the sentinels' own password, if any
        self._unconfirmed: Address | None = None  # logged once, not at every refresh
        self._reachable = address_map  # from the addresses the sentinels give (NAT, Docker)

    async def fetch(self) -> SlotMap:
        """Ask the sentinels in turn; the first that knows the master decides."""
        problems: list[str] = []
        for sentinel in self.sentinels:
            try:
                found = await self._ask(sentinel)
            except (*_EXCHANGE_ERRORS, *_MALFORMED) as exc:
                problems.append(f"{sentinel}: {exc or type(exc).__name__}")
                continue
            if found is None:
                problems.append(f"{sentinel}: no master named {self.master_name!r}")
                continue
            master, replicas = found
            if not await self._is_master(master):
                # Mid-failover: the sentinels' choice is not promoted yet, or the old master
                # is not reachable. No master for now: commands wait, the refresher asks again.
                if master != self._unconfirmed:
                    self._unconfirmed = master
                    log.warning(
                        "sentinel %s names %s, which is not a reachable master (yet)",
                        sentinel, master,
                    )  # fmt: skip
                return one_shard(None)
            self._unconfirmed = None
            return one_shard(master, replicas)
        raise ClusterUnreachable(
            "no sentinel answered for master "
            f"{self.master_name!r}: " + "; ".join(problems or ["no sentinels"])
        )

    async def _ask(self, sentinel: Address) -> tuple[Address, list[Address]] | None:
        """The master's address and its online replicas, as ``sentinel`` sees them (mapped by
        ``cluster.address_map``)."""
        client = await control_client(sentinel, self._timeout, self._auth)
        try:
            reply = await client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
            )
            if not reply:
                return None
            master = Address(reply[0].decode(), int(reply[1]))
            replicas = await client.execute_command("SENTINEL", "REPLICAS", self.master_name)
        finally:
            await client.aclose()
        online = [a for a in (_online_replica(r, master) for r in replicas) if a]
        return self._reachable(master), [self._reachable(a) for a in online]

    async def _is_master(self, address: Address) -> bool:
        try:
            client = await control_client(address, self._timeout, self._credentials, self._tls)
            try:
                role = await client.execute_command("ROLE")
            finally:
                await client.aclose()
        except _EXCHANGE_ERRORS:
            return False
        return bool(role) and role[0] == b"master"

    def use(self, secrets: Secrets) -> None:
        """Sign in and shake hands with these from now on (a reload rotated them); an event
        subscription already open stays as it is."""
        self._credentials = secrets.upstream
        self._tls = secrets.node_tls
        self._auth = secrets.sentinel

    async def watch(self, changed: Callable[[], None]) -> None:
        """Listen for the sentinels' events about this master, on every sentinel at once."""
        async with anyio.create_task_group() as tg:
            for sentinel in self.sentinels:
                tg.start_soon(self._listen, sentinel, changed)

    async def _listen(self, sentinel: Address, changed: Callable[[], None]) -> None:
        failing = False  # log a lost subscription once, not at every attempt
        while True:
            client = redis.asyncio.Redis(
                host=sentinel.host,
                port=sentinel.port,
                socket_connect_timeout=self._timeout,
                protocol=2,
                **self._auth.redis_options(),
            )
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(*_EVENTS)
                    if failing:
                        log.info("listening to sentinel %s's events again", sentinel)
                        failing = False
                        changed()  # an event may have been missed meanwhile
                    while True:
                        message = await pubsub.get_message(timeout=_EVENT_POLL)
                        if message is not None and self._concerns(
                            message["channel"], message["data"]
                        ):
                            log.info(
                                "sentinel %s: %s %s", sentinel, message["channel"].decode(),
                                message["data"].decode(errors="replace"),
                            )  # fmt: skip
                            changed()
            except _EXCHANGE_ERRORS as exc:
                if not failing:
                    log.warning("lost sentinel %s's events: %s", sentinel, exc)
                    failing = True
            finally:
                await client.aclose()
            await anyio.sleep(_RESUBSCRIBE_DELAY)

    def _concerns(self, channel: bytes, data: bytes) -> bool:
        """Whether an event is about this master: ``+switch-master <name> ...``, or an
        instance event ending ``@ <name> <ip> <port>``."""
        words = data.split()
        name = self.master_name.encode()
        if channel == b"+switch-master":
            return bool(words) and words[0] == name
        return b"@" in words and words[words.index(b"@") + 1 :][:1] == [name]


def _online_replica(fields: list[bytes], master: Address) -> Address | None:
    """A replica from ``SENTINEL REPLICAS`` (a flat field/value list) where reads may go: up,
    linked, and replicating ``master`` (not still the old one after a failover)."""
    info = dict(zip(fields[::2], fields[1::2], strict=False))
    flags = set(info.get(b"flags", b"").split(b","))
    if flags & {b"s_down", b"o_down", b"disconnected"}:
        return None
    if info.get(b"master-link-status") != b"ok":
        return None
    try:
        if Address(info[b"master-host"].decode(), int(info[b"master-port"])) != master:
            return None
        return Address(info[b"ip"].decode(), int(info[b"port"]))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None  # not what a sentinel sends: not a replica to read from
