"""A circuit breaker per node (sans-IO: the caller passes the time and the random source).

closed ── N consecutive failures, or a failure rate over a window ──▶ open
open ── reset timeout (with jitter) elapsed ──▶ half-open: the health checker probes the node
half-open ── M successful probes ──▶ closed;  ── a failed probe ──▶ open again, for twice as
long each time (up to 8 times the reset timeout), so a node that stays down is probed less

While open, nothing is sent to the node: commands for it wait for a new owner of their slot
(a failover) within their retry deadline, or fail at once, instead of each waiting out a
timeout. A failure is a connection that could not be made or was aborted because the node
stopped answering, or a failed health check; the commands counted failed are the ones such a
loss left without a reply. A node closing a connection it had accepted is only a hint (one
client's command could make it do that): it counts toward the consecutive failures, never
toward the failure rate, and cannot open the breaker until a failed connect or probe confirms.
"""

from __future__ import annotations

import enum
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from redis_ambassador.config import UpstreamConfig


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5  # consecutive failures that open the breaker
    error_rate: float = 0.5  # or this fraction of commands failed within ``window``
    window: float = 10.0
    min_commands: int = 20  # commands within ``window`` before the rate counts
    reset_timeout: float = 1.0  # open this long (times 1 to 1.5, at random) before probing
    successes: int = 2  # successful probes that close it again

    @classmethod
    def from_config(cls, config: UpstreamConfig) -> BreakerSettings:
        return cls(
            failures=config.breaker_failures,
            error_rate=config.breaker_error_percent / 100,
            window=config.breaker_window,
            min_commands=config.breaker_min_commands,
            reset_timeout=config.breaker_reset_timeout,
            successes=config.breaker_successes,
        )


_BUCKET = 1.0  # seconds per bucket of the rate window
_MAX_DOUBLINGS = 3  # an open breaker waits at most 8 reset timeouts between probes


class CircuitBreaker:
    """One node's breaker. ``on_change(old, new, why)`` is called on every transition."""

    def __init__(
        self,
        settings: BreakerSettings,
        random: Callable[[], float],
        on_change: Callable[[State, State, str], None] = lambda *_: None,
    ) -> None:
        self.settings = settings
        self.state = State.CLOSED
        self.consecutive = 0  # failures since the last success
        self.probes_ok = 0  # successful probes while half-open
        self.retry_at = 0.0  # when an open breaker lets a probe through
        self.reopened = 0  # failed probes since the breaker last closed
        self._random = random
        self._on_change = on_change
        # The rate window: one bucket per second, in a ring of preallocated arrays (no object
        # is made per second: one that outlived a burst of clients would pin its memory).
        self._epochs = array("q")  # which second each bucket holds
        self._sent = array("q")
        self._failed = array("q")

    @property
    def allows(self) -> bool:
        """Whether commands may be sent to the node (only while closed)."""
        return self.state is State.CLOSED

    def probe_due(self, now: float) -> bool:
        """Whether the health checker should probe now: an open breaker whose reset timeout
        has passed turns half-open here."""
        if self.state is State.OPEN and now >= self.retry_at:
            self._move(State.HALF_OPEN, "reset timeout elapsed, probing")
        return self.state is State.HALF_OPEN

    def success(self) -> None:
        """The node answered (a reply, or a probe's PONG)."""
        self.consecutive = 0
        if self.state is State.HALF_OPEN:
            self.probes_ok += 1
            if self.probes_ok >= self.settings.successes:
                self._epochs = array("q")  # forget the window
                self.reopened = 0
                self._move(State.CLOSED, f"{self.probes_ok} probes answered")

    def sent(self, now: float, commands: int) -> None:
        """Count commands sent to the node (the rate's denominator)."""
        i = self._bucket(now)
        self._sent[i] += commands

    def failure(self, now: float, why: str, commands: int = 0, conclusive: bool = True) -> None:
        """A connection failed (``commands`` were left without a reply) or a probe failed; not
        ``conclusive``: the node closed a connection it had accepted (see the module's doc)."""
        self.consecutive += 1
        i = self._bucket(now)  # first: it may make the arrays anew
        self._failed[i] += commands
        if not conclusive:
            return
        if self.state is State.HALF_OPEN:
            self.reopened += 1
            self._open(now, f"probe failed: {why}")
        elif self.state is State.CLOSED:
            settings = self.settings
            if self.consecutive >= settings.failures:
                self._open(now, f"{self.consecutive} consecutive failures, last: {why}")
                return
            failed, sent = self._window(now)
            # Failed commands were sent, even if their count has not been reported yet.
            sent = max(failed, sent)
            if sent >= settings.min_commands and failed >= settings.error_rate * sent:
                self._open(now, f"{failed} of {sent} commands failed, last: {why}")

    def _open(self, now: float, why: str) -> None:
        self.probes_ok = 0
        timeout = self.settings.reset_timeout * 2 ** min(self.reopened, _MAX_DOUBLINGS)
        self.retry_at = now + timeout * (1 + 0.5 * self._random())
        self._move(State.OPEN, why)

    def _move(self, state: State, why: str) -> None:
        old, self.state = self.state, state
        self._on_change(old, state, why)

    def _bucket(self, now: float) -> int:
        """The index of the bucket for ``now`` (emptied if it held an older second)."""
        size = max(1, math.ceil(self.settings.window / _BUCKET))
        if len(self._epochs) != size:  # first use, or the window was reconfigured
            self._epochs = array("q", [-1] * size)
            self._sent = array("q", [0] * size)
            self._failed = array("q", [0] * size)
        second = int(now // _BUCKET)
        i = second % size
        if self._epochs[i] != second:
            self._epochs[i] = second
            self._sent[i] = self._failed[i] = 0
        return i

    def _window(self, now: float) -> tuple[int, int]:
        """Commands failed and sent within the window ending now."""
        oldest = int(now // _BUCKET) - len(self._epochs)
        failed = sent = 0
        for i, second in enumerate(self._epochs):
            if second > oldest:
                failed += self._failed[i]
                sent += self._sent[i]
        return failed, sent
