"""Commands sent again later: after a backoff with jitter (a reply lost with its connection, a
"not now" refusal), or once a usable master serves their slot (parked while none does, or
while its breaker is open), within each command's retry policy and the global retry budget.

Sans-IO: the scheduler (the clock and timers) and the random source are given; where a command
goes when it is sent again is the caller's (``route_again``, ``deliver``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

from redis_ambassador import errors
from redis_ambassador.config import Address, UpstreamConfig
from redis_ambassador.loop import Scheduler, Timer
from redis_ambassador.routing.stats import RouterStats
from redis_ambassador.upstream.connection import Entry
from redis_ambassador.upstream.pool import NodePool
from redis_ambassador.upstream.retry import Attempt, RetryBudget, RetryPolicy


class Retries:
    """Schedules commands to be sent again, and parks those waiting for a usable master."""

    def __init__(
        self,
        config: UpstreamConfig,
        scheduler: Scheduler,
        stats: RouterStats,
        route_again: Callable[[bytes, Address | None], NodePool | None],
        deliver: Callable[[NodePool, int, Entry], None],
        fail: Callable[[Entry, bytes], None],
        refresh: Callable[[], None],
        sent: Callable[[], int],
        uncovered: bytes,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._scheduler = scheduler
        self._stats = stats
        self._route_again = route_again  # the pool for a command now (its slot's owner, ...)
        self._deliver = deliver
        self._fail = fail
        self._refresh = refresh
        self._sent = sent  # commands written to every node so far (the budget grows with it)
        self._uncovered = uncovered
        self._random = rand
        # Made with its settings, so it starts with the floor's tokens (as RetryBudget does).
        self._budget = RetryBudget(
            config.retry_budget_percent / 100, config.retry_budget_floor, scheduler.time()
        )
        self.configure(config)
        # The last topology refresh reached no node at all: waiting is pointless, fail fast.
        self.unreachable = False
        # Commands waiting for a usable master, woken early by ``wake``.
        self._parked: dict[int, tuple[Address | None, Entry, Timer]] = {}
        self._park_keys = itertools.count()

    def configure(self, config: UpstreamConfig) -> None:
        """The retry settings (at start, and on SIGHUP)."""
        self.policy: RetryPolicy = RetryPolicy.from_config(config)
        self._budget.ratio = config.retry_budget_percent / 100
        self._budget.floor = config.retry_budget_floor

    def attempt(self, hops: Attempt | int) -> Attempt:
        """A command's retry history (made on its first redirection or retry)."""
        return self.policy.attempt(hops, self._scheduler.time())

    def retry(self, address: Address | None, entry: Entry) -> bool:
        """Send ``entry`` again after a backoff with jitter; False if the policy gives up (the
        retry budget is charged when it is sent)."""
        batch, index, frame, hops = entry
        now = self._scheduler.time()
        attempt = self.policy.attempt(hops, now)
        delay = self.policy.retry_delay(attempt, now, self._random)
        if delay is None:
            return False
        attempt.retries += 1
        self._stats.retries += 1
        entry = (batch, index, frame, attempt)
        self._scheduler.call_later(delay, self._resend, address, entry, True)
        return True

    def park(self, address: Address | None, entry: Entry) -> bool:
        """Look again shortly for a usable master for ``entry`` (none serves its slot, or the
        one that does has its breaker open), until the command's deadline; False at once
        while no node of the cluster can be reached (fail fast)."""
        if self.unreachable:
            return False
        batch, index, frame, hops = entry
        now = self._scheduler.time()
        attempt = self.policy.attempt(hops, now)
        delay = self.policy.wait_delay(attempt, now, self._random)
        if delay is None:
            return False
        attempt.waits += 1
        key = next(self._park_keys)
        timer = self._scheduler.call_later(delay, self._unpark, key)
        self._parked[key] = (address, (batch, index, frame, attempt), timer)
        return True

    def wake(self) -> None:
        """Something changed (a new slot map, a node back): look again now for every command
        waiting for a usable master, instead of at its next timer."""
        for key in list(self._parked):
            parked = self._parked.get(key)
            if parked is not None:
                parked[2].cancel()
                self._unpark(key)

    def _unpark(self, key: int) -> None:
        parked = self._parked.pop(key, None)
        if parked is not None:
            address, entry, _ = parked
            self._resend(address, entry, False)

    def _resend(self, address: Address | None, entry: Entry, retry: bool) -> None:
        """Send to whoever serves the command by now (a failover may have moved its slot away
        from ``address``), or wait again while no usable master does."""
        batch, _, frame, _ = entry
        if batch is None:
            return
        pool = self._route_again(frame, address)
        if pool is None or not pool.breaker.allows:
            self._refresh()  # to learn of the promotion as soon as it happens
            if not self.park(address, entry):
                if pool is None:
                    self._fail(entry, self._uncovered)
                else:
                    self._fail(entry, errors.node_unavailable(pool.name, "circuit breaker open"))
            return
        if retry and not self._budget.spend(self._scheduler.time(), self._sent()):
            self._stats.budget_exhausted += 1
            self._fail(entry, errors.node_unavailable(pool.name, "retry budget exhausted"))
            return
        self._deliver(pool, batch.lane, entry)
