"""A client connection (server/client.py) between a fake transport and a fake router: replies
in the order sent whatever order they complete in, the limits on what a client may have in
flight or unread, QUIT and protocol errors as Redis handles them, and letting go of a client
that left."""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import Callable, Iterator, Mapping

import pytest
from fakes import FakeScheduler, Transport, config

from redis_ambassador.protocol.requests import encode_command
from redis_ambassador.routing.session import Batch, Session
from redis_ambassador.server.client import ClientConnection, ClientRegistry

OK = b"+OK\r\n"


def read(*commands: bytes) -> bytes:
    """What a client writes for these commands (one word each)."""
    return b"".join(encode_command(command.split()) for command in commands)


def reply_to(args: list[bytes]) -> bytes:
    """The canned reply to a command: its words as a simple string (``+GET a``)."""
    return b"+%b\r\n" % b" ".join(args)


class FakeDispatcher:
    """server/client.py's Dispatcher: answers each command with ``reply_to`` at once, or (not
    ``answering``) keeps each read for the test to complete, in any order. QUIT is answered as
    the router does: close after its reply, nothing after it runs. ``during`` runs in each
    dispatch first (a router asking things of its client mid-read)."""

    pool_size = 2
    slow_after = math.inf
    auth_required = False

    def __init__(self, overrides: Mapping[str, object] | None = None) -> None:
        self.settings = config(overrides).server
        self.scheduler = FakeScheduler()
        self.answering = True
        self.reads: list[list[list[bytes]]] = []  # the commands of each dispatch
        self.pending: list[tuple[Batch, list[list[bytes]]]] = []
        self.during: Callable[[Session, Batch], None] | None = None

    def upstream_auth(self, block: int) -> bytes:
        return b""

    def dispatch(
        self, session: Session, batch: Batch, commands: list[list[bytes]], frames: list[bytes]
    ) -> None:
        self.reads.append(commands)
        if self.during is not None:
            self.during(session, batch)
        for i, args in enumerate(commands):
            if args[0].upper() == b"QUIT":
                session.client.close_after_reply(batch)
                batch.cut_after(i)
                batch.fill(i, OK)
                return
        if self.answering:
            for i, args in enumerate(commands):
                batch.fill(i, reply_to(args))
        else:
            self.pending.append((batch, commands))

    def complete(self, read: int) -> None:
        """Answer every command of the ``read``-th read kept (from 0)."""
        batch, commands = self.pending[read]
        for i, args in enumerate(commands):
            if i < len(batch.replies) and batch.replies[i] is None:
                batch.fill(i, reply_to(args))

    def timed(self, session: Session, batch: Batch, elapsed: float) -> None:
        pass


class Client:
    """A client connection, its transport (closing it reaches the connection on the next loop
    turn), its registry and the router it talks to."""

    def __init__(
        self,
        overrides: Mapping[str, object] | None = None,
        make: type[ClientConnection] = ClientConnection,
    ) -> None:
        self.router = FakeDispatcher(overrides)
        self.registry = ClientRegistry()
        self.scheduler = FakeScheduler()
        self.conn = make(self.router, self.registry)
        self.transport = Transport(self.conn, self.scheduler)
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]

    def holding_replies(self) -> Client:
        self.router.answering = False
        return self


@pytest.fixture
def client() -> Iterator[Client]:
    yield Client().holding_replies()


def test_replies_are_written_in_the_order_sent_though_completed_in_reverse(
    client: Client,
) -> None:
    for command in (b"GET a", b"GET b", b"GET c"):
        client.conn.data_received(read(command))
    client.router.complete(2)
    client.router.complete(1)
    assert client.transport.written == []
    client.router.complete(0)
    assert client.transport.written == [b"+GET a\r\n+GET b\r\n+GET c\r\n"]


def test_each_completed_run_of_batches_at_the_head_is_one_write(client: Client) -> None:
    for commands in ((b"GET a",), (b"GET b", b"GET c"), (b"GET d",)):
        client.conn.data_received(read(*commands))
    client.router.complete(0)
    assert client.transport.written == [b"+GET a\r\n"]
    client.router.complete(2)
    assert len(client.transport.written) == 1
    client.router.complete(1)
    assert client.transport.written == [b"+GET a\r\n", b"+GET b\r\n+GET c\r\n+GET d\r\n"]


def test_quit_is_answered_after_what_is_owed_then_the_connection_closes(client: Client) -> None:
    client.conn.data_received(read(b"GET a"))
    client.conn.data_received(read(b"QUIT", b"SET a 1"))
    assert client.router.reads[1] == [[b"QUIT"], [b"SET", b"a", b"1"]]
    assert (client.transport.written, client.transport.closed) == ([], False)
    assert not client.transport.reading  # nothing more is read after QUIT
    client.router.complete(0)
    assert client.transport.written == [b"+GET a\r\n" + OK]
    assert client.transport.closed
    client.conn.data_received(read(b"GET b"))
    assert len(client.router.reads) == 2


def test_a_protocol_error_gets_redis_error_after_what_is_owed_then_a_close(client: Client) -> None:
    client.conn.data_received(read(b"GET a") + b"*x\r\n")
    assert client.router.reads == [[[b"GET", b"a"]]]  # what came before the error still runs
    assert client.registry.closed_by["protocol_error"] == 1
    assert not client.transport.closed
    client.router.complete(0)
    assert client.transport.written == [
        b"+GET a\r\n-ERR Protocol error: invalid multibulk length\r\n"
    ]
    assert client.transport.closed


