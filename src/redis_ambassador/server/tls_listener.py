"""The TLS listener's handshakes: counted and logged when they fail.

asyncio's TLS layer (uvloop's too) closes a client whose handshake fails without a word to the
application; ``SSLContext.sslobject_class`` is where a failed handshake can still be seen. A
client that passes is an ordinary ClientConnection on a TLS transport.
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
