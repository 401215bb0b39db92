"""The TLS listener's handshakes: made with the certificates current when each begins, and
counted and logged when they fail.

asyncio's TLS layer (uvloop's too) closes a client whose handshake fails without a word to the
application; ``SSLContext.sslobject_class`` is where a failed handshake can still be seen. A
client that passes is an ordinary ClientConnection on a TLS transport. The listener's context is
fixed when it starts serving, but each connection's TLS object comes from its ``wrap_bio``: the
``ListenerContext`` hands that to the context a reload made last (rotation.py).
"""

from __future__ import annotations

import logging
import ssl
import time

from redis_ambassador.operations.ratelimit import LimitedLog
from redis_ambassador.server.client import ClientRegistry
from redis_ambassador.tls import describe

log = logging.getLogger(__name__)

# A client that connects and never finishes its handshake holds a socket only this long.
HANDSHAKE_TIMEOUT = 10.0
# One line per refused client, but a flood of them cannot flood the log.
_refusals = LimitedLog(log, logging.INFO, 10, "TLS handshake failures")


class ListenerContext(ssl.SSLContext):
    """The context the TLS listener serves with: each new connection's handshake is made with
    the context ``use`` was given last; connections already made keep theirs."""

    def __new__(cls, context: ssl.SSLContext, registry: ClientRegistry) -> ListenerContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, context: ssl.SSLContext, registry: ClientRegistry) -> None:
        self._registry = registry
        self.use(context)

    def use(self, context: ssl.SSLContext) -> None:
        """Make new connections' handshakes with ``context`` (new certificates or CAs)."""
        self.current = watch_handshakes(context, self._registry)

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self.current.wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def watch_handshakes(context: ssl.SSLContext, registry: ClientRegistry) -> ssl.SSLContext:
    """``context``, made to count (``registry.tls_handshake_failures``) and log each client
    whose handshake fails: no certificate or an untrusted one under mutual TLS, no TLS at all."""

    class WatchedHandshake(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise  # not failed: waiting for the client's next bytes
            except ssl.SSLError as exc:
                registry.tls_handshake_failures += 1
                _refusals.log(time.monotonic(), "TLS client refused: %s; closed", describe(exc))
                raise

    context.sslobject_class = WatchedHandshake
    return context
