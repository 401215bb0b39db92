"""Pub/Sub through the ambassador: the exact push messages Redis sends, in RESP2 and RESP3,
counts and PUBSUB introspection across the cluster, and shard channels that follow their slot."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
from conftest import resp
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador, RawConnection

Raw = Callable[[str, int], "RawConnection"]


@pytest.fixture
def ch() -> str:
    return f"ch{uuid.uuid4().hex[:8]}"


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return result


def test_subscribed_resp2_session_is_byte_for_byte_a_nodes(
    cluster: LocalCluster, ambassador: Ambassador, raw: Raw, ch: str
) -> None:
    """The same bytes to one node and to the ambassador: the same confirmations, the same
    refusal of other commands while subscribed, the same PING form, the same messages."""
    node = cluster.masters()[0]
    # A key of this node's own (else the node answers MOVED before it looks at the context).
    key = next(
        f"k{i}"
        for i in range(10_000)
        if cluster.master_for_slot(key_slot(f"k{i}".encode())) is node
    )
    session = [
        resp("SUBSCRIBE", f"{ch}a", f"{ch}b"),
        resp("GET", key),
        resp("PING"),
        resp("PING", "hi"),
        resp("PSUBSCRIBE", f"{ch}*"),
        resp("SUBSCRIBE", f"{ch}a"),  # again: confirmed again, count unchanged
        resp("UNSUBSCRIBE", f"{ch}nope"),
    ]
    replies_per_command = [2, 1, 1, 1, 1, 1, 1]
    results = []
    for host, port in [(node.host, node.port), (ambassador.host, ambassador.port)]:
        conn = raw(host, port)
        got = conn.exchange(b"".join(session), sum(replies_per_command))
        publisher = redis.Redis(host=host, port=port)
        publisher.publish(f"{ch}a", "hello")
        got += conn.read_replies(2)  # as a message and as a pmessage
        got += conn.exchange(resp("UNSUBSCRIBE") + resp("PUNSUBSCRIBE"), 3)
        got += conn.exchange(resp("PING"))  # no longer subscribed: the plain form
        results.append(got)
        publisher.close()
    assert results[1] == results[0]
    assert results[0][2].startswith(b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE")
    assert results[0][3] == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    assert results[0][-1] == b"+PONG\r\n"


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub_receives_channel_pattern_and_shard_messages(
    ambassador: Ambassador, ch: str, protocol: int
) -> None:
    client = ambassador.client(protocol=protocol)
    pubsub = client.pubsub()
    pubsub.subscribe(f"{ch}.c")
    pubsub.psubscribe(f"{ch}.p*")
    pubsub.ssubscribe(f"{ch}.s")
    confirmations = [pubsub.get_message(timeout=2) for _ in range(3)]
    assert [(m["type"], m["data"]) for m in confirmations] == [
        ("subscribe", 1), ("psubscribe", 2), ("ssubscribe", 1),
    ]  # fmt: skip
    publisher = ambassador.client()
    # The ambassador's subscribers are counted, as by one Redis.
    assert publisher.publish(f"{ch}.c", "one") == 1
    assert publisher.publish(f"{ch}.px", "two") == 1
    assert publisher.spublish(f"{ch}.s", "three") == 1
    got = [pubsub.get_message(timeout=2) for _ in range(3)]
    assert [(m["type"], m["channel"], m["data"]) for m in got] == [
        ("message", f"{ch}.c".encode(), b"one"),
        ("pmessage", f"{ch}.px".encode(), b"two"),
        ("smessage", f"{ch}.s".encode(), b"three"),
    ]
    if protocol == 3:  # RESP3 lets a subscribed client run any command
        assert client.set(f"{ch}.k", "v") is True
    pubsub.close()
    wait_for(lambda: publisher.publish(f"{ch}.c", "gone") == 0)


def test_pubsub_introspection_counts_subscribers_on_every_node(
    ambassador: Ambassador, ch: str
) -> None:
    subscribers = [ambassador.client().pubsub() for _ in range(3)]
    for n, pubsub in enumerate(subscribers):
        pubsub.subscribe(f"{ch}.x")
        pubsub.psubscribe(f"{ch}.pat{n}*")
        pubsub.ssubscribe(f"{ch}.shard{n}")  # on whichever node owns each
        for _ in range(3):
            assert pubsub.get_message(timeout=2) is not None
    client = ambassador.client()
    assert client.pubsub_numsub(f"{ch}.x", f"{ch}.none") == [
        (f"{ch}.x".encode(), 3),
        (f"{ch}.none".encode(), 0),
    ]
    assert f"{ch}.x".encode() in client.pubsub_channels(f"{ch}*")
    assert client.pubsub_numpat() >= 3
    shard = {c.decode() for c in client.pubsub_shardchannels(f"{ch}*")}
    assert shard == {f"{ch}.shard{n}" for n in range(3)}
    assert len({key_slot(s.encode()) for s in shard}) == 3
    for pubsub in subscribers:
        pubsub.close()


def test_a_subscribed_client_that_leaves_is_unsubscribed_on_the_node(
    ambassador: Ambassador, raw: Raw, ch: str
) -> None:
    conn = raw(ambassador.host, ambassador.port)
    conn.exchange(resp("SUBSCRIBE", ch))
    client = ambassador.client()
    assert client.pubsub_numsub(ch) == [(ch.encode(), 1)]
    conn.close()
    wait_for(lambda: client.pubsub_numsub(ch) == [(ch.encode(), 0)])


def test_subscribe_inside_multi_is_refused_and_aborts(ambassador: Ambassador, raw: Raw) -> None:
    replies = raw(ambassador.host, ambassador.port).exchange(
        resp("MULTI") + resp("SUBSCRIBE", "x") + resp("EXEC"), 3
    )
    assert replies[1].startswith(b"-ERR redis-ambassador cannot queue 'subscribe'")
    assert replies[2].startswith(b"-EXECABORT")


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(replicas_per_master=0) as local:
        yield local


def _command(cluster: LocalCluster, node: Any, *args: Any) -> Any:
    return cluster.client(node).execute_command(*args)


def test_shard_subscription_follows_its_slot_to_the_new_owner(
    own_cluster: LocalCluster, start_ambassador: Any
) -> None:
    cluster = own_cluster
    amb = start_ambassador(cluster)
    channel = "{moving}news"
    slot = key_slot(channel.encode())
    source = cluster.master_for_slot(slot)
    target = next(m for m in cluster.masters() if m is not source)
    pubsub = amb.client().pubsub()
    pubsub.ssubscribe(channel)
    assert pubsub.get_message(timeout=2)["type"] == "ssubscribe"
    publisher = amb.client()
    assert publisher.spublish(channel, "before") == 1
    assert pubsub.get_message(timeout=2)["data"] == b"before"

    _command(cluster, target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
    _command(cluster, source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
    for node in [target, source, *(m for m in cluster.masters() if m not in (source, target))]:
        _command(cluster, node, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

    # The old owner dropped the subscription; the ambassador makes it again at the new one.
    wait_for(lambda: _command(cluster, target, "PUBSUB", "SHARDNUMSUB", channel)[1] == 1)
    assert publisher.spublish(channel, "after") == 1
    message = wait_for(lambda: pubsub.get_message(timeout=0.2))
    assert (message["type"], message["data"]) == ("smessage", b"after")
    pubsub.close()


def test_sunsubscribe_without_channels_leaves_shard_channels_on_every_node(
    cluster: LocalCluster, ambassador: Ambassador, raw: Raw, ch: str
) -> None:
    def node_of(channel: str) -> Any:
        return cluster.master_for_slot(key_slot(channel.encode()))

    first = f"{ch}.one"
    second = next(f"{ch}.{n}" for n in range(1000) if node_of(f"{ch}.{n}") is not node_of(first))
    conn = raw(ambassador.host, ambassador.port)
    conn.exchange(resp("SSUBSCRIBE", first) + resp("SSUBSCRIBE", second), 2)
    client = ambassador.client()
    assert client.pubsub_shardnumsub(first, second) == [(first.encode(), 1), (second.encode(), 1)]
    confirmations = conn.exchange(resp("SUNSUBSCRIBE"), 2)
    assert sorted(confirmations) == sorted(
        b"*3\r\n$12\r\nsunsubscribe\r\n$%d\r\n%b\r\n:0\r\n" % (len(c), c.encode())
        for c in (first, second)
    )  # one per node, each node's own count
    # No longer subscribed: an ordinary command works again (RESP2).
    assert conn.exchange(resp("PING")) == [b"+PONG\r\n"]
    assert client.pubsub_shardnumsub(first, second) == [(first.encode(), 0), (second.encode(), 0)]
