"""RequestParser: client bytes in, commands out, exactly as Redis 7 reads its query buffer.

Every Redis behaviour asserted below was observed by hand on a throwaway ``redis-server`` 7.0.15
(raw socket, one connection per case); error replies are compared as the bytes the client gets
(``errors.protocol``), which is how Redis words them on the wire. The small ``max_bulk_len`` /
``max_multibulk_len`` limits are the ambassador's own settings (Redis's are 512 MB and 2**31-1).
"""

from __future__ import annotations

import itertools
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot as redis_key_slot

from redis_ambassador import errors
from redis_ambassador.protocol.requests import (
    INLINE_MAX_SIZE,
    ExactReader,
    LargeArgs,
    ProtocolError,
    QueryBufferLimit,
    RequestParser,
    as_bytes,
    encode_command,
    split_inline,
)
from redis_ambassador.protocol.writes import LARGE_PIECE, LargeFrames, write_joined
from redis_ambassador.slots import key_slot

Result = tuple[list[list[bytes]], list[bytes], ProtocolError | None]


def feed_all(chunks: list[bytes], parser: RequestParser | None = None) -> Result:
    """Feed chunks in order, like successive socket reads; stop at the first protocol error."""
    parser = parser or RequestParser()
    commands: list[list[bytes]] = []
    frames: list[bytes] = []
    for chunk in chunks:
        got, got_frames, error = parser.feed(chunk)
        commands += got
        frames += got_frames
        if error is not None:
            return commands, frames, error
    return commands, frames, None


def parse(data: bytes, **limits: int) -> Result:
    return RequestParser(**limits).feed(data)


def outcome(result: Result) -> tuple[list[list[bytes]], list[bytes], bytes | None]:
    """A result with its error as wire bytes, so two results compare by value."""
    commands, frames, error = result
    return commands, frames, wire(error)


def wire(error: ProtocolError | None) -> bytes | None:
    """The error reply as the client receives it."""
    return None if error is None else errors.protocol(str(error))


def reference(chunks: list[bytes], **limits: int) -> tuple[list[list[bytes]], bytes | None]:
    """The exact reader alone (the Python mirror of Redis's state machine), no fast path."""
    reader = ExactReader(limits.get("max_bulk_len", 512 * 1024 * 1024),
                         limits.get("max_multibulk_len", 1024 * 1024),
                         limits.get("max_query_buffer", 1024 * 1024 * 1024))  # fmt: skip
    commands: list[list[bytes]] = []
    for chunk in chunks:
        reader.feed(chunk)
        try:
            while (command := reader.next_command()) is not None:
                if command[0]:
                    commands.append(command[0])
        except ProtocolError as error:
            return commands, wire(error)
    return commands, None


def resp(*args: bytes) -> bytes:
    return encode_command(list(args))


# --- protocol errors, byte for byte ------------------------------------------------------

MULTIBULK = b"-ERR Protocol error: invalid multibulk length\r\n"
BULK = b"-ERR Protocol error: invalid bulk length\r\n"
QUOTES = b"-ERR Protocol error: unbalanced quotes in request\r\n"


def expected_dollar(got: str) -> bytes:
    return b"-ERR Protocol error: expected '$', got '%s'\r\n" % got.encode()


