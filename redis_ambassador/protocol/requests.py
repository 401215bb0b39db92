"""Client requests: bytes in, commands out, exactly as Redis reads its query buffer.

Two readers share one contract. The fast one lets hiredis split whole commands out of a read in C
and cuts each command's frame out of the read for its node, checking it is RESP as Redis reads
it. The exact one mirrors Redis's ``processMultibulkBuffer``/``processInlineBuffer`` byte for
byte: it takes over for inline commands, commands split across reads (so declared lengths are
checked before anything is buffered), and malformed input (so the error text is Redis's).
"""

from __future__ import annotations

import re

import hiredis

# Redis's PROTO_INLINE_MAX_SIZE: how far a header or inline line may run without its newline.
INLINE_MAX_SIZE = 64 * 1024

_ISSPACE = frozenset(b" \t\n\v\f\r")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = frozenset(b"0123456789abcdefABCDEF")


# Bytes that one bulk item of n payload bytes takes in a request: "$<n>\r\n<payload>\r\n".
_ELEMENT_SIZE = [len(b"$%d\r\n" % n) + n + 2 for n in range(4096)]


def _canonical_end(buf: bytes, pos: int, args: list) -> int:
    """Where the canonical frame of ``args`` starting at ``pos`` ends, or -1 if ``buf`` does
    not hold exactly that frame there."""
    if args.__class__ is not list or not args:
        return -1  # *0, *-1 or a top-level non-array: the exact reader knows what Redis does
    p = pos + len(b"*%d\r\n" % len(args))
    for arg in args:
        if p >= len(buf) or buf[p] != 36:
            return -1
        size = len(arg)
        p += _ELEMENT_SIZE[size] if size < 4096 else size + len(b"$%d\r\n" % size) + 2
    return p if p <= len(buf) else -1


class ProtocolError(Exception):
    """Malformed input; ``str(self)`` is Redis's reply text, e.g. ``Protocol error: ...``."""


class QueryBufferLimit(ProtocolError):
    """An unfinished request grew past the query buffer limit: Redis closes such a client
    without a reply (``client-query-buffer-limit``)."""


def encode_command(args: list[bytes]) -> bytes:
    """The canonical RESP frame of a command (raises TypeError if an item is not bytes)."""
    n = len(args)
    if n == 2:
        a, b = args
        return b"*2\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(a), a, len(b), b)
    if n == 3:
        a, b, c = args
        return b"*3\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(a), a, len(b), b, len(c), c)
    if n == 1:
        (a,) = args
        return b"*1\r\n$%d\r\n%b\r\n" % (len(a), a)
    return b"*%d\r\n%b" % (n, b"".join([b"$%d\r\n%b\r\n" % (len(a), a) for a in args]))


def _line_end(buf: bytearray, char: bytes) -> int:
    """Where ``char`` ends the line at the start of ``buf``, as Redis's ``strchr`` finds it: a
    NUL byte ends the search, so a line with a NUL before its end is not (yet) a line."""
    end = buf.find(char)
    stop = end if end >= 0 else len(buf)
    return -1 if buf.find(b"\0", 0, stop) >= 0 else end


def string2ll(digits: bytes) -> int | None:
    """Redis's ``string2ll``: strict decimal, optional '-', no '+', no leading zeros."""
    if not digits or len(digits) > 20:
        return None
    body = digits[1:] if digits[0] == 45 else digits
    if not body or not body.isdigit() or (body[0] == 48 and len(digits) > 1):
        return None
    value = int(digits)
    if not -(2**63) <= value < 2**63:
        return None
    return value


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command line like Redis's ``sdssplitargs`` (quotes and escapes)."""
    args: list[bytes] = []
    n = line.find(b"\0")
    if n >= 0:  # sdssplitargs works on a C string
        line = line[:n]
    n = len(line)
    p = 0
    while True:
        while p < n and line[p] in _ISSPACE:
            p += 1
        if p >= n:
            return args
        current = bytearray()
        quote = 0  # the opening quote ('"' 34 or "'" 39) while inside one
        while True:
            c = line[p] if p < n else 0
            if quote:
                if (
                    quote == 34
                    and c == 92
                    and p + 3 < n
                    and line[p + 1] == 120
                    and (line[p + 2] in _HEX and line[p + 3] in _HEX)
                ):
                    current.append(int(line[p + 2 : p + 4], 16))  # "\xHH"
                    p += 3
                elif quote == 34 and c == 92 and p + 1 < n:
                    p += 1
                    current.append(_ESCAPES.get(line[p], line[p]))
                elif quote == 39 and c == 92 and p + 1 < n and line[p + 1] == 39:
                    p += 1
                    current.append(39)
                elif c == quote and p < n:
                    # The closing quote must end the argument.
                    if p + 1 < n and line[p + 1] not in _ISSPACE:
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    p += 1
                    break
                elif p >= n:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                else:
                    current.append(c)
            elif p >= n or c in (32, 10, 13, 9):
                break
            elif c in (34, 39):
                quote = c
            else:
                current.append(c)
            p += 1
        args.append(bytes(current))


