"""Large values through the ambassador: forwarded byte for byte, at a memory cost of their size
once (the exact reader's frame is forwarded as it was read, a large reply as it grew; see
protocol/requests.py and upstream/connection.py), and a large argument anywhere in any command
never trips the ambassador up."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import hiredis
import pytest
from conftest import Ambassador, RawConnection, resp

from redis_ambassador.commands.table import CommandTable
from redis_ambassador.local.cluster import LocalCluster
from redis_ambassador.local.testing import memory_bytes, reset_peak_rss
from redis_ambassador.slots import key_slot

MB = 1024 * 1024
VALUE = 64 * MB
# What a 64 MB value may add to the ambassador's peak RSS: its size once, and half of it again
# for everything else (the measured overhead is under 1 MB). Before the value was forwarded
# without copies it cost three times its size for a SET and twice for a GET.
BOUND = VALUE * 3 // 2
COMMANDS = Path(__file__).parents[1] / "unit" / "data" / "command.resp"


def _value(tag: bytes) -> bytes:
    """VALUE bytes that differ from one place to the next (a shifted copy would show)."""
    block = bytes(range(256)) * 4096  # 1 MB
    return tag + block * (VALUE // len(block)) + tag[::-1]


def _peak_growth(ambassador: Ambassador, action: Callable[[], None]) -> int:
    """The ambassador's peak RSS during ``action``, over its RSS before it."""
    pid = ambassador.process.pid
    reset_peak_rss(pid)
    before = memory_bytes(pid, "VmRSS")
    action()
    return memory_bytes(pid, "VmHWM") - before


def _large(ambassador: Ambassador) -> RawConnection:
    conn = ambassador.raw(timeout=60)
    assert conn.exchange(resp("PING")) == [b"+PONG\r\n"]  # node connections open, warm
    return conn


def _store(cluster: LocalCluster, key: bytes, value: bytes) -> None:
    """Put a value straight into the node that owns the key."""
    node = cluster.master_for_slot(key_slot(key))
    with cluster.client(node) as client:
        client.set(key, value)


@pytest.fixture
def fresh(cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]) -> Ambassador:
    """An ambassador of its own: no heap left over from another test's values."""
    return start_ambassador(cluster)


def test_a_large_set_costs_its_size_once(fresh: Ambassador) -> None:
    key = b"large:set:" + uuid.uuid4().hex.encode()
    value = _value(b"set")
    frame = resp(b"SET", key, value)
    conn = _large(fresh)

    def set_it() -> None:
        assert conn.exchange(frame) == [b"+OK\r\n"]

    growth = _peak_growth(fresh, set_it)
    assert growth <= BOUND, f"a {VALUE // MB} MB SET grew the peak RSS by {growth / MB:.0f} MB"
    assert conn.exchange(resp(b"GET", key), 1) == [b"$%d\r\n%b\r\n" % (len(value), value)]


def test_a_large_get_costs_its_size_once(cluster: LocalCluster, fresh: Ambassador) -> None:
    key = b"large:get:" + uuid.uuid4().hex.encode()
    value = _value(b"get")
    _store(cluster, key, value)
    conn = _large(fresh)
    replies: list[bytes] = []
    growth = _peak_growth(fresh, lambda: replies.extend(conn.exchange(resp(b"GET", key))))
    assert replies == [b"$%d\r\n%b\r\n" % (len(value), value)]
    assert growth <= BOUND, f"a {VALUE // MB} MB GET grew the peak RSS by {growth / MB:.0f} MB"


def test_a_pipelined_large_set_and_get_cost_the_largest_once(
    cluster: LocalCluster, fresh: Ambassador
) -> None:
    """The SET's value is let go when its node answers, before the GET's reply comes: one value
    in memory at a time (both keys are on one node, which answers in order)."""
    tag = b"{large:mix:" + uuid.uuid4().hex.encode() + b"}"
    stored, written = _value(b"stored"), _value(b"written")
    _store(cluster, tag + b"get", stored)
    conn = _large(fresh)
    frames = resp(b"SET", tag + b"set", written) + resp(b"GET", tag + b"get") + resp(b"PING")
    replies: list[bytes] = []
    growth = _peak_growth(fresh, lambda: replies.extend(conn.exchange(frames, 3)))
    assert replies == [b"+OK\r\n", b"$%d\r\n%b\r\n" % (len(stored), stored), b"+PONG\r\n"]
    assert growth <= BOUND, f"SET+GET of {VALUE // MB} MB grew the peak RSS by {growth / MB:.0f} MB"


