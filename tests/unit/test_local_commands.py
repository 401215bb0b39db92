"""Commands the ambassador answers itself, compared byte for byte with Redis 7.

Every expected reply was observed by hand (raw socket) on redis-server 7.0.15: on a cluster-enabled
node for what only makes sense in a cluster (SELECT n, READONLY, CLUSTER ...), on a standalone
server for HELLO, CLIENT and RESET (the ambassador presents itself as one plain Redis), in RESP2
and RESP3. What only exists from Redis 7.2 (CLIENT SETINFO, NO-TOUCH, lib-name/lib-ver in CLIENT
INFO, RESET clearing NO-EVICT) comes from the Redis source and says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from redis_ambassador.ambassador import lowest_version
from redis_ambassador.commands.local import LOCAL, REFUSED, Hello, parse_hello
from redis_ambassador.commands.state import ServerFacts
from redis_ambassador.protocol.replies import verbatim

ARITY = b"-ERR wrong number of arguments for '%s' command\r\n"
NOT_INTEGER = b"-ERR value is not an integer or out of range\r\n"
NAME_CHARS = b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
SYNTAX = b"-ERR syntax error\r\n"


@dataclass(eq=False)
class Session:
    id: int = 110
    name: bytes = b""
    protocol: int = 2
    lib_name: bytes = b""
    lib_ver: bytes = b""
    no_evict: bool = False
    no_touch: bool = False
    peer: str = "127.0.0.1:50332"
    user: bytes = b"default"
    local_address: tuple[str, int] = ("127.0.0.1", 6379)
    fd: int = 12
    connected_at: float = field(default_factory=time.monotonic)
    last_read: float = field(default_factory=time.monotonic)

    def set_protocol(self, protocol: int) -> None:
        self.protocol = protocol


def server_facts(
    version: bytes = b"7.0.15", clients: tuple[Session, ...] = (), one_server: bool = False
) -> ServerFacts:
    return ServerFacts(version, one_server, lambda: clients)


def run(*args: bytes, session: Session | None = None, facts: ServerFacts | None = None) -> bytes:
    session = session if session is not None else Session()
    facts = facts if facts is not None else server_facts(clients=(session,))
    return LOCAL[args[0].decode().lower()](session, list(args), facts)


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


def test_select_of_another_database_in_front_of_one_server_says_why_without_cluster_mode() -> None:
    facts = server_facts(one_server=True)
    assert run(b"SELECT", b"0", facts=facts) == b"+OK\r\n"
    assert run(b"SELECT", b"1", facts=facts) == (
        b"-ERR redis-ambassador serves database 0 only: its connections to the server are "
        b"shared by every client\r\n"
    )


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
    reply = LOCAL["hello"](session, [b"HELLO", b"2"], server_facts(version=b"7.2.4"))
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


def test_hello_options_are_parsed_in_order_for_the_router_to_apply_like_redis() -> None:
    hello = parse_hello([b"HELLO", b"3", b"AUTH", b"app", b"pw", b"SETNAME", b"n"])
    assert hello == Hello(3, ((b"auth", b"app", b"pw"), (b"setname", b"n")))
    # Redis applies each option as it reads it: what comes before a bad one still applies.
    assert parse_hello([b"HELLO", b"2", b"SETNAME", b"a", b"FOO", b"SETNAME", b"b"]) == Hello(
        2, ((b"setname", b"a"), (b"error", b"-ERR Syntax error in HELLO option 'FOO'\r\n"))
    )
    # The protocol version comes first, as in Redis.
    assert parse_hello([b"HELLO", b"AUTH", b"app", b"pw"]) == (
        b"-ERR Protocol version is not an integer or out of range\r\n"
    )
    # Observed on redis-server 7.0.15: AUTH needs both its arguments.
    assert parse_hello([b"HELLO", b"2", b"AUTH", b"x"]) == Hello(
        2, ((b"error", b"-ERR Syntax error in HELLO option 'AUTH'\r\n"),)
    )
    assert parse_hello([b"HELLO", b"4", b"AUTH", b"default", b"no"]) == (
        b"-NOPROTO unsupported protocol version\r\n"
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


def test_local_and_refused_commands_do_not_overlap() -> None:
    assert not set(LOCAL) & set(REFUSED)
    assert set(LOCAL) == {"ping", "echo", "select", "client", "hello", "readonly", "readwrite",
                          "asking", "reset", "cluster", "role"}  # fmt: skip


def test_role_answers_as_a_master_without_replicas_like_a_fresh_standalone_redis() -> None:
    # Observed on a standalone redis-server 7.0.15 with no replicas.
    assert run(b"ROLE") == b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
    assert run(b"ROLE", b"x") == ARITY % b"role"


# -- CLIENT SETINFO, NO-EVICT, NO-TOUCH, MAINT_NOTIFICATIONS -----------------------------------


def test_client_setinfo_stores_library_name_and_version_and_an_empty_value_clears_it() -> None:
    session = Session()
    assert run(b"CLIENT", b"SETINFO", b"LIB-NAME", b"ioredis", session=session) == b"+OK\r\n"
    assert run(b"CLIENT", b"SETINFO", b"lib-ver", b"5.4.1", session=session) == b"+OK\r\n"
    assert (session.lib_name, session.lib_ver) == (b"ioredis", b"5.4.1")
    # From the 7.2 source (clientSetinfoCommand): a refused value keeps the old one; an empty
    # value clears the attribute.
    assert run(b"CLIENT", b"SETINFO", b"lib-ver", b"5 4", session=session) == (
        b"-ERR lib-ver cannot contain spaces, newlines or special characters.\r\n"
    )
    assert session.lib_ver == b"5.4.1"
    assert run(b"CLIENT", b"SETINFO", b"lib-name", b"", session=session) == b"+OK\r\n"
    assert session.lib_name == b""


# Observed on 7.0.15 for NO-EVICT; NO-TOUCH (7.2) has the same arity (client-no-touch.json: 3)
# and the same shared.syntaxerr reply in the 7.2 source.
@pytest.mark.parametrize("sub", [b"NO-EVICT", b"no-touch"])
def test_client_no_evict_and_no_touch_take_on_or_off_like_redis(sub: bytes) -> None:
    name = b"client|" + sub.lower()
    assert run(b"CLIENT", sub) == ARITY % name
    assert run(b"CLIENT", sub, b"on", b"x") == ARITY % name
    assert run(b"CLIENT", sub, b"maybe") == SYNTAX
    assert run(b"CLIENT", sub, b"") == SYNTAX
    assert run(b"CLIENT", sub, b"ON") == b"+OK\r\n"
    assert run(b"CLIENT", sub, b"off") == b"+OK\r\n"


def test_client_no_evict_and_no_touch_are_stored_on_the_session() -> None:
    session = Session()
    run(b"CLIENT", b"NO-EVICT", b"on", session=session)
    assert (session.no_evict, session.no_touch) == (True, False)
    run(b"CLIENT", b"NO-TOUCH", b"On", session=session)
    assert (session.no_evict, session.no_touch) == (True, True)
    run(b"CLIENT", b"NO-EVICT", b"OFF", session=session)
    assert (session.no_evict, session.no_touch) == (False, True)
    assert run(b"CLIENT", b"NO-TOUCH", b"nope", session=session) == SYNTAX
    assert session.no_touch is True


# Open-source Redis has no MAINT_NOTIFICATIONS (Redis Cloud and Software answer it): the forms
# accepted are the ones node-redis and redis-py send; the errors are the ambassador's own, in
# Redis's generic words.
@pytest.mark.parametrize(
    "args",
    [
        (b"ON",),
        (b"on", b"moving-endpoint-type", b"internal-ip"),
        (b"ON", b"moving-endpoint-type", b"external-fqdn"),
        (b"ON", b"MOVING-ENDPOINT-TYPE", b"none"),
        (b"OFF",),
    ],
)
def test_client_maint_notifications_is_accepted_as_node_redis_and_redis_py_send_it(
    args: tuple[bytes, ...],
) -> None:
    assert run(b"CLIENT", b"MAINT_NOTIFICATIONS", *args) == b"+OK\r\n"


@pytest.mark.parametrize(
    ("args", "reply"),
    [
        ((), ARITY % b"client|maint_notifications"),
        ((b"maybe",), SYNTAX),
        ((b"ON", b"moving-endpoint-type"), SYNTAX),
        ((b"ON", b"moving-endpoint-type", b"somewhere"), SYNTAX),
        ((b"ON", b"other-option", b"none"), SYNTAX),
    ],
)
def test_client_maint_notifications_with_bad_arguments_is_an_error(
    args: tuple[bytes, ...], reply: bytes
) -> None:
    assert run(b"CLIENT", b"MAINT_NOTIFICATIONS", *args) == reply


# -- CLIENT INFO and CLIENT LIST ------------------------------------------------------------------

# CLIENT INFO as redis-server 7.0.15 (standalone) sent it, before and after HELLO 3.
OBSERVED_INFO_LINE = (
    b"id=3 addr=127.0.0.1:50332 laddr=127.0.0.1:17001 fd=8 name= age=2 idle=0 flags=e db=0 sub=0 "
    b"psub=0 ssub=0 multi=-1 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=1024 rbp=145 "
    b"obl=0 oll=0 omem=0 tot-mem=22298 events=r cmd=client|info user=default redir=-1 resp=2\n"
)
OBSERVED_INFO_RESP2 = b"$266\r\n" + OBSERVED_INFO_LINE + b"\r\n"
OBSERVED_INFO_RESP3 = (
    b"=270\r\ntxt:id=5 addr=127.0.0.1:34996 laddr=127.0.0.1:17001 fd=8 name= age=1 idle=0 "
    b"flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 "
    b"rbs=1024 rbp=145 obl=0 oll=0 omem=0 tot-mem=22298 events=r cmd=client|info user=default "
    b"redir=-1 resp=3\n\r\n"
)


def _fields(line: bytes) -> list[bytes]:
    return [item.split(b"=", 1)[0] for item in line.split()]


def test_client_info_has_redis_7_2_fields_in_redis_order() -> None:
    reply = run(b"CLIENT", b"INFO")
    line = reply[reply.index(b"\r\n") + 2 : -2]
    # Redis 7.2 appends lib-name and lib-ver after resp (catClientInfoString; the CLIENT LIST
    # history: "7.2.0: Added lib-name and lib-ver fields").
    assert _fields(line) == [*_fields(OBSERVED_INFO_LINE), b"lib-name", b"lib-ver"]
    assert line.endswith(b"\n") and line.count(b"\n") == 1


def test_verbatim_frames_text_exactly_as_redis_frames_client_info() -> None:
    assert verbatim(OBSERVED_INFO_LINE, 2) == OBSERVED_INFO_RESP2
    resp3_line = OBSERVED_INFO_RESP3[len(b"=270\r\ntxt:") : -2]
    assert verbatim(resp3_line, 3) == OBSERVED_INFO_RESP3


def test_client_info_is_a_bulk_string_in_resp2_and_a_verbatim_string_in_resp3() -> None:
    session = Session(id=3)
    resp2 = run(b"CLIENT", b"INFO", session=session)
    line = resp2[resp2.index(b"\r\n") + 2 : -2]
    assert resp2 == verbatim(line, 2)
    session.set_protocol(3)
    assert run(b"CLIENT", b"INFO", session=session) == verbatim(
        line.replace(b" resp=2 ", b" resp=3 "), 3
    )


def test_client_info_shows_what_the_ambassador_knows_about_the_client() -> None:
    session = Session(
        id=42,
        name=b"worker-1",
        peer="10.0.0.7:51234",
        local_address=("10.0.0.1", 6379),
        fd=17,
        lib_name=b"redis-py",
        lib_ver=b"8.1.0",
        no_evict=True,
        no_touch=True,
        connected_at=time.monotonic() - 75.2,
        last_read=time.monotonic() - 12.5,  # as CLIENT LIST by another client sees it
    )
    session.set_protocol(3)
    line = (
        b"id=42 addr=10.0.0.7:51234 laddr=10.0.0.1:6379 fd=17 name=worker-1 age=75 idle=12 "
        b"flags=eT db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 "
        b"rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client|info user=default "
        b"redir=-1 resp=3 lib-name=redis-py lib-ver=8.1.0\n"
    )
    assert run(b"CLIENT", b"INFO", session=session) == b"=%d\r\ntxt:%b\r\n" % (len(line) + 4, line)


def test_client_info_writes_ipv6_addresses_in_brackets_like_redis() -> None:
    session = Session(peer="::1:40000", local_address=("::1", 6379))
    assert b" addr=[::1]:40000 laddr=[::1]:6379 " in run(b"CLIENT", b"INFO", session=session)


def test_client_info_flags_are_n_without_modes() -> None:
    assert b" flags=N " in run(b"CLIENT", b"INFO")
    assert b" flags=e " in run(b"CLIENT", b"INFO", session=Session(no_evict=True))
    assert b" flags=T " in run(b"CLIENT", b"INFO", session=Session(no_touch=True))


def test_client_info_with_arguments_is_an_arity_error() -> None:
    assert run(b"CLIENT", b"INFO", b"x") == ARITY % b"client|info"  # observed on 7.0.15


def _list_ids(reply: bytes) -> list[int]:
    body = reply[reply.index(b"\r\n") + 2 : -2].removeprefix(b"txt:")
    return [int(line.split()[0].removeprefix(b"id=")) for line in body.splitlines()]


def test_client_list_lists_every_client_of_the_ambassador_by_id() -> None:
    me, other, third = Session(id=7), Session(id=3, name=b"bg"), Session(id=12)
    facts = server_facts(clients=(me, other, third))
    reply = run(b"CLIENT", b"LIST", session=me, facts=facts)
    assert _list_ids(reply) == [3, 7, 12]
    lines = reply[reply.index(b"\r\n") + 2 : -2].split(b"\n")
    assert lines[-1] == b""  # every line ends with \n, as in Redis
    assert b" name=bg " in lines[0] and b" cmd=NULL " in lines[0]
    assert b" cmd=client|list " in lines[1]
    assert run(b"CLIENT", b"list", b"TYPE", b"normal", session=me, facts=facts) == reply


def test_client_list_filters_by_id_in_the_order_asked() -> None:
    me, other = Session(id=7), Session(id=3)
    facts = server_facts(clients=(me, other))
    reply = run(b"CLIENT", b"LIST", b"ID", b"7", b"99", b"3", b"7", session=me, facts=facts)
    assert _list_ids(reply) == [7, 3, 7]


# Observed on 7.0.15 (standalone), RESP2 unless said.
@pytest.mark.parametrize(
    ("args", "reply"),
    [
        ((b"TYPE", b"pubsub"), b"$0\r\n\r\n"),
        ((b"TYPE", b"REPLICA"), b"$0\r\n\r\n"),
        ((b"TYPE", b"master"), b"$0\r\n\r\n"),
        ((b"TYPE", b"slave"), b"$0\r\n\r\n"),
        ((b"ID", b"99999"), b"$0\r\n\r\n"),
        ((b"ID", b"0", b"-1"), b"$0\r\n\r\n"),
        ((b"TYPE", b"foo"), b"-ERR Unknown client type 'foo'\r\n"),
        ((b"foo",), SYNTAX),
        ((b"ID",), SYNTAX),
        ((b"TYPE",), SYNTAX),
        ((b"TYPE", b"normal", b"x"), SYNTAX),
        ((b"ID", b"abc"), b"-ERR Invalid client ID\r\n"),
        ((b"ID", b"110", b"x"), b"-ERR Invalid client ID\r\n"),
        ((b"ID", b"01"), b"-ERR Invalid client ID\r\n"),
    ],
)
def test_client_list_filters_and_errors_match_redis(args: tuple[bytes, ...], reply: bytes) -> None:
    assert run(b"CLIENT", b"LIST", *args) == reply


def test_client_list_with_nothing_to_show_is_an_empty_verbatim_string_in_resp3() -> None:
    session = Session(protocol=3)
    assert run(b"CLIENT", b"LIST", b"TYPE", b"pubsub", session=session) == b"=4\r\ntxt:\r\n"


# -- CLIENT HELP and refused subcommands ---------------------------------------------------------


def test_client_help_is_an_array_of_simple_strings_framed_like_redis() -> None:
    reply = run(b"CLIENT", b"HELP")
    count, _, body = reply.partition(b"\r\n")
    lines = body.split(b"\r\n")[:-1]
    assert count == b"*%d" % len(lines)
    assert all(line.startswith(b"+") for line in lines)
    # First and last lines as 7.0.15 sends them.
    assert lines[0] == b"+CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == [b"+HELP", b"+    Prints this help."]
    for sub in [
        b"+INFO",
        b"+LIST [options ...]",
        b"+SETINFO <option> <value>",
        b"+NO-EVICT (ON|OFF)",
    ]:
        assert sub in lines
    assert run(b"CLIENT", b"HELP", b"x") == ARITY % b"client|help"  # observed on 7.0.15


@pytest.mark.parametrize("sub", [b"TRACKING", b"caching", b"GETREDIR", b"trackinginfo"])
def test_client_tracking_is_refused_because_invalidations_need_private_connections(
    sub: bytes,
) -> None:
    assert run(b"CLIENT", sub, b"on") == (
        b"-ERR redis-ambassador does not support 'client %b': client-side caching needs "
        b"invalidation messages about this client's keys alone, which cannot be made correct "
        b"over node connections shared by many clients\r\n" % sub.lower()
    )


@pytest.mark.parametrize(
    ("sub", "reason"),
    [
        (b"KILL", b"closing other clients' connections is not supported by the ambassador yet"),
        (b"Pause", b"pausing clients is not supported by the ambassador yet"),
        (b"unpause", b"pausing clients is not supported by the ambassador yet"),
        (b"UNBLOCK", b"unblocking another client's command is not supported by the ambassador "
                     b"yet"),
    ],
)  # fmt: skip
def test_client_subcommands_that_act_beyond_the_session_are_refused_with_reason(
    sub: bytes, reason: bytes
) -> None:
    assert run(b"CLIENT", sub, b"x") == (
        b"-ERR redis-ambassador does not support 'client %b': %b\r\n" % (sub.lower(), reason)
    )


# -- RESET ----------------------------------------------------------------------------------------


def test_reset_answers_reset_like_redis() -> None:
    assert run(b"RESET") == b"+RESET\r\n"  # observed on 7.0.15, in RESP2 and RESP3
    assert run(b"RESET", session=Session(protocol=3)) == b"+RESET\r\n"
    assert run(b"reset", b"x") == ARITY % b"reset"


def test_reset_clears_name_protocol_and_modes_but_keeps_library_info() -> None:
    session = Session(name=b"app", lib_name=b"ioredis", lib_ver=b"5.4.1")
    run(b"HELLO", b"3", session=session)
    run(b"CLIENT", b"NO-EVICT", b"on", session=session)
    run(b"CLIENT", b"NO-TOUCH", b"on", session=session)
    assert run(b"RESET", session=session) == b"+RESET\r\n"
    # Name and protocol observed on 7.0.15; NO-EVICT/NO-TOUCH cleared and lib info kept as in the
    # 7.2 source (clearClientConnectionState: "lib_name and lib_ver are not reset since they
    # still represent the client library behind the connection").
    assert (session.name, session.protocol, session.no_evict, session.no_touch) == (
        b"",
        2,
        False,
        False,
    )
    assert (session.lib_name, session.lib_ver) == (b"ioredis", b"5.4.1")
    assert run(b"CLIENT", b"GETNAME", session=session) == b"$-1\r\n"


# -- CLUSTER: the ambassador as one node owning every slot ----------------------------------------

# A one-node cluster (redis-server 7.0.15, all slots added to it), RESP2 and RESP3. That node had
# never met another, so it showed an empty ip; the ip below is how nodes of a formed cluster
# show theirs (observed on a 3-master cluster: `$9\r\n127.0.0.1\r\n` in SLOTS and SHARDS).
OBSERVED_CLUSTER_INFO = (
    b"cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n"
    b"cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\n"
    b"cluster_current_epoch:0\r\ncluster_my_epoch:0\r\ncluster_stats_messages_sent:0\r\n"
    b"cluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n"
)
ADDRESS = ("127.0.0.1", 6379)


def cluster_slots_reply(node_id: bytes, protocol: int) -> bytes:
    meta = b"*0\r\n" if protocol == 2 else b"%0\r\n"
    return b"*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6379\r\n$40\r\n%b\r\n%b" % (
        node_id,
        meta,
    )


def cluster_shards_reply(node_id: bytes, protocol: int) -> bytes:
    shard, node = (b"*4", b"*14") if protocol == 2 else (b"%2", b"%7")
    return (
        b"*1\r\n%b\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n%b\r\n"
        b"$2\r\nid\r\n$40\r\n%b\r\n$4\r\nport\r\n:6379\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
        b"$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
        b"$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
        % (shard, node, node_id)
    )


def my_id() -> bytes:
    reply = run(b"CLUSTER", b"MYID")
    assert reply.startswith(b"$40\r\n") and reply.endswith(b"\r\n")
    node_id = reply[5:-2]
    assert len(node_id) == 40 and all(c in b"0123456789abcdef" for c in node_id)
    return node_id


def test_cluster_myid_is_a_stable_40_hex_node_id() -> None:
    assert my_id() == my_id()


def test_cluster_myshardid_is_another_40_hex_id() -> None:
    reply = run(b"CLUSTER", b"MYSHARDID")
    assert reply.startswith(b"$40\r\n") and reply[5:-2] != my_id()
    assert all(c in b"0123456789abcdef" for c in reply[5:-2])


@pytest.mark.parametrize("protocol", [2, 3])
def test_cluster_info_is_a_healthy_one_node_cluster(protocol: int) -> None:
    session = Session(protocol=protocol)
    expected = (
        b"$%d\r\n%b\r\n" % (len(OBSERVED_CLUSTER_INFO), OBSERVED_CLUSTER_INFO)
        if protocol == 2
        else b"=%d\r\ntxt:%b\r\n" % (len(OBSERVED_CLUSTER_INFO) + 4, OBSERVED_CLUSTER_INFO)
    )
    assert expected[:6] == (b"$312\r\n" if protocol == 2 else b"=316\r\n")  # as observed
    assert run(b"CLUSTER", b"INFO", session=session) == expected


@pytest.mark.parametrize("protocol", [2, 3])
def test_cluster_slots_gives_every_slot_to_the_address_the_client_dialed(protocol: int) -> None:
    session = Session(protocol=protocol, local_address=ADDRESS)
    assert run(b"CLUSTER", b"SLOTS", session=session) == cluster_slots_reply(my_id(), protocol)


@pytest.mark.parametrize("protocol", [2, 3])
def test_cluster_shards_is_one_shard_with_this_node_as_master(protocol: int) -> None:
    session = Session(protocol=protocol, local_address=ADDRESS)
    assert run(b"CLUSTER", b"SHARDS", session=session) == cluster_shards_reply(my_id(), protocol)


@pytest.mark.parametrize("protocol", [2, 3])
def test_cluster_nodes_is_one_line_for_myself_as_master_of_all_slots(protocol: int) -> None:
    # Observed: "<id> :17002@27002 myself,master - 0 0 0 connected 0-16383\n" (empty ip); ours
    # shows the dialed address and bus port 0 (the ambassador has no cluster bus).
    line = b"%b 127.0.0.1:6379@0 myself,master - 0 0 0 connected 0-16383\n" % my_id()
    session = Session(protocol=protocol, local_address=ADDRESS)
    assert run(b"CLUSTER", b"NODES", session=session) == verbatim(line, protocol)


def test_cluster_replies_use_each_clients_own_local_address() -> None:
    session = Session(local_address=("10.1.2.3", 7000))
    assert b"$8\r\n10.1.2.3\r\n:7000\r\n" in run(b"CLUSTER", b"SLOTS", session=session)
    assert b" 10.1.2.3:7000@0 " in run(b"CLUSTER", b"NODES", session=session)


# Observed on the one-node cluster (7.0.15).
@pytest.mark.parametrize(
    ("args", "reply"),
    [
        ((b"KEYSLOT", b"foo"), b":12182\r\n"),
        ((b"keyslot", b"{a}b"), b":15495\r\n"),
        ((b"LINKS",), b"*0\r\n"),
        ((b"SLAVES", b"x"), b"-ERR Unknown node x\r\n"),
        ((b"COUNT-FAILURE-REPORTS", b"x"), b"-ERR Unknown node x\r\n"),
        ((), ARITY % b"cluster"),
        ((b"foo",), b"-ERR unknown subcommand 'foo'. Try CLUSTER HELP.\r\n"),
        ((b"MYID", b"x"), ARITY % b"cluster|myid"),
        ((b"INFO", b"x"), ARITY % b"cluster|info"),
        ((b"SHARDS", b"x"), ARITY % b"cluster|shards"),
        ((b"KEYSLOT",), ARITY % b"cluster|keyslot"),
        ((b"KEYSLOT", b"a", b"b"), ARITY % b"cluster|keyslot"),
        ((b"REPLICAS",), ARITY % b"cluster|replicas"),
        ((b"HELP", b"x"), ARITY % b"cluster|help"),
    ],
)
def test_cluster_subcommand_replies_match_a_one_node_cluster(
    args: tuple[bytes, ...], reply: bytes
) -> None:
    assert run(b"CLUSTER", *args) == reply


def test_cluster_replicas_and_failure_reports_of_this_node_are_empty() -> None:
    node_id = my_id()
    assert run(b"CLUSTER", b"REPLICAS", node_id) == b"*0\r\n"  # observed for the node's own id
    assert run(b"CLUSTER", b"SLAVES", node_id) == b"*0\r\n"
    assert run(b"CLUSTER", b"COUNT-FAILURE-REPORTS", node_id) == b":0\r\n"


def test_cluster_help_is_an_array_of_simple_strings_framed_like_redis() -> None:
    reply = run(b"CLUSTER", b"HELP")
    count, _, body = reply.partition(b"\r\n")
    lines = body.split(b"\r\n")[:-1]
    assert count == b"*%d" % len(lines)
    assert lines[0] == b"+CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == [b"+HELP", b"+    Prints this help."]
    assert (
        b"+SLOTS" in lines and b"+SHARDS" in lines and b"+ADDSLOTS <slot> [<slot> ...]" not in lines
    )


@pytest.mark.parametrize(
    "sub", [b"ADDSLOTS", b"meet", b"FAILOVER", b"forget", b"RESET", b"setslot", b"REPLICATE"]
)
def test_cluster_subcommands_that_change_the_cluster_are_refused(sub: bytes) -> None:
    assert run(b"CLUSTER", sub, b"1") == (
        b"-ERR redis-ambassador does not support 'cluster %b': the ambassador presents the "
        b"cluster as one node; change the cluster on its own nodes\r\n" % sub.lower()
    )


@pytest.mark.parametrize("args", [(b"COUNTKEYSINSLOT", b"5"), (b"getkeysinslot", b"5", b"10")])
def test_cluster_keys_by_slot_number_are_refused_for_now(args: tuple[bytes, ...]) -> None:
    assert run(b"CLUSTER", *args) == (
        b"-ERR redis-ambassador does not support 'cluster %b': commands addressed to a slot "
        b"number are not routed by the ambassador yet\r\n" % args[0].lower()
    )


# -- HELLO's version: the lowest among the nodes ---------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "lowest"),
    [
        ([b"7.0.15"], b"7.0.15"),
        ([b"7.2.4", b"7.0.15", b"7.2.4"], b"7.0.15"),
        ([b"7.10.0", b"7.9.2"], b"7.9.2"),  # numeric, not text, comparison
        ([b"7.2.10", b"7.2.9"], b"7.2.9"),
        ([b"8.0.0", b"7.4.2", b"7.4.10"], b"7.4.2"),
        ([], b"0.0.0"),
    ],
)
def test_lowest_version_compares_numerically(versions: list[bytes], lowest: bytes) -> None:
    assert lowest_version(versions) == lowest
