"""The slot table (routing/owners.py): made from a slot map, asked for keys' owners, any master
and why not every slot can be served."""

from __future__ import annotations

import pytest
from fakes import KEY_ON, MASTERS, FakeDial, FakeScheduler, config, three_masters

from redis_ambassador import errors
from redis_ambassador.routing.owners import Owners
from redis_ambassador.slots import key_slot
from redis_ambassador.topology.slotmap import SlotMap
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.pool import Upstream

B, C, A = KEY_ON  # keys on the first, second and third master


class Table:
    """Owners over an Upstream with a fake dialer, its refresh requests counted."""

    def __init__(self, slot_map: SlotMap | None = None, backend: str = "cluster") -> None:
        scheduler = FakeScheduler()
        settings = config()
        self.upstream = Upstream(settings.upstream, Credentials(), scheduler, FakeDial(scheduler))
        self.upstream.on_breaker = lambda pool, state: None  # the router's business
        self.refreshes = 0
        self.owners = Owners(
            self.upstream, MASTERS[:1], key_slot, errors.CLUSTERDOWN_UNCOVERED, backend,
            self._refresh,
        )  # fmt: skip
        self.owners.apply(slot_map or three_masters(), MASTERS[:1])

    def _refresh(self) -> None:
        self.refreshes += 1

    def open_breaker(self, master: int) -> None:
        breaker = self.upstream.pool(MASTERS[master]).breaker
        for _ in range(breaker.settings.failures):
            breaker.failure(0.0, "connection refused")
        assert not breaker.allows


def without(slots: range) -> SlotMap:
    """three_masters() with no master for ``slots``."""
    owners = list(three_masters().owners)
    owners[slots.start : slots.stop] = [None] * len(slots)
    return SlotMap(tuple(owners))


def test_keys_in_one_slot_go_to_its_master() -> None:
    table = Table()
    for master, key in enumerate(KEY_ON):
        pool = table.owners.owner_of([key, b"{%b}other" % key])
        assert not isinstance(pool, bytes) and pool.address == MASTERS[master]
    assert table.refreshes == 0


def test_keys_in_several_slots_get_crossslot() -> None:
    assert Table().owners.owner_of([A, B]) == errors.CROSSSLOT


def test_a_slot_without_a_master_gets_the_uncovered_error_and_asks_for_a_refresh() -> None:
    slot = key_slot(A)
    table = Table(without(range(slot, slot + 1)))
    assert table.owners.owner_of([A]) == b"-CLUSTERDOWN Hash slot not served\r\n"
    assert table.refreshes == 1
    assert table.owners.covered == 16383


def test_any_master_takes_the_masters_in_turn_skipping_open_breakers() -> None:
    table = Table()
    turns = [table.owners.any_master() for _ in range(6)]
    assert turns[:3] == turns[3:] and {pool.address for pool in turns if pool} == set(MASTERS)
    table.open_breaker(1)
    chosen = {pool.address for _ in range(6) if (pool := table.owners.any_master())}
    assert chosen == {MASTERS[0], MASTERS[2]}
    table.open_breaker(0)
    table.open_breaker(2)
    assert table.owners.any_master() is not None  # none usable: one still answers the error


def test_unready_says_why_not_every_slot_can_be_served() -> None:
    table = Table()
    assert table.owners.unready() is None
    table.open_breaker(2)
    down = "masters unreachable (circuit breaker open): 127.0.0.1:7002"
    assert table.owners.unready() == down
    assert Table(without(range(0, 100))).owners.unready() == "100 of 16384 slots have no master"
    alone = Table(SlotMap((None,) * 16384), backend="sentinel")
    assert alone.owners.unready() == "no master (backend sentinel)"


@pytest.mark.parametrize("busy", [False, True])
def test_a_node_that_left_the_map_loses_its_pool_once_idle(busy: bool) -> None:
    table = Table()
    leaving = table.upstream.pool(MASTERS[2])
    if busy:
        leaving.conns[0].queue.append((None, 0, b"", 0))  # a reply still owed
    two = SlotMap(tuple(MASTERS[0] if s < 8192 else MASTERS[1] for s in range(16384)))
    table.owners.apply(two, MASTERS[:1])
    assert (MASTERS[2] in table.upstream.pools) is busy
    assert {pool.address for pool in table.owners.masters} == set(MASTERS[:2])
