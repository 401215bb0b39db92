"""The router (routing/router.py) over three fake masters: where each command goes, what the
ambassador answers itself, and Redis's own checks in Redis's order. Node connections are fed
bytes; nothing listens on a socket."""

from __future__ import annotations

import re

import pytest
from fakes import KEY_ON, MASTERS, Cluster, array, build_cluster, bulk, command_table

from redis_ambassador.commands.table import CommandSpec, CommandTable
from redis_ambassador.faults.rules import Faults
from redis_ambassador.upstream.connection import NodeConnection

NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
OK = b"+OK\r\n"
# Clients must AUTH with the password "s3cret" first.
LOCKED = {"server.client_auth": "password", "server.requirepass": "s3cret"}
# Keys on the first, second and third master.
B, C, A = KEY_ON


@pytest.fixture
def cluster() -> Cluster:
    return build_cluster()


@pytest.fixture
def locked() -> Cluster:
    return build_cluster(LOCKED)


# -- the fast path and splitting -----------------------------------------------------------------


def test_a_get_is_queued_on_the_owners_connection_for_the_clients_lane_and_answered(
    cluster: Cluster,
) -> None:
    client = cluster.client(client_id=3)  # lane 3 % pool_size 2 = 1
    batch = client.send(cluster.router, [b"GET", A])
    assert cluster.written(cluster.lane(A, 1)) == [[b"GET", A]]
    assert cluster.sent_anywhere() == [[b"GET", A]]  # not on lane 0, nor on another node
    assert batch.replies == [None] and client.completed == 0
    cluster.answer(cluster.lane(A, 1), bulk(b"v"))
    assert batch.replies == [bulk(b"v")] and client.completed == 1


def test_an_mget_across_slots_is_split_by_node_and_merged_in_the_order_asked(
    cluster: Cluster,
) -> None:
    client = cluster.client(client_id=2)
    batch = client.send(cluster.router, [b"MGET", A, B, C])
    for key in (A, B, C):
        assert cluster.written(cluster.lane(key)) == [[b"MGET", key]]
    # The nodes answer out of order; the merged reply keeps the keys' order.
    for key in (C, A, B):
        assert batch.replies == [None]
        cluster.answer(cluster.lane(key), array(bulk(key.upper())))
    assert batch.replies == [array(bulk(b"A"), bulk(b"B"), bulk(b"C"))]
    assert client.completed == 1


def test_a_multi_key_command_that_may_not_be_split_gets_crossslot(cluster: Cluster) -> None:
    batch = cluster.client().send(cluster.router, [b"SINTERSTORE", A, B, C])
    assert batch.replies == [b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"]
    assert cluster.sent_anywhere() == []


# -- Redis's checks, in Redis's order -------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "command", "reply"),
    [
        pytest.param(
            {},
            [b"FOO", b"bar", b"baz"],
            b"-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n",
            id="unknown command",
        ),
        pytest.param(
            {},
            [b"OBJECT", b"FOO", A],
            b"-ERR unknown subcommand 'FOO'. Try OBJECT HELP.\r\n",
            id="unknown subcommand",
        ),
        pytest.param(
            # Keys in two slots, but the arity is checked first.
            {},
            [b"RENAME", A, B, b"extra"],
            b"-ERR wrong number of arguments for 'rename' command\r\n",
            id="arity before CROSSSLOT",
        ),
        pytest.param(
            {},
            [b"FLUSHALL"],
            b"-NOPERM redis-ambassador's command policy denies 'flushall' (commands.deny); "
            b"to allow it, add 'flushall' to commands.allow\r\n",
            id="policy",
        ),
        # What an unauthenticated client gets, as observed on redis-server 7.0.15 with
        # requirepass: unknown command and arity come before NOAUTH; the sign-in commands, QUIT
        # and RESET are answered.
        pytest.param(LOCKED, [b"GET", A], NOAUTH, id="NOAUTH"),
        pytest.param(
            LOCKED,
            [b"FOO"],
            b"-ERR unknown command 'FOO', with args beginning with: \r\n",
            id="unknown command before NOAUTH",
        ),
        pytest.param(
            LOCKED,
            [b"GET"],
            b"-ERR wrong number of arguments for 'get' command\r\n",
            id="arity before NOAUTH",
        ),
        pytest.param(
            LOCKED,
            [b"EXEC"],
            b"-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n",
            id="EXEC without AUTH",
        ),
        pytest.param(LOCKED, [b"AUTH", b"guess"], WRONGPASS, id="AUTH without AUTH"),
        pytest.param(LOCKED, [b"QUIT"], OK, id="QUIT without AUTH"),
        pytest.param(LOCKED, [b"RESET"], b"+RESET\r\n", id="RESET without AUTH"),
    ],
)
def test_what_redis_answers_before_running_a_command_is_answered_here(
    overrides: dict[str, str], command: list[bytes], reply: bytes
) -> None:
    cluster = build_cluster(overrides)
    batch = cluster.client().send(cluster.router, command)
    assert batch.replies == [reply]
    assert cluster.sent_anywhere() == []


