"""The limited log writes its quota each second, then says how many it left out."""

from __future__ import annotations

import logging

import pytest

from redis_ambassador.operations.ratelimit import LimitedLog


def test_a_flood_is_cut_to_the_quota_and_the_rest_counted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.ratelimit")
    limited = LimitedLog(logger, logging.WARNING, per_second=3, what="slow requests")
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        written = [limited.log(10.0 + i / 100, "line %d", i) for i in range(10)]
        assert written == [True] * 3 + [False] * 7
        assert limited.log(11.0, "next second")
    assert [r.getMessage() for r in caplog.records] == [
        "line 0", "line 1", "line 2", "slow requests: 7 more not logged", "next second",
    ]  # fmt: skip
