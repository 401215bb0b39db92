"""Client isolation, proved by difference: hostile clients send every command of the cluster's
``COMMAND`` table (and the hostile sequences below) through the ambassador and, in lockstep, to a
plain redis-server; each reply is compared with Redis's, while a well-behaved client in a process
of its own times every round trip of a checked workload, and the ambassador's circuit breakers,
its node connections and the nodes' own statistics are watched.

"One client can never harm another": a command on a shared node connection can neither change
that connection's state nor make the node close it. What must hold (the fix's expectations):

* ``POST`` and ``Host:`` as a command name (any case, inline or RESP, in any state): the client is
  closed at once and gets nothing more; nothing it sent after runs; no node ever sees it.
* A command the cluster does not know, an unknown subcommand, a wrong arity: Redis's exact text.
* Every command that sets connection state is emulated per client, sent on the client's own
  connection (subscriptions, blocking, WATCH), or refused in the ambassador's words; never sent
  on a shared connection.
* Everything else gets a reply of the same type as Redis's (errors: the same code word), but for
  the differences listed in ``BY_DESIGN``, each recognised by its exact wording and reason.

A session is one hostile client: a pair of connections (ambassador, Redis) and a seeded sequence
of commands, each sent to the ambassador first; a reply that is a by-design refusal is not sent
to Redis (so both stay in the same state), anything else is sent to Redis and the two replies are
compared. Keys, channels and script names live in the session's own namespace, so differences
cannot spread between sessions. How many replies a command owes (none under CLIENT REPLY OFF,
one per channel for SUBSCRIBE, ...) is modelled on Redis's behaviour and checked against it.

Used by ``test_isolation.py`` (a short run, and the regression tests) and ``scripts/fuzz-isolation``
(a long run against a cluster and ambassador of its own)::

    scripts/fuzz-isolation [--seed N] [--sessions N] [--connections N] [--rate N]

``python isolation.py well-behaved HOST PORT TOKEN`` is the well-behaved client's process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hiredis
import redis
from conftest import RawConnection, reply_end, resp
from redis.crc import key_slot

from redis_ambassador.config import DEFAULT_DENIED

if TYPE_CHECKING:
    from conftest import Ambassador

    from redis_ambassador.local.cluster import LocalCluster

Address = tuple[str, int]
Args = list[bytes]

# -- the command table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One command or subcommand of the cluster's COMMAND table, with its COMMAND DOCS arguments."""

    name: str  # "get", "client|reply"
    arity: int
    flags: frozenset[str]
    categories: frozenset[str]
    arguments: tuple[dict[str, Any], ...]
    subcommands: tuple[str, ...]  # of a container ("client"): its subcommands' names

    @property
    def base(self) -> str:
        return self.name.split("|", 1)[0]

    @property
    def words(self) -> Args:
        """The command's name as sent: one word, or two for a subcommand."""
        return [w.encode() for w in self.name.split("|")]


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _argument(flat: Sequence[Any]) -> dict[str, Any]:
    """A COMMAND DOCS argument as a dict of str (its nested ``arguments`` converted too)."""
    doc = _pairs(flat)
    out: dict[str, Any] = {
        key: value.decode() if isinstance(value, bytes) else value for key, value in doc.items()
    }
    out["flags"] = frozenset(f.decode() for f in doc.get("flags", []))
    out["arguments"] = tuple(_argument(a) for a in doc.get("arguments", []))
    return out


def query(address: Address, *args: str) -> Any:
    """One command to a server, its reply decoded by hiredis (bytes; RESP2)."""
    with RawConnection(*address, timeout=10) as conn:
        raw = conn.exchange(resp(*args))[0]
    reader = hiredis.Reader()
    reader.feed(raw)
    return reader.gets()


class Catalog:
    """Every command and subcommand the cluster knows, from a node's COMMAND and COMMAND DOCS."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = {entry.name: entry for entry in entries}
        self.names = sorted(self.entries)
        # The commands that set connection state, as the fix derives them: ACL categories
        # @connection and @transaction, the subscribe-type pub/sub commands, and the
        # replication handshake (MONITOR, SYNC, PSYNC, REPLCONF).
        self.state_commands = frozenset(
            name
            for name, entry in self.entries.items()
            if not entry.subcommands
            and (
                entry.categories & {"@connection", "@transaction"}
                or ("pubsub" in entry.flags and name.endswith("subscribe"))
                or name in ("monitor", "sync", "psync", "replconf")
            )
        )

    @classmethod
    def fetch(cls, node: Address) -> Catalog:
        table = query(node, "COMMAND")
        docs = _pairs(query(node, "COMMAND", "DOCS"))
        entries: list[Entry] = []

        def add(info: list[Any], doc: dict[str, Any]) -> None:
            name = info[0].decode().lower()
            subs = info[9] if len(info) > 9 else []
            entries.append(
                Entry(
                    name=name,
                    arity=int(info[1]),
                    flags=frozenset(f.decode() for f in info[2]),
                    categories=frozenset(c.decode() for c in info[6]),
                    arguments=tuple(_argument(a) for a in doc.get("arguments", [])),
                    subcommands=tuple(s[0].decode().lower() for s in subs),
                )
            )
            sub_docs = _pairs(doc.get("subcommands", []))
            for sub in subs:
                add(sub, _pairs(sub_docs.get(sub[0].decode(), [])))

        for info in table:
            add(info, _pairs(docs.get(info[0].decode(), [])))
        return cls(entries)

    def lookup(self, args: Args) -> Entry | None:
        """The entry a command resolves to (a container's subcommand's), as Redis finds it."""
        entry = self.entries.get(args[0].decode("latin-1").lower())
        if entry is not None and entry.subcommands and len(args) > 1:
            return self.entries.get(f"{entry.name}|{args[1].decode('latin-1').lower()}")
        return entry


# -- what must match, and the differences by design -----------------------------------------------


def _names(text: str) -> frozenset[str]:
    """Command names (``client|kill`` for a subcommand), separated by spaces."""
    return frozenset(text.split())


# Replies that must be byte for byte Redis's, whatever the command.
_EXACT_ERRORS = (
    b"-ERR unknown command ",
    b"-ERR unknown subcommand ",
    b"-ERR wrong number of arguments ",
)
# Deterministic replies of commands the ambassador answers itself: Redis's, byte for byte.
_EXACT_REPLIES = _names(
    "ping echo select reset multi discard unwatch watch quit auth client|getname "
    "client|setname client|reply client|no-evict"
)
# Replies that describe the server rather than the client's data, so the cluster and the plain
# server legitimately differ: compared by type only (a nil counts as a string: RANDOMKEY).
_SERVER_SPECIFIC = (
    "info", "client|list", "client|info", "client|id", "hello", "time", "randomkey", "lastsave",
    "dbsize", "keys", "scan", "lolwut", "role", "debug", "memory", "latency", "slowlog",
    "config|get", "command", "pubsub", "object|freq", "object|idletime", "function|list",
    "function|stats", "function|dump", "cluster", "module",
)  # fmt: skip
# Commands whose keys a split may spread over several slots (commands.split_cross_slot, on by
# default): CROSSSLOT for them, outside a transaction, is a defect.
# What the ambassador splits by slot, and how many arguments make one key's part (MSET: key and
# value); with arguments left over it cannot, and says CROSSSLOT as a cluster node does.
_SPLITTABLE = {"mget": 1, "mset": 2, "del": 1, "unlink": 1, "exists": 1, "touch": 1}
# Commands the ambassador refuses because they act on one node of the cluster only: they are
# not connection state, and the refusal is documented (commands/local.py REFUSED, CLUSTER's).
_ONE_NODE = _names(
    "shutdown failover replicaof slaveof save bgsave bgrewriteaof swapdb move module acl "
    "cluster script|debug waitaof"
)
# Never sent to the reference server, whatever the ambassador answers: they would stop, pause,
# flush, reconfigure or re-role it under the other sessions (the ambassador must refuse them).
_NEVER_TO_REDIS = _names(
    "flushall flushdb debug shutdown failover replicaof slaveof sync psync replconf save "
    "bgsave bgrewriteaof swapdb module migrate config|set config|resetstat config|rewrite "
    "script|flush script|debug function|flush client|kill client|pause client|unpause "
    "client|unblock acl|setuser acl|deluser acl|load acl|save acl|log"
)
_CLUSTER_ONLY = frozenset(["cluster", "readonly", "readwrite", "asking"])
# State commands that change nothing when a transaction runs them (or that Redis refuses then):
# any others, queued by Redis, change the connection at EXEC (SELECT, CLIENT REPLY, HELLO,
# SUBSCRIBE, ...), so the ambassador must not queue them on a shared connection's transaction.
_INERT_IN_EXEC = _names(
    "ping echo unwatch monitor readonly readwrite asking wait client|getname client|id "
    "client|info client|list client|help client|trackinginfo client|getredir command "
    "command|count command|docs command|getkeys command|getkeysandflags command|help "
    "command|info command|list exec discard multi watch quit reset sync psync"
)
_SUBSCRIBE = frozenset(["subscribe", "psubscribe", "ssubscribe"])
_UNSUBSCRIBE = {
    "unsubscribe": "subscribe",
    "punsubscribe": "psubscribe",
    "sunsubscribe": "ssubscribe",
}
# Sent to Redis in a transaction in place of a command the ambassador refused at queue time:
# an unknown command, which makes Redis's EXEC abort as the ambassador's will.
_STAND_IN = resp("ISOLATION-STAND-IN")


@dataclass(frozen=True)
class Rule:
    """A difference from Redis by design: the ambassador's reply (one error) matches ``pattern``
    and ``applies`` says the command is one it is meant for (so it never hides a defect)."""

    name: str
    pattern: re.Pattern[bytes]
    applies: Callable[[Command, SessionState, re.Match[bytes]], bool]
    reason: str


def _named(match: re.Match[bytes], command: Command) -> bool:
    """The command the refusal names is the one sent (``client kill``, ``client|kill``; a
    command without subcommands in the table may be named with its first argument, as the
    policy names ``debug|sleep``)."""
    named = match.group("name").decode("latin-1").lower().replace(" ", "|")
    return named in (command.name, command.base) or (
        command.name == command.base and named.split("|", 1)[0] == command.base
    )


def _denied(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    named = match.group("name").decode("latin-1").lower()
    return _named(match, command) and (
        named in DEFAULT_DENIED or named.split("|", 1)[0] in DEFAULT_DENIED
    )


def _refusable(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    return _named(match, command) and (
        command.name in state.state_commands
        or command.base in _ONE_NODE
        or command.name in _ONE_NODE
    )


def _cross_slot(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    slots = {key_slot(key) for key in command.redis_keys or ()}
    if state.multi:
        slots |= state.multi_slots
    if state.multi or command.base == "watch":
        slots |= state.watch_slots
    step = _SPLITTABLE.get(command.base)
    if step is not None and not state.multi and (len(command.args) - 1) % step == 0:
        return False
    return len(slots) > 1


def _select(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    if command.base != "select" or len(command.args) != 2:
        return False
    try:
        return int(command.args[1]) != 0
    except ValueError:
        return False


def _not_queued(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    # In a transaction: commands the ambassador answers itself or sends to a connection of the
    # client's own, and commands without keys that need every node (DBSIZE, KEYS, SCRIPT ...).
    return (
        state.multi
        and _named(match, command)
        and (
            command.name in state.state_commands
            or command.base in _ONE_NODE
            or not command.redis_keys
        )
    )


def _newer_client_subcommand(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    return (
        command.base == "client"
        and len(command.args) > 1
        and (bytes(command.args[1]).lower() in (b"setinfo", b"no-touch", b"maint_notifications"))
    )


def _sort_pattern(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    return command.base in ("sort", "sort_ro")


def _copy_db(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    return command.base == "copy" and any(a.lower() == b"db" for a in command.args[3:])


def _script_keys(command: Command, state: SessionState, match: re.Match[bytes]) -> bool:
    return command.base in ("eval", "eval_ro", "evalsha", "evalsha_ro", "fcall", "fcall_ro")


BY_DESIGN: tuple[Rule, ...] = (
    Rule(
        "command policy",
        re.compile(rb"^-NOPERM redis-ambassador's command policy denies '(?P<name>[^']+)' "
                   rb"\(commands\.deny\); "),
        _denied,
        "serve's default command policy (commands.deny) refuses commands that act on the whole "
        "cluster: FLUSHALL, CONFIG SET, DEBUG, MIGRATE, ...",
    ),
    Rule(
        "refused",
        re.compile(rb"^-ERR redis-ambassador does not support '(?P<name>[^']+)': "),
        _refusable,
        "a command that sets connection state the ambassador does not emulate (WAIT, SYNC, "
        "CLIENT TRACKING, ...), or acts on one node of the cluster only (SHUTDOWN, SAVE, ...)",
    ),
    Rule(
        "cross-slot",
        re.compile(rb"^-CROSSSLOT Keys in request don't hash to the same slot\r\n\Z"),
        _cross_slot,
        "Redis Cluster: the keys of one command (or one transaction, or WATCH) must share a slot, "
        "but for the commands the ambassador splits",
    ),
    Rule(
        "select",
        re.compile(rb"^-ERR SELECT is not allowed in cluster mode\r\n\Z"),
        _select,
        "Redis Cluster has database 0 only",
    ),
    Rule(
        "not queued",
        re.compile(rb"^-ERR redis-ambassador cannot queue '(?P<name>[^']+)' in a transaction: "),
        _not_queued,
        "a transaction runs on one node's shared connection: what the ambassador answers "
        "itself, or needs every node or a connection of the client's own, cannot be part of it",
    ),
    Rule(
        "newer CLIENT subcommands",
        re.compile(rb"^[+-]"),
        _newer_client_subcommand,
        "client libraries send CLIENT SETINFO (Redis 7.2), NO-TOUCH and MAINT_NOTIFICATIONS at "
        "connect: the ambassador answers them as the Redis that added them, whatever the nodes'",
    ),
    Rule(
        "sort pattern",
        re.compile(rb"^-ERR (BY|GET) option of SORT denied in Cluster mode"),
        _sort_pattern,
        "Redis Cluster: SORT's BY/GET patterns may name keys in other slots",
    ),
    Rule(
        "copy db",
        re.compile(rb"^-ERR Copying to another database is not allowed in cluster mode\r\n\Z"),
        _copy_db,
        "Redis Cluster has database 0 only",
    ),
    Rule(
        "script keys",
        re.compile(rb"^-ERR .*(non local key|Cross slot keys)"),
        _script_keys,
        "Redis Cluster: a script may only touch keys of the node it runs on",
    ),
)  # fmt: skip
# Redis's own refusal of what the ambassador answers as the one-node cluster it presents.
_CLUSTER_DISABLED = b"-ERR This instance has cluster support disabled\r\n"


def _by_design(command: Command, state: SessionState, got: Got) -> Rule | None:
    if len(got.replies) != 1 or got.closed:
        return None
    reply = got.replies[0]
    for rule in BY_DESIGN:
        match = rule.pattern.match(reply)
        if match is not None and rule.applies(command, state, match):
            return rule
    return None


# -- replies --------------------------------------------------------------------------------------


def _kind(reply: bytes) -> str:
    """The RESP type of a reply; nils of either protocol are one type."""
    if reply in (b"$-1\r\n", b"*-1\r\n") or reply[:1] == b"_":
        return "nil"
    return "-" if reply[:1] == b"!" else reply[:1].decode("latin-1")


def _code(reply: bytes) -> bytes:
    """An error's code word (ERR, WRONGTYPE, NOPERM, ...)."""
    if reply[:1] == b"!":
        reply = b"-" + reply.split(b"\r\n", 2)[1]
    return reply[1:].split(b" ", 1)[0].split(b"\r", 1)[0]


