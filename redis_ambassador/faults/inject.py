"""Fault injection at the node boundary: what happens to a command a rule fired for.

The router asks ``Injector.inject`` before it sends a command that some rule may concern; the
injector asks the rules (``Faults.decide``) and, if one fires, carries out its action with the
event loop's timers. Whether the node executed the command depends on the action:

=============================  ==========================================================
action                         the node executed the command?
=============================  ==========================================================
delay alone                    yes, at once; its reply reaches the client after the delay
error                          no (after the delay, if any, the client gets the error)
redirect (forged MOVED/ASK)    yes, once the ambassador has followed the redirection
timeout                        yes; the reply is swallowed and the client waits
drop / reset "before"          no: the client's connection is closed (reset: TCP RST)
drop / reset "after"           yes, then the client's connection is closed before the reply
bandwidth / split              yes; the reply is written to the client slowly / in pieces
=============================  ==========================================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from redis_ambassador.faults.rules import Command, Faults, Rule
from redis_ambassador.loop import Scheduler
from redis_ambassador.operations.ratelimit import LimitedLog
from redis_ambassador.upstream.collector import Collector

log = logging.getLogger("redis_ambassador.chaos")

# How replies are paced: a bandwidth limit writes every 10 ms what that many bytes a second
# allow; a split writes one piece every 2 ms (long enough for the client to read them apart).
_BANDWIDTH_TICK = 0.01
_SPLIT_PAUSE = 0.002
# A paced client whose replies pile up beyond this stops being read (as a slow reader would).
_PACED_HIGH_WATER = 64 * 1024

Reply = bytes | bytearray


class Target(Protocol):
    """The client connection a fault acts on (server/client.py)."""

    def describe(self) -> str: ...

    def cut(self, reset: bool) -> None:
        """Close now, the replies owed never written (reset: a TCP RST instead of a FIN)."""
        ...

    def pace(self, piece: int, pause: float) -> None:
        """Write the next replies ``piece`` bytes at a time, ``pause`` seconds apart."""
        ...


class PacedClient(Protocol):
    """What a paced writer tells its client connection about its writing."""

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def restore_transport(self, paced: PacedWriter, transport: asyncio.Transport) -> None: ...


class Catch:
    """Stands in for a client's batch while one command is under a fault (a Collector of one
    reply): the node's reply (or the ambassador's error for it) comes here first, and the fault
    decides what the client gets."""

    __slots__ = ("_then", "lane", "remaining", "replies")

    def __init__(self, lane: int, then: Callable[[Reply], None]) -> None:
        self.replies: list[Reply | None] = [None]
        self.remaining = 1
        self.lane = lane
        self._then = then

    def complete(self) -> None:
        reply = self.replies[0]
        assert reply is not None
        self._then(reply)

    def fill(self, index: int, reply: bytes) -> None:
        self.replies[0] = reply
        self.remaining = 0
        self._then(reply)

    def large_reply(self, size: int) -> None:
        """A large reply arrived: not counted against the client's output buffer limit (the
        fault decides what the client gets, and when)."""


class PacedWriter:
    """A client's transport, written in pieces of ``piece`` bytes ``pause`` seconds apart (the
    bandwidth and split faults) until what was written through it has gone out; then the client
    gets its transport back. Everything else goes straight to the transport."""

    def __init__(
        self,
        client: PacedClient,
        transport: asyncio.Transport,
        piece: int,
        pause: float,
        scheduler: Scheduler,
    ) -> None:
        self._client = client
        self._transport = transport
        self._piece = piece
        self._pause = pause
        self._pending = bytearray()
        self._scheduled = False
        self._close_when_done = False
        self._loop = scheduler

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending += data
        if len(self._pending) > _PACED_HIGH_WATER:
            self._client.pause_writing()
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._next)

    def get_write_buffer_size(self) -> int:
        return len(self._pending) + self._transport.get_write_buffer_size()

    def close(self) -> None:
        if self._pending:
            self._close_when_done = True
        else:
            self._transport.close()

    def _next(self) -> None:
        self._scheduled = False
        transport = self._transport
        if transport.is_closing():
            return
        piece = self._piece
        transport.write(bytes(self._pending[:piece]))
        del self._pending[:piece]
        if self._pending:
            self._scheduled = True
            self._loop.call_later(self._pause, self._next)
            return
        self._client.resume_writing()
        self._client.restore_transport(self, transport)
        if self._close_when_done:
            transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class Injector:
    """Carries out the faults the rules decide on, for the router."""

    def __init__(self, faults: Faults, log_faults: bool, scheduler: Scheduler) -> None:
        self.faults = faults
        self._loop = scheduler
        self._log = LimitedLog(log, logging.INFO, 100, "injected faults") if log_faults else None

    def inject(
        self,
        client: Target,
        command: Command,
        batch: Collector,
        index: int,
        send: Callable[[Collector], None],
        redirect: Callable[[Rule], None],
    ) -> bool:
        """Apply the rule that fires for this command, if any (True: it took the command over;
        ``send`` sends it on, with the batch whose reply slot it fills; ``redirect`` forges
        the rule's redirection)."""
        rule = self.faults.decide(command)
        if rule is None:
            return False
        if self._log is not None:
            self._log.log(
                self._loop.time(), "chaos: rule %s (%s) on %s from %s to node %s",
                rule.id, rule.action, command.name.upper(), client.describe(),
                command.node or "(the ambassador)",
            )  # fmt: skip
        delay = rule.delay_seconds()
        action = rule.action
        spec = rule.spec
        if action == "error":
            self._after(delay, batch.fill, index, b"-" + spec["error"].encode() + b"\r\n")
        elif action == "redirect":
            self._after(delay, redirect, rule)
        elif action in ("drop", "reset") and spec[action] == "before":
            self._after(delay, client.cut, action == "reset")
        else:

            def then(reply: Reply) -> None:
                self._after(delay, self._deliver, rule, client, batch, index, reply)

            send(Catch(batch.lane, then))
        return True

    def _after(self, delay: float, act: Callable[..., object], *args: object) -> None:
        if delay:
            self._loop.call_later(delay, act, *args)
        else:
            act(*args)

    @staticmethod
    def _deliver(rule: Rule, client: Target, batch: Collector, index: int, reply: Reply) -> None:
        """The node answered a command under ``rule``: what the client gets of the reply."""
        action = rule.action
        if action == "timeout":
            return  # swallowed: the client waits, as for a node that never answers
        if action in ("drop", "reset"):
            client.cut(action == "reset")
            return
        if action == "bandwidth":
            per_tick = max(1, int(rule.spec["bandwidth"] * _BANDWIDTH_TICK))
            client.pace(per_tick, _BANDWIDTH_TICK)
        elif action == "split":
            client.pace(rule.spec["split"], _SPLIT_PAUSE)
        batch.fill(index, bytes(reply))
