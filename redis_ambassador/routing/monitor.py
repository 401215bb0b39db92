"""MONITOR through the ambassador: each command, as Redis's MONITOR shows it, plus where it went.

Redis writes ``+<seconds>.<microseconds> [<db> <client address>] "<arg>" "<arg>" ...`` for each
command, quoting arguments as its ``sdscatrepr`` does. The ambassador writes the same and adds
the destination after the arguments, unquoted, so parsers that collect the quoted arguments
(redis-py's ``Monitor``) read the line unchanged:

    +1764111111.123456 [0 127.0.0.1:52214] "SET" "user:1" "ada" (node 10.0.0.7:6379)

The destination is ``node HOST:PORT`` (the master owning the key's slot when the command
arrived: a redirection may send it on), ``masters`` (sent to every master), ``any master``
(keyless, one master answers) or ``ambassador`` (answered here).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis_ambassador.routing.session import Session

_ESCAPES = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r",
            ord("\t"): b"\\t", 7: b"\\a", 8: b"\\b"}  # fmt: skip


def quoted(arg: bytes) -> bytes:
    """An argument as Redis's sdscatrepr writes it: in double quotes, with C escapes and \\xNN
    for other unprintable bytes."""
    out = bytearray(b'"')
    for byte in arg:
        escape = _ESCAPES.get(byte)
        if escape is not None:
            out += escape
        elif 32 <= byte < 127:
            out.append(byte)
        else:
            out += b"\\x%02x" % byte
    out += b'"'
    return bytes(out)


def monitor_line(now: float, peer: str, args: list[bytes], destination: str) -> bytes:
    """One MONITOR line (a RESP simple string, CRLF included)."""
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    quoted_args = b" ".join(quoted(arg) for arg in args)
    return b"+%d.%06d [0 %s] %s (%s)\r\n" % (
        seconds,
        micros,
        peer.encode(),
        quoted_args,
        destination.encode(),
    )


class Monitors:
    """The clients in MONITOR, and the feed they get of every client's commands (while any
    is, every client takes the router's slow path, as Redis's MONITOR costs every command)."""

    def __init__(self) -> None:
        self.watching: list[Session] = []

    def start(self, session: Session) -> None:
        if session not in self.watching:
            self.watching.append(session)

    def stop(self, session: Session) -> None:
        if session in self.watching:
            self.watching = [monitor for monitor in self.watching if monitor is not session]

    def feed(self, session: Session, args: list[bytes], destination: str) -> None:
        """Show a command of ``session`` to every client in MONITOR."""
        line = monitor_line(time.time(), session.client.peer, args, destination)
        if any(monitor.client.gone for monitor in self.watching):
            self.watching = [monitor for monitor in self.watching if not monitor.client.gone]
        for monitor in self.watching:
            monitor.client.push(line)
