"""Stand-ins for what the data path's stages talk to, so each is tested by feeding it bytes and
moving a fake clock: no sockets, no event loop.

* ``Transport``: what a connection writes to (either side), recording writes; closing it tells
  its protocol ``connection_lost`` on the next loop turn, as asyncio does.
* ``FakeScheduler``: loop.py's Scheduler on a manual clock.
* ``FakeDial``: upstream/pool.py's Dial; connects nothing until a test accepts or refuses.
* ``FakeClient``: routing/session.py's Client (and the BatchOwner of its batches), recording
  what the router asks of the connection.
* ``Cluster`` (``build_cluster``): a Router and its Upstream over the Redis 7.0.15 command
  table, with three masters sharing the slots and every pool connection accepted.
* ``Owner``, ``Batch`` and ``connected()``: a node connection's owner and collector.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hiredis

from redis_ambassador.commands.auth import ClientAuth
from redis_ambassador.commands.state import ServerFacts
from redis_ambassador.commands.table import CommandTable
from redis_ambassador.config import Address, Config, load_config
from redis_ambassador.faults.rules import Faults
from redis_ambassador.protocol.requests import encode_command
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.router import Router
from redis_ambassador.routing.session import Batch as ClientBatch
from redis_ambassador.routing.session import Session
from redis_ambassador.slots import SLOTS, key_slot
from redis_ambassador.tls import NodeTLS
from redis_ambassador.topology.slotmap import SlotMap
from redis_ambassador.upstream.connection import Entry, NodeConnection
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.names import Names, system_lookup
from redis_ambassador.upstream.pool import NodePool, Upstream

DATA = Path(__file__).parent / "data"
MASTERS = tuple(Address("127.0.0.1", 7000 + i) for i in range(3))
# KEY_ON[i]: a key whose slot MASTERS[i] owns in three_masters() (b: 3300, c: 7365, a: 15495),
# so a test can say which node a command must reach.
KEY_ON = (b"b", b"c", b"a")
assert [key_slot(key) * len(MASTERS) // SLOTS for key in KEY_ON] == [0, 1, 2]


# -- the loop -------------------------------------------------------------------------------------


class FakeTimer:
    """A callback scheduled on a FakeScheduler; ``cancel`` keeps it from running."""

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """loop.py's Scheduler on a manual clock: ``call_soon`` callbacks run at ``run_soon`` (or
    ``advance``), timers when ``advance`` moves the clock past them, in time order."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.soon: list[FakeTimer] = []
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()  # timers due at the same time run in the order made

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[..., object], *args: Any) -> FakeTimer:
        timer = FakeTimer(self.now, callback, args)
        self.soon.append(timer)
        return timer

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    @property
    def timers(self) -> list[float]:
        """Delays from now of the timers still to run, soonest first."""
        return sorted(t.when - self.now for _, _, t in self._timers if not t.cancelled)

    def run_soon(self) -> int:
        """Run the ``call_soon`` callbacks, loop turn by loop turn (what one queues runs in the
        next turn, as in asyncio), until none is left; how many ran."""
        ran = 0
        while self.soon:
            turn, self.soon = self.soon, []
            for timer in turn:
                if not timer.cancelled:
                    timer.callback(*timer.args)
                    ran += 1
        return ran

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, running each timer due meanwhile at its own time
        (and what it queues with ``call_soon`` right after it)."""
        end = self.now + seconds
        self.run_soon()
        # A nanosecond's slack: advancing 0.199 then 0.001 reaches a timer set 0.2 ahead,
        # whatever the floats' rounding.
        while self._timers and self._timers[0][0] <= end + 1e-9:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, when)
            timer.callback(*timer.args)
            self.run_soon()
        self.now = max(self.now, end)


# -- connections ----------------------------------------------------------------------------------


class Transport:
    """A transport for either side's protocol: records writes and flow control. Given the
    protocol and a scheduler, ``close``/``abort`` tell the protocol ``connection_lost`` on
    the next loop turn, as asyncio's transports do; ``lose`` is the peer closing it."""

    def __init__(
        self,
        protocol: asyncio.BaseProtocol | None = None,
        scheduler: FakeScheduler | None = None,
        peer: tuple[str, int] = ("127.0.0.1", 50000),
    ) -> None:
        self.written: list[bytes] = []
        self.aborted = False
        self.closed = False
        self.reading = True
        self.buffered = 0  # what get_write_buffer_size() answers: bytes the peer has not read
        self.high_water: int | None = None
        self.peer = peer
        self._protocol = protocol
        self._scheduler = scheduler
        self._lost = False

    @property
    def data(self) -> bytes:
        """Everything written, joined."""
        return b"".join(self.written)

    def write(self, data: bytes) -> None:
        self.written.append(data)  # as given: a test may check a large frame is not copied

    def abort(self) -> None:
        self.aborted = True
        self._closing()

    def close(self) -> None:
        self.closed = True
        self._closing()

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def lose(self, exc: Exception | None = None) -> None:
        """The peer closed the connection: the protocol hears of it at once."""
        self._lost = True
        if self._protocol is not None:
            self._protocol.connection_lost(exc)

    def _closing(self) -> None:
        if self._protocol is not None and self._scheduler is not None and not self._lost:
            self._lost = True
            self._scheduler.call_soon(self._protocol.connection_lost, None)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high_water = high

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "peername":
            return self.peer
        if name == "sockname":
            return ("127.0.0.1", 6379)
        return default


