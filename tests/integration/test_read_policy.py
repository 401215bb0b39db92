"""The read policy against a real cluster: where reads go, and what happens when replicas die.

Which node ran a command is read from the nodes' own ``INFO commandstats``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster, LocalNode

if TYPE_CHECKING:
    from conftest import Ambassador

KEY = "read:{policy}"
READS = 20


@pytest.fixture(scope="module")
def read_cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as local:
        yield local


def _gets(cluster: LocalCluster, node: LocalNode) -> int:
    with cluster.client(node) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def _master_and_replica(cluster: LocalCluster) -> tuple[LocalNode, LocalNode]:
    master = cluster.master_for_slot(key_slot(KEY.encode()))
    with cluster.client(master) as client:
        client.set(KEY, "value")
        assert client.execute_command("WAIT", 1, 5000) == 1  # the replica has it
        replicas = client.info("replication")
    replica_port = int(replicas["slave0"]["port"])
    replica = next(node for node in cluster.nodes if node.port == replica_port)
    return master, replica


def _read_through(ambassador: Ambassador, n: int = READS) -> list[bytes | None]:
    with ambassador.client(single_connection_client=True, protocol=2) as client:
        return [client.get(KEY) for _ in range(n)]


@pytest.mark.parametrize(
    ("policy", "on_master", "on_replica"),
    [
        ("master", READS, 0),
        ("prefer-replica", 0, READS),
        ("replica", 0, READS),
        ("any", READS // 2, READS // 2),
    ],
)
def test_reads_go_where_the_policy_says(
    read_cluster: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    policy: str,
    on_master: int,
    on_replica: int,
) -> None:
    master, replica = _master_and_replica(read_cluster)
    ambassador = start_ambassador(read_cluster, extra_args=("--read-policy", policy))
    try:
        before = _gets(read_cluster, master), _gets(read_cluster, replica)
        assert _read_through(ambassador) == [b"value"] * READS
        after = _gets(read_cluster, master), _gets(read_cluster, replica)
        assert (after[0] - before[0], after[1] - before[1]) == (on_master, on_replica)
        # Writes still go to the master, whatever the policy.
        with ambassador.client(protocol=2) as client:
            assert client.set(KEY, "value") is True
            assert client.incr("read:{policy}:n") >= 1
    finally:
        ambassador.stop()


def test_prefer_replica_falls_back_to_the_master_when_the_replica_dies_and_replica_errs(
    start_ambassador: Callable[..., Ambassador],
) -> None:
    with LocalCluster() as local:
        master, replica = _master_and_replica(local)
        prefer = start_ambassador(local, extra_args=("--read-policy", "prefer-replica"))
        only = start_ambassador(local, extra_args=("--read-policy", "replica"))
        try:
            assert _read_through(prefer, 2) == [b"value"] * 2
            local.kill(replica)
            # Reads that were on their way to the replica are sent to the master instead: none
            # fails, before or after the replica's breaker opens.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert _read_through(prefer, 5) == [b"value"] * 5
            with prefer.client(protocol=2) as client:
                assert client.get(KEY) == b"value"
            # With "replica" the master never serves reads: once the replica's breaker is open
            # the client is told no replica is available.
            with only.client(single_connection_client=True, protocol=2) as client:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        client.get(KEY)
                    except redis.ResponseError as exc:
                        assert str(exc) == (
                            f"redis-ambassador: no replica of {master.address} available "
                            "(read_policy replica)"
                        )
                        break
                    assert time.monotonic() < deadline, "no error without a replica"
                    time.sleep(0.1)
        finally:
            prefer.stop()
            only.stop()
