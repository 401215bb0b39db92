"""One client's routing state, and the replies owed for each read of its commands.

The client connection (server/client.py) owns bytes in and out; its ``Session`` is what the router
and the command handlers read and change: who the client is, which lanes its commands travel,
its transaction, watches, subscriptions and reply mode, its node connections of its own. Where
they need the connection itself (to hold back what follows a blocking command, to close after
QUIT, to push a message), they ask it through ``Client``, the narrow interface declared here,
which the connection provides.

Each read's commands get a ``Batch``: node connections fill it (it is their collector,
upstream/collector.py), in any order across nodes; once complete, the connection writes it after
every earlier batch, so the client sees replies in exactly the order it sent the commands.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from redis_ambassador.upstream.collector import Reply

if TYPE_CHECKING:
    from redis_ambassador.commands.transaction import Transaction
    from redis_ambassador.config import Address
    from redis_ambassador.upstream.connection import NodeConnection


class Subscribed(Protocol):
    """A client's subscriptions (routing/pubsub.py's ``Subscriptions``), as others see them."""

    @property
    def active(self) -> bool:
        """Subscribed to anything."""
        ...

    def leave(self, address: Address) -> None:
        """``address`` no longer serves what is subscribed there: subscribe again elsewhere."""
        ...

    def close(self) -> None:
        """Leave every subscription."""
        ...


class Client(Protocol):
    """What the router asks of a client's connection."""

    peer: str  # the client's address, "host:port"
    local_address: tuple[str, int]  # what it dialed (our side of its socket)
    fd: int
    connected_at: float  # time.monotonic() when it connected
    last_read: float  # time.monotonic() of its last read

    @property
    def gone(self) -> bool:
        """The connection is closed (or closing)."""
        ...

    def describe(self) -> str:
        """The client as log lines name it."""
        ...

    def waiting_before(self, batch: Batch, index: int) -> bool:
        """Whether a command sent before ``batch[index]`` still awaits its reply."""
        ...

    def hold(
        self, batch: Batch, index: int, commands: list[list[bytes]], frames: list[bytes]
    ) -> None:
        """Keep the read's commands from ``index`` on unsent until every reply before them is
        written (behind a blocking command, a sign-in check, a WATCH's private connection)."""
        ...

    def close_after_reply(self, batch: Batch) -> None:
        """QUIT: close once ``batch`` is written; read nothing more."""
        ...

    def push(self, message: bytes) -> None:
        """A pub/sub message or MONITOR line, written after every reply already owed."""
        ...

    def cross_protocol_attack(self, name: bytes) -> None:
        """``POST`` or ``Host:`` as a command: close at once, as Redis does."""
        ...

    def cut(self, reset: bool) -> None:
        """A drop or reset fault: close now, the replies owed never written."""
        ...

    def pace(self, piece: int, pause: float) -> None:
        """A bandwidth or split fault: write the next replies slowly, in pieces."""
        ...


class Session:
    """The routing state of one client connection."""

    # Slots: ten thousand idle clients each keep only these.
    __slots__ = (
        "_auth_for", "_auth_required", "_lane_base", "_pool_size", "authenticated", "block",
        "chaos_admin", "client", "failed_auths", "id", "lane", "lib_name", "lib_ver", "name",
        "no_evict", "no_touch", "private", "protocol", "reply_mode", "subscriptions",
        "transaction", "user", "watched_slot", "watching",
    )  # fmt: skip

    def __init__(
        self,
        client: Client,
        client_id: int,
        pool_size: int,
        auth_required: bool,
        auth_for: Callable[[int], bytes],
    ) -> None:
        self.client = client
        self.id = client_id
        # Lanes: every client uses one lane of each node's pool, its id modulo the pool size,
        # in the block of its user (0: the ambassador's own) and its protocol's half of it.
        self._pool_size = pool_size
        self._lane_base = client_id % pool_size
        self.lane = self._lane_base
        self.block = 0
        self.protocol = 2
        # Who the client is: until it authenticates (when the ambassador asks it to), it takes
        # the router's slow path, which answers NOAUTH.
        self._auth_required = auth_required
        self._auth_for = auth_for  # a block's AUTH frame, current when a connection opens
        self.authenticated = not auth_required
        self.user = b"default"
        self.chaos_admin = False  # gave server.admin_token with CHAOS AUTH
        self.failed_auths = 0  # on this connection, ever: RESET must not wipe a guesser's count
        self.name = b""
        # Answered here, per client (CLIENT SETINFO/NO-EVICT/NO-TOUCH, CLIENT INFO/LIST):
        self.lib_name = b""
        self.lib_ver = b""
        self.no_evict = False
        self.no_touch = False
        # Connections to nodes for this client alone (blocking commands, WATCH), by node;
        # made on first use (an empty dict per idle client is memory for nothing).
        self.private: dict[Address, NodeConnection] | None = None
        self.transaction: Transaction | None = None  # between MULTI and EXEC/DISCARD
        self.watching: NodeConnection | None = None  # the private connection holding WATCHes
        self.watched_slot: int | None = None
        self.subscriptions: Subscribed | None = None  # after a (P|S)SUBSCRIBE
        # CLIENT REPLY: "on", "off" (no replies), or "skip" (none for the next command).
        self.reply_mode = "on"

    # The connection's facts, for CLIENT LIST / INFO (commands/state.py's ClientState).
    @property
    def peer(self) -> str:
        return self.client.peer

    @property
    def local_address(self) -> tuple[str, int]:
        return self.client.local_address

    @property
    def fd(self) -> int:
        return self.client.fd

    @property
    def connected_at(self) -> float:
        return self.client.connected_at

    @property
    def last_read(self) -> float:
        return self.client.last_read

    @property
    def upstream_auth(self) -> bytes:
        """The AUTH frame a node connection of this client's own signs in with when opened now:
        its user's (for block 0 the ambassador's, as a reload may have rotated them)."""
        return self._auth_for(self.block)

    def set_protocol(self, protocol: int) -> None:
        """HELLO 2/3: later commands use node connections that speak the same protocol (the
        one holding the client's WATCHes switches with it: reopened, it would lose them)."""
        self.protocol = protocol
        watching = self.watching
        if watching is not None and watching.protocol != protocol and not watching.closed:
            watching.switch_protocol(protocol)
        # Each block is 2 * pool_size lanes: RESP2's, then RESP3's.
        self.lane = (2 * self.block + (protocol == 3)) * self._pool_size + self._lane_base

    def sign_in(self, user: bytes, block: int) -> None:
        """AUTH succeeded: later commands run as ``user``, on the lanes of ``block``."""
        self.authenticated = True
        self.user = user
        self.block = block
        self.set_protocol(self.protocol)

    def sign_out(self) -> None:
        """RESET: back to a new connection's identity (unauthenticated, if AUTH is required)."""
        self.sign_in(b"default", 0)
        self.authenticated = not self._auth_required
        self.chaos_admin = False

    def unsubscribed(self) -> None:
        """Subscribed to nothing any more: close the subscriber connections."""
        if self.subscriptions is not None:
            self.subscriptions.close()
            self.subscriptions = None

    def depart(self) -> None:
        """The connection is gone: its own node connections (blocking commands, WATCH) and
        subscriptions go too, and the session lets go of it (a callback arriving late finds a
        client that has left), so neither keeps the other alive."""
        if self.private is not None:
            for conn in self.private.values():
                conn.close()
            self.private = None
        self.unsubscribed()
        self.client = DEPARTED


