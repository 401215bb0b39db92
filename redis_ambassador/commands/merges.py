"""Commands that need more than one node, and how their replies become the one reply Redis gives.

Two shapes, both sans-IO here (the router sends the parts):

- *split*: a multi-key command whose keys span slots (``MGET a b``) becomes one command per slot,
  and the parts' replies are merged back (MGET values in the order asked, counts summed);
- *fan-out*: a whole-keyspace command (``DBSIZE``, ``KEYS``, ``FLUSHALL``, ``SCRIPT LOAD``) goes to
  every master, and the replies are aggregated.

The parts' replies are gathered (routing/fanout.py) and merged here into the one reply.
Merges work on raw reply bytes (RESP2 or RESP3, as the client's lane speaks), so the values the
nodes sent reach the client untouched.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from redis_ambassador.protocol.replies import (
    array,
    bulk,
    bulk_value,
    elements,
    integer,
    mapping,
    verbatim,
)
from redis_ambassador.protocol.requests import encode_command
from redis_ambassador.slots import SLOTS, key_slot

Reply = bytes | bytearray
Merge = Callable[[Sequence[Reply]], Reply]


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
    return array([item for reply in replies for item in elements(reply)])


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
    return array(
        [min(column, key=lambda item: int(item[1:-2])) for column in zip(*columns, strict=True)]
    )


# -- SLOWLOG and LATENCY: every master's records as one server's ---------------------------------


def _int(reply: Reply) -> int:
    """The value of an integer reply (``:42``)."""
    return int(reply[1:-2])


def slowlog_get(limit: int | None) -> Merge:
    """SLOWLOG GET [count]: the masters' entries, newest first by timestamp, at most ``limit``
    (None: all, as ``-1`` asks). Entries keep their node's id: ids are unique per node only."""

    def merge(replies: Sequence[Reply]) -> Reply:
        failed = _first_error(replies)
        if failed is not None:
            return failed
        entries = [entry for reply in replies for entry in elements(reply)]
        entries.sort(key=_slowlog_order, reverse=True)
        return array(entries if limit is None else entries[:limit])

    return merge


def _slowlog_order(entry: bytes) -> tuple[int, int]:
    """(timestamp, id): entries of one node from the same second keep their order."""
    entry_id, timestamp = elements(entry)[:2]
    return _int(timestamp), _int(entry_id)


def latency_latest(replies: Sequence[Reply]) -> Reply:
    """LATENCY LATEST: one ``[event, time, latest, max]`` per event: the latest spike of any
    master, and the worst of all."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    events: dict[bytes, tuple[int, int, int]] = {}
    for reply in replies:
        for entry in elements(reply):
            name, *numbers = elements(entry)
            at, latest, worst = (_int(n) for n in numbers)
            seen = events.get(name)
            if seen is not None:
                if seen[0] > at:
                    at, latest = seen[0], seen[1]
                worst = max(worst, seen[2])
            events[name] = (at, latest, worst)
    return array([array([name, *map(integer, numbers)]) for name, numbers in events.items()])


_LATENCY_SAMPLES = 160  # LATENCY_TS_LEN: the samples Redis keeps per event


def latency_history(replies: Sequence[Reply]) -> Reply:
    """LATENCY HISTORY event: the masters' ``[time, latency]`` samples, oldest first, the worst
    where two nodes sampled the same second; the newest 160, as one server keeps."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    samples: dict[int, int] = {}
    for reply in replies:
        for sample in elements(reply):
            at, latency = (_int(n) for n in elements(sample))
            samples[at] = max(latency, samples.get(at, 0))
    newest = sorted(samples.items())[-_LATENCY_SAMPLES:]
    return array([array([integer(at), integer(latency)]) for at, latency in newest])


def _pairs(reply: Reply) -> list[tuple[bytes, bytes]]:
    """The key/value pairs of a RESP3 map or of a RESP2 flat array of pairs."""
    if reply[:1] == b"%":
        eol = reply.index(b"\r\n")
        reply = b"*%d%b" % (2 * int(reply[1:eol]), reply[eol:])
    items = elements(reply)
    return list(zip(items[::2], items[1::2], strict=True))


def _map(pairs: Sequence[tuple[bytes, bytes]], resp3: bool) -> bytes:
    return mapping([item for pair in pairs for item in pair], 3 if resp3 else 2)


