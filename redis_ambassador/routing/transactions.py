"""MULTI, EXEC, DISCARD, WATCH and UNWATCH, as one Redis runs them, over shared lanes.

Between MULTI and EXEC the commands are checked and queued here (commands/transaction.py); EXEC
writes ``MULTI``, the queued frames and ``EXEC`` back to back on one connection to a node, so no
other client's command can land inside the block. A transaction over several nodes (under
``commands.cross_slot_transactions = "per-node"``) runs as one such block per slot, one after
another (``_PerNode``), its replies put back in the order queued. WATCH moves the client to a
connection of its own to the watched keys' node, where its transaction (its part there, first)
then runs.
"""

from __future__ import annotations

from redis_ambassador import errors
from redis_ambassador.commands.merges import split_by_slot
from redis_ambassador.commands.transaction import (
    EXEC_FRAME,
    MULTI_FRAME,
    UNWATCH_FRAME,
    Answer,
    Outcome,
    Part,
    Transaction,
    split,
)
from redis_ambassador.protocol.replies import OK
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.delivery import Delivery
from redis_ambassador.routing.owners import Owners
from redis_ambassador.routing.session import Batch, Session
from redis_ambassador.upstream.collector import Reply
from redis_ambassador.upstream.connection import NodeConnection
from redis_ambassador.upstream.retry import NEVER

# Acting at once even between MULTI and EXEC; every other command (UNWATCH too) is queued.
NOT_QUEUED = frozenset(["multi", "exec", "discard", "watch", "quit", "reset"])


