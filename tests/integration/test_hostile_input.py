"""Hostile input: 100,000 random and mutated RESP frames from many connections against a real
ambassador and cluster, while a well-behaved client keeps working (the frames and checks are in
hostile.py; ``scripts/fuzz`` runs the same for longer, with any seed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import hostile

from redis_ambassador.local.cluster import LocalCluster

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


def test_hostile_frames_against_small_request_limits_get_redis_errors_for_them(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    # Limits most frames come near: argument lengths and counts past them are refused with
    # Redis's errors as soon as declared, in every state the fuzzer drives connections into.
    limits = {"max_bulk_len": 600, "max_multibulk_len": 6}
    config = tmp_path / "small-limits.toml"
    config.write_text("[server]\n" + "".join(f"{k} = {v}\n" for k, v in limits.items()))
    ambassador = start_ambassador(cluster, extra_args=("--config", str(config)))
    report = hostile.run(ambassador.host, ambassador.port, seed=SEED + 1, frames=30_000, **limits)
    assert ambassador.process.poll() is None, ambassador.stderr_text()[-4000:]
    assert report.problems == [], report.summary()
    assert report.errors_seen > 100, report.summary()
    assert "Traceback" not in ambassador.stderr_text()
