"""The router: each command to the node that owns its slot, or answered here, or refused.

The hot path is one loop over a read's commands: a dict lookup says whether the command has one
key at a fixed place, the key is hashed (CRC16, ``{hashtag}``), and the frame is queued on the
owner's connection for the client's lane. Everything else takes the slow path: Redis's own
checks in Redis's order (``processCommand``: the command and its arity, authentication, the
command policy, subscribed mode, MULTI), then the handler of the command's family, looked up in
a table made once from the cluster's command table (as Envoy's command splitter does).
"""

from __future__ import annotations

import logging
import math
from binascii import crc_hqx
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from redis_ambassador import errors
from redis_ambassador.commands.admin import ADMIN, uptime
from redis_ambassador.commands.auth import NO_AUTH_NEEDED, ClientAuth
from redis_ambassador.commands.cluster import REAL_VIEW
from redis_ambassador.commands.connection import Container
from redis_ambassador.commands.info import ClusterView
from redis_ambassador.commands.lanes import (
    CROSS_PROTOCOL,
    connection_state_commands,
    sets_connection_state,
)
from redis_ambassador.commands.local import LOCAL, REFUSED, answered_at_exec
from redis_ambassador.commands.merges import FANOUT
from redis_ambassador.commands.policy import CommandPolicy
from redis_ambassador.commands.scripts import SOURCES, ScriptCache
from redis_ambassador.commands.state import ServerFacts
from redis_ambassador.commands.table import CommandSpec, CommandTable
from redis_ambassador.commands.transaction import check
from redis_ambassador.config import Config
from redis_ambassador.faults.inband import chaos_command
from redis_ambassador.faults.inject import Injector
from redis_ambassador.faults.rules import Faults
from redis_ambassador.loop import Scheduler
from redis_ambassador.routing.blocking import BLOCK_OPTION, Blocking, blocks
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.chaos import ChaosHooks
from redis_ambassador.routing.delivery import Delivery
from redis_ambassador.routing.fanout import FanOut
from redis_ambassador.routing.local import LocalAnswers
from redis_ambassador.routing.monitor import Monitors
from redis_ambassador.routing.owners import Owners
from redis_ambassador.routing.pubsub import SUBSCRIBING, Placement, PubSub
from redis_ambassador.routing.reads import ReadPolicy
from redis_ambassador.routing.refresher import Refresher
from redis_ambassador.routing.session import Batch, Session
from redis_ambassador.routing.signin import SignIn
from redis_ambassador.routing.stats import RouterStats
from redis_ambassador.routing.transactions import NOT_QUEUED, Transactions
from redis_ambassador.slots import key_slot, only_slot
from redis_ambassador.topology.backends import OneShard
from redis_ambassador.upstream.breaker import BreakerSettings
from redis_ambassador.upstream.pool import NodePool, Upstream

log = logging.getLogger(__name__)

_TRANSACTION_COMMANDS = frozenset(["multi", "exec", "discard", "watch", "unwatch"])
# Commands that may carry a password: never shown to MONITOR.
_SIGN_IN = frozenset(["auth", "hello"])
# Classic subscriptions and PUBLISH go to the owner of this slot (any node would do: messages
# reach the whole cluster; one node makes PUBLISH's count include the ambassador's subscribers).
_PUBSUB_SLOT = 0
# Commands a server without cluster support refuses ("cluster support disabled"): with one
# server behind and cluster_view "real", it answers them itself.
_CLUSTER_ONLY = frozenset(["cluster", "readonly", "readwrite", "asking"])
# Why a command cannot be queued in a transaction through the ambassador.
_ANSWERED_HERE = "the ambassador answers it itself"
_SESSION_STATE = "it changes the client's session, which the ambassador keeps outside transactions"
_PRIVATE_CONNECTION = "subscriptions need a node connection of the client's own"
_EVERY_NODE = "it needs every node of the cluster"
# Why a command that sets connection state is refused when the ambassador has no handler for it.
_SHARED_CONNECTION = (
    "it would change the state of a node connection shared by every client, and the "
    "ambassador does not emulate it"
)


