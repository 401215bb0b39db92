"""Commands that need more than one node, and how their replies become the one reply Redis gives.

Two shapes, both sans-IO here (the router sends the parts):

- *split*: a multi-key command whose keys span slots (``MGET a b``) becomes one command per slot,
  and the parts' replies are merged back (MGET values in the order asked, counts summed);
- *fan-out*: a whole-keyspace command (``DBSIZE``, ``KEYS``, ``FLUSHALL``, ``SCRIPT LOAD``) goes to
  every master, and the replies are aggregated.

A ``Gather`` stands in for a client's batch towards the node connections: the parts' replies
fill it by index, and once all are in, the merge writes the one reply into the client's batch.
Merges work on raw reply bytes (RESP2 or RESP3, as the client's lane speaks), so the values the
nodes sent reach the client untouched.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from redis.crc import key_slot

from redis_ambassador.protocol.replies import bulk_value, elements, integer
from redis_ambassador.protocol.requests import encode_command

if TYPE_CHECKING:
    from redis_ambassador.server.client import Batch

Reply = bytes | bytearray
Merge = Callable[[Sequence[Reply]], Reply]


class Gather:
    """Collects the replies of one command's parts; merges them into the client's batch.

    Node connections treat it as a batch: they set ``replies[i]``, count ``remaining`` down and
    call ``client.batch_complete()`` (so the gather is its own ``client``, with the real
    client's ``lane`` for resends after a redirection).
    """

    __slots__ = ("_batch", "_index", "_merge", "client", "lane", "remaining", "replies")

    def __init__(self, batch: Batch, index: int, parts: int, merge: Merge) -> None:
        self.client = self
        self.lane = batch.client.lane
        self.replies: list[Reply | None] = [None] * parts
        self.remaining = parts
        self._batch = batch
        self._index = index
        self._merge = merge

    def fill(self, index: int, reply: bytes) -> None:
        self.replies[index] = reply
        self.remaining -= 1
        if not self.remaining:
            self.batch_complete()

    def batch_complete(self) -> None:
        self._batch.fill(self._index, bytes(self._merge(self.replies)))  # type: ignore[arg-type]


# -- merges -------------------------------------------------------------------------------------


def _first_error(replies: Sequence[Reply]) -> Reply | None:
    """The first error among the parts' replies: what Redis would have said for the whole."""
    for reply in replies:
        if reply[:1] in (b"-", b"!"):
            return reply
    return None


def sum_integers(replies: Sequence[Reply]) -> Reply:
    """DEL, UNLINK, EXISTS, TOUCH, DBSIZE: the counts added up."""
    return _first_error(replies) or integer(sum(int(r[1:-2]) for r in replies))


def all_ok(replies: Sequence[Reply]) -> Reply:
    """MSET, FLUSHALL, SCRIPT FLUSH, ...: +OK once every part said so."""
    return _first_error(replies) or replies[0]


def any_ok(replies: Sequence[Reply]) -> Reply:
    """SCRIPT KILL / FUNCTION KILL: done if the node running the script stopped it (the others
    say NOTBUSY)."""
    for reply in replies:
        if reply[:1] not in (b"-", b"!"):
            return reply
    return replies[0]


def concat_arrays(replies: Sequence[Reply]) -> Reply:
    """KEYS: every node's keys in one array."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    items = [item for reply in replies for item in elements(reply)]
    return b"*%d\r\n%b" % (len(items), b"".join(items))


def any_value(replies: Sequence[Reply]) -> Reply:
    """RANDOMKEY: a key from a random node that has one (null if none has)."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    found = [r for r in replies if r not in (b"$-1\r\n", b"_\r\n")]
    return random.choice(found) if found else replies[0]


def all_true(replies: Sequence[Reply]) -> Reply:
    """SCRIPT EXISTS: 1 for a script only if every master has it (EVALSHA may go to any)."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    columns = [elements(r) for r in replies]
    items = [min(column, key=lambda item: int(item[1:-2])) for column in zip(*columns, strict=True)]
    return b"*%d\r\n%b" % (len(items), b"".join(items))


def union(replies: Sequence[Reply]) -> Reply:
    """PUBSUB CHANNELS / SHARDCHANNELS: every node's names, each once."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    items = list(dict.fromkeys(item for reply in replies for item in elements(reply)))
    return b"*%d\r\n%b" % (len(items), b"".join(items))


def sum_per_name(replies: Sequence[Reply]) -> Reply:
    """PUBSUB NUMSUB / SHARDNUMSUB: the subscriber counts per channel added up across nodes
    (a flat array in RESP2, a map in RESP3; every node lists the channels asked, in order)."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    columns = [elements(r) for r in replies]
    first = columns[0]
    items = []
    for k in range(0, len(first), 2):
        items += [first[k], integer(sum(int(column[k + 1][1:-2]) for column in columns))]
    count = len(items) // 2 if replies[0][:1] == b"%" else len(items)
    return b"%b%d\r\n%b" % (replies[0][:1], count, b"".join(items))


# Whole-keyspace commands sent to every master, by command name as the table names them.
FANOUT: dict[str, Merge] = {
    "dbsize": sum_integers,
    "keys": concat_arrays,
    "randomkey": any_value,
    "flushdb": all_ok,
    "flushall": all_ok,
    "script|load": all_ok,
    "script|exists": all_true,
    "script|flush": all_ok,
    "script|kill": any_ok,
    "function|load": all_ok,
    "function|delete": all_ok,
    "function|flush": all_ok,
    "function|restore": all_ok,
    "function|kill": any_ok,
    # Subscribers may be connected to any node: ask them all.
    "pubsub|channels": union,
    "pubsub|shardchannels": union,
    "pubsub|numpat": sum_integers,
    "pubsub|numsub": sum_per_name,
    "pubsub|shardnumsub": sum_per_name,
}


# -- splits -------------------------------------------------------------------------------------

# Multi-key commands that may be split by slot, and keys per group (MSET: key, value).
# MSETNX is not here: split, it could set some keys and not others.
SPLITTABLE: dict[str, int] = {"mget": 1, "mset": 2, "del": 1, "unlink": 1, "exists": 1, "touch": 1}


def split_by_slot(args: list[bytes], step: int) -> tuple[list[tuple[int, bytes]], Merge]:
    """One command per slot, each keeping its keys' order, and the merge of their replies.

    ``args`` must have whole groups (the caller checked the arity).
    """
    groups: dict[int, list[int]] = {}  # slot -> indexes of the groups' first argument
    for i in range(1, len(args), step):
        groups.setdefault(key_slot(args[i]), []).append(i)
    name = args[0]
    parts = [
        (slot, encode_command([name, *(a for i in firsts for a in args[i : i + step])]))
        for slot, firsts in groups.items()
    ]
    if name.lower() != b"mget":
        return parts, all_ok if step == 2 else sum_integers
    order = [(i - 1) // step for firsts in groups.values() for i in firsts]
    return parts, lambda replies: _in_order(replies, order)


def _in_order(replies: Sequence[Reply], order: list[int]) -> Reply:
    """MGET: the parts' values put back where their keys were asked."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    values: list[Reply] = [b""] * len(order)
    at = iter(order)
    for reply in replies:
        for value in elements(reply):
            values[next(at)] = value
    return b"*%d\r\n%b" % (len(values), b"".join(values))


# -- SCAN across masters --------------------------------------------------------------------------

# A client's cursor packs the node's own cursor and the first slot of the node being scanned:
# cursor = node_cursor * 16384 + first_slot. 0 (node cursor 0 on the first node) starts, and is
# returned only once the last node is done.
_SLOTS = 16384


def _strtoul(text: bytes) -> int | None:
    """The cursor as Redis reads it (strtoul, whole string, no leading space): an optional sign,
    digits below 2**64 ("-1" wraps around, "" is 0); None if Redis says "invalid cursor"."""
    digits = text[1:] if text[:1] in (b"+", b"-") else text
    if not text:
        return 0
    if not (digits.isascii() and digits.isdigit()):
        return None
    value = int(digits)
    if value >= 2**64:
        return None
    return (-value) % 2**64 if text[:1] == b"-" else value


class ScanPlan:
    """Where a SCAN with the client's cursor goes, and how the node's reply is re-cursored.

    ``starts`` are the first slots of the masters' slot ranges, ascending: the order in which
    nodes are walked. A slot, not a node address, names the node, so a failover mid-scan carries
    on at the promoted replica.
    """

    def __init__(self, starts: list[int], cursor: bytes) -> None:
        self.valid = False
        value = _strtoul(cursor)
        if value is None or not starts:
            return
        node_cursor, slot = divmod(value, _SLOTS)
        if value == 0:
            slot = starts[0]
        self.valid = True
        self.slot = slot
        self.node_cursor = node_cursor
        later = [s for s in starts if s > slot]
        self._next = later[0] if later else None

    def request(self, args: list[bytes]) -> bytes:
        """The command for the node: the client's, with the node's own cursor."""
        return encode_command([args[0], b"%d" % self.node_cursor, *args[2:]])

    def merge(self, replies: Sequence[Reply]) -> Reply:
        (reply,) = replies
        if reply[:1] in (b"-", b"!"):
            return reply
        cursor, keys = elements(reply)
        node_cursor = int(bulk_value(cursor))
        if node_cursor:
            value = node_cursor * _SLOTS + self.slot
        else:
            value = self._next if self._next is not None else 0
        text = b"%d" % value
        return b"*2\r\n$%d\r\n%b\r\n%b" % (len(text), text, keys)
