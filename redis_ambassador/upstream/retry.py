"""When a command that did not get its answer is sent again (sans-IO: the caller passes the
time and the random source, so every decision is testable with a fake clock).

What is safe to send again:

* a redirection (MOVED/ASK) or a refusal that means "not now" (TRYAGAIN, CLUSTERDOWN, LOADING,
  MASTERDOWN): the node did not run the command;
* a command never written to its node (the connection failed first);
* a command written to a node whose connection then failed, only if it cannot change data
  (read-only) or the operator declared it idempotent (``upstream.idempotent``). Anything else
  may have run: the client gets an error rather than a second execution.

Each retry waits a random delay between 0 and an exponential bound (full jitter, so clients
retrying together spread out), within a deadline counted from the command's first retry, and
only while the retry budget allows: retries may add at most a fraction of the commands sent
(plus a small floor), so they cannot multiply the load on a cluster that is struggling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from redis_ambassador.config import UpstreamConfig


@dataclass(slots=True, eq=False)
class Attempt:
    """One command's history of retries; a fresh command carries the int 0 instead (no object
    on the hot path), and gets an Attempt on its first redirection or retry."""

    deadline: float
    redirects: int = 0
    retries: int = 0
    waits: int = 0  # looks for a usable master (free: nothing is sent)


_MIN_WAIT = 0.01

# Carried by commands that must never be sent again nor redirected (EXEC without its MULTI).
NEVER = Attempt(deadline=-math.inf, redirects=1 << 30, retries=1 << 30)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on redirections and retries for one command."""

    max_redirects: int
    attempts: int
    backoff: float
    max_backoff: float = 1.0
    deadline: float = 5.0
    idempotent: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, config: UpstreamConfig) -> RetryPolicy:
        return cls(
            max_redirects=config.max_redirects,
            attempts=config.retry_attempts,
            backoff=config.retry_backoff,
            max_backoff=config.retry_max_backoff,
            deadline=config.retry_deadline,
            idempotent=frozenset(config.idempotent),
        )

    def attempt(self, hops: Attempt | int, now: float) -> Attempt:
        """The command's Attempt, started now if this is its first redirection or retry."""
        if isinstance(hops, Attempt):
            return hops
        return Attempt(deadline=now + self.deadline)

    def follows_redirect(self, attempt: Attempt) -> bool:
        """Whether one more MOVED/ASK is followed (else the client sees it)."""
        return attempt.redirects < self.max_redirects

    def retry_delay(
        self, attempt: Attempt, now: float, random: Callable[[], float]
    ) -> float | None:
        """Seconds to wait before the next try, or None to give up (attempts or deadline
        exhausted). Full jitter: uniform between 0 and ``backoff * 2**retries`` (capped)."""
        if attempt.retries >= self.attempts or now >= attempt.deadline:
            return None
        bound = min(self.backoff * (2**attempt.retries), self.max_backoff)
        return min(random() * bound, attempt.deadline - now)

    def wait_delay(self, attempt: Attempt, now: float, random: Callable[[], float]) -> float | None:
        """Seconds until looking again for a usable master (none serves the command's slot,
        or its breaker is open), or None once the deadline has passed. Looking sends nothing,
        so only the deadline bounds it; the delay grows as a retry's does (at least 10 ms)."""
        if now >= attempt.deadline:
            return None
        bound = max(min(self.backoff * (2**attempt.waits), self.max_backoff), _MIN_WAIT)
        return min(random() * bound, attempt.deadline - now)

    def replays_after_loss(self, name: str, flags: frozenset[str]) -> bool:
        """Whether a command whose reply was lost with its connection may be sent again: it
        cannot change data, or the operator declared it idempotent."""
        idempotent = self.idempotent
        return "readonly" in flags or name in idempotent or name.split("|")[0] in idempotent


class RetryBudget:
    """Retries allowed: ``ratio`` of the commands sent, plus ``floor`` per second.

    A token bucket: sending commands deposits ``ratio`` tokens each, time deposits ``floor``
    per second, a retry takes one. Unused tokens are kept up to what ``window`` seconds of the
    recent traffic would earn, so a quiet period does not save up an avalanche.
    """

    def __init__(self, ratio: float, floor: float, now: float, window: float = 10.0) -> None:
        self.ratio = ratio
        self.floor = floor
        self.window = window
        self._recent = 0.0  # commands sent, decayed with time constant ``window``
        self._sent = 0
        self._at = now
        self.tokens = floor * window

    def spend(self, now: float, sent: int) -> bool:
        """Take a token for one retry; ``sent`` is the running count of commands sent."""
        elapsed = max(0.0, now - self._at)
        new = max(0, sent - self._sent)
        self._at, self._sent = now, sent
        self._recent = self._recent * math.exp(-elapsed / self.window) + new
        cap = self.floor * self.window + self.ratio * self._recent
        self.tokens = min(cap, self.tokens + self.ratio * new + self.floor * elapsed)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
