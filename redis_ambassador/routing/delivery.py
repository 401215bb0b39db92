"""Sending commands to nodes, and what comes back out of line: redirections, "not now" refusals,
a script missing on a node, connections that fail with commands on them.

A command goes on its client's lane of a node's pool, or on a connection of the client's own
(the one holding its WATCHes, or one opened for a blocking command). What the node cannot
answer yet is sent again (``Retries``); what it can never answer gets the ambassador's error.
"""

from __future__ import annotations

import hiredis

from redis_ambassador import errors
from redis_ambassador.commands.scripts import ScriptCache
from redis_ambassador.commands.table import CommandTable
from redis_ambassador.config import Address, Config
from redis_ambassador.loop import Scheduler
from redis_ambassador.routing.owners import Owners
from redis_ambassador.routing.retries import Retries
from redis_ambassador.routing.session import Batch, Session
from redis_ambassador.routing.stats import RouterStats
from redis_ambassador.upstream.breaker import State
from redis_ambassador.upstream.collector import Collector
from redis_ambassador.upstream.connection import Entry, NodeConnection
from redis_ambassador.upstream.pool import NodePool, Upstream
from redis_ambassador.upstream.retry import NEVER, Attempt

_MOVED = b"-MOVED "
_ASK = b"-ASK "
_NOSCRIPT = b"-NOSCRIPT "
# Refusals after which the slot may have a new master: ask for the topology.
# READONLY: a master demoted to replica by Sentinel (a cluster answers MOVED instead).
_TOPOLOGY_HINTS = (b"-CLUSTERDOWN", b"-MASTERDOWN", b"-READONLY")


