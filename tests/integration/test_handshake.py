"""Real client libraries' connection handshakes, through the ambassador, as they send them.

The raw-socket tests replay the bytes each library writes on connect (ioredis and node-redis,
which the suite cannot run); redis-py 8 runs for real, as ``Redis`` in both protocols and as
``RedisCluster``. HELLO is compared byte for byte with a standalone redis-server started here (the
same binary as the cluster's nodes, so the same version); replies that only exist from Redis 7.2
(CLIENT SETINFO, lib-name/lib-ver in CLIENT INFO) follow the 7.2 source, as the unit tests note.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import pytest
import redis
from conftest import resp
from redis.maint_notifications import MaintNotificationsConfig

from redis_ambassador.ambassador import _learn_cluster
from redis_ambassador.config import Address
from redis_ambassador.local.cluster import LocalCluster
from redis_ambassador.topology.discovery import discover
from redis_ambassador.topology.slotmap import SlotMap
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.names import Names, system_lookup

if TYPE_CHECKING:
    from conftest import Ambassador, RawConnection, StandaloneRedis

Raw = Callable[[str, int], "RawConnection"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def standalone(standalone_redis: StandaloneRedis) -> tuple[str, int]:
    """The session's plain (not cluster) redis-server, to compare the handshake replies with."""
    return standalone_redis.host, standalone_redis.port


def _client_id(conn: RawConnection) -> int:
    (reply,) = conn.exchange(resp("CLIENT", "ID"))
    return int(reply[1:-2])


def _hello_like_standalone(
    standalone: tuple[str, int], raw: Raw, protocol: int, client_id: int
) -> bytes:
    """HELLO's reply from the standalone server, with its client id replaced by ``client_id``."""
    conn = raw(*standalone)
    own_id = _client_id(conn)
    (reply,) = conn.exchange(resp("HELLO", protocol))
    own, ours = b"$2\r\nid\r\n:%d\r\n" % own_id, b"$2\r\nid\r\n:%d\r\n" % client_id
    assert reply.count(own) == 1
    return reply.replace(own, ours)


def _text(reply: bytes) -> bytes:
    """The text of a bulk (RESP2) or verbatim (RESP3) string reply."""
    body = reply[reply.index(b"\r\n") + 2 : -2]
    return body.removeprefix(b"txt:") if reply.startswith(b"=") else body


def _fields(line: bytes) -> dict[bytes, bytes]:
    return dict(item.split(b"=", 1) for item in line.split())


# -- the handshakes, byte for byte ---------------------------------------------------------------


def test_ioredis_handshake_is_answered_like_a_standalone_redis_7_2(
    ambassador: Ambassador, raw: Raw, standalone: tuple[str, int]
) -> None:
    conn = raw(ambassador.host, ambassador.port)
    client_id = _client_id(conn)
    # ioredis writes these three at once on connect (then INFO as its ready check).
    conn.send(
        resp("HELLO", "3")
        + resp("CLIENT", "SETINFO", "LIB-VER", "5.6.1")
        + resp("CLIENT", "SETINFO", "LIB-NAME", "ioredis")
    )
    hello, lib_ver, lib_name = conn.read_replies(3)
    assert hello == _hello_like_standalone(standalone, raw, 3, client_id)
    assert (lib_ver, lib_name) == (b"+OK\r\n", b"+OK\r\n")
    (info,) = conn.exchange(resp("CLIENT", "INFO"))
    assert info.startswith(b"=")  # a verbatim string: the connection speaks RESP3 now
    fields = _fields(_text(info))
    assert fields[b"id"] == str(client_id).encode()
    assert (fields[b"lib-name"], fields[b"lib-ver"], fields[b"resp"]) == (
        b"ioredis",
        b"5.6.1",
        b"3",
    )