def test_reading_pauses_at_max_inflight_per_client_and_resumes_once_replies_are_written() -> None:
    client = Client({"server.max_inflight_per_client": 4}).holding_replies()
    client.conn.data_received(read(b"GET a", b"GET b", b"GET c"))
    assert client.transport.reading
    client.conn.data_received(read(b"GET d"))
    assert not client.transport.reading
    assert client.registry.paused_by["pending_requests"] == 1
    client.router.complete(1)
    assert not client.transport.reading  # still 4 owed: the first read is unanswered
    client.router.complete(0)
    assert client.transport.reading


def test_a_read_of_more_than_max_inflight_commands_is_sent_in_turns() -> None:
    client = Client({"server.max_inflight_per_client": 2}).holding_replies()
    client.conn.data_received(read(b"GET a", b"GET b", b"GET c", b"GET d", b"GET e"))
    assert client.router.reads == [[[b"GET", b"a"], [b"GET", b"b"]]]
    client.router.complete(0)
    assert client.router.reads[1:] == [[[b"GET", b"c"], [b"GET", b"d"]]]
    client.router.complete(1)
    client.router.complete(2)
    assert client.transport.data == b"".join(reply_to([b"GET", k]) for k in b"a b c d e".split())


def test_a_large_reply_held_past_the_hard_limit_disconnects_the_client() -> None:
    client = Client(
        {"server.max_output_buffer": 1000, "server.output_buffer_hard_limit": 4000}
    ).holding_replies()
    client.conn.data_received(read(b"GET big", b"GET huge"))
    batch, _ = client.router.pending[0]
    batch.large_reply(3000)  # what a node connection announces before storing a large reply
    assert not client.transport.aborted
    batch.large_reply(3000)
    assert client.transport.aborted and client.conn.gone
    assert client.registry.closed_by["output_buffer_hard_limit"] == 1
    client.router.complete(0)
    assert client.transport.written == []  # what it was owed is let go, never written
    client.scheduler.run_soon()  # the transport reports the connection lost
    assert client.registry.connected == set()


def test_a_client_not_reading_past_the_hard_limit_is_disconnected_when_replies_come() -> None:
    client = Client(
        {"server.max_output_buffer": 1000, "server.output_buffer_hard_limit": 4000}
    ).holding_replies()
    client.conn.data_received(read(b"GET a"))
    client.transport.buffered = 5000  # written earlier, never read
    client.conn.pause_writing()
    assert not client.transport.reading
    assert client.registry.paused_by["output_buffer"] == 1
    client.router.complete(0)
    assert client.transport.aborted
    assert client.registry.closed_by["output_buffer_hard_limit"] == 1


class _Weakly(ClientConnection):
    """A client connection that can be weakly referenced (the real one has no __weakref__)."""

    __slots__ = ("__weakref__",)


def test_a_departed_clients_session_lets_go_of_its_connection() -> None:
    """No reference cycle between a connection and its session: once the client has gone,
    dropping the connection frees it at once, without the cycle collector."""
    client = Client(make=_Weakly)
    client.conn.data_received(read(b"GET a"))
    session = client.conn.session
    client.transport.lose()
    assert session.client is not client.conn and session.client.gone
    assert client.registry.connected == set() and client.registry.departed == 1
    gone = weakref.ref(client.conn)
    gc.disable()
    try:
        del client.conn, client.transport
        assert gone() is None
    finally:
        gc.enable()


def test_a_command_held_after_a_push_in_the_same_dispatch_runs_once_earlier_replies_are_out(
    client: Client,
) -> None:
    """How a monitoring client sending a blocking command (or WATCH) while a reply is owed
    gets there: the router pushes the MONITOR line, then holds the command until the earlier
    reply is written."""
    client.conn.data_received(read(b"GET a"))

    def push_then_hold(session: Session, batch: Batch) -> None:
        client.router.during = None
        session.client.push(b"+monitor line\r\n")
        session.client.hold(batch, 0, [[b"BLPOP", b"q", b"0"]], [read(b"BLPOP q 0")])

    client.router.during = push_then_hold
    client.conn.data_received(read(b"BLPOP q 0"))
    client.router.complete(0)
    assert client.transport.written == [b"+GET a\r\n+monitor line\r\n"]
    assert client.router.reads[-1] == [[b"BLPOP", b"q", b"0"]]  # dispatched again, alone


def test_a_client_cut_mid_read_answers_the_routers_questions_about_the_rest(
    client: Client,
) -> None:
    """How a chaos "drop before" rule gets there: the rule cuts the client on the read's first
    command, and the router goes on with the next, a BLPOP, asking whether it must wait."""
    asked: list[bool] = []

    def cut_then_ask(session: Session, batch: Batch) -> None:
        session.client.cut(False)
        asked.append(session.client.waiting_before(batch, 1))

    client.router.during = cut_then_ask
    client.conn.data_received(read(b"GET a", b"BLPOP q 0"))
    assert asked == [False]
    assert client.transport.closed


def test_pacing_a_clients_replies_needs_no_running_event_loop(client: Client) -> None:
    client.conn.pace(4, 0.01)
    client.conn.data_received(read(b"GET a"))
    client.router.complete(0)
    assert client.transport.written == []  # queued in the paced writer until the next turn
