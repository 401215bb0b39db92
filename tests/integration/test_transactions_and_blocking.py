"""Transactions and blocking commands through the ambassador, against the session cluster.

Transactions are checked byte for byte against the node that owns their slot: the same bytes
sent to the ambassador and straight to the node get the same replies. Blocking commands run on
connections of their own: they must never stall the connections other clients share.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import redis
from conftest import resp
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador, RawConnection

Raw = Callable[[str, int], "RawConnection"]


@pytest.fixture
def tag() -> str:
    """A hashtag unique to the test: keys ``{tag}...`` share one slot."""
    return f"{{t{uuid.uuid4().hex[:10]}}}"


def same_on_node_and_ambassador(
    cluster: LocalCluster, ambassador: Ambassador, raw: Raw, slot_key: str, requests: list[bytes]
) -> list[bytes]:
    """Send ``requests`` to the slot's node, then (after resetting the keys) to the ambassador;
    the replies must be identical. Returns them."""
    node = cluster.master_for_slot(key_slot(slot_key.encode()))
    direct = raw(node.host, node.port).exchange(b"".join(requests), len(requests))
    cluster.client(node).flushall()
    through = raw(ambassador.host, ambassador.port).exchange(b"".join(requests), len(requests))
    assert through == direct
    return through


def test_transaction_replies_are_byte_for_byte_the_nodes(
    cluster: LocalCluster, ambassador: Ambassador, raw: Raw, tag: str
) -> None:
    k, h = f"{tag}k", f"{tag}h"
    replies = same_on_node_and_ambassador(
        cluster, ambassador, raw, tag,
        [
            resp("EXEC"), resp("DISCARD"),
            resp("MULTI"), resp("MULTI"), resp("SET", k, "1"), resp("INCR", k),
            resp("HSET", h, "f", "v"), resp("HGETALL", h), resp("PING"), resp("ECHO", "e"),
            resp("GET", k, "extra"), resp("EXEC"),  # GET's arity error aborts the EXEC
            resp("MULTI"), resp("INCR", k), resp("LPUSH", k, "x"), resp("EXEC"),  # runtime error
            resp("MULTI"), resp("SET", k, "2"), resp("DISCARD"), resp("GET", k),
            resp("MULTI"), resp("NOSUCHCOMMAND", "a"), resp("EXEC"),
            resp("MULTI"), resp("WATCH", k), resp("UNWATCH"), resp("EXEC"),
        ],
    )  # fmt: skip
    assert replies[3] == b"-ERR MULTI calls can not be nested\r\n"
    assert replies[11] == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    assert (
        replies[15]
        == b"*2\r\n:1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    )
    assert replies[19] == b"$1\r\n1\r\n"  # DISCARD dropped SET k 2


def test_a_transaction_over_two_slots_runs_per_node_and_answers_one_exec(
    cluster: LocalCluster, ambassador: Ambassador, raw: Raw, tag: str
) -> None:
    a = f"{tag}a"
    b = next(f"b{i}" for i in range(100) if key_slot(f"b{i}".encode()) != key_slot(a.encode()))
    replies = raw(ambassador.host, ambassador.port).exchange(
        resp("MULTI") + resp("SET", a, "1") + resp("SET", b, "1") + resp("EXEC"), 4
    )
    assert replies == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"*2\r\n+OK\r\n+OK\r\n"]
    client = ambassador.client()
    assert client.exists(a, b) == 2
    # redis-py's pipeline is transactional by default: it works across slots as on one Redis.
    pipe = client.pipeline()
    pipe.set(a, "2").incr(b).get(a)
    assert pipe.execute() == [True, 2, b"2"]
    client.delete(a, b)


def test_transaction_is_atomic_against_other_clients(ambassador: Ambassador, tag: str) -> None:
    key = f"{tag}counter"
    stop = threading.Event()
    seen: list[bytes | None] = []

    def reader() -> None:
        client = ambassador.client()
        while not stop.is_set():
            seen.append(client.get(key))

    thread = threading.Thread(target=reader)
    thread.start()
    client = ambassador.client()
    try:
        for _ in range(200):
            pipe = client.pipeline()
            pipe.set(key, "odd").set(key, "even")  # nobody may ever see "odd"
            assert pipe.execute() == [True, True]
    finally:
        stop.set()
        thread.join()
    assert b"odd" not in seen and b"even" in seen


def test_watch_makes_exec_fail_when_another_client_changes_the_key(
    ambassador: Ambassador, tag: str
) -> None:
    key = f"{tag}balance"
    client, other = ambassador.client(), ambassador.client()
    client.set(key, 10)
    with client.pipeline() as pipe:
        pipe.watch(key)
        value = int(pipe.get(key))
        pipe.multi()
        pipe.set(key, value + 1)
        assert pipe.execute() == [True]
    assert client.get(key) == b"11"
    with client.pipeline() as pipe:
        pipe.watch(key)
        value = int(pipe.get(key))
        other.set(key, 100)
        pipe.multi()
        pipe.set(key, value + 1)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.get(key) == b"100"


def test_hello_while_watching_switches_the_watching_connection_and_keeps_the_watch(
    ambassador: Ambassador, tag: str
) -> None:
    """HELLO 3 after WATCH: the replies that come over the connection holding the watch are
    RESP3 from then on, as from one Redis, and the watch still guards the transaction."""
    key, members = f"{tag}k", f"{tag}set"
    with ambassador.raw() as conn, ambassador.raw() as other:
        assert conn.exchange(resp("WATCH", key)) == [b"+OK\r\n"]
        assert conn.exchange(resp("HELLO", "3"))[0].startswith(b"%7\r\n")
        assert conn.exchange(resp("SMEMBERS", members)) == [b"~0\r\n"]
        assert other.exchange(resp("SET", key, "changed")) == [b"+OK\r\n"]
        request = resp("MULTI") + resp("SET", key, "mine") + resp("EXEC")
        assert conn.exchange(request, 3) == [b"+OK\r\n", b"+QUEUED\r\n", b"_\r\n"]
        assert conn.exchange(resp("HELLO", "2") + resp("WATCH", key), 2)[1] == b"+OK\r\n"
        assert conn.exchange(resp("SMEMBERS", members) + resp("UNWATCH"), 2) == [
            b"*0\r\n",
            b"+OK\r\n",
        ]
        conn.exchange(resp("DEL", key))


def test_watch_then_unwatch_or_discard_forgets_the_watch(
    ambassador: Ambassador, raw: Raw, tag: str
) -> None:
    key = f"{tag}w"
    conn = raw(ambassador.host, ambassador.port)
    other = ambassador.client()
    assert conn.exchange(resp("WATCH", key) + resp("UNWATCH"), 2) == [b"+OK\r\n", b"+OK\r\n"]
    other.set(key, "changed")
    assert conn.exchange(resp("MULTI") + resp("GET", key) + resp("EXEC"), 3)[2] == (
        b"*1\r\n$7\r\nchanged\r\n"
    )
    assert conn.exchange(resp("WATCH", key) + resp("MULTI") + resp("DISCARD"), 3)[2] == b"+OK\r\n"
    other.set(key, "again")
    assert conn.exchange(resp("MULTI") + resp("GET", key) + resp("EXEC"), 3)[2] == (
        b"*1\r\n$5\r\nagain\r\n"
    )
    # WATCH of keys in two slots: Redis Cluster's CROSSSLOT.
    other_slot = next(
        f"x{i}" for i in range(100) if key_slot(f"x{i}".encode()) != key_slot(key.encode())
    )
    assert conn.exchange(resp("WATCH", key, other_slot)) == [
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    ]


def test_blpop_wakes_on_a_push_while_50_clients_keep_working(
    ambassador: Ambassador, cluster: LocalCluster, tag: str
) -> None:
    queue = f"{tag}queue"
    done = [0] * 50
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            client = ambassador.client()
            for i in range(200):  # the same slot as the blocked command: the same node
                client.set(f"{tag}w{n}", i)
                assert client.get(f"{tag}w{n}") == str(i).encode()
                done[n] += 1
        except BaseException as exc:
            errors.append(exc)

    blocked = ambassador.client()
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(blocked.blpop([queue], timeout=0)))
    waiter.start()
    time.sleep(0.2)
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    assert not errors and done == [200] * 50
    assert not result, "BLPOP returned before anything was pushed"
    ambassador.client().rpush(queue, "job")
    waiter.join(timeout=10)
    assert result == [(queue.encode(), b"job")]


def test_blocking_timeout_is_honoured_and_order_is_kept_around_it(
    ambassador: Ambassador, raw: Raw, tag: str
) -> None:
    queue, key = f"{tag}q", f"{tag}k"
    conn = raw(ambassador.host, ambassador.port)
    start = time.monotonic()
    replies = conn.exchange(
        resp("RPUSH", queue, "a")
        + resp("BLPOP", queue, "0")  # the push before it is seen: it returns at once
        + resp("BLPOP", queue, "0.3")  # nothing left: waits out its timeout
        + resp("SET", key, "after")  # runs only after the BLPOP before it returned
        + resp("GET", key),
        5,
    )
    elapsed = time.monotonic() - start
    assert replies == [
        b":1\r\n",
        b"*2\r\n$%d\r\n%b\r\n$1\r\na\r\n" % (len(queue), queue.encode()),
        b"*-1\r\n",
        b"+OK\r\n",
        b"$5\r\nafter\r\n",
    ]
    assert 0.3 <= elapsed < 5


def test_a_client_that_leaves_while_blocked_releases_its_node_connection(
    ambassador: Ambassador, cluster: LocalCluster, raw: Raw, tag: str
) -> None:
    queue = f"{tag}gone"
    node = cluster.client(cluster.master_for_slot(key_slot(queue.encode())))
    before = node.info("clients")["blocked_clients"]
    conn = raw(ambassador.host, ambassador.port)
    conn.send(resp("BLPOP", queue, "0"))
    deadline = time.monotonic() + 5
    while node.info("clients")["blocked_clients"] == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.info("clients")["blocked_clients"] == before + 1
    conn.close()
    while node.info("clients")["blocked_clients"] > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.info("clients")["blocked_clients"] == before


def test_a_pipelined_watch_transaction_keeps_the_order_of_everything_around_it(
    ambassador: Ambassador, raw: Raw, tag: str
) -> None:
    """WATCH moves the client's commands for that node to a connection of its own and EXEC
    moves them back: nothing may overtake, in either direction."""
    key = f"{tag}n"
    replies = raw(ambassador.host, ambassador.port).exchange(
        resp("SET", key, "1")  # on the shared connection, before the WATCH
        + resp("WATCH", key)
        + resp("GET", key)
        + resp("MULTI")
        + resp("INCR", key)
        + resp("EXEC")
        + resp("GET", key)  # back on the shared connection: after the EXEC
        + resp("INCR", key),
        8,
    )
    assert replies == [
        b"+OK\r\n",
        b"+OK\r\n",
        b"$1\r\n1\r\n",
        b"+OK\r\n",
        b"+QUEUED\r\n",
        b"*1\r\n:2\r\n",
        b"$1\r\n2\r\n",
        b":3\r\n",
    ]


def test_client_reply_off_skip_on_silences_replies_exactly_as_the_node_does(
    cluster: LocalCluster, ambassador: Ambassador, raw: Raw, tag: str
) -> None:
    key = f"{tag}r"
    session = [
        resp("CLIENT", "REPLY", "OFF"),
        resp("SET", key, "1"),
        resp("GET", key),
        resp("CLIENT", "REPLY", "ON"),
        resp("GET", key),
        resp("CLIENT", "REPLY", "SKIP"),
        resp("INCR", key),
        resp("GET", key),
        resp("CLIENT", "REPLY", "BOGUS"),
        resp("CLIENT", "REPLY"),
    ]
    node = cluster.master_for_slot(key_slot(key.encode()))
    direct = raw(node.host, node.port).exchange(b"".join(session), 5)
    cluster.client(node).delete(key)
    through = raw(ambassador.host, ambassador.port).exchange(b"".join(session), 5)
    assert (
        through
        == direct
        == [
            b"+OK\r\n",
            b"$1\r\n1\r\n",
            b"$1\r\n2\r\n",
            b"-ERR syntax error\r\n",
            b"-ERR wrong number of arguments for 'client|reply' command\r\n",
        ]
    )
