"""A latency histogram that costs next to nothing to feed (sans-IO: seconds in, counts out).

Observations are sampled by the callers (one read or flush in ``SAMPLE_EVERY``), so the hot
path pays one counter decrement per read; each observation is a bisect and two additions.
"""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds in seconds: 50 µs to 10 s, the range a proxy's and a node's latency spans.
BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
SAMPLE_EVERY = 64


class LatencyHistogram:
    """Counts per bucket (the last one is +Inf), their sum, and the number observed."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: (upper bound, observations at or below it), +Inf last."""
        out = []
        total = 0
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
