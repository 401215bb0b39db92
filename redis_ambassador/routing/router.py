"""The router: each command to the node that owns its slot, or answered here, or refused.

The hot path is one loop over a read's commands: a dict lookup says whether the command has one
key at a fixed place, the key is hashed (CRC16, ``{hashtag}``), and the frame is queued on the
owner's connection for the client's lane. Everything else (several keys, no keys, local and
refused commands, unknown commands) takes ``_dispatch_other``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
from binascii import crc_hqx
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import hiredis

from redis_ambassador import errors
from redis_ambassador.commands.admin import ADMIN, ClusterView, Plan, To, uptime
from redis_ambassador.commands.cluster import REAL_VIEW
from redis_ambassador.commands.lanes import (
    CROSS_PROTOCOL,
    FORWARDED,
    connection_state_commands,
    sets_connection_state,
)
from redis_ambassador.commands.local import (
    BLOCKING_WITHOUT_KEYS,
    LOCAL,
    REFUSED,
    Hello,
    hello_reply,
    parse_hello,
)
from redis_ambassador.commands.merges import (
    FANOUT,
    SPLITTABLE,
    Gather,
    Merge,
    ScanPlan,
    split_by_slot,
)
from redis_ambassador.commands.policy import CommandPolicy
from redis_ambassador.commands.scripts import SOURCES, ScriptCache
from redis_ambassador.commands.state import ServerFacts
from redis_ambassador.commands.table import CommandSpec, CommandTable
from redis_ambassador.commands.transaction import (
    EXEC_FRAME,
    MULTI_FRAME,
    UNWATCH_FRAME,
    Transaction,
    check,
)
from redis_ambassador.config import Address, Config
from redis_ambassador.faults.inband import chaos_command
from redis_ambassador.faults.inject import Catch, Injector
from redis_ambassador.faults.rules import Command, Faults, Rule
from redis_ambassador.operations.histogram import LatencyHistogram
from redis_ambassador.operations.ratelimit import LimitedLog
from redis_ambassador.protocol.replies import OK, bulk
from redis_ambassador.protocol.requests import encode_command
from redis_ambassador.routing.monitor import monitor_line
from redis_ambassador.routing.pubsub import Placement, Subscriptions
from redis_ambassador.routing.reads import ReadPolicy
from redis_ambassador.server.auth import ClientAuth, parse_auth, unauthenticated_reply
from redis_ambassador.slots import SLOTS, key_slot, only_slot
from redis_ambassador.topology.discovery import discover
from redis_ambassador.topology.slotmap import ClusterUnreachable, SlotMap
from redis_ambassador.upstream.breaker import BreakerSettings, State
from redis_ambassador.upstream.connection import Entry, NodeConnection
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.pool import NodePool, Upstream
from redis_ambassador.upstream.retry import NEVER, Attempt, RetryBudget, RetryPolicy

if TYPE_CHECKING:
    from redis_ambassador.server.client import Batch, ClientConnection
    from redis_ambassador.topology.backends import OneShard

log = logging.getLogger(__name__)

_MOVED = b"-MOVED "
_NOSCRIPT = b"-NOSCRIPT "
_ASK = b"-ASK "
# Seconds between refreshes while some slots have no master or no node answers.
_INCOMPLETE_REFRESH = 1.0
# Seconds between log lines while topology refreshes keep failing.
_REPORT_EVERY = 10.0
# Refusals after which the slot may have a new master: ask for the topology.
# READONLY: a master demoted to replica by Sentinel (a cluster answers MOVED instead).
_TOPOLOGY_HINTS = (b"-CLUSTERDOWN", b"-MASTERDOWN", b"-READONLY")
# Blocking only when given BLOCK; without it they are ordinary reads.
_BLOCK_OPTION = {"xread": b"block", "xreadgroup": b"block"}
# Transaction commands answered or run by the router; all but UNWATCH (which Redis queues)
# and QUIT/RESET act at once even between MULTI and EXEC.
_TRANSACTION_COMMANDS = frozenset(["multi", "exec", "discard", "watch", "unwatch"])
_NOT_QUEUED = frozenset(["multi", "exec", "discard", "watch", "quit", "reset"])
_PUBSUB_COMMANDS = frozenset(
    ["subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"]
)
# Classic subscriptions and PUBLISH go to the owner of this slot (any node would do: messages
# reach the whole cluster; one node makes PUBLISH's count include the ambassador's subscribers).
_PUBSUB_SLOT = 0
_PRIVATE_CONNECTION = "subscriptions need a node connection of the client's own"
# Commands a server without cluster support refuses ("cluster support disabled"): with one
# server behind and cluster_view "real", it answers them itself.
_CLUSTER_ONLY = frozenset(["cluster", "readonly", "readwrite", "asking"])
# Connection-state commands Redis queues, harmless there: UNWATCH inside MULTI clears watches
# that EXEC would clear anyway, on the connection that runs the block (the client's own if it
# watches; a shared one holds none).
_QUEUED_ALIKE = frozenset(["unwatch"])
# Why a command that sets connection state is refused when the ambassador has no handler for it.
_SHARED_CONNECTION = (
    "it would change the state of a node connection shared by every client, and the "
    "ambassador does not emulate it"
)
# Commands that may carry a password: checked by the router, never queued in a transaction
# (AUTH there would change the user of a shared node connection) nor shown to MONITOR.
_SIGN_IN = frozenset(["auth", "hello"])


class RouterStats:
    """Counters the metrics read at scrape time; the hot path only bumps ``fast_commands``."""

    def __init__(self, now: float) -> None:
        # Plain single-key commands by name as sent (the fast path's keys: lower and upper
        # case), and every other command by its table name ("" for unknown ones).
        self.fast_commands: dict[bytes, int] = {}
        self.other_commands: dict[str, int] = {}
        self.errors: dict[str, int] = {}  # commands answered with an error, by name
        self.redirects = {"moved": 0, "ask": 0}
        self.retries = 0
        self.budget_exhausted = 0
        self.refreshes = {"ok": 0, "failed": 0}
        self.refreshed_at = now  # loop time of the last slot map applied
        self.epoch = 0  # config epoch of the view in use
        self.views = 0  # nodes whose views the last refresh compared
        self.latency: dict[str, LatencyHistogram] = {}  # sampled, by first command
        self.slow_requests = 0

    def observe(self, name: str, seconds: float) -> None:
        histogram = self.latency.get(name)
        if histogram is None:
            histogram = self.latency[name] = LatencyHistogram()
        histogram.observe(seconds)

    def track_fast(self, fast: dict[bytes, int]) -> None:
        """Count the fast path's names (keeping what was counted under the old ones)."""
        old = self.fast_commands
        self.fast_commands = {raw: old.get(raw, 0) for raw in fast}
        for raw, n in old.items():
            if raw not in fast and n:
                self.count(raw.decode().lower(), n)

    def count(self, name: str, n: int = 1) -> None:
        other = self.other_commands
        other[name] = other.get(name, 0) + n

    def error(self, name: str) -> None:
        """A command answered with an error ("" for one not in COMMAND)."""
        errors = self.errors
        errors[name or "unknown"] = errors.get(name or "unknown", 0) + 1

    def refreshed(self, now: float) -> None:
        self.refreshes["ok"] += 1
        self.refreshed_at = now

    def commands(self) -> dict[str, int]:
        """Commands routed or answered so far, by lower-case name ("unknown": not in COMMAND)."""
        total: dict[str, int] = {}
        for raw, n in self.fast_commands.items():
            if n:
                name = raw.decode().lower()
                total[name] = total.get(name, 0) + n
        for name, n in self.other_commands.items():
            key = name or "unknown"
            total[key] = total.get(key, 0) + n
        return total


