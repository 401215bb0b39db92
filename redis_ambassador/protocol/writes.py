"""Writing many pieces at once (frames to a node, replies to a client) without copying a large
one: joining pieces into one write copies them all, which for a large value means holding it
twice until it is written."""

from __future__ import annotations

from collections.abc import Callable, Sequence

# A piece longer than this is written by itself: one more write call costs far less than
# copying this much.
LARGE_PIECE = 64 * 1024


class LargeFrames:
    """How many large frames (longer than LARGE_PIECE: the bytearrays ExactReader hands over)
    were queued for nodes since start. Bumped when a reader hands one over (the router queues it
    at once, in the same call), when one is sent on a connection (``NodeConnection.send``: a
    resend, a transaction's EXEC, a slow-path command), and when a client's held commands are
    queued at last. A node connection that saw the count unchanged since its last write has no
    large frame queued, so it joins its frames without looking at them; a missed bump would only
    cost a copy, never change a byte written."""

    queued = 0


def write_joined(
    write: Callable[[bytes | bytearray], object], pieces: Sequence[bytes | bytearray]
) -> int:
    """Write ``pieces`` in order: each run of small ones joined into one write, each large one
    by itself (transports keep a reference to what they cannot send at once, not a copy).
    Returns the bytes written."""
    run: list[bytes | bytearray] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if len(piece) > LARGE_PIECE:
            if run:
                write(b"".join(run))
                run.clear()
            write(piece)
        else:
            run.append(piece)
    if run:
        write(b"".join(run))
    return size
