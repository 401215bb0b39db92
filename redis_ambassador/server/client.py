"""One client connection: read commands, hand them to the router, write replies in order.

A read's commands form one ``Batch`` (routing/session.py). Its replies are filled in as nodes answer
(in any order across nodes) and the batch is written once complete, after every earlier batch:
the client sees replies in exactly the order it sent the commands, as from a single Redis. The
connection owns bytes in and out and the limits on them; the client's routing state is its
``Session`` (routing/session.py), which the router reads and changes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Protocol

from redis_ambassador import errors
from redis_ambassador.faults.inject import PacedWriter
from redis_ambassador.operations.histogram import SAMPLE_EVERY
from redis_ambassador.operations.ratelimit import LimitedLog
from redis_ambassador.protocol.requests import QueryBufferLimit, RequestParser
from redis_ambassador.protocol.writes import LargeFrames, write_joined
from redis_ambassador.routing.session import Batch, Session

if TYPE_CHECKING:
    from redis_ambassador.config import ServerConfig
    from redis_ambassador.loop import Scheduler

log = logging.getLogger(__name__)

_client_ids = itertools.count(1)
_monotonic = time.monotonic
# One line per client error (malformed input), but a flood of bad clients cannot flood the log.
_client_errors = LimitedLog(log, logging.INFO, 10, "client errors")
# Clients refused or closed for a limit: one line each, as many as a flood allows.
_limit_hits = LimitedLog(log, logging.WARNING, 10, "client limit hits")
# Reading a client paused for backpressure: routine for a deep pipeline, so only at debug.
_pauses = LimitedLog(log, logging.DEBUG, 10, "client reads paused")
# HTTP requests sent to the Redis port (Redis logs these once a minute at most).
_attacks = LimitedLog(log, logging.WARNING, 1, "possible security attacks")

# Why the ambassador closed a client (client_disconnects_total's "reason"), and why it paused
# reading one (client_reads_paused_total's): fixed words, so metric labels stay bounded.
CLOSE_REASONS = (
    "idle_timeout", "protocol_error", "query_buffer_limit", "output_buffer_hard_limit",
    "output_buffer_soft_limit", "pubsub_output_buffer", "cross_protocol",
)  # fmt: skip
PAUSE_REASONS = ("pending_requests", "output_buffer")


class ClientRegistry:
    """The connected clients, and how many have left since start (for memory housekeeping)."""

    def __init__(self) -> None:
        self.connected: set[ClientConnection] = set()
        self.departed = 0
        self.accepted = 0
        self.sample_in = SAMPLE_EVERY  # batches until the next one timed
        self.bytes_in = 0  # read from clients
        self.bytes_out = 0  # replies written to clients
        self.rejected = 0  # connections refused: max_clients reached
        self.closed_by = dict.fromkeys(CLOSE_REASONS, 0)
        self.paused_by = dict.fromkeys(PAUSE_REASONS, 0)
        # Clients whose unread replies are over max_output_buffer, and since when (the soft
        # output buffer limit's clock); few, so the sweep does not walk every client.
        self.over_soft_limit: dict[ClientConnection, float] = {}
        self.tls_handshake_failures = 0  # TLS listener's clients refused before connecting
        self._all_gone: asyncio.Event | None = None  # set once draining and none is left

    def sessions(self) -> list[Session]:
        """Every connected client's session (CLIENT LIST)."""
        return [client.session for client in self.connected]

    def add(self, client: ClientConnection) -> None:
        self.connected.add(client)
        self.accepted += 1
        if self._all_gone is not None:
            client.drain()  # accepted just before the listener closed

    def discard(self, client: ClientConnection) -> None:
        if client in self.connected:
            self.connected.discard(client)
            self.departed += 1
            if self._all_gone is not None and not self.connected:
                self._all_gone.set()

    def drain(self) -> None:
        """Shutdown: every client stops reading and closes once its replies are written."""
        self._all_gone = asyncio.Event()
        for client in list(self.connected):
            client.drain()
        if not self.connected:
            self._all_gone.set()

    async def drained(self) -> None:
        """Return once every client has closed (after ``drain``)."""
        assert self._all_gone is not None, "drain() first"
        await self._all_gone.wait()

    def close_idle(self, timeout: float, now: float) -> int:
        """Close the clients idle for more than ``timeout`` seconds; return how many."""
        idle = [client for client in self.connected if client.idle_for(now) > timeout]
        for client in idle:
            client.close()
        self.closed_by["idle_timeout"] += len(idle)
        return len(idle)

    def close_over_soft_limit(self, seconds: float, now: float) -> int:
        """Close the clients whose unread replies stayed over the soft output buffer limit
        (``max_output_buffer``) for more than ``seconds``; return how many."""
        over = [c for c, since in self.over_soft_limit.items() if now - since > seconds]
        for client in over:
            client.disconnect(
                "output_buffer_soft_limit",
                f"replies unread over server.max_output_buffer for more than {seconds:g}s",
            )
        return len(over)