def _parse(reply: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(reply)
    return reader.gets()


_MESSAGES = (b"3\r\n$7\r\nmessage\r\n", b"4\r\n$8\r\npmessage\r\n", b"3\r\n$8\r\nsmessage\r\n")
_INVALIDATE = b">2\r\n$10\r\ninvalidate\r\n"


def _is_message(reply: bytes, subscribed: bool) -> bool:
    """A published message (or a tracking invalidation): a push in RESP3 (at any time), an
    array in RESP2 subscribed mode (``subscribed``). They come when the server delivers them,
    not as a command's reply."""
    if reply[:1] == b">" or (subscribed and reply[:1] == b"*"):
        return reply[1:].startswith(_MESSAGES) or reply.startswith(_INVALIDATE)
    return False


@dataclass
class Got:
    """What a server sent for one command: its replies, and whether it closed the connection."""

    replies: list[bytes] = field(default_factory=list)
    closed: bool = False
    timed_out: bool = False
    extra: bytes = b""  # bytes after a close was expected

    def show(self) -> str:
        text = " ".join(repr(r[:300]) for r in self.replies) or "(no reply)"
        if self.extra:
            text += f" then {self.extra[:300]!r}"
        if self.closed:
            text += " [closed]"
        if self.timed_out:
            text += " [timed out]"
        return text


CLOSE = -1  # a command after which the server must close without a reply


class Peer:
    """One connection of a session, read reply by reply (RESP2 and RESP3)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buf = b""
        self.messages = 0  # published messages set aside

    @classmethod
    async def open(cls, address: Address) -> Peer:
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    async def exchange(self, data: bytes, owed: int, timeout: float, subscribed: bool) -> Got:
        """Send ``data``; read ``owed`` replies (one if the first is an error: Redis answers a
        failing command with one error), or until the peer closes (``CLOSE``)."""
        got = Got()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError):
            got.closed = True
            return got
        deadline = time.monotonic() + timeout
        while True:
            while self._buf and (owed == CLOSE or len(got.replies) < owed):
                end = reply_end(self._buf)
                if end < 0:
                    break
                reply, self._buf = self._buf[:end], self._buf[end:]
                if _is_message(reply, subscribed):
                    self.messages += 1
                    continue
                got.replies.append(reply)
            if owed == CLOSE and (got.replies or self._buf):
                got.extra, self._buf = self._buf, b""
                return got  # a reply where Redis closes: no need to wait for the close
            if owed != CLOSE and (
                len(got.replies) >= owed or (got.replies[:1] and _kind(got.replies[0]) == "-")
            ):
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                got.timed_out = True
                return got
            try:
                chunk = await asyncio.wait_for(self._reader.read(1 << 16), left)
            except TimeoutError:
                got.timed_out = True
                return got
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                got.closed = True
                got.extra, self._buf = self._buf, b""
                return got
            self._buf += chunk

    def close(self) -> None:
        self._writer.transport.abort()


# -- a session's namespace and state --------------------------------------------------------------

# Hash tags that put a session's keys in a few slots, the same in every run, across the masters:
# a multi-key command is in one slot or several depending on which of its keys it names.
_TAGS = [f"{{i{i}}}" for i in range(12)]
_SCRIPTS = [
    b"return 1",
    b"return redis.call('GET', KEYS[1])",
    b"return redis.call('SET', KEYS[1], ARGV[1])",
    b"return redis.call('INCR', KEYS[1])",
    b"return {1, 'two', {3}}",
    b"return redis.error_reply('ISOERR from a script')",
    b"return redis.status_reply('FINE')",
    b"return redis.call('PING')",
    b"return redis.pcall('ISOLATION-NO-SUCH-COMMAND')",
    b"return redis.call('CLIENT', 'SETNAME', 'fromscript')",
    b"#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])",
    b"this is not lua",
]


@dataclass
class Namespace:
    """A session's keys, channels, patterns and function names: ``token`` (unique to a run)
    keeps runs apart on a cluster that outlives them; the hash tags fix the slots."""

    token: str
    session: int
    tags: list[str]

    @property
    def prefix(self) -> bytes:
        return f"{self.token}.{self.session}.".encode()

    def key(self, i: int) -> bytes:
        return self.tags[i % len(self.tags)].encode() + self.prefix + b"k%d" % i

    def channel(self, i: int) -> bytes:
        return self.prefix + b"c%d" % i

    def shard_channel(self, i: int) -> bytes:
        return self.tags[i % len(self.tags)].encode() + self.prefix + b"s%d" % i

    def pattern(self, rng: random.Random) -> bytes:
        return rng.choice([self.prefix + b"*", b"*" + self.prefix + b"k?", self.prefix + b"c[01]"])

    @property
    def library(self) -> bytes:
        return f"L{self.token}_{self.session}".encode()

    @property
    def function(self) -> bytes:
        return f"F{self.token}_{self.session}".encode()


@dataclass
class SessionState:
    """What Redis's replies so far say about the session's connection (the reply model)."""

    state_commands: frozenset[str]
    protocol: int = 2
    reply: str = "on"  # CLIENT REPLY: on, off, or skip (the next command's reply)
    multi: bool = False
    multi_slots: set[int] = field(default_factory=set)
    watch_slots: set[int] = field(default_factory=set)
    subscriptions: dict[str, set[bytes]] = field(
        default_factory=lambda: {kind: set() for kind in _SUBSCRIBE}
    )
    scripts: list[bytes] = field(default_factory=list)  # sha1s this session loaded
    db: int = 0
    closed: bool = False
    monitoring: bool = False

    @property
    def subscribed(self) -> bool:
        return any(self.subscriptions.values())

    @property
    def subscribed_resp2(self) -> bool:
        """In RESP2 subscribed mode, where messages come as arrays."""
        return self.protocol == 2 and self.subscribed

    def describe(self) -> str:
        """The connection's state where it is not a fresh one's."""
        parts = [f"RESP{self.protocol}"] if self.protocol != 2 else []
        parts += ["in MULTI"] if self.multi else []
        parts += ["watching"] if self.watch_slots else []
        parts += [f"CLIENT REPLY {self.reply.upper()}"] if self.reply != "on" else []
        parts += [f"{k}d" for k, channels in self.subscriptions.items() if channels]
        parts += [f"db {self.db}"] if self.db else []
        return ", ".join(parts) or "fresh"

    def changed_by_exec(self, command: Command) -> bool:
        """A command Redis would queue now and that would change the connection at EXEC."""
        return (
            self.multi
            and command.name in self.state_commands
            and command.name not in _INERT_IN_EXEC
        )

    def reset(self) -> None:
        """RESET: a fresh connection's state (the scripts stay loaded: they are the server's)."""
        self.protocol, self.reply, self.multi, self.db = 2, "on", False, 0
        self.multi_slots, self.watch_slots = set(), set()
        for channels in self.subscriptions.values():
            channels.clear()

    def _client_reply(self, command: Command) -> bytes | None:
        """CLIENT REPLY's mode, when Redis would apply it now."""
        args = command.args
        if command.name != "client|reply" or len(args) != 3 or self.multi:
            return None
        mode = args[2].lower()
        if mode not in (b"on", b"off", b"skip"):
            return None
        if self.subscribed_resp2:
            return None
        return mode

    def owed(self, command: Command) -> int:
        """How many replies Redis sends for ``command`` now, or CLOSE."""
        if command.cross_protocol:
            return CLOSE
        mode = self._client_reply(command)
        if mode is not None:
            return 1 if mode == b"on" else 0
        base = command.base
        if base == "reset":
            return 0 if self.reply == "skip" else 1
        if self.reply != "on":
            return 0
        if self.multi and base not in ("exec", "discard", "multi", "watch", "quit", "reset"):
            return 1
        channels = len(command.args) - 1
        if base in _SUBSCRIBE:
            return max(1, channels)
        if base in _UNSUBSCRIBE:
            return channels or max(1, len(self.subscriptions[_UNSUBSCRIBE[base]]))
        return 1

    def advance(self, command: Command, got: Got) -> None:
        """Apply what ``command`` did, as Redis's replies (``got``) tell."""
        if got.closed:
            self.closed = True
            return
        mode = self._client_reply(command)
        if mode is not None:
            self.reply = mode.decode()
            return
        if self.reply == "skip":
            self.reply = "on"
        base = command.base
        first = got.replies[0] if got.replies else b""
        if base == "reset" and first in (b"+RESET\r\n", b""):
            self.reset()
            return
        if base == "quit" and first == b"+OK\r\n":
            self.closed = True
            return
        failed = _kind(first) == "-"
        if self.multi:
            # EXEC ends a transaction whatever it answers (a wrong arity too: EXECABORT);
            # DISCARD only when it is accepted.
            if base == "exec" or (base == "discard" and first == b"+OK\r\n"):
                self.multi = False
                self.watch_slots.clear()
            elif first == b"+QUEUED\r\n":
                self.multi_slots |= {key_slot(k) for k in command.redis_keys or ()}
            return
        if base == "multi" and first == b"+OK\r\n":
            self.multi = True
            self.multi_slots = set(self.watch_slots)
        elif base in ("exec", "unwatch") and not failed:
            self.watch_slots.clear()
        elif base == "watch" and not failed:
            self.watch_slots |= {key_slot(k) for k in command.redis_keys or ()}
        elif base == "select" and not failed:
            self.db = int(command.args[1])
        elif base == "hello" and not failed and len(command.args) > 1:
            self.protocol = int(command.args[1])
        elif base == "monitor" and first == b"+OK\r\n":
            self.monitoring = True
        elif command.name == "script|load" and _kind(first) == "$":
            self.scripts.append(_parse(first))
        elif base in _SUBSCRIBE or base in _UNSUBSCRIBE:
            for reply in got.replies:
                parsed = _parse(reply)
                if not isinstance(parsed, list) or len(parsed) != 3:
                    continue
                kind, channel = parsed[0].decode(), parsed[1]
                if kind in _SUBSCRIBE:
                    self.subscriptions[kind].add(channel)
                elif kind in _UNSUBSCRIBE and channel is not None:
                    self.subscriptions[_UNSUBSCRIBE[kind]].discard(channel)


