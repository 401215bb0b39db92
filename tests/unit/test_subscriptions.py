"""A client's subscriptions (routing/pubsub.py) through a fake Placement: what each subscriber
connection is owed, messages pushed to the client, and subscribing again where the topology says
once a node is lost or gives a shard channel up. The subscriber connections are fed bytes."""

from __future__ import annotations

import pytest
from fakes import KEY_ON, MASTERS, FakeClient, FakeDial, FakeScheduler, array, bulk, make_call

from redis_ambassador.config import Address
from redis_ambassador.routing.pubsub import Placement, PubSub
from redis_ambassador.routing.session import Batch
from redis_ambassador.slots import SLOTS
from redis_ambassador.upstream.subscriber import SubscriberConnection

B, C, A = KEY_ON  # channels in the first, second and third master's slots


def confirm(kind: bytes, channel: bytes, count: int) -> bytes:
    return array(bulk(kind), bulk(channel), b":%d\r\n" % count)


def message(channel: bytes, text: bytes) -> bytes:
    return array(bulk(b"message"), bulk(channel), bulk(text))


class Subscriber:
    """One client's pub/sub, its node connections dialed by a FakeDial; ``classic`` is where
    the topology puts classic subscriptions now, ``owners`` each master's slots."""

    def __init__(self) -> None:
        self.scheduler = FakeScheduler()
        self.dial = FakeDial(self.scheduler)
        self.client = FakeClient()
        self.classic: Address = MASTERS[0]
        self.owners = list(MASTERS)
        self.refreshes = 0
        placement = Placement(
            any_master=lambda: self.classic,
            owner=lambda slot: self.owners[slot * len(self.owners) // SLOTS],
            connect=self.dial.dial,
            refresh=self._refresh,
            scheduler=self.scheduler,
        )
        self.pubsub = PubSub(placement)

    def _refresh(self) -> None:
        self.refreshes += 1

    def send(self, *args: bytes) -> Batch:
        """One pub/sub command of the client's, handled as the router hands it over."""
        batch = self.client.batch()
        assert self.pubsub.handle(make_call(self.client.session, batch, list(args)))
        return batch

    def connection(self, at: int = -1) -> SubscriberConnection:
        """A subscriber connection dialed (the last one by default), accepted if not yet."""
        conn, _ = self.dial.dialed[at]
        if conn in self.dial.waiting:
            self.dial.accept(conn)
        assert isinstance(conn, SubscriberConnection)
        return conn

    def subscribed(self, *channels: bytes) -> SubscriberConnection:
        """SUBSCRIBE to ``channels``, confirmed by the node."""
        self.send(b"SUBSCRIBE", *channels)
        conn = self.connection()
        for n, channel in enumerate(channels, start=1):
            conn.data_received(confirm(b"subscribe", channel, n))
        return conn


@pytest.fixture
def sub() -> Subscriber:
    return Subscriber()


def test_subscribe_to_two_channels_is_one_reply_of_both_confirmations(sub: Subscriber) -> None:
    batch = sub.send(b"SUBSCRIBE", b"news", b"sport")
    conn = sub.connection()
    assert sub.dial.dialed == [(conn, MASTERS[0])]
    assert sub.dial.written(conn) == [[b"SUBSCRIBE", b"news", b"sport"]]
    conn.data_received(confirm(b"subscribe", b"news", 1))
    assert batch.replies == [None]  # owed two confirmations
    conn.data_received(confirm(b"subscribe", b"sport", 2))
    assert batch.replies == [confirm(b"subscribe", b"news", 1) + confirm(b"subscribe", b"sport", 2)]
    assert sub.client.pushes == [] and sub.client.session.subscriptions is not None


def test_messages_are_pushed_to_the_client_as_they_come(sub: Subscriber) -> None:
    conn = sub.subscribed(b"news")
    conn.data_received(message(b"news", b"hello") + message(b"news", b"again"))
    assert sub.client.pushes == [message(b"news", b"hello"), message(b"news", b"again")]


def test_unsubscribe_without_channels_is_owed_one_confirmation_per_channel(
    sub: Subscriber,
) -> None:
    conn = sub.subscribed(b"news", b"sport")
    batch = sub.send(b"UNSUBSCRIBE")
    assert sub.dial.written(conn)[-1] == [b"UNSUBSCRIBE"]
    conn.data_received(confirm(b"unsubscribe", b"news", 1))
    assert batch.replies == [None]
    conn.data_received(confirm(b"unsubscribe", b"sport", 0))
    assert batch.replies == [
        confirm(b"unsubscribe", b"news", 1) + confirm(b"unsubscribe", b"sport", 0)
    ]
    # Subscribed to nothing any more: the connection goes, the client is a plain one again.
    assert sub.client.session.subscriptions is None
    assert sub.dial.transports[conn].closed


def test_a_lost_subscriber_connection_subscribes_again_elsewhere_after_a_delay(
    sub: Subscriber,
) -> None:
    lost = sub.subscribed(b"news", b"sport")
    sub.classic = MASTERS[1]  # what a refresh will say: the node has gone
    sub.dial.transports[lost].lose()
    assert sub.refreshes == 1 and len(sub.dial.dialed) == 1
    sub.scheduler.advance(0.2)
    assert len(sub.dial.dialed) == 1
    sub.scheduler.advance(0.05)
    conn = sub.connection()
    assert sub.dial.dialed[-1] == (conn, MASTERS[1])
    assert sub.dial.written(conn) == [[b"SUBSCRIBE", b"news", b"sport"]]
    # Its confirmations are the ambassador's, not the client's; messages flow again.
    conn.data_received(confirm(b"subscribe", b"news", 1) + confirm(b"subscribe", b"sport", 2))
    conn.data_received(message(b"sport", b"goal"))
    assert sub.client.pushes == [message(b"sport", b"goal")]


def test_a_lost_subscriber_connection_subscribes_again_on_the_same_node_if_it_is_still_there(
    sub: Subscriber,
) -> None:
    lost = sub.subscribed(b"news")
    sub.dial.transports[lost].lose()
    sub.scheduler.advance(0.25)
    conn = sub.connection()
    assert conn is not lost and sub.dial.dialed[-1] == (conn, MASTERS[0])
    sub.scheduler.advance(1.0)
    assert sub.dial.written(conn) == [[b"SUBSCRIBE", b"news"]]


def test_a_shard_channel_whose_slot_moved_is_subscribed_again_at_its_new_owner(
    sub: Subscriber,
) -> None:
    sub.send(b"SSUBSCRIBE", A)
    old = sub.connection()
    assert sub.dial.dialed == [(old, MASTERS[2])]
    old.data_received(confirm(b"ssubscribe", A, 1))
    sub.owners[2] = MASTERS[0]  # the slot migrated
    old.data_received(confirm(b"sunsubscribe", A, 0))  # unsolicited: the node gave it up
    assert sub.client.pushes == [] and sub.refreshes == 1
    sub.scheduler.advance(0.25)
    new = sub.connection()
    assert sub.dial.dialed[-1] == (new, MASTERS[0])
    assert sub.dial.written(new) == [[b"SSUBSCRIBE", A]]


def test_ssubscribe_to_channels_in_two_slots_gets_crossslot(sub: Subscriber) -> None:
    batch = sub.send(b"SSUBSCRIBE", A, B)
    assert batch.replies == [b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"]
    assert sub.dial.dialed == []
    assert sub.client.session.subscriptions is None  # nothing subscribed: not in pub/sub mode
