"""Sending commands again (routing/retries.py) on a fake clock: backoff within the retry policy,
parking until a usable master serves the slot, and the retry budget."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from fakes import MASTERS, Batch, FakeDial, FakeScheduler, config

from redis_ambassador import errors
from redis_ambassador.protocol.requests import encode_command
from redis_ambassador.routing.retries import Retries
from redis_ambassador.routing.stats import RouterStats
from redis_ambassador.upstream.connection import Entry
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.pool import NodePool, Upstream
from redis_ambassador.upstream.retry import Attempt

GET = encode_command([b"GET", b"k"])


class Retrying:
    """Retries whose random draws are all ``draw`` (1.0: each delay is its bound), with what
    it asks of the router recorded: ``owner`` is the pool a command goes to now (None: no
    master)."""

    def __init__(self, overrides: Mapping[str, object] | None = None, draw: float = 1.0) -> None:
        self.scheduler = FakeScheduler()
        settings = config({
            "upstream.retry_backoff": 0.1, "upstream.retry_max_backoff": 0.4,
            "upstream.retry_attempts": 4, "upstream.retry_deadline": 5.0, **(overrides or {}),
        })  # fmt: skip
        upstream = Upstream(
            settings.upstream, Credentials(), self.scheduler, FakeDial(self.scheduler)
        )
        self.pool = upstream.pool(MASTERS[0])
        self.owner: NodePool | None = self.pool
        self.sent = 0  # commands written to the nodes so far (the budget grows with them)
        self.delivered: list[Entry] = []
        self.failed: list[tuple[Entry, bytes]] = []
        self.refreshes = 0
        self.stats = RouterStats(self.scheduler.time())
        self.retries = Retries(
            settings.upstream, self.scheduler, self.stats, lambda frame, address: self.owner,
            self._deliver, lambda entry, reply: self.failed.append((entry, reply)),
            self._refresh, lambda: self.sent, errors.CLUSTERDOWN_UNCOVERED, rand=lambda: draw,
        )  # fmt: skip

    def _deliver(self, pool: NodePool, lane: int, entry: Entry) -> None:
        assert pool is self.owner and lane == 0
        self.delivered.append(entry)

    def _refresh(self) -> None:
        self.refreshes += 1


def entry() -> Entry:
    return (Batch(), 0, GET, 0)  # type: ignore[return-value]


def test_a_retry_waits_a_bound_that_doubles_up_to_the_cap_until_attempts_run_out() -> None:
    run = Retrying({"upstream.retry_budget_floor": 1000})
    sending = entry()
    delays = []
    while run.retries.retry(MASTERS[0], sending):
        [delay] = run.scheduler.timers
        run.scheduler.advance(delay - 0.001)
        assert run.delivered == []
        run.scheduler.advance(0.001)
        [sending] = run.delivered
        run.delivered.clear()
        delays.append(delay)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.4])  # retry_attempts 4, max_backoff 0.4
    attempt = sending[3]
    assert isinstance(attempt, Attempt) and attempt.retries == 4
    assert run.stats.retries == 4


def test_no_retry_waits_past_the_commands_deadline() -> None:
    run = Retrying({"upstream.retry_deadline": 0.25, "upstream.retry_budget_floor": 1000})
    assert run.retries.retry(None, entry())
    run.scheduler.advance(0.1)
    [again] = run.delivered
    assert run.retries.retry(None, again)
    assert run.scheduler.timers == [pytest.approx(0.15)]  # not 0.2: the deadline comes first
    run.scheduler.advance(0.15)
    assert not run.retries.retry(None, run.delivered[-1])


def test_a_parked_command_is_sent_at_once_on_wake_and_spends_no_budget() -> None:
    run = Retrying({"upstream.retry_budget_percent": 0, "upstream.retry_budget_floor": 0})
    run.owner = None  # no master serves the slot yet
    waiting = entry()
    assert run.retries.park(None, waiting)
    assert run.scheduler.timers == [pytest.approx(0.1)]
    run.owner = run.pool  # a new slot map came
    run.retries.wake()
    assert [e[:3] for e in run.delivered] == [waiting[:3]]
    run.scheduler.advance(1.0)  # its timer was cancelled: it is not sent twice
    assert len(run.delivered) == 1 and run.failed == []


def test_a_parked_command_with_no_master_by_its_deadline_gets_clusterdown() -> None:
    run = Retrying({"upstream.retry_deadline": 1.0})
    run.owner = None
    assert run.retries.park(None, entry())
    run.scheduler.advance(0.99)
    assert run.failed == [] and run.refreshes > 0  # it looked again, asking for a refresh
    run.scheduler.advance(0.02)
    [(_, reply)] = run.failed
    assert reply == b"-CLUSTERDOWN Hash slot not served\r\n"


def test_retries_beyond_the_budget_fail_with_the_reason() -> None:
    run = Retrying({"upstream.retry_budget_percent": 50, "upstream.retry_budget_floor": 0})
    run.sent = 4  # half of 4 commands: 2 retries
    for _ in range(3):
        assert run.retries.retry(MASTERS[0], entry())
    run.scheduler.advance(0.1)
    assert len(run.delivered) == 2
    [(_, reply)] = run.failed
    exhausted = b"-ERR redis-ambassador: node 127.0.0.1:7000 unavailable: retry budget exhausted"
    assert reply == exhausted + b"\r\n"
    assert run.stats.budget_exhausted == 1


def test_a_new_retry_budget_starts_with_its_floors_tokens() -> None:
    # A zero jitter draw: the retry goes at once, with no time to earn a token.
    run = Retrying({"upstream.retry_budget_percent": 0, "upstream.retry_budget_floor": 100}, 0.0)
    assert run.retries.retry(MASTERS[0], entry())
    run.scheduler.advance(0.0)
    assert run.failed == [] and len(run.delivered) == 1
