"""ReplyScanner: where each RESP2/RESP3 reply ends in a growing buffer, and the reply encoders."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_ambassador.protocol.replies import (
    OK,
    PONG,
    ReplyScanner,
    array,
    bulk,
    error,
    integer,
    null,
)

# One complete reply of every kind a node can send (RESP2 and RESP3), including the examples of
# the RESP3 specification.
REPLIES: dict[str, bytes] = {
    "simple": b"+OK\r\n",
    "simple-empty": b"+\r\n",
    "error": b"-ERR unknown command 'FOO'\r\n",
    "moved": b"-MOVED 3999 127.0.0.1:6381\r\n",
    "integer": b":1000\r\n",
    "integer-negative": b":-42\r\n",
    "bulk": b"$5\r\nhello\r\n",
    "bulk-empty": b"$0\r\n\r\n",
    "bulk-binary": b"$12\r\n\r\n*1\r\n$3\r\n:+\r\n",
    "bulk-null": b"$-1\r\n",
    "array": b"*2\r\n$3\r\nfoo\r\n:7\r\n",
    "array-empty": b"*0\r\n",
    "array-null": b"*-1\r\n",
    "array-with-nulls": b"*3\r\n$-1\r\n*-1\r\n_\r\n",
    "array-nested": b"*2\r\n*2\r\n:1\r\n*0\r\n*1\r\n*1\r\n$1\r\nx\r\n",
    "array-deep": b"*1\r\n" * 40 + b":0\r\n",
    "null": b"_\r\n",
    "double": b",1.23\r\n",
    "double-inf": b",-inf\r\n",
    "boolean-true": b"#t\r\n",
    "boolean-false": b"#f\r\n",
    "big-number": b"(3492890328409238509324850943850943825024385\r\n",
    "blob-error": b"!21\r\nSYNTAX invalid syntax\r\n",
    "verbatim": b"=15\r\ntxt:Some string\r\n",
    "map": b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
    "map-empty": b"%0\r\n",
    "map-nested": b"%1\r\n$1\r\nk\r\n%1\r\n*1\r\n:1\r\n~1\r\n_\r\n",
    "set": b"~5\r\n+orange\r\n+apple\r\n#t\r\n:100\r\n:999\r\n",
    "set-empty": b"~0\r\n",
    "push": b">4\r\n+pubsub\r\n+message\r\n+somechannel\r\n+this is the message\r\n",
    "push-empty": b">0\r\n",
    "attribute": (
        b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
        b"*2\r\n:2039123\r\n:9543892\r\n"
    ),
    "attribute-empty": b"|0\r\n+OK\r\n",
    "attribute-inside-array": b"*3\r\n:1\r\n:2\r\n|1\r\n+ttl\r\n:3600\r\n:3\r\n",
    "attribute-on-attribute": b"|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n$2\r\nok\r\n",
    "everything": (
        b"*9\r\n+s\r\n-e\r\n:1\r\n$1\r\nb\r\n_\r\n,2.5\r\n#f\r\n(1\r\n"
        b"%1\r\n!1\r\nx\r\n=5\r\ntxt:y\r\n"
    ),
}
NAMES = list(REPLIES)
# Bytes a caller may hold before the reply it is scanning: anything at all, never looked at.
JUNK = [b"", b"+OK\r\n", b"$3\r\n\r\n\r\n", b"*9\r\n"]
INCOMPLETE = object()


@pytest.mark.parametrize("name", NAMES)
def test_complete_reply_ends_exactly_at_its_last_byte(name: str) -> None:
    reply = REPLIES[name]
    assert ReplyScanner().end_of(reply, 0) == len(reply)


@pytest.mark.parametrize("name", NAMES)
def test_reply_followed_by_more_bytes_ends_before_them(name: str) -> None:
    reply = REPLIES[name]
    assert ReplyScanner().end_of(reply + b"*2\r\n:1\r\n:2\r\n+next\r\n", 0) == len(reply)


@pytest.mark.parametrize("name", NAMES)
def test_every_proper_prefix_of_a_reply_is_incomplete(name: str) -> None:
    reply = REPLIES[name]
    for cut in range(1, len(reply)):
        assert ReplyScanner().end_of(reply[:cut], 0) == -1, cut


@pytest.mark.parametrize("name", NAMES)
def test_reply_split_at_every_point_resumes_to_the_right_end(name: str) -> None:
    reply = REPLIES[name]
    for cut in range(1, len(reply)):
        scanner = ReplyScanner()
        assert scanner.end_of(reply[:cut], 0) == -1
        assert scanner.end_of(reply, 0) == len(reply), cut
        # The scanner is ready for the next reply afterwards.
        assert scanner.end_of(b"+OK\r\n", 0) == 5


@pytest.mark.parametrize("name", NAMES)
def test_reply_arriving_one_byte_at_a_time_completes_on_its_last_byte(name: str) -> None:
    reply = REPLIES[name]
    scanner = ReplyScanner()
    for cut in range(1, len(reply)):
        assert scanner.end_of(reply[:cut], 0) == -1, cut
    assert scanner.end_of(reply, 0) == len(reply)


@pytest.mark.parametrize("name", NAMES)
def test_reply_resumes_after_the_caller_moves_it_to_another_offset(name: str) -> None:
    reply = REPLIES[name]
    for cut in range(1, len(reply)):
        for before in JUNK:
            for after in JUNK:
                scanner = ReplyScanner()
                assert scanner.end_of(before + reply[:cut], len(before)) == -1
                # The caller dropped (or gained) bytes in front of the reply between reads.
                assert scanner.end_of(after + reply, len(after)) == len(after) + len(reply)


def test_replies_back_to_back_are_split_at_each_boundary() -> None:
    buf = b"".join(REPLIES.values())
    scanner = ReplyScanner()
    pos, ends = 0, []
    while pos < len(buf):
        pos = scanner.end_of(buf, pos)
        assert pos > 0
        ends.append(pos)
    expected, total = [], 0
    for reply in REPLIES.values():
        total += len(reply)
        expected.append(total)
    assert ends == expected


def test_reply_boundaries_agree_with_hiredis_for_every_type_it_reads() -> None:
    # hiredis as an independent reader of the same bytes; it reads neither RESP3 attributes nor
    # blob errors, and Python dicts cannot take an array as a map key.
    unread = {"blob-error", "everything", "map-nested"}
    names = [n for n in NAMES if not n.startswith("attribute") and n not in unread]
    buf = b"".join(REPLIES[n] for n in names)
    scanner = ReplyScanner()
    pos = 0
    for name in names:
        end = scanner.end_of(buf, pos)
        reader = hiredis.Reader(notEnoughData=INCOMPLETE)
        reader.feed(buf[pos:end])
        assert reader.gets() is not INCOMPLETE, name  # one whole reply...
        assert reader.gets() is INCOMPLETE, name  # ...and nothing more
        pos = end
    assert pos == len(buf)


# --- replies in random reads, with the caller dropping consumed bytes -----------------------


def resp_values(depth: int = 3) -> st.SearchStrategy[bytes]:
    """Random well-formed RESP2/RESP3 replies, as bytes."""
    text = st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    leaf = st.one_of(
        text.map(lambda t: b"+" + t + b"\r\n"),
        text.map(lambda t: b"-ERR " + t + b"\r\n"),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: b":%d\r\n" % i),
        st.binary(max_size=30).map(lambda b: b"$%d\r\n%b\r\n" % (len(b), b)),
        st.binary(max_size=30).map(lambda b: b"!%d\r\n%b\r\n" % (len(b), b)),
        st.binary(max_size=30).map(lambda b: b"=%d\r\ntxt:%b\r\n" % (len(b) + 4, b)),
        st.sampled_from([b"$-1\r\n", b"*-1\r\n", b"_\r\n", b"#t\r\n", b",3.14\r\n", b"(12345\r\n"]),
    )
    if depth == 0:
        return leaf
    inner = resp_values(depth - 1)
    items = st.lists(inner, max_size=4)
    pairs = st.lists(st.tuples(inner, inner), max_size=3)
    return st.one_of(
        leaf,
        items.map(lambda xs: b"*%d\r\n" % len(xs) + b"".join(xs)),
        items.map(lambda xs: b"~%d\r\n" % len(xs) + b"".join(xs)),
        items.map(lambda xs: b">%d\r\n" % len(xs) + b"".join(xs)),
        pairs.map(lambda ps: b"%%%d\r\n" % len(ps) + b"".join(k + v for k, v in ps)),
        st.tuples(pairs, inner).map(
            lambda t: b"|%d\r\n" % len(t[0]) + b"".join(k + v for k, v in t[0]) + t[1]
        ),
    )


@settings(max_examples=150, deadline=None)
@given(
    replies=st.lists(resp_values(), min_size=1, max_size=6),
    reads=st.lists(st.integers(1, 40), min_size=1, max_size=30),
)
def test_random_replies_in_random_reads_come_out_whole_and_in_order(
    replies: list[bytes], reads: list[int]
) -> None:
    stream = b"".join(replies)
    scanner = ReplyScanner()
    held = bytearray()
    got: list[bytes] = []
    offset = 0
    sizes = iter(reads * (len(stream) // sum(reads) + 1))
    while offset < len(stream):
        size = next(sizes)
        held += stream[offset : offset + size]
        offset += size
        pos = 0
        while pos < len(held):
            end = scanner.end_of(held, pos)
            if end < 0:
                break
            got.append(bytes(held[pos:end]))
            pos = end
        del held[:pos]  # like the node connection: keep only the unfinished reply
    assert got == replies
    assert not held


# --- encoders ---------------------------------------------------------------------------------


def test_status_constants_are_redis_status_lines() -> None:
    assert OK == b"+OK\r\n"
    assert PONG == b"+PONG\r\n"


def test_error_reply_replaces_newlines_with_spaces_like_redis() -> None:
    assert error("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"
    assert error("CROSSSLOT Keys in request don't hash to the same slot") == (
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    )


def test_bulk_reply_is_length_prefixed_and_none_is_the_resp2_null_bulk() -> None:
    assert bulk(b"a\r\nb") == b"$4\r\na\r\nb\r\n"
    assert bulk(b"") == b"$0\r\n\r\n"
    assert bulk(None) == b"$-1\r\n"


def test_integer_and_array_replies_encode_like_redis() -> None:
    assert integer(0) == b":0\r\n"
    assert integer(-7) == b":-7\r\n"
    assert array([]) == b"*0\r\n"
    assert array([bulk(b"a"), integer(1), array([])]) == b"*3\r\n$1\r\na\r\n:1\r\n*0\r\n"


@pytest.mark.parametrize(
    "encoded",
    [OK, error("ERR x"), bulk(b"x"), bulk(None), integer(5), array([OK, PONG]), null(3), null(2)],
)
def test_encoded_replies_are_single_complete_replies_for_the_scanner(encoded: bytes) -> None:
    assert ReplyScanner().end_of(encoded + b"+next\r\n", 0) == len(encoded)
