"""Malformed client input: Redis's exact error, then the connection closes; others are unharmed.

Every case is also sent to a cluster node directly, so "exact" means "the same bytes Redis sends",
not a string copied from Redis's source.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from conftest import resp
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from redis_ambassador.local.cluster import LocalCluster, LocalNode

if TYPE_CHECKING:
    from conftest import Ambassador, RawConnection

Raw = Callable[[str, int], "RawConnection"]


def _owner(cluster: LocalCluster, key: str) -> LocalNode:
    return cluster.master_for_slot(key_slot(key.encode()))


@pytest.fixture
def bystander(ambassador: Ambassador) -> Iterator[redis.Redis]:
    """A well-behaved client, connected before the misbehaving one starts."""
    client = ambassador.client(single_connection_client=True, socket_timeout=5)
    assert client.ping() is True
    yield client
    client.close()


def _assert_serving(ambassador: Ambassador, bystander: redis.Redis) -> None:
    """The ambassador is alive, and the bystander's connection still answers correctly."""
    assert ambassador.process.poll() is None, "the ambassador process exited"
    value = uuid.uuid4().hex.encode()
    assert bystander.ping() is True
    assert bystander.set("protocol-errors:bystander", value) is True
    assert bystander.get("protocol-errors:bystander") == value


def _vm_size(ambassador: Ambassador) -> int:
    """Virtual memory of the ambassador process, in bytes (Linux /proc)."""
    status = Path(f"/proc/{ambassador.process.pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize line in /proc status")


def _send_in_pieces(conn: RawConnection, data: bytes, piece: int) -> None:
    """Send ``data`` in writes of ``piece`` bytes, stopping once the peer has closed (it may
    rightly do so as soon as the erroneous byte arrives; its reply is still readable)."""
    for start in range(0, len(data), piece):
        try:
            conn.send(data[start : start + piece])
        except (BrokenPipeError, ConnectionResetError):
            return


INVALID_MULTIBULK = b"-ERR Protocol error: invalid multibulk length\r\n"