# (input, commands Redis ran before the error, the error reply Redis sent before closing)
ERROR_CASES = [
    (b"*abc\r\n", [], MULTIBULK),
    (b"*\r\nPING\r\n", [], MULTIBULK),
    (b"*+1\r\n$4\r\nPING\r\n", [], MULTIBULK),
    (b"*01\r\n$4\r\nPING\r\n", [], MULTIBULK),
    (b"*2 \r\n$4\r\nECHO\r\n$1\r\na\r\n", [], MULTIBULK),
    (b"*-0\r\n", [], MULTIBULK),
    (b"*99999999999999999999\r\n", [], MULTIBULK),
    (b"*1\r\n+PING\r\n", [], expected_dollar("+")),
    (b"*1\r\n:1\r\n", [], expected_dollar(":")),
    (b"*1\r\n*1\r\n$4\r\nPING\r\n", [], expected_dollar("*")),
    (b"*1\r\n_\r\n", [], expected_dollar("_")),
    (b"*2\r\n$4\r\nECHO\r\nhello\r\n", [], expected_dollar("h")),
    # Redis's addReplyErrorFormat turns the '\n' it quotes into a space.
    (b"*1\r\r\n$4\r\nPING\r\n", [], expected_dollar(" ")),
    (b"*1\r\n$03\r\nabc\r\n", [], BULK),
    (b"*1\r\n$-1\r\n", [], BULK),
    (b"*1\r\n$abc\r\n", [], BULK),
    (b"*1\r\n$+3\r\nabc\r\n", [], BULK),
    (b"*1\r\n$\r\n", [], BULK),
    (b"*1\r\n$4 \r\nPING\r\n", [], BULK),
    (b"*1\r\n$536870913\r\n", [], BULK),
    (b"*1\r\n$9999999999999999999999\r\n", [], BULK),
    (b'SET "a b\r\n', [], QUOTES),
    (b'SET "a"b c\r\n', [], QUOTES),
    (b"SET 'a\r\n", [], QUOTES),
    (b"SET 'a'b\r\n", [], QUOTES),
    (b'ECHO "a\\\r\n', [], QUOTES),
    (b"PING\r\nPING\r\n*abc\r\nPING\r\n", [[b"PING"], [b"PING"]], MULTIBULK),
    (b"*1\r\n$4\r\nPING\r\n*1\r\n+PING\r\n", [[b"PING"]], expected_dollar("+")),
    (b'*1\r\n$4\r\nPING\r\nECHO "x\r\n', [[b"PING"]], QUOTES),
    (resp(b"SET", b"k", b"v") + b"*1\r\n$03\r\nabc\r\n", [[b"SET", b"k", b"v"]], BULK),
]


@pytest.mark.parametrize(("data", "before", "reply"), ERROR_CASES)
def test_malformed_input_gets_redis_error_reply_after_earlier_commands(
    data: bytes, before: list[list[bytes]], reply: bytes
) -> None:
    commands, frames, error = parse(data)
    assert commands == before
    assert frames == [encode_command(args) for args in before]
    assert wire(error) == reply


@pytest.mark.parametrize(("data", "before", "reply"), ERROR_CASES)
def test_malformed_input_gets_same_error_at_every_split_point(
    data: bytes, before: list[list[bytes]], reply: bytes
) -> None:
    for cut in range(1, len(data)):
        commands, _, error = feed_all([data[:cut], data[cut:]])
        assert (commands, wire(error)) == (before, reply), cut


def test_protocol_error_text_is_redis_reply_text_without_the_err_prefix() -> None:
    _, _, error = parse(b"*1\r\n$abc\r\n")
    assert isinstance(error, ProtocolError)
    assert str(error) == "Protocol error: invalid bulk length"


def test_inline_line_without_newline_over_64kb_is_too_big_inline_request() -> None:
    assert parse(b"x" * INLINE_MAX_SIZE) == ([], [], None)  # Redis still waits at 64 KB
    _, _, error = parse(b"x" * (INLINE_MAX_SIZE + 1))
    assert wire(error) == b"-ERR Protocol error: too big inline request\r\n"


def test_inline_line_growing_past_64kb_over_many_reads_is_too_big_inline_request() -> None:
    parser = RequestParser()
    for _ in range(16):
        assert parser.feed(b"y" * 4096) == ([], [], None)
    _, _, error = parser.feed(b"y")
    assert wire(error) == b"-ERR Protocol error: too big inline request\r\n"


def test_multibulk_count_line_without_cr_over_64kb_is_too_big_mbulk_count_string() -> None:
    assert parse(b"*" + b"1" * (INLINE_MAX_SIZE - 1)) == ([], [], None)
    _, _, error = parse(b"*" + b"1" * INLINE_MAX_SIZE)
    assert wire(error) == b"-ERR Protocol error: too big mbulk count string\r\n"


