"""MULTI/EXEC as the ambassador runs it: queued here, sent to one node as one block at EXEC.

Between MULTI and EXEC Redis only checks each command (does it exist, is its arity right, in a
cluster: is its slot served here) and answers ``+QUEUED``. The ambassador does the same checks
itself, keeps the frames, and at EXEC writes ``MULTI``, the frames and ``EXEC`` back to back on
one connection to the node that owns the transaction's slot, so nothing can land between them.
Only the node's EXEC reply reaches the client. The slot is the first key's (or the watched keys');
a key in another slot gets Redis Cluster's CROSSSLOT and, as in Redis, makes EXEC fail with
EXECABORT. Sans-IO: the router does the sending.
"""

from __future__ import annotations

from redis_ambassador import errors
from redis_ambassador.commands.table import CommandSpec, arity_ok

MULTI_FRAME = b"*1\r\n$5\r\nMULTI\r\n"
EXEC_FRAME = b"*1\r\n$4\r\nEXEC\r\n"
UNWATCH_FRAME = b"*1\r\n$7\r\nUNWATCH\r\n"
QUEUED = b"+QUEUED\r\n"


class Transaction:
    """One client's transaction between MULTI and EXEC/DISCARD."""

    __slots__ = ("dirty", "frames", "slot")

    def __init__(self, slot: int | None) -> None:
        self.frames: list[bytes] = []
        self.slot = slot  # every key must hash here (None until the first key, or WATCH's)
        self.dirty: bytes | None = None  # the first queue-time error: EXEC then aborts

    def queue(self, frame: bytes, slots: list[int]) -> bytes:
        """Queue a valid command with its keys' slots; ``+QUEUED``, or CROSSSLOT (which
        aborts the transaction, as it does in Redis Cluster). A command refused so binds no
        slot: only a queued one does."""
        wanted = set(slots)
        if len(wanted) > 1 or (self.slot is not None and wanted - {self.slot}):
            return self.fail(errors.CROSSSLOT)
        if wanted:
            self.slot = wanted.pop()
        self.frames.append(frame)
        return QUEUED

    def fail(self, reply: bytes) -> bytes:
        """A command refused at queue time: the reply for it; EXEC will abort."""
        if self.dirty is None:
            self.dirty = reply
        return reply


def check(spec: CommandSpec | None, args: list[bytes]) -> bytes | None:
    """Redis's own checks before queueing (processCommand): the error for an unknown command,
    an unknown subcommand or a wrong arity, else None."""
    if spec is None:
        return errors.unknown_command(args)
    if spec.subcommands:
        if len(args) > 1:
            return errors.unknown_subcommand(args[1], spec.name)
        # The container alone: COMMAND runs so, CONFIG is short of arguments.
        return None if arity_ok(spec.arity, 1) else errors.wrong_arity(spec.name)
    if not arity_ok(spec.arity, len(args)):
        return errors.wrong_arity(spec.name)
    return None