# (input, Redis's reply); each is a complete client write that ends the connection.
# `*3000000000` has its own test below, on an ambassador of its own.
_PROTOCOL_ERRORS: dict[str, tuple[bytes, bytes]] = {
    "multibulk-length-not-a-number": (b"*3x\r\n", INVALID_MULTIBULK),
    "item-not-a-bulk-string": (
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
        b"-ERR Protocol error: expected '$', got 'f'\r\n",
    ),
    "negative-bulk-length": (
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    "bulk-length-over-512mb": (
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    "bulk-length-not-a-number": (
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    "bulk-length-with-leading-zero": (
        b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    "bulk-length-with-plus-sign": (
        b"*2\r\n$3\r\nGET\r\n$+1\r\nk\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    "bulk-length-minus-zero": (
        b"*2\r\n$4\r\nECHO\r\n$-0\r\n\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    "multibulk-length-with-leading-zero": (b"*02\r\n$3\r\nGET\r\n$1\r\nk\r\n", INVALID_MULTIBULK),
    "multibulk-length-minus-zero": (b"*-0\r\n*1\r\n$4\r\nPING\r\n", INVALID_MULTIBULK),
    "simple-string-item": (
        b"*2\r\n$3\r\nGET\r\n+k\r\n",
        b"-ERR Protocol error: expected '$', got '+'\r\n",
    ),
    "integer-item": (
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"-ERR Protocol error: expected '$', got ':'\r\n",
    ),
    "nested-array-item": (
        b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n",
        b"-ERR Protocol error: expected '$', got '*'\r\n",
    ),
    "inline-unbalanced-double-quotes": (
        b'set """test-key""" test-value\r\n',
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    ),
    "inline-unterminated-quote": (
        b"set k 'abc\r\n",
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    ),
}


@pytest.mark.parametrize("case", list(_PROTOCOL_ERRORS))
@pytest.mark.parametrize("delivery", ["one-write", "byte-by-byte"])
def test_protocol_error_gets_redis_exact_reply_then_close_while_others_keep_working(
    case: str,
    delivery: str,
    ambassador: Ambassador,
    cluster: LocalCluster,
    bystander: redis.Redis,
    raw: Raw,
) -> None:
    data, expected = _PROTOCOL_ERRORS[case]
    direct, proxied = _until_closed_from_node_and_ambassador(
        cluster, ambassador, raw, data, delivery
    )
    assert direct == expected, "the node itself answers differently: fix the expectation"
    assert proxied == direct
    _assert_serving(ambassador, bystander)


def _until_closed_from_node_and_ambassador(
    cluster: LocalCluster, ambassador: Ambassador, raw: Raw, data: bytes, delivery: str
) -> tuple[bytes, bytes]:
    """The same bytes sent to a master directly and to the ambassador ("one-write" or
    "byte-by-byte"); each side's whole answer until it closes the connection."""
    piece = len(data) if delivery == "one-write" else 1
    node = cluster.masters()[0]
    answers = []
    for host, port in ((node.host, node.port), (ambassador.host, ambassador.port)):
        conn = raw(host, port)
        _send_in_pieces(conn, data, piece)
        answers.append(conn.read_until_closed())
    return answers[0], answers[1]


@pytest.fixture
def own_ambassador(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> Iterator[Ambassador]:
    """A private ambassador in front of the session cluster, for inputs that may harm it."""
    own = start_ambassador(cluster)
    yield own
    # It may be frozen by what the test sent: no need to wait long for a graceful exit.
    own.stop(timeout=1)


@pytest.mark.parametrize("delivery", ["one-write", "byte-by-byte"])
def test_a_multibulk_count_over_int_max_gets_redis_exact_reply_then_close(
    delivery: str, own_ambassador: Ambassador, cluster: LocalCluster, raw: Raw
) -> None:
    direct, proxied = _until_closed_from_node_and_ambassador(
        cluster, own_ambassador, raw, b"*3000000000\r\n", delivery
    )
    assert direct == INVALID_MULTIBULK
    assert proxied == direct
    with own_ambassador.client(socket_timeout=5) as client:
        _assert_serving(own_ambassador, client)


def test_too_big_inline_request_gets_redis_exact_reply_then_close(
    ambassador: Ambassador, cluster: LocalCluster, bystander: redis.Redis, raw: Raw
) -> None:
    junk = b"x" * 70_000  # no newline anywhere
    node = cluster.masters()[0]
    results = []
    for host, port in ((node.host, node.port), (ambassador.host, ambassador.port)):
        conn = raw(host, port)
        conn.send(junk)
        results.append(conn.read_until_closed())
    direct, proxied = results
    assert direct == b"-ERR Protocol error: too big inline request\r\n"
    assert proxied == direct
    _assert_serving(ambassador, bystander)


@pytest.mark.parametrize(
    "prefix",
    [b"*-10\r\n", b"*0\r\n", b"*-1\r\n", b"\r\n", b"\n", b"   \r\n"],
    ids=["negative-multibulk", "zero-multibulk", "null-multibulk", "crlf", "lf", "blank-line"],
)
def test_ignored_input_is_skipped_and_the_next_command_is_answered(
    prefix: bytes, ambassador: Ambassador, cluster: LocalCluster, raw: Raw
) -> None:
    node = cluster.masters()[0]
    request = prefix + resp("PING") + prefix + b"PING\r\n"
    results = []
    for host, port in ((node.host, node.port), (ambassador.host, ambassador.port)):
        conn = raw(host, port)
        results.append(conn.exchange(request, 2))
        # Still open and in sync: one more command, one more reply.
        results.append(conn.exchange(resp("ECHO", "still-here")))
    assert results[0] == [b"+PONG\r\n", b"+PONG\r\n"]
    assert results[2:] == results[:2]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXY",
        b"*1\r\n$4\r\nPINGxx",
        b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
        b"*2\r\n$4\r\nECHO\r\n$3\r\na\r\n\r\n",
    ],
    ids=["junk-after-key", "junk-after-command-name", "empty-argument", "crlf-inside-payload"],
)
def test_unusual_but_valid_frames_are_answered_as_redis_answers_them(
    request_bytes: bytes,
    ambassador: Ambassador,
    cluster: LocalCluster,
    bystander: redis.Redis,
    raw: Raw,
) -> None:
    # Redis skips the two bytes after a payload unchecked, and takes a payload's bytes verbatim.
    node = _owner(cluster, "k")
    results = []
    for host, port in ((node.host, node.port), (ambassador.host, ambassador.port)):
        conn = raw(host, port)
        results.append(conn.exchange(request_bytes))
        results.append(conn.exchange(resp("PING")))  # still open and in step
    assert results[0] != [b"-"], results
    assert results[2:] == results[:2]
    _assert_serving(ambassador, bystander)


def test_commands_before_a_protocol_error_in_the_same_write_are_run_and_answered_first(
    ambassador: Ambassador, cluster: LocalCluster, bystander: redis.Redis, raw: Raw
) -> None:
    ns = uuid.uuid4().hex
    results = []
    keys = {"direct": f"{{{ns}-direct}}", "proxied": f"{{{ns}-proxied}}"}
    for target, key in keys.items():
        if target == "direct":
            node = _owner(cluster, key)
            host, port = node.host, node.port
        else:
            host, port = ambassador.host, ambassador.port
        conn = raw(host, port)
        conn.send(
            resp("SET", key, "written")
            + resp("PING")
            + resp("INCR", f"{key}:n")
            + b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"
            + resp("SET", f"{key}:after", "never")
        )
        results.append(conn.read_until_closed())
    direct, proxied = results
    assert direct == (b"+OK\r\n+PONG\r\n:1\r\n-ERR Protocol error: expected '$', got 'f'\r\n")
    assert proxied == direct
    client = ambassador.client()
    for key in keys.values():
        assert client.get(key) == b"written"
        assert client.exists(f"{key}:after") == 0
    _assert_serving(ambassador, bystander)


def test_a_declared_500mb_bulk_that_stalls_neither_buffers_unboundedly_nor_blocks_others(
    ambassador: Ambassador, bystander: redis.Redis, raw: Raw
) -> None:
    rss_before = ambassador.rss_bytes()
    stalled = raw(ambassador.host, ambassador.port)
    stalled.send(b"*2\r\n$3\r\nGET\r\n$500000000\r\n" + b"a" * 4096)
    # The ambassador owes this client nothing until the bulk completes: no reply, no close.
    with pytest.raises(AssertionError, match="timed out"):
        stalled.read_reply(timeout=0.5)
    for _ in range(20):
        _assert_serving(ambassador, bystander)
    grown = ambassador.rss_bytes() - rss_before
    assert grown < 64 * 1024 * 1024, f"ambassador RSS grew by {grown / 2**20:.0f} MiB"
    stalled.close()
    _assert_serving(ambassador, bystander)


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_a_client_vanishing_mid_command_leaves_the_ambassador_serving_others(
    how: str, ambassador: Ambassador, bystander: redis.Redis, raw: Raw
) -> None:
    key = f"{uuid.uuid4().hex}:half"
    frame = resp("SET", key, "x" * 100)
    conn = raw(ambassador.host, ambassador.port)
    conn.send(resp("PING") + frame[: len(frame) // 2])
    assert conn.read_reply() == b"+PONG\r\n"
    if how == "reset":
        # SO_LINGER 0: close() sends RST instead of FIN.
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    _assert_serving(ambassador, bystander)
    assert bystander.exists(key) == 0


def test_a_client_vanishing_with_replies_in_flight_does_not_desync_shared_node_connections(
    ambassador: Ambassador, bystander: redis.Redis, raw: Raw
) -> None:
    ns = uuid.uuid4().hex
    big = b"v" * 10_000
    assert bystander.set(f"{ns}:big", big) is True
    # Several clients at once, so every lane of the node pools carries an abandoned pipeline.
    for _ in range(4):
        conn = raw(ambassador.host, ambassador.port)
        conn.send(resp("GET", f"{ns}:big") * 2000)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    # New clients land on every lane; each must get its own replies, not leftovers.
    problems: list[str] = []

    def check(c: int) -> None:
        with ambassador.client(single_connection_client=True, socket_timeout=10) as client:
            for i in range(50):
                value = f"{c}:{i}".encode()
                key = f"{ns}:c{c}:{i}"
                try:
                    got = (client.set(key, value), client.get(key))
                except redis.RedisError as exc:
                    problems.append(f"client {c} command {i}: {type(exc).__name__}: {exc}")
                    return
                if got != (True, value):
                    problems.append(f"client {c} command {i}: got {got!r}")
                    return

    threads = [threading.Thread(target=check, args=(c,), daemon=True) for c in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "clients still waiting at the deadline"
    assert problems == []
    _assert_serving(ambassador, bystander)


# -- an absurd multibulk count: refused before anything is allocated -------------------------------


def test_an_absurd_multibulk_count_neither_reserves_memory_nor_freezes_other_clients(
    own_ambassador: Ambassador, raw: Raw
) -> None:
    # No retries: a stall must show, not be waited out by redis-py's reconnect-and-retry.
    other = own_ambassador.client(
        single_connection_client=True, socket_timeout=3, retry=Retry(NoBackoff(), 0)
    )
    assert other.ping() is True
    vm_before = _vm_size(own_ambassador)
    bad = raw(own_ambassador.host, own_ambassador.port)
    bad.send(b"*3000000000\r\n")
    assert bad.read_until_closed() == INVALID_MULTIBULK
    reserved = _vm_size(own_ambassador) - vm_before
    # Ordinary pipelined traffic, as any busy client sends; every round must stay quick.
    worst, stalled = 0.0, ""
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not stalled:
        began = time.monotonic()
        pipe = other.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"protocol-errors:traffic:{i}", b"x" * 100)
        try:
            pipe.execute()
        except redis.TimeoutError as exc:
            stalled = f"no reply within 3 s ({exc})"
        worst = max(worst, time.monotonic() - began)
    assert not stalled and worst < 1.0 and reserved < 2**30, (
        f"a 13-byte request reserved {reserved / 2**30:.1f} GiB of address space; "
        f"slowest round of other traffic {worst:.1f}s {stalled}"
    )


def test_a_protocol_error_is_one_log_line_and_a_flood_of_them_is_cut(
    own_ambassador: Ambassador, raw: Raw
) -> None:
    for _ in range(30):
        conn = raw(own_ambassador.host, own_ambassador.port)
        conn.send(b"*1\r\n$x\r\n")
        conn.read_until_closed()
    deadline = time.monotonic() + 5
    while "client errors:" not in own_ambassador.stderr_text():
        # The summary of the lines left out comes with the next error after the second ends.
        time.sleep(1.1)
        conn = raw(own_ambassador.host, own_ambassador.port)
        conn.send(b"*1\r\n$x\r\n")
        conn.read_until_closed()
        assert time.monotonic() < deadline, "no summary of the client errors left out"
    lines = [line for line in own_ambassador.stderr_text().splitlines() if "Protocol error" in line]
    assert 10 <= len(lines) <= 12, lines  # ten a second at most
    assert re.search(
        r"client 127\.0\.0\.1:\d+ \(id \d+\): Protocol error: invalid bulk length; closing$",
        lines[0],
    ), lines[0]
