"""MULTI, EXEC, DISCARD, WATCH and UNWATCH, as one Redis runs them, over shared lanes.

Between MULTI and EXEC the commands are checked and queued here (commands/transaction.py); EXEC
writes ``MULTI``, the queued frames and ``EXEC`` back to back on one connection to the node that
owns the transaction's slot, so no other client's command can land inside the block. WATCH moves
the client to a connection of its own to the watched keys' node, where its transaction then runs.
"""

from __future__ import annotations

from redis_ambassador import errors
from redis_ambassador.commands.transaction import (
    EXEC_FRAME,
    MULTI_FRAME,
    UNWATCH_FRAME,
    Transaction,
)
from redis_ambassador.protocol.replies import OK
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.delivery import Delivery
from redis_ambassador.routing.owners import Owners
from redis_ambassador.routing.session import Session
from redis_ambassador.upstream.connection import NodeConnection
from redis_ambassador.upstream.retry import NEVER

# Acting at once even between MULTI and EXEC; every other command (UNWATCH too) is queued.
NOT_QUEUED = frozenset(["multi", "exec", "discard", "watch", "quit", "reset"])


class Transactions:
    """The transaction commands, and queueing between MULTI and EXEC."""

    def __init__(self, delivery: Delivery, owners: Owners) -> None:
        self._delivery = delivery
        self._owners = owners

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

    def queue(self, call: Call, refusal: str | None) -> None:
        """A command between MULTI and EXEC, already checked as Redis checks it: queued with
        its keys' slots, or refused (``refusal``: why it cannot be part of a transaction)."""
        tx = call.session.transaction
        assert tx is not None
        if refusal is not None:
            call.answer(tx.fail(errors.not_in_transaction(call.args, refusal)))
            return
        keys = call.spec.keys(call.args) or []
        slot_of = self._owners.slot_of
        call.answer(tx.queue(call.frame, [slot_of(key) for key in keys]))

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
        """MULTI, EXEC, DISCARD, WATCH, UNWATCH; True when the client's state changed."""
        session = call.session
        name = call.name
        tx = session.transaction
        if name == "multi":
            if tx is not None:
                call.answer(errors.MULTI_NESTED)
                return False
            session.transaction = Transaction(session.watched_slot)
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
        self._exec(call, tx)
        return False

    def _watch(self, call: Call) -> bool:
        """WATCH goes to the keys' node on the client's own connection; MULTI/EXEC follow it."""
        session = call.session
        keys = call.spec.keys(call.args) or []
        slot = self._owners.slot_of(keys[0])
        if session.watched_slot not in (None, slot):
            call.answer(errors.CROSSSLOT)
            return False
        pool = self._owners.owner_of(keys)
        if isinstance(pool, bytes):
            call.answer(pool)
            return False
        conn = self._delivery.private(session, pool.address)
        conn.send(call.batch, call.index, call.frame)
        session.watching = conn
        session.watched_slot = slot
        return True

    def _exec(self, call: Call, tx: Transaction) -> None:
        """Send the transaction as one block; only EXEC's reply is the client's."""
        session = call.session
        watching = session.watching
        self.end(session, unwatch=False)
        if tx.dirty is not None:
            if watching is not None:
                watching.send(None, 0, UNWATCH_FRAME)
            call.answer(errors.EXECABORT)
            return
        conn = watching if watching is not None else self._lane_for(call, tx)
        if conn is None:
            return
        if conn.closed:
            # The watches died with their connection: nothing can say the keys are unchanged.
            call.answer(errors.node_unavailable(str(conn.address), conn.failure))
            return
        # Back to back in one write: no other client's command can land inside the block.
        conn.send(None, 0, MULTI_FRAME)
        for queued in tx.frames:
            conn.send(None, 0, queued)
        conn.send(call.batch, call.index, EXEC_FRAME, NEVER)

    def _lane_for(self, call: Call, tx: Transaction) -> NodeConnection | None:
        """The client's lane to the node of the transaction's slot (None, answered: none)."""
        owners = self._owners
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