class Dispatcher(Protocol):
    """What a client connection asks of the router (routing/router.py)."""

    settings: ServerConfig  # the server's limits, read by each new connection
    pool_size: int
    scheduler: Scheduler  # the event loop's time and timers (a fault's paced writes)
    slow_after: float  # seconds after which a request is slow

    @property
    def auth_required(self) -> bool:
        """Whether a new client must AUTH before anything else."""
        ...

    def upstream_auth(self, block: int) -> bytes:
        """The AUTH frame a client's own node connection opened now signs in with."""
        ...

    def dispatch(
        self, session: Session, batch: Batch, commands: list[list[bytes]], frames: list[bytes]
    ) -> None:
        """Send (or answer) every command of one read; replies land in ``batch`` by index."""
        ...

    def timed(self, session: Session, batch: Batch, elapsed: float) -> None:
        """A sampled or slow batch's replies were written ``elapsed`` seconds after its read."""
        ...


class ClientConnection(asyncio.Protocol):
    """The ambassador's side of one client's socket."""

    # Slots, not a per-instance dict: ten thousand idle clients each keep only these.
    __slots__ = (
        "_batches",
        "_closing",
        "_held",
        "_held_error",
        "_inflight",
        "_large_bytes",
        "_max_inflight",
        "_max_output",
        "_max_output_hard",
        "_parser",
        "_reading",
        "_registry",
        "_router",
        "_transport",
        "_write_paused",
        "connected_at",
        "fd",
        "last_read",
        "local_address",
        "peer",
        "session",
    )  # fmt: skip

    def __init__(self, router: Dispatcher, registry: ClientRegistry) -> None:
        settings = router.settings
        self.session = Session(
            self, next(_client_ids), router.pool_size, router.auth_required, router.upstream_auth
        )
        self.connected_at = self.last_read = time.monotonic()
        self._router = router
        self._registry = registry
        self._parser = RequestParser(
            settings.max_bulk_len, settings.max_multibulk_len, settings.max_query_buffer
        )
        self._max_inflight = settings.max_inflight_per_client
        self._max_output = settings.max_output_buffer
        self._max_output_hard = settings.output_buffer_hard_limit
        # Bytes of large replies received for batches not yet written (Batch.large_bytes): with the
        # transport's buffer, what the hard output buffer limit measures.
        self._large_bytes = 0
        # A list, not a deque: an empty deque costs ten times an empty list, per idle client, and
        # few batches are ever in flight for one client.
        self._batches: list[Batch] = []
        self._inflight = 0  # commands read but not yet answered
        self._transport: asyncio.Transport | None = None
        self._reading = True
        self._write_paused = False
        self._closing = False
        # Commands read but not dispatched yet: what follows a blocking command, until it is
        # answered (a blocked Redis client runs nothing after it); reading is paused meanwhile.
        self._held: tuple[list[list[bytes]], list[bytes]] | None = None
        self._held_error: bytes | None = None  # a protocol error read after them
        self.peer = "?"
        self.local_address = ("", 0)  # what the client dialed: CLUSTER SLOTS/SHARDS/NODES
        self.fd = -1

    def describe(self) -> str:
        """The client as log lines name it: address, id, and name if it set one."""
        session = self.session
        named = f", name {session.name.decode(errors='replace')}" if session.name else ""
        return f"{self.peer} (id {session.id}{named})"

    @property
    def gone(self) -> bool:
        """The connection is closed (or closing)."""
        return self._transport is None or self._closing

    # -- asyncio's side -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        registry = self._registry
        max_clients = self._router.settings.max_clients
        if len(registry.connected) >= max_clients:
            # As Redis does past maxclients: its error, then close; never registered.
            self._closing = True
            transport.write(errors.MAX_CLIENTS)  # type: ignore[attr-defined]
            transport.close()
            registry.rejected += 1
            _limit_hits.log(
                _monotonic(), "client %s refused: max number of clients reached (%d, "
                "server.max_clients)", self.peer, max_clients,
            )  # fmt: skip
            return
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        # A client may write its whole pipeline before reading a reply: keep reading it while
        # its replies pile up, to a bound (a small one would deadlock such a client).
        self._transport.set_write_buffer_limits(high=self._max_output)
        local = transport.get_extra_info("sockname")
        if local:
            self.local_address = (local[0], local[1])
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
        registry.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.last_read = _monotonic()  # once per read: what the idle timeout measures
        self._registry.bytes_in += len(data)
        commands, frames, error = self._parser.feed(data)
        if commands:
            self._dispatch(commands, frames, self.last_read)
        if error is not None:
            self._bad_input(error)
        elif self._inflight >= self._max_inflight:
            self._limit_pause("pending_requests")

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._transport = None
        self._registry.discard(self)
        self._registry.over_soft_limit.pop(self, None)
        # Replies still owed go nowhere; the batches are dropped when their nodes answer.
        self._drop_batches()
        self._held = None
        # A blocked command, a WATCH or a subscription ends with its connection.
        self.session.depart()

    def pause_writing(self) -> None:
        # The client is not reading: stop reading its commands, so what we buffer for it stays
        # bounded by what is already in flight.
        self._write_paused = True
        self._registry.over_soft_limit[self] = _monotonic()
        self._limit_pause("output_buffer")

    def resume_writing(self) -> None:
        self._write_paused = False
        self._registry.over_soft_limit.pop(self, None)
        self._maybe_resume_reading()

    # -- the router's and nodes' side -----------------------------------------------------------

    def batch_complete(self) -> None:
        """Write every complete batch at the head of the queue."""
        batches = self._batches
        transport = self._transport
        if transport is None:
            return
        head = batches[0] if batches else None
        if head is None or head.remaining:
            return
        batches.pop(0)
        if not batches or batches[0].remaining:
            # The common case: exactly one batch became writable.
            replies = head.replies if head.silent is None else head.written()
            large = head.large_bytes
            if large:  # a large reply among them: not joined (a copy), see write_joined
                self._large_bytes -= large
                self._registry.bytes_out += write_joined(transport.write, replies)  # type: ignore[arg-type]
            else:
                data = replies[0] if len(replies) == 1 else b"".join(replies)  # type: ignore[arg-type]
                transport.write(data)  # type: ignore[arg-type]
                self._registry.bytes_out += len(data)  # type: ignore[arg-type]
            self._inflight -= len(head.replies)
            if self._write_paused and self._hard_limit_reached(transport):
                return
            read_at = head.read_at
            if read_at and (head.sampled or _monotonic() - read_at >= self._router.slow_after):
                self._timed(head)
            if head.close_after:
                self._close_after_write()
        else:
            out = list(head.written())
            done = len(head.replies)
            large = head.large_bytes
            close = head.close_after
            if head.read_at:
                self._timed(head)
            while batches and not batches[0].remaining and not close:
                nxt = batches.pop(0)
                if nxt.read_at:
                    self._timed(nxt)
                out.extend(nxt.written())
                done += len(nxt.replies)
                large += nxt.large_bytes
                close = nxt.close_after
            if large:
                self._registry.bytes_out += write_joined(transport.write, out)  # type: ignore[arg-type]
            else:
                data = b"".join(out)  # type: ignore[arg-type]
                transport.write(data)
                self._registry.bytes_out += len(data)
            self._inflight -= done
            self._large_bytes -= large
            if self._write_paused and self._hard_limit_reached(transport):
                return
            if close:
                self._close_after_write()
        if self._held is not None and not batches:
            self._dispatch_held()
        if not self._reading:
            self._maybe_resume_reading()

    def push(self, message: bytes) -> None:
        """A pub/sub message (or MONITOR line): written after every reply already owed, else at
        once. A client that lets them pile up past ``max_output_buffer`` is disconnected, as
        Redis does with its pubsub output buffer limit: publishers cannot be paused."""
        transport = self._transport
        if transport is None:
            return
        if self._write_paused and transport.get_write_buffer_size() > self._max_output:
            self.disconnect("pubsub_output_buffer", "messages unread over server.max_output_buffer")
            return
        if not self._batches:
            transport.write(message)
            return
        batch = Batch(self, 1)
        self._batches.append(batch)
        self._inflight += 1
        batch.fill(0, message)

    def large_reply(self, batch: Batch, size: int) -> None:
        """A large reply arrived for ``batch`` and waits until the batch can be written: it
        counts in this client's output buffer (a pipeline of large GETs that the client never
        reads must hit the hard limit before the replies are written, not after)."""
        transport = self._transport
        if transport is None:
            return
        batch.large_bytes += size
        self._large_bytes += size
        self._hard_limit_reached(transport)

    def waiting_before(self, batch: Batch, index: int) -> bool:
        """Whether any command sent before ``batch[index]`` still awaits its reply (none does
        once the client is cut: its batches are gone)."""
        batches = self._batches
        return bool(batches) and (batches[0] is not batch or None in batch.replies[:index])

    def hold(
        self, batch: Batch, index: int, commands: list[list[bytes]], frames: list[bytes]
    ) -> None:
        """Keep ``batch``'s commands from ``index`` on (``commands``, ``frames``; maybe none)
        unsent until every reply before them is written; stop reading meanwhile."""
        self._held = (commands[index:], frames[index:])
        self._inflight -= len(batch.replies) - index
        if index:
            batch.cut_after(index - 1)
        else:
            # Not always the newest: a MONITOR line of its own may have been pushed after it.
            self._batches.remove(batch)
        self._pause_reading()

    def _dispatch_held(self) -> None:
        assert self._held is not None
        commands, frames = self._held
        self._held = None
        if commands:
            # Made before the node connections' last writes, maybe large: have them look.
            LargeFrames.queued += 1
            self._dispatch(commands, frames, 0.0)  # its wait behind the blocking one is no news
        if self._held is None and self._held_error is not None:
            self._refuse(self._held_error)
        elif self._held is None and self._closing and self._transport is not None:
            self._close_when_answered()  # draining: these were the last commands read

    def close_after_reply(self, batch: Batch) -> None:
        """QUIT: close once this batch's replies are written; read nothing more."""
        batch.close_after = True
        self._closing = True
        self._pause_reading()

    # -- internals ------------------------------------------------------------------------------

    def _dispatch(self, commands: list[list[bytes]], frames: list[bytes], read_at: float) -> None:
        if len(commands) > self._max_inflight:
            self._dispatch_in_turns(commands, frames, read_at)
            return
        first = commands[0]
        if first.__class__ is not list:
            first = first[:2]  # a LargeArgs: see Batch.first
        batch = Batch(self, len(commands), read_at, first)
        registry = self._registry
        registry.sample_in -= 1
        if registry.sample_in <= 0:
            registry.sample_in = SAMPLE_EVERY
            batch.sampled = True
        self._batches.append(batch)
        self._inflight += len(commands)
        self._router.dispatch(self.session, batch, commands, frames)

    def _dispatch_in_turns(
        self, commands: list[list[bytes]], frames: list[bytes], read_at: float
    ) -> None:
        """One read brought more commands than ``max_inflight_per_client``: send that many,
        and keep the rest until their replies are written, as if behind a blocking command.
        Sending thousands at once would let their replies (small ones are not counted until
        written) pile up past the output buffer limits."""
        cap = self._max_inflight
        self._registry.paused_by["pending_requests"] += 1
        at = 0
        while True:
            self._dispatch(commands[at : at + cap], frames[at : at + cap], read_at)
            at += cap
            transport = self._transport
            if (
                at >= len(commands)
                or transport is None
                or transport.is_closing()  # a QUIT, answered and written
                or (self._batches and self._batches[-1].close_after)  # a QUIT, not yet
            ):
                return
            if self._batches or self._held is not None:
                break  # replies owed: the rest waits for them
        held = self._held
        if held is None:
            self._held = (commands[at:], frames[at:])
        else:
            self._held = (held[0] + commands[at:], held[1] + frames[at:])
        self._pause_reading()

    def _timed(self, batch: Batch) -> None:
        """A timed batch's replies were written: the latency sample, the slow log."""
        elapsed = _monotonic() - batch.read_at
        if batch.sampled or elapsed >= self._router.slow_after:
            self._router.timed(self.session, batch, elapsed)

    def _refuse(self, reply: bytes) -> None:
        """Queue an error after everything owed, then close (Redis's protocol-error behaviour)."""
        batch = Batch(self, 1)
        self._batches.append(batch)
        self._inflight += 1
        self.close_after_reply(batch)
        batch.fill(0, reply)

    def _bad_input(self, error: Exception) -> None:
        """A protocol error: Redis's reply after everything owed, then close. An unfinished
        request over the query buffer limit: close at once, without a reply, as Redis does."""
        if isinstance(error, QueryBufferLimit):
            self.disconnect(
                "query_buffer_limit",
                "unfinished request over the query buffer limit (server.max_query_buffer)",
            )
            return
        self._registry.closed_by["protocol_error"] += 1
        if self._held is not None:
            self._held_error = errors.protocol(str(error))
        else:
            self._refuse(errors.protocol(str(error)))
        _client_errors.log(_monotonic(), "client %s: %s; closing", self.describe(), error)

    def _hard_limit_reached(self, transport: asyncio.Transport) -> bool:
        """Past the hard output buffer limit (replies written but unread, plus large ones
        waiting for their batch): disconnect now, as Redis's client-output-buffer-limit does."""
        if self._large_bytes + transport.get_write_buffer_size() <= self._max_output_hard:
            return False
        self.disconnect(
            "output_buffer_hard_limit",
            f"replies unread over server.output_buffer_hard_limit ({self._max_output_hard} bytes)",
        )
        return True

    def cross_protocol_attack(self, name: bytes) -> None:
        """``POST`` or ``Host:`` as a command: an HTTP request sent to the Redis port (an app's
        SSRF, say). As Redis does, the client is closed at once and nothing more is written
        to it; what it sent after runs nowhere."""
        self.disconnect(
            "cross_protocol",
            f"sent {name.decode(errors='replace')!r}, an HTTP request: possible SECURITY "
            "ATTACK (cross-protocol scripting)",
            _attacks,
        )

    def disconnect(self, reason: str, why: str, logged: LimitedLog = _limit_hits) -> None:
        """Close at once for a limit or hostile input (``reason``, one of CLOSE_REASONS),
        dropping whatever is owed; counted and logged."""
        registry = self._registry
        registry.closed_by[reason] += 1
        registry.over_soft_limit.pop(self, None)
        logged.log(_monotonic(), "client %s: %s; closing", self.describe(), why)
        transport = self._transport
        self._closing = True
        # Gone from now on: nothing more is written, and what it was owed is let go at once.
        self._transport = None
        self._drop_batches()
        self._held = None
        if transport is not None:
            transport.abort()

    def _drop_batches(self) -> None:
        for batch in self._batches:
            batch.drop()
        self._batches.clear()
        self._large_bytes = 0

    def _limit_pause(self, reason: str) -> None:
        """Stop reading this client's commands for backpressure (``reason``: PAUSE_REASONS)."""
        if self._reading:
            self._registry.paused_by[reason] += 1
            _pauses.log(_monotonic(), "client %s: reading paused (%s)", self.describe(), reason)
        self._pause_reading()

    def _close_after_write(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _pause_reading(self) -> None:
        if self._reading and self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            not self._reading
            and not self._closing
            and not self._write_paused
            and self._held is None
            and self._inflight < self._max_inflight
            and self._transport is not None
        ):
            self._reading = True
            self._transport.resume_reading()

    # -- chaos (faults/inject.py) ---------------------------------------------------------

    def cut(self, reset: bool) -> None:
        """Close the connection now, replies still owed never written (a drop or reset fault);
        ``reset``: with a TCP RST instead of a FIN."""
        transport = self._transport
        if transport is None:
            return
        self._closing = True
        self._batches.clear()
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()

    def pace(self, piece: int, pause: float) -> None:
        """Write to the client in pieces of ``piece`` bytes, ``pause`` seconds apart, until
        what is written meanwhile has gone out (a bandwidth or split fault)."""
        transport = self._transport
        if transport is not None and not isinstance(transport, PacedWriter):
            paced = PacedWriter(self, transport, piece, pause, self._router.scheduler)
            self._transport = paced  # type: ignore[assignment]

    def restore_transport(self, paced: PacedWriter, transport: asyncio.Transport) -> None:
        """The paced writes are out: write straight to the transport again."""
        if self._transport is paced:  # type: ignore[comparison-overlap]
            self._transport = transport

    def close(self) -> None:
        """Close the connection once what is already written has been sent."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close the connection now, dropping what it has not sent (end of a drain)."""
        if self._transport is not None:
            self._transport.abort()

    # -- lifecycle ------------------------------------------------------------------------------

    def drain(self) -> None:
        """Shutdown: read no more commands; close once every command already read is answered
        and its reply written (at once when none is owed)."""
        if self._transport is None:
            return
        self._closing = True
        self._pause_reading()
        if self._held is None:
            self._close_when_answered()
        # Else the held commands are dispatched once the replies before them are written, and
        # the close is arranged then (_dispatch_held).

    def _close_when_answered(self) -> None:
        if self._batches:
            self._batches[-1].close_after = True
        else:
            self.close()

    @property
    def owed(self) -> int:
        """Commands read whose replies are not written yet (held ones included)."""
        return self._inflight + (len(self._held[0]) if self._held is not None else 0)

    def idle_for(self, now: float) -> float:
        """Seconds since the last read, or 0 for a client the idle timeout must spare: one
        with a reply owed (a blocking command among them), or subscribed, as in Redis."""
        if self._batches or self._held is not None or self.session.subscriptions is not None:
            return 0.0
        return now - self.last_read
