"""Cluster topology: which master owns each of the 16384 slots, read from the cluster itself.

``CLUSTER SHARDS`` (Redis 7+) is preferred, ``CLUSTER SLOTS`` is the fallback; redis-py parses
both replies. Discovery asks the seeds and every master it knows, in turn, until one answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import parse_cluster_shards_unified, parse_cluster_slots
from redis.exceptions import RedisError, ResponseError

from redis_ambassador.config import Address

log = logging.getLogger(__name__)

SLOTS = 16384


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class SlotMap:
    """The owner of every slot (None where no master serves it), plus the replicas seen and,
    for each master, its replicas that are online (where reads may go: ``read_policy``)."""

    owners: tuple[Address | None, ...]
    replicas: frozenset[Address] = frozenset()
    readers: Mapping[Address, tuple[Address, ...]] = field(default_factory=dict)

    @classmethod
    def from_shards(cls, reply: list) -> SlotMap:
        """From the raw RESP2 reply of ``CLUSTER SHARDS``."""
        owners: list[Address | None] = [None] * SLOTS
        replicas: set[Address] = set()
        readers: dict[Address, tuple[Address, ...]] = {}
        for shard in parse_cluster_shards_unified(reply):
            master = None
            online: list[Address] = []
            for node in shard["nodes"]:
                address = _shard_node_address(node)
                if address is None:
                    continue
                health = _text(node.get("health", "online"))
                if _text(node.get("role", "")) == "master":
                    if health != "fail":
                        master = address
                else:
                    replicas.add(address)
                    if health == "online":
                        online.append(address)
            if master is not None:
                readers[master] = tuple(online)
            slots = shard["slots"]
            pairs = (
                slots
                if slots and isinstance(slots[0], (tuple, list))
                else zip(slots[::2], slots[1::2], strict=True)
            )
            for start, end in pairs:
                owners[int(start) : int(end) + 1] = [master] * (int(end) - int(start) + 1)
        return cls(tuple(owners), frozenset(replicas), readers)

    @classmethod
    def from_slots(cls, reply: list, current_host: str) -> SlotMap:
        """From the raw reply of ``CLUSTER SLOTS`` (Redis before 7)."""
        owners: list[Address | None] = [None] * SLOTS
        replicas: set[Address] = set()
        readers: dict[Address, tuple[Address, ...]] = {}
        for (start, end), info in parse_cluster_slots(reply, current_host=current_host).items():
            host, port = info["primary"]
            master = Address(host, int(port))
            owners[int(start) : int(end) + 1] = [master] * (int(end) - int(start) + 1)
            own = tuple(Address(h, int(p)) for h, p in info["replicas"])
            replicas.update(own)
            readers[master] = own
        return cls(tuple(owners), frozenset(replicas), readers)

    @property
    def masters(self) -> set[Address]:
        return {a for a in self.owners if a is not None}

    @property
    def complete(self) -> bool:
        """Every slot has a master."""
        return None not in self.owners

    def describe(self) -> str:
        """One line for the log: masters and the slot ranges they serve."""
        ranges: list[str] = []
        start = 0
        for slot in range(1, SLOTS + 1):
            if slot == SLOTS or self.owners[slot] != self.owners[start]:
                ranges.append(f"{start}-{slot - 1}:{self.owners[start] or 'none'}")
                start = slot
        return ", ".join(ranges)


def _shard_node_address(node: dict) -> Address | None:
    host = _text(node.get("endpoint") or node.get("ip") or "")
    port = node.get("port") or node.get("tls-port")
    if not host or host == "?" or not port:
        return None
    return Address(host, int(port))


async def control_client(address: Address, timeout: float) -> redis.asyncio.Redis:
    """A redis-py client for control-plane queries, with raw (unparsed) replies."""
    client = redis.asyncio.Redis(
        host=address.host,
        port=address.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        protocol=2,
        # No silent retries (redis-py's default waits seconds between them): a node that does
        # not answer is reported at once, and discovery moves on to the next one.
        retry=Retry(NoBackoff(), 0),
    )
    client.response_callbacks.clear()
    return client


async def fetch_slot_map(address: Address, timeout: float) -> SlotMap:
    """Ask one node for the cluster's slot map."""
    client = await control_client(address, timeout)
    try:
        try:
            return SlotMap.from_shards(await client.execute_command("CLUSTER", "SHARDS"))
        except ResponseError as exc:
            if "unknown subcommand" not in str(exc).lower():
                raise
            return SlotMap.from_slots(
                await client.execute_command("CLUSTER", "SLOTS"), current_host=address.host
            )
    finally:
        await client.aclose()


async def discover(candidates: Iterable[Address], timeout: float) -> tuple[SlotMap, Address]:
    """The slot map from the first candidate that answers; raises if none does."""
    problems = []
    for address in dict.fromkeys(candidates):
        try:
            return await fetch_slot_map(address, timeout), address
        except (RedisError, OSError, TimeoutError, RuntimeError) as exc:
            # RuntimeError: uvloop's, when a node dies while redis-py is still connecting
            # ("unable to perform operation on <TCPTransport closed=True>").
            problems.append(f"{address}: {exc or type(exc).__name__}")
    raise ClusterUnreachable("no cluster node answered: " + "; ".join(problems or ["no seeds"]))


class ClusterUnreachable(RuntimeError):
    """No seed or known node could describe the cluster."""
