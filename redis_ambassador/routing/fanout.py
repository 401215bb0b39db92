"""Commands sent to several nodes as parts whose replies merge into one: a multi-key command split
by slot, a whole-keyspace command fanned out to every master, SCAN across the masters, and admin
commands where their plan sends them. What each part is and how replies merge is sans-IO, in
commands/merges.py and commands/admin.py; this module sends the parts and gathers the replies.
"""

from __future__ import annotations

from redis_ambassador import errors
from redis_ambassador.commands.admin import ADMIN, Plan, To
from redis_ambassador.commands.merges import Merge, ScanPlan, split_by_slot
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.delivery import Delivery
from redis_ambassador.routing.owners import Owners
from redis_ambassador.upstream.collector import Collector, Reply
from redis_ambassador.upstream.pool import NodePool
from redis_ambassador.upstream.retry import NEVER


class Gather:
    """Collects the replies of one command's parts (a Collector); once all are in, the merge
    writes the one reply into the client's collector, at the command's index."""

    __slots__ = ("_index", "_into", "_merge", "lane", "remaining", "replies")

    def __init__(self, into: Collector, index: int, parts: int, merge: Merge) -> None:
        self.lane = into.lane  # parts sent again go on the client's lane
        self.replies: list[Reply | None] = [None] * parts
        self.remaining = parts
        self._into = into
        self._index = index
        self._merge = merge

    def fill(self, index: int, reply: Reply) -> None:
        self.replies[index] = reply
        self.remaining -= 1
        if not self.remaining:
            self.complete()

    def complete(self) -> None:
        self._into.fill(self._index, bytes(self._merge(self.replies)))  # type: ignore[arg-type]

    def large_reply(self, size: int) -> None:
        """A large part arrived: it counts in the real client's output buffer meanwhile."""
        self._into.large_reply(size)


class FanOut:
    """Splits, fan-outs, SCAN and admin plans."""

    def __init__(self, delivery: Delivery, owners: Owners, split_cross_slot: bool) -> None:
        self._delivery = delivery
        self._owners = owners
        self.split_cross_slot = split_cross_slot  # commands.split_cross_slot (reloadable)

    def to_masters(self, call: Call, merge: Merge) -> bool:
        """A whole-keyspace command: to every master, replies merged."""
        parts = [(pool, call.frame) for pool in self._owners.masters]
        self.send(call.batch, call.index, parts, merge)
        return False

    def cross_slot(self, call: Call) -> None:
        """Split a multi-key command whose keys span slots, if it may be; else CROSSSLOT."""
        split = split_by_slot(call.name, call.args) if self.split_cross_slot else None
        if split is None:
            call.answer(errors.CROSSSLOT)
            return
        parts, merge = split
        by_slot = self._owners.by_slot
        self.send(call.batch, call.index, [(by_slot[slot], frame) for slot, frame in parts], merge)

    def scan(self, call: Call) -> bool:
        """SCAN walks the masters one after another behind one cursor (see ScanPlan)."""
        args = call.args
        starts = self._owners.range_starts
        plan = ScanPlan(starts, args[1])
        if not plan.valid:
            call.answer(errors.INVALID_CURSOR if starts else self._owners.uncovered)
            return False
        pool = self._owners.by_slot[plan.slot]
        self.send(call.batch, call.index, [(pool, plan.request(args))], plan.merge)
        return False

    def admin(self, call: Call, view: object) -> bool:
        """An admin command (commands/admin.py): sent where its plan says, replies merged."""
        plan = ADMIN[call.name](call.args, view)  # type: ignore[arg-type]
        if plan.to is To.NOWHERE:
            call.answer(plan.reply)
        elif plan.to is To.ANY:
            self._delivery.send_anywhere(call.session, call.batch, call.index, call.frame)
        elif plan.to is To.ANY_MERGED:
            assert plan.merge is not None
            self.send(call.batch, call.index, [(self._owners.any_master(), call.frame)], plan.merge)
        elif plan.to is To.KEYS:
            pool = self._owners.owner_of(plan.keys)
            if isinstance(pool, bytes):
                call.answer(pool)
            else:
                self._delivery.send_to(call.session, pool, call.batch, call.index, call.frame)
        else:
            self._to_each_node(call, plan)
        return False

    def _to_each_node(self, call: Call, plan: Plan) -> None:
        assert plan.merge is not None
        owners = self._owners
        pools = owners.masters if plan.to is To.MASTERS else owners.every_node()
        if not pools:
            if plan.always:
                call.answer(bytes(plan.merge([])))
                return
            owners.request_refresh()
            call.answer(owners.uncovered)
            return
        # Each part is for its node: one that fails answers its error (the merge decides)
        # instead of going to another node (a second CONFIG SET there, its SLOWLOG twice).
        gather = Gather(call.batch, call.index, len(pools), plan.merge)
        for j, pool in enumerate(pools):
            self._delivery.deliver(pool, gather.lane, (gather, j, call.frame, NEVER))

    def send(
        self,
        into: Collector,
        index: int,
        parts: list[tuple[NodePool | None, bytes]],
        merge: Merge,
    ) -> None:
        """Send each part to its pool (None: no master serves it yet) and merge the replies."""
        owners = self._owners
        if not parts:
            owners.request_refresh()
            into.fill(index, owners.uncovered)
            return
        gather = Gather(into, index, len(parts), merge)
        for j, (pool, frame) in enumerate(parts):
            if pool is not None:
                self._delivery.deliver(pool, gather.lane, (gather, j, frame, 0))
                continue
            owners.request_refresh()
            if not self._delivery.retries.park(None, (gather, j, frame, 0)):
                gather.fill(j, owners.uncovered)
