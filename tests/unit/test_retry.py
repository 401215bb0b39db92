"""Retry decisions and the retry budget, with a fake clock and a fixed random source."""

from __future__ import annotations

import pytest

from redis_ambassador.config import UpstreamConfig
from redis_ambassador.upstream.retry import NEVER, Attempt, RetryBudget, RetryPolicy


def _policy(**changes: object) -> RetryPolicy:
    settings: dict[str, object] = {
        "max_redirects": 5, "attempts": 10, "backoff": 0.05, "max_backoff": 1.0, "deadline": 5.0,
    }  # fmt: skip
    settings.update(changes)
    return RetryPolicy(**settings)  # type: ignore[arg-type]


def test_a_fresh_command_gets_its_attempt_and_deadline_on_its_first_retry() -> None:
    policy = _policy(deadline=3.0)
    attempt = policy.attempt(0, now=100.0)
    assert (attempt.deadline, attempt.redirects, attempt.retries) == (103.0, 0, 0)
    assert policy.attempt(attempt, now=150.0) is attempt  # kept, deadline unchanged


def test_redirections_are_followed_up_to_max_redirects_then_shown_to_the_client() -> None:
    policy = _policy(max_redirects=3)
    follows = [policy.follows_redirect(Attempt(10.0, redirects=n)) for n in range(5)]
    assert follows == [True, True, True, False, False]
    assert not _policy(max_redirects=0).follows_redirect(Attempt(10.0))


def test_delays_are_full_jitter_under_a_doubling_capped_bound() -> None:
    policy = _policy(backoff=0.05, max_backoff=1.0, deadline=100.0)
    top = [policy.retry_delay(Attempt(100.0, retries=n), 0.0, lambda: 1.0) for n in range(8)]
    assert top == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    half = policy.retry_delay(Attempt(100.0, retries=3), 0.0, lambda: 0.5)
    assert half == pytest.approx(0.2)
    assert policy.retry_delay(Attempt(100.0, retries=3), 0.0, lambda: 0.0) == 0.0


def test_retries_stop_after_the_configured_attempts() -> None:
    policy = _policy(attempts=2)
    assert policy.retry_delay(Attempt(10.0, retries=1), 0.0, lambda: 0.5) is not None
    assert policy.retry_delay(Attempt(10.0, retries=2), 0.0, lambda: 0.5) is None
    assert _policy(attempts=0).retry_delay(Attempt(10.0), 0.0, lambda: 0.5) is None


def test_retries_stop_at_the_deadline_and_never_wait_past_it() -> None:
    policy = _policy(backoff=1.0, max_backoff=1.0)
    attempt = Attempt(deadline=10.0, retries=3)
    assert policy.retry_delay(attempt, 9.7, lambda: 1.0) == pytest.approx(0.3)
    assert policy.retry_delay(attempt, 10.0, lambda: 1.0) is None


def test_never_is_never_retried_nor_redirected() -> None:
    policy = _policy()
    assert policy.retry_delay(NEVER, 0.0, lambda: 0.5) is None
    assert not policy.follows_redirect(NEVER)


def test_only_reads_and_declared_idempotent_writes_are_replayed_after_a_lost_reply() -> None:
    policy = _policy(idempotent=frozenset({"set", "config|get"}))
    assert policy.replays_after_loss("get", frozenset({"readonly", "fast"}))
    assert policy.replays_after_loss("set", frozenset({"write"}))
    assert not policy.replays_after_loss("incr", frozenset({"write", "fast"}))
    assert policy.replays_after_loss("config|get", frozenset())
    assert not policy.replays_after_loss("config|set", frozenset())


def test_policy_comes_from_the_upstream_config() -> None:
    config = UpstreamConfig(
        max_redirects=7, retry_attempts=4, retry_backoff=0.2, retry_max_backoff=2.0,
        retry_deadline=9.0, idempotent=("set",),
    )  # fmt: skip
    assert RetryPolicy.from_config(config) == RetryPolicy(7, 4, 0.2, 2.0, 9.0, frozenset({"set"}))


def test_the_budget_allows_its_floor_per_second_without_traffic() -> None:
    budget = RetryBudget(ratio=0.2, floor=10, now=0.0, window=10.0)
    # It starts with one window of the floor (100 retries), then earns 10 per second.
    assert sum(budget.spend(0.0, sent=0) for _ in range(150)) == 100
    assert sum(budget.spend(1.0, sent=0) for _ in range(50)) == 10


def test_the_budget_grows_with_traffic_at_its_ratio() -> None:
    budget = RetryBudget(ratio=0.2, floor=0, now=0.0, window=10.0)
    assert not budget.spend(0.0, sent=0)
    # 1,000 commands sent earn 200 retries.
    assert sum(budget.spend(0.5, sent=1000) for _ in range(300)) == 200


def test_a_quiet_period_does_not_save_up_an_avalanche() -> None:
    budget = RetryBudget(ratio=0.2, floor=1, now=0.0, window=10.0)
    for _ in range(10):
        budget.spend(0.0, sent=0)
    # An hour of nothing earns at most one window of the floor.
    assert sum(budget.spend(3600.0, sent=0) for _ in range(100)) == 10