def test_bulk_length_line_without_cr_over_64kb_is_too_big_bulk_count_string() -> None:
    assert parse(b"*1\r\n$" + b"1" * (INLINE_MAX_SIZE - 1)) == ([], [], None)
    _, _, error = parse(b"*1\r\n$" + b"1" * INLINE_MAX_SIZE)
    assert wire(error) == b"-ERR Protocol error: too big bulk count string\r\n"
    _, _, error = parse(b"*1\r\n" + b"x" * (INLINE_MAX_SIZE + 1))
    assert wire(error) == b"-ERR Protocol error: too big bulk count string\r\n"


# Redis 7's processInlineBuffer/processMultibulkBuffer look for the line end with strchr(), which
# stops at a NUL byte: a header or inline line holding a NUL never completes for Redis, which waits
# for more (and after 64 KB replies "too big ..."). Observed on 7.0.15 for each input below.
NUL_CASES = [
    pytest.param(b"ECHO a\0b\r\n", ([], None), id="inline-line-with-nul-waits"),
    pytest.param(
        b"ECHO a\0b\r\n" + b"PING\r\n" * 12000,
        ([], b"-ERR Protocol error: too big inline request\r\n"),
        id="inline-line-with-nul-then-64kb-is-too-big-inline",
    ),
    pytest.param(b"*\x001\r\n", ([], None), id="multibulk-count-with-nul-waits"),
    pytest.param(
        b"*\x001\r\n" + b"PING\r\n" * 12000,
        ([], b"-ERR Protocol error: too big mbulk count string\r\n"),
        id="multibulk-count-with-nul-then-64kb-is-too-big-mbulk",
    ),
    pytest.param(b"*1\r\n$\x004\r\n", ([], None), id="bulk-length-with-nul-waits"),
    pytest.param(
        b"*2\r\n$4\r\nECHO\r\n\x00$1\r\na\r\n", ([], None), id="nul-where-dollar-expected-waits"
    ),
]


# Redis 7 finds line ends with strchr, which stops at a NUL: such a line is never complete, and
# past 64 KB it is "too big".
@pytest.mark.parametrize(("data", "expected"), NUL_CASES)
def test_nul_byte_before_line_end_makes_redis_wait_for_more(
    data: bytes, expected: tuple[list[list[bytes]], bytes | None]
) -> None:
    commands, _, error = parse(data)
    assert (commands, wire(error)) == expected


def test_nul_bytes_inside_bulk_payloads_are_ordinary_bytes() -> None:
    data = resp(b"SET", b"k\0", b"\0v\0")
    assert parse(data)[0] == [[b"SET", b"k\0", b"\0v\0"]]


# --- valid streams: whole, at every split point, and in random chunks ----------------------

