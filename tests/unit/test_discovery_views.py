"""Choosing among the nodes' views of the cluster (sans-IO), and the discovery loop around it
with the network replaced by a function (which node answers what)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import anyio
import pytest

from redis_ambassador.config import Address, AddressMap
from redis_ambassador.topology import discovery
from redis_ambassador.topology.discovery import View, choose, config_epoch
from redis_ambassador.topology.slotmap import SLOTS, ClusterUnreachable, SlotMap
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.names import Names


def at(port: int, host: str = "127.0.0.1") -> Address:
    return Address(host, port)


def one_master(master: Address, nodes: dict[str, Address] | None = None) -> SlotMap:
    return SlotMap((master,) * SLOTS, nodes=nodes or {"m": master})


# CLUSTER NODES as Redis 7 writes it: id addr flags master ping pong epoch link slots...
NODES_BEFORE_FAILOVER = b"""\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383
c3 127.0.0.1:7002@17002 slave a1 0 0 1 connected
"""
NODES_AFTER_FAILOVER = b"""\
a1 127.0.0.1:7000@17000 master,fail - 0 0 1 disconnected
b2 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 8192-16383
c3 127.0.0.1:7002@17002 master - 0 0 7 connected 0-8191
d4 127.0.0.1:7003@17003,node-d.example master - 0 0 9 connected
"""


def test_the_epoch_is_the_highest_of_the_masters_serving_slots() -> None:
    assert config_epoch(NODES_BEFORE_FAILOVER) == 2
    # The promoted replica's new epoch counts; the failed master and a master without slots
    # (epoch 9, a hostname in its address field) do not.
    assert config_epoch(NODES_AFTER_FAILOVER) == 7
    assert config_epoch(b"") == 0


def test_the_view_with_the_highest_epoch_wins_wherever_it_was_asked() -> None:
    stale = View(one_master(at(7000)), epoch=2, via=at(7001))
    fresh = View(one_master(at(7002)), epoch=7, via=at(7002))
    assert choose([stale, fresh]).slot_map.owners[0] == at(7002)
    assert choose([fresh, stale]).slot_map.owners[0] == at(7002)


def test_on_equal_epochs_the_view_serving_more_slots_wins_then_the_first() -> None:
    partial = SlotMap((at(7000),) * 100 + (None,) * (SLOTS - 100))
    complete = one_master(at(7001))
    assert choose([View(partial, 3, at(1)), View(complete, 3, at(2))]).via == at(2)
    other = one_master(at(7002))
    assert choose([View(complete, 3, at(2)), View(other, 3, at(3))]).via == at(2)


def test_nodes_only_other_views_know_are_kept_and_the_winner_says_where_a_node_is() -> None:
    winner = one_master(at(7000), {"a": at(7000), "moved": at(7100)})
    loser = one_master(at(7000), {"a": at(7000), "moved": at(7005), "only-here": at(7009)})
    chosen = choose([View(loser, 1, at(1)), View(winner, 2, at(2))])
    assert chosen.slot_map.nodes == {"a": at(7000), "moved": at(7100), "only-here": at(7009)}


# -- the loop, with fetch_view replaced ------------------------------------------------------


HANGS = TimeoutError("a node that accepts the connection and never answers")


def run_discover(
    monkeypatch: pytest.MonkeyPatch,
    answers: dict[Address, View | Exception],
    candidates: Sequence[Address],
    wanted: int,
    lookup: dict[str, list[str]] | None = None,
    address_map: AddressMap | None = None,
    timeout: float = 5.0,
) -> tuple[discovery.Discovered, list[Address]]:
    asked: list[Address] = []

    async def fetch(
        address: Address, timeout: float, credentials: Credentials, tls: object, announced: Address
    ) -> View:
        asked.append(address)
        answer = answers.get(address, ConnectionRefusedError("refused"))
        if answer is HANGS:
            await anyio.sleep(timeout)
            raise TimeoutError("timed out")
        if isinstance(answer, Exception):
            raise answer
        return dataclasses.replace(answer, via_named=announced)  # as fetch_view makes it

    monkeypatch.setattr(discovery, "fetch_view", fetch)
    names = Names(lambda host, port: (lookup or {})[host], 1.0, 1.0)
    found = anyio.run(
        discovery.discover,
        candidates,
        names,
        timeout,
        wanted,
        address_map or AddressMap(),
        Credentials(),
    )
    return found, asked


def test_a_node_failing_in_any_way_is_that_nodes_failure_and_the_next_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node dying while redis-py connects surfaces as uvloop's RuntimeError, not only as a
    RedisError or OSError (an exception escaping here once stopped the whole ambassador)."""
    good = View(one_master(at(2)), 1, at(2))
    answers: dict[Address, View | Exception] = {
        at(1): RuntimeError("unable to perform operation on <TCPTransport closed=True>"),
        at(2): good,
    }
    found, asked = run_discover(monkeypatch, answers, [at(1), at(2)], wanted=1)
    assert (found.via, found.answered) == (at(2), 1)
    assert asked == [at(1), at(2)]
    with pytest.raises(ClusterUnreachable, match=r"1: unable to perform.*:3: refused"):
        run_discover(monkeypatch, answers, [at(1), at(3)], wanted=1)


