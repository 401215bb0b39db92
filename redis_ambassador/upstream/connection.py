"""One pipelined connection to one cluster node, shared by many clients.

Frames from every client are queued and written once per event-loop tick; replies come back in
the order the frames were written, so a FIFO of "who asked" is all the bookkeeping needed. Each
reply's bytes are handed to the collector that asked (upstream/collector.py), untouched.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Protocol

from redis_ambassador.operations.histogram import SAMPLE_EVERY
from redis_ambassador.protocol.replies import ReplyScanner
from redis_ambassador.protocol.writes import LargeFrames, write_joined
from redis_ambassador.upstream.collector import Collector

if TYPE_CHECKING:
    from redis_ambassador.config import Address
    from redis_ambassador.upstream.retry import Attempt

# Who asked: the collector (None for an ASKING whose +OK is dropped), the command's place in it,
# its frame (kept to resend on a redirection) and its retry history (0 until its first
# redirection or retry, then an Attempt).
Entry = tuple[Collector | None, int, bytes, "Attempt | int"]

ASKING = b"*1\r\n$6\r\nASKING\r\n"
READONLY = b"*1\r\n$8\r\nREADONLY\r\n"
HELLO3 = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"
HELLO2 = b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n"
# Replies the router acts on instead of forwarding: redirections, refusals that say "not now"
# (the command did not run, so sending it again is safe; READONLY: a master Sentinel demoted),
# and a script missing on this node.
_REDIRECT_PREFIXES = (
    b"-MOVED ", b"-ASK ", b"-TRYAGAIN ", b"-CLUSTERDOWN ", b"-LOADING ", b"-MASTERDOWN ",
    b"-READONLY ", b"-NOSCRIPT ",
)  # fmt: skip
# Redis's reply to input it cannot read; it then closes the connection (setProtocolError).
_PROTOCOL_ERROR = b"-ERR Protocol error"
# Replies longer than this take the scanner's path, where they are counted against their
# client's output buffer limit while they wait to be written (LARGE_REPLY in the literal below).
LARGE_REPLY = 16384


class ConnectionOwner(Protocol):
    """What a connection reports to: redirections, failures, and when it has bytes to write."""

    def redirected(self, entry: Entry, reply: bytes, via: NodeConnection) -> None: ...
    def connection_failed(
        self, conn: NodeConnection, unsent: list[Entry], sent: list[Entry]
    ) -> None: ...
    def schedule_flush(self, conn: NodeConnection) -> None: ...
    def alive(self, conn: NodeConnection) -> None: ...
    def observed(self, conn: NodeConnection, seconds: float) -> None: ...
    def errored(self, frame: bytes) -> None: ...


class NodeConnection(asyncio.Protocol):
    """A multiplexed, pipelined connection to one node (sans-policy: the owner decides)."""

    def __init__(
        self,
        address: Address,
        owner: ConnectionOwner,
        protocol: int = 2,
        private: bool = False,
        readonly: bool = False,
        auth: bytes = b"",
    ) -> None:
        self.address = address
        self.protocol = protocol
        # One client's own connection (blocking commands, WATCH), outside the pools: its
        # commands may wait as long as they like, and closing it is not a node failure.
        self.private = private
        self._owner = owner
        self._transport: asyncio.Transport | None = None
        # Who asked, in wire order, and the frames not yet written (the tail of ``queue``). Public
        # so the router's hot loop appends to them directly; ``send`` does the same for the rest.
        self.queue: deque[Entry] = deque()
        self.out: list[bytes] = []
        self._large_seen = -1  # LargeFrames.queued at the last write that looked for one
        self._partial: bytearray | None = None
        self._scanner = ReplyScanner()
        self.dirty = False
        self.closed = False
        self.closing = False  # closed on purpose (client gone, shutdown), not failed
        self.reads = 0  # bumped on every read: the watchdog's sign of life
        self.sent = 0  # commands written (the circuit breaker's and retry budget's measure)
        # Latency sampling: one flush in SAMPLE_EVERY is timed until its last command's reply.
        self._sample_in = SAMPLE_EVERY
        self._timed_at = 0.0  # when the timed flush was written (0: none in flight)
        self._timed_left = 0  # replies still to come before its last command's
        self.failure = "connection lost"  # why it closed, for the clients' error replies
        self.timed_out = False  # aborted after the command timeout
        # How it ended, for the breaker: a node closing a connection it had accepted, of its
        # own accord, is not the node failing (one client's input could make it do that).
        self.connected = False  # the connection was made
        self.aborted = False  # the ambassador cut it (silence, breaker, partition)
        # The node answered a protocol error: it closes the connection after that reply and
        # ran nothing written after the command it refused, so those may be sent again.
        self.refused_input = False
        # The AUTH sent first (b"": none); a node refusing it fails the connection.
        self.auth = auth
        self.auth_refused = False
        if auth:
            self.queue.append((None, 0, auth, 0))
            self.out.append(auth)
        if protocol == 3:
            # First on the wire; its reply (the server map) is dropped.
            self.queue.append((None, 0, HELLO3, 0))
            self.out.append(HELLO3)
        if readonly:
            # Lets a replica answer reads of its master's slots (no effect on a master).
            self.queue.append((None, 0, READONLY, 0))
            self.out.append(READONLY)

    # -- the owner's side -------------------------------------------------------------------

    def switch_protocol(self, protocol: int) -> None:
        """HELLO 2/3 on a connection of one client's own (its WATCHes stay): the client
        switched, and its later replies on it must come in the new protocol. The node's
        reply (the server map) is dropped."""
        assert self.private
        self.send(None, 0, HELLO3 if protocol == 3 else HELLO2)
        self.protocol = protocol

    def send(
        self, batch: Collector | None, index: int, frame: bytes, hops: Attempt | int = 0
    ) -> None:
        """Queue a command; its reply will fill ``batch.replies[index]``."""
        if frame.__class__ is bytearray:
            LargeFrames.queued += 1
        self.queue.append((batch, index, frame, hops))
        self.out.append(frame)
        if not self.dirty:
            self.mark_dirty()

    def mark_dirty(self) -> None:
        """Have everything queued written at the end of this event-loop turn."""
        self.dirty = True
        self._owner.schedule_flush(self)

    def send_asking(self, batch: Collector, index: int, frame: bytes, hops: Attempt | int) -> None:
        """Queue ASKING and the command back to back, so no other client's command can land
        between them on this shared connection."""
        self.queue.append((None, 0, ASKING, hops))
        self.out.append(ASKING)
        self.send(batch, index, frame, hops)

    def flush(self) -> None:
        """Write everything queued since the last flush: in one call, unless a large frame is
        among it (see LargeFrames)."""
        self.dirty = False
        if self._transport is None or not self.out:
            return
        out = self.out
        if len(out) == 1:
            self._transport.write(out[0])
        elif self._large_seen == LargeFrames.queued:
            self._transport.write(b"".join(out))
        else:
            self._large_seen = LargeFrames.queued
            write_joined(self._transport.write, out)
        self.sent += len(out)
        out.clear()
        if not self._timed_at:
            self._sample_in -= 1
            if self._sample_in <= 0:
                self._sample_in = SAMPLE_EVERY
                self._timed_at = monotonic()
                self._timed_left = len(self.queue)

    @property
    def pending(self) -> int:
        """Commands written or queued that still await a reply."""
        return len(self.queue)

    def close(self) -> None:
        self.closing = True
        self.failure = "connection closed"
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str, timed_out: bool = False) -> None:
        """Drop the connection now (the node stopped answering); in-flight commands fail.
        ``timed_out``: they waited out the command timeout, so none is sent again."""
        self.failure = reason
        self.timed_out = timed_out
        self.aborted = True
        if self._transport is not None:
            self._transport.abort()

    @property
    def closed_by_node(self) -> bool:
        """The node closed the connection after accepting it, not the ambassador."""
        return self.connected and not self.aborted and not self.closing

    def _auth_refused(self, reply: bytes) -> None:
        """The node refused the connection's AUTH: nothing sent after it can run, so the
        connection fails (its commands are answered as for a lost connection, with the
        node's reason, which never repeats the password)."""
        self.auth_refused = True
        reason = reply[1:].rstrip(b"\r\n").decode(errors="replace")
        self.abort(f"authentication failed: {reason}")

    # -- asyncio's side ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.connected = True
        if self.closing:  # closed while it was connecting
            transport.close()
            return
        if self.out:
            self.flush()

    def data_received(self, data: bytes) -> None:
        if not self.reads:
            self._owner.alive(self)  # the node answers on this connection: it is alive
        self.reads += 1
        partial = self._partial
        if partial is not None:
            partial += data
            buf: bytes | bytearray = partial
        else:
            buf = data
        inflight = self.queue
        before = len(inflight)
        popleft = inflight.popleft
        end_of = self._scanner.end_of
        find = buf.find
        size = len(buf)
        pos = 0
        # Bulk strings and one-line replies are framed inline; the scanner does the rest, and
        # resumes a reply split across reads (all of a buffer that began with a partial reply).
        fast = partial is None
        while pos < size and inflight:
            kind = buf[pos]
            end = -1
            if fast:
                if kind == 36:
                    eol = find(b"\r\n", pos)
                    if eol > 0:
                        length = int(buf[pos + 1 : eol])
                        end = eol + length + 4 if length >= 0 else eol + 2
                        if end > size or length > 16384:  # LARGE_REPLY
                            end = -1
                elif kind == 43 or kind == 58:
                    end = find(b"\r\n", pos) + 2
                    if end == 1:
                        end = -1
            if end < 0:
                end = end_of(buf, pos)
                if end < 0:
                    break
                if kind == 62:
                    # A push: never the reply to a command on this connection (nothing sent on
                    # it subscribes or tracks). Matching it to one would shift every reply after.
                    pos = end
                    continue
                if kind == 45 or kind == 33:  # an error (RESP3: a blob error)
                    taken = self._error(buf, pos, end)
                    if taken is None:
                        return  # the connection's AUTH refused: it is failing
                    if taken:
                        pos = end
                        continue
                if end - pos > LARGE_REPLY:
                    asker = inflight[0][0]
                    if asker is not None:
                        asker.large_reply(end - pos)
                    if buf is partial and not pos:
                        partial = buf = self._hand_over(partial, end)
                        find = buf.find
                        size = len(buf)
                        continue
            batch, index, _, _ = popleft()
            if batch is not None:
                batch.replies[index] = buf[pos:end]
                batch.remaining -= 1
                if not batch.remaining:
                    batch.complete()
            pos = end
        if pos >= size:
            self._partial = None
        elif partial is not None:
            del partial[:pos]
        else:
            self._partial = bytearray(buf[pos:])
        if self._timed_at:
            self._timed_left -= before - len(inflight)
            if self._timed_left <= 0:
                self._owner.observed(self, monotonic() - self._timed_at)
                self._timed_at = 0.0

    def _error(self, buf: bytes | bytearray, pos: int, end: int) -> bool | None:
        """An error reply at ``buf[pos:end]``, for the command at the head of the queue: True
        when taken here (a redirection or a "not now" refusal, the owner's to act on), None when
        it refused the connection's AUTH (the connection fails), else False (the command's own
        reply, counted)."""
        inflight = self.queue
        if buf[pos] == 45 and buf.startswith(_REDIRECT_PREFIXES, pos):
            self._owner.redirected(inflight.popleft(), bytes(buf[pos:end]), self)
            return True
        if buf[pos] == 45 and buf.startswith(_PROTOCOL_ERROR, pos):
            self.refused_input = True
        if inflight[0][2] is self.auth and inflight[0][0] is None:
            self._auth_refused(bytes(buf[pos:end]))
            return None
        self._owner.errored(inflight[0][2])
        return False

    def _hand_over(self, whole: bytearray, end: int) -> bytearray:
        """The reply at the head of the queue is ``whole[:end]``, in the buffer it grew in read
        by read: that buffer itself becomes the reply (a copy would double a large value; it is
        never changed again), and a new one holds what followed it, which is returned."""
        rest = self._partial = whole[end:]
        del whole[end:]
        batch, index, _, _ = self.queue.popleft()
        if batch is not None:
            batch.fill(index, whole)  # type: ignore[arg-type]
        return rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        entries = list(self.queue)
        self.queue.clear()
        # Written but unanswered: they may have run, unless the node refused the input.
        cut = 0 if self.refused_input else len(entries) - len(self.out)
        self.out.clear()
        self._owner.connection_failed(self, entries[cut:], entries[:cut])


class _Unopened:
    """Stands in a lane that has never been used (the RESP3 lanes until a client needs them)."""

    closed = True
    pending = 0

    def close(self) -> None:
        pass


UNOPENED: NodeConnection = _Unopened()  # type: ignore[assignment]