def frames_in(data: bytes) -> list[list[bytes]]:
    """The commands (or array replies) in RESP bytes, decoded."""
    reader = hiredis.Reader()
    reader.feed(data)
    found: list[list[bytes]] = []
    while (item := reader.gets()) is not False:
        found.append(item)
    return found


class FakeDial:
    """upstream/pool.py's Dial: records each connect asked for; a test then accepts it (the
    protocol gets a recording Transport) or refuses it (as the real Dialer reports a failed
    connect)."""

    def __init__(self, scheduler: FakeScheduler) -> None:
        self.names = Names(system_lookup, 1.0, 1.0)  # never asked: nothing resolves here
        self.tls: NodeTLS | None = None
        self.scheduler = scheduler
        self.dialed: list[tuple[asyncio.Protocol, Address]] = []  # every connect, in order
        self.waiting: list[asyncio.Protocol] = []  # neither accepted nor refused yet
        self.transports: dict[asyncio.Protocol, Transport] = {}
        self.tasks: list[str] = []

    def dial(self, conn: asyncio.Protocol, address: Address) -> None:
        self.dialed.append((conn, address))
        self.waiting.append(conn)

    def start_soon(self, task: Callable[[], object], name: str) -> None:
        self.tasks.append(name)

    def to(self, address: Address) -> list[asyncio.Protocol]:
        """The connections dialed to ``address``, in order."""
        return [conn for conn, at in self.dialed if at == address]

    def accept(self, conn: asyncio.Protocol) -> Transport:
        self.waiting.remove(conn)
        transport = self.transports[conn] = Transport(conn, self.scheduler)
        conn.connection_made(transport)  # type: ignore[arg-type]
        return transport

    def accept_all(self) -> None:
        for conn in list(self.waiting):
            self.accept(conn)

    def refuse(self, conn: asyncio.Protocol) -> None:
        """The connect failed, reported as upstream/dialer.py's Dialer does."""
        self.waiting.remove(conn)
        if isinstance(conn, NodeConnection) and not conn.closing:
            conn.failure = "cannot connect"
        conn.connection_lost(ConnectionRefusedError(111, "Connection refused"))

    def written(self, conn: asyncio.Protocol) -> list[list[bytes]]:
        """The commands written on an accepted connection so far."""
        return frames_in(self.transports[conn].data)


# -- a node connection's owner and collector -----------------------------------------------


class Owner:
    """A ConnectionOwner that records the errors, redirections and failures reported to it."""

    def __init__(self) -> None:
        self.errors: list[bytes] = []
        self.redirects: list[bytes] = []
        self.failures: list[tuple[list[Entry], list[Entry]]] = []  # (unsent, sent)

    def schedule_flush(self, conn: NodeConnection) -> None:
        pass

    def alive(self, conn: NodeConnection) -> None:
        pass

    def observed(self, conn: NodeConnection, seconds: float) -> None:
        pass

    def errored(self, frame: bytes) -> None:
        self.errors.append(frame)

    def redirected(self, entry: Entry, reply: bytes, via: NodeConnection) -> None:
        self.redirects.append(reply)

    def connection_failed(
        self, conn: NodeConnection, unsent: list[Entry], sent: list[Entry]
    ) -> None:
        self.failures.append((unsent, sent))


