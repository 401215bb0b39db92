"""A node connection and large pieces (upstream/connection.py): a large reply is the buffer it
grew in, handed over, never copied; a flush writes a large frame by itself, never joined."""

from __future__ import annotations

from fakes import Batch, connected

from redis_ambassador.protocol.writes import LARGE_PIECE, LargeFrames

GET = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
VALUE = b"v" * (3 * LARGE_PIECE)
REPLY = b"$%d\r\n%b\r\n" % (len(VALUE), VALUE)


def test_a_large_reply_read_in_pieces_is_handed_over_and_what_follows_is_read_after_it() -> None:
    conn, _, _ = connected()
    big, after = Batch(), Batch()
    conn.send(big, 0, GET)  # type: ignore[arg-type]
    conn.send(after, 0, GET)  # type: ignore[arg-type]
    conn.data_received(REPLY[:1000])
    conn.data_received(REPLY[1000:-100])
    grown = conn._partial  # where the reads went
    conn.data_received(REPLY[-100:] + b"+OK\r\n$2\r\nab")
    (reply,) = big.replies
    assert reply is grown and reply == REPLY and big.large_bytes == len(REPLY)
    assert after.replies == [b"+OK\r\n"]
    conn.send(after, 0, GET)  # type: ignore[arg-type]
    conn.data_received(b"\r\n")
    assert after.replies == [b"$2\r\nab\r\n"]


def test_a_flush_writes_a_large_frame_by_itself_and_joins_small_ones_again_after() -> None:
    conn, transport, _ = connected()
    frame = bytearray(b"*2\r\n$3\r\nSET\r\n$%d\r\n%b\r\n" % (len(VALUE), VALUE))
    # As the router's fast path queues one the exact reader just handed over:
    LargeFrames.queued += 1
    for queued in (GET, frame, GET):
        conn.queue.append((None, 0, queued, 0))
        conn.out.append(queued)  # type: ignore[arg-type]
    conn.flush()
    assert transport.written == [GET, frame, GET] and transport.written[1] is frame
    transport.written.clear()
    conn.send(None, 0, GET)
    conn.send(None, 0, GET)
    conn.flush()
    assert transport.written == [GET + GET]
    # Queued again later (a resend): send() has the next flush look too.
    transport.written.clear()
    conn.send(None, 0, GET)
    conn.send(None, 0, frame)  # type: ignore[arg-type]
    conn.flush()
    assert transport.written == [GET, frame]
