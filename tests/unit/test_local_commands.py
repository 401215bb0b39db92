"""Commands the ambassador answers itself, compared byte for byte with Redis 7.

Every expected reply was observed by hand (raw socket) on redis-server 7.0.15: on a cluster-enabled
node for what only makes sense in a cluster (SELECT n, READONLY, ...), on a standalone server for
HELLO (the ambassador presents itself as one plain Redis), in RESP2 and RESP3. CLIENT SETINFO
only exists from Redis 7.2; its expected replies come from the 7.2 source and say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from redis_ambassador.commands.local import LOCAL, REFUSED

ARITY = b"-ERR wrong number of arguments for '%s' command\r\n"
NOT_INTEGER = b"-ERR value is not an integer or out of range\r\n"
NAME_CHARS = b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"


@dataclass
class Session:
    id: int = 110
    name: bytes = b""
    protocol: int = 2

    def set_protocol(self, protocol: int) -> None:
        self.protocol = protocol


@dataclass
class Facts:
    version: bytes = b"7.0.15"


def run(*args: bytes, session: Session | None = None) -> bytes:
    session = session if session is not None else Session()
    return LOCAL[args[0].decode().lower()](session, list(args), Facts())


def hello_reply(client_id: int = 110, version: bytes = b"7.0.15", protocol: int = 2) -> bytes:
    """HELLO's reply exactly as a standalone Redis 7.0.15 sent it: a flat array in RESP2, a map
    in RESP3."""
    head = b"*14\r\n" if protocol == 2 else b"%7\r\n"
    return head + (
        b"$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$%d\r\n%b\r\n$5\r\nproto\r\n:%d\r\n"
        b"$2\r\nid\r\n:%d\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
        b"$7\r\nmodules\r\n*0\r\n" % (len(version), version, protocol, client_id)
    )


OBSERVED = [
    ((b"PING",), b"+PONG\r\n"),
    ((b"ping",), b"+PONG\r\n"),
    ((b"PING", b"hello"), b"$5\r\nhello\r\n"),
    ((b"PING", b""), b"$0\r\n\r\n"),
    ((b"PING", b"a", b"b"), ARITY % b"ping"),
    ((b"ECHO", b"x\r\ny"), b"$4\r\nx\r\ny\r\n"),
    ((b"ECHO", b""), b"$0\r\n\r\n"),
    ((b"ECHO",), ARITY % b"echo"),
    ((b"ECHO", b"a", b"b"), ARITY % b"echo"),
    ((b"SELECT", b"0"), b"+OK\r\n"),
    ((b"SELECT", b"1"), b"-ERR SELECT is not allowed in cluster mode\r\n"),
    ((b"SELECT", b"-1"), b"-ERR SELECT is not allowed in cluster mode\r\n"),
    ((b"SELECT", b"x"), NOT_INTEGER),
    ((b"SELECT", b""), NOT_INTEGER),
    ((b"SELECT", b"1.5"), NOT_INTEGER),
    ((b"SELECT",), ARITY % b"select"),
    ((b"SELECT", b"0", b"1"), ARITY % b"select"),
    ((b"CLIENT",), ARITY % b"client"),
    ((b"CLIENT", b"FOO"), b"-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"),
    ((b"CLIENT", b"foo"), b"-ERR unknown subcommand 'foo'. Try CLIENT HELP.\r\n"),
    ((b"CLIENT", b"SETNAME"), ARITY % b"client|setname"),
    ((b"CLIENT", b"SETNAME", b"a", b"b"), ARITY % b"client|setname"),
    ((b"CLIENT", b"setname", b"app-1"), b"+OK\r\n"),
    ((b"CLIENT", b"SETNAME", b"a b"), NAME_CHARS),
    ((b"CLIENT", b"SETNAME", b"a\nb"), NAME_CHARS),
    ((b"CLIENT", b"SETNAME", b"a\x7f"), NAME_CHARS),
    ((b"CLIENT", b"SETNAME", "é".encode()), NAME_CHARS),
    ((b"CLIENT", b"GETNAME"), b"$-1\r\n"),
    ((b"CLIENT", b"GETNAME", b"x"), ARITY % b"client|getname"),
    ((b"CLIENT", b"ID"), b":110\r\n"),
    ((b"CLIENT", b"ID", b"x"), ARITY % b"client|id"),
    ((b"HELLO",), hello_reply()),
    ((b"HELLO", b"2"), hello_reply()),
    ((b"HELLO", b"x"), b"-ERR Protocol version is not an integer or out of range\r\n"),
    ((b"HELLO", b"SETNAME", b"x"), b"-ERR Protocol version is not an integer or out of range\r\n"),
    ((b"HELLO", b"1"), b"-NOPROTO unsupported protocol version\r\n"),
    ((b"HELLO", b"4"), b"-NOPROTO unsupported protocol version\r\n"),
    ((b"HELLO", b"2", b"FOO"), b"-ERR Syntax error in HELLO option 'FOO'\r\n"),
    ((b"HELLO", b"2", b"SETNAME"), b"-ERR Syntax error in HELLO option 'SETNAME'\r\n"),
    ((b"HELLO", b"2", b"AUTH", b"u"), b"-ERR Syntax error in HELLO option 'AUTH'\r\n"),
    ((b"HELLO", b"2", b"SETNAME", b"a b"), NAME_CHARS),
    ((b"HELLO", b"2", b"SETNAME", b"a b", b"FOO"), NAME_CHARS),
    ((b"READONLY",), b"+OK\r\n"),
    ((b"READWRITE",), b"+OK\r\n"),
    ((b"ASKING",), b"+OK\r\n"),
]


@pytest.mark.parametrize(("args", "reply"), OBSERVED, ids=lambda v: repr(v)[:50])
def test_local_reply_is_byte_for_byte_what_redis_7_sends(
    args: tuple[bytes, ...], reply: bytes
) -> None:
    assert run(*args) == reply


# Observed on the cluster node: Redis parses numbers with string2ll (no spaces, signs on zero,
# leading zeros or underscores) and checks arity before anything else.
EDGE_CASES = [
    ((b"SELECT", b" 0"), NOT_INTEGER),
    ((b"SELECT", b"00"), NOT_INTEGER),
    ((b"SELECT", b"+0"), NOT_INTEGER),
    ((b"SELECT", b"-0"), NOT_INTEGER),
    ((b"SELECT", b"1_0"), NOT_INTEGER),
    (
        (b"SELECT", b"99999999999"),
        b"-ERR value is out of range, value must between -2147483648 and 2147483647\r\n",
    ),
    ((b"HELLO", b" 2"), b"-ERR Protocol version is not an integer or out of range\r\n"),
    ((b"HELLO", b"02"), b"-ERR Protocol version is not an integer or out of range\r\n"),
    ((b"HELLO", b"2_0"), b"-ERR Protocol version is not an integer or out of range\r\n"),
    ((b"READONLY", b"x"), ARITY % b"readonly"),
    ((b"READWRITE", b"x"), ARITY % b"readwrite"),
    ((b"ASKING", b"x"), ARITY % b"asking"),
]


@pytest.mark.parametrize(("args", "reply"), EDGE_CASES, ids=lambda v: repr(v)[:50])
def test_local_reply_matches_redis_for_edge_case_arguments(
    args: tuple[bytes, ...], reply: bytes
) -> None:
    assert run(*args) == reply


def test_client_setname_then_getname_returns_the_name_and_empty_name_clears_it() -> None:
    session = Session()
    assert run(b"CLIENT", b"SETNAME", b"app", session=session) == b"+OK\r\n"
    assert session.name == b"app"
    assert run(b"CLIENT", b"GETNAME", session=session) == b"$3\r\napp\r\n"
    assert run(b"CLIENT", b"SETNAME", b"", session=session) == b"+OK\r\n"
    assert run(b"CLIENT", b"GETNAME", session=session) == b"$-1\r\n"


def test_client_setname_with_a_space_is_refused_and_keeps_the_old_name() -> None:
    session = Session(name=b"keep")
    assert run(b"CLIENT", b"SETNAME", b"my app", session=session) == NAME_CHARS
    assert session.name == b"keep"
    assert run(b"CLIENT", b"GETNAME", session=session) == b"$4\r\nkeep\r\n"


def test_client_id_is_the_session_id() -> None:
    assert run(b"CLIENT", b"ID", session=Session(id=987654321)) == b":987654321\r\n"


def test_hello_reports_the_session_id_and_the_cluster_version() -> None:
    session = Session(id=42)
    reply = LOCAL["hello"](session, [b"HELLO", b"2"], Facts(version=b"7.2.4"))
    assert reply == hello_reply(client_id=42, version=b"7.2.4")


def test_hello_setname_sets_the_name_like_client_setname() -> None:
    session = Session()
    assert run(b"HELLO", b"2", b"setname", b"h1", session=session) == hello_reply()
    assert run(b"CLIENT", b"GETNAME", session=session) == b"$2\r\nh1\r\n"
    assert run(b"HELLO", b"2", b"SETNAME", b"a b", session=session) == NAME_CHARS
    assert session.name == b"h1"


def test_hello_3_switches_the_session_to_resp3_and_answers_with_a_map() -> None:
    session = Session()
    assert run(b"HELLO", b"3", session=session) == hello_reply(protocol=3)
    assert session.protocol == 3
    assert run(b"CLIENT", b"GETNAME", session=session) == b"_\r\n"  # RESP3 null
    assert run(b"PING", session=session) == b"+PONG\r\n"
    # Without a version HELLO keeps the current protocol; HELLO 2 switches back.
    assert run(b"HELLO", session=session) == hello_reply(protocol=3)
    assert run(b"HELLO", b"2", session=session) == hello_reply(protocol=2)
    assert session.protocol == 2
    assert run(b"CLIENT", b"GETNAME", session=session) == b"$-1\r\n"


def test_hello_3_with_setname_sets_the_name_and_a_refused_hello_changes_nothing() -> None:
    session = Session()
    assert run(b"HELLO", b"3", b"SETNAME", b"n3", session=session) == hello_reply(protocol=3)
    assert run(b"CLIENT", b"GETNAME", session=session) == b"$2\r\nn3\r\n"
    assert run(b"HELLO", b"4", session=session) == b"-NOPROTO unsupported protocol version\r\n"
    assert (session.protocol, session.name) == (3, b"n3")


@pytest.mark.parametrize(
    ("args", "reply"),
    [
        ((b"HELLO", b"3", b"SETNAME", b"a b"), NAME_CHARS),
        ((b"HELLO", b"3", b"FOO"), b"-ERR Syntax error in HELLO option 'FOO'\r\n"),
        ((b"HELLO", b"x"), b"-ERR Protocol version is not an integer or out of range\r\n"),
    ],
)
def test_hello_that_fails_leaves_protocol_and_name_unchanged(
    args: tuple[bytes, ...], reply: bytes
) -> None:
    session = Session()
    assert run(*args, session=session) == reply
    assert (session.protocol, session.name) == (2, b"")
    assert run(b"CLIENT", b"GETNAME", session=session) == b"$-1\r\n"


def test_hello_auth_is_refused_with_a_clear_reason() -> None:
    assert run(b"HELLO", b"2", b"AUTH", b"user", b"pass") == (
        b"-ERR redis-ambassador does not support 'hello': authentication is not supported yet\r\n"
    )


def test_client_setinfo_accepts_library_name_and_version_like_redis_7_2() -> None:
    assert run(b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py") == b"+OK\r\n"
    assert run(b"CLIENT", b"SETINFO", b"lib-ver", b"5.0.1") == b"+OK\r\n"
    # From the 7.2 source (clientSetinfoCommand): the option is quoted as typed.
    assert run(b"CLIENT", b"SETINFO", b"lib-foo", b"x") == b"-ERR Unrecognized option 'lib-foo'\r\n"
    assert run(b"CLIENT", b"SETINFO", b"lib-name") == ARITY % b"client|setinfo"


# From the 7.2 source (validateClientAttr); not observed: 7.0.15 has no SETINFO.
def test_client_setinfo_refuses_values_with_spaces_like_redis_7_2() -> None:
    assert run(b"CLIENT", b"SETINFO", b"lib-name", b"my lib") == (
        b"-ERR lib-name cannot contain spaces, newlines or special characters.\r\n"
    )


@pytest.mark.parametrize("sub", [b"LIST", b"kill", b"Pause", b"TRACKING", b"help"])
def test_client_subcommands_that_would_touch_shared_connections_are_refused_with_reason(
    sub: bytes,
) -> None:
    reply = run(b"CLIENT", sub)
    assert reply == (
        b"-ERR redis-ambassador does not support 'client': 'client %b' is not supported by the "
        b"ambassador yet\r\n" % sub.lower()
    )


def test_local_and_refused_commands_do_not_overlap() -> None:
    assert not set(LOCAL) & set(REFUSED)
    assert set(LOCAL) == {"ping", "echo", "select", "client", "hello", "readonly", "readwrite",
                          "asking"}  # fmt: skip
