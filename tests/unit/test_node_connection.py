"""A shared node connection (upstream/connection.py) fed bytes: what a node sends can never shift
one client's reply onto another's, and how the connection ended tells what may be sent again and
whether the node failed."""

from __future__ import annotations

from fakes import Batch, Owner, connected

from redis_ambassador.config import Address
from redis_ambassador.upstream.connection import NodeConnection

GET_A = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
GET_B = b"*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
SET_C = b"*3\r\n$3\r\nSET\r\n$1\r\nc\r\n$1\r\nv\r\n"


def test_a_push_between_replies_is_dropped_and_shifts_no_reply() -> None:
    conn, _, _ = connected(protocol=3)
    batch = Batch(2)
    conn.send(batch, 0, GET_A)  # type: ignore[arg-type]
    conn.send(batch, 1, GET_B)  # type: ignore[arg-type]
    conn.flush()
    hello = b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"
    push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n"
    conn.data_received(hello + b"$1\r\nA\r\n" + push + b"$1\r\nB\r\n")
    assert batch.replies == [b"$1\r\nA\r\n", b"$1\r\nB\r\n"]
    assert conn.pending == 0


def test_after_a_protocol_error_the_commands_written_after_it_are_sent_again() -> None:
    """Redis answers input it cannot read with a protocol error, closes the connection and runs
    nothing written after it: those commands are safe to send again, whatever they are."""
    conn, _, owner = connected()
    batch = Batch(3)
    for i, frame in enumerate([GET_A, GET_B, SET_C]):
        conn.send(batch, i, frame)  # type: ignore[arg-type]
    conn.flush()
    conn.data_received(b"$1\r\nA\r\n-ERR Protocol error: invalid bulk length\r\n")
    conn.connection_lost(None)
    [(unsent, sent)] = owner.failures
    assert [frame for _, _, frame, _ in unsent] == [SET_C]
    assert sent == []
    assert batch.replies[1] == b"-ERR Protocol error: invalid bulk length\r\n"


def test_a_connection_lost_with_replies_owed_leaves_them_as_maybe_run() -> None:
    conn, _, owner = connected()
    batch = Batch(2)
    conn.send(batch, 0, GET_A)  # type: ignore[arg-type]
    conn.send(batch, 1, SET_C)  # type: ignore[arg-type]
    conn.flush()
    conn.data_received(b"$1\r\nA\r\n")
    conn.connection_lost(None)
    [(unsent, sent)] = owner.failures
    assert unsent == [] and [frame for _, _, frame, _ in sent] == [SET_C]


def test_closed_by_node_only_when_the_node_closed_a_connection_it_had_accepted() -> None:
    lost, _, _ = connected()
    lost.connection_lost(ConnectionResetError())
    assert lost.closed_by_node

    cut, _, _ = connected()
    cut.abort("no reply within 30s", timed_out=True)
    cut.connection_lost(None)
    assert not cut.closed_by_node

    closed, _, _ = connected()
    closed.close()
    closed.connection_lost(None)
    assert not closed.closed_by_node

    never = NodeConnection(Address("127.0.0.1", 7000), Owner())  # type: ignore[arg-type]
    never.connection_lost(ConnectionRefusedError())
    assert not never.closed_by_node
