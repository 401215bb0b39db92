"""A node connection's AUTH (upstream/connection.py, upstream/subscriber.py): sent first, its
+OK dropped, a refusal failing the connection with the node's reason."""

from __future__ import annotations

from fakes import Batch, Transport, connected

from redis_ambassador.config import Address
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.subscriber import SubscriberConnection

AUTH = Credentials(b"amb", b"pw").auth_frame
HELLO3 = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"
GET = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def test_auth_goes_first_and_its_ok_is_dropped() -> None:
    conn, transport, _ = connected(AUTH, protocol=3)
    assert transport.written == [AUTH + HELLO3]
    batch = Batch()
    conn.send(batch, 0, GET)  # type: ignore[arg-type]
    conn.flush()
    conn.data_received(b"+OK\r\n%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n$1\r\nv\r\n")
    assert batch.replies == [b"$1\r\nv\r\n"]
    assert not transport.aborted and not conn.auth_refused


def test_a_refused_auth_fails_the_connection_with_the_nodes_reason() -> None:
    conn, transport, owner = connected(AUTH)
    batch = Batch()
    conn.send(batch, 0, GET)  # type: ignore[arg-type]
    conn.flush()
    conn.data_received(WRONGPASS + b"-NOAUTH Authentication required.\r\n")
    assert transport.aborted and conn.auth_refused
    assert conn.failure == (
        "authentication failed: WRONGPASS invalid username-password pair or user is disabled."
    )
    assert batch.replies == [None]  # answered by the connection's failure, not by NOAUTH
    assert owner.errors == []


def test_without_credentials_nothing_is_sent_first() -> None:
    conn, transport, _ = connected(Credentials().auth_frame)
    assert transport.written == [] and conn.pending == 0


def test_a_subscriber_connection_answers_its_own_auth_and_hello() -> None:
    got: list[bytes] = []

    class Listening:
        def received(self, conn: SubscriberConnection, reply: bytes) -> None:
            got.append(reply)

        def lost(self, conn: SubscriberConnection) -> None:
            pass

    conn = SubscriberConnection(Address("127.0.0.1", 7000), Listening(), 3, AUTH)
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written == [AUTH + HELLO3]
    conn.data_received(b"+OK\r\n%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n>3\r\n$7\r\nmessage\r\n")
    assert got == []  # the message is not whole yet; the prefixes' replies never reach it
    refused = SubscriberConnection(Address("127.0.0.1", 7000), Listening(), 2, AUTH)
    refused_transport = Transport()
    refused.connection_made(refused_transport)  # type: ignore[arg-type]
    refused.data_received(WRONGPASS)
    assert refused_transport.aborted and refused.failure.startswith("authentication failed")
