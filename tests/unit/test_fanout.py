"""Splitting multi-key commands by slot and merging the parts' replies (sans-IO)."""

from __future__ import annotations

import hiredis
import pytest
from redis.crc import key_slot

from redis_ambassador.commands.merges import (
    FANOUT,
    ScanPlan,
    all_true,
    concat_arrays,
    split_by_slot,
    sum_integers,
)


def decode(frame: bytes) -> list[bytes]:
    reader = hiredis.Reader()
    reader.feed(frame)
    return reader.gets()


def test_mget_is_split_per_slot_and_values_come_back_in_the_order_asked() -> None:
    keys = [b"a", b"b", b"{a}x", b"c", b"a"]  # a and {a}x share a slot; a is asked twice
    parts, merge = split_by_slot("mget", [b"MGET", *keys])
    by_slot = {slot: decode(frame) for slot, frame in parts}
    assert by_slot[key_slot(b"a")] == [b"MGET", b"a", b"{a}x", b"a"]
    assert set(by_slot) == {key_slot(k) for k in keys}
    # Each part answers its keys' values, as its node would; the merge restores the order.
    values = {b"a": b"$2\r\nva\r\n", b"b": b"$-1\r\n", b"{a}x": b"$2\r\nvx\r\n", b"c": b"_\r\n"}
    replies = [
        b"*%d\r\n" % (len(args) - 1) + b"".join(values[k] for k in args[1:])
        for args in (decode(frame) for _, frame in parts)
    ]
    assert merge(replies) == b"*5\r\n" + b"".join(values[k] for k in keys)


def test_mset_is_split_in_key_value_pairs_and_answers_ok_or_the_first_error() -> None:
    parts, merge = split_by_slot("mset", [b"MSET", b"a", b"1", b"b", b"2", b"a", b"3"])
    commands = sorted(decode(frame) for _, frame in parts)
    assert commands == [[b"MSET", b"a", b"1", b"a", b"3"], [b"MSET", b"b", b"2"]]
    assert merge([b"+OK\r\n", b"+OK\r\n"]) == b"+OK\r\n"
    oom = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    assert merge([b"+OK\r\n", oom]) == oom


@pytest.mark.parametrize("name", [b"DEL", b"UNLINK", b"EXISTS", b"TOUCH"])
def test_counting_commands_add_up_their_parts(name: bytes) -> None:
    parts, merge = split_by_slot(name.decode().lower(), [name, b"a", b"b", b"c"])
    assert len(parts) == 3
    assert merge([b":1\r\n", b":0\r\n", b":2\r\n"]) == b":3\r\n"


def test_what_cannot_be_split_is_none() -> None:
    assert split_by_slot("mset", [b"MSET", b"a", b"1", b"b"]) is None  # a key without value
    assert split_by_slot("msetnx", [b"MSETNX", b"a", b"1", b"b", b"2"]) is None


def test_keys_concatenates_every_nodes_array_untouched() -> None:
    merged = concat_arrays([b"*2\r\n$1\r\na\r\n$2\r\nbb\r\n", b"*0\r\n", b"*1\r\n$0\r\n\r\n"])
    assert merged == b"*3\r\n$1\r\na\r\n$2\r\nbb\r\n$0\r\n\r\n"
    assert FANOUT["keys"] is concat_arrays
    assert FANOUT["dbsize"] is sum_integers


def test_script_exists_says_yes_only_where_every_master_has_the_script() -> None:
    assert all_true([b"*2\r\n:1\r\n:1\r\n", b"*2\r\n:1\r\n:0\r\n"]) == b"*2\r\n:1\r\n:0\r\n"


def test_randomkey_prefers_a_node_that_has_keys_and_is_null_when_none_has() -> None:
    merge = FANOUT["randomkey"]
    assert merge([b"$-1\r\n", b"$1\r\nk\r\n", b"$-1\r\n"]) == b"$1\r\nk\r\n"
    assert merge([b"_\r\n", b"_\r\n"]) == b"_\r\n"


def scan_reply(cursor: bytes, *keys: bytes) -> bytes:
    items = b"".join(b"$%d\r\n%b\r\n" % (len(k), k) for k in keys)
    return b"*2\r\n$%d\r\n%b\r\n*%d\r\n%b" % (len(cursor), cursor, len(keys), items)


def test_scan_cursor_walks_the_nodes_by_the_first_slot_of_each() -> None:
    starts = [0, 5461, 10923]
    plan = ScanPlan(starts, b"0")
    assert (plan.slot, plan.node_cursor) == (0, 0)
    assert decode(plan.request([b"SCAN", b"0", b"MATCH", b"u:*"])) == [
        b"SCAN",
        b"0",
        b"MATCH",
        b"u:*",
    ]
    # The node is not done: its cursor travels with its first slot.
    merged = plan.merge([scan_reply(b"7", b"k1")])
    assert merged == scan_reply(b"%d" % (7 * 16384), b"k1")
    plan = ScanPlan(starts, b"%d" % (7 * 16384))
    assert (plan.slot, plan.node_cursor) == (0, 7)
    # The node is done: the next node starts with its own cursor 0.
    assert plan.merge([scan_reply(b"0", b"k2")]) == scan_reply(b"5461", b"k2")
    plan = ScanPlan(starts, b"5461")
    assert (plan.slot, plan.node_cursor) == (5461, 0)
    # The last node done: cursor 0 ends the scan.
    last = ScanPlan(starts, b"%d" % (3 * 16384 + 10923))
    assert last.merge([scan_reply(b"0")]) == scan_reply(b"0")


# Observed on redis-server 7.0.15 (SCAN parses its cursor with strtoul).
@pytest.mark.parametrize("cursor", [b"x", b" 1", b"1 ", b"1.5", b"18446744073709551616", b"-"])
def test_scan_cursor_that_redis_would_not_parse_is_invalid(cursor: bytes) -> None:
    assert not ScanPlan([0, 8192], cursor).valid


@pytest.mark.parametrize("cursor", [b"", b"-0", b"+0", b"18446744073709551615", b"-1"])
def test_scan_cursor_that_redis_accepts_is_valid(cursor: bytes) -> None:
    assert ScanPlan([0, 8192], cursor).valid


def test_scan_error_from_the_node_is_forwarded() -> None:
    plan = ScanPlan([0], b"0")
    assert plan.merge([b"-ERR syntax error\r\n"]) == b"-ERR syntax error\r\n"