# -- commands -------------------------------------------------------------------------------------


@dataclass
class Command:
    """One command of a session, as sent (``wire``), with what the checks need to know."""

    args: Args
    name: str  # the table's name ("client|reply"), the base for an unknown subcommand, or ""
    wire: bytes
    # The keys (and shard channels) in it, as Redis finds them (KeyOracle); None until asked.
    redis_keys: list[bytes] | None = None
    cross_protocol: bool = False
    ran_before: list[bytes] = field(default_factory=list)  # keys set in the same write, before
    never_ran: list[bytes] = field(default_factory=list)  # keys set in the same write, after

    @property
    def base(self) -> str:
        return self.name.split("|", 1)[0]

    def rename(self, renamed: dict[bytes, bytes]) -> None:
        """Replace arguments (not the command's name), keeping it inline if it was."""
        words = len(self.name.split("|")) if self.name else 1
        self.args = self.args[:words] + [renamed.get(a, a) for a in self.args[words:]]
        inline = not self.wire.startswith(b"*") and _inline_safe(self.args)
        self.wire = b" ".join(self.args) + b"\r\n" if inline else resp(*self.args)

    def show(self) -> str:
        shown = (
            self.wire
            if self.cross_protocol or not self.wire.startswith(b"*")
            else b" ".join(self.args)
        )
        return repr(shown[:300])[2:-1]


def _inline_safe(args: Args) -> bool:
    return all(a and all(33 <= c <= 126 and c not in b"\"'\\" for c in a) for a in args)


def _recase(word: bytes, rng: random.Random) -> bytes:
    return bytes(c ^ 32 if 97 <= (c | 32) <= 122 and rng.random() < 0.5 else c for c in word)


_VALUES = [b"a", b"b", b"1", b"-1", b"hello", b"", b"x y", b"\r\n", b"\xff\x00", b"message", b"3.5"]
_ODD_NUMBERS = [b"abc", b"", b"1.5", b"9223372036854775808", b"-9223372036854775809", b"0x10"]
_SMALL = [b"0", b"1", b"2", b"3", b"-1", b"10", b"-100"]
_IDS = [b"0", b"0-1", b"1-1", b"$", b">", b"+", b"-", b"*", b"(1", b"[a"]
# Arguments measuring time: Redis would act on them later (expire a key, end a block), so they
# are given values that act at once or never within a run, or, for blocking, within 100 ms.
_TIME_NAMES = frozenset(["seconds", "milliseconds", "ms", "ttl", "timeout", "min-idle-time"])
_WAITS = frozenset(["wait", "waitaof"])