def test_node_redis_handshake_is_answered_and_the_connection_works(
    ambassador: Ambassador, raw: Raw, standalone: tuple[str, int]
) -> None:
    conn = raw(ambassador.host, ambassador.port)
    client_id = _client_id(conn)
    # node-redis writes HELLO, its library info and the maintenance opt-in in one go.
    conn.send(
        resp("HELLO", "3")
        + resp("CLIENT", "SETINFO", "LIB-NAME", "node-redis")
        + resp("CLIENT", "SETINFO", "LIB-VER", "5.8.2")
        + resp("CLIENT", "MAINT_NOTIFICATIONS", "ON", "moving-endpoint-type", "internal-ip")
    )
    hello, *rest = conn.read_replies(4)
    assert hello == _hello_like_standalone(standalone, raw, 3, client_id)
    assert rest == [b"+OK\r\n"] * 3
    key = f"handshake:node-redis:{client_id}"
    assert conn.exchange(resp("SET", key, "v") + resp("GET", key) + resp("GET", key + "x"), 3) == [
        b"+OK\r\n",
        b"$1\r\nv\r\n",
        b"_\r\n",  # RESP3 null: the node connection speaks RESP3 too
    ]


def test_hello_2_and_hello_3_match_a_standalone_redis(
    ambassador: Ambassador, raw: Raw, standalone: tuple[str, int]
) -> None:
    conn = raw(ambassador.host, ambassador.port)
    client_id = _client_id(conn)
    for protocol in (2, 3, 2):
        (hello,) = conn.exchange(resp("HELLO", protocol))
        assert hello == _hello_like_standalone(standalone, raw, protocol, client_id)


def test_hello_variants_and_their_errors_match_a_standalone_redis(
    ambassador: Ambassador, raw: Raw, standalone: tuple[str, int]
) -> None:
    """HELLO without a version, with SETNAME, and the errors Redis gives a bad HELLO, byte for
    byte (each server's own connection id put in place)."""
    session = [
        resp("HELLO"),  # no version: the current protocol (2), no switch
        resp("HELLO", 3, "SETNAME", "app-1"),
        resp("CLIENT", "GETNAME"),
        resp("HELLO", 4),
        resp("HELLO", "three"),
        resp("HELLO", 3, "SETNAME", "has space"),
        resp("HELLO", 3, "SETNAME"),
        resp("HELLO", 2, "BOGUS"),
        resp("HELLO", 2),
        resp("CLIENT", "GETNAME"),
    ]
    replies = []
    for host, port in [standalone, (ambassador.host, ambassador.port)]:
        conn = raw(host, port)
        own_id = b"$2\r\nid\r\n:%d\r\n" % _client_id(conn)
        got = conn.exchange(b"".join(session), len(session))
        replies.append([reply.replace(own_id, b"$2\r\nid\r\n:ID\r\n") for reply in got])
    assert replies[1] == replies[0]
    assert replies[0][2] == b"$5\r\napp-1\r\n"
    assert replies[0][3] == b"-NOPROTO unsupported protocol version\r\n"


# INFO server's fields that are not properties of the build: the ambassador shows them as the
# first master has them (its process, uptime and config file; the node's run_id), except
# tcp_port, which is the ambassador's own port, and redis_mode (standalone) and redis_version
# (the lowest among the nodes), which it sets. Everything else equals a standalone server's.
PER_PROCESS = frozenset(
    [b"process_id", b"run_id", b"tcp_port", b"server_time_usec", b"uptime_in_seconds",
     b"uptime_in_days", b"lru_clock", b"executable", b"config_file"]
)  # fmt: skip


def _info_fields(text: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (name, value)
        for name, _, value in (line.partition(b":") for line in text.split(b"\r\n"))
        if name and not name.startswith(b"#")
    ]


