"""Keeping the slot table current: a refresh periodically, and soon after a MOVED, a failure or
a breaker's change (asked for by ``request``; requests coalesce to one per
``min_refresh_interval``). A cluster is asked through discovery (topology/discovery.py); a
standalone or Sentinel backend through its own ``fetch``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import anyio

from redis_ambassador.config import Config
from redis_ambassador.loop import Scheduler
from redis_ambassador.routing.owners import Owners
from redis_ambassador.routing.retries import Retries
from redis_ambassador.routing.session import Session
from redis_ambassador.routing.stats import RouterStats
from redis_ambassador.slots import SLOTS
from redis_ambassador.topology.backends import OneShard
from redis_ambassador.topology.discovery import discover
from redis_ambassador.topology.slotmap import ClusterUnreachable, SlotMap
from redis_ambassador.upstream.pool import Upstream

log = logging.getLogger("redis_ambassador.routing.router")

# Seconds between refreshes while some slots have no master or no node answers.
_INCOMPLETE_REFRESH = 1.0
# Seconds between log lines while topology refreshes keep failing.
_REPORT_EVERY = 10.0


class Refresher:
    """Fetches slot maps and applies them to the router's slot table."""

    def __init__(
        self,
        config: Config,
        upstream: Upstream,
        owners: Owners,
        retries: Retries,
        stats: RouterStats,
        scheduler: Scheduler,
        backend: OneShard | None,
        sessions: Callable[[], Iterable[Session]],
    ) -> None:
        self.config = config  # read at each turn: a reload may change it
        self._upstream = upstream
        self._owners = owners
        self._retries = retries
        self._stats = stats
        self._scheduler = scheduler
        self._backend = backend
        self._sessions = sessions  # every client (their subscriptions follow a failover)
        self._wanted = False
        self._wake: anyio.Event | None = None

    def request(self) -> None:
        """Ask for a new slot map soon (calls coalesce)."""
        self._wanted = True
        if self._wake is not None:
            self._wake.set()

    def apply(self, slot_map: SlotMap) -> None:
        """Route by a new slot map, and look again at once for every command waiting for a
        usable master."""
        self._owners.apply(slot_map, self.config.cluster.seeds)
        self._retries.wake()

    async def refresh(self) -> SlotMap:
        """Fetch and apply the freshest slot map the known nodes give (or the backend's, when
        it is not a cluster)."""
        if self._backend is not None:
            slot_map = await self._backend.fetch()
        else:
            cluster = self.config.cluster
            upstream = self._upstream
            found = await discover(
                self._owners.known,
                upstream.names,
                self.config.upstream.connect_timeout,
                cluster.refresh_nodes,
                cluster.address_map,
                upstream.credentials,
                upstream.tls,
            )
            slot_map = found.slot_map
            self._stats.epoch, self._stats.views = found.epoch, found.answered
        previous = [pool.address if pool else None for pool in self._owners.by_slot]
        self.apply(slot_map)
        if list(slot_map.owners) != previous:
            log.info("topology changed: %s", slot_map.describe())
            if self._backend is not None:
                self._subscribers_leave({a for a in previous if a is not None} - slot_map.masters)
        return slot_map

    def _subscribers_leave(self, demoted: set[object]) -> None:
        """With one server behind, a master replaced by a failover may still run (Sentinel
        demotes it seconds later) and its subscribers would miss what is published on the new
        one: move them now."""
        for session in self._sessions():
            if session.subscriptions is not None:
                for address in demoted:
                    session.subscriptions.leave(address)  # type: ignore[arg-type]

    async def run(self) -> None:
        """Refresh periodically, and soon after a request (at most every
        ``min_refresh_interval``)."""
        failing_since: float | None = None  # loop time of the first failure in a row
        reported = 0.0  # when a failure was last logged
        while True:
            cluster = self.config.cluster
            wait = cluster.refresh_interval
            if self._owners.covered < SLOTS or self._retries.unreachable:
                # Slots without a master (a failover under way) or no node answering: look
                # again soon even if no command asks, so a promotion is found without traffic.
                wait = min(wait, _INCOMPLETE_REFRESH)
            if not self._wanted:
                self._wake = anyio.Event()
                with anyio.move_on_after(wait):
                    await self._wake.wait()
                self._wake = None
            self._wanted = False
            now = self._scheduler.time()
            try:
                await self.refresh()
                self._stats.refreshed(self._scheduler.time())
            except ClusterUnreachable as exc:
                self._stats.refreshes["failed"] += 1
                # Commands waiting for a usable node now fail at once: none is coming soon.
                self._retries.unreachable = True
                if failing_since is None:
                    failing_since = reported = now
                    log.warning("topology refresh failed: %s", exc)
                elif now - reported >= _REPORT_EVERY:
                    reported = now
                    log.warning("topology refresh failing for %.0fs: %s", now - failing_since, exc)
            except Exception:  # the refresher must outlive any bug: the next try may work
                self._stats.refreshes["failed"] += 1
                log.exception("topology refresh failed unexpectedly")
            else:
                self._retries.unreachable = False
                if failing_since is not None:
                    log.warning("topology refresh works again after %.1fs", now - failing_since)
                    failing_since = None
            await anyio.sleep(cluster.min_refresh_interval)