class Generator:
    """Commands for one session: plausible ones built from COMMAND DOCS, random ones, wrong
    arities, unknown commands and subcommands, and the hostile sequences of ``SPECIALS``."""

    def __init__(self, catalog: Catalog, rng: random.Random, ns: Namespace,
                 state: SessionState) -> None:  # fmt: skip
        self.catalog = catalog
        self.rng = rng
        self.ns = ns
        self.state = state
        self.pending: list[Command] = []
        self._keys: list[bytes] = []

    # -- values --------------------------------------------------------------------------------

    def key(self) -> bytes:
        key = self.ns.key(self.rng.randrange(5))
        self._keys.append(key)
        return key

    def _number(self, kind: str, name: str, blocking: bool) -> bytes:
        rng = self.rng
        if name in _TIME_NAMES or kind == "unix-time":
            if blocking or name == "timeout":
                return rng.choice([b"0.02", b"0.05"] if kind == "double" else [b"20", b"50"])
            if kind == "unix-time":
                return rng.choice([b"1", b"4102444800", b"-5"])
            return rng.choice([b"100000", b"0", b"-1", b"abc"])
        if rng.random() < 0.08:
            return rng.choice(_ODD_NUMBERS)
        if kind == "double":
            return rng.choice([b"0", b"1.5", b"-2", b"inf", b"-inf", b"+inf", b"(1", b"3"])
        return rng.choice(_SMALL)

    def _string(self, name: str) -> bytes:
        rng, ns = self.rng, self.ns
        if name == "key":
            return self.key()
        if name == "channel":
            return ns.channel(rng.randrange(3))
        if name == "shardchannel":
            channel = ns.shard_channel(rng.randrange(3))
            self._keys.append(channel)
            return channel
        if name == "script":
            return rng.choice(_SCRIPTS)
        if name == "sha1":
            known = self.state.scripts
            if known and rng.random() < 0.6:
                return rng.choice(known)
            return rng.randbytes(20).hex().encode()
        if name == "function-code":
            return (
                b"#!lua name=%b\nredis.register_function('%b', function(keys, args) "
                b"return #keys end)" % (ns.library, ns.function)
            )
        if name in ("function", "library-name"):
            return ns.function if name == "function" else ns.library
        if name == "library-name-pattern":
            return ns.library + b"*"
        if name in ("id", "last-id", "start", "end", "stop", "min", "max", "max_deleted_entry_id"):
            return rng.choice(_IDS)
        if name in ("group", "groupname"):
            return rng.choice([b"g1", b"g2"])
        if name in ("consumer", "consumername"):
            return rng.choice([b"c1", b"c2"])
        if name == "username":
            return rng.choice([b"default", b"isolation-user"])
        if name == "password":
            return rng.choice([b"wrong", b"", b"x"])
        if name in ("clientname", "connection-name", "name"):
            return rng.choice([b"isolation", b"bad name", b""])
        if name in ("command", "command-name"):
            return rng.choice([b"get", b"client", b"set", b"isolation-nosuch"])
        if name == "section":
            return rng.choice([b"server", b"clients", b"keyspace", b"default", b"bogus"])
        if name == "parameter":
            return rng.choice([b"maxmemory", b"bind", b"*max*"])
        if name == "node-id":
            return rng.randbytes(20).hex().encode()
        if name in ("host", "ip", "ip:port"):
            return rng.choice([b"127.0.0.1", b"127.0.0.1:1"])
        if name == "encoding":
            return rng.choice([b"u8", b"i16", b"x"])
        if name == "prefix":
            return ns.prefix
        if name == "type":
            return rng.choice([b"string", b"list", b"normal", b"pubsub"])
        if name in ("yes/no",):
            return rng.choice([b"yes", b"no"])
        # Values that name their session: another session's in a reply is a reply gone astray.
        return (ns.prefix if rng.random() < 0.3 else b"") + rng.choice(_VALUES)

    def _arguments(self, docs: Iterable[dict[str, Any]], blocking: bool) -> Args:
        out: Args = []
        for doc in docs:
            flags = doc["flags"]
            if "optional" in flags and self.rng.random() < 0.5:
                continue
            times = self.rng.choice([1, 1, 2, 3]) if "multiple" in flags else 1
            for i in range(times):
                token = doc.get("token")
                if token is not None and (i == 0 or "multiple_token" in flags):
                    out.append(token.encode())
                out += self._value(doc, blocking)
        return out

    def _value(self, doc: dict[str, Any], blocking: bool) -> Args:
        kind, name = doc["type"], doc["name"]
        if kind == "pure-token":
            return []
        if kind == "oneof":
            return self._arguments([self.rng.choice(doc["arguments"])], blocking)
        if kind == "block":
            return self._arguments(doc["arguments"], blocking)
        if kind == "key":
            return [self.key()]
        if kind == "pattern":
            return [self.ns.pattern(self.rng)]
        if kind in ("integer", "double", "unix-time"):
            if name == "numkeys":
                return [b"NUMKEYS"]  # counted once the keys after it are known
            return [self._number(kind, name, blocking)]
        return [self._string(name)]

    # -- commands ------------------------------------------------------------------------------

    def make(self, args: Args, *, inline_ok: bool = True) -> Command:
        """A command of these arguments (at times sent inline, when ``inline_ok``)."""
        entry = self.catalog.lookup(args)
        if entry is None and args:
            container = self.catalog.entries.get(args[0].decode("latin-1").lower())
            name = container.name if container is not None else ""
        else:
            name = entry.name if entry is not None else ""
        wire = resp(*args)
        if inline_ok and self.rng.random() < 0.15 and _inline_safe(args):
            wire = b" ".join(args) + b"\r\n"
        self._keys = []
        return Command(args, name, wire)

    def plausible(self, entry: Entry) -> Command:
        blocking = "blocking" in entry.flags or entry.base in _WAITS
        args = [*entry.words, *self._arguments(entry.arguments, blocking)]
        if b"NUMKEYS" in args:
            at = args.index(b"NUMKEYS")
            after = sum(1 for a in args[at + 1 :] if a in self._keys)
            args[at] = str(after if self.rng.random() < 0.9 else after + 1).encode()
        return self.make(args)

    def random_args(self, entry: Entry) -> Command:
        tokens = [d.get("token", "").encode() for d in _flatten(entry.arguments)]
        pool = [t for t in tokens if t] + _VALUES + _SMALL + [b"NUMKEYS"]
        args = list(entry.words)
        for _ in range(self.rng.randrange(7)):
            pick = self.rng.random()
            args.append(self.key() if pick < 0.3 else self.rng.choice(pool))
        args = [b"1" if a == b"NUMKEYS" else a for a in args]
        return self.make(args)

    def wrong_arity(self, entry: Entry) -> Command:
        words = entry.words
        if entry.arity > 0:
            counts = [n for n in range(len(words), entry.arity) if n] + [entry.arity + 1]
        else:
            counts = list(range(len(words), -entry.arity))
        count = self.rng.choice(counts or [len(words)])
        args = [*words, *[self.key() for _ in range(count - len(words))]]
        return self.make(args)

    def unknown(self) -> Command:
        rng = self.rng
        name = rng.choice([
            b"isolation-" + rng.randbytes(3).hex().encode(), b"GETT", b"sett", b"CLIENTS", b"",
            b"x" * 200, b"with\r\nnewline", b"POSTS", b"hosts", b"HOST",
        ])  # fmt: skip
        args = [name, *rng.sample([*_VALUES, b"y" * 150, b"it's", self.key()], rng.randrange(4))]
        return self.make(args, inline_ok=bool(name))

    def unknown_subcommand(self) -> Command:
        containers = [e for e in self.catalog.entries.values() if e.subcommands]
        entry = self.rng.choice(containers)
        sub = self.rng.choice([b"nosuch", b"x" * 200, b"ID ", _recase(b"help", self.rng) + b"x"])
        return self.make([entry.base.encode(), sub, *self.rng.sample(_VALUES, 2)])

    def cross_protocol(self) -> Command:
        """POST or Host: as a command name, as a browser (or an HTTP request forged through one)
        sends it, with a body of Redis commands that must never run."""
        rng, ns = self.rng, self.ns
        pwned = ns.tags[0].encode() + ns.prefix + b"pwned"
        body = resp("SET", pwned, "yes") if rng.random() < 0.5 else b"SET " + pwned + b" yes\r\n"
        name = rng.choice([b"POST", b"post", b"Host:", b"host:", b"HOST:", b"pOsT"])
        if rng.random() < 0.5:
            head = name + (
                b" / HTTP/1.1\r\nHost: example.com" if name.lower() == b"post" else b" x"
            )
            wire = head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        else:
            wire = resp(name, "/") + body
        before: list[bytes] = []
        if rng.random() < 0.3:  # in the same read: Redis runs what came before
            ran = ns.tags[0].encode() + ns.prefix + b"before"
            wire = resp("SET", ran, "1") + wire
            before.append(ran)
        return Command([name], name.decode().lower(), wire, cross_protocol=True,
                       ran_before=before, never_ran=[pwned])  # fmt: skip

    def quiet(self) -> Command:
        """A command while CLIENT REPLY is OFF or SKIP. Unanswered, a refusal by design cannot
        be told from anything else, and Redis would run what the ambassador refused (SELECT 1,
        a key in another slot): the two would drift apart. So: plain commands on one key, and
        at times CLIENT REPLY ON."""
        rng = self.rng
        if rng.random() < 0.25:
            return self.make(_s("CLIENT", "REPLY", "ON"))
        key = self.key()
        return self.make(rng.choice([
            _s("SET", key, "v"), _s("GET", key), _s("INCR", key), _s("LPUSH", key, "e"),
            _s("HSET", key, "f", "v"), _s("PING"), _s("ECHO", "quiet"), _s("DEL", key),
        ]))  # fmt: skip

    def next(self) -> Command:
        """The session's next command."""
        if self.pending:
            return self.pending.pop(0)
        if self.state.reply != "on":
            return self.quiet()
        rng = self.rng
        pick = rng.random()
        if pick < 0.12:
            steps = SPECIALS[rng.choice(sorted(SPECIALS))]
            self.pending = [
                self.make([_expand(w, self) for w in step.split()], inline_ok=False)
                for step in steps
            ]
            return self.pending.pop(0)
        if pick < 0.16:
            return self.unknown()
        if pick < 0.19:
            return self.unknown_subcommand()
        entry = self.catalog.entries[rng.choice(self.catalog.names)]
        if entry.subcommands:
            if rng.random() < 0.1:
                return self.wrong_arity(entry)
            entry = self.catalog.entries[rng.choice(entry.subcommands)]
        blocking = "blocking" in entry.flags or entry.base in _WAITS
        pick = rng.random()
        if pick < 0.1:
            return self.wrong_arity(entry)
        if pick < 0.25 and not blocking:
            return self.random_args(entry)
        command = self.plausible(entry)
        if rng.random() < 0.2:
            command.args[0] = _recase(command.args[0], rng)
            command.wire = resp(*command.args)
        return command