def test_several_nodes_are_asked_and_the_freshest_view_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: dict[Address, View | Exception] = {
        at(1): View(one_master(at(1)), 1, at(1)),
        at(2): View(one_master(at(5)), 4, at(2)),  # saw a failover the first has not
        at(3): View(one_master(at(1)), 1, at(3)),
        at(4): View(one_master(at(1)), 1, at(4)),
    }
    found, asked = run_discover(monkeypatch, answers, [at(9), at(1), at(2), at(3), at(4)], 3)
    assert found.slot_map.owners[0] == at(5)
    assert (found.epoch, found.answered) == (4, 3)
    # 9 refused, so a fourth node was asked to make three answers; the fifth never was.
    assert sorted(asked, key=lambda a: a.port) == [at(1), at(2), at(3), at(9)]


def test_a_seed_name_is_asked_at_each_of_its_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: dict[Address, View | Exception] = {
        at(6379, "10.0.0.2"): View(one_master(at(6379, "10.0.0.2")), 1, at(6379, "10.0.0.2")),
    }
    lookup = {"redis.example": ["10.0.0.1", "10.0.0.2"]}
    found, asked = run_discover(monkeypatch, answers, [at(6379, "redis.example")], 3, lookup=lookup)
    assert set(asked) == {at(6379, "10.0.0.1"), at(6379, "10.0.0.2")}
    assert found.via == at(6379, "10.0.0.2")
    # The name it was asked by goes with it: a TLS certificate is checked for the name.
    assert found.via_named == at(6379, "redis.example")


def test_announced_addresses_are_mapped_in_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    announced = at(6379, "172.18.0.2")
    view = View(SlotMap((announced,) * SLOTS, nodes={"a": announced}), 1, at(7000))
    mapping = AddressMap(((announced, at(7000)),))
    found, _ = run_discover(monkeypatch, {at(7000): view}, [at(7000)], 1, address_map=mapping)
    assert found.slot_map.masters == {at(7000)}
    assert found.slot_map.nodes == {"a": at(7000)}


def test_a_hung_node_costs_a_refresh_the_grace_not_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: dict[Address, View | Exception] = {
        at(1): HANGS,
        at(2): View(one_master(at(2)), 1, at(2)),
    }
    started = time.monotonic()
    found, _ = run_discover(monkeypatch, answers, [at(1), at(2)], wanted=3)
    elapsed = time.monotonic() - started
    assert found.via == at(2) and found.answered == 1
    assert elapsed < discovery.STRAGGLER_GRACE + 1.0 < 5.0, elapsed  # 5 s: the timeout
    # With nobody answering, the timeout is waited out, and every problem named.
    with pytest.raises(ClusterUnreachable, match=r"(?=.*:1: timed out)(?=.*:3: refused)"):
        run_discover(monkeypatch, {at(1): HANGS}, [at(1), at(3)], wanted=3, timeout=0.5)
