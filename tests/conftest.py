"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from redis_ambassador.localcluster import LocalCluster, RedisServerNotFound


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A real 3-master, 3-replica Redis Cluster shared by the whole session; keep it intact."""
    local = LocalCluster()
    missing: str | None = None
    try:
        local.start()
    except RedisServerNotFound as exc:
        missing = str(exc)
    if missing is not None:
        # A missing server is a broken environment, not a reason to skip the suite.
        pytest.fail(missing, pytrace=False)
    try:
        yield local
    finally:
        local.stop()