class Delivery:
    """Sends the router's commands and handles what the node connections report back."""

    def __init__(
        self,
        config: Config,
        upstream: Upstream,
        owners: Owners,
        table: CommandTable,
        scripts: ScriptCache,
        stats: RouterStats,
        scheduler: Scheduler,
    ) -> None:
        self._upstream = upstream
        self._owners = owners
        self._table = table
        self._scripts = scripts
        self._stats = stats
        self.config = config
        self.retries = Retries(
            config.upstream, scheduler, stats, self._route_again, self.deliver, self.fail,
            owners.request_refresh, lambda: upstream.sent, owners.uncovered,
        )  # fmt: skip
        # Inside the router's routing of a command: an error answered now is counted there.
        self.routing = False
        upstream.on_redirect = self.redirected
        upstream.on_failure = self.connection_failed
        upstream.on_breaker = self.breaker_changed
        upstream.on_error = self.node_error

    def configure(self, config: Config) -> None:
        """The settings a reload may change (address map, retry policy and budget)."""
        self.config = config
        self.retries.configure(config.upstream)

    # -- sending ------------------------------------------------------------------------------

    def send_to(
        self, session: Session, pool: NodePool, batch: Collector, i: int, frame: bytes
    ) -> None:
        """Send on the client's connection to a node: its lane of the pool, or the connection
        holding its WATCHes (so its commands there run in the order sent, after the WATCH)."""
        watching = session.watching
        if watching is not None and watching.address == pool.address and not watching.closed:
            watching.send(batch, i, frame)
            return
        self.deliver(pool, session.lane, (batch, i, frame, 0))

    def deliver(self, pool: NodePool, lane: int, entry: Entry) -> None:
        """Send on a lane of the pool; while the node's circuit breaker is open, wait for its
        slot to get a usable master instead (a failover), or fail fast."""
        conn = pool.lane(lane)
        if conn is not None:
            conn.send(*entry)
            return
        self._owners.request_refresh()
        if not self.retries.park(pool.address, entry):
            self.fail(entry, errors.node_unavailable(pool.name, "circuit breaker open"))

    def send_anywhere(self, session: Session, batch: Collector, i: int, frame: bytes) -> None:
        """To any master (a command without keys, which any of them answers alike)."""
        pool = self._owners.any_master()
        if pool is None:
            self._owners.request_refresh()
            batch.fill(i, self._owners.uncovered)
            return
        self.send_to(session, pool, batch, i, frame)

    def fail(self, entry: Entry, reply: bytes) -> None:
        """Answer a command with the ambassador's error; counted here when that happens after
        the command was routed (at routing, the router counts it)."""
        batch, index, frame, _ = entry
        assert batch is not None
        batch.fill(index, reply)
        if not self.routing:
            self.node_error(frame)

    def private(self, session: Session, address: Address) -> NodeConnection:
        """The client's own connection to a node, opened on first use, in its protocol."""
        private = session.private
        if private is None:
            private = session.private = {}
        conn = private.get(address)
        if (
            conn is None
            or conn.closed
            or (conn.protocol != session.protocol and not conn.pending)
            # The client signed in as another user (a reload's new credentials are the same
            # user's: its connection already open stays).
            or not self._upstream.signs_in_as(conn.auth, session.block)
        ):
            if conn is not None:
                conn.close()
            conn = private[address] = self._upstream.private(
                address, session.protocol, session.upstream_auth
            )
        return conn

    # -- what the node connections report (Upstream's callbacks) -----------------------------

    def redirected(self, entry: Entry, reply: bytes, via: NodeConnection) -> None:
        """MOVED/ASK (followed), NOSCRIPT (healed), or a "not now" refusal (sent again)."""
        if entry[0] is None:
            return
        if reply.startswith(_NOSCRIPT):
            self._load_script(entry, reply, via)
        elif reply.startswith(_MOVED) or reply.startswith(_ASK):
            self._follow_redirect(entry, reply, via)
        else:
            # TRYAGAIN (slot mid-migration), CLUSTERDOWN (a failover in progress), LOADING (a
            # restarted node reading its data), MASTERDOWN (a replica without its master): the
            # command did not run; ask again shortly, and let a MOVED then point at the new
            # owner.
            if reply.startswith(_TOPOLOGY_HINTS):
                self._owners.request_refresh()
            if via.private or not self.retries.retry(via.address, entry):
                self.fail(entry, reply)  # the node's refusal, once the retries are spent

    def _follow_redirect(self, entry: Entry, reply: bytes, via: NodeConnection) -> None:
        batch, index, frame, hops = entry
        assert batch is not None
        attempt = self.retries.attempt(hops)
        if not self.retries.policy.follows_redirect(attempt):
            self.fail(entry, errors.too_many_redirects(reply))
            return
        attempt.redirects += 1
        moved = reply.startswith(_MOVED)
        self._stats.redirects["moved" if moved else "ask"] += 1
        _, slot, target = reply.split()
        address = self.config.cluster.address_map(_redirect_address(target, via.address))
        conn = None
        if self._upstream.usable(address):
            pool = self._upstream.pool(address)
            conn = self._follow(via, batch, pool)
        if conn is None:
            # Pointed at a node whose breaker is open (its replica is not promoted yet): wait
            # for a usable master instead of hopping to it again and again.
            self._owners.request_refresh()
            if not self.retries.park(via.address, (batch, index, frame, attempt)):
                self.fail(entry, errors.node_unavailable(str(address), "circuit breaker open"))
            return
        if moved:
            self._owners.by_slot[int(slot)] = pool
            self._owners.request_refresh()
            conn.send(batch, index, frame, attempt)
        else:
            conn.send_asking(batch, index, frame, attempt)

    def _load_script(self, entry: Entry, reply: bytes, via: NodeConnection) -> None:
        """EVALSHA of a script this node lacks: load it there and run the EVALSHA again, back
        to back on the same connection; a script never seen, or still missing, gets NOSCRIPT."""
        batch, index, frame, hops = entry
        attempt = self.retries.attempt(hops)
        load = self._scripts.load_for(parse_frame(frame))
        if load is None or not self.retries.policy.follows_redirect(attempt):
            self.fail(entry, reply)
            return
        attempt.redirects += 1
        via.send(None, 0, load)
        via.send(batch, index, frame, attempt)

    def _follow(
        self, via: NodeConnection, batch: Collector, pool: NodePool
    ) -> NodeConnection | None:
        """Where a redirected command goes: the client's lane of the new node's pool, or, if it
        came over the client's own connection (blocking, WATCH), its own one to the new node."""
        if not via.private:
            return pool.lane(batch.lane)
        assert isinstance(batch, Batch)  # only a client's own commands ride its connections
        session = batch.session
        conn = self.private(session, pool.address)
        if session.watching is via:
            session.watching = conn
        return conn

    def connection_failed(
        self, conn: NodeConnection, unsent: list[Entry], sent: list[Entry]
    ) -> None:
        if conn.closing:
            return  # closed on purpose: its client left, or the ambassador is stopping
        self._owners.request_refresh()
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
            if not replay or not self._replays(frame, hops) or not self.retries.retry(None, entry):
                self.fail(entry, errors.node_unavailable(str(conn.address), conn.failure))
        # Commands never written are safe to send again (after a pause, to let the topology
        # refresh; if the slot moved, the node's MOVED leads on).
        for entry in unsent:
            if entry[0] is not None and not self.retries.retry(conn.address, entry):
                self.fail(entry, errors.node_unavailable(str(conn.address), "cannot connect"))

    def node_error(self, frame: bytes) -> None:
        """A command (its frame) was answered with an error: a node's (not a redirection), or
        the ambassador's after routing it. Count it by name."""
        args = parse_frame(frame)
        spec = self._table.resolve(args) if args else None
        self._stats.error(spec.name if spec is not None else "")

    def breaker_changed(self, pool: NodePool, state: State) -> None:
        # Open: its slots may get a new master (failover). Closed: it is back, maybe as a
        # replica now. Either way, ask the cluster.
        if state is not State.HALF_OPEN:
            self._owners.request_refresh()
        if state is State.CLOSED:
            self.retries.wake()

    # -- helpers ------------------------------------------------------------------------------

    def _replays(self, frame: bytes, hops: Attempt | int) -> bool:
        """Whether a command whose reply was lost may be sent again (read-only, or declared
        idempotent; never EXEC, nor an admin command meant for one node)."""
        if hops is NEVER:
            return False
        args = parse_frame(frame)
        spec = self._table.resolve(args) if args else None
        return spec is not None and self.retries.policy.replays_after_loss(spec.name, spec.flags)

    def _route_again(self, frame: bytes, address: Address | None) -> NodePool | None:
        """The master for the command in ``frame``: its slot's owner, or for a keyless command
        ``address`` if still a usable master, else any master."""
        args = parse_frame(frame)
        spec = self._table.resolve(args) if args else None
        keys = spec.keys(args) if spec is not None else None
        if keys:
            return self._owners.by_slot[self._owners.slot_of(keys[0])]
        known = self._upstream.pools.get(address) if address is not None else None
        if known in self._owners.masters and known.breaker.allows:  # type: ignore[union-attr]
            return known
        return self._owners.any_master()


def parse_frame(frame: bytes) -> list[bytes]:
    """The arguments of a request frame the ambassador queued (so complete and valid)."""
    reader = hiredis.Reader()
    reader.feed(frame)
    return reader.gets()  # type: ignore[no-any-return]


def _redirect_address(target: bytes, via: Address) -> Address:
    """The node named by MOVED/ASK (``host:port``; an empty host means the sender's host)."""
    host, _, port = target.decode().rpartition(":")
    return Address(host or via.host, int(port))