def _flatten(docs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        yield doc
        yield from _flatten(doc["arguments"])


def _s(*words: str | bytes) -> Args:
    return [w if isinstance(w, bytes) else w.encode() for w in words]


def _expand(word: str, g: Generator) -> bytes:
    """A word of a hostile sequence; K, CH, PAT, SCH and NS name the session's own key,
    channel, pattern, shard channel and key prefix (NS)."""
    place = {
        "K": g.key,
        "CH": lambda: g.ns.channel(0),
        "PAT": lambda: g.ns.pattern(g.rng),
        "SCH": lambda: g.ns.shard_channel(0),
        "NS": lambda: g.ns.prefix,
    }.get(word)
    return place() if place is not None else word.encode()


# Hostile sequences: each puts the connection in a state of its own (or tries to), then goes
# on; what follows must still get Redis's replies, and nothing may reach a shared connection.
SPECIALS: dict[str, list[str]] = {
    "client reply off": ["CLIENT REPLY OFF", "SET K v", "GET K", "CLIENT REPLY ON", "GET K"],
    "client reply skip": ["CLIENT REPLY SKIP", "INCR K", "GET K"],
    "client reply off, reset": ["CLIENT REPLY OFF", "RESET", "PING"],
    "client tracking": ["CLIENT TRACKING ON", "GET K"],
    "client tracking bcast": ["CLIENT TRACKING ON BCAST PREFIX NS", "GET K"],
    "client caching": ["CLIENT CACHING YES"],
    "client setinfo": ["CLIENT SETINFO LIB-NAME isolation"],
    "client setname": ["CLIENT SETNAME isolation", "CLIENT GETNAME"],
    "hello 3": ["HELLO 3", "GET K", "HGETALL K"],
    "hello 3 setname": ["HELLO 3 SETNAME iso", "CLIENT GETNAME"],
    "hello auth": ["HELLO 3 AUTH default wrong", "PING"],
    "select": ["SELECT 1", "SET K v", "GET K"],
    "readonly": ["READONLY", "GET K", "READWRITE"],
    "asking": ["ASKING", "GET K"],
    "reset in multi": ["MULTI", "SET K v", "RESET", "GET K"],
    "auth": ["AUTH wrong", "AUTH isolation-user wrong", "AUTH default x"],
    "multi without exec": ["MULTI", "SET K v", "INCR K"],
    "multi exec": ["MULTI", "SET K v", "GET K", "EXEC"],
    "watch": ["WATCH K", "MULTI", "INCR K", "EXEC"],
    "subscribe": ["SUBSCRIBE CH", "GET K", "PING", "PSUBSCRIBE PAT", "UNSUBSCRIBE", "PUNSUBSCRIBE"],
    "subscribe resp3": ["HELLO 3", "SUBSCRIBE CH", "PUBLISH CH m", "GET K"],
    "ssubscribe": ["SSUBSCRIBE SCH", "SUNSUBSCRIBE"],
    "monitor": ["MONITOR"],
    "debug sleep": ["DEBUG SLEEP 0.2"],
    "client pause": ["CLIENT PAUSE 200"],
    "client kill": ["CLIENT KILL TYPE normal"],
    "wait": ["WAIT 1 50"],
    "waitaof": ["WAITAOF 1 1 50"],
    "blocking": ["BLPOP K 0.05", "BZPOPMIN K 0.02", "XREAD BLOCK 30 STREAMS K $"],
    "sync": ["SYNC"],
    "psync": ["PSYNC ? -1"],
    "replconf": ["REPLCONF listening-port 1"],
    "script debug": ["SCRIPT DEBUG YES"],
    "quit": ["QUIT"],
    # A state command queued in a transaction would run on the node's shared connection at EXEC.
    **{
        f"{command.lower()} in multi": ["MULTI", command, "SET K v", "EXEC"]
        for command in (
            "SELECT 1",
            "CLIENT REPLY OFF",
            "SUBSCRIBE CH",
            "PSUBSCRIBE PAT",
            "MONITOR",
            "HELLO 3",
            "AUTH x",
            "READONLY",
            "CLIENT SETNAME x",
            "CLIENT TRACKING ON",
            "UNWATCH",
            "PING",
            "COMMAND COUNT",
        )
    },
}


# -- the judge ------------------------------------------------------------------------------------


def _server_specific(name: str) -> bool:
    return any(name == s or name.startswith(s + "|") for s in _SERVER_SPECIFIC)


def compare(command: Command, amb: Got, ref: Got, state: SessionState) -> str | None:
    """Why the ambassador's answer is not Redis's, or None: exact bytes for the exact classes,
    else the same type (errors: the same code word)."""
    if command.cross_protocol:
        if amb.replies or amb.extra or not amb.closed:
            return "cross-protocol command: Redis closes the connection without a reply"
        return None
    if ref.replies == [_CLUSTER_DISABLED] and command.base in _CLUSTER_ONLY:
        return None  # by design: the ambassador presents itself as a one-node cluster
    if amb.timed_out and not ref.timed_out:
        return "no reply in time"
    if amb.closed != ref.closed:
        return "closed the connection" if amb.closed else "left the connection open"
    if len(amb.replies) != len(ref.replies):
        return f"{len(amb.replies)} replies, Redis sends {len(ref.replies)}"
    for a, r in zip(amb.replies, ref.replies, strict=True):
        exact = (
            a.startswith(_EXACT_ERRORS)
            or r.startswith(_EXACT_ERRORS)
            or command.name in _EXACT_REPLIES
            or (command.name in state.state_commands and "-" in (_kind(a), _kind(r)))
        )
        if exact:
            if a != r:
                return "reply differs"
            continue
        ka, kr = _kind(a), _kind(r)
        if _server_specific(command.name):
            ka, kr = ka.replace("nil", "$"), kr.replace("nil", "$")
        if ka != kr:
            return "reply type differs"
        if ka == "-" and _code(a) != _code(r):
            return "error code differs"
    return None


# -- the well-behaved client ----------------------------------------------------------------------

STALL = 0.1  # seconds: the threshold for one round trip of the well-behaved client


def _well_behaved_keys(token: str) -> list[bytes]:
    """Keys in 48 slots spread over the whole slot range (so every master's)."""
    keys = []
    for i in range(48):
        tag = next(
            f"w{i}-{n}" for n in range(10_000) if key_slot(f"w{i}-{n}".encode()) * 48 // 16384 == i
        )
        keys.append(f"{{{tag}}}wb.{token}".encode())
    return keys


class _Timed:
    """The well-behaved client's connection: every round trip timed and checked, counted in the
    phase in progress."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.phases: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()

    def phase(self, name: str) -> None:
        with self.lock:
            self.phases.append({"name": name, "round_trips": 0, "commands": 0, "times": [],
                                "stalls": [], "errors": []})  # fmt: skip

    def round_trip(self, commands: list[Args], expected: list[Any], what: str) -> list[Any]:
        """Send ``commands`` in one write, read their replies; a wrong one is an error."""
        started = time.perf_counter()
        replies: list[Any] = []
        try:
            self.sock.sendall(b"".join(resp(*c) for c in commands))
            while len(replies) < len(commands):
                while (reply := self.reader.gets()) is not False:
                    replies.append(reply)
                if len(replies) < len(commands):
                    chunk = self.sock.recv(1 << 16)
                    if not chunk:
                        raise ConnectionError("the ambassador closed the connection")
                    self.reader.feed(chunk)
            problem = None if replies == expected else f"{what}: {replies!r} != {expected!r}"
        except (OSError, ConnectionError) as exc:
            problem = f"{what}: {exc!r}"
            self.sock.close()
            self._connect()  # as a client would; its replies may be out of step otherwise
        elapsed = time.perf_counter() - started
        with self.lock:
            current = self.phases[-1]
            current["round_trips"] += 1
            current["commands"] += len(commands)
            current["times"].append(elapsed)
            if elapsed > STALL:
                current["stalls"].append([time.monotonic(), round(elapsed * 1000, 1), what])
            if problem is not None:
                current["errors"].append(problem)
        return replies

    def results(self) -> list[dict[str, Any]]:
        with self.lock:
            for p in self.phases:
                times = sorted(p.pop("times"))
                p["p50_ms"] = round(times[len(times) // 2] * 1000, 2) if times else 0
                p["p99_ms"] = round(times[int(len(times) * 0.99)] * 1000, 2) if times else 0
                p["max_ms"] = round(times[-1] * 1000, 2) if times else 0
            return self.phases


def well_behaved_main(host: str, port: int, token: str) -> None:
    """The well-behaved client's process: SET/GET/INCR rounds over keys in every slot range,
    pipelined and not, every reply checked, every round trip timed. Prints ``ready`` after its
    first round trip; a line on stdin starts a new phase (named by it); at EOF it prints the
    phases' statistics as one JSON line."""
    gc.disable()  # a collection in this process would be counted as the ambassador's stall
    keys = _well_behaved_keys(token)
    timed = _Timed((host, port))
    stop = threading.Event()

    def control() -> None:
        for line in sys.stdin:
            timed.phase(line.strip())
        stop.set()

    timed.phase("start")
    timed.round_trip([_s("DEL", *[k + b":n" for k in keys])], [0], "DEL of the counters")
    counters = dict.fromkeys(keys, 0)
    print("ready", flush=True)
    threading.Thread(target=control, daemon=True).start()
    n = 0
    while not stop.is_set():
        batch = [keys[(n * 8 + i) % len(keys)] for i in range(8)]
        commands, expected = [], []
        for key in batch:
            value = b"%d:%d" % (n, key_slot(key))
            commands += [_s("SET", key, value), _s("GET", key), _s("INCR", key + b":n")]
            expected += [b"OK", value, counters[key] + 1]
        replies = timed.round_trip(commands, expected, f"pipeline of {len(commands)}")
        # What the counters are now, even after an error (reported once, not in every round).
        for key, count in zip(batch, replies[2::3], strict=False):
            counters[key] = count if isinstance(count, int) else counters[key]
        key = batch[0]
        replies = timed.round_trip([_s("INCR", key + b":n")], [counters[key] + 1], "INCR")
        counters[key] = replies[0] if replies and isinstance(replies[0], int) else counters[key]
        timed.round_trip([_s("GET", key)], [b"%d:%d" % (n, key_slot(key))], "GET")
        n += 1
        time.sleep(0.005)  # pacing, not synchronisation: a steady, light workload
    print(json.dumps(timed.results()), flush=True)


class WellBehaved:
    """The well-behaved client, in a process of its own (so nothing of the harness's load is
    counted in its round trips), driven through its stdin."""

    def __init__(self, address: Address, token: str) -> None:
        here = Path(__file__).resolve().parent
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(here), str(here.parent), *sys.path]),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(here / "isolation.py"), "well-behaved", address[0],
             str(address[1]), token],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        self.phases: list[dict[str, Any]] = []

    def wait_ready(self, timeout: float = 20.0) -> None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.process.kill()
            raise AssertionError(f"the well-behaved client did not start: {line!r}")

    def phase(self, name: str) -> None:
        """Start counting its round trips under ``name``."""
        assert self.process.stdin is not None
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()

    def stop(self) -> dict[str, dict[str, Any]]:
        """Its statistics by phase."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        out = self.process.stdout.read()
        self.process.wait(timeout=30)
        line = out.strip().splitlines()[-1] if out.strip() else "[]"
        self.phases = json.loads(line)
        return {p["name"]: p for p in self.phases}


def describe_phase(p: dict[str, Any]) -> str:
    return (
        f"{p['round_trips']} round trips ({p['commands']} commands): p50 {p['p50_ms']} ms, "
        f"p99 {p['p99_ms']} ms, max {p['max_ms']} ms, {len(p['stalls'])} over "
        f"{STALL * 1000:.0f} ms, {len(p['errors'])} errors"
    )


# -- what the nodes and the ambassador say --------------------------------------------------------


def _socket_ports(pid: int) -> set[tuple[int, int]]:
    """(local port, remote port) of a process's TCP sockets (Linux /proc): how the nodes'
    CLIENT LIST (``addr``, ``laddr``) tells the ambassador's connections from everyone else's."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                    ports.add((local, remote))
    return ports


