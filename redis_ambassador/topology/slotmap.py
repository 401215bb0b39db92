"""Cluster topology: which master owns each of the 16384 slots, read from the cluster itself.

``CLUSTER SHARDS`` (Redis 7+) is preferred, ``CLUSTER SLOTS`` is the fallback; redis-py parses
both replies. ``discovery.py`` asks the nodes and picks among their views.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import parse_cluster_shards_unified, parse_cluster_slots
from redis.exceptions import ConnectionError as RedisConnectionError

from redis_ambassador.config import Address
from redis_ambassador.slots import SLOTS
from redis_ambassador.tls import NodeTLS, connect_options, describe
from redis_ambassador.upstream.credentials import Credentials

log = logging.getLogger(__name__)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class SlotMap:
    """The owner of every slot (None where no master serves it), plus the replicas seen and,
    for each master, its replicas that are online (where reads may go: ``read_policy``), and
    every node not failed by its id (from ``CLUSTER SHARDS``: an address change is a new
    address under the same id)."""

    owners: tuple[Address | None, ...]
    replicas: frozenset[Address] = frozenset()
    readers: Mapping[Address, tuple[Address, ...]] = field(default_factory=dict)
    nodes: Mapping[str, Address] = field(default_factory=dict)

    @classmethod
    def from_shards(cls, reply: list, current_host: str = "", tls: bool = False) -> SlotMap:
        """From the raw RESP2 reply of ``CLUSTER SHARDS``; a node whose address is not known
        (a one-node cluster never learns its own) is at ``current_host``, the one asked;
        ``tls``: the nodes' TLS ports."""
        owners: list[Address | None] = [None] * SLOTS
        replicas: set[Address] = set()
        readers: dict[Address, tuple[Address, ...]] = {}
        nodes: dict[str, Address] = {}
        for shard in parse_cluster_shards_unified(reply):
            master = None
            online: list[Address] = []
            for node in shard["nodes"]:
                address = _shard_node_address(node, current_host, tls)
                if address is None:
                    continue
                health = _text(node.get("health", "online"))
                if health != "fail" and node.get("id"):
                    nodes[_text(node["id"])] = address
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
        return cls(tuple(owners), frozenset(replicas), readers, nodes)

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
        nodes = {
            _text(node[2]): Address(_text(node[0]) or current_host, int(node[1]))
            for entry in reply
            for node in entry[2:]
            if len(node) > 2
        }
        return cls(tuple(owners), frozenset(replicas), readers, nodes)

    def translated(self, to: Callable[[Address], Address]) -> SlotMap:
        """The same map with every address passed through ``to`` (``cluster.address_map``)."""
        return SlotMap(
            tuple(to(a) if a is not None else None for a in self.owners),
            frozenset(map(to, self.replicas)),
            {to(m): tuple(map(to, rs)) for m, rs in self.readers.items()},
            {node_id: to(a) for node_id, a in self.nodes.items()},
        )

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


def _shard_node_address(node: dict, current_host: str, tls: bool) -> Address | None:
    host = _text(node.get("endpoint") or node.get("ip") or current_host)
    # A node with both ports lists both ("port" is the plain one); else only the one it has.
    plain, secure = node.get("port"), node.get("tls-port")
    port = (secure or plain) if tls else (plain or secure)
    if not host or host == "?" or not port:
        return None
    return Address(host, int(port))


class _TLSConnection(redis.asyncio.Connection):
    """redis-py's connection over the ambassador's own TLS context (redis-py's SSLConnection
    would build a second one from file names, and could not check a name other than the one
    dialed)."""

    def __init__(self, *, tls_options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tls_options = tls_options

    def _connection_arguments(self) -> Mapping[str, Any]:
        return {**super()._connection_arguments(), **self._tls_options}


async def control_client(
    address: Address,
    timeout: float,
    credentials: Credentials,
    tls: NodeTLS | None = None,
    announced: Address | None = None,
) -> redis.asyncio.Redis:
    """A redis-py client for control-plane queries, with raw (unparsed) replies, signed in
    with the ambassador's credentials; over TLS, the node's certificate must name it as
    ``announced`` (by default the address dialed)."""
    options: dict[str, Any] = {
        "host": address.host,
        "port": address.port,
        **credentials.redis_options(),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "protocol": 2,
        # No silent retries (redis-py's default waits seconds between them): a node that does
        # not answer is reported at once, and discovery moves on to the next one.
        "retry": Retry(NoBackoff(), 0),
    }
    if tls is None:
        client = redis.asyncio.Redis(**options)
    else:
        tls_options = connect_options(tls, announced or address, timeout)
        pool = redis.asyncio.ConnectionPool(
            connection_class=_TLSConnection, tls_options=tls_options, **options
        )
        client = redis.asyncio.Redis.from_pool(pool)
    client.response_callbacks.clear()
    return client


def failure(exc: BaseException, tls: NodeTLS | None = None) -> str:
    """Why a control-plane query failed, in one line (redis-py wraps a failed TLS handshake
    in its ConnectionError: the TLS reason is the one that helps)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError):
        return describe(cause)
    reason = describe(exc) or type(exc).__name__
    lost = isinstance(exc, RedisConnectionError | ConnectionError)
    if tls is not None and not tls.client_certificate and lost:
        # TLS 1.3: a node refuses a missing client certificate after the handshake, and the
        # alert saying so may be lost behind the closed connection.
        reason += (
            " (a node with tls-auth-clients yes closes connections without a client "
            "certificate: set upstream.tls_cert_file and tls_key_file)"
        )
    return reason


class ClusterUnreachable(RuntimeError):
    """No seed or known node could describe the cluster."""
