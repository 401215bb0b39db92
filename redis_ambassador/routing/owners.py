"""Which node pool serves each slot now: the router's slot table, made from the latest slot map.

The hot path indexes ``by_slot`` directly (the fast path's one list lookup per command); the
rest of the router asks for a slot's or some keys' owner, any master, or every node.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

from redis_ambassador import errors
from redis_ambassador.config import Address
from redis_ambassador.slots import SLOTS
from redis_ambassador.topology.slotmap import SlotMap
from redis_ambassador.upstream.pool import NodePool, Upstream


class Owners:
    """The slot table: owner pool by slot, the masters, replicas and each master's readers."""

    def __init__(
        self,
        upstream: Upstream,
        seeds: Iterable[Address],
        slot_of: Callable[[bytes], int],
        uncovered: bytes,
        backend: str,
        refresh: Callable[[], None],
    ) -> None:
        self._upstream = upstream
        self.request_refresh = refresh  # ask for a new slot map soon
        self.slot_of = slot_of  # a key's slot (always 0 with one server behind)
        self.uncovered = uncovered  # the error for a command no master can take now
        self.backend = backend  # "cluster", or the one-server backend's name
        self.by_slot: list[NodePool | None] = [None] * SLOTS
        self.masters: list[NodePool] = []
        self.range_starts: list[int] = []  # first slot of each master's range, ascending
        self.replicas: frozenset[Address] = frozenset()  # for commands to every node
        self.readers: dict[Address, list[NodePool]] = {}  # each master's online replicas
        self.spread_reads = False  # the read policy sends reads to replicas: keep ``readers``
        self.covered = 0  # slots with a master
        self.known: list[Address] = list(seeds)  # asked on the next refresh, in this order
        self._any = itertools.count()

    def apply(self, slot_map: SlotMap, seeds: Iterable[Address]) -> None:
        """Route by a new slot map; drop the pools of nodes that left, once they are idle."""
        upstream = self._upstream
        pools = {address: upstream.pool(address) for address in slot_map.masters}
        self.by_slot[:] = [pools[a] if a is not None else None for a in slot_map.owners]
        self.masters = list(pools.values())
        self.range_starts = sorted({slot_map.owners.index(a) for a in slot_map.masters})
        # Asked on the next refresh: the masters first, every other node, then the seeds.
        nodes = list(slot_map.nodes.values())
        self.known = list(dict.fromkeys([*pools, *nodes, *seeds]))
        self.replicas = slot_map.replicas - slot_map.masters
        if self.spread_reads:
            self.readers = {
                master: [upstream.pool(replica) for replica in replicas]
                for master, replicas in slot_map.readers.items()
            }
        self.covered = SLOTS - slot_map.owners.count(None)
        for address, pool in list(upstream.pools.items()):
            gone = address not in pools and address not in self.replicas and address not in nodes
            if gone and not pool.pending:
                upstream.discard(address)

    def owner_of(self, keys: Sequence[bytes]) -> NodePool | bytes:
        """The master of the keys' one slot, or the error to answer: CROSSSLOT (keys in several
        slots), or ``uncovered`` (no master serves the slot now: a refresh is asked for)."""
        slot_of = self.slot_of
        slot = slot_of(keys[0])
        if any(slot_of(key) != slot for key in keys[1:]):
            return errors.CROSSSLOT
        pool = self.by_slot[slot]
        if pool is None:
            self.request_refresh()
            return self.uncovered
        return pool

    def any_master(self) -> NodePool | None:
        """Masters in turn, for keyless commands any of them answers alike (skipping those
        whose breaker is open while another is usable)."""
        masters = self.masters
        if not masters:
            return None
        start = next(self._any)
        for k in range(len(masters)):
            pool = masters[(start + k) % len(masters)]
            if pool.breaker.allows:
                return pool
        return masters[start % len(masters)]

    def every_node(self) -> list[NodePool]:
        """Masters, then replicas (their pools open on first use and stay while they do)."""
        replicas = sorted(self.replicas, key=str)
        return [*self.masters, *(self._upstream.pool(address) for address in replicas)]

    def unready(self) -> str | None:
        """Why the ambassador cannot serve every slot now (None: it can): /readyz."""
        if self.covered < SLOTS and self.backend != "cluster":
            return f"no master (backend {self.backend})"
        if self.covered < SLOTS:
            return f"{SLOTS - self.covered} of {SLOTS} slots have no master"
        down = sorted(pool.name for pool in self.masters if not pool.breaker.allows)
        if down:
            return f"masters unreachable (circuit breaker open): {', '.join(down)}"
        return None
