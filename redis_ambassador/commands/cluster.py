"""CLUSTER through the ambassador: one node that owns all 16384 slots.

A cluster-aware client pointed at the ambassador (redis-py's RedisCluster, Lettuce, go-redis's
ClusterClient, ...) asks CLUSTER SLOTS or SHARDS where the slots live. Telling it the truth would
send it around the ambassador, to the nodes; so the ambassador describes itself as a one-node
cluster at the very address the client dialed (the local end of that client's socket), and the
client sends everything back here. The replies have the shape a real one-node Redis 7 cluster
gives (observed on redis-server 7.0.15, RESP2 and RESP3); the node id is made up once per
process. Subcommands that would change the cluster are refused: they belong on the real nodes.

Operators may want the truth instead: with ``commands.cluster_view = "real"`` the router sends
the subcommands in ``REAL_VIEW`` to one master as they came, and the client gets that master's
reply unchanged (its ``myself``, its view of the cluster). MYID, MYSHARDID, KEYSLOT and HELP stay
the ambassador's own in both views.
"""

from __future__ import annotations

import secrets

from redis_ambassador import errors
from redis_ambassador.commands.connection import Container
from redis_ambassador.commands.state import ClientState, Handler, ServerFacts
from redis_ambassador.protocol.replies import array, bulk, integer, mapping, status, verbatim
from redis_ambassador.slots import key_slot

NODE_ID = secrets.token_hex(20).encode()  # 40 hex characters, like a Redis node id
SHARD_ID = secrets.token_hex(20).encode()
LAST_SLOT = 16383

# A one-node cluster at rest, as CLUSTER INFO words it (no peers, so no bus messages).
_INFO = (
    b"cluster_state:ok\r\n"
    b"cluster_slots_assigned:16384\r\n"
    b"cluster_slots_ok:16384\r\n"
    b"cluster_slots_pfail:0\r\n"
    b"cluster_slots_fail:0\r\n"
    b"cluster_known_nodes:1\r\n"
    b"cluster_size:1\r\n"
    b"cluster_current_epoch:0\r\n"
    b"cluster_my_epoch:0\r\n"
    b"cluster_stats_messages_sent:0\r\n"
    b"cluster_stats_messages_received:0\r\n"
    b"total_cluster_links_buffer_limit_exceeded:0\r\n"
)


def _info(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    return verbatim(_INFO, client.protocol)


def _myid(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    return bulk(NODE_ID)


def _myshardid(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """Redis 7.2's shard id: the ambassador is one shard."""
    return bulk(SHARD_ID)


def _keyslot(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    return integer(key_slot(args[2]))


def _slots(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """One range, 0-16383, served by this node: ``[start, end, [ip, port, id, {}]]``."""
    host, port = client.local_address
    node = array([bulk(host.encode()), integer(port), bulk(NODE_ID), mapping([], client.protocol)])
    return array([array([integer(0), integer(LAST_SLOT), node])])


def _shards(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """One shard owning every slot, with this node as its only (master) node."""
    host, port = client.local_address
    protocol = client.protocol
    node = mapping(
        [
            bulk(b"id"), bulk(NODE_ID),
            bulk(b"port"), integer(port),
            bulk(b"ip"), bulk(host.encode()),
            bulk(b"endpoint"), bulk(host.encode()),
            bulk(b"role"), bulk(b"master"),
            bulk(b"replication-offset"), integer(0),
            bulk(b"health"), bulk(b"online"),
        ],
        protocol,
    )  # fmt: skip
    shard = mapping(
        [bulk(b"slots"), array([integer(0), integer(LAST_SLOT)]), bulk(b"nodes"), array([node])],
        protocol,
    )
    return array([shard])


def _nodes(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """One line: ``id ip:port@cport myself,master - ping pong epoch connected 0-16383``. The bus
    port is 0: the ambassador has no cluster bus."""
    host, port = client.local_address
    line = b"%b %b:%d@0 myself,master - 0 0 0 connected 0-%d\n" % (
        NODE_ID,
        host.encode(),
        port,
        LAST_SLOT,
    )
    return verbatim(line, client.protocol)


def _replicas(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """The node has no replicas; any other node id is unknown, as on a one-node cluster."""
    return array([]) if args[2] == NODE_ID else errors.unknown_node(args[2])


def _links(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    return array([])


def _count_failure_reports(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    return integer(0) if args[2] == NODE_ID else errors.unknown_node(args[2])


_HELP = [
    b"CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    b"COUNT-FAILURE-REPORTS <node-id>",
    b"    Return number of failure reports for <node-id>.",
    b"INFO",
    b"    Return information about the cluster.",
    b"KEYSLOT <key>",
    b"    Return the hash slot for <key>.",
    b"MYID",
    b"    Return the node id.",
    b"MYSHARDID",
    b"    Return the node's shard id.",
    b"NODES",
    b"    Return cluster configuration seen by node. Output format:",
    b"    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    b"REPLICAS <node-id>",
    b"    Return <node-id> replicas.",
    b"SLOTS",
    b"    Return information about slots range mappings. Each range is made of:",
    b"    start, end, master and replicas IP addresses, ports and ids",
    b"SHARDS",
    b"    Return information about slot range mappings and the nodes associated with them.",
    b"LINKS",
    b"    Return information about all network links between this node and its peers.",
    b"    Output format is an array where each array element is a map containing attributes"
    b" of a link",
    b"HELP",
    b"    Prints this help.",
]


def _help(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """What the ambassador answers, in the words of Redis's CLUSTER HELP."""
    return array([status(line) for line in _HELP])


# Subcommand -> (arity as in Redis's command table, handler).
_SUBCOMMANDS: dict[bytes, tuple[int, Handler]] = {
    b"info": (2, _info),
    b"myid": (2, _myid),
    b"myshardid": (2, _myshardid),
    b"keyslot": (3, _keyslot),
    b"slots": (2, _slots),
    b"shards": (2, _shards),
    b"nodes": (2, _nodes),
    b"replicas": (3, _replicas),
    b"slaves": (3, _replicas),
    b"links": (2, _links),
    b"count-failure-reports": (3, _count_failure_reports),
    b"help": (2, _help),
}

# Sent to a master instead of answered here when commands.cluster_view = "real" (command table
# names: what the router resolves). REPLICAS, SLAVES and COUNT-FAILURE-REPORTS go too: they take
# the node ids that the real CLUSTER NODES shows.
REAL_VIEW = frozenset(
    f"cluster|{sub}"
    for sub in ("info", "slots", "shards", "nodes", "replicas", "slaves", "links",
                "count-failure-reports")
)  # fmt: skip

_CHANGES_CLUSTER = (
    "the ambassador presents the cluster as one node; change the cluster on its own nodes"
)
_REFUSED: dict[bytes, str] = {
    **dict.fromkeys(
        [b"addslots", b"addslotsrange", b"bumpepoch", b"delslots", b"delslotsrange",
         b"failover", b"flushslots", b"forget", b"meet", b"replicate", b"reset",
         b"saveconfig", b"set-config-epoch", b"setslot"],
        _CHANGES_CLUSTER,
    ),
    **dict.fromkeys(
        [b"countkeysinslot", b"getkeysinslot"],
        "commands addressed to a slot number are not routed by the ambassador yet",
    ),
}  # fmt: skip
cluster_command = Container("cluster", _SUBCOMMANDS, _REFUSED)
