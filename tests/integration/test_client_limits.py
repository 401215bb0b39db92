"""Client limits against a real cluster: each one reached, answered as Redis answers it, and
counted in /metrics, while a well-behaved client keeps working."""

from __future__ import annotations

import re
import socket
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import Ambassador, _free_port, resp

from redis_ambassador.local.cluster import LocalCluster

MB = 1024 * 1024

# Small limits, so a test reaches each in a moment.
_LIMITS = {
    "max_inflight_per_client": 16,
    "max_output_buffer": 1 * MB,
    "output_buffer_hard_limit": 24 * MB,
    "output_buffer_soft_seconds": 2,
    "max_query_buffer": 1 * MB,
}


def _start(
    start_ambassador: Callable[..., Ambassador],
    cluster: LocalCluster,
    directory: Path,
    **server: int | float,
) -> Ambassador:
    config = directory / f"limits-{uuid.uuid4().hex[:8]}.toml"
    config.write_text("[server]\n" + "".join(f"{k} = {v}\n" for k, v in server.items()))
    return start_ambassador(cluster, admin=True, extra_args=("--config", str(config)))


@pytest.fixture(scope="module")
def limited(
    cluster: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    tmp_path_factory: pytest.TempPathFactory,
) -> Ambassador:
    return _start(start_ambassador, cluster, tmp_path_factory.mktemp("limits"), **_LIMITS)


@pytest.fixture
def bystander(limited: Ambassador) -> Iterator[redis.Redis]:
    client = limited.client(single_connection_client=True, socket_timeout=5)
    assert client.ping() is True
    yield client
    client.close()


