"""The inventory app under chaos: the redis_ambassador pytest plugin starts a real Redis Cluster
and a chaos-enabled ambassador; each test points the app at it and makes Redis misbehave.

    pytest examples/test_inventory_chaos.py
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from inventory import Inventory, connect

if TYPE_CHECKING:
    from redis_ambassador.local.testing import Chaos

pytest_plugins = ["redis_ambassador.local.testing"]  # not needed once the package is installed

LOADING = "LOADING Redis is loading the dataset in memory"


@pytest.fixture
def item() -> str:
    """A new item for each test (the session's cluster keeps every test's keys)."""
    return f"widget-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def inventory(chaos: Chaos, item: str) -> Iterator[Inventory]:
    client = connect(chaos.url)
    inventory = Inventory(client)
    inventory.stock(item, 1000)
    yield inventory
    client.close()


def test_reservations_ride_out_loading_errors(
    chaos: Chaos, inventory: Inventory, item: str
) -> None:
    # Every other script call is answered LOADING, as a node restarting from disk would.
    with chaos.fault(command="@scripting", error=LOADING, probability=0.5) as fault:
        for n in range(50):
            assert inventory.reserve(item, 2, f"order-{n}")
    assert fault.hits > 0 and inventory.retries == fault.hits
    assert inventory.left(item) == 1000 - 2 * 50


def test_a_reply_lost_after_the_reservation_ran_does_not_reserve_twice(
    chaos: Chaos, inventory: Inventory, item: str
) -> None:
    # The node executes the script, then the connection drops before the reply: the app
    # cannot tell, retries, and the script's memory of the order keeps the stock right.
    with chaos.fault(command="@scripting", drop="after", count=5) as fault:
        for n in range(10):
            assert inventory.reserve(item, 10, f"order-{n}")
    assert fault.hits == 5 and inventory.retries >= 5
    assert inventory.left(item) == 1000 - 10 * 10


def test_reservations_continue_when_the_master_dies(
    chaos: Chaos, inventory: Inventory, item: str
) -> None:
    chaos.kill(chaos.master_for(f"stock:{{{item}}}"))
    # Commands fail until a replica is promoted (the cluster's node timeout, about 2 s); the
    # app's retries wait for it within their deadline.
    for n in range(10):
        assert inventory.reserve(item, 1, f"order-{n}")
    assert inventory.retries > 0
    chaos.wait_healthy()
    assert inventory.left(item) == 1000 - 10
