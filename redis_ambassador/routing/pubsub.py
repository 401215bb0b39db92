"""One client's subscriptions: classic channels and patterns on one node, shard channels on the
nodes that own their slots, each over a connection of the client's own.

Replies on a subscriber connection are not one per command: ``SUBSCRIBE a b`` gets two
confirmations, ``UNSUBSCRIBE`` with no argument one per channel, and messages arrive in between.
The ambassador keeps its own model of what each connection is subscribed to (updated as commands
are sent, as Redis applies them in order), so it knows how many confirmations each command is
owed; they become that command's reply in the client's ordered stream. Messages go to the
client as they come (after any reply already owed). Classic messages reach every node of a
cluster, so any master serves them; if that node goes away the subscriptions are made again on
another. A shard channel whose slot moves is unsubscribed by its old node (an unsolicited
``sunsubscribe``); it is subscribed again at the slot's new owner, and the client sees nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis_ambassador import errors
from redis_ambassador.loop import Scheduler
from redis_ambassador.protocol.replies import bulk_value, elements
from redis_ambassador.protocol.requests import as_bytes, encode_command
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.fanout import Gather
from redis_ambassador.slots import key_slot
from redis_ambassador.upstream.subscriber import SubscriberConnection

if TYPE_CHECKING:
    from redis_ambassador.config import Address
    from redis_ambassador.routing.session import Session
    from redis_ambassador.upstream.collector import Collector

log = logging.getLogger(__name__)

_MESSAGES = frozenset([b"message", b"pmessage", b"smessage"])
_SUBSCRIBE = {b"subscribe": "channels", b"psubscribe": "patterns", b"ssubscribe": "channels"}
_UNSUBSCRIBE = {
    b"unsubscribe": "channels",
    b"punsubscribe": "patterns",
    b"sunsubscribe": "channels",
}
# Seconds between attempts to subscribe again after a node was lost or a slot moved.
_RESUBSCRIBE_DELAY = 0.25
_RESUBSCRIBE_ATTEMPTS = 120


class _Owed:
    """The confirmations one command is owed (``batch`` None: our own resubscription)."""

    __slots__ = ("batch", "expected", "got", "index", "kind", "names")

    def __init__(
        self,
        batch: Collector | None,
        index: int,
        kind: bytes,
        expected: int,
        names: list[bytes] | tuple[()] = (),
    ) -> None:
        self.batch = batch
        self.index = index
        self.kind = kind
        self.expected = expected
        self.names = names  # what a subscribing command asked for
        self.got: list[bytes] = []


class _Link:
    """One subscriber connection and what the client is subscribed to over it."""

    __slots__ = ("avoid", "channels", "conn", "owed", "patterns", "shard")

    def __init__(self, conn: SubscriberConnection, shard: bool) -> None:
        self.conn = conn
        self.shard = shard
        # Where not to subscribe again what it held: a node that gave it up while still
        # running (a master Sentinel demotes later); None after a lost connection.
        self.avoid: Address | None = None
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.owed: deque[_Owed] = deque()

    @property
    def active(self) -> bool:
        return bool(self.channels or self.patterns)


class Placement:
    """What subscriptions need from the router: where classic and shard channels live now,
    and a way to connect."""

    def __init__(
        self,
        any_master: Callable[[], Address | None],
        owner: Callable[[int], Address | None],
        connect: Callable[[SubscriberConnection, Address], None],
        refresh: Callable[[], None],
        scheduler: Scheduler,
        slot_of: Callable[[bytes], int] = key_slot,
        uncovered: bytes = errors.CLUSTERDOWN_UNCOVERED,
    ) -> None:
        self.scheduler = scheduler  # resubscribing waits a little between attempts
        self.any_master = any_master
        self.owner = owner
        self.connect = connect
        self.refresh = refresh
        self.slot_of = slot_of  # a shard channel's slot (always 0 with one server behind)
        self.uncovered = uncovered  # the error when no master can take a subscription


class Subscriptions:
    """The client's subscriber connections and their bookkeeping."""

    def __init__(self, session: Session, placement: Placement) -> None:
        self._session = session
        self._placement = placement
        self._classic: _Link | None = None
        self._shard: dict[Address, _Link] = {}

    @property
    def active(self) -> bool:
        """Subscribed to anything (for a RESP2 client: only pub/sub commands are allowed)."""
        classic = self._classic
        return (classic is not None and classic.active) or any(
            link.active for link in self._shard.values()
        )

    @property
    def idle(self) -> bool:
        """Nothing subscribed and no confirmation owed: the connections can go."""
        links = [*self._shard.values(), *([self._classic] if self._classic else [])]
        return not any(link.active or link.owed for link in links)

    # -- commands -----------------------------------------------------------------------------

    def classic(self, batch: Collector, i: int, args: list[bytes]) -> bytes | None:
        """SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE: on the classic connection. Returns
        an error reply instead when no node can take them."""
        link = self._classic_link()
        if link is None:
            return self._placement.uncovered
        self._send(link, batch, i, args)
        return None

    def shard(self, batch: Collector, i: int, args: list[bytes]) -> bytes | None:
        """SSUBSCRIBE, SUNSUBSCRIBE: to the node that owns the channels' slot (SUNSUBSCRIBE with
        no channel: to every node the client has shard channels on)."""
        if len(args) == 1:
            links = [link for link in self._shard.values() if link.channels]
            if not links:
                # Nothing to leave; Redis still confirms once, with a null channel.
                link = self._shard_link(self._placement.slot_of(b""))
                if link is None:
                    return self._placement.uncovered
                links = [link]
            # One reply made of every connection's confirmations, in a fixed order.
            gather = Gather(batch, i, len(links), b"".join)
            for j, link in enumerate(links):
                self._send(link, gather, j, args)
            return None
        slot_of = self._placement.slot_of
        slot = slot_of(args[1])
        if any(slot_of(channel) != slot for channel in args[2:]):
            return errors.CROSSSLOT
        link = self._shard_link(slot)
        if link is None:
            return self._placement.uncovered
        self._send(link, batch, i, args)
        return None

    def ping(self, batch: Collector, i: int, args: list[bytes]) -> None:
        """PING while subscribed (RESP2): the node answers it in its subscribed form, in order
        with the confirmations on that connection."""
        links = [link for link in (self._classic, *self._shard.values()) if link and link.active]
        link = links[0]
        owed = _Owed(batch, i, b"ping", 1)
        link.owed.append(owed)
        link.conn.send(encode_command(args))

    def close(self) -> None:
        """Leave every subscription (RESET, the client left): closing is unsubscribing."""
        for link in [*self._shard.values(), *([self._classic] if self._classic else [])]:
            link.conn.close()
        self._shard.clear()
        self._classic = None

    # -- bookkeeping --------------------------------------------------------------------------

    def _send(self, link: _Link, batch: Collector | None, i: int, args: list[bytes]) -> _Owed:
        args = as_bytes(args)  # the names are kept
        kind = args[0].lower()
        names = args[1:]
        if kind in _SUBSCRIBE:
            getattr(link, _SUBSCRIBE[kind]).update(names)
            expected = len(names)
        else:
            current: set[bytes] = getattr(link, _UNSUBSCRIBE[kind])
            expected = len(names) if names else max(1, len(current))
            if names:
                current.difference_update(names)
            else:
                current.clear()
        owed = _Owed(batch, i, kind, expected, names if kind in _SUBSCRIBE else ())
        link.owed.append(owed)
        link.conn.send(encode_command(args))
        return owed

    def _classic_link(self) -> _Link | None:
        link = self._classic
        if link is None or link.conn.closed:
            address = self._placement.any_master()
            if address is None:
                return None
            link = self._classic = self._open(address, shard=False)
        return link

    def _shard_link(self, slot: int) -> _Link | None:
        address = self._placement.owner(slot)
        if address is None:
            return None
        link = self._shard.get(address)
        if link is None or link.conn.closed:
            link = self._shard[address] = self._open(address, shard=True)
        return link

    def _open(self, address: Address, shard: bool) -> _Link:
        session = self._session
        conn = SubscriberConnection(address, self, session.protocol, session.upstream_auth)
        self._placement.connect(conn, address)
        return _Link(conn, shard)

    def _link_of(self, conn: SubscriberConnection) -> _Link | None:
        if self._classic is not None and self._classic.conn is conn:
            return self._classic
        return next((link for link in self._shard.values() if link.conn is conn), None)

    # -- the connections' side ---------------------------------------------------------------

    def received(self, conn: SubscriberConnection, reply: bytes) -> None:
        link = self._link_of(conn)
        if link is None:
            return
        kind = _kind(reply)
        if kind in _MESSAGES:
            self._session.client.push(reply)
            return
        owed = link.owed[0] if link.owed else None
        if kind == b"sunsubscribe" and (owed is None or owed.kind != b"sunsubscribe"):
            self._slot_moved(link, reply)
            return
        if owed is None:
            self._session.client.push(reply)  # nothing asked for it: pass it on rather than lose it
            return
        if reply[:1] in (b"-", b"!") and not owed.got:
            # Refused whole (-NOPERM for a channel the node's user may not use): one error
            # instead of the confirmations, and nothing was subscribed.
            link.owed.popleft()
            if owed.names:
                getattr(link, _SUBSCRIBE[owed.kind]).difference_update(owed.names)
            if owed.batch is not None:
                owed.batch.fill(owed.index, reply)
            if self.idle:
                self._session.unsubscribed()
            return
        owed.got.append(reply)
        if len(owed.got) < owed.expected:
            return
        link.owed.popleft()
        if owed.batch is not None:
            owed.batch.fill(owed.index, b"".join(owed.got))
        if self.idle:
            self._session.unsubscribed()

    def lost(self, conn: SubscriberConnection) -> None:
        link = self._link_of(conn)
        if link is None or conn.closing:
            return
        self._placement.refresh()
        if link.active:
            log.info("subscriber connection to %s lost: subscribing again elsewhere", conn.address)
        self._replace(link, errors.node_unavailable(str(conn.address), conn.failure))

    def leave(self, address: Address) -> None:
        """``address`` no longer serves what is subscribed there, though it still runs (a
        master Sentinel demotes only later): subscribe again where the topology says now."""
        for link in [self._classic, *self._shard.values()]:
            if link is not None and link.conn.address == address:
                link.avoid = address
                link.conn.close()
                self._replace(link, errors.node_unavailable(str(address), "no longer the master"))

    def _replace(self, link: _Link, failed: bytes) -> None:
        """Drop ``link`` (confirmations it owed get ``failed``); resubscribe what it held."""
        for owed in link.owed:
            if owed.batch is not None:
                owed.batch.fill(owed.index, failed)
        link.owed.clear()
        if link is self._classic:
            self._classic = None
        else:
            self._shard.pop(link.conn.address, None)
        if link.active:
            self._resubscribe(link, _RESUBSCRIBE_ATTEMPTS)

    def _slot_moved(self, link: _Link, reply: bytes) -> None:
        """The node gave up a shard channel (its slot moved): subscribe at the new owner."""
        channel = bulk_value(elements(reply)[1])
        link.channels.discard(channel)
        self._placement.refresh()
        moved = _Link(link.conn, shard=True)
        moved.channels.add(channel)
        self._resubscribe(moved, _RESUBSCRIBE_ATTEMPTS)

    def _resubscribe(self, lost: _Link, attempts: int) -> None:
        """Subscribe again to what ``lost`` held, once the topology says where."""
        later = self._placement.scheduler.call_later
        later(_RESUBSCRIBE_DELAY, self._try_resubscribe, lost, attempts)

    def _try_resubscribe(self, lost: _Link, attempts: int) -> None:
        if self._session.subscriptions is not self:
            return  # the client left or reset meanwhile
        if not lost.shard:
            link = self._classic_link()
            if link is None or link.conn.address == lost.avoid:
                self._retry(lost, attempts)
                return
            for kind, names in ((b"SUBSCRIBE", lost.channels), (b"PSUBSCRIBE", lost.patterns)):
                if names - getattr(link, _SUBSCRIBE[kind.lower()]):
                    self._send(link, None, 0, [kind, *sorted(names)])
            return
        pending: set[bytes] = set()
        for channel in lost.channels:
            link = self._shard_link(self._placement.slot_of(channel))
            if link is None or link.conn is lost.conn:
                pending.add(channel)
            elif channel not in link.channels:
                self._send(link, None, 0, [b"SSUBSCRIBE", channel])
        if pending:
            lost.channels = pending
            self._retry(lost, attempts)

    def _retry(self, lost: _Link, attempts: int) -> None:
        # The topology still names the node that gave them up: ask again, since one refresh
        # may have read a view from before the move (refreshes coalesce and are rate-limited).
        self._placement.refresh()
        if attempts > 1:
            self._resubscribe(lost, attempts - 1)
        else:
            log.warning("could not subscribe again to %d channels", len(lost.channels))


