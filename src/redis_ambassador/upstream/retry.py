"""When a command that did not get its answer is sent again (sans-IO: no clock, no sockets).

Only what is known not to have run is retried: a redirection (MOVED/ASK), a refusal that means
"not now" (TRYAGAIN, CLUSTERDOWN), or a command that was never written to its node. A command
written to a node whose connection then died may have run; it is never replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis_ambassador.config import UpstreamConfig


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on redirections and retries for one command; ``hops`` counts those so far."""

    max_redirects: int
    attempts: int
    backoff: float
    max_delay: float = 1.0

    @classmethod
    def from_config(cls, config: UpstreamConfig) -> RetryPolicy:
        return cls(config.max_redirects, config.tryagain_attempts, config.tryagain_backoff)

    def follows_redirect(self, hops: int) -> bool:
        """Whether a MOVED/ASK after ``hops`` earlier ones is followed (else the client sees it)."""
        return hops < self.max_redirects

    def retry_delay(self, hops: int) -> float | None:
        """Seconds to wait before trying again after ``hops`` tries, or None to give up."""
        if hops >= self.attempts:
            return None
        return min(self.backoff * (2**hops), self.max_delay)
