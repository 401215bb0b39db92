"""Stand-ins for what a node connection talks to, so it is tested by feeding bytes: the transport
it writes to, the owner it reports to, and the batch its replies fill."""

from __future__ import annotations

from redis_ambassador.config import Address
from redis_ambassador.upstream.connection import Entry, NodeConnection


class Transport:
    """Records what is written; ``abort`` only notes that it was called."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        pass


class Owner:
    """A ConnectionOwner that records the errors, redirections and failures reported to it."""

    def __init__(self) -> None:
        self.errors: list[bytes] = []
        self.redirects: list[bytes] = []
        self.failures: list[tuple[list[Entry], list[Entry]]] = []  # (unsent, sent)

    def schedule_flush(self, conn: NodeConnection) -> None:
        pass

    def answered(self, conn: NodeConnection) -> None:
        pass

    def observed(self, conn: NodeConnection, seconds: float) -> None:
        pass

    def errored(self, frame: bytes) -> None:
        self.errors.append(frame)

    def redirected(self, entry: Entry, reply: bytes, via: NodeConnection) -> None:
        self.redirects.append(reply)

    def connection_failed(
        self, conn: NodeConnection, unsent: list[Entry], sent: list[Entry]
    ) -> None:
        self.failures.append((unsent, sent))


class Batch:
    """A Collector (upstream/collector.py): the replies owed to one client read, by index."""

    lane = 0

    def __init__(self, size: int = 1) -> None:
        self.replies: list[bytes | bytearray | None] = [None] * size
        self.remaining = size
        self.completed = 0
        self.held = 0  # bytes of large replies announced by holding()

    def complete(self) -> None:
        self.completed += 1

    def fill(self, index: int, reply: bytes | bytearray) -> None:
        self.replies[index] = reply
        self.remaining -= 1
        if not self.remaining:
            self.complete()

    def holding(self, size: int) -> None:
        self.held += size


def connected(auth: bytes = b"", protocol: int = 2) -> tuple[NodeConnection, Transport, Owner]:
    """A node connection whose connection is made, with its fake transport and owner."""
    owner = Owner()
    conn = NodeConnection(Address("127.0.0.1", 7000), owner, protocol, auth=auth)  # type: ignore[arg-type]
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, owner