class Batch:
    """A Collector (upstream/collector.py): the replies owed to one client read, by index."""

    lane = 0

    def __init__(self, size: int = 1) -> None:
        self.replies: list[bytes | bytearray | None] = [None] * size
        self.remaining = size
        self.completed = 0
        self.large_bytes = 0  # bytes of large replies announced by holding()

    def complete(self) -> None:
        self.completed += 1

    def fill(self, index: int, reply: bytes | bytearray) -> None:
        self.replies[index] = reply
        self.remaining -= 1
        if not self.remaining:
            self.complete()

    def large_reply(self, size: int) -> None:
        self.large_bytes += size


def connected(auth: bytes = b"", protocol: int = 2) -> tuple[NodeConnection, Transport, Owner]:
    """A node connection whose connection is made, with its fake transport and owner."""
    owner = Owner()
    conn = NodeConnection(Address("127.0.0.1", 7000), owner, protocol, auth=auth)  # type: ignore[arg-type]
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, owner


# -- a client, as the router sees it --------------------------------------------------------------


def bulk(value: bytes) -> bytes:
    """A RESP bulk string reply."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def array(*items: bytes) -> bytes:
    """A RESP array reply of already encoded items."""
    return b"*%d\r\n%b" % (len(items), b"".join(items))


class FakeClient:
    """routing/session.py's Client, and the BatchOwner of the batches it sends: records what
    the router asks of the connection (holds, pushes, closes, cuts, pacing)."""

    peer = "127.0.0.1:50000"
    local_address = ("127.0.0.1", 6379)
    fd = 9
    connected_at = last_read = 0.0

    def __init__(
        self,
        client_id: int = 1,
        pool_size: int = 2,
        auth_required: bool = False,
        auth_for: Callable[[int], bytes] = lambda block: b"",
    ) -> None:
        self.session = Session(self, client_id, pool_size, auth_required, auth_for)
        self.gone = False
        self.holds: list[tuple[int, list[list[bytes]]]] = []  # (index, commands held)
        self.pushes: list[bytes] = []
        self.closing_after: list[ClientBatch] = []  # close_after_reply's batches (QUIT)
        self.attacks: list[bytes] = []  # cross_protocol_attack's names
        self.cuts: list[bool] = []  # cut's ``reset``
        self.paced: list[tuple[int, float]] = []
        self.completed = 0  # batch_complete calls
        self.held_bytes = 0  # large replies announced by holding()

    def describe(self) -> str:
        return f"{self.peer} (id {self.session.id})"

    def waiting_before(self, batch: ClientBatch, index: int) -> bool:
        return None in batch.replies[:index]

    def hold(
        self, batch: ClientBatch, index: int, commands: list[list[bytes]], frames: list[bytes]
    ) -> None:
        self.holds.append((index, commands[index:]))
        if index:  # as the real connection does: the held ones are no longer owed here
            batch.cut_after(index - 1)

    def close_after_reply(self, batch: ClientBatch) -> None:
        self.closing_after.append(batch)

    def push(self, message: bytes) -> None:
        self.pushes.append(message)

    def cross_protocol_attack(self, name: bytes) -> None:
        self.attacks.append(name)

    def cut(self, reset: bool) -> None:
        self.cuts.append(reset)

    def pace(self, piece: int, pause: float) -> None:
        self.paced.append((piece, pause))

    # BatchOwner
    def batch_complete(self) -> None:
        self.completed += 1

    def large_reply(self, batch: ClientBatch, size: int) -> None:
        self.held_bytes += size

    def batch(self, size: int = 1) -> ClientBatch:
        """The batch of a read of ``size`` commands."""
        return ClientBatch(self, size)  # type: ignore[arg-type]

    def send(self, router: Router, *commands: Sequence[bytes]) -> ClientBatch:
        """One read of ``commands``, dispatched by the router; its batch."""
        args = [list(command) for command in commands]
        batch = self.batch(len(args))
        router.dispatch(self.session, batch, args, [encode_command(a) for a in args])
        return batch


# -- the router over three masters ---------------------------------------------------------------


@cache
def command_table() -> CommandTable:
    """Redis 7.0.15's COMMAND reply (data/command.resp) as a CommandTable."""
    reader = hiredis.Reader()
    reader.feed((DATA / "command.resp").read_bytes())
    return CommandTable.from_reply(reader.gets())


