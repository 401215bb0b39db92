"""Node pools and their Upstream (upstream/pool.py) over a fake dialer and a fake clock: lanes
opened on first use and reopened on demand, one write per connection per loop turn, what counts
against a node's circuit breaker, chaos partitions, and rotated credentials."""

from __future__ import annotations

import pytest
from fakes import MASTERS, Batch, FakeClient, FakeDial, FakeScheduler, config, frames_in

from redis_ambassador.protocol.requests import encode_command
from redis_ambassador.routing.pubsub import Placement, Subscriptions
from redis_ambassador.upstream.breaker import State
from redis_ambassador.upstream.connection import UNOPENED, Entry, NodeConnection
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.pool import Upstream

NODE = MASTERS[0]
GET = encode_command([b"GET", b"k"])


class Nodes:
    """An Upstream (pool_size 2, a breaker opening after ``failures`` in a row) with what it
    reports to the router recorded."""

    def __init__(self, credentials: Credentials | None = None, failures: int = 3) -> None:
        self.scheduler = FakeScheduler()
        self.dial = FakeDial(self.scheduler)
        settings = config({"upstream.pool_size": 2, "upstream.breaker_failures": failures})
        signs_in = credentials or Credentials()
        self.upstream = Upstream(settings.upstream, signs_in, self.scheduler, self.dial)
        self.failed: list[tuple[NodeConnection, list[Entry], list[Entry]]] = []
        self.breakers: list[State] = []
        self.upstream.on_failure = lambda conn, unsent, sent: self.failed.append(
            (conn, unsent, sent)
        )
        self.upstream.on_breaker = lambda pool, state: self.breakers.append(state)

    def open_pool(self) -> list[NodeConnection]:
        """The node's pool, its RESP2 lanes accepted."""
        pool = self.upstream.pool(NODE)
        self.dial.accept_all()
        return pool.conns[:2]

    def refuse_next(self, lane: int) -> None:
        """The lane is asked for and its connect refused."""
        conn = self.upstream.pool(NODE).lane(lane)
        assert conn is not None
        self.dial.refuse(conn)


@pytest.fixture
def nodes() -> Nodes:
    return Nodes()


def test_a_pool_opens_its_resp2_lanes_when_first_used_and_resp3_ones_when_asked_for(
    nodes: Nodes,
) -> None:
    assert nodes.dial.dialed == []
    pool = nodes.upstream.pool(NODE)
    assert [(c.protocol, a) for c, a in nodes.dial.dialed] == [(2, NODE), (2, NODE)]
    assert pool.conns[2:] == [UNOPENED, UNOPENED]
    resp3 = pool.lane(2)
    assert resp3 is not None and resp3.protocol == 3
    assert len(nodes.dial.dialed) == 3 and nodes.upstream.pool(NODE) is pool


def test_a_lane_the_node_closed_is_reopened_when_next_used(nodes: Nodes) -> None:
    first, _ = nodes.open_pool()
    nodes.dial.transports[first].lose()
    pool = nodes.upstream.pool(NODE)
    assert pool.conns[0] is first  # nothing is dialed until a command needs the lane
    assert len(nodes.dial.dialed) == 2
    again = pool.lane(0)
    assert again is not first and again is pool.conns[0]
    assert nodes.dial.waiting == [again]


def test_commands_are_written_once_per_connection_per_loop_turn(nodes: Nodes) -> None:
    lane0, lane1 = nodes.open_pool()
    batch = Batch(5)
    for i, conn in enumerate([lane0, lane1, lane0, lane0, lane1]):
        conn.send(batch, i, GET)  # type: ignore[arg-type]
    assert nodes.dial.transports[lane0].written == []
    assert nodes.scheduler.run_soon() == 1  # one flush for every connection written to
    assert [len(nodes.dial.transports[c].written) for c in (lane0, lane1)] == [1, 1]
    assert frames_in(nodes.dial.transports[lane0].data) == [[b"GET", b"k"]] * 3


def test_failed_connects_open_the_breaker(nodes: Nodes) -> None:
    pool = nodes.upstream.pool(NODE)
    for conn in list(nodes.dial.waiting):
        nodes.dial.refuse(conn)
    assert pool.breaker.state is State.CLOSED
    nodes.refuse_next(0)
    assert pool.breaker.state is State.OPEN and nodes.breakers == [State.OPEN]
    assert pool.lane(0) is None  # nothing is sent to the node, nothing dialed
    assert len(nodes.dial.dialed) == 3


