"""Blocking commands (BLPOP, BLMOVE, XREAD BLOCK, ...), each on a connection of the client's own
to its keys' node, so it never stalls the lanes other clients share."""

from __future__ import annotations

from redis_ambassador import errors
from redis_ambassador.commands.local import BLOCKING_WITHOUT_KEYS
from redis_ambassador.commands.table import CommandSpec
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.delivery import Delivery
from redis_ambassador.routing.owners import Owners

# Blocking only when given BLOCK; without it they are ordinary reads.
BLOCK_OPTION = {"xread": b"block", "xreadgroup": b"block"}


def blocks(spec: CommandSpec, args: list[bytes]) -> bool:
    """Whether this use of the command may block."""
    option = BLOCK_OPTION.get(spec.name)
    if option is not None:
        return any(bytes(a).lower() == option for a in args[1:])
    return "blocking" in spec.flags


class Blocking:
    """Runs a blocking command on the client's own connection to its keys' node."""

    def __init__(self, delivery: Delivery, owners: Owners) -> None:
        self._delivery = delivery
        self._owners = owners

    def handle(self, call: Call) -> bool:
        """As on Redis, it starts after the client's earlier commands are answered, and nothing
        the client sent after it runs before it is answered."""
        session = call.session
        if session.client.waiting_before(call.batch, call.index):
            return call.hold(call.index)
        keys = call.spec.keys(call.args)
        if not keys:
            # WAIT/WAITAOF count the acknowledgements of this connection's writes, which the
            # client made over shared connections: not something a private connection can say.
            call.answer(errors.not_supported(call.args, BLOCKING_WITHOUT_KEYS))
            return False
        pool = self._owners.owner_of(keys)
        if isinstance(pool, bytes):
            call.answer(pool)
            return False
        self._delivery.private(session, pool.address).send(call.batch, call.index, call.frame)
        call.batch.read_at = 0.0  # it may block as long as it says: not a slow request
        return call.hold_rest()