def client_list(node: Address) -> list[dict[str, str]]:
    """A node's CLIENT LIST, one dict per connection."""
    text = query(node, "CLIENT", "LIST").decode()
    return [
        dict(f.split("=", 1) for f in line.split(" ") if "=" in f) for line in text.splitlines()
    ]


# A node connection in the state every connection starts in (what a shared one must keep).
_FRESH = {"flags": "N", "db": "0", "sub": "0", "psub": "0", "ssub": "0", "multi": "-1", "name": ""}


def changed_connections(pid: int, nodes: Sequence[Address]) -> list[str]:
    """The ambassador's node connections (``pid``'s) whose state is not a fresh one's."""
    ports = _socket_ports(pid)
    found = []
    for node in nodes:
        for conn in client_list(node):
            ends = (int(conn["addr"].rsplit(":", 1)[1]), int(conn["laddr"].rsplit(":", 1)[1]))
            if ends not in ports:
                continue
            changed = {k: conn.get(k) for k, v in _FRESH.items() if conn.get(k, v) != v}
            if conn.get("resp", "2") not in ("2", "3"):
                changed["resp"] = conn["resp"]
            if changed:
                found.append(f"node {node[0]}:{node[1]} connection {conn['addr']}: {changed} "
                             f"(last command {conn.get('cmd')})")  # fmt: skip
    return found


def wait_for_fresh_connections(
    pid: int, nodes: Sequence[Address], timeout: float = 5.0
) -> list[str]:
    """``changed_connections`` once the ambassador has had ``timeout`` to close its clients'
    own connections (they close after their clients, asynchronously); [] as soon as it holds."""
    deadline = time.monotonic() + timeout
    while True:
        found = changed_connections(pid, nodes)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def command_stats(node: Address) -> dict[str, int]:
    """A node's calls by command name (``client|kill``): those it ran, failed or not; not those
    it refused to run (a script calling CLIENT, a wrong arity)."""
    text = query(node, "INFO", "commandstats").decode()
    stats = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, _, values = line[8:].partition(":")
            fields = dict(v.split("=") for v in values.split(","))
            stats[name] = int(fields["calls"])
    return stats


def total_command_stats(nodes: Iterable[Address]) -> Counter[str]:
    total: Counter[str] = Counter()
    for node in nodes:
        total.update(command_stats(node))
    return total


# State commands that may reach a master: on the client's own connection (subscriptions, WATCH,
# UNWATCH), as the ambassador's own framing of a transaction (MULTI/EXEC), its health checks
# (PING), its RESP3 connections' handshake (HELLO), its start-up (COMMAND) and redirections
# (ASKING), none of which changes a shared connection; and the replicas' own REPLCONF ACKs.
REACH_EXEMPT = _names(
    "subscribe psubscribe ssubscribe unsubscribe punsubscribe sunsubscribe watch unwatch "
    "multi exec ping echo hello asking replconf command command|count command|docs "
    "command|getkeys command|getkeysandflags command|help command|info command|list"
)


def security_warnings(cluster: LocalCluster) -> int:
    """Lines in the nodes' logs saying a node closed a connection for POST or Host:."""
    return sum(
        node.log_path.read_text(errors="replace").count("Possible SECURITY ATTACK detected")
        for node in cluster.nodes
        if node.log_path.exists()
    )


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Mismatch:
    """One reply that is not Redis's."""

    session: int
    step: int
    what: str
    command: Command
    amb: Got
    ref: Got | None
    state: str  # the connection's state when the command was sent

    @property
    def cause(self) -> str:
        """What the mismatch says went wrong, for grouping a run's mismatches."""
        amb = b"".join(self.amb.replies)
        ref = b"".join(self.ref.replies) if self.ref is not None else b""
        for label, applies in _CAUSES:
            if applies(self, amb, ref):
                return label
        return f"{self.what}: {self.command.name or '(unknown command)'}"

    def show(self, seed: int) -> str:
        ref = self.ref.show() if self.ref is not None else "(not sent)"
        return (
            f"seed {seed} session {self.session} step {self.step}: {self.what}\n"
            f"    command:    {self.command.show()}   (connection: {self.state})\n"
            f"    ambassador: {self.amb.show()}\n"
            f"    redis:      {ref}"
        )


_CANT_EXECUTE = b"-ERR Can't execute "
# Mismatches of many commands with one cause, named so a run's report groups them.
_CAUSES: list[tuple[str, Callable[[Mismatch, bytes, bytes], bool]]] = [
    ("POST or Host: was not answered by closing the client",
     lambda m, amb, ref: m.command.cross_protocol),
    ("a node closed a shared connection: a command failed with 'connection lost'",
     lambda m, amb, ref: b"unavailable: connection lost" in amb),
    ("RESP2 subscribed mode checked before the arity or the subcommand",
     lambda m, amb, ref: amb.startswith(_CANT_EXECUTE) and ref.startswith(_EXACT_ERRORS)),
    ("accepted in RESP2 subscribed mode, where Redis refuses it",
     lambda m, amb, ref: ref.startswith(_CANT_EXECUTE) and not amb.startswith(_CANT_EXECUTE)),
    ("CROSSSLOT where Redis (and a cluster node) reports a wrong arity first",
     lambda m, amb, ref: amb.startswith(b"-CROSSSLOT") and ref.startswith(_EXACT_ERRORS)),
    ("CROSSSLOT where Redis's own key finder (COMMAND GETKEYS) sees one slot",
     lambda m, amb, ref: amb.startswith(b"-CROSSSLOT")),
    ("a blocking command refused where Redis reports a wrong arity",
     lambda m, amb, ref: b"blocking command without keys" in amb and ref.startswith(_EXACT_ERRORS)),
]  # fmt: skip


@dataclass
class Report:
    """What a run did and found (``problems()`` empty: it passed)."""

    seed: int
    sessions: int = 0
    commands: int = 0
    cross_protocol: int = 0
    messages: int = 0
    by_design: Counter[str] = field(default_factory=Counter)
    mismatches: list[Mismatch] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # everything but reply mismatches
    # Hostile commands the ambassador took over 100 ms to answer: (start, end, command).
    slow: list[tuple[float, float, str]] = field(default_factory=list)
    well_behaved: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def problems(self) -> list[str]:
        return [m.show(self.seed) for m in self.mismatches] + self.findings

    def grouped(self) -> str:
        """The mismatches by cause (what differed, and in which command), one example each."""
        groups: dict[str, list[Mismatch]] = {}
        for m in self.mismatches:
            groups.setdefault(m.cause, []).append(m)
        lines = []
        for cause, found in sorted(groups.items(), key=lambda g: -len(g[1])):
            lines.append(f"[{len(found)}x] {cause}\n" + found[0].show(self.seed))
        return "\n".join(lines)

    def summary(self) -> str:
        phases = "; ".join(f"{name}: {describe_phase(p)}" for name, p in self.well_behaved.items())
        return (
            f"seed {self.seed}: {self.sessions} sessions, {self.commands} commands "
            f"({self.cross_protocol} cross-protocol), {self.seconds:.1f}s; by design: "
            f"{dict(self.by_design)}; well-behaved client: {phases}; "
            f"{len(self.mismatches)} mismatches, {len(self.findings)} other problems"
        )

    def describe(self) -> str:
        """Everything, for a failure message: the summary, the findings, the mismatches."""
        parts = [self.summary(), *self.findings]
        if self.mismatches:
            parts.append("mismatches by cause:\n" + self.grouped())
        return "\n".join(parts)