BINARY = bytes(range(256))
VALID_STREAMS: list[tuple[bytes, list[list[bytes]]]] = [
    (b"*1\r\n$4\r\nPING\r\n", [[b"PING"]]),
    (resp(b"SET", b"key", b"value"), [[b"SET", b"key", b"value"]]),
    (
        resp(b"SET", b"k", b"a\r\nb*3\r\n$5\r\n") + resp(b"GET", b"k"),
        [[b"SET", b"k", b"a\r\nb*3\r\n$5\r\n"], [b"GET", b"k"]],
    ),
    (resp(b"ECHO", BINARY), [[b"ECHO", BINARY]]),
    (resp(b"ECHO", b""), [[b"ECHO", b""]]),
    (resp(b"MSET", b"a", b"1", b"b", b"2"), [[b"MSET", b"a", b"1", b"b", b"2"]]),
    (
        resp(b"SET", b"k", b"v" * 5000) + resp(b"GET", b"k"),
        [[b"SET", b"k", b"v" * 5000], [b"GET", b"k"]],
    ),
    (b"PING\r\n", [[b"PING"]]),
    (b"PING\n", [[b"PING"]]),
    (b"set k v\r\nget k\r\n", [[b"set", b"k", b"v"], [b"get", b"k"]]),
    (b"\r\n\r\n  \r\n\nPING\r\n", [[b"PING"]]),
    (b"*0\r\n*-1\r\n*-5\r\nPING\r\n", [[b"PING"]]),
    (
        b"PING\r\n" + resp(b"GET", b"a") + b'ECHO "x y"\r\n' + resp(b"GET", b"b") + b"PING\n",
        [[b"PING"], [b"GET", b"a"], [b"ECHO", b"x y"], [b"GET", b"b"], [b"PING"]],
    ),
    (b"*1\r\n$4\r\nPING\r\n\r\n*1\r\n$4\r\nPING\r\n", [[b"PING"], [b"PING"]]),
    (b'ECHO "\\x41\\n\\t" \'it\\\'s\' ""\r\n', [[b"ECHO", b"A\n\t", b"it's", b""]]),
    (b"PING\rPING\n", [[b"PING", b"PING"]]),
    (b"*2\r\n$4\r\nECHO\r\n$1\r\n*\r\n", [[b"ECHO", b"*"]]),
    (b"*1\r\n$536870912\r\n", []),  # exactly the default limit: accepted, waits for the payload
    (b"*1048576\r\n", []),  # likewise for the element count
    (b"*1\r\n$4\rPING\r\n", []),  # Redis takes "\rP" as the header's CRLF and waits
]


@pytest.mark.parametrize(("data", "expected"), VALID_STREAMS)
def test_valid_stream_fed_whole_gives_its_commands_and_canonical_frames(
    data: bytes, expected: list[list[bytes]]
) -> None:
    commands, frames, error = parse(data)
    assert error is None
    assert commands == expected
    assert frames == [encode_command(args) for args in expected]


@pytest.mark.parametrize(("data", "expected"), VALID_STREAMS)
def test_valid_stream_split_at_every_point_gives_same_commands_and_frames(
    data: bytes, expected: list[list[bytes]]
) -> None:
    whole = parse(data)
    for cut in range(1, len(data)):
        assert outcome(feed_all([data[:cut], data[cut:]])) == outcome(whole), cut


