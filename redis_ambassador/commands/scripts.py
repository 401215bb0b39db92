"""Lua scripts the ambassador has seen, so a ``NOSCRIPT`` can be healed where it happens.

``EVALSHA`` only works on a node that has the script cached. Scripts loaded through the
ambassador are on every master (``SCRIPT LOAD`` fans out), but a replica promoted after a
failover, a node added later, a node restarted or a ``SCRIPT FLUSH`` on one node lose them,
and ``EVAL`` caches a script only on the node that ran it. When a node answers ``NOSCRIPT`` for
a script the ambassador has seen, the router loads it there and sends the ``EVALSHA`` again, on
the same connection, so the client never sees the error. Sans-IO.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from redis_ambassador.protocol.requests import encode_command

# Scripts remembered, least recently seen dropped first (Redis keeps every one it is given;
# an application that generates scripts without end would otherwise grow this without bound).
_CAPACITY = 10_000
# Where each command carries the script's source.
SOURCES = {"eval": 1, "eval_ro": 1, "script|load": 2}


class ScriptCache:
    """Script bodies by SHA1 (hex, lower case), learned from the commands that carry them."""

    def __init__(self, capacity: int = _CAPACITY) -> None:
        self._bodies: OrderedDict[bytes, bytes] = OrderedDict()
        self._capacity = capacity

    def learn(self, name: str, args: list[bytes]) -> None:
        """Remember the script in an EVAL, EVAL_RO or SCRIPT LOAD."""
        at = SOURCES[name]
        if len(args) <= at:
            return
        body = bytes(args[at])  # kept: never a view into the frame (see ExactReader)
        sha = hashlib.sha1(body).hexdigest().encode()
        self._bodies[sha] = body
        self._bodies.move_to_end(sha)
        if len(self._bodies) > self._capacity:
            self._bodies.popitem(last=False)

    def load_for(self, frame_args: list[bytes]) -> bytes | None:
        """For an EVALSHA/EVALSHA_RO that got NOSCRIPT: the SCRIPT LOAD that fixes it, if the
        script was seen."""
        if len(frame_args) < 2 or frame_args[0].lower() not in (b"evalsha", b"evalsha_ro"):
            return None
        body = self._bodies.get(frame_args[1].lower())
        if body is None:
            return None
        return encode_command([b"SCRIPT", b"LOAD", body])