def test_hello_with_auth_signs_in_and_what_follows_reaches_the_node(locked: Cluster) -> None:
    client = locked.client(client_id=2)
    batch = client.send(
        locked.router, [b"HELLO", b"3", b"AUTH", b"default", b"s3cret"], [b"GET", A]
    )
    assert batch.replies[0] is not None and batch.replies[0].startswith(b"%7\r\n$6\r\nserver")
    # The GET travels the RESP3 lane of the client's (pool_size 2: lanes 2 and 3).
    assert client.session.protocol == 3 and client.session.lane == 2
    resp3 = locked.pool(A).conns[2]
    assert locked.dial.waiting == [resp3]  # opened on first use
    locked.dial.accept(resp3)
    assert locked.written(resp3) == [[b"HELLO", b"3"], [b"GET", A]]


def test_a_resp2_subscribed_client_may_only_run_pubsub_commands(cluster: Cluster) -> None:
    client = cluster.client()
    subscribed = client.send(cluster.router, [b"SUBSCRIBE", b"news"])
    [(subscriber, address)] = cluster.dial.dialed[-1:]
    assert address == MASTERS[0]  # where classic subscriptions (and PUBLISH) go
    cluster.dial.accept(subscriber)
    subscriber.data_received(array(bulk(b"subscribe"), bulk(b"news"), b":1\r\n"))
    assert subscribed.replies == [array(bulk(b"subscribe"), bulk(b"news"), b":1\r\n")]

    refused = client.send(cluster.router, [b"GET", A], [b"PING"])
    assert refused.replies[0] == (
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
        b"RESET are allowed in this context\r\n"
    )
    # PING is the node's to answer, in its subscribed form, on the subscriber connection.
    assert cluster.dial.written(subscriber)[-1] == [b"PING"]
    assert cluster.sent_anywhere() == [[b"SUBSCRIBE", b"news"], [b"PING"]]


# -- transactions ---------------------------------------------------------------------------------


def test_multi_queues_here_and_exec_sends_the_block_in_one_write_on_one_connection(
    cluster: Cluster,
) -> None:
    client = cluster.client(client_id=2)
    router = cluster.router
    queued = [client.send(router, command).replies for command in
              ([b"MULTI"], [b"SET", A, b"1"], [b"INCR", A])]  # fmt: skip
    assert queued == [[OK], [b"+QUEUED\r\n"], [b"+QUEUED\r\n"]]
    assert cluster.sent_anywhere() == []

    executed = client.send(router, [b"EXEC"])
    conn = cluster.lane(A)
    assert cluster.written(conn) == [[b"MULTI"], [b"SET", A, b"1"], [b"INCR", A], [b"EXEC"]]
    assert len(cluster.dial.transports[conn].written) == 1  # nothing can land inside
    cluster.answer(conn, OK, b"+QUEUED\r\n", b"+QUEUED\r\n", array(OK, b":2\r\n"))
    assert executed.replies == [array(OK, b":2\r\n")]  # only EXEC's reply is the client's
    assert client.session.transaction is None