class Router:
    """Maps commands onto node pools; follows redirections; keeps the slot table current."""

    def __init__(
        self,
        config: Config,
        upstream: Upstream,
        table: CommandTable,
        facts: ServerFacts,
        client_auth: ClientAuth,
        faults: Faults | None = None,
        backend: OneShard | None = None,
    ) -> None:
        self.pool_size = config.upstream.pool_size
        self.client_auth = client_auth
        # One server behind (standalone, Sentinel; None: a cluster): every key is in "slot 0",
        # so no command is refused or split for its keys' slots.
        self._one_shard = backend
        self._slot_of: Callable[[bytes], int] = key_slot if backend is None else only_slot
        # The error for a command no master can take now (once it has waited its turn).
        self._uncovered = (
            errors.CLUSTERDOWN_UNCOVERED if backend is None else errors.no_master(backend.name)
        )
        self._upstream = upstream
        self._table = table
        # Commands that set the state of the connection they run on (commands/lanes.py): each
        # is handled before it could reach a shared lane, or refused.
        self._connection_state = connection_state_commands(table)
        self.facts = facts
        self._owners: list[NodePool | None] = [None] * SLOTS
        self._masters: list[NodePool] = []
        self._range_starts: list[int] = []  # first slot of each master's slot range, ascending
        self._replicas: frozenset[Address] = frozenset()  # for commands to every node
        self._covered = 0  # slots with a master
        self._any = itertools.count()
        self._known: list[Address] = list(config.cluster.seeds)
        self._unreachable = False  # the last topology refresh reached no node at all
        self._refresh_wanted = anyio.Event()
        self._loop = asyncio.get_running_loop()
        self._budget = RetryBudget(0.0, 0.0, self._loop.time())
        self.stats = RouterStats(self._loop.time())
        self.monitors: list[ClientConnection] = []  # clients in MONITOR
        self._routing = False  # inside _route_other: its errors are counted by the caller
        # Commands waiting for a usable master (see _wait), woken early by _wake_parked.
        self._parked: dict[int, tuple[Address | None, Entry, asyncio.TimerHandle]] = {}
        self._park_keys = itertools.count()
        self._slow_log = LimitedLog(log, logging.WARNING, 10, "slow requests")
        self._reads = ReadPolicy(config.upstream.read_policy)
        self._readers: dict[Address, list[NodePool]] = {}  # each master's online replicas
        # Chaos: the fault rules, asked before a command that one of them may concern is sent.
        self.faults = faults
        self._injector = Injector(faults, config.chaos.log) if faults is not None else None
        if faults is not None:
            faults.on_change = self._rules_changed
        self.reconfigure(config)
        self._scripts = ScriptCache()
        self._placement = Placement(
            any_master=lambda: self._address_of(self._owners[_PUBSUB_SLOT] or self._any_master()),
            owner=lambda slot: self._address_of(self._owners[slot]),
            connect=upstream.connect,
            refresh=self.request_refresh,
            slot_of=self._slot_of,
            uncovered=self._uncovered,
        )
        upstream.on_redirect = self._redirected
        upstream.on_failure = self._connection_failed
        upstream.on_breaker = self._breaker_changed
        upstream.on_error = self._node_error

    def reconfigure(self, config: Config) -> None:
        """Apply the settings that take effect without a restart (at start, and on SIGHUP)."""
        self._config = config
        self.settings = config.server
        # Seconds after which a request is logged as slow (clients compare against it).
        self.slow_after = config.server.slow_log_threshold or math.inf
        self._retry = RetryPolicy.from_config(config.upstream)
        self._budget.ratio = config.upstream.retry_budget_percent / 100
        self._budget.floor = config.upstream.retry_budget_floor
        self._upstream.set_breaker_settings(BreakerSettings.from_config(config.upstream))
        self._split_cross_slot = config.commands.split_cross_slot
        # Local commands a node answers instead (CLUSTER INFO/SLOTS/... with cluster_view "real").
        self._to_node = REAL_VIEW if config.commands.cluster_view == "real" else frozenset()
        if self._to_node and self._one_shard is not None:
            self._to_node = self._cluster_only()
        self._policy = CommandPolicy.from_config(config.commands)
        for problem in self._policy.problems(self._table):
            log.warning("command policy: %s", problem)
        # Names (as sent, in either letter case) of plain commands with one key at a fixed index.
        fast: dict[bytes, int] = {}
        for spec in self._table.specs():
            if self._reads.spreads and "readonly" in spec.flags:
                continue  # the read policy picks their node
            if spec.single_key and self._plain(spec) and not self._policy.denies_always(spec.name):
                raw = spec.name.encode()
                fast[raw] = fast[raw.upper()] = spec.single_key
        self._all_fast = fast
        self._track_fast()

    def _track_fast(self) -> None:
        """The fast path's names: the plain single-key commands, but for those a fault rule may
        concern (they take the slow path, where the rules are asked)."""
        fast = self._all_fast
        if self.faults is not None and self.faults.rules:
            stake = self.faults.names_at_stake(spec.name for spec in self._table.specs())
            fast = {} if stake is None else {
                raw: k for raw, k in fast.items() if raw.decode().lower() not in stake
            }  # fmt: skip
        self._fast = fast
        self.stats.track_fast(fast)

    def _rules_changed(self) -> None:
        assert self.faults is not None
        self._track_fast()
        self._upstream.partition(self.faults.partitioned())

    def _cluster_only(self) -> frozenset[str]:
        """Every name (subcommands too) of the commands a server without cluster support
        answers with its own error."""
        specs = [spec for spec in self._table.specs() if spec.name in _CLUSTER_ONLY]
        return frozenset(
            name
            for spec in specs
            for name in (spec.name, *(s.name for s in spec.subcommands.values()))
        )

    @staticmethod
    def _plain(spec: CommandSpec) -> bool:
        return (
            spec.name not in LOCAL
            and spec.name not in REFUSED
            and spec.name not in _BLOCK_OPTION
            and "blocking" not in spec.flags
            and not spec.subcommands
            and not sets_connection_state(spec)
        )

    # -- dispatch ---------------------------------------------------------------------------------

    def dispatch(
        self,
        client: ClientConnection,
        batch: Batch,
        commands: list[list[bytes]],
        frames: list[bytes],
    ) -> None:
        """Send (or answer) every command of one read; replies land in ``batch`` by index."""
        if (
            client.transaction is not None
            or client.watching is not None
            or client.subscriptions is not None
            or client.reply_mode != "on"
            or self.monitors
            or not client.authenticated
        ):
            self._dispatch_each(client, batch, commands, frames, 0)
            return
        fast = self._fast.get
        counts = self.stats.fast_commands
        owners = self._owners
        lane = client.lane
        for i, args in enumerate(commands):
            k = fast(args[0])
            if k and len(args) > k:
                key = args[k]
                # Keys without '{' (123) hash whole; key_slot handles {hashtags}. An int needle:
                # ``b"{" in key`` costs eight times as much.
                pool = owners[key_slot(key) if 123 in key else crc_hqx(key, 0) & 16383]
                if pool is not None:
                    conn = pool.conns[lane]
                    # None while the node's circuit breaker is open: the slow path waits.
                    if not conn.closed or (conn := pool.lane(lane)) is not None:  # type: ignore[assignment]
                        frame = frames[i]
                        conn.queue.append((batch, i, frame, 0))
                        conn.out.append(frame)
                        if not conn.dirty:
                            conn.mark_dirty()
                        counts[args[0]] += 1
                        continue
            if self._dispatch_other(client, batch, i, commands, frames):
                self._dispatch_each(client, batch, commands, frames, i + 1)
                return

    def _dispatch_each(
        self,
        client: ClientConnection,
        batch: Batch,
        commands: list[list[bytes]],
        frames: list[bytes],
        start: int,
    ) -> None:
        """The slow path, one command at a time: inside a transaction or a WATCH, and after a
        command that changed how the rest goes (stopping where the batch was cut: QUIT, or
        commands held behind a blocking one)."""
        i = start
        while i < len(batch.replies):
            mode = client.reply_mode
            if mode != "on":
                batch.silence(i)
                if mode == "skip":
                    client.reply_mode = "on"
            self._dispatch_other(client, batch, i, commands, frames)
            i += 1

    def _dispatch_other(
        self,
        client: ClientConnection,
        batch: Batch,
        i: int,
        commands: list[list[bytes]],
        frames: list[bytes],
    ) -> bool:
        """Route anything but a plain single-key command; True when the rest of the read must
        take the slow path (the client's state changed, or the batch was cut). Counts it, and
        its error if the ambassador answered with one at once."""
        spec = self._table.resolve(commands[i])
        name = spec.name if spec is not None else ""
        self.stats.count(name)
        self._routing = True
        try:
            changed = self._route_other(client, batch, i, commands, frames, spec, name)
        finally:
            self._routing = False
        replies = batch.replies
        if i < len(replies):
            reply = replies[i]
            if reply is not None and reply[:1] == b"-":
                self.stats.error(name)
        return changed

    def _route_other(
        self,
        client: ClientConnection,
        batch: Batch,
        i: int,
        commands: list[list[bytes]],
        frames: list[bytes],
        spec: CommandSpec | None,
        name: str,
    ) -> bool:
        args = commands[i]
        frame = frames[i]
        base = name.split("|", 1)[0]
        if spec is None and args[0].lower() in CROSS_PROTOCOL:
            # An HTTP request sent to the Redis port: as Redis does, close the client before
            # anything it sent after this runs, whatever state it is in.
            client.cross_protocol_attack(args[0])
            batch.cut_after(i)
            return True
        if not client.authenticated:
            refusal = unauthenticated_reply(spec, args)
            if refusal is not None:
                batch.fill(i, refusal)
                return False
        if (
            self.monitors
            and spec is not None
            and "admin" not in spec.flags
            and base not in _SIGN_IN
        ):
            if base == "reset":
                self._stop_monitoring(client)  # as in Redis, it no longer sees its own RESET
            self._feed_monitors(client, spec, args)
        if client.transaction is not None and base not in _NOT_QUEUED:
            batch.fill(i, self._queue(client.transaction, spec, args, frame))
            return False
        if spec is None:
            if (
                self.faults is not None
                and self._config.chaos.in_band
                and args[0].lower() == b"chaos"
            ):
                token = self.settings.admin_token
                batch.fill(i, chaos_command(self.faults, client, args, token))
                return False
            # Unknown to the cluster: never sent to a node, where it would share a lane.
            batch.fill(i, errors.unknown_command(args))
            return False
        failed = check(spec, args) if spec.subcommands and base not in LOCAL else None
        if failed is not None:
            # A container command without a subcommand it knows (``CONFIG FOO``, ``OBJECT``):
            # Redis's error, from here.
            batch.fill(i, failed)
            return False
        if name in SOURCES:
            self._scripts.learn(name, args)
        if base in _TRANSACTION_COMMANDS:
            return self._transaction(client, batch, i, commands, frames, spec)
        if base in _PUBSUB_COMMANDS:
            return self._subscription(client, batch, i, spec, args)
        subscriptions = client.subscriptions
        if subscriptions is not None and client.protocol == 2 and subscriptions.active:
            # RESP2 subscribed mode: only pub/sub commands, PING, QUIT and RESET.
            if base == "ping" and not check(spec, args):
                subscriptions.ping(batch, i, args)
                return False
            if base not in ("ping", "quit", "reset"):
                batch.fill(i, errors.subscribed_context(name))
                return False
        if base == "reset":
            self._end_transaction(client)
            client.unsubscribed()
            self._stop_monitoring(client)
            client.sign_out()
        if name == "monitor":
            batch.fill(i, OK)
            if client not in self.monitors:
                self.monitors.append(client)
            return True
        if base == "quit":
            # Redis closes after +OK and never runs what the client sent after QUIT.
            client.close_after_reply(batch)
            batch.cut_after(i)
            batch.fill(i, OK)
            return True
        if name == "client|reply":
            return self._client_reply(client, batch, i, args)
        if base in _SIGN_IN:
            return self._sign_in(client, batch, i, commands, frames, base)
        local = LOCAL.get(base)
        if local is not None and name not in self._to_node:
            if self._injector is None or not self._inject_local(client, spec, args, batch, i):
                batch.fill(i, local(client, args, self.facts))
            return base == "reset"  # the client's identity and protocol may have changed
        if name == "acl|whoami":  # who the client signed in as (the rest of ACL is refused)
            batch.fill(i, bulk(client.user) if len(args) == 2 else errors.wrong_arity(name))
            return False
        reason = REFUSED.get(name) or REFUSED.get(base)
        if reason is not None:
            batch.fill(i, errors.not_supported(args, reason))
            return False
        denied = self._policy.check(name, args)
        if denied is not None:
            batch.fill(i, denied)
            return False
        planner = ADMIN.get(name)
        if planner is not None:
            self._admin(client, batch, i, frame, planner(args, self._view(client)))
            return False
        if self._blocks(spec, base, args):
            return self._blocking(client, batch, i, commands, frames, spec)
        if name in self._connection_state and name not in self._to_node:
            # It would change a connection every client shares, and nothing here emulates it.
            # (``_to_node``'s READONLY and ASKING go to a server without cluster support,
            # which refuses them: they change nothing there.)
            batch.fill(i, errors.not_supported(args, _SHARED_CONNECTION))
            return False
        merge = FANOUT.get(name) if self._one_shard is None else None
        if merge is not None:
            self._fan_out(batch, i, [(pool, frame) for pool in self._masters], merge)
            return False
        if name == "scan" and self._one_shard is None:
            self._scan(batch, i, args)
            return False
        if name == "publish":
            # To the node the ambassador's subscribers listen on, so the count includes them.
            pool = self._owners[_PUBSUB_SLOT]
            if pool is not None:
                self._deliver(pool, client.lane, (batch, i, frame, 0))
                return False
        keys = spec.keys(args)
        if not keys:
            # No keys, or keys that cannot be found (bad arity): any master answers as Redis would.
            self._send_anywhere(client, batch, i, frame, spec)
            return False
        slot_of = self._slot_of
        slot = slot_of(keys[0])
        for key in keys[1:]:
            if slot_of(key) != slot:
                self._cross_slot(batch, i, name, args)
                return False
        pool = self._owners[slot]
        if pool is None:
            # No master serves the slot (a failover in progress?): wait for one, within the
            # retry budget, rather than fail at once.
            self.request_refresh()
            if not self._wait(None, (batch, i, frame, 0)):
                batch.fill(i, self._uncovered)
            return False
        if self._reads.spreads and "readonly" in spec.flags and client.watching is None:
            reader = self._reads.choose(pool, self._readers.get(pool.address, ()), _usable)
            if reader is None:
                batch.fill(i, errors.no_replica(pool.name))
                return False
            pool = reader
        if self._injector is not None and self._inject(
            client, spec, keys, slot, pool, batch, i, frame
        ):
            return False
        self._send_to(client, pool, batch, i, frame)
        return False

    def _send_to(
        self, client: ClientConnection, pool: NodePool, batch: Batch, i: int, frame: bytes
    ) -> None:
        """Send on the client's connection to a node: its lane of the pool, or the connection
        holding its WATCHes (so its commands there run in the order sent, after the WATCH)."""
        watching = client.watching
        if watching is not None and watching.address == pool.address and not watching.closed:
            watching.send(batch, i, frame)
            return
        self._deliver(pool, client.lane, (batch, i, frame, 0))

    def _deliver(self, pool: NodePool, lane: int, entry: Entry) -> None:
        """Send on a lane of the pool; while the node's circuit breaker is open, wait for its
        slot to get a usable master instead (a failover), or fail fast."""
        conn = pool.lane(lane)
        if conn is not None:
            conn.send(*entry)
            return
        self.request_refresh()
        if not self._wait(pool.address, entry):
            self._fail(entry, errors.node_unavailable(pool.name, "circuit breaker open"))

    def _fail(self, entry: Entry, reply: bytes) -> None:
        """Answer a command with the ambassador's error; counted here when that happens after
        the command was routed (at routing, ``_dispatch_other`` counts it)."""
        batch, index, frame, _ = entry
        assert batch is not None
        batch.fill(index, reply)
        if not self._routing:
            self._node_error(frame)

    def _private(self, client: ClientConnection, address: Address) -> NodeConnection:
        """The client's own connection to a node, opened on first use, in its protocol."""
        conn = client.private.get(address)
        if (
            conn is None
            or conn.closed
            or (conn.protocol != client.protocol and not conn.pending)
            # The client signed in as another user (a reload's new credentials are the same
            # user's: its connection already open stays).
            or not self._upstream.signs_in_as(conn.auth, client.block)
        ):
            if conn is not None:
                conn.close()
            conn = client.private[address] = self._upstream.private(
                address, client.protocol, client.upstream_auth
            )
        return conn

    # -- authentication (server/auth.py) -----------------------------------------------------

    def upstream_auth(self, block: int) -> bytes:
        """The AUTH frame a client's own node connection signs in with, opened now for a client
        on the lanes of ``block``: its ACL user's, or for block 0 the ambassador's (current)."""
        return self._upstream.blocks[block].auth_frame

    def _sign_in(
        self,
        client: ClientConnection,
        batch: Batch,
        i: int,
        commands: list[list[bytes]],
        frames: list[bytes],
        base: str,
    ) -> bool:
        """AUTH, and HELLO (which may carry AUTH), as Redis answers them; in ACL mode the
        cluster checks the user, and the client's later commands wait for its verdict."""
        args = commands[i]
        hello = None
        if base == "hello":
            hello = parse_hello(args)
            if isinstance(hello, bytes):
                batch.fill(i, hello)
                return False
            if hello.auth is None:
                if not client.authenticated:
                    batch.fill(i, errors.NOAUTH_HELLO)
                    return False
                batch.fill(i, hello_reply(client, hello, self.facts))
                return True  # a new protocol: the rest of the read uses its lanes
            user: bytes | None = hello.auth[0]
            password = hello.auth[1]
        else:
            parsed = parse_auth(args)
            if isinstance(parsed, bytes):
                batch.fill(i, parsed)
                return False
            user, password = parsed
        auth = self.client_auth
        if auth.by_cluster:
            return self._verify(client, batch, i, commands, frames, user, password, hello)
        verdict = auth.check(user, password)
        if verdict.failed:
            if not self._refuse_auth(batch, i, verdict.reply):
                return False
            client.hold(batch, i + 1, commands, frames)  # guesses on a connection never overlap
            return True
        if not verdict.signed_in:
            batch.fill(i, verdict.reply)
            return False
        client.sign_in(b"default", 0)
        batch.fill(i, hello_reply(client, hello, self.facts) if hello else verdict.reply)
        return True

    def _verify(
        self,
        client: ClientConnection,
        batch: Batch,
        i: int,
        commands: list[list[bytes]],
        frames: list[bytes],
        user: bytes | None,
        password: bytes,
        hello: Hello | None,
    ) -> bool:
        """ACL mode: AUTH on a master, over a connection opened for it (an AUTH on a shared
        one would change its user); what the client sent after it (and reading more) waits
        for the verdict."""
        master = self._any_master()
        if master is None:
            batch.fill(i, self._uncovered)
            return False
        credentials = Credentials(user if user is not None else b"default", password)
        conn = self._upstream.private(master.address, 2, b"")
        check = _Verification(self, conn, batch, i, credentials, hello)
        conn.send(
            check, 0, encode_command([b"AUTH", *([user] if user is not None else []), password])
        )  # type: ignore[arg-type]
        client.hold(batch, i + 1, commands, frames)
        return True

    def verified(self, check: _Verification, reply: bytes) -> None:
        """The cluster's verdict on an ACL-mode AUTH: the client is in as that user (its
        commands now travel that user's lanes), or it gets the node's error."""
        batch = check.batch
        client = batch.client
        if reply.startswith(b"+OK"):
            block = self._upstream.block_for(check.credentials)
            client.sign_in(check.credentials.username, block)
            if check.hello is not None:
                reply = hello_reply(client, check.hello, self.facts)
        elif reply.startswith(b"-WRONGPASS"):
            self._refuse_auth(batch, check.index, reply)
            return
        batch.fill(check.index, reply)

    def _refuse_auth(self, batch: Batch, i: int, reply: bytes) -> bool:
        """A failed AUTH, counted on its connection: answered now, or (True) late once the
        connection has failed too often; the caller holds what the client sent after it."""
        client = batch.client
        client.failed_auths += 1
        failures = self.client_auth.failures
        wait = failures.failed(client.describe(), client.failed_auths, self._loop.time())
        if not wait:
            batch.fill(i, reply)
            return False
        batch.read_at = 0.0  # slow on purpose: not a slow request
        self._loop.call_later(wait, batch.fill, i, reply)
        return True

    # -- MONITOR (routing/monitor.py) -------------------------------------------------------

    def _feed_monitors(
        self, client: ClientConnection, spec: CommandSpec, args: list[bytes]
    ) -> None:
        """Show a command to every client in MONITOR (while any is, every client takes the
        slow path, as Redis's MONITOR costs every command too)."""
        line = monitor_line(time.time(), client.peer, args, self._destination(client, spec, args))
        monitors = self.monitors
        if any(monitor.gone for monitor in monitors):
            monitors = self.monitors = [monitor for monitor in monitors if not monitor.gone]
        for monitor in monitors:
            monitor.push(line)

    def _stop_monitoring(self, client: ClientConnection) -> None:
        if client in self.monitors:
            self.monitors = [monitor for monitor in self.monitors if monitor is not client]

    def _destination(self, client: ClientConnection, spec: CommandSpec, args: list[bytes]) -> str:
        """Where a command goes, as MONITOR shows it (before any redirection)."""
        name = spec.name
        base = name.split("|", 1)[0]
        if (
            base == "exec"
            and client.transaction is not None
            and client.transaction.slot is not None
        ):
            return _node_named(self._owners[client.transaction.slot])
        if (
            (base in LOCAL and name not in self._to_node)
            or base in _TRANSACTION_COMMANDS
            or name in REFUSED
            or base in REFUSED
            or base in ("quit", "reset")
        ):
            return "ambassador"
        if name in FANOUT or name in ADMIN or name == "scan":
            return "masters"
        keys = spec.keys(args)
        if keys:
            return _node_named(self._owners[key_slot(keys[0])])
        return "any master"

    @staticmethod
    def _client_reply(client: ClientConnection, batch: Batch, i: int, args: list[bytes]) -> bool:
        """CLIENT REPLY ON|OFF|SKIP: which replies the client gets (the commands all run)."""
        if len(args) != 3:
            batch.fill(i, errors.wrong_arity("client|reply"))
            return False
        mode = bytes(args[2]).lower()
        if mode == b"on":
            client.reply_mode = "on"
            if batch.silent is not None:
                batch.silent.discard(i)  # ON is answered, even after OFF
        elif mode in (b"off", b"skip"):
            client.reply_mode = mode.decode()
            batch.silence(i)
        else:
            batch.fill(i, errors.SYNTAX)
            return False
        batch.fill(i, OK)
        return True

    @staticmethod
    def _address_of(pool: NodePool | None) -> Address | None:
        return pool.address if pool is not None else None

    # -- pub/sub ------------------------------------------------------------------------------

    def _subscription(
        self, client: ClientConnection, batch: Batch, i: int, spec: CommandSpec, args: list[bytes]
    ) -> bool:
        """(P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE, on the client's subscriber connections."""
        failed = check(spec, args)
        if failed is not None:
            batch.fill(i, failed)
            return False
        subscriptions = client.subscriptions
        if subscriptions is None:
            subscriptions = client.subscriptions = Subscriptions(client, self._placement)
        if spec.name in ("ssubscribe", "sunsubscribe"):
            failed = subscriptions.shard(batch, i, args)
        else:
            failed = subscriptions.classic(batch, i, args)
        if failed is not None:
            batch.fill(i, failed)
            if subscriptions.idle:
                client.unsubscribed()
        return True

    # -- blocking commands ------------------------------------------------------------------

    def _blocking(
        self,
        client: ClientConnection,
        batch: Batch,
        i: int,
        commands: list[list[bytes]],
        frames: list[bytes],
        spec: CommandSpec,
    ) -> bool:
        """A blocking command runs on a connection of the client's own, so it never stalls the
        shared ones; as on Redis, it starts after the client's earlier commands are answered,
        and nothing the client sent after it runs before it is answered."""
        if client.waiting_before(batch, i):
            client.hold(batch, i, commands, frames)
            return True
        args = commands[i]
        keys = spec.keys(args)
        if not keys:
            # WAIT/WAITAOF count the acknowledgements of this connection's writes, which the
            # client made over shared connections: not something a private connection can say.
            batch.fill(i, errors.not_supported(args, BLOCKING_WITHOUT_KEYS))
            return False
        pool = self._owner_of(batch, i, keys)
        if pool is None:
            return False
        self._private(client, pool.address).send(batch, i, frames[i])
        batch.read_at = 0.0  # it may block as long as it says: not a slow request
        if i + 1 < len(batch.replies):
            client.hold(batch, i + 1, commands, frames)
            return True
        return False

    # -- transactions -------------------------------------------------------------------------

    def _queue(
        self, tx: Transaction, spec: CommandSpec | None, args: list[bytes], frame: bytes
    ) -> bytes:
        """A command between MULTI and EXEC: checked as Redis checks it, then queued."""
        failed = check(spec, args)
        if failed is not None or spec is None:
            return tx.fail(failed or errors.unknown_command(args))
        name = spec.name
        base = name.split("|", 1)[0]
        if base in _PUBSUB_COMMANDS:
            return tx.fail(errors.not_in_transaction(args, _PRIVATE_CONNECTION))
        if (base in LOCAL or base in _SIGN_IN) and base not in FORWARDED:
            return tx.fail(errors.not_in_transaction(args, "the ambassador answers it itself"))
        if name in self._connection_state and name not in _QUEUED_ALIKE:
            return tx.fail(errors.not_in_transaction(args, _SHARED_CONNECTION))
        denied = self._policy.check(name, args)
        if denied is not None:
            return tx.fail(denied)
        reason = REFUSED.get(name) or REFUSED.get(base)
        if (
            reason is None
            and self._one_shard is None
            and (name in FANOUT or name in ADMIN or name == "scan")
        ):
            reason = "it needs every node of the cluster"
        if reason is not None:
            return tx.fail(errors.not_in_transaction(args, reason))
        keys = spec.keys(args) or []
        return tx.queue(frame, [self._slot_of(key) for key in keys])

    def _transaction(
        self,
        client: ClientConnection,
        batch: Batch,
        i: int,
        commands: list[list[bytes]],
        frames: list[bytes],
        spec: CommandSpec,
    ) -> bool:
        """A transaction command, kept in order with the client's other commands although a
        WATCH moves them to a connection of the client's own and EXEC/UNWATCH/DISCARD back."""
        watching = client.watching
        if (
            spec.name == "watch"
            and watching is None
            and client.transaction is None
            and client.waiting_before(batch, i)
        ):
            # What the client sent before WATCH must have run before the watch begins.
            client.hold(batch, i, commands, frames)
            return True
        changed = self._transaction_control(client, batch, i, spec, commands[i], frames[i])
        if watching is not None and client.watching is None and i + 1 < len(batch.replies):
            # Back on the shared connections: nothing may overtake what is still in flight on
            # the private one (EXEC's reply included).
            client.hold(batch, i + 1, commands, frames)
            return True
        return changed

    def _transaction_control(
        self,
        client: ClientConnection,
        batch: Batch,
        i: int,
        spec: CommandSpec,
        args: list[bytes],
        frame: bytes,
    ) -> bool:
        """MULTI, EXEC, DISCARD, WATCH, UNWATCH; True when the client's state changed."""
        failed = check(spec, args)
        if failed is not None:
            if client.transaction is not None:
                failed = client.transaction.fail(failed)
            batch.fill(i, failed)
            return False
        name = spec.name
        tx = client.transaction
        if name == "multi":
            if tx is not None:
                batch.fill(i, errors.MULTI_NESTED)
                return False
            client.transaction = Transaction(client.watched_slot)
            batch.fill(i, OK)
            return True
        if name == "watch":
            if tx is not None:
                batch.fill(i, errors.WATCH_IN_MULTI)
                return False
            return self._watch(client, batch, i, spec.keys(args) or [], frame)
        if name == "unwatch":
            watching = client.watching
            self._end_transaction(client)
            if watching is not None and not watching.closed:
                watching.send(batch, i, frame)
            else:
                batch.fill(i, OK)
            return False
        if tx is None:
            batch.fill(
                i, errors.EXEC_WITHOUT_MULTI if name == "exec" else errors.DISCARD_WITHOUT_MULTI
            )
            return False
        if name == "discard":
            self._end_transaction(client)
            batch.fill(i, OK)
            return False
        self._exec(client, batch, i, tx)
        return False

    def _watch(
        self, client: ClientConnection, batch: Batch, i: int, keys: list[bytes], frame: bytes
    ) -> bool:
        """WATCH goes to the keys' node on the client's own connection; MULTI/EXEC follow it."""
        slot = self._slot_of(keys[0])
        if client.watched_slot not in (None, slot):
            batch.fill(i, errors.CROSSSLOT)
            return False
        pool = self._owner_of(batch, i, keys)
        if pool is None:
            return False
        conn = self._private(client, pool.address)
        conn.send(batch, i, frame)
        client.watching = conn
        client.watched_slot = slot
        return True

    def _exec(self, client: ClientConnection, batch: Batch, i: int, tx: Transaction) -> None:
        """Send the transaction as one block; only EXEC's reply is the client's."""
        watching = client.watching
        self._end_transaction(client, unwatch=False)
        if tx.dirty is not None:
            if watching is not None:
                watching.send(None, 0, UNWATCH_FRAME)
            batch.fill(i, errors.EXECABORT)
            return
        if watching is not None:
            if watching.closed:
                # The watches died with their connection: nothing can say the keys are unchanged.
                batch.fill(i, errors.node_unavailable(str(watching.address), watching.failure))
                return
            conn = watching
        else:
            pool = self._owners[tx.slot] if tx.slot is not None else self._any_master()
            if pool is None:
                self.request_refresh()
                batch.fill(i, self._uncovered)
                return
            lane = pool.lane(client.lane)
            if lane is None:
                batch.fill(i, errors.node_unavailable(pool.name, "circuit breaker open"))
                return
            conn = lane
        # Back to back in one write: no other client's command can land inside the block.
        conn.send(None, 0, MULTI_FRAME)
        for queued in tx.frames:
            conn.send(None, 0, queued)
        conn.send(batch, i, EXEC_FRAME, NEVER)

    @staticmethod
    def _end_transaction(client: ClientConnection, unwatch: bool = True) -> None:
        """Leave MULTI and WATCH (EXEC, DISCARD, UNWATCH, RESET)."""
        watching = client.watching
        client.transaction = None
        client.watching = None
        client.watched_slot = None
        if unwatch and watching is not None and not watching.closed:
            watching.send(None, 0, UNWATCH_FRAME)

    def _cross_slot(self, batch: Batch, i: int, name: str, args: list[bytes]) -> None:
        """Split a multi-key command whose keys span slots, if it may be; else CROSSSLOT."""
        step = SPLITTABLE.get(name) if self._split_cross_slot else None
        if step is None or (len(args) - 1) % step:
            batch.fill(i, errors.CROSSSLOT)
            return
        parts, merge = split_by_slot(args, step)
        self._fan_out(batch, i, [(self._owners[slot], frame) for slot, frame in parts], merge)

    def _fan_out(
        self, batch: Batch, i: int, parts: list[tuple[NodePool | None, bytes]], merge: Merge
    ) -> None:
        """Send each part to its pool (None: no master serves it yet) and merge the replies."""
        if not parts:
            self.request_refresh()
            batch.fill(i, self._uncovered)
            return
        gather = Gather(batch, i, len(parts), merge)
        for j, (pool, frame) in enumerate(parts):
            if pool is not None:
                self._deliver(pool, gather.lane, (gather, j, frame, 0))  # type: ignore[arg-type]
                continue
            self.request_refresh()
            if not self._wait(None, (gather, j, frame, 0)):  # type: ignore[arg-type]
                gather.fill(j, self._uncovered)

    def _scan(self, batch: Batch, i: int, args: list[bytes]) -> None:
        """SCAN walks the masters one after another behind one cursor (see ScanPlan)."""
        if len(args) < 2:
            batch.fill(i, errors.wrong_arity("scan"))
            return
        starts = self._range_starts
        plan = ScanPlan(starts, args[1])
        if not plan.valid:
            batch.fill(i, errors.INVALID_CURSOR if starts else self._uncovered)
            return
        self._fan_out(batch, i, [(self._owners[plan.slot], plan.request(args))], plan.merge)

    # -- admin commands (commands/admin.py) ----------------------------------------------------

    def _admin(
        self, client: ClientConnection, batch: Batch, i: int, frame: bytes, plan: Plan
    ) -> None:
        """Send an admin command where its plan says; merge the replies as it says."""
        if plan.to is To.NOWHERE:
            batch.fill(i, plan.reply)
        elif plan.to is To.ANY:
            self._send_anywhere(client, batch, i, frame)
        elif plan.to is To.ANY_MERGED:
            assert plan.merge is not None
            self._fan_out(batch, i, [(self._any_master(), frame)], plan.merge)
        elif plan.to is To.KEYS:
            self._send_to_keys(client, batch, i, frame, plan.keys)
        else:
            assert plan.merge is not None
            pools = self._masters if plan.to is To.MASTERS else self._every_node()
            if not pools:
                if plan.always:
                    batch.fill(i, bytes(plan.merge([])))
                    return
                self.request_refresh()
                batch.fill(i, self._uncovered)
                return
            # Each part is for its node: one that fails answers its error (the merge decides)
            # instead of going to another node (a second CONFIG SET there, its SLOWLOG twice).
            gather = Gather(batch, i, len(pools), plan.merge)
            for j, pool in enumerate(pools):
                self._deliver(pool, gather.lane, (gather, j, frame, NEVER))  # type: ignore[arg-type]

    def _send_to_keys(
        self, client: ClientConnection, batch: Batch, i: int, frame: bytes, keys: tuple[bytes, ...]
    ) -> None:
        """To the master of the keys' slot (keys the command table does not know: DEBUG's)."""
        pool = self._owner_of(batch, i, keys)
        if pool is not None:
            self._send_to(client, pool, batch, i, frame)

    def _owner_of(self, batch: Batch, i: int, keys: Sequence[bytes]) -> NodePool | None:
        """The master of the keys' one slot; None after answering CROSSSLOT (keys in several
        slots) or CLUSTERDOWN (no master serves the slot now: a refresh is asked for)."""
        slot_of = self._slot_of
        slot = slot_of(keys[0])
        if any(slot_of(key) != slot for key in keys[1:]):
            batch.fill(i, errors.CROSSSLOT)
            return None
        pool = self._owners[slot]
        if pool is None:
            self.request_refresh()
            batch.fill(i, self._uncovered)
        return pool

    def answered(self, client: ClientConnection, batch: Batch, elapsed: float) -> None:
        """A sampled or slow batch's replies were written ``elapsed`` seconds after it was
        read: the latency histogram, the slow log."""
        spec = self._table.resolve(batch.first)
        name = spec.name if spec is not None else "unknown"
        if batch.sampled:
            self.stats.observe(name, elapsed)
        if elapsed >= self.slow_after:
            self._slow(client, batch, name, elapsed)

    def _slow(self, client: ClientConnection, batch: Batch, name: str, elapsed: float) -> None:
        self.stats.slow_requests += 1
        commands = len(batch.replies)
        what = f"'{name}'" if commands == 1 else f"{commands} commands, the first '{name}'"
        self._slow_log.log(
            self._loop.time(), "slow request: %.1f ms for %s from client %s",
            elapsed * 1000, what, client.describe(),
        )  # fmt: skip

    def unready(self) -> str | None:
        """Why the ambassador cannot serve every slot now (None: it can): /readyz."""
        if self._covered < SLOTS and self._one_shard is not None:
            return f"no master (backend {self._one_shard.name})"
        if self._covered < SLOTS:
            return f"{SLOTS - self._covered} of {SLOTS} slots have no master"
        down = sorted(pool.name for pool in self._masters if not pool.breaker.allows)
        if down:
            return f"masters unreachable (circuit breaker open): {', '.join(down)}"
        return None

    @property
    def slots_covered(self) -> int:
        return self._covered

    def _subscribers_leave(self, demoted: set[Address]) -> None:
        """With one server behind, a master replaced by a failover may still run (Sentinel
        demotes it seconds later) and its subscribers would miss what is published on the new
        one: move them now."""
        for client in self.facts.clients:  # type: ignore[attr-defined]
            if client.subscriptions is not None:
                for address in demoted:
                    client.subscriptions.leave(address)

    def backend_masters(self) -> tuple[str, list[str]]:
        """The backend (``cluster.backend``) and the masters commands go to now."""
        backend = "cluster" if self._one_shard is None else self._one_shard.name
        return backend, [pool.name for pool in self._masters]

    def _every_node(self) -> list[NodePool]:
        """Masters, then replicas (their pools open on first use and stay while they do)."""
        replicas = sorted(self._replicas, key=str)
        return [*self._masters, *(self._upstream.pool(address) for address in replicas)]

    def _view(self, client: ClientConnection) -> ClusterView:
        return ClusterView(
            protocol=client.protocol,
            port=client.local_address[1],
            version=self.facts.version,
            clients=len(self.facts.clients),
            masters=tuple(str(pool.address) for pool in self._masters),
            replicas=len(self._replicas),
            slots_covered=self._covered,
            uptime=uptime(),
            breakers_open=sum(
                1 for pool in self._upstream.pools.values() if not pool.breaker.allows
            ),
            unready=self.unready() or "",
        )

    @staticmethod
    def _blocks(spec: CommandSpec, base: str, args: list[bytes]) -> bool:
        option = _BLOCK_OPTION.get(base)
        if option is not None:
            return any(bytes(a).lower() == option for a in args[1:])
        return "blocking" in spec.flags

    def _send_anywhere(
        self,
        client: ClientConnection,
        batch: Batch,
        i: int,
        frame: bytes,
        spec: CommandSpec | None = None,
    ) -> None:
        pool = self._any_master()
        if pool is None:
            self.request_refresh()
            batch.fill(i, self._uncovered)
            return
        if (
            spec is not None
            and self._injector is not None
            and self._inject(client, spec, [], None, pool, batch, i, frame)
        ):
            return
        self._send_to(client, pool, batch, i, frame)

    # -- chaos (faults/) --------------------------------------------------------------------

    def _inject(
        self,
        client: ClientConnection,
        spec: CommandSpec,
        keys: list[bytes],
        slot: int | None,
        pool: NodePool,
        batch: Batch,
        i: int,
        frame: bytes,
    ) -> bool:
        """A fault rule's turn before a command goes to ``pool``; True if one took it over.
        (Not for a client in WATCH: its commands ride a connection of its own to the node.)"""
        assert self._injector is not None
        if client.watching is not None:
            return False

        def send(target: Batch | Catch) -> None:
            self._send_to(client, pool, target, i if target is batch else 0, frame)  # type: ignore[arg-type]

        def redirect(rule: Rule) -> None:
            self._forge_redirect(rule, client, pool, (batch, i, frame, 0), slot)

        command = Command(
            spec.name, spec.categories, keys, slot, pool.name, pool.address in self._replicas,
            client.name,
        )  # fmt: skip
        return self._injector.inject(client, command, batch, i, send, redirect)

    def _inject_local(
        self, client: ClientConnection, spec: CommandSpec, args: list[bytes], batch: Batch, i: int
    ) -> bool:
        """A fault rule's turn before the ambassador answers a command itself (PING, ECHO,
        CLIENT ..., HELLO): only rules that name the command act on these."""
        assert self._injector is not None
        local = LOCAL[spec.name.split("|", 1)[0]]

        def answer(target: Batch | Catch) -> None:
            target.fill(i if target is batch else 0, local(client, args, self.facts))

        command = Command(spec.name, spec.categories, client=client.name)
        # No node to be redirected from: a forged redirection is answered as usual.
        return self._injector.inject(client, command, batch, i, answer, lambda _: answer(batch))

    def _forge_redirect(
        self, rule: Rule, client: ClientConnection, pool: NodePool, entry: Entry, slot: int | None
    ) -> None:
        """Answer for the node with the rule's MOVED or ASK, and follow it as a real one."""
        to = rule.spec["to"]
        if to == "right":
            target = pool.address
        elif to == "wrong":
            others = [master.address for master in self._masters if master is not pool]
            target = others[0] if others else pool.address
        else:
            target = Address.parse(to)
        kind = b"MOVED" if rule.spec["redirect"] == "moved" else b"ASK"
        via = pool.lane(client.lane)
        if via is None:  # the node's breaker is open: no redirection to pretend
            self._deliver(pool, client.lane, entry)
            return
        self._redirected(entry, b"-%s %d %s\r\n" % (kind, slot or 0, str(target).encode()), via)

    def _any_master(self) -> NodePool | None:
        """Masters in turn, for keyless commands any of them answers alike (skipping those
        whose breaker is open while another is usable)."""
        masters = self._masters
        if not masters:
            return None
        start = next(self._any)
        for k in range(len(masters)):
            pool = masters[(start + k) % len(masters)]
            if pool.breaker.allows:
                return pool
        return masters[start % len(masters)]

    # -- redirections, retries and failures ---------------------------------------------------

    def _redirected(self, entry: Entry, reply: bytes, via: NodeConnection) -> None:
        batch, index, frame, hops = entry
        if batch is None:
            return
        if reply.startswith(_NOSCRIPT):
            self._load_script(entry, reply, via)
            return
        if reply.startswith(_MOVED) or reply.startswith(_ASK):
            attempt = self._retry.attempt(hops, self._loop.time())
            if not self._retry.follows_redirect(attempt):
                self._fail(entry, errors.too_many_redirects(reply))
                return
            attempt.redirects += 1
            self.stats.redirects["moved" if reply.startswith(_MOVED) else "ask"] += 1
            _, slot, target = reply.split()
            address = self._config.cluster.address_map(_redirect_address(target, via.address))
            conn = None
            if self._upstream.usable(address):
                pool = self._upstream.pool(address)
                conn = self._follow(via, batch, pool)
            if conn is None:
                # Pointed at a node whose breaker is open (its replica is not promoted yet):
                # wait for a usable master instead of hopping to it again and again.
                self.request_refresh()
                if not self._wait(via.address, (batch, index, frame, attempt)):
                    self._fail(entry, errors.node_unavailable(str(address), "circuit breaker open"))
                return
            if reply.startswith(_MOVED):
                self._owners[int(slot)] = pool
                self.request_refresh()
                conn.send(batch, index, frame, attempt)
            else:
                conn.send_asking(batch, index, frame, attempt)
            return
        # TRYAGAIN (slot mid-migration), CLUSTERDOWN (a failover in progress), LOADING (a
        # restarted node reading its data), MASTERDOWN (a replica without its master): the
        # command did not run; ask again shortly, and let a MOVED then point at the new owner.
        if reply.startswith(_TOPOLOGY_HINTS):
            self.request_refresh()
        if via.private or not self._later(via.address, entry):
            self._fail(entry, reply)  # the node's refusal, once the retries are spent

    def _load_script(self, entry: Entry, reply: bytes, via: NodeConnection) -> None:
        """EVALSHA of a script this node lacks: load it there and run the EVALSHA again, back
        to back on the same connection; a script never seen, or still missing, gets NOSCRIPT."""
        batch, index, frame, hops = entry
        assert batch is not None
        attempt = self._retry.attempt(hops, self._loop.time())
        load = self._scripts.load_for(_parse(frame))
        if load is None or not self._retry.follows_redirect(attempt):
            self._fail(entry, reply)
            return
        attempt.redirects += 1
        via.send(None, 0, load)
        via.send(batch, index, frame, attempt)

    def _follow(self, via: NodeConnection, batch: Batch, pool: NodePool) -> NodeConnection | None:
        """Where a redirected command goes: the client's lane of the new node's pool, or, if it
        came over the client's own connection (blocking, WATCH), its own one to the new node."""
        if not via.private:
            return pool.lane(batch.client.lane)
        client = batch.client
        conn = self._private(client, pool.address)
        if client.watching is via:
            client.watching = conn
        return conn

    def _connection_failed(
        self, conn: NodeConnection, unsent: list[Entry], sent: list[Entry]
    ) -> None:
        if conn.closing:
            return  # closed on purpose: its client left, or the ambassador is stopping
        self.request_refresh()
        if conn.private:
            # A client's own connection is not replaced behind its back (a WATCH would be lost).
            sent = sent + unsent
            unsent = []
        # A command that reached the node may have run: it is sent again only if it cannot
        # change data (or is declared idempotent), and had not already waited out the command
        # timeout; otherwise the client is told.
        replay = not conn.private and not conn.timed_out
        for entry in sent:
            batch, _, frame, hops = entry
            if batch is None:
                continue
            if not replay or not self._replays(frame, hops) or not self._later(None, entry):
                self._fail(entry, errors.node_unavailable(str(conn.address), conn.failure))
        # Commands never written are safe to send again (after a pause, to let the topology
        # refresh; if the slot moved, the node's MOVED leads on).
        for entry in unsent:
            if entry[0] is not None and not self._later(conn.address, entry):
                self._fail(entry, errors.node_unavailable(str(conn.address), "cannot connect"))

    def _replays(self, frame: bytes, hops: Attempt | int) -> bool:
        """Whether a command whose reply was lost may be sent again (read-only, or declared
        idempotent; never EXEC, nor an admin command meant for one node)."""
        if hops is NEVER:
            return False
        args = _parse(frame)
        spec = self._table.resolve(args) if args else None
        return spec is not None and self._retry.replays_after_loss(spec.name, spec.flags)

    def _node_error(self, frame: bytes) -> None:
        """A command (its frame) was answered with an error: a node's (not a redirection), or
        the ambassador's after routing it. Count it by name."""
        args = _parse(frame)
        spec = self._table.resolve(args) if args else None
        self.stats.error(spec.name if spec is not None else "")

    def _breaker_changed(self, pool: NodePool, state: State) -> None:
        # Open: its slots may get a new master (failover). Closed: it is back, maybe as a
        # replica now. Either way, ask the cluster.
        if state is not State.HALF_OPEN:
            self.request_refresh()
        if state is State.CLOSED:
            self._wake_parked()

    def _later(self, address: Address | None, entry: Entry) -> bool:
        """Send ``entry`` again after a backoff with jitter; False if the policy gives up (the
        retry budget is charged when it is sent)."""
        batch, index, frame, hops = entry
        now = self._loop.time()
        attempt = self._retry.attempt(hops, now)
        delay = self._retry.retry_delay(attempt, now, random.random)
        if delay is None:
            return False
        attempt.retries += 1
        self.stats.retries += 1
        self._loop.call_later(delay, self._resend, address, (batch, index, frame, attempt), True)
        return True

    def _wait(self, address: Address | None, entry: Entry) -> bool:
        """Look again shortly for a usable master for ``entry`` (none serves its slot, or the
        one that does has its breaker open), until the command's deadline; False at once
        while no node of the cluster can be reached (fail fast)."""
        if self._unreachable:
            return False
        batch, index, frame, hops = entry
        now = self._loop.time()
        attempt = self._retry.attempt(hops, now)
        delay = self._retry.wait_delay(attempt, now, random.random)
        if delay is None:
            return False
        attempt.waits += 1
        key = next(self._park_keys)
        handle = self._loop.call_later(delay, self._unpark, key)
        self._parked[key] = (address, (batch, index, frame, attempt), handle)
        return True

    def _unpark(self, key: int) -> None:
        parked = self._parked.pop(key, None)
        if parked is not None:
            address, entry, _ = parked
            self._resend(address, entry, False)

    def _wake_parked(self) -> None:
        """Something changed (a new slot map, a node back): look again now for every command
        waiting for a usable master, instead of at its next timer."""
        for key in list(self._parked):
            parked = self._parked.get(key)
            if parked is not None:
                parked[2].cancel()
                self._unpark(key)

    def _resend(self, address: Address | None, entry: Entry, retry: bool) -> None:
        """Send to whoever owns the command's slot by now (a failover may have moved it away
        from ``address``), or wait again while no usable master does."""
        batch, _, frame, _ = entry
        if batch is None:
            return
        pool = self._route_again(frame, address)
        if pool is None or not pool.breaker.allows:
            self.request_refresh()  # to learn of the promotion as soon as it happens
            if not self._wait(address, entry):
                if pool is None:
                    self._fail(entry, self._uncovered)
                else:
                    self._fail(entry, errors.node_unavailable(pool.name, "circuit breaker open"))
            return
        if retry and not self._budget.spend(self._loop.time(), self._upstream.sent):
            self.stats.budget_exhausted += 1
            self._fail(entry, errors.node_unavailable(pool.name, "retry budget exhausted"))
            return
        self._deliver(pool, batch.client.lane, entry)

    def _route_again(self, frame: bytes, address: Address | None) -> NodePool | None:
        """The master for the command in ``frame``: its slot's owner, or for a keyless command
        ``address`` if still a usable master, else any master."""
        args = _parse(frame)
        spec = self._table.resolve(args) if args else None
        keys = spec.keys(args) if spec is not None else None
        if keys:
            return self._owners[key_slot(keys[0])]
        known = self._upstream.pools.get(address) if address is not None else None
        if known in self._masters and known.breaker.allows:  # type: ignore[union-attr]
            return known
        return self._any_master()

    # -- topology ----------------------------------------------------------------------------

    def request_refresh(self) -> None:
        """Ask the refresher for a new slot map soon (calls coalesce)."""
        self._refresh_wanted.set()

    def apply(self, slot_map: SlotMap) -> None:
        """Route by a new slot map; drop pools of nodes that left, once they are idle."""
        pools = {address: self._upstream.pool(address) for address in slot_map.masters}
        self._owners[:] = [pools[a] if a is not None else None for a in slot_map.owners]
        self._masters = list(pools.values())
        self._range_starts = sorted(
            {slot_map.owners.index(address) for address in slot_map.masters}
        )
        # Asked on the next refresh: the masters first, every other node, then the seeds.
        nodes = list(slot_map.nodes.values())
        self._known = list(dict.fromkeys([*pools, *nodes, *self._config.cluster.seeds]))
        self._replicas = slot_map.replicas - slot_map.masters
        if self._reads.spreads:
            self._readers = {
                master: [self._upstream.pool(replica) for replica in replicas]
                for master, replicas in slot_map.readers.items()
            }
        self._covered = SLOTS - slot_map.owners.count(None)
        for address, pool in list(self._upstream.pools.items()):
            gone = address not in pools and address not in self._replicas and address not in nodes
            if gone and not pool.pending:
                self._upstream.discard(address)
        self._wake_parked()

    async def refresh(self) -> SlotMap:
        """Fetch and apply the freshest slot map the known nodes give (or the backend's, when
        it is not a cluster)."""
        if self._one_shard is not None:
            slot_map = await self._one_shard.fetch()
        else:
            cluster = self._config.cluster
            found = await discover(
                self._known,
                self._upstream.names,
                self._config.upstream.connect_timeout,
                cluster.refresh_nodes,
                cluster.address_map,
                self._upstream.credentials,
                self._upstream.tls,
            )
            slot_map = found.slot_map
            self.stats.epoch, self.stats.views = found.epoch, found.answered
        previous = [p.address if p else None for p in self._owners]
        self.apply(slot_map)
        if list(slot_map.owners) != previous:
            log.info("topology changed: %s", slot_map.describe())
            if self._one_shard is not None:
                self._subscribers_leave({a for a in previous if a is not None} - slot_map.masters)
        return slot_map

    async def run_refresher(self) -> None:
        """Refresh periodically, and soon after a MOVED or a failure (at most every
        ``min_refresh_interval``)."""
        failing_since: float | None = None  # loop time of the first failure in a row
        reported = 0.0  # when a failure was last logged
        while True:
            cluster = self._config.cluster  # read each time: a reload may change it
            wait = cluster.refresh_interval
            if self._covered < SLOTS or self._unreachable:
                # Slots without a master (a failover under way) or no node answering: look
                # again soon even if no command asks, so a promotion is found without traffic.
                wait = min(wait, _INCOMPLETE_REFRESH)
            with anyio.move_on_after(wait):
                await self._refresh_wanted.wait()
            self._refresh_wanted = anyio.Event()
            now = self._loop.time()
            try:
                await self.refresh()
                self.stats.refreshed(self._loop.time())
            except ClusterUnreachable as exc:
                self.stats.refreshes["failed"] += 1
                # Commands waiting for a usable node now fail at once: none is coming soon.
                self._unreachable = True
                if failing_since is None:
                    failing_since = reported = now
                    log.warning("topology refresh failed: %s", exc)
                elif now - reported >= _REPORT_EVERY:
                    reported = now
                    log.warning("topology refresh failing for %.0fs: %s", now - failing_since, exc)
            except Exception:  # the refresher must outlive any bug: the next try may work
                self.stats.refreshes["failed"] += 1
                log.exception("topology refresh failed unexpectedly")
            else:
                self._unreachable = False
                if failing_since is not None:
                    log.warning("topology refresh works again after %.1fs", now - failing_since)
                    failing_since = None
            await anyio.sleep(cluster.min_refresh_interval)


