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

from redis_ambassador.protocol.writes import LARGE_PIECE, LargeFrames

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


def as_bytes(args: list[bytes]) -> list[bytes]:
    """``args`` with each large argument (a memoryview, see ExactReader) copied into bytes: for
    code that reads arguments as text or keeps them, where only a client's mistake (or malice)
    makes one that large."""
    return [bytes(arg) for arg in args]


def _line_end(buf: bytearray, char: bytes, start: int) -> int:
    """Where ``char`` ends the line at ``start`` in ``buf``, as Redis's ``strchr`` finds it: a
    NUL byte ends the search, so a line with a NUL before its end is not (yet) a line."""
    end = buf.find(char, start)
    stop = end if end >= 0 else len(buf)
    return -1 if buf.find(b"\0", start, stop) >= 0 else end


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


class LargeArgs(list):  # type: ignore[type-arg]
    """The arguments of a command whose frame was handed over (see ExactReader), which may hold
    views into it: what keeps them past the command's handling keeps only the first two
    (``Batch.first``), so that the frame is not kept alive with them."""

    __slots__ = ()


class ExactReader:
    """Redis's own query-buffer state machine, in Python; resumable across reads.

    Checks every declared length against the limits before it waits for the payload, and
    remembers where it stopped so a large command arriving in many reads is scanned once.

    Memory: the buffer holds the unfinished command from its first byte, as received, and that
    is what is forwarded. Redis skips, unchecked, the byte after a header's '\r' and the two
    after a payload; the reader sets them to '\n' and '\r\n' as it goes, so the buffer always
    holds the canonical frame of the arguments read so far. A finished frame longer than
    LARGE_PIECE is handed over as it is (a bytearray, the buffer itself: nothing is copied),
    and the reader starts a new buffer with the bytes after it. Its arguments (a LargeArgs) are
    copies, except that an argument longer than LARGE_PIECE at index 2 or later is a read-only
    memoryview into the frame: a large value costs its size once, however long the command
    waits for its node. The command's name and its first argument (the key of most commands,
    the subcommand of containers) are always bytes; every consumer of later arguments takes
    ``bytes | memoryview`` (``==``, ``hash``, ``len``, ``%b``, hashing and joining work on
    both) and copies one that it keeps or reads as text (``bytes(arg)``, ``as_bytes``), so that
    no view outlives its command's handling.
    """

    __slots__ = (
        "_buf", "_bulklen", "_max_bulk", "_max_held", "_max_multibulk", "_meta",
        "_multibulklen", "_pos", "_spans",
    )  # fmt: skip

    def __init__(self, max_bulk_len: int, max_multibulk_len: int, max_held: int) -> None:
        self._buf = bytearray()
        self._max_bulk = max_bulk_len
        self._max_multibulk = max_multibulk_len
        self._max_held = max_held  # bytes of an unfinished command: the query buffer limit
        self._multibulklen = 0
        self._bulklen = -1
        # Within the unfinished command (which starts the buffer): where reading goes on, the
        # (start, end) of each argument read, and how many of the bytes before ``_pos`` are
        # headers and trailers (the query buffer limit counts payloads and unread bytes).
        self._pos = 0
        self._spans: list[tuple[int, int]] = []
        self._meta = 0

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

    def next_command(self) -> tuple[list[bytes], bytes | bytearray] | None:
        """The next complete command and its frame, ``([], b"")`` for a no-op line, or None for
        'need more' (raises QueryBufferLimit when what the unfinished command holds is over
        the limit)."""
        command = self._next_command()
        if command is None and len(self._buf) - self._meta > self._max_held:
            raise QueryBufferLimit("query buffer limit reached")
        return command

    def _next_command(self) -> tuple[list[bytes], bytes | bytearray] | None:
        buf = self._buf
        if not self._multibulklen:
            if not buf:
                return None
            if buf[0] != 42:
                return self._inline()
            newline = self._header_end(0, "Protocol error: too big mbulk count string")
            if newline < 0:
                return None
            count = string2ll(bytes(buf[1:newline]))
            if count is None or count > self._max_multibulk:
                raise ProtocolError("Protocol error: invalid multibulk length")
            if count <= 0:
                del buf[: newline + 2]
                return [], b""
            buf[newline + 1] = 10
            self._multibulklen = count
            self._pos = self._meta = newline + 2
            self._spans = []
        spans = self._spans
        while self._multibulklen:
            pos = self._pos
            if self._bulklen == -1:
                newline = self._header_end(pos, "Protocol error: too big bulk count string")
                if newline < 0:
                    return None
                if buf[pos] != 36:
                    raise ProtocolError(f"Protocol error: expected '$', got '{chr(buf[pos])}'")
                length = string2ll(bytes(buf[pos + 1 : newline]))
                if length is None or length < 0 or length > self._max_bulk:
                    raise ProtocolError("Protocol error: invalid bulk length")
                buf[newline + 1] = 10
                self._meta += newline + 2 - pos
                self._pos = pos = newline + 2
                self._bulklen = length
            end = pos + self._bulklen
            if len(buf) < end + 2:
                return None
            spans.append((pos, end))
            buf[end : end + 2] = b"\r\n"
            self._meta += 2
            self._pos = end + 2
            self._bulklen = -1
            self._multibulklen -= 1
        return self._finish()

    def _finish(self) -> tuple[list[bytes], bytes | bytearray]:
        """Cut the finished command (the buffer up to ``_pos``) out of the buffer."""
        buf = self._buf
        end = self._pos
        spans = self._spans
        self._pos = self._meta = 0
        self._spans = []
        if end <= LARGE_PIECE:
            args = [bytes(buf[a:b]) for a, b in spans]
            frame = bytes(buf[:end])
            del buf[:end]
            return args, frame
        LargeFrames.queued += 1
        # Resized now or never: a view into the frame forbids it from then on.
        self._buf = buf[end:]
        del buf[end:]
        whole = memoryview(buf).toreadonly()
        args = LargeArgs(
            whole[a:b] if i >= 2 and b - a > LARGE_PIECE else bytes(whole[a:b])
            for i, (a, b) in enumerate(spans)
        )
        return args, buf

    def _header_end(self, start: int, too_big: str) -> int:
        """Where the header line at ``start`` ends ('\r'), -1 while incomplete (Redis needs
        the byte after '\r' too, and gives up on a line past 64 KB)."""
        newline = _line_end(self._buf, b"\r", start)
        if newline < 0:
            if len(self._buf) - start > INLINE_MAX_SIZE:
                raise ProtocolError(too_big)
            return -1
        return newline if newline <= len(self._buf) - 2 else -1

    def _inline(self) -> tuple[list[bytes], bytes] | None:
        buf = self._buf
        newline = _line_end(buf, b"\n", 0)
        if newline < 0:
            if len(buf) > INLINE_MAX_SIZE:
                raise ProtocolError("Protocol error: too big inline request")
            return None
        end = newline - 1 if newline and buf[newline - 1] == 13 else newline
        line = bytes(buf[:end])
        del buf[: newline + 1]
        args = split_inline(line)
        return args, encode_command(args) if args else b""


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
            command = exact.next_command()
            if command is None:
                return b""
            args, frame = command
            if args:
                commands.append(args)
                frames.append(frame)
            if exact.idle:
                self._exact = None
                return b""
            if exact.at_resp_command():
                # Back on a command boundary with RESP ahead: return to the fast path.
                self._exact = None
                return exact.take_rest()
