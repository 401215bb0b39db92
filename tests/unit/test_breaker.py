"""Circuit breaker transitions with a fake clock (every time is passed in)."""

from __future__ import annotations

import pytest

from redis_ambassador.config import UpstreamConfig
from redis_ambassador.upstream.breaker import BreakerSettings, CircuitBreaker, State


def _breaker(**changes: object) -> tuple[CircuitBreaker, list[tuple[State, State, str]]]:
    settings = BreakerSettings(**changes)  # type: ignore[arg-type]
    seen: list[tuple[State, State, str]] = []
    breaker = CircuitBreaker(settings, random=lambda: 0.0, on_change=lambda *t: seen.append(t))
    return breaker, seen


def test_consecutive_failures_open_it() -> None:
    breaker, seen = _breaker(failures=3)
    for _ in range(2):
        breaker.failure(0.0, "connection refused")
    assert breaker.state is State.CLOSED and breaker.allows
    breaker.failure(0.1, "connection refused")
    assert breaker.state is State.OPEN and not breaker.allows
    assert seen == [(State.CLOSED, State.OPEN, "3 consecutive failures, last: connection refused")]


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _ = _breaker(failures=3)
    breaker.failure(0.0, "x")
    breaker.failure(0.0, "x")
    breaker.success()
    breaker.failure(0.0, "x")
    breaker.failure(0.0, "x")
    assert breaker.state is State.CLOSED


def test_connections_the_node_closed_never_open_it_alone_but_count_once_confirmed() -> None:
    """One client's command can make a node close a shared connection: however many such
    closes come, the breaker stays closed until a failed connect or probe confirms."""
    breaker, seen = _breaker(failures=3)
    for _ in range(10):
        breaker.failure(0.0, "connection lost", commands=50, conclusive=False)
    assert breaker.state is State.CLOSED and seen == []
    breaker.failure(0.1, "connection refused")
    assert breaker.state is State.OPEN
    assert seen == [(State.CLOSED, State.OPEN, "11 consecutive failures, last: connection refused")]


def test_an_error_rate_over_the_window_opens_it() -> None:
    breaker, seen = _breaker(failures=100, error_rate=0.5, window=10.0, min_commands=20)
    breaker.sent(0.0, 30)
    breaker.failure(1.0, "connection lost", commands=10)
    breaker.success()
    assert breaker.state is State.CLOSED  # 10 of 30
    breaker.failure(2.0, "connection lost", commands=6)
    assert breaker.state is State.OPEN  # 16 of 30
    assert seen[-1][2] == "16 of 30 commands failed, last: connection lost"


def test_the_rate_needs_enough_commands_and_forgets_old_ones() -> None:
    breaker, _ = _breaker(failures=100, error_rate=0.5, window=10.0, min_commands=20)
    breaker.failure(0.0, "x", commands=5)
    assert breaker.state is State.CLOSED  # 5 of 5, but under min_commands
    breaker.sent(0.0, 100)
    breaker.failure(0.5, "x", commands=40)
    assert breaker.state is State.CLOSED  # 45 of 105
    # Eleven seconds later the first burst has left the window: 15 of 15 is still too few.
    breaker.failure(11.5, "x", commands=15)
    assert breaker.state is State.CLOSED
    breaker.failure(11.6, "x", commands=10)
    assert breaker.state is State.OPEN  # 25 of 25


def test_open_turns_half_open_after_the_reset_timeout_with_jitter() -> None:
    settings = BreakerSettings(failures=1, reset_timeout=2.0)
    breaker = CircuitBreaker(settings, random=lambda: 1.0)  # the longest jitter: x1.5
    breaker.failure(10.0, "x")
    assert breaker.retry_at == 13.0
    assert not breaker.probe_due(12.9) and breaker.state is State.OPEN
    assert breaker.probe_due(13.0) and breaker.state is State.HALF_OPEN
    assert not breaker.allows  # commands still wait; only probes go


def test_enough_successful_probes_close_it() -> None:
    breaker, seen = _breaker(failures=1, reset_timeout=1.0, successes=2)
    breaker.failure(0.0, "x")
    assert breaker.probe_due(1.0)
    breaker.success()
    assert breaker.state is State.HALF_OPEN
    breaker.success()
    assert breaker.state is State.CLOSED and breaker.allows
    assert [new for _, new, _ in seen] == [State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_a_failed_probe_opens_it_again_for_twice_as_long_up_to_eight_times() -> None:
    breaker, seen = _breaker(failures=1, reset_timeout=1.0, successes=2)
    breaker.failure(0.0, "x")
    breaker.probe_due(1.0)
    breaker.success()
    breaker.failure(1.2, "timed out")
    assert breaker.state is State.OPEN and breaker.retry_at == 3.2
    assert seen[-1] == (State.HALF_OPEN, State.OPEN, "probe failed: timed out")
    breaker.probe_due(3.2)
    breaker.success()
    assert breaker.state is State.HALF_OPEN  # the earlier probe's success no longer counts
    waits = []
    now = 3.2
    for _ in range(5):
        breaker.failure(now, "refused")
        waits.append(breaker.retry_at - now)
        now = breaker.retry_at
        assert breaker.probe_due(now)
    assert waits == pytest.approx([4.0, 8.0, 8.0, 8.0, 8.0])
    breaker.success()
    breaker.success()
    assert breaker.state is State.CLOSED
    breaker.failure(now, "again")
    assert breaker.retry_at - now == pytest.approx(1.0)  # closing forgot the doublings


def test_settings_come_from_the_upstream_config() -> None:
    config = UpstreamConfig(
        breaker_failures=7, breaker_error_percent=25, breaker_window=30.0,
        breaker_min_commands=50, breaker_reset_timeout=3.0, breaker_successes=4,
    )  # fmt: skip
    assert BreakerSettings.from_config(config) == BreakerSettings(7, 0.25, 30.0, 50, 3.0, 4)
