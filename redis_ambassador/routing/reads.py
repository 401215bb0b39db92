"""Where a read-only command goes (sans-IO): the read policy, as Envoy's Redis proxy names it.

* ``master`` (default): to the slot's master, like every other command.
* ``prefer-replica``: to one of the master's online replicas, in turn; to the master when none
  is usable.
* ``replica``: to one of the master's online replicas, in turn; an error when none is usable
  (for deployments where the master must never serve reads).
* ``any``: the master and its online replicas, in turn.

Replicas answer reads after READONLY (sent first on every node connection when the policy is
not ``master``), and may lag their master: a read there may not yet see a write just made.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

POLICIES = ("master", "prefer-replica", "replica", "any")

Node = TypeVar("Node")


class ReadPolicy:
    """Chooses the node for one read among a master and its replicas."""

    def __init__(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown read policy {policy!r}")
        self.policy = policy
        # Whether reads may leave the master at all (then replicas get pools and READONLY).
        self.spreads = policy != "master"
        self._turn = itertools.count()

    def choose(
        self, master: Node, replicas: Sequence[Node], usable: Callable[[Node], bool]
    ) -> Node | None:
        """The node for a read; None when the policy is ``replica`` and none is usable."""
        if not self.spreads:
            return master
        live = [replica for replica in replicas if usable(replica)]
        turn = next(self._turn)
        if self.policy == "any":
            candidates = [master, *live] if usable(master) else live
            return candidates[turn % len(candidates)] if candidates else master
        if live:
            return live[turn % len(live)]
        return master if self.policy == "prefer-replica" else None