@pytest.mark.parametrize("protocol", [2, 3])
def test_info_server_section_is_a_standalone_servers(
    ambassador: Ambassador, raw: Raw, standalone: tuple[str, int], protocol: int
) -> None:
    sections = []
    for host, port in [standalone, (ambassador.host, ambassador.port)]:
        conn = raw(host, port)
        conn.exchange(resp("HELLO", protocol))
        (reply,) = conn.exchange(resp("INFO", "server"))
        assert reply.startswith(b"$" if protocol == 2 else b"=")  # RESP3: a verbatim string
        text = _text(reply)
        assert text.startswith(b"# Server\r\n")
        sections.append(_info_fields(text))
    expected, got = sections
    assert [name for name, _ in got] == [name for name, _ in expected]  # same fields, same order
    assert {n: v for n, v in got if n not in PER_PROCESS} == {
        n: v for n, v in expected if n not in PER_PROCESS
    }
    fields = dict(got)
    assert fields[b"redis_mode"] == b"standalone"
    assert fields[b"tcp_port"] == str(ambassador.port).encode()


def _info_calls(cluster: LocalCluster) -> dict[int, int]:
    """INFO calls each node has answered so far, by port."""
    calls = {}
    for node in cluster.nodes:
        stats = cluster.client(node).info("commandstats")
        calls[node.port] = int(stats.get("cmdstat_info", {}).get("calls", 0))
    return calls


def test_the_version_is_asked_of_every_master_and_replica(cluster: LocalCluster) -> None:
    seeds = [Address(n.host, n.port) for n in cluster.masters()]
    before = _info_calls(cluster)

    async def learn() -> bytes:
        names = Names(system_lookup, 1.0, 5.0)
        found = await discover(seeds, names, 5.0, 1, lambda a: a, Credentials())
        slot_map, via = found.slot_map, found.via
        assert len(slot_map.masters | slot_map.replicas) == len(cluster.nodes)
        _, version = await _learn_cluster(slot_map, via, 5.0, Credentials(), names)
        return version

    version = anyio.run(learn)
    after = _info_calls(cluster)
    # Each node's own count includes the commandstats query above, so more than one per node.
    assert all(after[port] >= before[port] + 2 for port in before), (before, after)
    assert version == str(cluster.client(cluster.nodes[0]).info("server")["redis_version"]).encode()


def test_a_node_that_does_not_answer_is_left_out_of_the_version(cluster: LocalCluster) -> None:
    seeds = [Address(n.host, n.port) for n in cluster.masters()]
    dead = Address("127.0.0.1", _free_port())  # nothing listens there

    async def learn() -> bytes:
        names = Names(system_lookup, 1.0, 5.0)
        found = await discover(seeds, names, 5.0, 1, lambda a: a, Credentials())
        slot_map, via = found.slot_map, found.via
        with_dead = SlotMap(slot_map.owners, slot_map.replicas | {dead})
        _, version = await _learn_cluster(with_dead, via, 2.0, Credentials(), names)
        return version

    assert (
        anyio.run(learn)
        == str(cluster.client(cluster.nodes[0]).info("server")["redis_version"]).encode()
    )


def test_hello_reports_the_version_of_the_clusters_nodes(
    ambassador: Ambassador, raw: Raw, cluster: LocalCluster
) -> None:
    versions = {
        str(cluster.client(node).info("server")["redis_version"]).encode() for node in cluster.nodes
    }
    assert len(versions) == 1  # one binary; the lowest-of-several rule is unit-tested
    conn = raw(ambassador.host, ambassador.port)
    (hello,) = conn.exchange(resp("HELLO", "2"))
    assert b"$7\r\nversion\r\n$%d\r\n%b\r\n" % (len(v := versions.pop()), v) in hello