class _Verification:
    """One ACL-mode AUTH on its way to a node. Node connections treat it as a batch (it is its
    own ``client``); its reply goes to the router, which answers the client."""

    __slots__ = ("_conn", "_router", "batch", "client", "credentials", "hello", "index",
                 "remaining", "replies")  # fmt: skip

    def __init__(
        self,
        router: Router,
        conn: NodeConnection,
        batch: Batch,
        index: int,
        credentials: Credentials,
        hello: Hello | None,
    ) -> None:
        self.client = self
        self.replies: list[bytes | bytearray | None] = [None]
        self.remaining = 1
        self._router = router
        self._conn = conn
        self.batch = batch
        self.index = index
        self.credentials = credentials
        self.hello = hello

    def fill(self, index: int, reply: bytes) -> None:
        self.replies[index] = reply
        self.remaining -= 1
        self.batch_complete()

    def batch_complete(self) -> None:
        self._conn.close()
        self._router.verified(self, bytes(self.replies[0]))  # type: ignore[arg-type]


def _node_named(pool: NodePool | None) -> str:
    return f"node {pool.name}" if pool is not None else "no master"


def _usable(pool: NodePool) -> bool:
    return pool.breaker.allows


def _parse(frame: bytes) -> list[bytes]:
    """The arguments of a request frame the ambassador queued (so complete and valid)."""
    reader = hiredis.Reader()
    reader.feed(frame)
    return reader.gets()  # type: ignore[no-any-return]


def _redirect_address(target: bytes, via: Address) -> Address:
    """The node named by MOVED/ASK (``host:port``; an empty host means the sender's host)."""
    host, _, port = target.decode().rpartition(":")
    return Address(host or via.host, int(port))
