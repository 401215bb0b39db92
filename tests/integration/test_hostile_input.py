"""Hostile input: 100,000 random and mutated RESP frames from many connections against a real
ambassador and cluster, while a well-behaved client keeps working (the frames and checks are in
hostile.py; ``scripts/fuzz`` runs the same for longer, with any seed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import hostile

from redis_ambassador.localcluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador

SEED = 20261126


def test_hostile_frames_never_crash_or_bloat_the_ambassador_and_each_gets_redis_answer(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> None:
    ambassador = start_ambassador(cluster)
    report = hostile.run(
        ambassador.host, ambassador.port, seed=SEED, frames=100_000, rss=ambassador.rss_bytes
    )
    assert ambassador.process.poll() is None, ambassador.stderr_text()[-4000:]
    assert report.problems == [], report.summary()
    assert report.frames >= 100_000
    assert report.errors_seen > 100 and report.well_behaved_rounds > 10, report.summary()
    assert report.rss_growth < 128 * 2**20, report.summary()
    assert "Traceback" not in ambassador.stderr_text()
