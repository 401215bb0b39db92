"""The reply slot: where a node connection puts the reply to each command it was given.

Every command sent to a node is queued with its collector and its index there. A client's read
(``routing.session.Batch``), a fan-out's parts (``Gather``), a command under a fault (``Catch``) and
an ACL sign-in check each collect replies this way, and the node connection knows them only by
this contract.

Hot-path contract: ``NodeConnection.data_received`` sets ``replies[index]`` and counts
``remaining`` down itself, without a call per reply, then calls ``complete()`` once ``remaining``
is 0; before a reply over ``LARGE_REPLY`` bytes is stored it calls ``holding(size)``, so a
collector can count it against its client's output buffer while it waits. ``fill`` does the
same for one reply made anywhere else (an error of the ambassador's, a merged reply).
"""

from __future__ import annotations

from typing import Protocol

Reply = bytes | bytearray


class Collector(Protocol):
    """Collects the replies of commands sent to nodes, by index."""

    replies: list[Reply | None]
    remaining: int

    @property
    def lane(self) -> int:
        """The client's lane: where a command of it is sent again (redirection, retry)."""
        ...

    def fill(self, index: int, reply: Reply) -> None:
        """Set one reply made outside a node connection's read loop."""
        ...

    def complete(self) -> None:
        """Every reply is in (``remaining`` reached 0)."""
        ...

    def large_reply(self, size: int) -> None:
        """A reply of ``size`` bytes (over LARGE_REPLY) is about to be stored here."""
        ...