class _Pace:
    """At most ``rate`` commands a second over all sessions (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = time.monotonic()

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        self.next = max(self.next + self.interval, now)
        if self.next > now:
            await asyncio.sleep(self.next - now)


@dataclass
class Targets:
    """Where the sessions go: the ambassador (or, to check the harness itself, a second plain
    redis-server), the reference redis-server, and the node COMMAND is read from."""

    subject: Address
    reference: Address
    table_from: Address
    self_check: bool = False  # the subject is Redis too: nothing is by design


# Commands whose replies come late by design: blocking ones (their timeouts are under 100 ms).
_TAKES_TIME = _names(
    "blpop brpop brpoplpush blmove blmpop bzpopmin bzpopmax bzmpop xread xreadgroup wait"
)


class Session:
    """One hostile client: a connection to the ambassador and one to Redis, in lockstep. Each
    command goes to the ambassador; a refusal by design stops there, anything else goes to Redis
    and the replies are compared. The first mismatch ends it (its state is no longer Redis's)."""

    def __init__(self, index: int, seed: int, catalog: Catalog, targets: Targets,
                 report: Report, timeout: float, ns: Namespace) -> None:  # fmt: skip
        self.index = index
        self.prefix = ns.prefix
        self._sessions = re.compile(re.escape(ns.token.encode()) + rb"\.(\d+)\.")
        self.seed = seed
        self.targets = targets
        self.report = report
        self.timeout = timeout
        self.state = SessionState(catalog.state_commands)
        self.step = 0
        self.over = False
        self.state_before = self.state.describe()
        self._oracle = KeyOracle(targets.reference)

    async def __aenter__(self) -> Session:
        self._amb = await Peer.open(self.targets.subject)
        self._ref = await Peer.open(self.targets.reference)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.report.messages += self._amb.messages
        self._amb.close()
        self._ref.close()
        self._oracle.close()
        self.report.sessions += 1

    def _mismatch(self, what: str, command: Command, got: Got, expected: Got | None) -> None:
        self.report.mismatches.append(
            Mismatch(self.index, self.step, what, command, got, expected, self.state_before)
        )
        self.over = True

    def _strays(self, got: Got) -> bool:
        """Whether a reply holds a key or value of another session (all of them name theirs)."""
        found = self._sessions.findall(b"".join(got.replies) + got.extra)
        return any(int(index) != self.index for index in found)

    def _finding(self, what: str) -> None:
        self.report.findings.append(
            f"seed {self.seed} session {self.index} step {self.step}: {what}"
        )
        self.over = True

    async def send(self, command: Command) -> None:
        """One command to both (or to the ambassador only); sets ``over`` when the session
        cannot go on: a mismatch, a closed connection, MONITOR."""
        state, report, timeout = self.state, self.report, self.timeout
        never = command.name in _NEVER_TO_REDIS or command.base in _NEVER_TO_REDIS
        if self.targets.self_check and (never or state.changed_by_exec(command)):
            return
        if command.name and command.name not in state.state_commands and not command.cross_protocol:
            await self._oracle.own(command, self.prefix)
        self.step += 1
        report.commands += 1
        report.cross_protocol += command.cross_protocol
        owed = state.owed(command)
        self.state_before = state.describe()
        started = time.monotonic()
        got = await self._amb.exchange(command.wire, owed, timeout, state.subscribed_resp2)
        took = time.monotonic() - started
        if took > STALL and not got.timed_out and command.base not in _TAKES_TIME:
            report.slow.append((started, started + took, command.show()[:100]))
        if not _server_specific(command.name) and self._strays(got):
            self._mismatch("another client's data in the reply", command, got, None)
            return
        if got.replies[:1] and got.replies[0].startswith(_NEEDS_KEYS):
            await self._oracle.keys(command)
        rule = None if self.targets.self_check else _by_design(command, state, got)
        if rule is not None:
            report.by_design[rule.name] += 1
            if state.multi:  # keep Redis's transaction in step: it must abort too
                await self._ref.exchange(_STAND_IN, 1, timeout, state.subscribed_resp2)
            return
        if never:
            # Redis cannot be asked (see _NEVER_TO_REDIS): an error, whichever, says it did
            # not run; anything else says it did.
            if len(got.replies) == 1 and _kind(got.replies[0]) == "-" and not got.closed:
                report.by_design["refused (any error)"] += 1
            else:
                self._mismatch("not refused", command, got, None)
            return
        if state.changed_by_exec(command) and got.replies == [b"+QUEUED\r\n"]:
            self._mismatch("queued a state command in a transaction", command, got, None)
            return
        expected = await self._ref.exchange(command.wire, owed, timeout, state.subscribed_resp2)
        if expected.timed_out or (owed == CLOSE) != (expected.closed and not expected.replies):
            self._finding(
                f"harness: Redis did not answer {command.show()} as modelled ({owed} replies): "
                f"{expected.show()}"
            )
            return
        if command.cross_protocol:
            await self._check_cross_protocol(command)
        what = compare(command, got, expected, state)
        if what is None and command.base == "quit" and not got.closed:
            got = await self._amb.exchange(b"", CLOSE, timeout, False)
            what = None if got.closed and not got.replies else "left open after QUIT"
        if what is not None:
            self._mismatch(what, command, got, expected)
            return
        if expected.replies[:1] == [b"+QUEUED\r\n"] or command.base == "watch":
            await self._oracle.keys(command)
        state.advance(command, expected)
        self.over = state.closed or state.monitoring

    async def finish(self, gen: Generator) -> None:
        """Back to a fresh connection's state, from whatever state the session is in: RESET
        and PING must be answered as Redis answers them too."""
        for words in (_s("RESET"), _s("PING")):
            if self.over:
                return
            await self.send(gen.make(words, inline_ok=False))

    async def _check_cross_protocol(self, command: Command) -> None:
        """What Redis ran of a write with POST or Host: in it: what came before (unless queued
        in a transaction, or refused in subscribed mode), never what came after. The keys share
        a slot, so one connection's order tells: once the one before exists, the one after
        would too had it been sent."""
        state, subject = self.state, self.targets.subject
        runs = not state.multi and not state.subscribed_resp2
        for key in command.ran_before if runs else []:
            deadline = time.monotonic() + 2.0
            while not await _exists(subject, key, state.db):
                if time.monotonic() > deadline:
                    self._finding(f"{command.show()}: a command before it in the same write "
                                  "never ran")  # fmt: skip
                    break
                await asyncio.sleep(0.02)  # polling the readiness of a write in flight
        for key in command.never_ran:
            if await _exists(subject, key, state.db):
                self._finding(f"{command.show()}: the body after it ran ({key!r} exists)")


async def _session(index: int, seed: int, token: str, catalog: Catalog, targets: Targets,
                   report: Report, pace: _Pace, timeout: float) -> None:  # fmt: skip
    """A random session: a seeded sequence of commands, sometimes ending with POST or Host:."""
    rng = random.Random(f"{seed}:{index}")
    ns = Namespace(token, index, rng.sample(_TAGS, 2))
    length = rng.choice((3, 6, 10, 15, 25, 40))
    ends_with_post = rng.random() < 0.06
    try:
        async with Session(index, seed, catalog, targets, report, timeout, ns) as session:
            gen = Generator(catalog, rng, ns, session.state)
            for step in range(length + ends_with_post):
                command = gen.cross_protocol() if step == length else gen.next()
                await pace.wait()
                await session.send(command)
                if session.over:
                    return
            await session.finish(gen)
    except (OSError, ConnectionError) as exc:
        report.findings.append(f"seed {seed} session {index}: {exc!r}")


# Refusals whose rule looks at the command's keys (CROSSSLOT; "cannot queue" for keyless ones).
_NEEDS_KEYS = (b"-CROSSSLOT ", b"-ERR redis-ambassador cannot queue ")
# Shard channels hash to slots as keys do, but COMMAND GETKEYS does not list them.
_SHARD_CHANNELS = {"ssubscribe": slice(1, None), "sunsubscribe": slice(1, None),
                   "spublish": slice(1, 2)}  # fmt: skip


class KeyOracle:
    """The keys Redis itself finds in a command (COMMAND GETKEYS on the reference server): what
    decides whether a CROSSSLOT is Redis Cluster's, whatever the harness meant as keys."""

    def __init__(self, reference: Address) -> None:
        self._reference = reference
        self._peer: Peer | None = None

    async def keys(self, command: Command) -> list[bytes]:
        """The command's keys (kept in ``redis_keys``); none for a command without keys or that
        Redis would refuse (unknown, wrong arity)."""
        if command.redis_keys is None:
            command.redis_keys = await self._ask(command)
        return command.redis_keys

    async def _ask(self, command: Command) -> list[bytes]:
        shard = _SHARD_CHANNELS.get(command.base)
        if shard is not None:
            return command.args[shard]
        if len(command.args) < 2:
            return []
        if self._peer is None:
            self._peer = await Peer.open(self._reference)
        got = await self._peer.exchange(resp("COMMAND", "GETKEYS", *command.args), 1, 5.0, False)
        parsed = _parse(got.replies[0]) if got.replies else None
        return parsed if isinstance(parsed, list) else []

    async def own(self, command: Command, prefix: bytes) -> None:
        """Make every key of ``command`` one of the session's (``prefix``): a random argument
        in a key's place would be a key every session shares, and the sessions' interleaving,
        which differs between the ambassador and Redis, would decide its value."""
        keys = await self.keys(command)
        renamed = {key: prefix + key for key in keys if prefix not in key}
        if renamed:
            command.rename(renamed)
            command.redis_keys = [renamed.get(key, key) for key in keys]

    def close(self) -> None:
        if self._peer is not None:
            self._peer.close()


async def _exists(address: Address, key: bytes, db: int) -> bool:
    peer = await Peer.open(address)
    try:
        select = resp("SELECT", db) if db else b""
        got = await peer.exchange(select + resp("EXISTS", key), 2 if db else 1, 5.0, False)
        return got.replies[-1:] == [b":1\r\n"]
    finally:
        peer.close()


async def watch_breakers(ambassador: Ambassador, stop: asyncio.Event, opened: list[str]) -> None:
    """Sample every node's breaker state every 50 ms until ``stop``; a breaker not closed is
    added to ``opened`` (one that opens and closes between two samples is in the log, which
    ``breakers_opened_in_log`` reads)."""
    while not stop.is_set():
        try:
            samples = await asyncio.to_thread(ambassador.samples, "breaker_state")
        except OSError as exc:
            opened.append(f"metrics unavailable: {exc!r}")
            return
        opened.extend(f"{labels['node']} breaker {value:g}" for labels, value in samples if value)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def _hostile(seed: int, sessions: int, connections: int, rate: float, token: str,
                   catalog: Catalog, targets: Targets, report: Report,
                   timeout: float) -> None:  # fmt: skip
    pace = _Pace(rate)
    next_session = 0

    async def worker() -> None:
        nonlocal next_session
        while next_session < sessions:
            index = next_session
            next_session += 1
            await _session(index, seed, token, catalog, targets, report, pace, timeout)

    await asyncio.gather(*(worker() for _ in range(connections)))


class Aftermath:
    """What the nodes and the ambassador say once the sessions are over, against what they said
    before: no POST or Host: reached a node, every cross-protocol client was counted, no state
    command ran on a master (but those of ``REACH_EXEMPT``), no node connection of the
    ambassador is in a changed state, no breaker opened, no exception."""

    def __init__(self, ambassador: Ambassador, cluster: LocalCluster, catalog: Catalog) -> None:
        self.ambassador = ambassador
        self.cluster = cluster
        self.catalog = catalog
        self.masters = [(n.host, n.port) for n in cluster.masters()]
        self.calls = total_command_stats(self.masters)
        self.warnings = security_warnings(cluster)
        self.disconnects = _cross_protocol_disconnects(ambassador)
        self.log_at = len(ambassador.stderr_text())

    def check(self, report: Report) -> None:
        """Add what went wrong to ``report.findings``."""
        ambassador, cluster = self.ambassador, self.cluster
        found = report.findings
        log = ambassador.stderr_text()[self.log_at :]
        if ambassador.process.poll() is not None:
            found.append("the ambassador exited:\n" + log[-3000:])
        if "Traceback" in log:
            found.append(
                "the ambassador logged an exception:\n" + log[log.index("Traceback") :][:3000]
            )
        opened = [line for line in log.splitlines() if _BREAKER_OPENED in line]
        if opened:
            found.append(f"circuit breakers opened ({len(opened)}x): {opened[0]}")
        warnings = security_warnings(cluster) - self.warnings
        if warnings:
            found.append(
                f"nodes closed {warnings} connections for a cross-protocol command (their logs "
                f"say 'Possible SECURITY ATTACK detected'): POST or Host: reached them"
            )
        counted = _cross_protocol_disconnects(ambassador) - self.disconnects
        if counted != report.cross_protocol:
            found.append(
                f'client_disconnects_total{{reason="cross_protocol"}} grew by {counted:g}; '
                f"{report.cross_protocol} cross-protocol commands were sent"
            )
        reached = total_command_stats(self.masters) - self.calls
        state = self.catalog.state_commands - REACH_EXEMPT
        ran = {name: n for name, n in reached.items() if name in state}
        if ran:
            found.append(f"state commands ran on the masters (INFO commandstats calls): {ran}")
        nodes = [(n.host, n.port) for n in cluster.nodes]
        changed = wait_for_fresh_connections(ambassador.process.pid, nodes)
        if changed:
            found.append(
                "the ambassador's node connections changed state: " + "; ".join(changed[:10])
            )


def run(
    ambassador: Ambassador | None,
    cluster: LocalCluster | None,
    reference: Address,
    *,
    seed: int,
    sessions: int,
    connections: int = 12,
    rate: float = 300.0,
    control_seconds: float = 3.0,
    timeout: float = 3.0,
    subject: Address | None = None,
) -> Report:
    """A differential run: ``sessions`` hostile sessions (``connections`` at once, at most
    ``rate`` commands a second) through ``ambassador`` (started with ``admin=True``) in front of
    ``cluster``, each compared with ``reference`` (a plain redis-server), while the well-behaved
    client runs; first ``control_seconds`` of the well-behaved client alone. Without an
    ambassador, ``subject`` (a second plain redis-server) takes its place: a check of the harness
    itself, where every reply must match."""
    report = Report(seed)
    token = secrets.token_hex(3)
    aftermath = None
    if ambassador is not None:
        assert cluster is not None and ambassador.admin_port is not None
        subject = (ambassador.host, ambassador.port)
        targets = Targets(
            subject, reference, (cluster.masters()[0].host, cluster.masters()[0].port)
        )
    else:
        assert subject is not None
        targets = Targets(subject, reference, subject, self_check=True)
    catalog = Catalog.fetch(targets.table_from)
    if ambassador is not None and cluster is not None:
        aftermath = Aftermath(ambassador, cluster, catalog)
    # What the run leaves on servers that outlive it goes, once the checks have looked (in
    # database 1 too where SELECT 1 runs: on plain servers).
    leftovers: list[tuple[Address, Sequence[int]]] = [(reference, (0, 1))]
    if aftermath is not None:
        leftovers += [(master, (0,)) for master in aftermath.masters]
    else:
        leftovers.append((subject, (0, 1)))
    try:
        _run(ambassador, seed, sessions, connections, rate, control_seconds, timeout, token,
             catalog, targets, report, aftermath)  # fmt: skip
    finally:
        clean_up(token, leftovers)
    return report


def _run(ambassador: Ambassador | None, seed: int, sessions: int, connections: int, rate: float,
         control_seconds: float, timeout: float, token: str, catalog: Catalog, targets: Targets,
         report: Report, aftermath: Aftermath | None) -> None:  # fmt: skip
    well = WellBehaved(targets.subject, token)
    started = time.monotonic()
    breakers: list[str] = []
    try:
        well.wait_ready()
        well.phase("control")
        time.sleep(control_seconds)  # the control phase's length, not a wait for anything
        well.phase("hostile")

        async def hostile() -> None:
            stop = asyncio.Event()
            watch = None
            if ambassador is not None:
                watch = asyncio.create_task(watch_breakers(ambassador, stop, breakers))
            try:
                await _hostile(seed, sessions, connections, rate, token, catalog, targets,
                               report, timeout)  # fmt: skip
            finally:
                stop.set()
                if watch is not None:
                    await watch

        asyncio.run(hostile())
    finally:
        report.well_behaved = well.stop()
    report.seconds = time.monotonic() - started
    for name, p in report.well_behaved.items():
        for error in p["errors"][:10]:
            report.findings.append(f"well-behaved client ({name}): {error}")
        # Against two plain servers, the stalls are Redis's own (PFSELFTEST): not the point.
        if name == "hostile" and p["stalls"] and ambassador is not None:
            report.findings.append(
                f"well-behaved client: {len(p['stalls'])} round trips over {STALL * 1000:.0f} ms "
                f"under hostile load; {describe_phase(p)}; the first, with the slow hostile "
                f"commands at the same time:\n" + "\n".join(_stalls(p["stalls"][:5], report.slow))
            )
    if breakers:
        report.findings.append(f"circuit breakers opened: {sorted(set(breakers))[:10]}")
    if aftermath is not None:
        aftermath.check(report)


def clean_up(token: str, servers: Iterable[tuple[Address, Sequence[int]]]) -> None:
    """Remove what a run left on servers that outlive it: its keys (in the databases given
    with each server) and function libraries, all named with its token."""
    for (host, port), databases in servers:
        with redis.Redis(host=host, port=port, socket_timeout=10, protocol=2) as server:
            for db in databases:
                if databases != (0,):
                    server.execute_command("SELECT", db)
                pipe = server.pipeline(transaction=False)
                for key in server.scan_iter(match=f"*{token}*", count=1000):
                    pipe.unlink(key)  # one by one: a cluster node refuses keys of two slots
                pipe.execute()
            for library in server.execute_command("FUNCTION", "LIST", "LIBRARYNAME", f"L{token}_*"):
                server.execute_command("FUNCTION", "DELETE", library[1])


def _stalls(stalls: list[list[Any]], slow: list[tuple[float, float, str]]) -> list[str]:
    """Each stall with the hostile commands that took long at the same time."""
    lines = []
    for ended, ms, what in stalls:
        began = ended - ms / 1000
        during = [f"{c} ({(e - b) * 1000:.0f} ms)" for b, e, c in slow if b < ended and e > began]
        lines.append(f"    {what}: {ms} ms; hostile commands then: {during[:4] or 'none slow'}")
    return lines


def run_state_commands(ambassador: Ambassador, cluster: LocalCluster, reference: Address, *,
                       seed: int, timeout: float = 3.0) -> Report:  # fmt: skip
    """Every command of the cluster's table that sets connection state (``state_commands``),
    with plausible arguments, each in a session of its own: alone, queued in a transaction, and
    after HELLO 3. Each reply must be Redis's or a refusal by design, and afterwards none of them
    may have run on a master, nor left an ambassador's node connection in another state."""
    report = Report(seed)
    token = secrets.token_hex(3)
    master = cluster.masters()[0]
    targets = Targets((ambassador.host, ambassador.port), reference, (master.host, master.port))
    catalog = Catalog.fetch(targets.table_from)
    aftermath = Aftermath(ambassador, cluster, catalog)
    wrappers = ([], ["MULTI", None, "EXEC"], ["HELLO 3", None])

    async def sessions() -> None:
        index = 0
        for name in sorted(catalog.state_commands):
            for wrapper in wrappers:
                rng = random.Random(f"{seed}:{name}:{len(wrapper)}")
                ns = Namespace(token, index, rng.sample(_TAGS, 2))
                async with Session(index, seed, catalog, targets, report, timeout, ns) as session:
                    gen = Generator(catalog, rng, ns, session.state)
                    steps = [
                        gen.plausible(catalog.entries[name]) if step is None
                        else gen.make(_s(*step.split()), inline_ok=False)
                        for step in wrapper or [None]
                    ]  # fmt: skip
                    for command in steps:
                        await session.send(command)
                        if session.over:
                            break
                    await session.finish(gen)
                index += 1

    try:
        asyncio.run(sessions())
        aftermath.check(report)
    finally:
        clean_up(token, [(reference, (0,)), *((m, (0,)) for m in aftermath.masters)])
    return report


_BREAKER_OPENED = "-> open"  # in the ambassador's log line "node X: circuit breaker closed -> open"


def breakers_opened_in_log(ambassador: Ambassador) -> list[str]:
    """The ambassador's log lines saying a node's circuit breaker opened."""
    return [line for line in ambassador.stderr_text().splitlines() if _BREAKER_OPENED in line]


def _cross_protocol_disconnects(ambassador: Ambassador | None) -> float:
    if ambassador is None or ambassador.admin_port is None:
        return 0.0
    return ambassador.metric("client_disconnects_total", reason="cross_protocol")


# -- the long run ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/fuzz-isolation",
        description="Start a Redis Cluster, an ambassador and a plain redis-server; send every "
        "command of the cluster's COMMAND table and hostile sequences through the ambassador "
        "and to the plain server from many clients at once, while a well-behaved client runs; "
        "report every reply that is not Redis's, every stall and every breaker opened.",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16, help="sessions at once")
    parser.add_argument("--rate", type=float, default=400.0, help="commands per second, at most")
    parser.add_argument("--control-seconds", type=float, default=5.0)
    parser.add_argument("--self-check", action="store_true",
                        help="a second plain redis-server in place of the ambassador: the "
                        "harness must find no difference")  # fmt: skip
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = int(os.environ.get("ISOLATION_SEED") or random.randrange(2**32))
    from conftest import Ambassador

    from redis_ambassador.local.cluster import LocalCluster
    from redis_ambassador.local.servers import LocalStandalone

    print(f"fuzz-isolation: seed {args.seed}, {args.sessions} sessions", flush=True)
    with contextlib.ExitStack() as stack:
        reference = stack.enter_context(LocalStandalone())
        ref = (reference.server.host, reference.port)
        options = dict(seed=args.seed, sessions=args.sessions, connections=args.connections,
                       rate=args.rate, control_seconds=args.control_seconds)  # fmt: skip
        if args.self_check:
            other = stack.enter_context(LocalStandalone())
            report = run(None, None, ref, subject=(other.server.host, other.port), **options)
        else:
            cluster = stack.enter_context(LocalCluster())
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            ambassador = Ambassador.start(cluster.seeds, logs, admin=True)
            stack.callback(ambassador.stop)
            report = run(ambassador, cluster, ref, **options)
    print(report.describe())
    return 1 if report.problems() else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["well-behaved"]:
        well_behaved_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main())