@dataclass(frozen=True, slots=True)
class Family:
    """How the router treats one command: its handler (True: the client's state changed, the
    rest of the read takes the slow path), whether the command policy governs it, why it cannot
    be queued in a transaction (None: it can), where MONITOR shows it going ("": its keys'), and
    whether, queued, it is answered here at EXEC."""

    handle: Callable[[Call], bool]
    governed: bool = True
    in_transaction: str | None = None
    shown: str = ""
    answered_at_exec: bool = False  # queued in MULTI, answered here when EXEC runs


class Router:
    """Maps commands onto node pools, or answers them; keeps the slot table current."""

    def __init__(
        self,
        config: Config,
        upstream: Upstream,
        table: CommandTable,
        facts: ServerFacts,
        client_auth: ClientAuth,
        scheduler: Scheduler,
        faults: Faults | None = None,
        backend: OneShard | None = None,
    ) -> None:
        self.pool_size = config.upstream.pool_size
        self.client_auth = client_auth
        self.facts = facts
        self.faults = faults
        self._upstream = upstream
        self._table = table
        self.scheduler = scheduler
        # One server behind (standalone, Sentinel; None: a cluster): every key is in "slot 0",
        # so no command is refused or split for its keys' slots.
        self._one_shard = backend
        uncovered = (
            errors.CLUSTERDOWN_UNCOVERED if backend is None else errors.no_master(backend.name)
        )
        self.stats = RouterStats(scheduler.time())
        self.owners = Owners(
            upstream, config.cluster.seeds, key_slot if backend is None else only_slot,
            uncovered, "cluster" if backend is None else backend.name, self.request_refresh,
        )  # fmt: skip
        self._reads = ReadPolicy(config.upstream.read_policy)
        self.owners.spread_reads = self._reads.spreads
        self._scripts = ScriptCache()
        self.delivery = Delivery(
            config, upstream, self.owners, table, self._scripts, self.stats, scheduler
        )
        self.refresher = Refresher(
            config, upstream, self.owners, self.delivery.retries, self.stats, scheduler, backend,
            lambda: facts.clients,  # type: ignore[arg-type,return-value]
        )  # fmt: skip
        # Commands that set the state of the connection they run on (commands/lanes.py): each
        # is handled before it could reach a shared lane, or refused.
        self._connection_state = connection_state_commands(table)
        self.monitors = Monitors()
        self._transactions = Transactions(self.delivery, self.owners)
        self._signin = SignIn(client_auth, upstream, self.owners, facts, scheduler)
        self._fanout = FanOut(self.delivery, self.owners, config.commands.split_cross_slot)
        self._blocking = Blocking(self.delivery, self.owners)
        self._pubsub = PubSub(self._placement(upstream, scheduler))
        self._chaos = None
        if faults is not None:
            injector = Injector(faults, config.chaos.log, scheduler)
            self._chaos = ChaosHooks(injector, self.delivery, self.owners)
            faults.on_change = self._rules_changed
        self._local = local = LocalAnswers(facts, self.monitors, self._transactions, self._chaos)
        # Answered here, and changing how the client's later commands go (by name, or base).
        self._answered_here: dict[str, Callable[[Call], bool]] = {
            "reset": local.reset, "quit": local.quit, "monitor": local.monitor,
            "client|reply": local.client_reply, "acl|whoami": local.whoami,
            "auth": self._signin.handle, "hello": self._signin.handle,
        }  # fmt: skip
        self.reconfigure(config)

    def _placement(self, upstream: Upstream, scheduler: Scheduler) -> Placement:
        """Where subscriptions go: classic ones to the owner of ``_PUBSUB_SLOT``, shard ones to
        their channel's slot's owner."""
        owners = self.owners

        def address_of(pool: NodePool | None) -> object:
            return pool.address if pool is not None else None

        return Placement(
            any_master=lambda: address_of(owners.by_slot[_PUBSUB_SLOT] or owners.any_master()),
            owner=lambda slot: address_of(owners.by_slot[slot]),
            connect=upstream.subscribe,
            refresh=self.request_refresh,
            scheduler=scheduler,
            slot_of=owners.slot_of,
            uncovered=owners.uncovered,
        )  # type: ignore[arg-type]

    def reconfigure(self, config: Config) -> None:
        """Apply the settings that take effect without a restart (at start, and on SIGHUP)."""
        self._config = config
        self.settings = config.server
        # Seconds after which a request is logged as slow (clients compare against it).
        self.slow_after = config.server.slow_log_threshold or math.inf
        self.delivery.configure(config)
        self.refresher.config = config
        self._upstream.set_breaker_settings(BreakerSettings.from_config(config.upstream))
        self._fanout.split_cross_slot = config.commands.split_cross_slot
        self._transactions.split_cross_slot = config.commands.split_cross_slot
        self._transactions.per_node = config.commands.cross_slot_transactions == "per-node"
        # Local commands a node answers instead (CLUSTER INFO/SLOTS/... with cluster_view "real").
        self._to_node = REAL_VIEW if config.commands.cluster_view == "real" else frozenset()
        if self._to_node and self._one_shard is not None:
            self._to_node = self._cluster_only()
        self._policy = CommandPolicy.from_config(config.commands)
        for problem in self._policy.problems(self._table):
            log.warning("command policy: %s", problem)
        self._families = {
            spec.name: self._family(spec)
            for top in self._table.specs()
            for spec in (top, *top.subcommands.values())
        }
        self._all_fast = self._fast_names()
        self._track_fast()

    # -- the table of families ----------------------------------------------------------------

    def _family(self, spec: CommandSpec) -> Family:
        """How the router treats ``spec``: decided once per command, in this order."""
        name = spec.name
        base = name.split("|", 1)[0]
        local = self._local
        if base in _TRANSACTION_COMMANDS:
            return Family(self._transactions.handle, False, shown="ambassador")
        if base in SUBSCRIBING:
            return Family(self._pubsub.handle, False, _PRIVATE_CONNECTION)
        special = self._answered_here.get(name) or self._answered_here.get(base)
        if special is not None:
            return Family(special, False, _ANSWERED_HERE, "ambassador")
        if base in LOCAL and name not in self._to_node:
            if answered_at_exec(name):
                return Family(local.answer, False, None, "ambassador", answered_at_exec=True)
            return Family(local.answer, False, _SESSION_STATE, "ambassador")
        reason = REFUSED.get(name) or REFUSED.get(base)
        if reason is not None:
            return Family(partial(_refuse, reason), False, reason, "ambassador")
        whole = self._one_shard is None  # commands for every node need a cluster behind
        if name in ADMIN:
            return Family(self._admin, True, _EVERY_NODE if whole else None, "masters")
        if name in BLOCK_OPTION or "blocking" in spec.flags:
            return Family(self._maybe_blocking)
        if name in self._connection_state and name not in self._to_node:
            # It would change a connection every client shares, and nothing here emulates it.
            # (``_to_node``'s READONLY and ASKING go to a server without cluster support,
            # which refuses them: they change nothing there.)
            refuse = partial(_refuse, _SHARED_CONNECTION)
            return Family(refuse, True, _SHARED_CONNECTION, "ambassador")
        if whole and name in FANOUT:
            to_masters = partial(self._fanout.to_masters, merge=FANOUT[name])
            return Family(to_masters, True, _EVERY_NODE, "masters")
        if whole and name == "scan":
            return Family(self._fanout.scan, True, _EVERY_NODE, "masters")
        if name == "publish":
            return Family(self._publish)
        return Family(self._keyed)

    def _fast_names(self) -> dict[bytes, int]:
        """Names (as sent, in either letter case) of the commands the fast path takes: one key
        at a fixed index, routed by it, not denied by the policy, nor spread by the read policy."""
        fast: dict[bytes, int] = {}
        for spec in self._table.specs():
            if self._reads.spreads and "readonly" in spec.flags:
                continue  # the read policy picks their node
            if (
                spec.single_key
                and not spec.subcommands
                and self._families[spec.name].handle == self._keyed
                and not sets_connection_state(spec)
                and not self._policy.denies_always(spec.name)
            ):
                raw = spec.name.encode()
                fast[raw] = fast[raw.upper()] = spec.single_key
        return fast

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

    # -- dispatch -----------------------------------------------------------------------------

    def dispatch(
        self,
        session: Session,
        batch: Batch,
        commands: list[list[bytes]],
        frames: list[bytes],
    ) -> None:
        """Send (or answer) every command of one read; replies land in ``batch`` by index."""
        # Session.plain, inlined (once per read), and the monitors' list itself: no call here.
        if (
            session.transaction is not None
            or session.watching is not None
            or session.subscriptions is not None
            or session.reply_mode != "on"
            or not session.authenticated
            or self.monitors.watching
        ):
            self._dispatch_each(session, batch, commands, frames, 0)
            return
        fast = self._fast.get
        counts = self.stats.fast_commands
        owners = self.owners.by_slot
        lane = session.lane
        for i, args in enumerate(commands):
            k = fast(args[0])
            if k and len(args) > k:
                key = args[k]
                # slots.key_slot inlined: keys without '{' (123) hash whole, for {hashtags} it
                # is called. An int needle: ``b"{" in key`` costs eight times as much.
                pool = owners[key_slot(key) if 123 in key else crc_hqx(key, 0) & 16383]
                if pool is not None:
                    conn = pool.conns[lane]
                    # None while the node's circuit breaker is open: the slow path waits.
                    if not conn.closed or (conn := pool.lane(lane)) is not None:  # type: ignore[assignment]
                        # NodeConnection.send, inlined (its queue/out contract): one entry and
                        # one frame per command, a flush asked for once per connection and turn.
                        frame = frames[i]
                        conn.queue.append((batch, i, frame, 0))
                        conn.out.append(frame)
                        if not conn.dirty:
                            conn.mark_dirty()
                        counts[args[0]] += 1
                        continue
            if self._dispatch_other(session, batch, i, commands, frames):
                self._dispatch_each(session, batch, commands, frames, i + 1)
                return

    def _dispatch_each(
        self,
        session: Session,
        batch: Batch,
        commands: list[list[bytes]],
        frames: list[bytes],
        start: int,
    ) -> None:
        """The slow path, one command at a time: inside a transaction or a WATCH, and after a
        command that changed how the rest goes (stopping where the batch was cut: QUIT, or
        commands held behind a blocking one)."""
        i = start
        while i < len(batch.replies) and not session.client.gone:
            mode = session.reply_mode
            if mode != "on":
                batch.silence(i)
                if mode == "skip":
                    session.reply_mode = "on"
            self._dispatch_other(session, batch, i, commands, frames)
            i += 1

    def _dispatch_other(
        self,
        session: Session,
        batch: Batch,
        i: int,
        commands: list[list[bytes]],
        frames: list[bytes],
    ) -> bool:
        """Route anything but a plain single-key command; True when the rest of the read must
        take the slow path (the client's state changed, the batch was cut, or the client is
        gone: a fault cut it, and nothing it sent after runs). Counts it, and its error if the
        ambassador answered with one at once."""
        spec = self._table.resolve(commands[i])
        name = spec.name if spec is not None else ""
        self.stats.count(name)
        delivery = self.delivery
        delivery.routing = True
        try:
            if spec is None:
                changed = self._unknown(session, batch, i, commands[i])
            else:
                call = Call(session, batch, i, commands, frames, spec, name, name.split("|")[0])
                changed = self._route(call)
        finally:
            delivery.routing = False
        replies = batch.replies
        if i < len(replies):
            reply = replies[i]
            if reply is not None and reply[:1] == b"-":
                self.stats.error(name)
        return changed or session.client.gone

    def _unknown(self, session: Session, batch: Batch, i: int, args: list[bytes]) -> bool:
        """A command the cluster does not know: never sent to a node, where it would share a
        lane. POST and Host: (an HTTP request sent to the Redis port) close the client before
        anything it sent after runs, as Redis does, whatever state it is in."""
        name = args[0].lower()
        if name in CROSS_PROTOCOL:
            session.client.cross_protocol_attack(args[0])
            batch.cut_after(i)
            return True
        tx = session.transaction
        faults = self.faults
        if name == b"chaos" and tx is None and faults is not None and self._config.chaos.in_band:
            batch.fill(i, chaos_command(faults, session, args, self.settings.admin_token))
            return False
        reply = errors.unknown_command(args)
        batch.fill(i, tx.fail(reply) if tx is not None else reply)
        return False

    def _route(self, call: Call) -> bool:
        """Redis's checks before running a command, in its order, then the family's handler."""
        session, spec, args = call.session, call.spec, call.args
        refusal = check(spec, args)
        if refusal is not None and self._emulated(call):
            refusal = None
        if refusal is None and not session.authenticated and call.base not in NO_AUTH_NEEDED:
            refusal = errors.NOAUTH
        if refusal is not None:
            self._transactions.refused(call, refusal)
            return False
        family = self._families[call.name]
        if self.monitors.watching and "admin" not in spec.flags and call.base not in _SIGN_IN:
            if call.base == "reset":
                self.monitors.stop(session)  # as in Redis, it no longer sees its own RESET
            self.monitors.feed(session, args, self._destination(call, family))
        if family.governed:
            denied = self._policy.check(call.name, args)
            if denied is not None:
                self._transactions.refused(call, denied)
                return False
        if session.subscriptions is not None:
            refusal = self._pubsub.outside_subscribed_mode(call)
            if refusal is not None:
                self._transactions.refused(call, refusal)
                return False
            if call.base == "ping" and self._pubsub.ping(call):
                return False
        if session.transaction is not None and call.base not in NOT_QUEUED:
            answer = self._local.deferred(call) if family.answered_at_exec else None
            self._transactions.queue(call, family.in_transaction, answer)
            return False
        if call.name in SOURCES:
            self._scripts.learn(call.name, args)
        return family.handle(call)

    def _emulated(self, call: Call) -> bool:
        """A subcommand of CLIENT or CLUSTER the nodes' Redis version does not know but the
        ambassador answers (CLIENT SETINFO, NO-TOUCH, for client libraries): its handler checks
        it."""
        local = LOCAL.get(call.base)
        return (
            bool(call.spec.subcommands)  # resolved to the container: the table lacks it
            and isinstance(local, Container)
            and call.name not in self._to_node
            and len(call.args) > 1
            and local.knows(bytes(call.args[1]).lower())
        )

    # -- the families routed here -------------------------------------------------------------

    def _keyed(self, call: Call) -> bool:
        """To the master that owns the keys' slot (a replica, by the read policy), or split by
        slot, or to any master for a command without keys."""
        spec, session = call.spec, call.session
        keys = spec.keys(call.args)
        if not keys:
            # No keys, or keys that cannot be found (bad input): any master answers as Redis
            # would.
            return self._anywhere(call)
        owners = self.owners
        slot = owners.slot_of(keys[0])
        if any(owners.slot_of(key) != slot for key in keys[1:]):
            self._fanout.cross_slot(call)
            return False
        pool = owners.by_slot[slot]
        if pool is None:
            # No master serves the slot (a failover in progress?): wait for one, within the
            # retry budget, rather than fail at once.
            self.request_refresh()
            if not self.delivery.retries.park(None, (call.batch, call.index, call.frame, 0)):
                call.answer(owners.uncovered)
            return False
        if self._reads.spreads and "readonly" in spec.flags and session.watching is None:
            readers = owners.readers.get(pool.address, ())
            reader = self._reads.choose(pool, readers, lambda p: p.breaker.allows)
            if reader is None:
                call.answer(errors.no_replica(pool.name))
                return False
            pool = reader
        if self._chaos is None or not self._chaos.before_send(call, keys, slot, pool):
            self.delivery.send_to(session, pool, call.batch, call.index, call.frame)
        return False

    def _anywhere(self, call: Call) -> bool:
        pool = self.owners.any_master()
        if pool is None:
            self.request_refresh()
            call.answer(self.owners.uncovered)
            return False
        if self._chaos is None or not self._chaos.before_send(call, [], None, pool):
            self.delivery.send_to(call.session, pool, call.batch, call.index, call.frame)
        return False

    def _publish(self, call: Call) -> bool:
        """To the node the ambassador's subscribers listen on, so the count includes them."""
        pool = self.owners.by_slot[_PUBSUB_SLOT]
        if pool is None:
            return self._keyed(call)
        self.delivery.deliver(pool, call.session.lane, (call.batch, call.index, call.frame, 0))
        return False

    def _maybe_blocking(self, call: Call) -> bool:
        if blocks(call.spec, call.args):
            return self._blocking.handle(call)
        return self._keyed(call)

    def _admin(self, call: Call) -> bool:
        return self._fanout.admin(call, self._view(call.session))

    def _destination(self, call: Call, family: Family) -> str:
        """Where a command goes, as MONITOR shows it (before any redirection)."""
        tx = call.session.transaction
        if call.base == "exec" and tx is not None and tx.slot is not None:
            return _node_named(self.owners.by_slot[tx.slot])
        if family.shown:
            return family.shown
        keys = call.spec.keys(call.args)
        if keys:
            return _node_named(self.owners.by_slot[self.owners.slot_of(keys[0])])
        return "any master"

    def _view(self, session: Session) -> ClusterView:
        owners = self.owners
        return ClusterView(
            protocol=session.protocol,
            port=session.local_address[1],
            version=self.facts.version,
            clients=len(self.facts.clients),
            masters=tuple(str(pool.address) for pool in owners.masters),
            replicas=len(owners.replicas),
            slots_covered=owners.covered,
            uptime=uptime(),
            breakers_open=sum(
                1 for pool in self._upstream.pools.values() if not pool.breaker.allows
            ),
            unready=owners.unready() or "",
        )

    # -- for the client connections, the metrics and the composition root ---------------------

    @property
    def auth_required(self) -> bool:
        return self.client_auth.required

    def upstream_auth(self, block: int) -> bytes:
        return self._signin.upstream_auth(block)

    def timed(self, session: Session, batch: Batch, elapsed: float) -> None:
        """A sampled or slow batch's replies were written ``elapsed`` seconds after it was
        read: the latency histogram, the slow log."""
        spec = self._table.resolve(batch.first) if batch.first else None
        self.stats.timed(
            self.scheduler.time(), spec.name if spec is not None else "unknown", elapsed,
            batch.sampled, elapsed >= self.slow_after, len(batch.replies),
            session.client.describe(),
        )  # fmt: skip

    def request_refresh(self) -> None:
        """Ask the refresher for a new slot map soon (calls coalesce)."""
        self.refresher.request()

    def unready(self) -> str | None:
        """Why the ambassador cannot serve every slot now (None: it can): /readyz."""
        return self.owners.unready()

    def backend_masters(self) -> tuple[str, list[str]]:
        """The backend (``cluster.backend``) and the masters commands go to now."""
        return self.owners.backend, [pool.name for pool in self.owners.masters]


def _refuse(reason: str, call: Call) -> bool:
    """A command the ambassador does not run, with the reason."""
    call.answer(errors.not_supported(call.args, reason))
    return False


def _node_named(pool: NodePool | None) -> str:
    return f"node {pool.name}" if pool is not None else "no master"
