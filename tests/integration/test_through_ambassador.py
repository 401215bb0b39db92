"""Plain Redis clients through the ambassador, checked against the cluster's own nodes.

Everything here runs against the session ambassador in front of the session cluster and only
adds keys under a per-test prefix, so the tests may run in any order.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import redis
from conftest import resp
from redis.crc import key_slot as _key_slot

from redis_ambassador.local.cluster import SLOT_COUNT, LocalCluster, LocalNode

if TYPE_CHECKING:
    from conftest import Ambassador, RawConnection

Raw = Callable[[str, int], "RawConnection"]


def key_slot(key: str | bytes) -> int:
    """The slot of a key (redis-py's CRC16 with {hashtags})."""
    return _key_slot(key.encode() if isinstance(key, str) else key)


@pytest.fixture
def ns() -> str:
    """A key prefix unique to this test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def owners(cluster: LocalCluster) -> list[LocalNode]:
    """The master owning each slot, from one CLUSTER SLOTS, each range confirmed with
    `master_for_slot` (one live lookup per range, not one per key)."""
    table: list[LocalNode | None] = [None] * SLOT_COUNT
    by_port = {n.port: n for n in cluster.nodes}
    # redis-py turns CLUSTER SLOTS into a dict; execute_command keeps the raw ranges.
    ranges = cluster.client(cluster.masters()[0]).execute_command("CLUSTER", "SLOTS")
    for start, end, master, *_ in ranges:
        node = cluster.master_for_slot(start)
        assert node is by_port[int(master[1])]
        table[start : end + 1] = [node] * (end - start + 1)
    assert all(n is not None for n in table), "some slots have no owner"
    return [n for n in table if n is not None]


def _same_on_node_and_ambassador(
    raw: Raw, ambassador: Ambassador, node: LocalNode, request: bytes, replies: int
) -> list[bytes]:
    """Send ``request`` to the node and to the ambassador; both must answer identically."""
    direct = raw(node.host, node.port).exchange(request, replies)
    proxied = raw(ambassador.host, ambassador.port).exchange(request, replies)
    assert proxied == direct
    return proxied


def _rejected_calls(cluster: LocalCluster, node: LocalNode, command: str) -> int:
    """How many `command` calls the node refused before running them (MOVED, ASK, ...)."""
    stats = cluster.client(node).info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("rejected_calls", 0))


# -- basics -----------------------------------------------------------------------------------


def test_set_then_get_returns_the_value_and_a_missing_key_returns_nil(
    ambassador: Ambassador, ns: str
) -> None:
    client = ambassador.client()
    assert client.set(f"{ns}:k", b"hello") is True
    assert client.get(f"{ns}:k") == b"hello"
    assert client.get(f"{ns}:missing") is None
    assert client.delete(f"{ns}:k") == 1
    assert client.get(f"{ns}:k") is None


def test_10000_pipelined_keys_each_land_on_the_master_owning_their_slot(
    ambassador: Ambassador, cluster: LocalCluster, owners: list[LocalNode], ns: str
) -> None:
    # Hashtag edge cases too: an empty tag hashes the whole key, only the first tag counts.
    tricky = [b"{}", b"{}x", b"{a}{b}", b"x{a}y", b"{", b"}{a}", b"{{a}}", b"", b"\x00\r\n{\xff}"]
    keys = [f"{ns}:bulk:{i}".encode() for i in range(10_000 - len(tricky))]
    keys += [ns.encode() + t for t in tricky[:-2]] + [t + ns.encode() for t in tricky[-2:]]
    rejected_before = {m: _rejected_calls(cluster, m, "set") for m in cluster.masters()}
    client = ambassador.client()
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.set(key, b"v=" + key)
        assert pipe.execute() == [True] * len(keys[start : start + 1000])
    # Sent straight to each owner: no node had to answer MOVED.
    assert {m: _rejected_calls(cluster, m, "set") for m in cluster.masters()} == rejected_before

    by_node: dict[LocalNode, list[bytes]] = defaultdict(list)
    for key in keys:
        by_node[owners[key_slot(key)]].append(key)
    assert set(by_node) == set(cluster.masters()), "the keys should cover every master"
    try:
        for node, node_keys in by_node.items():
            pipe = cluster.client(node).pipeline(transaction=False)
            for key in node_keys:
                pipe.get(key)
            # A key on the wrong master would come back as a MOVED error (raised here).
            assert pipe.execute() == [b"v=" + k for k in node_keys], node.address
    finally:
        for node, node_keys in by_node.items():
            pipe = cluster.client(node).pipeline(transaction=False)
            for key in node_keys:
                pipe.delete(key)
            pipe.execute()


def test_a_pipeline_of_1000_mixed_slot_commands_is_answered_in_request_order(
    ambassador: Ambassador, owners: list[LocalNode], raw: Raw, ns: str
) -> None:
    requests: list[bytes] = []
    expected: list[bytes] = []
    counters: dict[str, int] = defaultdict(int)
    lists: dict[str, int] = defaultdict(int)
    written: list[tuple[str, str]] = []
    # Replies the ambassador writes itself and replies from nodes, interleaved.
    crossslot = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    (unknown,) = raw(owners[0].host, owners[0].port).exchange(resp("NOPE", "arg"))
    for i in range(1000):
        slot_key = f"{ns}:k{i % 97}"  # 97 keys spread over the slots (hence every master)
        op = i % 8
        if op == 0:
            value = f"value-{i}"
            requests.append(resp("SET", f"{slot_key}:s{i}", value))
            expected.append(b"+OK\r\n")
            written.append((f"{slot_key}:s{i}", value))
        elif op == 1:
            key, value = written[-1]
            requests.append(resp("GET", key))
            expected.append(b"$%d\r\n%b\r\n" % (len(value), value.encode()))
        elif op == 2:
            counters[slot_key] += 1
            requests.append(resp("INCR", f"{slot_key}:n"))
            expected.append(b":%d\r\n" % counters[slot_key])
        elif op == 3:
            lists[slot_key] += 1
            requests.append(resp("LPUSH", f"{slot_key}:l", f"item-{i}"))
            expected.append(b":%d\r\n" % lists[slot_key])
        elif op == 4:
            requests.append(resp("HSET", f"{slot_key}:h", f"f{i}", f"v{i}"))
            expected.append(b":1\r\n")
        elif op == 5:
            requests.append(resp("ECHO", f"echo-{i}"))
            expected.append(b"$%d\r\necho-%d\r\n" % (len(f"echo-{i}"), i))
        elif op == 6:
            x = f"{ns}:x{i}"
            y = next(k for k in (f"{ns}:y{i}.{j}" for j in range(10)) if key_slot(k) != key_slot(x))
            if i % 2:
                requests.append(resp("MSETNX", x, "1", y, "2"))  # never split
                expected.append(crossslot)
            else:
                requests.append(resp("MSET", x, "1", y, "2"))  # split, answered once
                expected.append(b"+OK\r\n")
        else:
            requests.append(resp("NOPE", "arg"))
            expected.append(unknown)
    assert {owners[key_slot(f"{ns}:k{j}")] for j in range(97)} == set(owners)

    conn = raw(ambassador.host, ambassador.port)
    conn.send(b"".join(requests))
    replies = conn.read_replies(1000, timeout=15)

    mismatches = [(i, replies[i], expected[i]) for i in range(1000) if replies[i] != expected[i]]
    assert mismatches == []


def test_hashtag_keys_share_a_slot_so_mset_works_while_cross_slot_msetnx_gets_crossslot(
    ambassador: Ambassador, cluster: LocalCluster, owners: list[LocalNode], raw: Raw, ns: str
) -> None:
    client = ambassador.client()
    a, b = f"{{{ns}user1}}:a", f"{{{ns}user1}}:b"
    assert client.mset({a: b"1", b: b"2"}) is True
    assert client.mget(a, b) == [b"1", b"2"]
    assert cluster.client(owners[key_slot(a)]).mget(a, b) == [b"1", b"2"]

    x, y = f"{ns}:x", f"{ns}:y"
    assert key_slot(x) != key_slot(y)
    crossslot = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    # MSETNX is all-or-nothing, so it is never split: Redis Cluster's reply, as its node says.
    request = resp("MSETNX", x, "1", y, "2")
    assert raw(ambassador.host, ambassador.port).exchange(request) == [crossslot]
    assert raw(owners[key_slot(x)].host, owners[key_slot(x)].port).exchange(request) == [crossslot]
    with pytest.raises(redis.ResponseError, match=r"^Keys in request don't hash to the same slot$"):
        client.msetnx({x: b"1", y: b"2"})
    assert client.exists(x) == client.exists(y) == 0


# -- byte-for-byte replies --------------------------------------------------------------------

# (setup commands, the command compared); "K" is replaced by the test's key.
_CASES: dict[str, tuple[list[tuple[str, ...]], tuple[str, ...]]] = {
    "set": ([], ("SET", "K", "v")),
    "get-missing-key-is-null-bulk": ([], ("GET", "K")),
    "get-existing": ([("SET", "K", "some value")], ("GET", "K")),
    "incr": ([("SET", "K", "41")], ("INCR", "K")),
    "incr-not-a-number": ([("SET", "K", "abc")], ("INCR", "K")),
    "hgetall": ([("HSET", "K", "f1", "v1", "f2", "v2")], ("HGETALL", "K")),
    "zrange-withscores": (
        [("ZADD", "K", "1.5", "a", "2", "b", "-3", "c")],
        ("ZRANGE", "K", "0", "-1", "WITHSCORES"),
    ),
    "lrange": ([("RPUSH", "K", "x", "y", "z")], ("LRANGE", "K", "0", "-1")),
    "lrange-missing-is-empty-array": ([], ("LRANGE", "K", "0", "-1")),
    "type-zset": ([("ZADD", "K", "1", "a")], ("TYPE", "K")),
    "object-encoding-int": ([("SET", "K", "12345")], ("OBJECT", "ENCODING", "K")),
    "object-encoding-hash": ([("HSET", "K", "f", "v")], ("OBJECT", "ENCODING", "K")),
    "exists": ([("SET", "K", "v")], ("EXISTS", "K")),
    "smembers": ([("SADD", "K", "a")], ("SMEMBERS", "K")),
    "zscore-double": ([("ZADD", "K", "2.5", "m")], ("ZSCORE", "K", "m")),
    "hget-missing-field": ([("HSET", "K", "f", "v")], ("HGET", "K", "nope")),
    "config-get": ([], ("CONFIG", "GET", "maxmemory-policy")),
    "ttl-with-expire": ([("SET", "K", "v", "EX", "1000")], ("TTL", "K")),
    "ttl-without-expire": ([("SET", "K", "v")], ("TTL", "K")),
    "ttl-missing": ([], ("TTL", "K")),
    "wrong-type": ([("SET", "K", "v")], ("LPUSH", "K", "x")),
    "unknown-command": ([], ("NOSUCHCOMMAND", "arg1", "arg2")),
    "wrong-arity-keyed": ([], ("GET",)),
    "wrong-arity-set": ([], ("SET", "K")),
    "syntax-error": ([], ("SET", "K", "v", "NOPE")),
}


def _speaking(conn: RawConnection, protocol: int) -> RawConnection:
    """Switch a raw connection to ``protocol`` (its HELLO reply differs by design: dropped)."""
    if protocol == 3:
        (hello,) = conn.exchange(resp("HELLO", "3"))
        assert hello.startswith(b"%"), hello
    return conn


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
@pytest.mark.parametrize("case", list(_CASES))
def test_reply_bytes_equal_what_the_owning_node_sends(
    case: str, protocol: int, ambassador: Ambassador, owners: list[LocalNode], raw: Raw, ns: str
) -> None:
    setup, command = _CASES[case]
    steps = [*setup, command]

    def request(key: str) -> bytes:
        return b"".join(resp(*(key if a == "K" else a for a in step)) for step in steps)

    # The same commands on two fresh keys: one through the ambassador, one straight to its owner.
    amb_key, direct_key = f"{ns}:amb", f"{ns}:dir"
    node = owners[key_slot(direct_key)]
    direct = _speaking(raw(node.host, node.port), protocol)
    proxied = _speaking(raw(ambassador.host, ambassador.port), protocol)
    expected = direct.exchange(request(direct_key), len(steps))
    assert proxied.exchange(request(amb_key), len(steps)) == expected


# -- inline commands --------------------------------------------------------------------------


def test_inline_commands_are_answered_exactly_as_the_owning_node_answers_them(
    ambassador: Ambassador, owners: list[LocalNode], raw: Raw, ns: str
) -> None:
    requests: list[tuple[str, int]] = [
        ("PING\r\n", 1),
        ('set K "a b"\r\n', 1),
        ("get K\n", 1),
        ("PING\r\nget K\nset K 'c d'\r\nget K\r\n", 4),
        ('set K "tab\\there\\x41\\n"\r\nget K\r\n', 2),
        ("  \t get   K  \r\n", 1),
    ]

    def run(host: str, port: int, key: str) -> list[bytes]:
        conn = raw(host, port)
        replies: list[bytes] = []
        for text, count in requests:
            replies += conn.exchange(text.replace("K", key).encode(), count)
        return replies

    direct_key = f"{ns}:inline-direct"
    node = owners[key_slot(direct_key)]
    direct = run(node.host, node.port, direct_key)
    assert direct[:3] == [b"+PONG\r\n", b"+OK\r\n", b"$3\r\na b\r\n"]
    assert direct[-2:] == [b"$10\r\ntab\thereA\n\r\n"] * 2
    assert run(ambassador.host, ambassador.port, f"{ns}:inline-proxied") == direct
    assert ambassador.client().get(f"{ns}:inline-proxied") == b"tab\thereA\n"


# -- commands the ambassador answers itself ---------------------------------------------------


def test_ping_and_echo_are_answered_like_a_node_answers_them(
    ambassador: Ambassador, cluster: LocalCluster, raw: Raw
) -> None:
    request = resp("PING") + resp("PING", "hello there") + resp("ECHO", "a\r\nb") + resp("ECHO")
    got = _same_on_node_and_ambassador(raw, ambassador, cluster.masters()[0], request, 4)
    assert got[:3] == [b"+PONG\r\n", b"$11\r\nhello there\r\n", b"$4\r\na\r\nb\r\n"]


def test_select_0_is_accepted_and_select_1_is_refused_as_in_cluster_mode(
    ambassador: Ambassador, cluster: LocalCluster, raw: Raw
) -> None:
    request = resp("SELECT", "0") + resp("SELECT", "1")
    got = _same_on_node_and_ambassador(raw, ambassador, cluster.masters()[0], request, 2)
    assert got == [b"+OK\r\n", b"-ERR SELECT is not allowed in cluster mode\r\n"]


def test_client_setname_getname_and_id_belong_to_the_connection(
    ambassador: Ambassador, raw: Raw
) -> None:
    first = raw(ambassador.host, ambassador.port)
    second = raw(ambassador.host, ambassador.port)
    assert first.exchange(resp("CLIENT", "GETNAME")) == [b"$-1\r\n"]
    assert first.exchange(resp("CLIENT", "SETNAME", "worker-1")) == [b"+OK\r\n"]
    assert first.exchange(resp("CLIENT", "GETNAME")) == [b"$8\r\nworker-1\r\n"]
    ids = []
    for conn in (first, second, first):
        (reply,) = conn.exchange(resp("CLIENT", "ID"))
        assert reply.startswith(b":") and reply.endswith(b"\r\n")
        ids.append(int(reply[1:-2]))
    assert ids[0] == ids[2], "CLIENT ID must be stable on one connection"
    assert ids[0] != ids[1], "two connections must have different ids"


def test_hello_2_describes_a_standalone_resp2_redis(
    ambassador: Ambassador, cluster: LocalCluster
) -> None:
    client = ambassador.client(single_connection_client=True, protocol=2)
    reply = client.execute_command("HELLO", "2")
    assert isinstance(reply, list) and len(reply) % 2 == 0
    hello = dict(zip(reply[::2], reply[1::2], strict=True))
    assert hello[b"server"] == b"redis"
    assert hello[b"proto"] == 2
    assert hello[b"mode"] == b"standalone"
    assert hello[b"role"] == b"master"
    node_version = cluster.client(cluster.masters()[0]).info("server")["redis_version"]
    assert hello[b"version"] == str(node_version).encode()
    assert hello[b"id"] == client.client_id()


def test_hello_3_switches_the_connection_to_resp3_described_as_a_standalone_redis(
    ambassador: Ambassador, cluster: LocalCluster
) -> None:
    client = ambassador.client(single_connection_client=True, protocol=3)
    hello = client.execute_command("HELLO", "3")
    assert isinstance(hello, dict)
    assert hello[b"server"] == b"redis"
    assert hello[b"proto"] == 3
    assert hello[b"mode"] == b"standalone"
    assert hello[b"id"] == client.client_id()
    node_version = cluster.client(cluster.masters()[0]).info("server")["redis_version"]
    assert hello[b"version"] == str(node_version).encode()


def test_resp2_and_resp3_clients_sharing_the_ambassador_each_get_their_own_encoding(
    ambassador: Ambassador, raw: Raw, ns: str
) -> None:
    key = f"{ns}:h"
    assert ambassador.client().hset(key, mapping={"f": "v"}) == 1
    resp2 = raw(ambassador.host, ambassador.port)
    resp3 = _speaking(raw(ambassador.host, ambassador.port), 3)
    request = (resp("HGETALL", key) + resp("CLIENT", "GETNAME") + resp("HGET", key, "x")) * 200
    # Both pipelines in flight at once, over the same node.
    resp2.send(request)
    resp3.send(request)
    assert set(resp3.read_replies(600)) == {b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", b"_\r\n"}
    assert set(resp2.read_replies(600)) == {b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n", b"$-1\r\n"}
    # HELLO 2 switches back.
    (hello,) = resp3.exchange(resp("HELLO", "2"))
    assert hello.startswith(b"*14\r\n")
    assert resp3.exchange(resp("HGETALL", key)) == [b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"]


def test_redis_py_at_its_defaults_works_through_the_ambassador(
    ambassador: Ambassador, ns: str
) -> None:
    with redis.Redis(host=ambassador.host, port=ambassador.port) as client:
        assert client.ping() is True
        assert client.set(f"{ns}:d", "x") is True
        assert client.get(f"{ns}:d") == b"x"
        assert client.hgetall(f"{ns}:missing") == {}


def test_quit_replies_ok_then_closes_the_connection(ambassador: Ambassador, raw: Raw) -> None:
    conn = raw(ambassador.host, ambassador.port)
    conn.send(resp("PING") + resp("QUIT"))
    assert conn.read_until_closed() == b"+PONG\r\n+OK\r\n"
    with ambassador.client() as client:
        assert client.ping() is True


def test_client_name_set_on_one_connection_is_seen_neither_by_others_nor_by_the_nodes(
    ambassador: Ambassador, cluster: LocalCluster, raw: Raw, ns: str
) -> None:
    named = raw(ambassador.host, ambassador.port)
    other = raw(ambassador.host, ambassador.port)
    name = f"{ns}-private-name"
    assert named.exchange(resp("CLIENT", "SETNAME", name)) == [b"+OK\r\n"]
    # Traffic on both connections, so shared node connections are certainly in use.
    assert named.exchange(resp("SET", f"{ns}:a", "1")) == [b"+OK\r\n"]
    assert other.exchange(resp("GET", f"{ns}:a")) == [b"$1\r\n1\r\n"]
    assert other.exchange(resp("CLIENT", "GETNAME")) == [b"$-1\r\n"]
    assert ambassador.client().client_getname() is None
    assert named.exchange(resp("CLIENT", "GETNAME")) == [
        b"$%d\r\n%b\r\n" % (len(name), name.encode())
    ]
    for node in cluster.masters():
        names = [c["name"] for c in cluster.client(node).client_list()]
        assert name.encode() not in names and name not in names, node.address


# -- size and concurrency ---------------------------------------------------------------------


def test_a_5mb_value_round_trips_intact(
    ambassador: Ambassador, cluster: LocalCluster, owners: list[LocalNode], ns: str
) -> None:
    key = f"{ns}:big"
    value = os.urandom(5 * 1024 * 1024)
    client = ambassador.client()
    assert client.set(key, value) is True
    assert client.get(key) == value
    assert cluster.client(owners[key_slot(key)]).get(key) == value
    client.delete(key)


def test_200_concurrent_clients_doing_200_mixed_commands_each_get_correct_results(
    ambassador: Ambassador, ns: str
) -> None:
    clients, commands = 200, 200
    failures: list[str] = []
    done = 0
    lock = threading.Lock()
    start = threading.Barrier(clients, timeout=30)

    def work(c: int) -> None:
        nonlocal done
        client = ambassador.client(single_connection_client=True, socket_timeout=20)
        problems: list[str] = []
        try:
            start.wait()
            counter = 0
            pushed = 0
            for i in range(commands):
                key = f"{ns}:c{c}:k{i % 10}"
                op = i % 5
                if op == 0:
                    if client.set(key, f"{c}:{i}") is not True:
                        problems.append(f"SET {key}")
                elif op == 1:
                    want = f"{c}:{i - 1}".encode()
                    if (got := client.get(f"{ns}:c{c}:k{(i - 1) % 10}")) != want:
                        problems.append(f"GET got {got!r}, want {want!r}")
                elif op == 2:
                    counter += 1
                    if (n := client.incr(f"{ns}:c{c}:n")) != counter:
                        problems.append(f"INCR got {n}, want {counter}")
                elif op == 3:
                    pushed += 1
                    if (n := client.rpush(f"{ns}:c{c}:l", i)) != pushed:
                        problems.append(f"RPUSH got {n}, want {pushed}")
                elif (got := client.echo(f"{c}/{i}")) != f"{c}/{i}".encode():
                    problems.append(f"ECHO got {got!r}")
            if (items := client.lrange(f"{ns}:c{c}:l", 0, -1)) != [
                str(i).encode() for i in range(3, commands, 5)
            ]:
                problems.append(f"list contents {items[:5]!r}...")
        except (redis.RedisError, threading.BrokenBarrierError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()
        with lock:
            failures.extend(f"client {c}: {p}" for p in problems)
            done += 1

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 90
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert done == clients, f"only {done} of {clients} clients finished within the deadline"
    assert failures == []


def test_a_client_pipelining_5000_commands_without_reading_does_not_stall_others(
    ambassador: Ambassador, raw: Raw, ns: str
) -> None:
    big_key, value = f"{ns}:fat", os.urandom(20_000)
    assert ambassador.client().set(big_key, value) is True
    # 5,000 GETs of 20 KB: 100 MB of replies the greedy client does not read for a while.
    greedy = raw(ambassador.host, ambassador.port)
    greedy.sock.settimeout(60)
    sent = threading.Event()

    def flood() -> None:
        greedy.sock.sendall(resp("GET", big_key) * 5000)
        sent.set()

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    # Let the flood fill the buffers: until all is written, or the ambassador stops reading.
    sender.join(timeout=1.0)

    polite = ambassador.client(single_connection_client=True, socket_timeout=2)
    slowest = 0.0
    for i in range(200):
        began = time.monotonic()
        assert polite.ping() is True
        assert polite.set(f"{ns}:p", i) is True
        assert polite.get(f"{ns}:p") == str(i).encode()
        slowest = max(slowest, time.monotonic() - began)
    assert slowest < 1.0, f"slowest PING+SET+GET round took {slowest:.2f}s"

    expected = b"$%d\r\n%b\r\n" % (len(value), value)
    replies = greedy.read_replies(5000, timeout=60)
    assert all(r == expected for r in replies)
    sender.join(timeout=10)
    assert sent.is_set()


# -- QUIT ends the conversation ----------------------------------------------------------------


def test_commands_after_quit_in_the_same_write_are_neither_run_nor_answered(
    ambassador: Ambassador, owners: list[LocalNode], raw: Raw, ns: str
) -> None:
    def run(host: str, port: int, key: str) -> bytes:
        conn = raw(host, port)
        conn.send(resp("PING") + resp("QUIT") + resp("SET", key, "after-quit") + resp("PING"))
        return conn.read_until_closed()

    direct_key, proxied_key = f"{ns}:quit-direct", f"{ns}:quit-proxied"
    node = owners[key_slot(direct_key)]
    assert run(node.host, node.port, direct_key) == b"+PONG\r\n+OK\r\n"
    assert ambassador.client().exists(direct_key) == 0
    assert run(ambassador.host, ambassador.port, proxied_key) == b"+PONG\r\n+OK\r\n"
    assert ambassador.client().exists(proxied_key) == 0


def test_a_client_that_writes_its_whole_pipeline_before_reading_is_not_deadlocked(
    ambassador: Ambassador,
) -> None:
    # 2,000,000 GETs (50 MB) sent before a single reply is read: Redis keeps reading and
    # buffers the replies, so the send completes; the ambassador must not stop reading the
    # client while its replies (10 MB here) wait.
    frame = b"*2\r\n$3\r\nGET\r\n$20\r\nwhole-pipeline:nokey\r\n"
    count = 2_000_000
    sock = socket.create_connection((ambassador.host, ambassador.port), timeout=60)
    sent = threading.Event()

    def send() -> None:
        sock.sendall(frame * count)
        sent.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        assert sent.wait(60), "the ambassador stopped reading a client that had not read yet"
        expected = b"$-1\r\n" * count
        received = bytearray()
        while len(received) < len(expected):
            chunk = sock.recv(1 << 20)
            assert chunk, "connection closed early"
            received += chunk
        assert received == expected
    finally:
        sock.close()