def _kind(reply: bytes) -> bytes:
    """The first element of an aggregate reply (``message``, ``subscribe``, ...), lower case;
    b"" for anything else."""
    if reply[:1] not in (b"*", b">"):
        return b""
    items = elements(reply)
    if not items or items[0][:1] != b"$":
        return b""
    return bulk_value(items[0]).lower()


class PubSub:
    """The subscribe family's handler: each client's subscriptions on connections of its own."""

    def __init__(self, placement: Placement) -> None:
        self._placement = placement

    def handle(self, call: Call) -> bool:
        """(P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE, on the client's subscriber connections."""
        session = call.session
        subscriptions = session.subscriptions
        if subscriptions is None:
            subscriptions = session.subscriptions = Subscriptions(session, self._placement)
        if call.name in ("ssubscribe", "sunsubscribe"):
            failed = subscriptions.shard(call.batch, call.index, call.args)
        else:
            failed = subscriptions.classic(call.batch, call.index, call.args)
        if failed is not None:
            call.answer(failed)
            if subscriptions.idle:
                session.unsubscribed()
        return True

    @staticmethod
    def outside_subscribed_mode(call: Call) -> bytes | None:
        """A RESP2 client subscribed to something may only run pub/sub commands, PING, QUIT
        and RESET: Redis's refusal of anything else (None: it may run). Its PING the node
        answers, in its subscribed form."""
        session = call.session
        subscriptions = session.subscriptions
        if subscriptions is None or session.protocol != 2 or not subscriptions.active:
            return None
        if call.base in SUBSCRIBING or call.base in ("ping", "quit", "reset"):
            return None
        return errors.subscribed_context(call.name)

    @staticmethod
    def ping(call: Call) -> bool:
        """PING: by the node on the client's subscriber connection, while it is subscribed in
        RESP2 (the node answers in the subscribed form); else answered here."""
        session = call.session
        subscriptions = session.subscriptions
        if subscriptions is None or session.protocol != 2 or not subscriptions.active:
            return False
        subscriptions.ping(call.batch, call.index, call.args)
        return True


SUBSCRIBING = frozenset(
    ["subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"]
)