def config(overrides: Mapping[str, object] | None = None) -> Config:
    """A Config from the defaults, one seed, and ``overrides`` (dotted keys)."""
    return load_config(
        None, env={}, overrides={"cluster.seeds": ["127.0.0.1:1"], **(overrides or {})}
    )


def three_masters() -> SlotMap:
    """The slots shared by MASTERS in three ranges: 0-5460, 5461-10922, 10923-16383."""
    return SlotMap(tuple(MASTERS[s * len(MASTERS) // SLOTS] for s in range(SLOTS)))


def make_call(session: Session, batch: ClientBatch, args: list[bytes]) -> Call:
    """The router's Call for a read of one command, ``args`` (the families' handlers take one)."""
    spec = command_table().resolve(args)
    assert spec is not None, args[0]
    name = spec.name
    return Call(session, batch, 0, [args], [encode_command(args)], spec, name, name.split("|")[0])


@dataclass
class Cluster:
    """A Router and its Upstream in front of MASTERS, every pool connection accepted."""

    scheduler: FakeScheduler
    dial: FakeDial
    upstream: Upstream
    router: Router
    clients: itertools.count = field(default_factory=lambda: itertools.count(1))

    def client(self, client_id: int | None = None) -> FakeClient:
        """A new client of the router (``client_id`` decides its lane: id % pool_size)."""
        router = self.router
        return FakeClient(
            next(self.clients) if client_id is None else client_id,
            router.pool_size,
            router.auth_required,
            router.upstream_auth,
        )

    def pool(self, key: bytes) -> NodePool:
        """The pool of the master that owns ``key``'s slot."""
        pool = self.router.owners.by_slot[key_slot(key)]
        assert pool is not None
        return pool

    def lane(self, key: bytes, lane: int = 0) -> NodeConnection:
        """The pooled connection for ``lane`` to the master of ``key``."""
        return self.pool(key).conns[lane]

    def written(self, conn: NodeConnection) -> list[list[bytes]]:
        """The commands written on a node connection, after this loop turn's flush."""
        self.scheduler.run_soon()
        return self.dial.written(conn)

    def sent_anywhere(self) -> list[list[bytes]]:
        """Every command written to any node connection (after this turn's flush)."""
        self.scheduler.run_soon()
        return [
            cmd for transport in self.dial.transports.values() for cmd in frames_in(transport.data)
        ]

    def answer(self, conn: NodeConnection, *replies: bytes) -> None:
        """The node sends these replies on ``conn`` (after this turn's flush wrote to it)."""
        self.scheduler.run_soon()
        conn.data_received(b"".join(replies))


def build_cluster(
    overrides: Mapping[str, object] | None = None,
    table: CommandTable | None = None,
    faults: Faults | None = None,
) -> Cluster:
    """A Router over MASTERS (three_masters' slot map) with every pool connection accepted;
    ``overrides``: config keys; ``table``: another command table (the default: Redis 7.0.15's)."""
    settings = config(overrides)
    scheduler = FakeScheduler()
    dial = FakeDial(scheduler)
    upstream = Upstream(settings.upstream, Credentials(), scheduler, dial)
    client_auth = ClientAuth.from_config(settings.server, settings.server.requirepass.encode())
    router = Router(
        settings, upstream, table or command_table(), ServerFacts(b"7.0.15"), client_auth,
        scheduler, faults,
    )  # fmt: skip
    router.refresher.apply(three_masters())
    dial.accept_all()
    return Cluster(scheduler, dial, upstream, router)
