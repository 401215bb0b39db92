"""The fault injector (faults/inject.py) carrying out rules (faults/rules.py) on a fake clock:
what the node gets, what the client gets, and when."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from fakes import Batch, FakeClient, FakeScheduler, bulk

from redis_ambassador.faults.inject import Catch, Injector
from redis_ambassador.faults.rules import Command, Faults, Rule
from redis_ambassador.upstream.collector import Collector

GET = Command("get", frozenset(["@read"]), [b"k"], 7629, "127.0.0.1:7000")
REPLY = bulk(b"v")


class Injected:
    """One Injector with one rule, a client and what the injector asked for: commands sent on
    (with the collector the node's reply goes to) and forged redirections."""

    def __init__(self, rule: Mapping[str, Any], seed: int = 7) -> None:
        self.scheduler = FakeScheduler()
        self.faults = Faults(seed, clock=self.scheduler.time)
        self.faults.add(rule)
        self.injector = Injector(self.faults, False, self.scheduler)
        self.client = FakeClient()
        self.sent: list[Collector] = []
        self.redirects: list[Rule] = []
        self.batch = Batch()

    def inject(self, command: Command = GET) -> bool:
        """The router's question before sending ``command``: True if a rule took it over."""
        return self.injector.inject(
            self.client, command, self.batch, 0, self.sent.append, self.redirects.append
        )

    def node_answers(self, reply: bytes = REPLY) -> None:
        """The node's reply to the command sent on, into the collector it was sent with."""
        [catch] = self.sent
        assert isinstance(catch, Catch)
        catch.replies[0] = reply  # as NodeConnection.data_received does
        catch.remaining -= 1
        catch.complete()


def test_an_error_rule_answers_the_client_and_sends_nothing() -> None:
    run = Injected({"command": "get", "error": "LOADING Redis is loading"})
    assert run.inject()
    assert run.batch.replies == [b"-LOADING Redis is loading\r\n"]
    assert run.sent == [] and run.client.cuts == []


def test_a_delay_rule_sends_at_once_and_holds_the_reply_until_the_clock_has_moved() -> None:
    run = Injected({"command": "get", "delay_ms": 200})
    assert run.inject()
    run.node_answers()
    assert run.batch.replies == [None]
    run.scheduler.advance(0.199)
    assert run.batch.replies == [None]
    run.scheduler.advance(0.001)
    assert run.batch.replies == [REPLY]


def test_an_error_rule_with_a_delay_answers_when_the_delay_is_over() -> None:
    run = Injected({"command": "get", "delay_ms": 50, "error": "ERR slow no"})
    assert run.inject()
    assert run.batch.replies == [None] and run.scheduler.timers == [pytest.approx(0.05)]
    run.scheduler.advance(0.05)
    assert run.batch.replies == [b"-ERR slow no\r\n"] and run.sent == []


def test_a_timeout_rule_sends_the_command_and_swallows_its_reply() -> None:
    run = Injected({"command": "get", "timeout": True})
    assert run.inject()
    run.node_answers()
    run.scheduler.advance(3600)
    assert run.batch.replies == [None] and run.client.cuts == []


@pytest.mark.parametrize(("action", "reset"), [("drop", False), ("reset", True)])
def test_a_drop_before_cuts_the_client_and_sends_nothing(action: str, reset: bool) -> None:
    run = Injected({"command": "get", action: "before"})
    assert run.inject()
    assert run.client.cuts == [reset] and run.sent == []


@pytest.mark.parametrize(("action", "reset"), [("drop", False), ("reset", True)])
def test_a_drop_after_sends_the_command_then_cuts_the_client_instead_of_replying(
    action: str, reset: bool
) -> None:
    run = Injected({"command": "get", action: "after"})
    assert run.inject()
    assert len(run.sent) == 1 and run.client.cuts == []
    run.node_answers()
    assert run.client.cuts == [reset] and run.batch.replies == [None]


def test_a_redirect_rule_has_the_redirection_forged() -> None:
    run = Injected({"command": "get", "redirect": "ask", "to": "wrong"})
    assert run.inject()
    [rule] = run.redirects
    assert (rule.action, rule.spec["redirect"], rule.spec["to"]) == ("redirect", "ask", "wrong")
    assert run.sent == [] and run.batch.replies == [None]


def test_a_bandwidth_rule_paces_the_client_then_passes_the_reply_on() -> None:
    run = Injected({"command": "get", "bandwidth": 1000})
    assert run.inject()
    run.node_answers()
    assert run.client.paced == [(10, 0.01)]  # 1000 bytes a second: 10 every 10 ms
    assert run.batch.replies == [REPLY]


def test_a_rule_for_other_commands_leaves_the_command_alone() -> None:
    run = Injected({"command": "set", "error": "ERR no"})
    assert not run.inject()
    assert (run.sent, run.batch.replies) == ([], [None])


def test_a_rule_fires_count_times_then_lets_commands_through() -> None:
    run = Injected({"command": "get", "error": "ERR no", "count": 2})
    assert [run.inject() for _ in range(4)] == [True, True, False, False]
    [rule] = run.faults.rules
    assert (rule.hits, rule.spent) == (2, True)


def test_a_rules_probability_draws_are_replayed_by_its_seed() -> None:
    def fired(seed: int) -> list[bool]:
        run = Injected({"command": "get", "error": "ERR no", "probability": 0.5}, seed)
        return [run.inject() for _ in range(40)]

    first = fired(seed=7)
    assert fired(seed=7) == first
    assert 5 < sum(first) < 35  # about half
    assert fired(seed=8) != first
