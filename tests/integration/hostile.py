"""Hostile clients: random and mutated RESP frames from many connections at once, while a
well-behaved client keeps working; every connection's replies are checked against what Redis's
own query-buffer reader (``ExactReader``, the parser's Redis mirror) says that client must get.

A session is one connection: a seeded mix of frames (valid commands, inline commands,
truncated frames, wrong lengths, nested arrays and non-bulk items, huge declared sizes, binary
junk, lines too long), delivered in one write, in random pieces, or a few bytes at a time. Its
client must then get exactly one reply per command the reference reader finds, then, if the
reference hits a protocol error, Redis's exact error text and a closed connection (a reset is
accepted too, when the ambassador closed with frames still unread, as Redis does). Meanwhile
slow-loris connections trickle one command a byte at a time for the whole run, and must be
answered when they finish it.

Used by ``test_hostile_input.py`` (a short run) and ``scripts/fuzz`` (a long one)::

    scripts/fuzz [--seed N] [--frames N] [--connections N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hiredis
import redis
import redis.asyncio

from redis_ambassador import errors
from redis_ambassador.protocol.requests import (
    INLINE_MAX_SIZE,
    ExactReader,
    ProtocolError,
    encode_command,
)

# The ambassador's defaults (server.max_*), which the reference reader must share.
MAX_BULK = 512 * 1024 * 1024
MAX_MULTIBULK = 1024 * 1024
MAX_QUERY = 1024 * 1024 * 1024

# Commands whose every call gets exactly one reply and changes nothing but "fuzz:" keys: a
# session whose reference commands are all these (or unknown to Redis) has its replies counted.
_ONE_REPLY = frozenset(
    b"ping echo get set incr del exists mget mset strlen getrange hello multi blpop".split()
)
# A session may first put its connection in a state of its own, so the frames after it take
# other paths: RESP3 replies, queued in a transaction, held behind a blocking command, or
# subscribed.
_STATES = [
    encode_command([b"HELLO", b"3"]),
    encode_command([b"MULTI"]),
    encode_command([b"BLPOP", b"fuzz:never-pushed", b"0.05"]),
    encode_command([b"SUBSCRIBE", b"fuzz:channel"]),  # its replies are not counted
]
_KEYS = [b"fuzz:%d" % i for i in range(40)] + [b"fuzz:{t}%d" % i for i in range(10)]
_HUGE_COUNTS = [999_999, 1_048_576, 1_048_577, 2**31, 2**63 - 1, 2**63, 10**20, -2, -0]
_HUGE_BULKS = [400_000_000, 536_870_912, 536_870_913, 2**31, 2**63, -5, 10**19]


# -- frames ---------------------------------------------------------------------------------------


# A large value, read by the parser in many pieces; its short lines keep every line of a
# session under 64 KB even when a mangled length makes the reader take it for headers.
_LARGE = b"0123456789abcdef\r\n" * 12_000


def _value(rng: random.Random) -> bytes:
    n = rng.choice((0, 1, 3, 8, 20, 100, 1000))
    if rng.random() < 0.003:
        return _LARGE[: rng.randint(20_000, len(_LARGE))]
    return rng.randbytes(n) if rng.random() < 0.5 else b"v" * n


def _command(rng: random.Random) -> list[bytes]:
    key = rng.choice(_KEYS)
    pick = rng.randrange(12)
    if pick == 0:
        return [b"PING"]
    if pick == 1:
        return [b"ECHO", _value(rng)]
    if pick in (2, 3):
        return [b"GET", key]
    if pick in (4, 5):
        return [b"SET", key, _value(rng)]
    if pick == 6:
        return [b"INCR", key]
    if pick == 7:
        return [b"DEL", *rng.sample(_KEYS, rng.randint(1, 4))]
    if pick == 8:
        return [b"MGET", *rng.sample(_KEYS, rng.randint(1, 5))]
    if pick == 9:
        return [b"STRLEN", key]
    if pick == 10:
        return [b"EXISTS", *rng.sample(_KEYS, rng.randint(1, 3))]
    return [b"FUZZ" + rng.randbytes(2).hex().encode(), _value(rng)]  # unknown to Redis


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        at = rng.randrange(len(data))
        how = rng.randrange(6)
        if how == 0:
            data[at] = rng.randrange(256)  # flip a byte
        elif how == 1:
            data[at:at] = rng.randbytes(rng.randint(1, 8))  # insert junk
        elif how == 2:
            del data[at : at + rng.randint(1, 8)]  # lose bytes
        elif how == 3:
            data[at:at] = rng.choice((b"\r\n", b"\r", b"\n", b"\0", b"*", b"$", b"-1"))
        elif how == 4:
            data[at:at] = data[at : at + rng.randint(1, 16)]  # duplicate a piece
        else:
            digit = data.find(b"$", at)  # a declared length, off by a little
            if digit >= 0:
                end = data.find(b"\r", digit)
                if end > digit + 1 and data[digit + 1 : end].isdigit():
                    n = int(data[digit + 1 : end]) + rng.choice((-2, -1, 1, 2, 100))
                    data[digit + 1 : end] = str(n).encode()
    return bytes(data)


def _inline(rng: random.Random) -> bytes:
    pick = rng.randrange(7)
    if pick == 0:
        return b" ".join([*_command(rng)[:1], rng.choice(_KEYS)]) + rng.choice((b"\r\n", b"\n"))
    if pick == 1:
        return b'ECHO "' + rng.randbytes(4).hex().encode() + b'\\x41\\n"\r\n'
    if pick == 2:
        return rng.choice((b"\r\n", b"\n", b"   \r\n", b"\t\n"))  # nothing: no reply
    if pick == 3:
        return rng.choice((b"SET k 'unterminated\r\n", b'GET "a"b\r\n', b"ECHO 'it\\'s'\n"))
    if pick == 4:
        return b"PING\r\n"
    if pick == 5:
        return b"SET " + rng.choice(_KEYS) + b" " + rng.randbytes(6).hex().encode() + b"\n"
    return b"GET " + rng.choice(_KEYS) + b"\n"


def _odd_items(rng: random.Random) -> bytes:
    """Arrays Redis refuses or reads oddly: nested arrays, non-bulk items, empty arrays."""
    return rng.choice(
        (
            b"*2\r\n*1\r\n$4\r\nPING\r\n$1\r\nx\r\n",
            b"*1\r\n:5\r\n",
            b"*1\r\n+PING\r\n",
            b"*2\r\n$4\r\nECHO\r\n_\r\n",
            b"*1\r\n%1\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$0\r\n\r\n",
            b"%2\r\n$1\r\na\r\n",  # not '*': an inline command named '%2'
            b"$4\r\nPING\r\n",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n",  # truncated: the next frame is read as its item
        )
    )


def _huge(rng: random.Random) -> bytes:
    """A declared size too large to buffer: refused at once, or waited for (never allocated)."""
    if rng.random() < 0.5:
        return b"*%d\r\n" % rng.choice(_HUGE_COUNTS)
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n" % rng.choice(_HUGE_BULKS)


def frame(rng: random.Random, hostility: float) -> bytes:
    """One frame: a valid command, or with probability ``hostility`` a random or mutated one."""
    if rng.random() >= hostility:
        return encode_command(_command(rng)) if rng.random() < 0.9 else _inline(rng)
    r = rng.random()
    if r < 0.10:
        return encode_command(_command(rng))
    if r < 0.25:
        return _inline(rng)
    if r < 0.60:
        return _mutate(rng, encode_command(_command(rng)))
    if r < 0.75:
        return _odd_items(rng)
    if r < 0.82:
        return _huge(rng)
    if r < 0.94:
        return rng.randbytes(rng.randint(1, 64))
    return encode_command(_command(rng))[: rng.randint(1, 20)]  # truncated


def session_stream(rng: random.Random) -> tuple[bytes, int]:
    """What one connection sends, and how many frames that is.

    No line but the last runs past Redis's 64 KB inline limit, so the outcome does not depend
    on how the reads cut the bytes; one session in fifty ends with a line too long, which is
    refused however it is cut. Some pipelines are longer than the ambassador's 1024 pending
    requests per client, so reading pauses and resumes under them.
    """
    count = rng.choice((1, 2, 5, 20, 40, 60, 100, 100, 100))
    # From clients that are almost well-behaved (one bad frame late in a pipeline, after many
    # commands to answer) to ones that send nothing but junk.
    hostility = rng.choice((0.005, 0.02, 0.05, 0.2, 1.0))
    if rng.random() < 0.02:
        count, hostility = 2500, 0.0005
    frames = [frame(rng, hostility) for _ in range(count)]
    if rng.random() < 0.3:
        frames.insert(0, rng.choice(_STATES))
        count += 1
    if rng.random() < 0.02:
        frames.append(rng.choice((b"x", b"*", b"*1\r\n$")) + b"7" * (INLINE_MAX_SIZE + 10))
        count += 1
    return b"".join(frames), count


# -- the reference ---------------------------------------------------------------------------------


@dataclass
class Expected:
    """What Redis owes a session: its commands' replies, then maybe an error and a close."""

    commands: list[list[bytes]]
    error: bytes | None  # the protocol error reply, if the stream has one
    counted: bool  # every command has exactly one reply (see _ONE_REPLY)


