"""A connection to one node for one subscribed client: replies are not one per command.

``SUBSCRIBE a b`` is answered by two confirmations, and messages arrive whenever someone
publishes. This connection only frames what the node sends into whole replies and hands each to
its listener in order; which reply belongs to which command is the listener's business
(routing/pubsub.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from redis_ambassador.protocol.replies import ReplyScanner

if TYPE_CHECKING:
    from redis_ambassador.config import Address


class Listener(Protocol):
    def received(self, conn: SubscriberConnection, reply: bytes) -> None: ...
    def lost(self, conn: SubscriberConnection) -> None: ...


class SubscriberConnection(asyncio.Protocol):
    """Writes what it is given, hands every whole reply to the listener."""

    def __init__(
        self, address: Address, listener: Listener, protocol: int, auth: bytes = b""
    ) -> None:
        self.address = address
        self.protocol = protocol
        self._listener = listener
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._buf = bytearray()
        self._scanner = ReplyScanner()
        self.closed = False
        self.closing = False
        self.failure = "connection lost"
        # Sent first, answered here: AUTH (a refusal fails the connection), and HELLO 3 (the
        # server map it answers is not the client's).
        self._auth = auth
        if auth:
            self._out.append(auth)
        if protocol == 3:
            self._out.append(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
        self._unanswered = len(self._out)

    def send(self, frame: bytes) -> None:
        if self._transport is not None:
            self._transport.write(frame)
        else:
            self._out.append(frame)

    def close(self) -> None:
        self.closing = True
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str) -> None:
        """Drop the connection now, as if the node had (a chaos partition): its listener
        subscribes again elsewhere."""
        self.failure = reason
        if self._transport is not None:
            self._transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        if self.closing:
            transport.close()
            return
        if self._out:
            self._transport.write(b"".join(self._out))
            self._out.clear()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while pos < len(buf):
            end = self._scanner.end_of(buf, pos)
            if end < 0:
                break
            if self._unanswered:
                self._unanswered -= 1
                if self._auth and buf[pos] == 45 and not self.closing:  # AUTH refused
                    reason = bytes(buf[pos + 1 : end - 2]).decode(errors="replace")
                    self.failure = f"authentication failed: {reason}"
                    assert self._transport is not None
                    self._transport.abort()
                    return
                self._auth = b""
                pos = end
                continue
            self._listener.received(self, bytes(buf[pos:end]))
            if self.closed:
                return
            pos = end
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        if exc is not None:
            self.failure = str(exc) or self.failure
        self._listener.lost(self)
