"""A fault rule's turn (faults/) before a command goes to a node, or before the ambassador
answers one itself: the router asks here only for commands some rule may concern."""

from __future__ import annotations

from collections.abc import Callable

from redis_ambassador.config import Address
from redis_ambassador.faults.inject import Injector
from redis_ambassador.faults.rules import Command, Rule
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.delivery import Delivery
from redis_ambassador.routing.owners import Owners
from redis_ambassador.upstream.collector import Collector
from redis_ambassador.upstream.connection import Entry
from redis_ambassador.upstream.pool import NodePool


class ChaosHooks:
    """Asks the injector before a command is sent or answered; carries out forged redirects."""

    def __init__(self, injector: Injector, delivery: Delivery, owners: Owners) -> None:
        self.injector = injector
        self._delivery = delivery
        self._owners = owners

    def before_send(self, call: Call, keys: list[bytes], slot: int | None, pool: NodePool) -> bool:
        """A fault rule's turn before a command goes to ``pool``; True if one took it over.
        (Not for a client in WATCH: its commands ride a connection of its own to the node.)"""
        session = call.session
        if session.watching is not None:
            return False
        batch, i, frame = call.batch, call.index, call.frame

        def send(target: Collector) -> None:
            self._delivery.send_to(session, pool, target, i if target is batch else 0, frame)

        def redirect(rule: Rule) -> None:
            self._forge_redirect(rule, session.lane, pool, (batch, i, frame, 0), slot)

        spec = call.spec
        command = Command(
            spec.name, spec.categories, keys, slot, pool.name,
            pool.address in self._owners.replicas, session.name,
        )  # fmt: skip
        return self.injector.inject(session.client, command, batch, i, send, redirect)

    def before_answer(self, call: Call, answer: Callable[[], bytes]) -> bool:
        """A fault rule's turn before the ambassador answers a command itself (PING, ECHO,
        CLIENT ..., HELLO): only rules that name the command act on these."""
        batch, i = call.batch, call.index

        def reply(target: Collector) -> None:
            target.fill(i if target is batch else 0, answer())

        command = Command(call.spec.name, call.spec.categories, client=call.session.name)
        # No node to be redirected from: a forged redirection is answered as usual.
        return self.injector.inject(
            call.session.client, command, batch, i, reply, lambda _: reply(batch)
        )

    def _forge_redirect(
        self, rule: Rule, lane: int, pool: NodePool, entry: Entry, slot: int | None
    ) -> None:
        """Answer for the node with the rule's MOVED or ASK, and follow it as a real one."""
        to = rule.spec["to"]
        if to == "right":
            target = pool.address
        elif to == "wrong":
            others = [master.address for master in self._owners.masters if master is not pool]
            target = others[0] if others else pool.address
        else:
            target = Address.parse(to)
        kind = b"MOVED" if rule.spec["redirect"] == "moved" else b"ASK"
        via = pool.lane(lane)
        if via is None:  # the node's breaker is open: no redirection to pretend
            self._delivery.deliver(pool, lane, entry)
            return
        self._delivery.redirected(
            entry, b"-%s %d %s\r\n" % (kind, slot or 0, str(target).encode()), via
        )
