"""Finding the cluster: several nodes asked for their view, the freshest one kept.

Candidates (the known nodes of the last view, then the seeds) may be host names, resolved (and
re-resolved, see ``upstream/names.py``) each time; a name with several addresses is asked at
each. Up to ``cluster.refresh_nodes`` nodes are asked at once; of their views the one with the
highest config epoch wins (a node that has not heard of a failover yet cannot undo it), and
nodes only the others know are kept as known nodes. ``cluster.address_map`` then turns the
announced addresses into the ones to dial.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import anyio
from redis.exceptions import RedisError, ResponseError

from redis_ambassador.config import Address
from redis_ambassador.slots import SLOTS
from redis_ambassador.tls import NodeTLS
from redis_ambassador.topology.slotmap import (
    ClusterUnreachable,
    SlotMap,
    control_client,
    failure,
)
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.names import Names

log = logging.getLogger(__name__)

# Seconds the rest of a wave of nodes gets once one has answered (healthy nodes answer in a
# millisecond or so; a hung one would otherwise cost every refresh the connect timeout).
STRAGGLER_GRACE = 0.25


@dataclass(frozen=True)
class View:
    """What one node says the cluster is: its slot map (addresses as announced) and the
    highest config epoch among the masters serving slots in it."""

    slot_map: SlotMap
    epoch: int
    via: Address  # the address that answered (as dialed)
    # ... and as it was named (a seed's host name): what its TLS certificate is checked for
    via_named: Address | None = None


@dataclass(frozen=True)
class Discovered:
    """The view to route by (addresses mapped), and how it was chosen."""

    slot_map: SlotMap
    via: Address
    epoch: int
    answered: int  # nodes whose views were compared
    via_named: Address | None = None  # via as it was named, if a name (see View)


def config_epoch(cluster_nodes: bytes) -> int:
    """The highest config epoch of a master serving slots in a ``CLUSTER NODES`` reply (a
    failover gives the promoted replica a higher epoch than any before; 0 if none)."""
    best = 0
    for line in cluster_nodes.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) < 9:  # no slots
            continue
        flags = fields[2].split(",")
        if "master" in flags and "fail" not in flags:
            best = max(best, int(fields[6]))
    return best


def choose(views: Sequence[View]) -> View:
    """The view with the highest config epoch (then the most slots served; then the first
    to answer), its node list completed by the nodes only other views know."""
    best = max(views, key=lambda v: (v.epoch, SLOTS - v.slot_map.owners.count(None)))
    nodes: dict[str, Address] = {}
    for view in views:
        if view is not best:
            nodes.update(view.slot_map.nodes)
    nodes.update(best.slot_map.nodes)  # where a node's address differs, the winner's counts
    return replace(best, slot_map=replace(best.slot_map, nodes=nodes))


async def fetch_view(
    address: Address,
    timeout: float,
    credentials: Credentials,
    tls: NodeTLS | None = None,
    announced: Address | None = None,
) -> View:
    """Ask one node (at a dialable address; known to the cluster as ``announced``) for its
    view."""
    client = await control_client(address, timeout, credentials, tls, announced)
    try:
        try:
            slot_map = SlotMap.from_shards(
                await client.execute_command("CLUSTER", "SHARDS"),
                current_host=address.host,
                tls=tls is not None,
            )
        except ResponseError as exc:
            if "unknown subcommand" not in str(exc).lower():
                raise
            slot_map = SlotMap.from_slots(
                await client.execute_command("CLUSTER", "SLOTS"), current_host=address.host
            )
        epoch = config_epoch(await client.execute_command("CLUSTER", "NODES"))
    finally:
        with anyio.CancelScope(shield=True):  # a straggler cut off still closes its socket
            await client.aclose()
    return View(slot_map, epoch, address, announced)


async def discover(
    candidates: Iterable[Address],
    names: Names,
    timeout: float,
    wanted: int,
    address_map: Callable[[Address], Address],
    credentials: Credentials,
    tls: NodeTLS | None = None,
) -> Discovered:
    """Views from up to ``wanted`` candidates (asked ``wanted`` at a time, in order, until
    that many answered), the best chosen; raises ClusterUnreachable if none answers.

    Once one node of a wave has answered, the others get ``STRAGGLER_GRACE`` seconds more: a
    hung node (paused, or a host gone without a reset) must not hold every refresh for the
    whole timeout while its peers answer at once."""
    views: list[View] = []
    problems: list[str] = []
    asked: set[Address] = set()

    async def wave(addresses: list[Address]) -> None:
        answered = anyio.Event()  # a view came back, or every node of the wave failed
        finished = anyio.Event()
        left = len(addresses)

        async def ask(address: Address) -> None:
            nonlocal left
            try:
                dial = await names.resolve(address)
                async with anyio.create_task_group() as tg:
                    for each in dial:
                        if each not in asked:
                            asked.add(each)
                            tg.start_soon(ask_at, each, address)
            except OSError as exc:
                problems.append(f"{address}: {exc}")
            finally:
                left -= 1
                if not left:
                    finished.set()
                    answered.set()

        async def ask_at(dial: Address, address: Address) -> None:
            try:
                views.append(await fetch_view(dial, timeout, credentials, tls, address))
                answered.set()
            except (RedisError, OSError, TimeoutError, RuntimeError) as exc:
                # RuntimeError: uvloop's, when a node dies while redis-py is still connecting
                # ("unable to perform operation on <TCPTransport closed=True>").
                named = str(address) if dial == address else f"{address} ({dial})"
                problems.append(f"{named}: {failure(exc, tls)}")

        async with anyio.create_task_group() as tg:
            for address in addresses:
                tg.start_soon(ask, address)
            await answered.wait()
            with anyio.move_on_after(STRAGGLER_GRACE):
                await finished.wait()
            tg.cancel_scope.cancel()

    waiting = list(dict.fromkeys(candidates))
    while waiting and len(views) < wanted:
        next_wave, waiting = waiting[: wanted - len(views)], waiting[wanted - len(views) :]
        await wave(next_wave)
    if not views:
        raise ClusterUnreachable("no cluster node answered: " + "; ".join(problems or ["no seeds"]))
    best = choose(views)
    return Discovered(
        best.slot_map.translated(address_map), best.via, best.epoch, len(views), best.via_named
    )
