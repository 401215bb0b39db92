"""An app that must survive a misbehaving Redis: it reserves stock for orders.

The two things it does right, which the chaos tests in ``test_inventory_chaos.py`` prove:

- It retries what Redis says is temporary (LOADING, TRYAGAIN, CLUSTERDOWN, a lost connection,
  a timeout), with a backoff and a deadline, and gives up on everything else.
- A retry is safe even when the first attempt was executed and only its reply was lost (a
  connection dropped after the node ran the command): a reservation is one Lua script that
  remembers the order, so running it twice reserves once.

Run against any Redis endpoint: ``python examples/inventory.py redis://127.0.0.1:6379``.
"""

from __future__ import annotations

import random
import sys
import time

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, TryAgainError
from redis.retry import Retry

# What may succeed if tried again. BusyLoadingError (LOADING) is a ConnectionError in redis-py.
TEMPORARY = (redis.ConnectionError, redis.TimeoutError, TryAgainError, ClusterDownError)

# Both keys share the {item} hash tag, so the script touches one slot (one node).
_RESERVE = """
local done = redis.call('GET', KEYS[2])
if done then return tonumber(done) end
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if left < wanted then return 0 end
redis.call('DECRBY', KEYS[1], wanted)
redis.call('SET', KEYS[2], wanted, 'EX', 86400)
return wanted
"""


def connect(url: str) -> redis.Redis:
    """A client whose only retries are the app's own (redis-py's would hide what we test)."""
    return redis.Redis.from_url(url, socket_timeout=1.0, retry=Retry(NoBackoff(), 0))


class Inventory:
    """Stock levels and idempotent reservations."""

    def __init__(self, client: redis.Redis, deadline: float = 20.0) -> None:
        self.client = client
        self.deadline = deadline  # seconds a call keeps retrying before it gives up
        self.retries = 0  # how many times a temporary failure was retried
        self._reserve = client.register_script(_RESERVE)

    def stock(self, item: str, quantity: int) -> None:
        self._retrying(lambda: self.client.set(f"stock:{{{item}}}", quantity))

    def left(self, item: str) -> int:
        return int(self._retrying(lambda: self.client.get(f"stock:{{{item}}}")) or 0)

    def reserve(self, item: str, quantity: int, order: str) -> bool:
        """Reserve ``quantity`` of ``item`` for ``order``, once however often it is called."""
        keys = [f"stock:{{{item}}}", f"reservation:{{{item}}}:{order}"]
        return bool(self._retrying(lambda: self._reserve(keys=keys, args=[quantity])))

    def _retrying(self, call):  # type: ignore[no-untyped-def]
        give_up = time.monotonic() + self.deadline
        pause = 0.01
        while True:
            try:
                return call()
            except TEMPORARY:
                if time.monotonic() + pause > give_up:
                    raise
                self.retries += 1
                time.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, 0.5)


def main(url: str) -> None:
    inventory = Inventory(connect(url))
    inventory.stock("widget", 100)
    for n in range(10):
        inventory.reserve("widget", 3, f"order-{n}")
    print(f"widgets left: {inventory.left('widget')} (retries: {inventory.retries})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379")