class Transactions:
    """The transaction commands, and queueing between MULTI and EXEC."""

    def __init__(self, delivery: Delivery, owners: Owners) -> None:
        self._delivery = delivery
        self.owners = owners
        # commands.cross_slot_transactions is "per-node" (read at each MULTI: reloadable).
        self.per_node = True
        # commands.split_cross_slot: under per-node, MGET/DEL/... over slots split as outside.
        self.split_cross_slot = True

    def handle(self, call: Call) -> bool:
        """A transaction command, kept in order with the client's other commands although a
        WATCH moves them to a connection of the client's own and EXEC/UNWATCH/DISCARD back."""
        session = call.session
        watching = session.watching
        if (
            call.name == "watch"
            and watching is None
            and session.transaction is None
            and session.client.waiting_before(call.batch, call.index)
        ):
            # What the client sent before WATCH must have run before the watch begins.
            return call.hold(call.index)
        changed = self._control(call)
        if watching is not None and session.watching is None and call.hold_rest():
            # Back on the shared connections: nothing may overtake what is still in flight on
            # the private one (EXEC's reply included).
            return True
        return changed

    def queue(self, call: Call, refusal: str | None, answer: Answer | None = None) -> None:
        """A command between MULTI and EXEC, already checked as Redis checks it: queued with
        its keys' slots, or with ``answer`` (made here at EXEC), or refused (``refusal``: why
        it cannot be part of a transaction)."""
        tx = call.session.transaction
        assert tx is not None
        if refusal is not None:
            call.answer(tx.fail(errors.not_in_transaction(call.args, refusal)))
            return
        if answer is not None:
            call.answer(tx.queue_answer(call.frame, answer))
            return
        keys = call.spec.keys(call.args) or []
        slot_of = self.owners.slot_of
        slots = [slot_of(key) for key in keys]
        if tx.per_node and self.split_cross_slot and len(set(slots)) > 1:
            split = split_by_slot(call.name, call.args)
            if split is not None:
                call.answer(tx.queue_split(*split))
                return
        call.answer(tx.queue(call.frame, slots))

    def refused(self, call: Call, reply: bytes) -> None:
        """A command Redis rejects before running it (unknown, wrong arity, NOAUTH, NOPERM):
        inside MULTI it makes EXEC fail; EXEC itself rejected discards the transaction."""
        session = call.session
        if call.base == "exec":
            self.end(session)
            reply = errors.exec_aborted(reply)
        elif session.transaction is not None:
            reply = session.transaction.fail(reply)
        call.answer(reply)

    def _control(self, call: Call) -> bool:
        """MULTI, EXEC, DISCARD, WATCH, UNWATCH; True when the client's state changed or
        what it sent after is held."""
        session = call.session
        name = call.name
        tx = session.transaction
        if name == "multi":
            if tx is not None:
                call.answer(errors.MULTI_NESTED)
                return False
            session.transaction = Transaction(session.watched_slot, self.per_node)
            call.answer(OK)
            return True
        if name == "watch":
            if tx is not None:
                call.answer(errors.WATCH_IN_MULTI)
                return False
            return self._watch(call)
        if name == "unwatch":
            watching = session.watching
            self.end(session)
            if watching is not None and not watching.closed:
                watching.send(call.batch, call.index, call.frame)
            else:
                call.answer(OK)
            return False
        if tx is None:
            call.answer(
                errors.EXEC_WITHOUT_MULTI if name == "exec" else errors.DISCARD_WITHOUT_MULTI
            )
            return False
        if name == "discard":
            self.end(session)
            call.answer(OK)
            return False
        return self._exec(call, tx)

    def _watch(self, call: Call) -> bool:
        """WATCH goes to the keys' node on the client's own connection; MULTI/EXEC follow it."""
        session = call.session
        keys = call.spec.keys(call.args) or []
        slot = self.owners.slot_of(keys[0])
        pool = self.owners.owner_of(keys)
        if isinstance(pool, bytes):
            call.answer(pool)
            return False
        watching = session.watching
        if session.watched_slot not in (None, slot) and (
            not self.per_node or watching is None or watching.address != pool.address
        ):
            # Under per-node, keys of one node may be watched together: its part decides.
            call.answer(errors.WATCH_SEVERAL_NODES if self.per_node else errors.CROSSSLOT)
            return False
        conn = self._delivery.private(session, pool.address)
        conn.send(call.batch, call.index, call.frame)
        session.watching = conn
        if session.watched_slot is None:
            session.watched_slot = slot
        return True

    def _exec(self, call: Call, tx: Transaction) -> bool:
        """Send the transaction as one block, or as one block per slot (``_PerNode``); only
        EXEC's reply is the client's. True when what the client sent after EXEC is held until
        that reply is written: the later parts go out one by one, and a command sent after
        EXEC must not overtake them (it would not see their writes)."""
        session = call.session
        watching = session.watching
        session_watched = session.watched_slot
        self.end(session, unwatch=False)
        if tx.dirty is not None:
            if watching is not None:
                watching.send(None, 0, UNWATCH_FRAME)
            call.answer(errors.EXECABORT)
            return False
        parts = split(tx.queued, session_watched if watching is not None else None)
        if len(parts) > 1 or any(queued.answer is not None for queued in tx.queued):
            # Answered at once (nothing sent: only answers made here, or no node): no hold.
            return _PerNode(self, call, tx, parts, watching).run() and call.hold(call.index + 1)
        conn = watching if watching is not None else self._lane_for(call, tx)
        if conn is None:
            return False
        if conn.closed:
            # The watches died with their connection: nothing can say the keys are unchanged.
            call.answer(errors.node_unavailable(str(conn.address), conn.failure))
            return False
        # Back to back in one write: no other client's command can land inside the block.
        send_block(conn, call.batch, call.index, [queued.frame for queued in tx.queued])
        return False

    def _lane_for(self, call: Call, tx: Transaction) -> NodeConnection | None:
        """The client's lane to the node of the transaction's slot (None, answered: none)."""
        owners = self.owners
        pool = owners.by_slot[tx.slot] if tx.slot is not None else owners.any_master()
        if pool is None:
            owners.request_refresh()
            call.answer(owners.uncovered)
            return None
        lane = pool.lane(call.session.lane)
        if lane is None:
            call.answer(errors.node_unavailable(pool.name, "circuit breaker open"))
        return lane

    @staticmethod
    def end(session: Session, unwatch: bool = True) -> None:
        """Leave MULTI and WATCH (EXEC, DISCARD, UNWATCH, RESET)."""
        watching = session.watching
        session.transaction = None
        session.watching = None
        session.watched_slot = None
        if unwatch and watching is not None and not watching.closed:
            watching.send(None, 0, UNWATCH_FRAME)