_CALLS = b"$5\r\ncalls\r\n"
_HISTOGRAM = b"$14\r\nhistogram_usec\r\n"


def latency_histogram(replies: Sequence[Reply]) -> Reply:
    """LATENCY HISTOGRAM [command ...]: per command, the masters' calls and histogram buckets
    added up (a map in RESP3, flat pairs in RESP2, as the nodes sent them)."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    resp3 = replies[0][:1] == b"%"
    commands: dict[bytes, tuple[int, dict[int, int]]] = {}
    for reply in replies:
        for name, details in _pairs(reply):
            calls, buckets = commands.get(name, (0, {}))
            for field, value in _pairs(details):
                if field == _CALLS:
                    calls += _int(value)
                elif field == _HISTOGRAM:
                    for bucket, count in _pairs(value):
                        buckets[_int(bucket)] = buckets.get(_int(bucket), 0) + _int(count)
            commands[name] = (calls, buckets)
    return _map(
        [(name, _histogram(calls, buckets, resp3)) for name, (calls, buckets) in commands.items()],
        resp3,
    )


def _histogram(calls: int, buckets: dict[int, int], resp3: bool) -> bytes:
    """One command's entry: ``{calls: N, histogram_usec: {bucket: count, ...}}``."""
    counts = [(integer(bucket), integer(count)) for bucket, count in sorted(buckets.items())]
    return _map([(_CALLS, integer(calls)), (_HISTOGRAM, _map(counts, resp3))], resp3)


def _text(reply: Reply) -> bytes:
    """The text of a bulk or verbatim string reply (``=N\\r\\ntxt:...``)."""
    payload = bulk_value(reply)
    return payload[4:] if reply[:1] == b"=" else payload


def labelled_texts(labels: Sequence[str]) -> Merge:
    """LATENCY DOCTOR: each master's report under a line naming the node, in one text (a
    verbatim string when the nodes sent one: RESP3)."""

    def merge(replies: Sequence[Reply]) -> Reply:
        failed = _first_error(replies)
        if failed is not None:
            return failed
        text = b"\n".join(
            b"# node %s\n%b" % (label.encode(), _text(reply))
            for label, reply in zip(labels, replies, strict=True)
        )
        return verbatim(text, 3 if replies[0][:1] == b"=" else 2)

    return merge


def union(replies: Sequence[Reply]) -> Reply:
    """PUBSUB CHANNELS / SHARDCHANNELS: every node's names, each once."""
    failed = _first_error(replies)
    if failed is not None:
        return failed
    return array(list(dict.fromkeys(item for reply in replies for item in elements(reply))))


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
    return mapping(items, 3 if replies[0][:1] == b"%" else 2)


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
    "slowlog|len": sum_integers,
    "slowlog|reset": all_ok,
    "latency|latest": latency_latest,
    "latency|history": latency_history,
    "latency|histogram": latency_histogram,
    "latency|reset": sum_integers,  # event series reset, counted per node
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


def split_by_slot(name: str, args: list[bytes]) -> tuple[list[tuple[int, bytes]], Merge] | None:
    """One command per slot, each keeping its keys' order, and the merge of their replies;
    None if the command (``name``, lower-case) may not be split, or lacks whole groups."""
    step = SPLITTABLE.get(name)
    if step is None or (len(args) - 1) % step:
        return None
    groups: dict[int, list[int]] = {}  # slot -> indexes of the groups' first argument
    for i in range(1, len(args), step):
        groups.setdefault(key_slot(args[i]), []).append(i)
    parts = [
        (slot, encode_command([args[0], *(a for i in firsts for a in args[i : i + step])]))
        for slot, firsts in groups.items()
    ]
    if name != "mget":
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
    return array(values)


# -- SCAN across masters --------------------------------------------------------------------------


# A client's cursor packs the node's own cursor and the first slot of the node being scanned:
# cursor = node_cursor * 16384 + first_slot. 0 (node cursor 0 on the first node) starts, and is
# returned only once the last node is done.
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
        node_cursor, slot = divmod(value, SLOTS)
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
            value = node_cursor * SLOTS + self.slot
        else:
            value = self._next if self._next is not None else 0
        return array([bulk(b"%d" % value), keys])
