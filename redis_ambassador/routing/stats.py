"""What the router counts, read by the metrics at scrape time (the hot path only bumps
``fast_commands``), and the slow-request log."""

from __future__ import annotations

import logging

from redis_ambassador.operations.histogram import LatencyHistogram
from redis_ambassador.operations.ratelimit import LimitedLog

log = logging.getLogger("redis_ambassador.routing.router")


class RouterStats:
    """Counters of commands, errors, redirects, retries and refreshes; sampled latencies."""

    def __init__(self, now: float) -> None:
        # Plain single-key commands by name as sent (the fast path's keys: lower and upper
        # case), and every other command by its table name ("" for unknown ones).
        self.fast_commands: dict[bytes, int] = {}
        self.other_commands: dict[str, int] = {}
        self.errors: dict[str, int] = {}  # commands answered with an error, by name
        self.redirects = {"moved": 0, "ask": 0}
        self.retries = 0
        self.budget_exhausted = 0
        self.refreshes = {"ok": 0, "failed": 0}
        self.refreshed_at = now  # loop time of the last slot map applied
        self.epoch = 0  # config epoch of the view in use
        self.views = 0  # nodes whose views the last refresh compared
        self.latency: dict[str, LatencyHistogram] = {}  # sampled, by first command
        self.slow_requests = 0
        self._slow_log = LimitedLog(log, logging.WARNING, 10, "slow requests")

    def track_fast(self, fast: dict[bytes, int]) -> None:
        """Count the fast path's names (keeping what was counted under the old ones)."""
        old = self.fast_commands
        self.fast_commands = {raw: old.get(raw, 0) for raw in fast}
        for raw, n in old.items():
            if raw not in fast and n:
                self.count(raw.decode().lower(), n)

    def count(self, name: str, n: int = 1) -> None:
        other = self.other_commands
        other[name] = other.get(name, 0) + n

    def error(self, name: str) -> None:
        """A command answered with an error ("" for one not in COMMAND)."""
        errors = self.errors
        errors[name or "unknown"] = errors.get(name or "unknown", 0) + 1

    def refreshed(self, now: float) -> None:
        self.refreshes["ok"] += 1
        self.refreshed_at = now

    def timed(
        self, now: float, name: str, elapsed: float, sampled: bool, slow: bool, commands: int,
        client: str,
    ) -> None:  # fmt: skip
        """A sampled or slow read's replies were written ``elapsed`` seconds after it was read
        (``name``: its first command's): the latency histogram, the slow log."""
        if sampled:
            histogram = self.latency.get(name)
            if histogram is None:
                histogram = self.latency[name] = LatencyHistogram()
            histogram.observe(elapsed)
        if slow:
            self.slow_requests += 1
            what = f"'{name}'" if commands == 1 else f"{commands} commands, the first '{name}'"
            self._slow_log.log(
                now, "slow request: %.1f ms for %s from client %s", elapsed * 1000, what, client
            )

    def commands(self) -> dict[str, int]:
        """Commands routed or answered so far, by lower-case name ("unknown": not in COMMAND)."""
        total: dict[str, int] = {}
        for raw, n in self.fast_commands.items():
            if n:
                name = raw.decode().lower()
                total[name] = total.get(name, 0) + n
        for name, n in self.other_commands.items():
            key = name or "unknown"
            total[key] = total.get(key, 0) + n
        return total