def test_a_node_closing_connections_it_accepted_does_not_open_the_breaker_alone(
    nodes: Nodes,
) -> None:
    """One client's command can make a node close a shared connection (a limit of the node's):
    only a failed connect confirms the node is down."""
    pool = nodes.upstream.pool(NODE)
    for _ in range(5):
        nodes.dial.accept_all()
        for conn in pool.conns[:2]:
            nodes.dial.transports[conn].lose()
        pool.lane(0), pool.lane(1)
    assert pool.breaker.state is State.CLOSED and pool.breaker.consecutive == 10
    nodes.refuse_next(0)  # ... whereas a failed connect after them confirms it
    assert pool.breaker.state is State.OPEN


def test_the_breaker_opening_aborts_the_connections_with_commands_in_flight(
    nodes: Nodes,
) -> None:
    lane0, lane1 = nodes.open_pool()
    lane0.send(Batch(), 0, GET)  # type: ignore[arg-type]
    nodes.scheduler.run_soon()
    nodes.dial.transports[lane1].lose()  # a hint, then two failed connects confirm it
    for _ in range(2):
        nodes.refuse_next(1)
    assert nodes.upstream.pool(NODE).breaker.state is State.OPEN
    assert nodes.dial.transports[lane0].aborted
    assert lane0.failure.startswith("circuit breaker open (3 consecutive failures")
    nodes.scheduler.run_soon()  # the aborted connection is lost: its GET is the router's
    [(_, unsent, sent)] = [f for f in nodes.failed if f[0] is lane0]
    assert (unsent, [entry[2] for entry in sent]) == ([], [GET])


def test_a_partition_aborts_open_connections_and_refuses_new_ones() -> None:
    nodes = Nodes(failures=10)  # the breaker stays closed: the partition itself refuses
    lane0, lane1 = nodes.open_pool()
    own = nodes.upstream.private(NODE, 2, b"")  # a client's, for a blocking command
    nodes.dial.accept(own)
    other = nodes.upstream.pool(MASTERS[1])
    nodes.upstream.partition([str(NODE)])
    assert all(nodes.dial.transports[conn].aborted for conn in (lane0, lane1, own))
    assert other.conns[0] in nodes.dial.waiting  # other nodes are not concerned
    nodes.scheduler.run_soon()
    again = nodes.upstream.pool(NODE).lane(0)
    assert again is not None and again not in nodes.dial.waiting  # never dialed
    nodes.scheduler.run_soon()
    assert again.closed and again.failure == "cannot connect"
    nodes.upstream.partition([])
    healed = nodes.upstream.pool(NODE).lane(0)
    assert healed is not again and nodes.dial.waiting[-1] is healed


def test_rotated_credentials_sign_new_connections_in_and_the_old_ones_still_count() -> None:
    old, new = Credentials(b"app", b"old"), Credentials(b"app", b"new")
    nodes = Nodes(old)
    lane0, _ = nodes.open_pool()
    assert nodes.dial.written(lane0) == [[b"AUTH", b"app", b"old"]]
    acl_block = nodes.upstream.block_for(Credentials(b"reporting", b"pw"))

    nodes.upstream.use(new, None)
    nodes.dial.transports[lane0].lose()
    reopened = nodes.upstream.pool(NODE).lane(0)
    assert reopened is not None
    nodes.dial.accept(reopened)
    assert nodes.dial.written(reopened) == [[b"AUTH", b"app", b"new"]]
    # A client's own connection opened with the old frame still runs as block 0's user...
    assert nodes.upstream.signs_in_as(old.auth_frame, 0)
    assert nodes.upstream.signs_in_as(new.auth_frame, 0)
    # ... but never as another block's.
    assert not nodes.upstream.signs_in_as(old.auth_frame, acl_block)


def test_a_partition_aborts_the_subscriber_connections_to_the_node_too(nodes: Nodes) -> None:
    client = FakeClient()
    placement = Placement(
        lambda: NODE, lambda slot: NODE, nodes.upstream.subscribe, lambda: None, nodes.scheduler
    )
    subscriptions = client.session.subscriptions = Subscriptions(client.session, placement)
    subscriptions.classic(Batch(), 0, [b"SUBSCRIBE", b"news"])  # type: ignore[arg-type]
    [(subscriber, _)] = nodes.dial.dialed
    nodes.dial.accept(subscriber)
    nodes.upstream.partition([str(NODE)])
    assert nodes.dial.transports[subscriber].aborted