class _Departed:
    """What a session's client is once its connection has gone: every request is a no-op."""

    peer = "?"
    local_address = ("", 0)
    fd = -1
    connected_at = last_read = 0.0
    gone = True

    def describe(self) -> str:
        return "a client that has left"

    def waiting_before(self, batch: Batch, index: int) -> bool:
        return False

    def hold(
        self, batch: Batch, index: int, commands: list[list[bytes]], frames: list[bytes]
    ) -> None:
        pass

    def close_after_reply(self, batch: Batch) -> None:
        pass

    def push(self, message: bytes) -> None:
        pass

    def cross_protocol_attack(self, name: bytes) -> None:
        pass

    def cut(self, reset: bool) -> None:
        pass

    def pace(self, piece: int, pause: float) -> None:
        pass


DEPARTED = _Departed()


class BatchOwner(Protocol):
    """The client connection a batch's replies are written to (server/client.py)."""

    session: Session

    def batch_complete(self) -> None:
        """A batch's last reply is in: write whatever is complete at the head of the queue."""
        ...

    def large_reply(self, batch: Batch, size: int) -> None:
        """A large reply for ``batch`` waits to be written: it counts in the output buffer."""
        ...


class _Dropped(list):  # type: ignore[type-arg]
    """The replies of a batch whose client is gone: what nodes still send is dropped as it
    arrives, instead of piling up in a batch nobody will write."""

    __slots__ = ()

    def __setitem__(self, index: object, reply: object) -> None:
        pass


class Batch:
    """The replies owed for one read's commands (a Collector)."""

    __slots__ = (
        "_owner", "close_after", "complete", "first", "large_bytes", "read_at", "remaining",
        "replies", "sampled", "session", "silent",
    )  # fmt: skip

    def __init__(
        self,
        owner: BatchOwner,
        size: int,
        read_at: float = 0.0,
        first: list[bytes] | tuple[()] = (),
    ) -> None:
        self._owner = owner
        self.session = owner.session
        # The owner's own method, so a node connection's call on the last reply goes straight
        # there (the collector contract's hot path), without a call of ours in between.
        self.complete: Callable[[], None] = owner.batch_complete
        self.replies: list[Reply | None] = [None] * size
        self.remaining = size
        self.close_after = False
        self.silent: set[int] | None = None  # replies not to write (CLIENT REPLY OFF/SKIP)
        # Timing (the slow log, and one batch in SAMPLE_EVERY for the latency histogram): when
        # its commands were read (0.0: not timed, e.g. it holds a blocking command), and the
        # first command's arguments (the name it is known by). Only the first two of a
        # LargeArgs: the others may be views into a large frame (see ExactReader), which would
        # then live as long as the whole batch, not just until its command is answered.
        self.read_at = read_at
        self.first = first
        self.sampled = False
        self.large_bytes = 0  # bytes of its large replies, counted in the client's output buffer

    @property
    def lane(self) -> int:
        return self.session.lane

    def large_reply(self, size: int) -> None:
        self._owner.large_reply(self, size)

    def silence(self, index: int) -> None:
        """The command at ``index`` runs, but its reply is not written."""
        if self.silent is None:
            self.silent = set()
        self.silent.add(index)

    def written(self) -> list[Reply | None]:
        """The replies to write: all but the silenced ones."""
        if self.silent is None:
            return self.replies
        return [r for k, r in enumerate(self.replies) if k not in self.silent]

    def drop(self) -> None:
        """Its client is gone: keep no reply received for it from now on."""
        self.replies = _Dropped(itertools.repeat(None, len(self.replies)))

    def cut_after(self, index: int) -> None:
        """Drop the commands after ``index`` unanswered (QUIT: Redis never runs them)."""
        self.remaining -= len(self.replies) - index - 1
        del self.replies[index + 1 :]

    def fill(self, index: int, reply: Reply) -> None:
        """Set one reply (for replies produced outside a node connection's hot loop)."""
        self.replies[index] = reply
        self.remaining -= 1
        if not self.remaining:
            self.complete()
