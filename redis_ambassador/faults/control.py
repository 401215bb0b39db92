"""What the chaos API asks of a cluster this process started (``dev``, the pytest plugin):
node actions and live slot migration. ``redis_ambassador.local.nodes`` carries them out on real
processes; under ``serve`` there is none, and the API says so."""

from __future__ import annotations

from typing import Any, Protocol

from redis_ambassador.faults.rules import RuleError, slot_range

NODE_ACTIONS = ("kill", "pause", "resume", "restart", "failover")


class NodeActionError(Exception):
    """A node action that cannot be done; ``status`` is the HTTP status that says why (400 a
    bad request, 404 no such node, 409 not possible in the cluster's current state)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_slots(value: object) -> range:
    """A slot range as rules take it (``"0-99"``, ``"42"``); NodeActionError(400) otherwise."""
    try:
        first, last = slot_range(value)
    except RuleError as exc:
        raise NodeActionError(400, str(exc)) from None
    return range(first, last + 1)


class NodeControl(Protocol):
    """Node actions by address ("host:port"); each blocks until done, one at a time."""

    def describe(self) -> list[dict[str, Any]]:
        """Each node: address, role, state ("running", "paused" or "killed"), pid."""
        ...

    def act(self, address: str, action: str) -> dict[str, Any]:
        """Do ``action`` (one of NODE_ACTIONS) to a node; its description after it."""
        ...

    def migrate(self, slots: object, to: object) -> dict[str, Any]:
        """Move the slot range ``slots`` and its keys to master ``to``, live."""
        ...
