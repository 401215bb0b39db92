"""The retry policy decides from counts alone, so it is tested without sockets or clocks."""

from __future__ import annotations

from redis_ambassador.config import UpstreamConfig
from redis_ambassador.upstream.retry import RetryPolicy


def test_redirections_are_followed_up_to_max_redirects_then_shown_to_the_client() -> None:
    policy = RetryPolicy(max_redirects=3, attempts=5, backoff=0.05)
    assert [policy.follows_redirect(h) for h in range(5)] == [True, True, True, False, False]


def test_retry_delay_doubles_from_backoff_and_is_capped() -> None:
    policy = RetryPolicy(max_redirects=5, attempts=10, backoff=0.05, max_delay=1.0)
    delays = [policy.retry_delay(h) for h in range(8)]
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_retries_stop_after_the_configured_attempts() -> None:
    policy = RetryPolicy(max_redirects=5, attempts=2, backoff=0.01)
    assert policy.retry_delay(0) is not None
    assert policy.retry_delay(1) is not None
    assert policy.retry_delay(2) is None


def test_zero_attempts_means_the_error_goes_straight_to_the_client() -> None:
    assert RetryPolicy(max_redirects=0, attempts=0, backoff=0.05).retry_delay(0) is None
    assert not RetryPolicy(max_redirects=0, attempts=0, backoff=0.05).follows_redirect(0)


def test_policy_comes_from_the_upstream_config() -> None:
    config = UpstreamConfig(max_redirects=7, tryagain_attempts=4, tryagain_backoff=0.2)
    assert RetryPolicy.from_config(config) == RetryPolicy(7, 4, 0.2)
