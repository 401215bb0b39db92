"""One command on the router's slow path: who sent it, where its reply goes, what it is. Every
command family's handler takes one (``Router``'s table, routing/router.py)."""

from __future__ import annotations

from dataclasses import dataclass

from redis_ambassador.commands.table import CommandSpec
from redis_ambassador.routing.session import Batch, Session


@dataclass(slots=True)
class Call:
    """A command of a read: ``commands[index]`` of the batch, its frame ``frames[index]``."""

    session: Session
    batch: Batch
    index: int
    commands: list[list[bytes]]
    frames: list[bytes]
    spec: CommandSpec
    name: str  # the command table's name: ``get``, ``client|reply``
    base: str  # without the subcommand: ``client``

    @property
    def args(self) -> list[bytes]:
        return self.commands[self.index]

    @property
    def frame(self) -> bytes:
        return self.frames[self.index]

    def answer(self, reply: bytes) -> None:
        """Its reply, made by the ambassador."""
        self.batch.fill(self.index, reply)

    def hold(self, start: int) -> bool:
        """Keep the read's commands from ``start`` on unsent until every reply before them is
        written (and stop reading meanwhile); True: the rest of the read is not dispatched now."""
        self.session.client.hold(self.batch, start, self.commands, self.frames)
        return True

    def hold_rest(self) -> bool:
        """``hold`` what the client sent after this command, if anything."""
        return self.index + 1 < len(self.batch.replies) and self.hold(self.index + 1)
