"""Node replies: where each one ends, so its bytes reach the client exactly as the node sent them.

hiredis would decode ``+OK`` and ``$2\\r\\nOK`` to the same value, so replies are never decoded and
re-encoded on the data path: the scanner only finds frame boundaries (RESP2 and RESP3).
Also here: the few encoders for replies the ambassador writes itself.
"""

from __future__ import annotations

_BULK = frozenset(b"$!=")  # length-prefixed payloads
_AGGREGATE = frozenset(b"*~>")  # N nested replies
_PAIRS = frozenset(b"%")  # N key/value pairs
_ATTRIBUTE = 124  # '|': N pairs, then the reply they describe


class ReplyScanner:
    """Finds where a reply ends in a growing buffer, resuming where it stopped (sans-IO)."""

    __slots__ = ("_offset", "_pending")

    def __init__(self) -> None:
        self._offset = -1  # where a suspended scan stopped, relative to the reply's start
        self._pending = 0

    def end_of(self, buf: bytes | bytearray, start: int) -> int:
        """End offset of the reply starting at ``start``, or -1 until more bytes arrive.

        Call again with a longer ``buf`` to resume; the reply may have moved to another ``start``
        (the caller dropped the bytes before it).
        """
        if self._offset < 0:
            pos, pending = start, 1
        else:
            pos, pending = start + self._offset, self._pending
        end = len(buf)
        find = buf.find
        while pending:
            if pos >= end:
                return self._suspend(pos - start, pending)
            kind = buf[pos]
            eol = find(b"\r\n", pos)
            if eol < 0:
                return self._suspend(pos - start, pending)
            if kind in _BULK:
                size = int(buf[pos + 1 : eol])
                nxt = eol + 4 + size if size >= 0 else eol + 2
                if nxt > end:
                    return self._suspend(pos - start, pending)
                pos = nxt
                pending -= 1
            elif kind in _AGGREGATE:
                count = int(buf[pos + 1 : eol])
                pos = eol + 2
                pending += count - 1 if count > 0 else -1
            elif kind in _PAIRS:
                count = int(buf[pos + 1 : eol])
                pos = eol + 2
                pending += 2 * count - 1 if count > 0 else -1
            elif kind == _ATTRIBUTE:
                # The attribute's pairs come first; the reply they annotate is still owed.
                pending += 2 * int(buf[pos + 1 : eol])
                pos = eol + 2
            else:
                pos = eol + 2
                pending -= 1
        self._offset = -1
        return pos

    def _suspend(self, offset: int, pending: int) -> int:
        self._offset = offset
        self._pending = pending
        return -1


def error(text: str) -> bytes:
    """``-text`` (text starts with the error code, e.g. ``ERR ...``)."""
    return b"-%s\r\n" % text.replace("\r", " ").replace("\n", " ").encode()


def bulk(value: bytes | None) -> bytes:
    """A bulk string, or the RESP2 null bulk for None."""
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%b\r\n" % (len(value), value)


def integer(value: int) -> bytes:
    """``:value``."""
    return b":%d\r\n" % value


def array(items: list[bytes]) -> bytes:
    """An array of already-encoded replies."""
    return b"*%d\r\n%b" % (len(items), b"".join(items))


def mapping(flat: list[bytes], protocol: int) -> bytes:
    """Alternating encoded keys and values: a RESP3 map, or a flat array in RESP2."""
    if protocol == 3:
        return b"%%%d\r\n%b" % (len(flat) // 2, b"".join(flat))
    return array(flat)


def null(protocol: int) -> bytes:
    """The null reply: RESP3's ``_``, or RESP2's null bulk string."""
    return b"_\r\n" if protocol == 3 else b"$-1\r\n"


def verbatim(text: bytes, protocol: int) -> bytes:
    """Human-readable text (CLIENT INFO, CLUSTER NODES, ...): Redis sends it as a RESP3 verbatim
    string tagged ``txt`` (``=N\\r\\ntxt:...``), and as a plain bulk string in RESP2."""
    if protocol == 3:
        return b"=%d\r\ntxt:%b\r\n" % (len(text) + 4, text)
    return bulk(text)


def status(text: bytes) -> bytes:
    """A simple string reply (``+text``), e.g. one line of a HELP reply."""
    return b"+%b\r\n" % text


OK = b"+OK\r\n"
PONG = b"+PONG\r\n"


def elements(reply: bytes | bytearray) -> list[bytes]:
    """The encoded elements of a complete array, set, push or map reply (a map's keys and values
    alternate), each as the node sent it (for merges that reorder or concatenate values without
    decoding them)."""
    eol = reply.index(b"\r\n")
    count = int(reply[1:eol])
    if reply[:1] == b"%":
        count *= 2
    scanner = ReplyScanner()
    items = []
    pos = eol + 2
    for _ in range(count):
        end = scanner.end_of(reply, pos)
        items.append(bytes(reply[pos:end]))
        pos = end
    return items


def bulk_value(reply: bytes | bytearray) -> bytes:
    """The payload of a bulk string reply (``$3\\r\\nabc\\r\\n`` -> ``abc``)."""
    return bytes(reply[reply.index(b"\r\n") + 2 : -2])