def _assert_serving(ambassador: Ambassador, bystander: redis.Redis) -> None:
    assert ambassador.process.poll() is None, "the ambassador process exited"
    value = uuid.uuid4().bytes
    assert bystander.set("limits:bystander", value) is True
    assert bystander.get("limits:bystander") == value


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Read and drop whatever comes until the peer closes (True) or ``seconds`` pass."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def _not_reading_client(ambassador: Ambassador) -> socket.socket:
    """A socket with a tiny receive buffer that will never read: replies pile up at the
    ambassador, not in the kernel."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((ambassador.host, ambassador.port))
    return sock


def test_past_max_clients_a_new_client_gets_redis_error_and_is_closed_and_counted(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    ambassador = _start(start_ambassador, cluster, tmp_path, max_clients=3)
    admitted = []
    for _ in range(3):
        conn = ambassador.raw()
        assert conn.exchange(resp("PING")) == [b"+PONG\r\n"]
        admitted.append(conn)
    refused = ambassador.raw()
    assert refused.read_until_closed() == b"-ERR max number of clients reached\r\n"
    assert ambassador.metric("client_connections_rejected_total") == 1
    assert ambassador.metric("client_connections") == 3
    # The admitted ones are unharmed, and a place freed is taken again.
    assert admitted[0].exchange(resp("PING")) == [b"+PONG\r\n"]
    admitted.pop().close()
    deadline = time.monotonic() + 5
    while ambassador.metric("client_connections") != 2:
        assert time.monotonic() < deadline, "the closed client was never removed"
        time.sleep(0.05)
    again = ambassador.raw()
    assert again.exchange(resp("PING")) == [b"+PONG\r\n"]
    assert "refused: max number of clients reached (3, server.max_clients)" in (
        ambassador.stderr_text()
    )


def test_a_client_not_reading_a_pipeline_of_large_gets_is_cut_at_the_hard_limit_rss_bounded(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    key = "limits:big"
    assert bystander.set(key, b"v" * MB) is True
    before = limited.metric("client_disconnects_total", reason="output_buffer_hard_limit")
    rss_before = limited.rss_bytes()
    greedy = _not_reading_client(limited)
    # 400 MB of replies in one read: reading pauses too late to help, so the replies held for
    # the client count against the 24 MB hard limit as they arrive. (Sent one by one, reading
    # would pause at the soft limit and the soft limit's clock would close it: the next test.)
    greedy.sendall(resp("GET", key) * 400)
    peak = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        peak = max(peak, limited.rss_bytes() - rss_before)
        if limited.metric("client_disconnects_total", reason="output_buffer_hard_limit") > before:
            break
        time.sleep(0.05)
    assert limited.metric("client_disconnects_total", reason="output_buffer_hard_limit") == (
        before + 1
    )
    assert _closed_within(greedy, 5)
    greedy.close()
    peak = max(peak, limited.rss_bytes() - rss_before)
    assert peak < 96 * MB, f"RSS grew by {peak / MB:.0f} MB for a 24 MB hard limit"
    _assert_serving(limited, bystander)
    assert "replies unread over server.output_buffer_hard_limit" in limited.stderr_text()


def test_a_client_over_the_soft_output_limit_for_its_seconds_is_disconnected(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    key = "limits:soft"
    assert bystander.set(key, b"s" * 256 * 1024) is True
    before = limited.metric("client_disconnects_total", reason="output_buffer_soft_limit")
    slow = _not_reading_client(limited)
    # 10 MB, each GET written on its own: over the 1 MB soft limit once the kernel's socket
    # buffers (a few MB on loopback) are full, under the 24 MB hard one.
    for _ in range(40):
        slow.sendall(resp("GET", key))
        time.sleep(0.01)
    started = time.monotonic()
    deadline = started + 8
    while limited.metric("client_disconnects_total", reason="output_buffer_soft_limit") == before:
        assert time.monotonic() < deadline, "not disconnected within 8 s"
        time.sleep(0.1)
    waited = time.monotonic() - started
    assert waited > 1.0, f"closed after {waited:.1f}s: before the 2 s of the soft limit"
    assert _closed_within(slow, 5)
    slow.close()
    assert limited.metric("client_reads_paused_total", reason="output_buffer") >= 1
    _assert_serving(limited, bystander)


def test_a_slow_reader_that_catches_up_is_not_disconnected(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    key = "limits:catches-up"
    value = b"c" * 256 * 1024
    assert bystander.set(key, value) is True
    conn = limited.raw(timeout=10)
    conn.send(resp("GET", key) * 24)  # 6 MB: over the soft limit, under the hard one
    time.sleep(1.0)  # half the soft limit's seconds, not reading
    expected = b"$%d\r\n%b\r\n" % (len(value), value)
    assert conn.read_bytes(len(expected) * 24) == expected * 24
    time.sleep(2.0)
    assert conn.exchange(resp("PING")) == [b"+PONG\r\n"]


def test_an_unfinished_request_over_the_query_buffer_limit_is_closed_without_a_reply(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    before = limited.metric("client_disconnects_total", reason="query_buffer_limit")
    # Many arguments, each under max_bulk_len, adding up past the 1 MB query buffer limit.
    hoarder = limited.raw()
    hoarder.send(resp("PING") + b"*1000\r\n$3\r\nDEL\r\n")
    try:
        for _ in range(20):
            hoarder.send(b"$65536\r\n" + b"k" * 65536 + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert hoarder.read_until_closed() == b"+PONG\r\n"  # the PING's answer, then nothing
    assert limited.metric("client_disconnects_total", reason="query_buffer_limit") == before + 1
    assert "unfinished request over the query buffer limit" in limited.stderr_text()
    _assert_serving(limited, bystander)


def test_pending_requests_past_the_limit_pause_reading_and_all_are_answered(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    before = limited.metric("client_reads_paused_total", reason="pending_requests")
    conn = limited.raw()
    replies = conn.exchange(resp("INCR", "limits:pending") * 500, replies=500)
    first = int(replies[0][1:])
    assert replies == [b":%d\r\n" % (first + i) for i in range(500)]
    assert limited.metric("client_reads_paused_total", reason="pending_requests") > before


def test_protocol_errors_and_idle_timeouts_are_counted(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    ambassador = _start(start_ambassador, cluster, tmp_path, idle_timeout=1)
    bad = ambassador.raw()
    bad.send(b"*1\r\n$x\r\n")
    assert bad.read_until_closed() == b"-ERR Protocol error: invalid bulk length\r\n"
    assert ambassador.metric("client_disconnects_total", reason="protocol_error") == 1
    idle = ambassador.raw(timeout=5)
    assert idle.exchange(resp("PING")) == [b"+PONG\r\n"]
    assert idle.read_until_closed(timeout=4) == b""
    assert ambassador.metric("client_disconnects_total", reason="idle_timeout") == 1


def test_the_open_files_limit_is_raised_to_fit_max_clients_as_redis_does(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    port = _free_port("127.0.0.1")
    serve = [sys.executable, "-m", "redis_ambassador", "serve", "--listen", f"127.0.0.1:{port}"]
    serve += ["--admin", "off"]  # not the default 9090, which anything else may hold
    for seed in cluster.seeds:
        serve += ["--seed", seed]
    # Started under a soft limit of 1024 open files, as many systems set it.
    args = ["bash", "-c", 'ulimit -S -n 1024 && exec "$@"', "bash", *serve]
    ambassador = Ambassador.launch(args, "127.0.0.1", port, tmp_path / "ambassador.log")
    try:
        ambassador._wait_ready()
        limits = Path(f"/proc/{ambassador.process.pid}/limits").read_text()
        soft, hard = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits).groups()  # type: ignore[union-attr]
        assert int(soft) == min(10_000 + 1024, int(hard))
    finally:
        ambassador.stop()


def test_large_replies_of_a_split_mget_are_counted_and_delivered_whole(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    # Keys on different slots: the MGET is split per slot and its parts' large replies are
    # held by the fan-out until all arrive (counted in the client's output buffer meanwhile).
    values = {f"limits:mget:{i}": bytes([65 + i]) * (200 * 1024) for i in range(8)}
    for key, value in values.items():
        assert bystander.set(key, value) is True
    assert bystander.mget(list(values)) == list(values.values())
    _assert_serving(limited, bystander)


def test_a_pipeline_longer_than_the_pending_limit_in_one_write_is_answered_in_order(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    # 3000 commands in a few reads, against max_inflight_per_client 16: sent 16 at a time.
    conn = limited.raw(timeout=20)
    ns = uuid.uuid4().hex
    pipeline = b"".join(
        resp("SET", f"{ns}:{i}", str(i)) + resp("GET", f"{ns}:{i}") for i in range(1500)
    )
    replies = conn.exchange(pipeline, replies=3000)
    assert replies == [
        r for i in range(1500) for r in (b"+OK\r\n", b"$%d\r\n%d\r\n" % (len(str(i)), i))
    ]


def test_nothing_after_quit_runs_even_past_the_pending_limit(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    key = f"limits:after-quit:{uuid.uuid4().hex}"
    conn = limited.raw()
    conn.send(resp("PING") * 100 + resp("QUIT") + resp("SET", key, "ran") * 100)
    assert conn.read_until_closed() == b"+PONG\r\n" * 100 + b"+OK\r\n"
    assert bystander.exists(key) == 0


def test_small_replies_of_one_huge_read_cannot_outgrow_the_hard_limit(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    # 16 KB values are under the size counted on arrival, and a 64 KB read holds 6500 of these
    # inline GETs: sent together, they would owe 100 MB at once. Past 16 pending, the rest wait
    # their turn, so what is owed goes through the output buffer and meets its hard limit.
    key = "lim:s"
    assert bystander.set(key, b"s" * 16000) is True
    before = limited.metric("client_disconnects_total", reason="output_buffer_hard_limit")
    rss_before = limited.rss_bytes()
    greedy = _not_reading_client(limited)
    greedy.sendall(b"GET %s\n" % key.encode() * 20000)
    peak = 0
    deadline = time.monotonic() + 20
    while limited.metric("client_disconnects_total", reason="output_buffer_hard_limit") == before:
        assert time.monotonic() < deadline, "not disconnected at the hard limit"
        peak = max(peak, limited.rss_bytes() - rss_before)
        time.sleep(0.05)
    greedy.close()
    peak = max(peak, limited.rss_bytes() - rss_before)
    assert peak < 64 * MB, f"RSS grew by {peak / MB:.0f} MB for a 24 MB hard limit"
    _assert_serving(limited, bystander)


def test_a_subscriber_not_reading_its_messages_is_closed_at_the_output_limit_and_counted(
    limited: Ambassador, bystander: redis.Redis
) -> None:
    channel = f"limits:{uuid.uuid4().hex}"
    before = limited.metric("client_disconnects_total", reason="pubsub_output_buffer")
    subscriber = _not_reading_client(limited)
    subscriber.sendall(resp("SUBSCRIBE", channel))
    assert subscriber.recv(64).startswith(b"*3\r\n$9\r\nsubscribe\r\n")  # subscribed
    message = b"m" * 100_000
    deadline = time.monotonic() + 20
    # Publishers cannot be paused: past max_output_buffer (1 MB, once the kernel's socket
    # buffers are full) the subscriber is closed.
    while limited.metric("client_disconnects_total", reason="pubsub_output_buffer") == before:
        assert time.monotonic() < deadline, "the subscriber was never closed"
        for _ in range(20):
            bystander.publish(channel, message)
    assert _closed_within(subscriber, 5)
    subscriber.close()
    assert "messages unread over server.max_output_buffer" in limited.stderr_text()
    _assert_serving(limited, bystander)


def test_replies_to_a_client_that_vanished_are_dropped_as_they_arrive(
    ambassador: Ambassador,
) -> None:
    # The session's ambassador, default limits: all 300 GETs are sent to the node at once.
    other = ambassador.client(single_connection_client=True, socket_timeout=10)
    key = "limits:vanished"
    assert other.set(key, b"w" * MB) is True
    rss_before = ambassador.rss_bytes()
    gone = socket.create_connection((ambassador.host, ambassador.port))
    gone.sendall(resp("GET", key) * 300)  # 300 MB owed
    time.sleep(0.05)  # read and sent to the node
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()  # a reset: the replies have nowhere to go
    peak = 0
    for _ in range(40):
        peak = max(peak, ambassador.rss_bytes() - rss_before)
        time.sleep(0.05)
    assert peak < 64 * MB, f"RSS grew by {peak / MB:.0f} MB for a client that is gone"
    assert other.get(key) == b"w" * MB
    other.close()