# -- redis-py 8, as applications use it ---------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_connects_at_its_defaults_and_reports_its_library(
    ambassador: Ambassador, protocol: int
) -> None:
    client = redis.Redis(host=ambassador.host, port=ambassador.port, protocol=protocol)
    try:
        assert client.ping() is True
        assert client.set(f"handshake:redis-py:{protocol}", "v") is True
        assert client.get(f"handshake:redis-py:{protocol}") == b"v"
        info = client.client_info()
        assert info["lib-name"] == "redis-py"
        assert info["lib-ver"] == redis.__version__
        assert info["resp"] == str(protocol)
        assert info["id"] == client.client_id()
        assert info["laddr"] == f"{ambassador.host}:{ambassador.port}"
        ids = {entry["id"] for entry in client.client_list()}
        assert str(info["id"]) in ids
        assert client.client_list(_type="normal") == client.client_list()
    finally:
        client.close()


def test_redis_py_resp3_with_maintenance_notifications_required_connects(
    ambassador: Ambassador,
) -> None:
    """enabled=True makes redis-py fail the connection unless MAINT_NOTIFICATIONS gets +OK."""
    client = redis.Redis(
        host=ambassador.host,
        port=ambassador.port,
        protocol=3,
        maint_notifications_config=MaintNotificationsConfig(enabled=True),
    )
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_redis_py_connection_commands_keep_state_per_client(ambassador: Ambassador) -> None:
    first = ambassador.client(single_connection_client=True)
    second = ambassador.client(single_connection_client=True)
    try:
        assert first.client_no_evict("on") == b"OK"
        assert first.client_no_touch("on") == b"OK"
        assert first.client_setname("first") is True
        assert first.client_info()["flags"] == "eT"
        assert second.client_info()["flags"] == "N"
        listed = {entry["id"]: entry for entry in second.client_list()}
        assert listed[str(first.client_id())]["name"] == "first"
        assert listed[str(first.client_id())]["flags"] == "eT"
        only = second.client_list(client_id=[first.client_id()])
        assert [entry["name"] for entry in only] == ["first"]
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_cluster_client_finds_one_node_and_works(
    ambassador: Ambassador, protocol: int
) -> None:
    client = redis.RedisCluster(host=ambassador.host, port=ambassador.port, protocol=protocol)
    try:
        nodes = client.get_nodes()
        assert [(n.host, n.port, n.server_type) for n in nodes] == [
            (ambassador.host, ambassador.port, "primary")
        ]
        keys = [f"handshake:cluster:{protocol}:{i}" for i in range(20)]  # many slots, one node
        for key in keys:
            assert client.set(key, key) is True
        assert [client.get(key) for key in keys] == [key.encode() for key in keys]
        assert client.keyslot("foo") == 12182
    finally:
        client.close()


# -- RESET, CLIENT LIST and CLUSTER through the ambassador ---------------------------------------


def test_reset_returns_the_connection_to_resp2_without_name_or_modes(
    ambassador: Ambassador, raw: Raw
) -> None:
    conn = raw(ambassador.host, ambassador.port)
    setup = (
        resp("HELLO", "3", "SETNAME", "before-reset")
        + resp("CLIENT", "SETINFO", "LIB-NAME", "lib")
        + resp("CLIENT", "NO-EVICT", "on")
        + resp("CLIENT", "NO-TOUCH", "on")
    )
    conn.exchange(setup, 4)
    assert conn.exchange(resp("RESET")) == [b"+RESET\r\n"]
    (getname, info, missing) = conn.exchange(
        resp("CLIENT", "GETNAME") + resp("CLIENT", "INFO") + resp("GET", "handshake:missing"), 3
    )
    assert getname == b"$-1\r\n" and missing == b"$-1\r\n"  # RESP2 again, end to end
    assert info.startswith(b"$")
    fields = _fields(_text(info))
    assert (fields[b"name"], fields[b"flags"], fields[b"resp"], fields[b"lib-name"]) == (
        b"",
        b"N",
        b"2",
        b"lib",
    )


