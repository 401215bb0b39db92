"""The ambassador in front of one standalone Redis (``--backend standalone``).

No slot logic may show: keys in different cluster slots go together, as they do on a plain
Redis. The server itself is the reference: the same bytes sent straight to it and through the
ambassador (the data reset in between) must get the same replies, errors included.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from conftest import _free_port, resp
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster
from redis_ambassador.local.servers import LocalStandalone

if TYPE_CHECKING:
    from conftest import Ambassador, RawConnection

Raw = Callable[[str, int], "RawConnection"]

# Keys in three different slots (a cluster would refuse them together with CROSSSLOT).
A, B, C = "a", "b", "c"
assert len({key_slot(k.encode()) for k in (A, B, C)}) == 3


@pytest.fixture(scope="module")
def through(
    standalone_backend: LocalStandalone, start_ambassador: Callable[..., Ambassador]
) -> Ambassador:
    return start_ambassador(standalone_backend)


@pytest.fixture(autouse=True)
def empty(standalone_backend: LocalStandalone) -> Iterator[None]:
    with standalone_backend.client() as client:
        client.flushall()
    yield


def same_as_the_server(
    server: LocalStandalone,
    ambassador: Ambassador,
    raw: Raw,
    requests: list[bytes],
    replies: int | None = None,
) -> list[bytes]:
    """Send ``requests`` in one write to the server, then (data reset) to the ambassador; the
    ``replies`` (default: one per request) must be identical. Returns them."""
    count = len(requests) if replies is None else replies
    direct = raw(server.host, server.port).exchange(b"".join(requests), count)
    with server.client() as client:
        client.flushall()
    via = raw(ambassador.host, ambassador.port).exchange(b"".join(requests), count)
    assert via == direct
    return via


def test_commands_and_errors_are_byte_for_byte_the_servers(
    standalone_backend: LocalStandalone, through: Ambassador, raw: Raw
) -> None:
    replies = same_as_the_server(
        standalone_backend, through, raw,
        [
            resp("SET", A, "1"), resp("INCR", A), resp("GET", A), resp("LPUSH", B, "x", "y"),
            resp("INCR", B), resp("GET", A, "extra"), resp("NOSUCHCOMMAND", A),
            resp("SET", A, "1", "BOGUS"), resp("HSET", C, "f"), resp("OBJECT", "NOPE"),
            resp("EXPIRE", A, "x"), resp("LRANGE", B, "0", "-1"), resp("TYPE", C),
        ],
    )  # fmt: skip
    assert replies[4] == b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"


def test_multi_key_commands_across_slots_run_as_on_one_redis(
    standalone_backend: LocalStandalone, through: Ambassador, raw: Raw
) -> None:
    replies = same_as_the_server(
        standalone_backend, through, raw,
        [
            resp("MSET", A, "1", B, "2", C, "3"), resp("MGET", A, B, C),
            resp("MSETNX", A, "9", "d", "4"), resp("SADD", "s1", "x", "y"),
            resp("SADD", "s2", "y", "z"), resp("SUNIONSTORE", "s3", "s1", "s2"),
            resp("SINTER", "s1", "s2"), resp("RENAME", A, "renamed"), resp("LPUSH", "l1", "v"),
            resp("LMOVE", "l1", "l2", "LEFT", "RIGHT"),
            resp("EVAL", "return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])",
                 "2", B, C),
            resp("DEL", B, C, "renamed"), resp("EXISTS", A, B, C, "s3"),
        ],
    )  # fmt: skip
    assert replies[1] == b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"
    assert all(not reply.startswith(b"-CROSSSLOT") for reply in replies)


def test_transactions_and_watch_span_any_keys(
    standalone_backend: LocalStandalone, through: Ambassador, raw: Raw
) -> None:
    replies = same_as_the_server(
        standalone_backend, through, raw,
        [
            resp("MULTI"), resp("SET", A, "1"), resp("INCR", B), resp("MGET", A, B), resp("DBSIZE"),
            resp("EXEC"),
            resp("WATCH", A, C), resp("MULTI"), resp("SET", C, "x"), resp("EXEC"),
            resp("MULTI"), resp("GET", A, "extra"), resp("EXEC"),
        ],
    )  # fmt: skip
    assert replies[5] == b"*4\r\n+OK\r\n:1\r\n*2\r\n$1\r\n1\r\n$1\r\n1\r\n:2\r\n"
    assert replies[9] == b"*1\r\n+OK\r\n"


def test_a_watched_key_changed_by_another_client_aborts_the_exec(
    through: Ambassador, raw: Raw
) -> None:
    watcher = raw(through.host, through.port)
    assert watcher.exchange(resp("WATCH", A, B)) == [b"+OK\r\n"]
    with through.client() as other:
        other.set(B, "changed")
    replies = watcher.exchange(resp("MULTI") + resp("SET", C, "1") + resp("EXEC"), 3)
    assert replies == [b"+OK\r\n", b"+QUEUED\r\n", b"*-1\r\n"]


def test_a_pipeline_of_many_commands_is_answered_in_order(through: Ambassador) -> None:
    with through.client() as client:
        pipe = client.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"k{i}", i)
            pipe.mget(f"k{i}", f"k{i // 2}")
        replies = pipe.execute()
    assert replies[1::2] == [[str(i).encode(), str(i // 2).encode()] for i in range(500)]


def test_scan_cursors_and_keyspace_commands_are_the_servers(
    standalone_backend: LocalStandalone, through: Ambassador, raw: Raw
) -> None:
    setup = [resp("SET", f"key:{i}", i) for i in range(40)]
    replies = same_as_the_server(
        standalone_backend, through, raw,
        [*setup, resp("SCAN", "0", "COUNT", "7"), resp("SCAN", "12", "COUNT", "5"),
         resp("SCAN", "x"), resp("DBSIZE"), resp("KEYS", "key:1*")],
    )  # fmt: skip
    assert replies[-2] == b":40\r\n"


def test_a_subscribed_session_and_blocking_commands_are_byte_for_byte_the_servers(
    standalone_backend: LocalStandalone, through: Ambassador, raw: Raw
) -> None:
    replies = same_as_the_server(
        standalone_backend, through, raw,
        [resp("BLPOP", A, B, "0.05"), resp("LPUSH", C, "x"),
         resp("BLMOVE", C, A, "LEFT", "LEFT", "1"),
         resp("SUBSCRIBE", A, B), resp("PSUBSCRIBE", "n*"), resp("SSUBSCRIBE", A, C),
         resp("PING"), resp("PING", "hi"), resp("GET", A), resp("UNSUBSCRIBE", A),
         resp("PUNSUBSCRIBE"), resp("SUNSUBSCRIBE", C), resp("UNSUBSCRIBE")],
        replies=15,  # (S|P)SUBSCRIBE confirm each channel
    )  # fmt: skip
    assert replies[0] == b"*-1\r\n"  # BLPOP timed out
    assert replies[-1].startswith(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n")


def test_cluster_commands_get_the_servers_own_error(
    standalone_backend: LocalStandalone, through: Ambassador, raw: Raw
) -> None:
    replies = same_as_the_server(
        standalone_backend, through, raw,
        [resp("CLUSTER", "INFO"), resp("CLUSTER", "SLOTS"), resp("CLUSTER", "KEYSLOT", A),
         resp("CLUSTER", "MYID"), resp("READONLY"), resp("CLUSTER", "NOSUCH")],
    )  # fmt: skip
    assert replies[0] == b"-ERR This instance has cluster support disabled\r\n"


def test_select_keeps_to_database_0_and_says_why(through: Ambassador, raw: Raw) -> None:
    replies = raw(through.host, through.port).exchange(resp("SELECT", "0") + resp("SELECT", "1"), 2)
    assert replies == [
        b"+OK\r\n",
        b"-ERR redis-ambassador serves database 0 only: its connections to the server are "
        b"shared by every client\r\n",
    ]


def test_cluster_view_single_still_describes_a_one_node_cluster(
    standalone_backend: LocalStandalone,
    start_ambassador: Callable[..., Ambassador],
    tmp_path: Path,
) -> None:
    config = tmp_path / "ambassador.toml"
    config.write_text('[commands]\ncluster_view = "single"\n')
    ambassador = start_ambassador(standalone_backend, extra_args=("--config", str(config)))
    with ambassador.client(protocol=2) as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    assert slots[0][:2] == [0, 16383]
    assert slots[0][2][1] == ambassador.port


def test_pubsub_and_shard_channels_in_any_slots(through: Ambassador) -> None:
    with through.client() as subscriber_client, through.client() as publisher:
        pubsub = subscriber_client.pubsub()
        pubsub.subscribe("news")
        pubsub.ssubscribe(A, B)  # two slots: one SSUBSCRIBE on a plain Redis
        confirmations = [pubsub.get_message(timeout=5) for _ in range(3)]
        assert [m["type"] for m in confirmations if m] == ["subscribe", "ssubscribe", "ssubscribe"]
        assert publisher.publish("news", "hello") == 1
        assert publisher.spublish(B, "sharded") == 1
        got = [pubsub.get_message(timeout=5) for _ in range(2)]
        assert [(m["type"], m["data"]) for m in got if m] == [
            ("message", b"hello"),
            ("smessage", b"sharded"),
        ]
        pubsub.close()


def test_blocking_pop_waits_on_keys_in_different_slots(
    standalone_backend: LocalStandalone, through: Ambassador
) -> None:
    result: list[object] = []

    def pop() -> None:
        with through.client() as client:
            result.append(client.blpop([A, B], timeout=5))

    waiter = threading.Thread(target=pop)
    waiter.start()
    with standalone_backend.client() as server:
        deadline = time.monotonic() + 5
        while server.info("clients")["blocked_clients"] < 1:  # BLPOP is waiting
            assert time.monotonic() < deadline, "BLPOP never reached the server"
            time.sleep(0.02)
    with through.client() as client:
        client.rpush(B, "pushed")
    waiter.join(10)
    assert result == [(B.encode(), b"pushed")]


def test_a_restarted_server_is_used_again_without_restarting_the_ambassador(
    start_ambassador: Callable[..., Ambassador],
) -> None:
    with LocalStandalone() as own:
        ambassador = start_ambassador(own)
        with ambassador.client(protocol=2) as client:
            assert client.set(A, "before")
            own.server.kill()
            with pytest.raises(redis.ResponseError, match=r"unavailable|unreachable|connect"):
                client.get(A)
            own.server.launch()
            deadline = time.monotonic() + 15
            while True:
                try:
                    client.set(A, "after")
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            assert client.get(A) == b"after"


def test_a_cluster_node_as_the_standalone_server_stops_start_up_with_one_line(
    cluster: LocalCluster,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "redis_ambassador", "serve", "--listen", f"127.0.0.1:{_free_port()}",
         "--backend", "standalone", "--seed", cluster.seeds[0]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{cluster.seeds[0]} is a Redis Cluster node: serve it with" in result.stderr