def send_block(
    conn: NodeConnection, into: Batch | _PerNode, index: int, frames: list[bytes]
) -> None:
    """MULTI, the frames and EXEC back to back in one write, so no other client's command can
    land inside the block; only EXEC's reply is collected (``into[index]``)."""
    conn.send(None, 0, MULTI_FRAME)
    for frame in frames:
        conn.send(None, 0, frame)
    conn.send(into, index, EXEC_FRAME, NEVER)


class _PerNode:
    """A transaction over several slots on its way: one block per slot, one after another (the
    watched node's first: if its EXEC aborts, nothing else runs). It collects each part's EXEC
    reply (a Collector of one reply), sends the next part, and once all have run answers the
    client with one EXEC reply, every command's reply in the place it was queued."""

    __slots__ = ("_call", "_outcome", "_parts", "_transactions", "_tx", "_watching", "remaining",
                 "replies")  # fmt: skip

    def __init__(
        self,
        transactions: Transactions,
        call: Call,
        tx: Transaction,
        parts: list[Part],
        watching: NodeConnection | None,
    ) -> None:
        self._transactions = transactions
        self._call = call
        self._tx = tx
        self._parts = parts
        self._watching = watching
        self._outcome = Outcome(tx)
        self.replies: list[Reply | None] = [None]
        self.remaining = 1

    @property
    def lane(self) -> int:
        return self._call.session.lane

    def run(self) -> bool:
        """Start; True while a part is on its way (False: the client is answered already)."""
        return self._next()

    def _next(self) -> bool:
        """Send the next part (True), or answer the client once none is left (False)."""
        while self._parts:
            part = self._parts[0]
            conn, why = self._conn_for(part)
            if conn is not None:
                self.replies = [None]
                self.remaining = 1
                send_block(conn, self, 0, part.frames(self._tx.queued))
                return True
            if not self._outcome.ran:
                self._call.answer(why)  # nothing ran: the error, as for a one-node transaction
                return False
            self._give_up(why)
        self._call.answer(self._outcome.reply())
        return False

    def _conn_for(self, part: Part) -> tuple[NodeConnection | None, bytes]:
        """Where the part runs: the watching connection for the watched node's slots, else the
        client's lane to the node that owns the part's slot now."""
        owners = self._transactions.owners
        # Only commands without keys: any master runs them.
        pool = owners.any_master() if part.slot is None else owners.by_slot[part.slot]
        if pool is None:
            owners.request_refresh()
            return None, owners.uncovered
        watching = self._watching
        if watching is not None and pool.address == watching.address:
            if watching.closed:
                return None, errors.node_unavailable(str(watching.address), watching.failure)
            return watching, b""
        lane = pool.lane(self._call.session.lane)
        if lane is None:
            return None, errors.node_unavailable(pool.name, "circuit breaker open")
        return lane, b""

    def _give_up(self, why: bytes) -> None:
        """A part cannot run: it and every part after it are reported, not run."""
        text = why[1:].decode("utf-8", "replace").strip()
        self._outcome.lost(self._parts.pop(0), text)
        for part in self._parts:
            self._outcome.lost(part, "a part of the transaction before it failed")
        self._parts.clear()

    # -- the Collector contract: each part's EXEC reply -----------------------------------

    def fill(self, index: int, reply: Reply) -> None:
        self.replies[index] = reply
        self.remaining = 0
        self.complete()

    def complete(self) -> None:
        reply = self.replies[0]
        assert reply is not None
        part = self._parts[0]
        whole = self._outcome.part(part, reply)
        if whole is not None:
            self._call.answer(whole)  # the first part aborted or was refused: nothing ran
            return
        if self._outcome.ran and reply[:1] in (b"-", b"!"):
            self._parts.pop(0)
            for rest in self._parts:
                self._outcome.lost(rest, "a part of the transaction before it failed")
            self._parts.clear()
        else:
            self._parts.pop(0)
        self._next()

    def large_reply(self, size: int) -> None:
        self._call.batch.large_reply(size)