def test_client_list_shows_the_other_clients_of_the_ambassador(
    ambassador: Ambassador, raw: Raw
) -> None:
    named = raw(ambassador.host, ambassador.port)
    named.exchange(resp("CLIENT", "SETNAME", "listed-one"))
    named_id = _client_id(named)
    me = raw(ambassador.host, ambassador.port)
    my_id = _client_id(me)
    (everyone,) = me.exchange(resp("CLIENT", "LIST"))
    lines = {_fields(line)[b"id"]: _fields(line) for line in _text(everyone).splitlines()}
    assert lines[str(named_id).encode()][b"name"] == b"listed-one"
    assert lines[str(my_id).encode()][b"cmd"] == b"client|list"
    (two,) = me.exchange(resp("CLIENT", "LIST", "ID", named_id, my_id))
    assert [_fields(line)[b"id"] for line in _text(two).splitlines()] == [
        str(named_id).encode(),
        str(my_id).encode(),
    ]
    assert me.exchange(resp("CLIENT", "LIST", "TYPE", "pubsub")) == [b"$0\r\n\r\n"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_cluster_slots_shards_and_nodes_describe_one_node_at_the_dialed_address(
    ambassador: Ambassador, raw: Raw, protocol: int
) -> None:
    conn = raw(ambassador.host, ambassador.port)
    conn.exchange(resp("HELLO", protocol))
    (myid,) = conn.exchange(resp("CLUSTER", "MYID"))
    node_id = myid[5:-2]
    host, port = ambassador.host.encode(), ambassador.port
    meta = b"*0\r\n" if protocol == 2 else b"%0\r\n"
    address = b"$%d\r\n%b\r\n" % (len(host), host)
    slots, shards, nodes, info = conn.exchange(
        resp("CLUSTER", "SLOTS")
        + resp("CLUSTER", "SHARDS")
        + resp("CLUSTER", "NODES")
        + resp("CLUSTER", "INFO"),
        4,
    )
    assert slots == b"*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n%b:%d\r\n$40\r\n%b\r\n%b" % (
        address,
        port,
        node_id,
        meta,
    )
    shard, node = (b"*4", b"*14") if protocol == 2 else (b"%2", b"%7")
    assert shards == (
        b"*1\r\n%b\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n%b\r\n"
        b"$2\r\nid\r\n$40\r\n%b\r\n$4\r\nport\r\n:%d\r\n$2\r\nip\r\n%b$8\r\nendpoint\r\n%b"
        b"$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
        b"$6\r\nhealth\r\n$6\r\nonline\r\n" % (shard, node, node_id, port, address, address)
    )
    assert _text(nodes) == b"%b %b:%d@0 myself,master - 0 0 0 connected 0-16383\n" % (
        node_id,
        host,
        port,
    )
    assert nodes.startswith(b"$" if protocol == 2 else b"=")
    assert b"cluster_state:ok\r\ncluster_slots_assigned:16384\r\n" in info
    assert b"cluster_known_nodes:1\r\ncluster_size:1\r\n" in info
    assert conn.exchange(resp("CLUSTER", "MYID")) == [myid]  # stable


def test_cluster_changes_are_refused_before_reaching_any_node(
    ambassador: Ambassador, raw: Raw, cluster: LocalCluster
) -> None:
    calls_before = _cluster_calls(cluster)
    conn = raw(ambassador.host, ambassador.port)
    (reply,) = conn.exchange(resp("CLUSTER", "DELSLOTS", "1"))
    assert reply.startswith(b"-ERR redis-ambassador does not support 'cluster delslots': ")
    assert _cluster_calls(cluster) == calls_before


def _cluster_calls(cluster: LocalCluster) -> int:
    """CLUSTER DELSLOTS calls the masters have seen."""
    total = 0
    for node in cluster.masters():
        stats = cluster.client(node).info("commandstats")
        total += int(stats.get("cmdstat_cluster|delslots", {}).get("calls", 0))
    return total


# -- commands.cluster_view = "real": the operator's view -----------------------------------------


@pytest.fixture(scope="module")
def real_view(
    cluster: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    tmp_path_factory: pytest.TempPathFactory,
) -> Ambassador:
    """An ambassador in front of the session cluster that shows the real cluster."""
    config = tmp_path_factory.mktemp("real_view") / "real_view.toml"
    config.write_text('[commands]\ncluster_view = "real"\n')
    return start_ambassador(cluster, extra_args=("--config", str(config)))


def _volatile_fields_out(nodes_text: bytes) -> list[list[bytes]]:
    """CLUSTER NODES lines without ping-sent and pong-recv (times that change between calls)."""
    lines = [line.split(b" ") for line in nodes_text.splitlines() if line]
    return sorted(fields[:4] + fields[6:] for fields in lines)


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_real_view_forwards_cluster_info_slots_shards_and_nodes_to_a_master(
    real_view: Ambassador, cluster: LocalCluster, raw: Raw, protocol: int
) -> None:
    conn = raw(real_view.host, real_view.port)
    conn.exchange(resp("HELLO", protocol))
    direct = {}
    for node in cluster.masters():
        node_conn = raw(node.host, node.port)
        node_conn.exchange(resp("HELLO", protocol))
        direct[node.node_id] = node_conn
    # NODES: one master's own reply (its "myself"), as that master words it.
    (nodes,) = conn.exchange(resp("CLUSTER", "NODES"))
    assert nodes.startswith(b"$" if protocol == 2 else b"=")
    lines = _text(nodes).splitlines()
    assert {line.split(b" ")[0].decode() for line in lines} == {n.node_id for n in cluster.nodes}
    (myself,) = [line.split(b" ")[0].decode() for line in lines if b"myself" in line]
    (same,) = direct[myself].exchange(resp("CLUSTER", "NODES"))
    assert _volatile_fields_out(_text(nodes)) == _volatile_fields_out(_text(same))
    # SLOTS: no times in it, so byte for byte what a master says.
    (slots,) = conn.exchange(resp("CLUSTER", "SLOTS"))
    assert slots in [c.exchange(resp("CLUSTER", "SLOTS"))[0] for c in direct.values()]
    assert b"$40\r\n%b\r\n" % cluster.masters()[0].node_id.encode() in slots
    # SHARDS: every node of the cluster, masters and replicas.
    (shards,) = conn.exchange(resp("CLUSTER", "SHARDS"))
    assert all(node.node_id.encode() in shards for node in cluster.nodes)
    assert shards.startswith(b"*3\r\n" + (b"*4\r\n" if protocol == 2 else b"%2\r\n"))
    (info,) = conn.exchange(resp("CLUSTER", "INFO"))
    text = _text(info)
    assert b"cluster_known_nodes:%d\r\n" % len(cluster.nodes) in text
    assert b"cluster_size:%d\r\n" % len(cluster.masters()) in text
    # REPLICAS takes the real ids NODES shows; MYID stays the ambassador's own.
    master = cluster.masters()[0]
    (replicas,) = conn.exchange(resp("CLUSTER", "REPLICAS", master.node_id))
    replica_ids = {n.node_id for n in cluster.replicas()}
    assert sum(node_id.encode() in replicas for node_id in replica_ids) == 1
    (myid,) = conn.exchange(resp("CLUSTER", "MYID"))
    assert myid[5:-2].decode() not in {n.node_id for n in cluster.nodes}
    # Changes are still refused, in either view.
    (refused,) = conn.exchange(resp("CLUSTER", "DELSLOTS", "1"))
    assert refused.startswith(b"-ERR redis-ambassador does not support 'cluster delslots': ")


def test_the_single_view_is_the_default(ambassador: Ambassador, raw: Raw) -> None:
    conn = raw(ambassador.host, ambassador.port)
    (info,) = conn.exchange(resp("CLUSTER", "INFO"))
    assert b"cluster_known_nodes:1\r\n" in info