@pytest.mark.parametrize(("data", "expected"), VALID_STREAMS)
def test_valid_stream_fed_one_byte_at_a_time_gives_same_commands_and_frames(
    data: bytes, expected: list[list[bytes]]
) -> None:
    assert outcome(feed_all([data[i : i + 1] for i in range(len(data))])) == outcome(parse(data))


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=150, deadline=None)
@given(
    stream=st.lists(st.sampled_from(VALID_STREAMS), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_concatenated_valid_streams_in_random_chunks_give_same_result_as_whole(
    stream: list[tuple[bytes, list[list[bytes]]]], cuts: list[int]
) -> None:
    data = b"".join(s for s, _ in stream)
    assert outcome(feed_all(chunked(data, cuts))) == outcome(parse(data))


# --- frames ---------------------------------------------------------------------------------

ARGS = st.lists(st.binary(max_size=40), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(commands=st.lists(ARGS, min_size=1, max_size=6), cuts=st.lists(st.integers(0), max_size=8))
def test_encoded_commands_parse_back_to_their_args_and_frames_in_any_chunking(
    commands: list[list[bytes]], cuts: list[int]
) -> None:
    data = b"".join(encode_command(args) for args in commands)
    got, frames, error = feed_all(chunked(data, cuts))
    assert error is None
    assert got == commands
    assert frames == [encode_command(args) for args in commands]
    assert b"".join(frames) == data


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_encode_command_is_canonical_resp_for_every_arity(n: int) -> None:
    args = [b"a\r\n" * i for i in range(n)]
    expected = b"*%d\r\n" % n + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)
    assert encode_command(args) == expected


def test_encode_command_refuses_non_bytes_items_with_type_error() -> None:
    with pytest.raises(TypeError):
        encode_command([b"GET", 1])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        encode_command([b"GET", [b"k"]])  # type: ignore[list-item]


def test_inline_commands_get_multibulk_frames_that_reparse_to_the_same_args() -> None:
    commands, frames, _ = parse(b"SET \"a b\" 'c\\'d'\r\n")
    assert commands == [[b"SET", b"a b", b"c'd"]]
    assert frames == [b"*3\r\n$3\r\nSET\r\n$3\r\na b\r\n$3\r\nc'd\r\n"]
    assert parse(frames[0])[0] == commands


# --- non-canonical multibulk the fast path must hand to the exact reader ------------------


@pytest.mark.parametrize(
    ("item", "reply"),
    [
        (b"+PING\r\n", expected_dollar("+")),
        (b"-ERR\r\n", expected_dollar("-")),
        (b":1\r\n", expected_dollar(":")),
        (b"*1\r\n$4\r\nPING\r\n", expected_dollar("*")),
        (b"_\r\n", expected_dollar("_")),
        (b",1.5\r\n", expected_dollar(",")),
        (b"#t\r\n", expected_dollar("#")),
        (b"%1\r\n$1\r\na\r\n$1\r\nb\r\n", expected_dollar("%")),
        (b"$-1\r\n", BULK),
        (b"$03\r\nabc\r\n", BULK),
        (b"$+3\r\nabc\r\n", BULK),
    ],
)
def test_non_canonical_item_after_good_commands_gets_redis_error(item: bytes, reply: bytes) -> None:
    good = resp(b"GET", b"a") + resp(b"PING")
    commands, frames, error = parse(good + b"*2\r\n$4\r\nECHO\r\n" + item)
    assert commands == [[b"GET", b"a"], [b"PING"]]
    assert b"".join(frames) == good
    assert wire(error) == reply


# Redis skips the two bytes after a payload without looking at them.
TRAILER = b"*2\r\n$3\r\nGET\r\n$1\r\nkXY*2\r\n$4\r\nECHO\r\n$300\r\n" + b"v" * 300 + b"\n\n"


def test_payload_followed_by_two_bytes_other_than_crlf_runs_like_redis() -> None:
    expected = [[b"GET", b"k"], [b"ECHO", b"v" * 300]]
    assert parse(TRAILER)[0] == expected
    for cut in range(1, len(TRAILER)):
        commands, _, error = feed_all([TRAILER[:cut], TRAILER[cut:]])
        assert (commands, error) == (expected, None), cut


# --- limits ---------------------------------------------------------------------------------


def test_bulk_over_max_bulk_len_is_refused_as_soon_as_its_header_arrives() -> None:
    parser = RequestParser(max_bulk_len=100, max_multibulk_len=100)
    assert parser.feed(b"*2\r\n$3\r\nSET\r\n$101\r") == ([], [], None)
    commands, _, error = parser.feed(b"\n")  # header complete, not one payload byte sent
    assert commands == []
    assert wire(error) == BULK


def test_bulk_of_exactly_max_bulk_len_is_accepted() -> None:
    parser = RequestParser(max_bulk_len=100, max_multibulk_len=100)
    data = resp(b"SET", b"k", b"v" * 100)
    assert feed_all([data[:20], data[20:]], parser)[0] == [[b"SET", b"k", b"v" * 100]]
    assert parse(data, max_bulk_len=100, max_multibulk_len=100)[0] == [[b"SET", b"k", b"v" * 100]]


def test_whole_command_with_bulk_over_the_limit_in_one_read_is_refused() -> None:
    data = resp(b"GET", b"a") + resp(b"SET", b"k", b"v" * 101)
    commands, _, error = parse(data, max_bulk_len=100, max_multibulk_len=100)
    assert commands == [[b"GET", b"a"]]
    assert wire(error) == BULK


def test_multibulk_count_over_max_multibulk_len_is_refused_as_soon_as_declared() -> None:
    parser = RequestParser(max_bulk_len=1000, max_multibulk_len=3)
    assert parser.feed(resp(b"PING") + b"*4\r")[0] == [[b"PING"]]
    commands, _, error = parser.feed(b"\n")
    assert commands == []
    assert wire(error) == MULTIBULK


def test_whole_command_with_too_many_args_in_one_read_is_refused() -> None:
    data = resp(b"PING") + resp(b"DEL", b"a", b"b", b"c")
    commands, _, error = parse(data, max_bulk_len=1000, max_multibulk_len=3)
    assert commands == [[b"PING"]]
    assert wire(error) == MULTIBULK
    assert parse(resp(b"DEL", b"a", b"b"), max_multibulk_len=3)[0] == [[b"DEL", b"a", b"b"]]


def test_an_unfinished_bulk_growing_past_the_query_buffer_limit_is_cut_off() -> None:
    parser = RequestParser(max_query_buffer=1000)
    assert parser.feed(resp(b"PING") + b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n")[0] == [[b"PING"]]
    assert parser.feed(b"v" * 900) == ([], [], None)
    commands, _, error = parser.feed(b"v" * 200)
    assert commands == []
    assert isinstance(error, QueryBufferLimit)


def test_many_finished_arguments_of_an_unfinished_command_count_against_the_query_buffer() -> None:
    parser = RequestParser(max_query_buffer=1000)
    assert parser.feed(b"*100\r\n")[2] is None
    error = None
    fed = 0
    while error is None:
        _, _, error = parser.feed(b"$50\r\n" + b"a" * 50 + b"\r\n")
        fed += 50
    assert isinstance(error, QueryBufferLimit)
    assert 1000 < fed <= 1050  # each argument's payload counts, not just the unparsed bytes


def test_whole_commands_larger_than_the_query_buffer_limit_are_not_held_so_pass() -> None:
    data = resp(b"SET", b"k", b"v" * 3000) + resp(b"GET", b"k")
    assert parse(data, max_query_buffer=1000) == (
        [[b"SET", b"k", b"v" * 3000], [b"GET", b"k"]],
        [resp(b"SET", b"k", b"v" * 3000), resp(b"GET", b"k")],
        None,
    )


def test_default_limits_refuse_a_huge_declared_bulk_before_its_payload() -> None:
    commands, _, error = parse(b"*2\r\n$3\r\nGET\r\n$536870913\r\n")
    assert (commands, wire(error)) == ([], BULK)
    commands, _, error = parse(b"*1048577\r\n")
    assert (commands, wire(error)) == ([], MULTIBULK)


def test_ten_megabyte_bulk_in_64kb_reads_parses_in_linear_time_to_the_exact_value() -> None:
    value = bytes(random.Random(7).randbytes(10 * 1024 * 1024))
    data = resp(b"SET", b"big", value)
    parser = RequestParser()
    step = 64 * 1024
    started = time.perf_counter()
    results = [parser.feed(data[i : i + step]) for i in range(0, len(data), step)]
    elapsed = time.perf_counter() - started
    assert all(r == ([], [], None) for r in results[:-1])
    commands, frames, error = results[-1]
    assert error is None
    assert commands == [[b"SET", b"big", value]]
    assert frames == [data]
    assert elapsed < 2.0  # ~160 reads; quadratic rescanning would take far longer


def test_large_pipeline_in_64kb_reads_parses_every_command_quickly() -> None:
    one = resp(b"SET", b"key:000000", b"x" * 20)
    data = one * 50_000  # ~2.4 MB, commands straddling every read boundary
    step = 64 * 1024
    started = time.perf_counter()
    commands, frames, error = feed_all([data[i : i + step] for i in range(0, len(data), step)])
    assert time.perf_counter() - started < 2.0
    assert error is None
    assert len(commands) == 50_000
    assert b"".join(frames) == data


# --- fuzzing --------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0), max_size=6))
def test_random_bytes_never_raise_and_give_commands_or_a_protocol_error(
    data: bytes, cuts: list[int]
) -> None:
    parser = RequestParser(max_bulk_len=64, max_multibulk_len=16)
    for chunk in chunked(data, cuts):
        commands, frames, error = parser.feed(chunk)
        assert all(isinstance(a, list) and a and all(type(x) is bytes for x in a) for a in commands)
        assert len(frames) == len(commands)
        for args, frame in zip(commands, frames, strict=True):
            # What is forwarded to a node reads back as exactly this one command.
            assert outcome(RequestParser().feed(frame)) == ([args], [frame], None)
        if error is not None:
            assert isinstance(error, ProtocolError)
            assert str(error).startswith("Protocol error: ")
            break


TOKENS = [
    b"*", b"$", b"\r\n", b"\r", b"\n", b"0", b"1", b"2", b"3", b"-1", b"10", b"+", b":", b" ",
    b'"', b"'", b"\\", b"x4", b"a", b"PING", b"ECHO", b"\t", b"*1\r\n$4\r\nPING\r\n",
    b"*2\r\n$4\r\nECHO\r\n$1\r\nz\r\n", b"PING\r\n", b"$3\r\nabc\r\n", b"*2\r\n",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(st.sampled_from(TOKENS), max_size=30),
    cuts=st.lists(st.integers(0), max_size=6),
)
def test_fast_path_agrees_with_exact_reader_on_protocol_like_input(
    parts: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(parts)
    chunks = chunked(data, cuts)
    commands, _, error = feed_all(chunks, RequestParser(max_bulk_len=8, max_multibulk_len=4))
    assert (commands, wire(error)) == reference(chunks, max_bulk_len=8, max_multibulk_len=4)
    whole, _, whole_error = parse(data, max_bulk_len=8, max_multibulk_len=4)
    assert (whole, wire(whole_error)) == (commands, wire(error))


# --- split_inline (sdssplitargs) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b'ECHO "\\x41\\n"', [b"ECHO", b"A\n"]),
        (b"ECHO 'it\\'s'", [b"ECHO", b"it's"]),
        (b'ECHO "a\\"b"', [b"ECHO", b'a"b']),
        (b'ECHO "a\\xZZ"', [b"ECHO", b"axZZ"]),
        (b'ECHO "\\x4"', [b"ECHO", b"x4"]),
        (b"ECHO '\\n'", [b"ECHO", b"\\n"]),
        (b'ECHO ""', [b"ECHO", b""]),
        (b"ECHO ''", [b"ECHO", b""]),
        (b'ECHO a"b"', [b"ECHO", b"ab"]),
        (b'ECHO "a"\x0bb', [b"ECHO", b"a", b"b"]),
        (b"PING\x0bPING", [b"PING\x0bPING"]),
        (b"\x0b\x0c PING \t", [b"PING"]),
        (b'"\\r\\t\\b\\a\\q"', [b"\r\t\b\a" + b"q"]),
        (b"", []),
        (b"   ", []),
    ],
)
def test_split_inline_splits_like_redis_sdssplitargs(line: bytes, args: list[bytes]) -> None:
    assert split_inline(line) == args


@pytest.mark.parametrize("line", [b'"a', b"'a", b'"a"b', b"'a'b", b'"a\\'])
def test_split_inline_refuses_unbalanced_quotes(line: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"^Protocol error: unbalanced quotes in request$"):
        split_inline(line)


# --- large commands: the frame as read, large arguments as views into it -------------------


def test_a_large_command_read_in_pieces_is_its_own_frame_with_its_large_value_a_view() -> None:
    value = bytes(random.Random(3).randbytes(3 * LARGE_PIECE))
    data = resp(b"SET", b"k" * (LARGE_PIECE + 1), value)
    parser = RequestParser()
    assert parser.feed(data[:1000]) == ([], [], None)
    before = LargeFrames.queued
    (args, get), (frame, _), error = parser.feed(data[1000:] + resp(b"GET", b"k"))
    assert (get, error) == ([b"GET", b"k"], None)
    # Handed over, not copied: the buffer the reads went into, read-only views into it.
    assert type(frame) is bytearray and frame == data
    assert LargeFrames.queued == before + 1
    assert type(args) is LargeArgs
    name, key, view = args
    assert (type(name), type(key)) == (bytes, bytes)  # the name and first argument: always bytes
    assert type(view) is memoryview and view.readonly and view.obj is frame
    assert (key, view) == (b"k" * (LARGE_PIECE + 1), value)
    with pytest.raises(BufferError):
        frame.append(0)  # nobody can change what a view sees


def test_the_bytes_redis_skips_in_a_large_command_are_forwarded_as_crlf() -> None:
    value = b"v" * (2 * LARGE_PIECE)
    sloppy = b"*3\r\n$3\r\nSET\rX$1\r\nk\r\n$%d\rY%b\n\n" % (len(value), value)
    commands, frames, error = feed_all([sloppy[:100], sloppy[100:]])
    assert (commands, frames, error) == ([[b"SET", b"k", value]], [resp(b"SET", b"k", value)], None)


def test_what_follows_a_large_command_in_the_same_read_is_read_after_it() -> None:
    big = resp(b"SET", b"k", b"v" * (2 * LARGE_PIECE))
    after = resp(b"GET", b"k") + b"*2\r\n$4\r\nECHO\r\n$3\r\nab"
    parser = RequestParser()
    parser.feed(big[:10])
    commands, frames, _ = parser.feed(big[10:] + after)
    assert len(commands) == 2
    assert frames == [big, resp(b"GET", b"k")]
    assert parser.feed(b"c\r\n")[:2] == ([[b"ECHO", b"abc"]], [resp(b"ECHO", b"abc")])


def test_small_arguments_of_a_large_command_and_small_commands_are_bytes() -> None:
    args = [b"MSET", *[b"x" * 1000] * 200]  # 200 KB, but no argument over LARGE_PIECE
    data = resp(*args)
    commands, frames, _ = feed_all([data[:5000], data[5000:]])
    assert commands == [args] and all(type(a) is bytes for a in commands[0])
    assert type(frames[0]) is bytearray  # the frame itself is still handed over
    small = resp(b"SET", b"k", b"v" * 100)
    commands, frames, _ = feed_all([small[:20], small[20:]])
    assert type(frames[0]) is bytes and all(type(a) is bytes for a in commands[0])


def test_key_slot_of_a_view_is_the_slot_of_its_bytes() -> None:
    for key in [b"user:1", b"{user:1}:profile", b"{}x", b"a{b}c{d}", b"x" * (LARGE_PIECE + 1)]:
        assert key_slot(memoryview(key).toreadonly()) == key_slot(key) == redis_key_slot(key)


def test_as_bytes_copies_views_and_keeps_bytes() -> None:
    name = b"SET"
    args = as_bytes([name, memoryview(b"value").toreadonly()])
    assert args == [b"SET", b"value"] and args[0] is name and type(args[1]) is bytes


def test_write_joined_writes_each_large_piece_alone_and_joins_the_runs_between() -> None:
    big = bytearray(LARGE_PIECE + 1)
    written: list[bytes | bytearray] = []
    size = write_joined(written.append, [b"a", b"b", big, b"c", big, big])
    assert written == [b"ab", big, b"c", big, big] and written[1] is big
    assert size == 3 + 3 * len(big)


SIZES = [0, 1, LARGE_PIECE - 40, LARGE_PIECE, LARGE_PIECE + 1, 2 * LARGE_PIECE]


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(
        st.lists(st.sampled_from(SIZES), min_size=1, max_size=4), min_size=1, max_size=3
    ),
    cuts=st.lists(st.integers(0), max_size=5),
)
def test_commands_around_the_large_size_read_in_any_pieces_give_their_args_and_frames(
    shapes: list[list[int]], cuts: list[int]
) -> None:
    rng = random.Random(len(cuts))
    commands = [[b"CMD", *(rng.randbytes(size) for size in sizes)] for sizes in shapes]
    data = b"".join(resp(*args) for args in commands)
    got, frames, error = feed_all(chunked(data, cuts))
    assert (got, error) == (commands, None)
    assert frames == [resp(*args) for args in commands]