@dataclass(frozen=True)
class Reference:
    """Redis's reader with the ambassador's limits, and the command names Redis knows."""

    known: frozenset[bytes]
    max_bulk_len: int = MAX_BULK
    max_multibulk_len: int = MAX_MULTIBULK

    def expected(self, stream: bytes) -> Expected:
        reader = ExactReader(self.max_bulk_len, self.max_multibulk_len, MAX_QUERY)
        reader.feed(stream)
        commands: list[list[bytes]] = []
        error = None
        try:
            while (command := reader.next_command()) is not None:
                if command[0]:
                    commands.append(command[0])
        except ProtocolError as exc:
            error = errors.protocol(str(exc))
        names = {c[0].lower() for c in commands}
        counted = all(name in _ONE_REPLY or name not in self.known for name in names)
        return Expected(commands, error, counted)


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a run did and what went wrong (``problems`` empty: it passed)."""

    seed: int
    frames: int = 0
    commands: int = 0  # of the frames' commands, those Redis would run (and answer)
    sessions: int = 0
    errors_seen: int = 0  # sessions that ended with the expected protocol error
    resets: int = 0  # of those, closed with a reset before the error could be read
    vanished: int = 0  # sessions that reset their connection without reading
    well_behaved_rounds: int = 0
    rss_growth: int = 0  # bytes, peak over the baseline
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {self.frames} frames ({self.commands} commands to answer) in "
            f"{self.sessions} sessions, "
            f"{self.seconds:.1f}s; {self.errors_seen} ended with Redis's protocol error "
            f"({self.resets} of them reset), {self.vanished} vanished without reading, "
            f"{self.well_behaved_rounds} well-behaved rounds, "
            f"RSS +{self.rss_growth / 2**20:.0f} MB; {len(self.problems)} problems"
        )


async def _deliver(rng: random.Random, writer: asyncio.StreamWriter, stream: bytes) -> bool:
    """Write ``stream`` as one write, in random pieces, or slowly; False if the peer closed."""
    how = rng.random()
    if how < 0.5:
        pieces = [stream]
    else:
        top = 8 if how < 0.8 else 4096
        pieces, at = [], 0
        while at < len(stream):
            step = rng.randint(1, top)
            pieces.append(stream[at : at + step])
            at += step
    slow = how > 0.97 and len(stream) < 400
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            if slow:
                await asyncio.sleep(0.002)
    except (ConnectionError, OSError):
        return False
    return True


async def _read_replies(
    reader: asyncio.StreamReader, want: Expected, timeout: float
) -> tuple[list[object], bool, bool]:
    """Replies until the owed ones (and the close after an error) have come, the peer closes,
    or ``timeout``: (replies, closed, reset)."""
    parser = hiredis.Reader()
    replies: list[object] = []
    owed = len(want.commands) + (1 if want.error is not None else 0)
    deadline = time.monotonic() + timeout
    while True:
        if len(replies) >= owed and want.error is None:
            return replies, False, False
        left = deadline - time.monotonic()
        if left <= 0:
            return replies, False, False
        try:
            data = await asyncio.wait_for(reader.read(1 << 16), left)
        except TimeoutError:
            return replies, False, False
        except (ConnectionError, OSError):
            return replies, True, True
        if not data:
            return replies, True, False
        parser.feed(data)
        while (reply := parser.gets()) is not False:
            replies.append(reply)


def _check(index: int, stream: bytes, want: Expected, got: list[object], closed: bool,
           reset: bool, report: Report) -> None:  # fmt: skip
    def problem(what: str) -> None:
        report.problems.append(f"session {index}: {what}; sent {stream[:300]!r}")

    if want.error is not None:
        if not closed:
            problem(f"expected {want.error!r} then a close; got {len(got)} replies, still open")
            return
        report.errors_seen += 1
        if reset:
            report.resets += 1
            return  # closed with our frames unread: what came before the reset may be lost
        if not got or not isinstance(got[-1], hiredis.ReplyError):
            problem(f"closed without the error {want.error!r} (last reply {got[-1:]!r})")
            return
        text = str(got[-1]).encode()
        if b"-" + text + b"\r\n" != want.error:
            problem(f"error {text!r}, Redis sends {want.error!r}")
        elif want.counted and len(got) - 1 != len(want.commands):
            problem(f"{len(got) - 1} replies before the error, {len(want.commands)} commands")
        return
    if closed:
        problem(f"closed after {len(got)} replies, {len(want.commands)} owed, no error due")
    elif want.counted and len(got) != len(want.commands):
        problem(f"{len(got)} replies, {len(want.commands)} commands")
    for reply in got:
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("Protocol error"):
            problem(f"protocol error {reply!r} where Redis finds none")


async def _session(host: str, port: int, index: int, seed: int, reference: Reference,
                   report: Report, timeout: float) -> None:  # fmt: skip
    rng = random.Random(f"{seed}:{index}")
    stream, count = session_stream(rng)
    want = reference.expected(stream)
    # Some clients vanish (a reset) as soon as they have sent, their replies still in flight:
    # what the nodes send for them must go nowhere, and nobody else's replies may shift.
    vanish = rng.random() < 0.05
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        report.problems.append(f"session {index}: cannot connect: {exc}")
        return
    try:
        # Replies are read while the frames go out, as a real client's would be: a client
        # that reads nothing until it has sent everything can fill both directions' buffers.
        replies = asyncio.create_task(_read_replies(reader, want, 0 if vanish else timeout))
        sent = await _deliver(rng, writer, stream)
        report.frames += count
        report.commands += len(want.commands)
        got, closed, reset = await replies
        if vanish:
            # SO_LINGER 0: close() sends RST, not FIN.
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):  # unless the ambassador closed it already
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            report.vanished += 1
            return
        if not sent and not closed:
            closed, reset = True, True  # the peer went away while we wrote
        _check(index, stream, want, got, closed, reset, report)
    finally:
        writer.transport.abort()
        report.sessions += 1


async def _well_behaved(host: str, port: int, stop: asyncio.Event, report: Report) -> None:
    client = redis.asyncio.Redis(host=host, port=port, socket_timeout=10)
    rounds = 0
    try:
        while not stop.is_set():
            key = f"wellbehaved:{rounds % 100}"
            value = f"{rounds}:{random.random()}".encode()
            pipe = client.pipeline(transaction=False)
            pipe.set(key, value)
            pipe.get(key)
            pipe.incr("wellbehaved:counter")
            ok, got, _ = await pipe.execute()
            if ok is not True or got != value:
                report.problems.append(f"well-behaved client: round {rounds}: {ok!r} {got!r}")
            rounds += 1
            await asyncio.sleep(0.001)
    except Exception as exc:  # any error at all is the finding
        report.problems.append(f"well-behaved client: round {rounds}: {exc!r}")
    finally:
        report.well_behaved_rounds = rounds
        await client.aclose()


async def _slow_loris(host: str, port: int, index: int, stop: asyncio.Event,
                      report: Report) -> None:  # fmt: skip
    """One SET a byte at a time for as long as the run lasts; then the rest, and its +OK."""
    reader, writer = await asyncio.open_connection(host, port)
    command = encode_command([b"SET", b"fuzz:loris:%d" % index, b"x" * 500])
    sent = 0
    try:
        while not stop.is_set() and sent < len(command) - 1:
            writer.write(command[sent : sent + 1])
            await writer.drain()
            sent += 1
            await asyncio.sleep(0.02)
        writer.write(command[sent:])
        await writer.drain()
        got = await asyncio.wait_for(reader.readexactly(5), 10)
        if got != b"+OK\r\n":
            report.problems.append(f"slow-loris {index}: got {got!r}")
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        report.problems.append(f"slow-loris {index}: after {sent} bytes: {exc!r}")
    finally:
        writer.transport.abort()


async def _run(host: str, port: int, seed: int, frames: int, connections: int,
               rss: Callable[[], int] | None, timeout: float,
               limits: dict[str, int]) -> Report:  # fmt: skip
    report = Report(seed)
    with redis.Redis(host=host, port=port, socket_timeout=10) as control:
        known = frozenset(name.lower() for name in control.command_list())
    reference = Reference(known, **limits)
    baseline = rss() if rss is not None else 0
    stop = asyncio.Event()
    started = time.monotonic()
    background = [asyncio.create_task(_well_behaved(host, port, stop, report))]
    background += [asyncio.create_task(_slow_loris(host, port, i, stop, report)) for i in range(8)]
    next_session = 0

    async def worker() -> None:
        nonlocal next_session
        while report.frames < frames:
            index = next_session
            next_session += 1
            await _session(host, port, index, seed, reference, report, timeout)

    async def sample_rss() -> None:
        while not stop.is_set():
            report.rss_growth = max(report.rss_growth, rss() - baseline)  # type: ignore[misc]
            await asyncio.sleep(0.1)

    if rss is not None:
        background.append(asyncio.create_task(sample_rss()))
    try:
        await asyncio.gather(*(worker() for _ in range(connections)))
    finally:
        stop.set()
        await asyncio.gather(*background)
    report.seconds = time.monotonic() - started
    return report


def run(host: str, port: int, *, seed: int, frames: int, connections: int = 32,
        rss: Callable[[], int] | None = None, timeout: float = 10.0,
        **limits: int) -> Report:  # fmt: skip
    """Fuzz the ambassador at host:port with at least ``frames`` frames; ``rss`` reads its
    resident memory (sampled every 0.1 s); ``limits``: the ambassador's ``max_bulk_len`` and
    ``max_multibulk_len`` when not the defaults."""
    return asyncio.run(_run(host, port, seed, frames, connections, rss, timeout, limits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/fuzz",
        description="Start a local Redis Cluster and an ambassador, fuzz it with random and "
        "mutated RESP frames from many connections, and report what went wrong.",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=64, help="sessions at once")
    parser.add_argument("--max-rss-growth-mb", type=int, default=256)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    from redis_ambassador.local.cluster import LocalCluster
    from redis_ambassador.local.testing import Ambassador

    print(f"fuzz: seed {seed}, {args.frames} frames, {args.connections} connections", flush=True)
    with LocalCluster() as cluster, tempfile.TemporaryDirectory() as logs:
        ambassador = Ambassador.start(cluster.seeds, Path(logs), admin=True)
        try:
            report = run(
                ambassador.host, ambassador.port, seed=seed, frames=args.frames,
                connections=args.connections, rss=ambassador.rss_bytes,
            )  # fmt: skip
            alive = ambassador.process.poll() is None
        finally:
            ambassador.stop()
            log = ambassador.stderr_text()
    for line in report.problems[:50]:
        print(line)
    if not alive:
        print("the ambassador exited:\n" + log[-4000:])
    crashed = "Traceback" in log
    if crashed:
        print("the ambassador logged an exception:\n" + log[log.index("Traceback") :][:4000])
    grown = report.rss_growth > args.max_rss_growth_mb * 2**20
    if grown:
        print(f"RSS grew by more than {args.max_rss_growth_mb} MB")
    print(report.summary())
    return 1 if report.problems or not alive or crashed or grown else 0


if __name__ == "__main__":
    sys.exit(main())