class ExactReader:
    """Redis's own query-buffer state machine, in Python; resumable across reads.

    Keeps only the unconsumed bytes, checks every declared length against the limits before it
    waits for the payload, and remembers where it stopped so a large command arriving in many
    reads is scanned once.
    """

    __slots__ = (
        "_args", "_args_size", "_buf", "_bulklen", "_max_bulk", "_max_held", "_max_multibulk",
        "_multibulklen",
    )  # fmt: skip

    def __init__(self, max_bulk_len: int, max_multibulk_len: int, max_held: int) -> None:
        self._buf = bytearray()
        self._max_bulk = max_bulk_len
        self._max_multibulk = max_multibulk_len
        self._max_held = max_held  # bytes of an unfinished command: the query buffer limit
        self._multibulklen = 0
        self._bulklen = -1
        self._args: list[bytes] = []
        self._args_size = 0  # payload bytes in _args

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def idle(self) -> bool:
        """True when no byte of an unfinished command is held."""
        return not self._buf and not self._multibulklen

    def at_resp_command(self) -> bool:
        """True between commands when the next one is RESP (the fast path can take it)."""
        return not self._multibulklen and self._buf[:1] == b"*"

    def take_rest(self) -> bytes:
        """Hand back the unconsumed bytes (only between commands)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def next_command(self) -> list[bytes] | None:
        """The next complete command, an empty list for a no-op line, or None for 'need more'
        (raises QueryBufferLimit when what the unfinished command holds is over the limit)."""
        args = self._next_command()
        if args is None and len(self._buf) + self._args_size > self._max_held:
            raise QueryBufferLimit("query buffer limit reached")
        return args

    def _next_command(self) -> list[bytes] | None:
        buf = self._buf
        if not self._multibulklen:
            if not buf:
                return None
            if buf[0] != 42:
                return self._inline()
            newline = self._header_end("Protocol error: too big mbulk count string")
            if newline < 0:
                return None
            count = string2ll(bytes(buf[1:newline]))
            if count is None or count > self._max_multibulk:
                raise ProtocolError("Protocol error: invalid multibulk length")
            del buf[: newline + 2]
            if count <= 0:
                return []
            self._multibulklen = count
            self._args = []
            self._args_size = 0
        while self._multibulklen:
            if self._bulklen == -1:
                newline = self._header_end("Protocol error: too big bulk count string")
                if newline < 0:
                    return None
                if buf[0] != 36:
                    raise ProtocolError(f"Protocol error: expected '$', got '{chr(buf[0])}'")
                length = string2ll(bytes(buf[1:newline]))
                if length is None or length < 0 or length > self._max_bulk:
                    raise ProtocolError("Protocol error: invalid bulk length")
                del buf[: newline + 2]
                self._bulklen = length
            if len(buf) < self._bulklen + 2:
                return None
            self._args.append(bytes(buf[: self._bulklen]))
            self._args_size += self._bulklen
            # Like Redis, the two bytes after a payload are skipped unchecked.
            del buf[: self._bulklen + 2]
            self._bulklen = -1
            self._multibulklen -= 1
        args, self._args = self._args, []
        self._args_size = 0
        return args

    def _header_end(self, too_big: str) -> int:
        """Where the header line at the start of the buffer ends ('\r'), -1 while incomplete
        (Redis needs the byte after '\r' too, and gives up on a line past 64 KB)."""
        buf = self._buf
        newline = _line_end(buf, b"\r")
        if newline < 0:
            if len(buf) > INLINE_MAX_SIZE:
                raise ProtocolError(too_big)
            return -1
        return newline if newline <= len(buf) - 2 else -1

    def _inline(self) -> list[bytes] | None:
        buf = self._buf
        newline = _line_end(buf, b"\n")
        if newline < 0:
            if len(buf) > INLINE_MAX_SIZE:
                raise ProtocolError("Protocol error: too big inline request")
            return None
        end = newline - 1 if newline and buf[newline - 1] == 13 else newline
        line = bytes(buf[:end])
        del buf[: newline + 1]
        return split_inline(line)


class RequestParser:
    """Sans-IO request reader for one client connection: ``feed(bytes)`` returns its commands.

    Each command comes as ``(args, frame)``: the arguments, and the RESP frame to forward to a
    node (its bytes as received: canonical RESP, except that, as in Redis, the two bytes after
    a payload are not checked, and the node skips them just the same). Commands complete
    before a protocol error are returned with the error, so they run and are answered first,
    as Redis does.
    """

    __slots__ = (
        "_exact",
        "_large_count",
        "_max_bulk",
        "_max_multibulk",
        "_max_query",
        "_reader",
        "_slow_below",
    )

    def __init__(
        self,
        max_bulk_len: int = 512 * 1024 * 1024,
        max_multibulk_len: int = 1024 * 1024,
        max_query_buffer: int = 1024 * 1024 * 1024,
    ):
        self._reader = hiredis.Reader()
        self._exact: ExactReader | None = None
        self._max_bulk = max_bulk_len
        self._max_multibulk = max_multibulk_len
        self._max_query = max_query_buffer
        # A read no longer than every limit cannot break one, so hiredis may take it whole.
        self._slow_below = min(max_bulk_len, max_multibulk_len, max_query_buffer)
        # hiredis allocates an array as soon as it reads the header, so an absurd count must never
        # reach it: a read holding '*' and as many digits as the limit has goes the exact way.
        self._large_count = re.compile(rb"\*-?\d{%d}" % len(str(max_multibulk_len))).search

    def feed(self, data: bytes) -> tuple[list[list[bytes]], list[bytes], ProtocolError | None]:
        """Parse a read; returns (commands' args, their frames, the protocol error if any)."""
        commands: list[list[bytes]] = []
        frames: list[bytes] = []
        try:
            if self._exact is not None:
                data = self._feed_exact(data, commands, frames)
            while data:
                data = self._feed_fast(data, commands, frames)
        except ProtocolError as error:
            return commands, frames, error
        return commands, frames, None

    def _feed_fast(self, buf: bytes, commands: list, frames: list) -> bytes:
        """Take whole commands with hiredis; return what the exact reader did not finish."""
        if buf[0] != 42 or len(buf) > self._slow_below or self._large_count(buf):
            self._exact = ExactReader(self._max_bulk, self._max_multibulk, self._max_query)
            return self._feed_exact(buf, commands, frames)
        reader = self._reader
        reader.feed(buf)
        gets = reader.gets
        append_cmd = commands.append
        append_frame = frames.append
        element = _ELEMENT_SIZE
        pos = 0
        # Each command hiredis returns is located in ``buf`` by the canonical sizes of its
        # items, and every item must start with '$' where it should: then the bytes are exactly
        # the frame as Redis would read it, forwarded as it came, without re-encoding. Anything
        # else (non-'$' items, nested arrays, huge items) leaves the loop.
        try:
            while True:
                args = gets()
                if args is False:
                    if pos == len(buf):
                        return b""
                    break  # hiredis holds part of a command: let the exact reader check it
                n = len(args)
                try:
                    if n == 2:
                        a, b = args
                        p1 = pos + 4
                        p2 = p1 + element[len(a)]
                        end = p2 + element[len(b)]
                        if buf[p1] != 36 or buf[p2] != 36:
                            break
                    elif n == 3:
                        a, b, c = args
                        p1 = pos + 4
                        p2 = p1 + element[len(a)]
                        p3 = p2 + element[len(b)]
                        end = p3 + element[len(c)]
                        if buf[p1] != 36 or buf[p2] != 36 or buf[p3] != 36:
                            break
                    else:
                        raise IndexError
                except IndexError:  # another arity, or an item too large for the table
                    end = _canonical_end(buf, pos, args)
                    if end < 0:
                        break
                append_cmd(args)
                append_frame(buf[pos:end])
                pos = end
        except Exception:
            # hiredis.ProtocolError; MemoryError for an absurd array size; TypeError for an
            # integer, null or non-array where Redis wants '$'; IndexError for a huge item.
            pass
        # An unfinished, unusual or malformed command: start again from its first byte, exactly.
        self._reader = hiredis.Reader()
        self._exact = ExactReader(self._max_bulk, self._max_multibulk, self._max_query)
        return self._feed_exact(buf[pos:], commands, frames)

    def _feed_exact(self, data: bytes, commands: list, frames: list) -> bytes:
        exact = self._exact
        exact.feed(data)
        while True:
            args = exact.next_command()
            if args is None:
                return b""
            if args:
                commands.append(args)
                frames.append(encode_command(args))
            if exact.idle:
                self._exact = None
                return b""
            if exact.at_resp_command():
                # Back on a command boundary with RESP ahead: return to the fast path.
                self._exact = None
                return exact.take_rest()