def test_under_refuse_a_command_queued_across_slots_makes_exec_abort_sending_nothing() -> None:
    cluster = build_cluster({"commands.cross_slot_transactions": "refuse"})
    client = cluster.client()
    replies = [
        client.send(cluster.router, command).replies[0]
        for command in ([b"MULTI"], [b"SET", A, b"1"], [b"SET", B, b"1"], [b"EXEC"])
    ]
    assert replies == [
        OK,
        b"+QUEUED\r\n",
        b"-CROSSSLOT Keys in request don't hash to the same slot "
        b"(commands.cross_slot_transactions = refuse)\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    ]
    assert cluster.sent_anywhere() == []


def test_per_node_runs_one_block_per_node_one_after_another_and_answers_in_queued_order(
    cluster: Cluster,
) -> None:
    client = cluster.client(client_id=2)
    router = cluster.router
    for command in ([b"MULTI"], [b"SET", A, b"1"], [b"INCR", B], [b"GET", A], [b"CLIENT", b"ID"]):
        assert client.send(router, command).replies[0] in (OK, b"+QUEUED\r\n")
    executed = client.send(router, [b"EXEC"])
    first, second = cluster.lane(A), cluster.lane(B)
    assert cluster.written(first) == [[b"MULTI"], [b"SET", A, b"1"], [b"GET", A], [b"EXEC"]]
    assert cluster.written(second) == []  # the next part waits for the first one's EXEC
    cluster.answer(first, OK, b"+QUEUED\r\n", b"+QUEUED\r\n", array(OK, b"$1\r\n1\r\n"))
    assert cluster.written(second) == [[b"MULTI"], [b"INCR", B], [b"EXEC"]]
    assert executed.replies == [None]
    cluster.answer(second, OK, b"+QUEUED\r\n", array(b":7\r\n"))
    assert executed.replies == [array(OK, b":7\r\n", b"$1\r\n1\r\n", b":2\r\n")]


def test_per_node_a_first_part_refused_is_the_whole_reply_and_nothing_else_runs(
    cluster: Cluster,
) -> None:
    client = cluster.client(client_id=2)
    for command in ([b"MULTI"], [b"SET", A, b"1"], [b"INCR", B]):
        client.send(cluster.router, command)
    executed = client.send(cluster.router, [b"EXEC"])
    refused = b"-EXECABORT Transaction discarded because of: OOM command not allowed\r\n"
    cluster.answer(cluster.lane(A), OK, b"-OOM command not allowed\r\n", refused)
    assert executed.replies == [refused]
    assert cluster.written(cluster.lane(B)) == []


def test_per_node_a_later_part_failing_leaves_the_first_applied_and_says_so(
    cluster: Cluster,
) -> None:
    client = cluster.client(client_id=2)
    for command in ([b"MULTI"], [b"INCR", A], [b"INCR", B]):
        client.send(cluster.router, command)
    executed = client.send(cluster.router, [b"EXEC"])
    cluster.answer(cluster.lane(A), OK, b"+QUEUED\r\n", array(b":1\r\n"))
    second = cluster.lane(B)
    cluster.written(second)
    second.connection_lost(ConnectionResetError())
    [reply] = executed.replies
    assert reply is not None and reply.startswith(b"*2\r\n:1\r\n-ERR redis-ambassador: ")
    assert b"the parts before it were applied" in reply


# -- what the router does for the client itself ---------------------------------------------------


@pytest.mark.parametrize("name", [b"POST", b"Host:"])
def test_an_http_request_closes_the_client_and_nothing_it_sent_after_runs(
    cluster: Cluster, name: bytes
) -> None:
    client = cluster.client()
    batch = client.send(cluster.router, [name, b"/"], [b"SET", A, b"1"], [b"PING"])
    assert client.attacks == [name]
    assert batch.replies == [None]  # cut after the request: nothing more is owed
    assert cluster.sent_anywhere() == []


def test_a_connection_state_command_without_a_handler_is_refused_not_forwarded() -> None:
    """A newer Redis's @connection command would change a connection every client shares: the
    router refuses it (the same command outside @connection goes to a node)."""
    base = command_table().specs()

    def table(categories: frozenset[str]) -> CommandTable:
        mood = CommandSpec("setmood", 2, frozenset(["fast"]), categories=categories)
        return CommandTable([*base, mood])

    cluster = build_cluster(table=table(frozenset(["@connection", "@fast"])))
    batch = cluster.client().send(cluster.router, [b"SETMOOD", b"happy"])
    assert batch.replies == [
        b"-ERR redis-ambassador does not support 'setmood': it would change the state of a "
        b"node connection shared by every client, and the ambassador does not emulate it\r\n"
    ]
    assert cluster.sent_anywhere() == []

    plain = build_cluster(table=table(frozenset(["@fast"])))
    plain.client().send(plain.router, [b"SETMOOD", b"happy"])
    assert plain.sent_anywhere() == [[b"SETMOOD", b"happy"]]


def test_a_blocking_command_gets_a_connection_of_its_own_and_holds_what_follows(
    cluster: Cluster,
) -> None:
    client = cluster.client()
    batch = client.send(cluster.router, [b"BLPOP", A, b"0"], [b"GET", B])
    [(own, address)] = cluster.dial.dialed[-1:]
    assert isinstance(own, NodeConnection) and own.private and address == MASTERS[2]
    assert client.holds == [(1, [[b"GET", B]])]
    assert batch.read_at == 0.0  # it may block as long as it says: never a slow request
    cluster.dial.accept(own)
    assert cluster.sent_anywhere() == [[b"BLPOP", A, b"0"]]  # the GET waits, the lanes are free
    own.data_received(b"*-1\r\n")
    assert batch.replies == [b"*-1\r\n"]


@pytest.mark.parametrize(
    ("command", "where"),
    [
        pytest.param([b"XREAD", b"STREAMS", A, b"0"], "lane", id="XREAD without BLOCK"),
        pytest.param([b"XREAD", b"BLOCK", b"0", b"STREAMS", A, b"0"], "own", id="XREAD BLOCK"),
        pytest.param([b"PUBLISH", A, b"hi"], "first master", id="PUBLISH"),
        pytest.param([b"PING"], "here", id="PING"),
        pytest.param([b"SHUTDOWN"], "refused", id="SHUTDOWN"),
    ],
)
def test_each_family_sends_its_commands_where_they_belong(
    cluster: Cluster, command: list[bytes], where: str
) -> None:
    batch = cluster.client(client_id=2).send(cluster.router, command)
    sent = cluster.sent_anywhere()
    if where == "lane":
        assert cluster.written(cluster.lane(A)) == [command]
    elif where == "own":
        assert [(c.private, a) for c, a in cluster.dial.dialed[-1:]] == [(True, MASTERS[2])]
    elif where == "first master":  # whatever the channel: the subscribers' node counts them
        assert cluster.written(cluster.pool(B).conns[0]) == [command]
    elif where == "here":
        assert (batch.replies, sent) == ([b"+PONG\r\n"], [])
    else:
        assert batch.replies[0] is not None and batch.replies[0].startswith(
            b"-ERR redis-ambassador does not support 'shutdown': it would act on one node"
        )
        assert sent == []


def test_dbsize_goes_to_every_master_and_the_counts_are_summed(cluster: Cluster) -> None:
    batch = cluster.client(client_id=2).send(cluster.router, [b"DBSIZE"])
    for n, key in enumerate(KEY_ON, start=1):
        assert cluster.written(cluster.lane(key)) == [[b"DBSIZE"]]
        cluster.answer(cluster.lane(key), b":%d\r\n" % n)
    assert batch.replies == [b":6\r\n"]


def test_a_monitoring_client_is_pushed_each_command_with_where_it_went(cluster: Cluster) -> None:
    watcher = cluster.client()
    assert watcher.send(cluster.router, [b"MONITOR"]).replies == [OK]
    other = cluster.client(client_id=2)
    other.send(cluster.router, [b"GET", A], [b"PING"])
    assert cluster.sent_anywhere() == [[b"GET", A]]  # still routed (on the slow path)
    lines = rb"^\+\d+\.\d{6} \[0 127\.0\.0\.1:50000\] %s \((.+)\)\r\n$"
    [get, ping] = watcher.pushes
    assert re.match(lines % rb'"GET" "a"', get).group(1) == b"node 127.0.0.1:7002"  # type: ignore[union-attr]
    assert re.match(lines % rb'"PING"', ping).group(1) == b"ambassador"  # type: ignore[union-attr]


def test_a_command_a_fault_rule_concerns_leaves_the_fast_path_for_the_rule_to_act() -> None:
    faults = Faults(7, clock=lambda: 0.0)
    cluster = build_cluster(faults=faults)
    faults.add({"command": "get", "error": "LOADING Redis is loading"})
    assert b"GET" not in cluster.router.stats.fast_commands  # the rules are asked for it
    batch = cluster.client().send(cluster.router, [b"GET", A], [b"SET", A, b"1"])
    assert batch.replies == [b"-LOADING Redis is loading\r\n", None]
    assert cluster.sent_anywhere() == [[b"SET", A, b"1"]]  # the GET never reaches its node
    faults.clear()
    assert b"GET" in cluster.router.stats.fast_commands
