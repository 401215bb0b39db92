"""Server and admin commands through the ambassador: the whole cluster inspected and tuned as one
server, and the command policy that guards what could harm it.

A cluster of its own (3 masters, 3 replicas): CONFIG SET, RESETSTAT and DEBUG change its nodes.
Replies are compared with what the nodes themselves answer, byte for byte where they can be.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hiredis
import pytest
import redis
from conftest import resp
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster, LocalNode

if TYPE_CHECKING:
    from conftest import Ambassador, RawConnection

Raw = Callable[[str, int], "RawConnection"]

ALLOW_ALL = "[commands]\ndeny = []\n"  # what `redis-ambassador dev` starts from


def decode(reply: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(reply)
    return reader.gets()


def denied(name: str) -> bytes:
    return (
        b"-NOPERM redis-ambassador's command policy denies '%b' (commands.deny); "
        b"to allow it, add '%b' to commands.allow\r\n" % (name.encode(), name.encode())
    )


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(masters=3, replicas_per_master=1) as local:
        yield local


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("admin_configs")


def _with_config(start: Any, cluster: LocalCluster, directory: Path, name: str, text: str) -> Any:
    path = directory / f"{name}.toml"
    path.write_text(text)
    return start(cluster, extra_args=("--config", str(path)))


@pytest.fixture(scope="module")
def amb(own_cluster: LocalCluster, start_ambassador: Any, config_dir: Path) -> Ambassador:
    """Everything allowed, as under `redis-ambassador dev`."""
    return _with_config(start_ambassador, own_cluster, config_dir, "allow_all", ALLOW_ALL)


@pytest.fixture(scope="module")
def strict(own_cluster: LocalCluster, start_ambassador: Any) -> Ambassador:
    """`serve` with no config: the default command policy."""
    return start_ambassador(own_cluster)


def masters(cluster: LocalCluster) -> list[LocalNode]:
    return cluster.masters()


def key_on(cluster: LocalCluster, node: LocalNode, prefix: str = "k") -> str:
    """A key whose slot ``node`` serves."""
    for i in range(100_000):
        key = f"{prefix}:{i}"
        if cluster.master_for_slot(key_slot(key.encode())).port == node.port:
            return key
    raise AssertionError("no key found")


def moved_count(cluster: LocalCluster) -> int:
    """MOVED replies the masters have sent: a command routed to the wrong node shows here."""
    return sum(
        int(cluster.client(n).info("errorstats").get("errorstat_MOVED", {}).get("count", 0))
        for n in masters(cluster)
    )


def config(client: redis.Redis, name: str) -> str:
    """One setting's value, as CONFIG GET answers it (redis-py decodes the reply's keys)."""
    (value,) = client.config_get(name).values()
    return value.decode() if isinstance(value, bytes) else str(value)


def calls(cluster: LocalCluster, node: LocalNode, command: str) -> int:
    stats = cluster.client(node).info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


# -- the command policy ---------------------------------------------------------------------


HARMFUL = [
    ("flushall", ["FLUSHALL"]),
    ("flushdb", ["FLUSHDB", "ASYNC"]),
    ("script|flush", ["SCRIPT", "FLUSH"]),
    ("function|flush", ["FUNCTION", "FLUSH"]),
    ("config|set", ["CONFIG", "SET", "maxmemory", "1"]),
    ("config|resetstat", ["CONFIG", "RESETSTAT"]),
    ("config|rewrite", ["CONFIG", "REWRITE"]),
    ("debug|sleep", ["DEBUG", "SLEEP", "0"]),
    ("debug|object", ["DEBUG", "OBJECT", "k"]),
    ("migrate", ["MIGRATE", "127.0.0.1", "1", "k", "0", "100"]),
]


def test_serve_denies_what_can_harm_the_cluster_naming_the_config_keys(
    strict: Ambassador, raw: Raw, own_cluster: LocalCluster
) -> None:
    client = strict.client()
    client.set("kept", "1")
    conn = raw(strict.host, strict.port)
    for name, args in HARMFUL:
        assert conn.exchange(resp(*args)) == [denied(name)], name
    assert client.get("kept") == b"1"  # FLUSHALL never reached a node
    assert config(client, "maxmemory") == "0"
    # In a transaction, as Redis treats a command the ACL forbids: refused, and EXEC aborts.
    replies = conn.exchange(resp("MULTI") + resp("FLUSHALL") + resp("EXEC"), 3)
    assert replies == [
        b"+OK\r\n",
        denied("flushall"),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    ]
    with pytest.raises(redis.exceptions.NoPermissionError, match=r"commands\.allow"):
        client.flushall()
    client.close()


def test_a_dev_style_config_allows_them(amb: Ambassador, own_cluster: LocalCluster) -> None:
    client = amb.client()
    client.set("gone", "1")
    assert client.flushall() is True
    assert client.dbsize() == 0
    assert client.flushdb() is True
    assert client.script_flush() is True
    assert client.function_flush() is True
    assert client.execute_command("DEBUG", "SLEEP", "0") in (True, b"OK")
    client.close()


def test_allow_lets_one_command_or_subcommand_through(
    own_cluster: LocalCluster, start_ambassador: Any, config_dir: Path, raw: Raw
) -> None:
    text = '[commands]\nallow = ["flushdb", "debug|object"]\n'
    some = _with_config(start_ambassador, own_cluster, config_dir, "allow_some", text)
    conn = raw(some.host, some.port)
    assert conn.exchange(resp("SET", "x", "1") + resp("FLUSHDB"), 2) == [b"+OK\r\n"] * 2
    assert conn.exchange(resp("FLUSHALL")) == [denied("flushall")]
    assert conn.exchange(resp("DEBUG", "OBJECT", "x")) == [b"-ERR no such key\r\n"]
    assert conn.exchange(resp("DEBUG", "SLEEP", "0")) == [denied("debug|sleep")]


# -- CONFIG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_config_get_answers_as_one_node_would(
    amb: Ambassador, own_cluster: LocalCluster, raw: Raw, protocol: int
) -> None:
    node = own_cluster.nodes[0]
    request = resp("HELLO", protocol) + resp("CONFIG", "GET", "maxmemory-policy")
    direct = raw(node.host, node.port).exchange(request, 2)[1]
    through = raw(amb.host, amb.port).exchange(request, 2)[1]
    assert through == direct
    assert through.startswith(b"%1\r\n" if protocol == 3 else b"*2\r\n")
    # Several names: each node orders them its own way (a hash table), so compare the pairs.
    request = resp("HELLO", protocol) + resp("CONFIG", "GET", "maxmemory-policy", "hz")
    pairs = decode(raw(amb.host, amb.port).exchange(request, 2)[1])
    if protocol == 2:
        pairs = dict(zip(pairs[::2], pairs[1::2], strict=True))
    assert pairs == {b"maxmemory-policy": b"noeviction", b"hz": b"10"}


def test_config_set_changes_every_master_and_replica(
    amb: Ambassador, own_cluster: LocalCluster
) -> None:
    client = amb.client()
    try:
        assert client.config_set("slowlog-max-len", 345) is True
        for node in own_cluster.nodes:
            assert config(own_cluster.client(node), "slowlog-max-len") == "345", node.address
        assert config(client, "slowlog-max-len") == "345"
    finally:
        client.config_set("slowlog-max-len", 128)
        client.close()


def test_config_set_that_a_node_refuses_gets_the_nodes_error(
    amb: Ambassador, own_cluster: LocalCluster, raw: Raw
) -> None:
    node = own_cluster.nodes[0]
    request = resp("CONFIG", "SET", "no-such-option", "1")
    direct = raw(node.host, node.port).exchange(request)
    assert raw(amb.host, amb.port).exchange(request) == direct
    assert direct[0].startswith(b"-ERR Unknown option")


def test_config_resetstat_and_rewrite_reach_every_node(
    amb: Ambassador, own_cluster: LocalCluster
) -> None:
    client = amb.client()
    client.config_set("slowlog-max-len", 200)

    def errors_seen(node: LocalNode) -> int:
        stats = own_cluster.client(node).info("errorstats")
        return int(stats.get("errorstat_ERR", {}).get("count", 0))

    # Cluster formation left many errors on every node; RESETSTAT clears the counts.
    before = {node.port: errors_seen(node) for node in own_cluster.nodes}
    assert min(before.values()) > 20
    assert client.execute_command("CONFIG", "RESETSTAT") in (True, b"OK")
    for node in own_cluster.nodes:
        assert errors_seen(node) < 10, node.address
    assert client.execute_command("CONFIG", "REWRITE") in (True, b"OK")
    for node in own_cluster.nodes:
        assert "slowlog-max-len 200" in node.conf_path.read_text(), node.address
    client.config_set("slowlog-max-len", 128)
    client.close()


# -- commands about one key -------------------------------------------------------------------


def test_object_memory_usage_and_debug_object_go_to_the_keys_master(
    amb: Ambassador, own_cluster: LocalCluster, raw: Raw
) -> None:
    keys = {key_on(own_cluster, node, "obj"): node for node in masters(own_cluster)}
    amb.client().mset(dict.fromkeys(keys, "12345"))
    conn = raw(amb.host, amb.port)
    before = moved_count(own_cluster)
    for key, node in keys.items():
        owner = raw(node.host, node.port)
        for args in (
            ("OBJECT", "ENCODING", key),
            ("OBJECT", "REFCOUNT", key),
            ("OBJECT", "FREQ", key),  # the node's error: no LFU policy
            ("MEMORY", "USAGE", key),
        ):
            assert conn.exchange(resp(*args)) == owner.exchange(resp(*args)), args
        assert decode(conn.exchange(resp("OBJECT", "IDLETIME", key))[0]) <= 5
        through = conn.exchange(resp("DEBUG", "OBJECT", key))[0]
        direct = owner.exchange(resp("DEBUG", "OBJECT", key))[0]
        # The same object on the same node (its address), the same encoding.
        assert through.split(b" ")[:3] == direct.split(b" ")[:3]
        assert b"encoding:int" in through
    assert moved_count(own_cluster) == before  # no command went to the wrong node


# -- DEBUG --------------------------------------------------------------------------------------


def test_debug_sleep_and_set_active_expire_reach_every_master(
    amb: Ambassador, own_cluster: LocalCluster
) -> None:
    nodes = own_cluster.nodes
    before = {node.port: calls(own_cluster, node, "debug") for node in nodes}
    client = amb.client()
    assert client.execute_command("DEBUG", "SLEEP", "0") in (True, b"OK")
    assert client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1") in (True, b"OK")
    after = {node.port: calls(own_cluster, node, "debug") for node in nodes}
    master_ports = {node.port for node in masters(own_cluster)}
    assert {port: after[port] - before[port] for port in after} == {
        port: 2 if port in master_ports else 0 for port in after
    }
    client.close()


def test_debug_refuses_what_acts_on_one_node_and_words_unknown_subcommands_as_redis(
    amb: Ambassador, own_cluster: LocalCluster, raw: Raw
) -> None:
    conn = raw(amb.host, amb.port)
    assert conn.exchange(resp("DEBUG", "RELOAD")) == [
        b"-ERR redis-ambassador does not support 'debug reload': it acts on one node's process, "
        b"replication or share of the keys; run it on the node itself\r\n"
    ]
    node = own_cluster.nodes[0]
    for request in (resp("DEBUG", "NOSUCH"), resp("DEBUG"), resp("DEBUG", "OBJECT")):
        assert conn.exchange(request) == raw(node.host, node.port).exchange(request)


def test_debug_protocol_reaches_the_client_in_its_protocol(
    amb: Ambassador, own_cluster: LocalCluster, raw: Raw
) -> None:
    node = own_cluster.nodes[0]
    request = (
        resp("HELLO", "3") + resp("DEBUG", "PROTOCOL", "map") + resp("DEBUG", "PROTOCOL", "attrib")
    )
    assert (
        raw(amb.host, amb.port).exchange(request, 3)[1:]
        == (raw(node.host, node.port).exchange(request, 3)[1:])
    )


# -- SLOWLOG and LATENCY ----------------------------------------------------------------------


@pytest.fixture
def slow_and_latency(amb: Ambassador) -> Iterator[redis.Redis]:
    """Every node logs commands slower than 5 ms and latency spikes of 5 ms, from a clean slate;
    every master then runs DEBUG SLEEP 0.02 once."""
    client = amb.client(protocol=2)
    client.config_set("slowlog-log-slower-than", 5000)
    client.config_set("latency-monitor-threshold", 5)
    client.execute_command("SLOWLOG", "RESET")
    client.execute_command("LATENCY", "RESET")
    client.execute_command("CONFIG", "RESETSTAT")
    client.execute_command("DEBUG", "SLEEP", "0.02")
    yield client
    client.config_set("slowlog-log-slower-than", 10000)
    client.config_set("latency-monitor-threshold", 0)
    client.close()


def test_slowlog_merges_every_masters_entries_newest_first(
    slow_and_latency: redis.Redis, amb: Ambassador, own_cluster: LocalCluster, raw: Raw
) -> None:
    client = slow_and_latency
    assert client.execute_command("SLOWLOG", "LEN") == 3
    time.sleep(1.1)
    client.execute_command("DEBUG", "SLEEP", "0.01")  # three more entries, a second newer
    entries = decode(raw(amb.host, amb.port).exchange(resp("SLOWLOG", "GET"))[0])
    assert len(entries) == 6
    assert [e[1] for e in entries] == sorted((e[1] for e in entries), reverse=True)
    assert [e[3] for e in entries[:3]] == [[b"DEBUG", b"SLEEP", b"0.01"]] * 3
    assert len(decode(raw(amb.host, amb.port).exchange(resp("SLOWLOG", "GET", "2"))[0])) == 2
    assert len(decode(raw(amb.host, amb.port).exchange(resp("SLOWLOG", "GET", "-1"))[0])) == 6
    # RESP3: the same shape (SLOWLOG GET has no map in it).
    resp3 = raw(amb.host, amb.port).exchange(resp("HELLO", "3") + resp("SLOWLOG", "GET", "1"), 2)
    assert decode(resp3[1])[0][3] == [b"DEBUG", b"SLEEP", b"0.01"]
    assert client.execute_command("SLOWLOG", "RESET") in (True, b"OK")
    assert client.execute_command("SLOWLOG", "LEN") == 0
    for node in masters(own_cluster):
        assert own_cluster.client(node).execute_command("SLOWLOG", "LEN") <= 1  # its own LEN


def test_latency_merges_every_masters_events(
    slow_and_latency: redis.Redis, amb: Ambassador, raw: Raw, own_cluster: LocalCluster
) -> None:
    client = slow_and_latency
    ((event, _, latest, worst),) = client.execute_command("LATENCY", "LATEST")
    assert event == b"command" and 20 <= latest <= worst
    assert len(client.execute_command("LATENCY", "HISTORY", "command")) >= 1
    doctor = raw(amb.host, amb.port).exchange(resp("HELLO", "3") + resp("LATENCY", "DOCTOR"), 2)[1]
    assert doctor.startswith(b"=")
    for node in masters(own_cluster):
        assert f"# node {node.address}\n".encode() in doctor
    histogram = client.execute_command("LATENCY", "HISTOGRAM", "debug")
    assert histogram[0] == b"debug"
    assert dict(zip(histogram[1][::2], histogram[1][1::2], strict=True))[b"calls"] == 3
    assert client.execute_command("LATENCY", "RESET") == 3  # one event series on each master
    assert client.execute_command("LATENCY", "LATEST") == []


# -- INFO ---------------------------------------------------------------------------------------


def info_fields(reply: bytes) -> dict[str, str]:
    text = decode(reply)
    fields = {}
    for line in (text if isinstance(text, bytes) else text.encode()).decode().split("\r\n"):
        if line and not line.startswith("#"):
            name, _, value = line.partition(":")
            fields[name] = value
    return fields


def titles(reply: bytes) -> list[str]:
    text = decode(reply)
    text = text if isinstance(text, bytes) else text.encode()
    return [line for line in text.decode().split("\r\n") if line.startswith("# ")]


def test_info_describes_the_cluster_as_one_standalone_server(
    amb: Ambassador, own_cluster: LocalCluster
) -> None:
    clients = [amb.client(protocol=2) for _ in range(3)]
    for client in clients:
        client.ping()
    info = clients[0].info()
    assert info["redis_mode"] == "standalone"
    assert info["cluster_enabled"] == 0
    assert info["tcp_port"] == amb.port
    assert info["connected_clients"] == len(clients[0].client_list())
    assert info["connected_clients"] >= 3
    assert info["ambassador_masters"] == 3
    assert info["ambassador_replicas"] == 3
    assert info["ambassador_slots_covered"] == 16384
    assert info["ambassador_masters_answered"] == 3
    assert info["connected_slaves"] == 0
    node_version = own_cluster.client(own_cluster.nodes[0]).info("server")["redis_version"]
    assert info["redis_version"] == node_version
    for client in clients:
        client.close()


def test_info_keyspace_and_counters_add_up_over_the_masters(
    amb: Ambassador, own_cluster: LocalCluster
) -> None:
    client = amb.client()
    client.flushall()
    client.mset({f"ks:{i}": "v" for i in range(300)})
    for i in range(0, 300, 3):
        client.expire(f"ks:{i}", 1000)
    keyspace = client.info("keyspace")["db0"]
    assert (keyspace["keys"], keyspace["expires"]) == (300, 100)
    on_nodes = [own_cluster.client(n).info("keyspace")["db0"] for n in masters(own_cluster)]
    assert len(on_nodes) == 3 and sum(db["keys"] for db in on_nodes) == 300
    sets = sum(calls(own_cluster, node, "mset") for node in masters(own_cluster))
    assert client.info("commandstats")["cmdstat_mset"]["calls"] == sets
    client.close()


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (("keyspace",), ["# Keyspace"]),
        (("server", "clients"), ["# Server", "# Clients"]),
        (("ambassador",), ["# Ambassador"]),
        (("cluster", "ambassador"), ["# Cluster", "# Ambassador"]),
    ],
)
def test_info_sections_are_chosen_as_redis_chooses_them(
    amb: Ambassador, raw: Raw, sections: tuple[str, ...], expected: list[str]
) -> None:
    (reply,) = raw(amb.host, amb.port).exchange(resp("INFO", *sections))
    assert titles(reply) == expected


@pytest.mark.parametrize("selection", [(), ("default",), ("all",), ("everything",)])
def test_info_default_all_and_everything_end_with_the_ambassador_section(
    amb: Ambassador, raw: Raw, own_cluster: LocalCluster, selection: tuple[str, ...]
) -> None:
    (reply,) = raw(amb.host, amb.port).exchange(resp("INFO", *selection))
    node = own_cluster.nodes[0]
    (direct,) = raw(node.host, node.port).exchange(resp("INFO", *selection))
    assert titles(reply) == [*titles(direct), "# Ambassador"]


def test_info_is_bulk_in_resp2_and_verbatim_in_resp3_as_redis_sends_it(
    amb: Ambassador, raw: Raw, own_cluster: LocalCluster
) -> None:
    node = own_cluster.nodes[0]
    request = resp("HELLO", "3") + resp("INFO", "cluster")
    direct = raw(node.host, node.port).exchange(request, 2)[1]
    through = raw(amb.host, amb.port).exchange(request, 2)[1]
    assert direct == b"=34\r\ntxt:# Cluster\r\ncluster_enabled:1\r\n\r\n"
    assert through == b"=34\r\ntxt:# Cluster\r\ncluster_enabled:0\r\n\r\n"
    resp2 = raw(amb.host, amb.port).exchange(resp("INFO", "cluster"))[0]
    assert resp2 == b"$30\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n"


def test_redis_py_at_its_defaults_reads_info(amb: Ambassador) -> None:
    client = amb.client()  # RESP3 in redis-py 8
    info = client.info("everything")
    assert info["redis_mode"] == "standalone"
    assert "ambassador_version" in info
    client.close()


# -- commands any master answers alike --------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(
    "args",
    [
        ("COMMAND", "COUNT"),
        ("COMMAND", "INFO", "get", "set"),
        ("COMMAND", "DOCS", "get"),
        ("COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"),
        ("LOLWUT", "VERSION", "5", "1", "1", "1"),
    ],
)
def test_keyless_commands_any_master_answers_come_back_as_a_node_sends_them(
    amb: Ambassador, own_cluster: LocalCluster, raw: Raw, protocol: int, args: tuple[str, ...]
) -> None:
    node = own_cluster.nodes[0]
    request = resp("HELLO", protocol) + resp(*args)
    assert (
        raw(amb.host, amb.port).exchange(request, 2)[1]
        == (raw(node.host, node.port).exchange(request, 2)[1])
    )


@pytest.mark.parametrize("protocol", [2, 3])
def test_time_lastsave_and_memory_stats_and_doctor_answer_like_a_node(
    amb: Ambassador, own_cluster: LocalCluster, raw: Raw, protocol: int
) -> None:
    conn = raw(amb.host, amb.port)
    conn.exchange(resp("HELLO", protocol))
    seconds, micros = decode(conn.exchange(resp("TIME"))[0])
    assert abs(int(seconds) - time.time()) < 5 and 0 <= int(micros) < 1_000_000
    assert conn.exchange(resp("LASTSAVE"))[0].startswith(b":")
    stats = conn.exchange(resp("MEMORY", "STATS"))[0]
    assert stats.startswith(b"%" if protocol == 3 else b"*")
    assert b"peak.allocated" in stats
    doctor = conn.exchange(resp("MEMORY", "DOCTOR"))[0]
    assert doctor.startswith(b"=" if protocol == 3 else b"$")


# -- a node that cannot be reached --------------------------------------------------------------


def test_config_set_with_a_replica_down_answers_its_error_and_reaches_the_others(
    amb: Ambassador, own_cluster: LocalCluster
) -> None:
    client = amb.client()
    client.config_set("slowlog-max-len", 129)  # every node's connection open
    replica = own_cluster.replicas()[0]
    own_cluster.kill(replica)
    try:
        with pytest.raises(redis.ResponseError) as failed:
            client.config_set("slowlog-max-len", 130)
        assert str(failed.value).startswith(
            f"redis-ambassador: node {replica.address} unavailable"
        ), failed.value
        for node in own_cluster.nodes:
            if node is not replica:
                assert config(own_cluster.client(node), "slowlog-max-len") == "130", node.address
        # INFO still answers from the masters.
        assert client.info("server")["redis_mode"] == "standalone"
    finally:
        own_cluster.restart(replica)
        own_cluster.wait_healthy()
        # The replica's circuit breaker closes once its probes are answered again (up to 8
        # reset timeouts, 1 to 1.5 s each, after a long outage): until then it is refused.
        deadline = time.monotonic() + 20
        while True:
            try:
                client.config_set("slowlog-max-len", 128)
                break
            except redis.ResponseError as exc:
                assert "circuit breaker open" in str(exc), exc
                assert time.monotonic() < deadline, "the restarted replica never came back"
                time.sleep(0.2)
        client.close()
