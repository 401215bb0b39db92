"""The latency histogram's buckets are Prometheus's: cumulative, upper bounds inclusive."""

from __future__ import annotations

import pytest

from redis_ambassador.operations.histogram import BUCKETS, LatencyHistogram


def test_observations_land_in_the_first_bucket_whose_bound_is_not_below_them() -> None:
    histogram = LatencyHistogram()
    for seconds in (0.00001, 0.00005, 0.0002, 0.003, 20.0):
        histogram.observe(seconds)
    cumulative = dict(histogram.cumulative())
    assert cumulative["5e-05"] == 2  # 10 µs and exactly 50 µs
    assert cumulative["0.00025"] == 3
    assert cumulative["0.005"] == 4
    assert cumulative["10.0"] == 4
    assert cumulative["+Inf"] == 5 == histogram.count
    assert histogram.sum == pytest.approx(20.00326)


def test_the_buckets_rise_and_the_inf_bucket_is_last() -> None:
    assert list(BUCKETS) == sorted(BUCKETS)
    bounds = [bound for bound, _ in LatencyHistogram().cumulative()]
    assert bounds[-1] == "+Inf" and len(bounds) == len(BUCKETS) + 1
