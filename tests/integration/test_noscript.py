"""Scripts through the ambassador: a NOSCRIPT on a node that lost a script is healed."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import redis
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador


def test_evalsha_of_a_script_a_node_lost_is_loaded_there_and_run(
    cluster: LocalCluster, ambassador: Ambassador
) -> None:
    client = ambassador.client()
    token = uuid.uuid4().hex  # a script of this test's own
    body = f"return 'ran {token} ' .. KEYS[1]"
    key = f"s{token[:8]}"
    node = cluster.client(cluster.master_for_slot(key_slot(key.encode())))
    # Seen in an EVAL (cached only where it ran), then lost there (a restart, a failover, a flush).
    expected = f"ran {token} {key}".encode()
    assert client.eval(body, 1, key) == expected
    sha = client.script_load(body)
    node.script_flush()
    assert node.script_exists(sha) == [False]
    assert client.evalsha(sha, 1, key) == expected
    assert node.script_exists(sha) == [True]


def test_evalsha_of_a_script_never_seen_gets_the_nodes_noscript(
    cluster: LocalCluster, ambassador: Ambassador
) -> None:
    sha = "f" * 40
    with pytest.raises(redis.exceptions.NoScriptError, match=r"^No matching script"):
        ambassador.client().evalsha(sha, 1, "k")
    with pytest.raises(redis.exceptions.NoScriptError, match=r"^No matching script"):
        cluster.client(cluster.master_for_slot(key_slot(b"k"))).evalsha(sha, 1, "k")