# -- large arguments, byte for byte -----------------------------------------------------------

# Larger than one read of the ambassador's (256 KB): the command reaches it in pieces, so the
# exact reader reads it and its large arguments are views into the frame.
ARG = 300 * 1024


def test_large_values_take_every_path_byte_for_byte(fresh: Ambassador) -> None:
    """Large values in a pipeline, a transaction, a cross-slot MSET (split by the ambassador),
    a script's argument and a published message, with trailers Redis skips unchecked: each
    arrives exactly."""
    a, b, c = (bytes([i]) * ARG + uuid.uuid4().bytes for i in range(3))
    key = b"large:paths:" + uuid.uuid4().hex.encode()
    conn = fresh.raw(timeout=30)

    sloppy = resp(b"SET", key + b"a", a)[:-2] + b"\n\n"  # Redis skips these two bytes
    conn.send(sloppy + resp(b"GET", key + b"a"))
    assert conn.read_replies(2) == [b"+OK\r\n", b"$%d\r\n%b\r\n" % (len(a), a)]

    conn.send(resp(b"MSET", key + b"x", b, key + b"y", c) + resp(b"MGET", key + b"x", key + b"y"))
    mget = b"*2\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(b), b, len(c), c)
    assert conn.read_replies(2) == [b"+OK\r\n", mget]

    conn.send(
        resp(b"MULTI") + resp(b"SET", key + b"t", c) + resp(b"GET", key + b"t") + resp(b"EXEC")
    )
    exec_reply = b"*2\r\n+OK\r\n$%d\r\n%b\r\n" % (len(c), c)
    assert conn.read_replies(4) == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", exec_reply]

    conn.send(resp(b"EVAL", b"return ARGV[1]", b"0", a))
    assert conn.read_reply() == b"$%d\r\n%b\r\n" % (len(a), a)

    channel = b"large:channel:" + uuid.uuid4().hex.encode()
    with fresh.raw(timeout=30) as subscriber:
        assert subscriber.exchange(resp(b"SUBSCRIBE", channel))[0].startswith(b"*3\r\n")
        conn.send(resp(b"PUBLISH", channel, b))
        assert conn.read_reply() == b":1\r\n"
        message = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
        assert subscriber.read_reply() == message % (len(channel), channel, len(b), b)


def _commands() -> list[list[bytes]]:
    """Every command and subcommand Redis 7 has, with enough arguments for its arity, the
    third on large: at the third place, and at the last when that is another."""
    reader = hiredis.Reader()
    reader.feed(COMMANDS.read_bytes())
    table = CommandTable.from_reply(reader.gets())
    cases = []
    for top in table.specs():
        for spec in (top, *top.subcommands.values()):
            words = [word.encode() for word in spec.name.split("|")]
            size = max(abs(spec.arity), len(words) + 1, 3)
            args = words + [b"{large:args}"] * (size - len(words))
            for at in sorted({max(2, len(words)), size - 1}):
                cases.append([*args[:at], b"7" * ARG, *args[at + 1 :]])
    return cases


def test_a_large_argument_anywhere_in_any_command_is_answered_not_an_exception(
    fresh: Ambassador,
) -> None:
    """Each command (on a connection of its own: some change its state) with a large argument
    from the third place on, where it is a view into the frame: whatever the reply, the
    ambassador raises nothing, keeps serving, and logs no traceback."""
    for args in _commands():
        with fresh.raw(timeout=10) as conn:
            conn.send(resp(*args) + resp(b"PING"))
    with fresh.raw() as conn:
        assert conn.exchange(
            resp(b"SET", b"{large:args}", b"v") + resp(b"GET", b"{large:args}"), 2
        ) == [
            b"+OK\r\n",
            b"$1\r\nv\r\n",
        ]
    assert fresh.process.poll() is None
    log = fresh.stderr_text()
    assert "Traceback" not in log, log[-3000:]
