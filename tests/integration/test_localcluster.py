"""The local Redis Cluster launcher, checked against real redis-server processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import MovedError

from redis_ambassador.local.cluster import (
    SLOT_COUNT,
    LocalCluster,
    LocalClusterError,
    LocalNode,
    RedisServerNotFound,
)


@pytest.fixture
def scratch() -> Iterator[LocalCluster]:
    """A private 3+3 cluster for tests that break things."""
    with LocalCluster() as local:
        yield local


def _process_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _flags_seen_by(cluster: LocalCluster, observer: LocalNode, target: LocalNode) -> str:
    """The flags field of `target` in `observer`'s CLUSTER NODES."""
    for line in cluster.client(observer).execute_command("CLUSTER", "NODES").decode().splitlines():
        fields = line.split()
        if fields[0] == target.node_id:
            return fields[2]
    raise AssertionError(f"{observer.address} does not know {target.address}")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.05)


def _slot_owners(cluster: LocalCluster, node: LocalNode) -> dict[int, int]:
    """Map every slot to its master's port, as `node` sees it."""
    owners: dict[int, int] = {}
    for start, end, master, *_replicas in cluster.client(node).execute_command("CLUSTER", "SLOTS"):
        for slot in range(start, end + 1):
            owners[slot] = int(master[1])
    return owners


def test_cluster_forms_with_every_slot_served(cluster: LocalCluster) -> None:
    masters, replicas = cluster.masters(), cluster.replicas()
    assert len(masters) == 3
    assert len(replicas) == 3
    assert sorted(cluster.seeds) == sorted(m.address for m in masters)
    master_ports = {m.port for m in masters}
    views = [_slot_owners(cluster, node) for node in cluster.nodes]
    assert len(views[0]) == SLOT_COUNT
    assert set(views[0].values()) == master_ports
    assert all(view == views[0] for view in views)
    for slot in (0, 5461, 5462, 16383):
        assert cluster.master_for_slot(slot).port == views[0][slot]


def test_each_master_has_one_synced_replica(cluster: LocalCluster) -> None:
    for master in cluster.masters():
        info = cluster.client(master).info("replication")
        assert info["role"] == "master"
        assert info["connected_slaves"] == 1
    for replica in cluster.replicas():
        info = cluster.client(replica).info("replication")
        assert info["role"] == "slave"
        assert info["master_link_status"] == "up"
        assert info["master_port"] in {m.port for m in cluster.masters()}


def test_keys_live_on_the_master_owning_their_slot(cluster: LocalCluster) -> None:
    keys = [f"localcluster:{i}".encode() for i in range(50)]
    try:
        for key in keys:
            owner = cluster.master_for_slot(key_slot(key))
            client = cluster.client(owner)
            assert client.set(key, b"v:" + key)
            assert client.get(key) == b"v:" + key
            stranger = next(m for m in cluster.masters() if m.port != owner.port)
            with pytest.raises(MovedError) as moved:
                cluster.client(stranger).get(key)
            assert (moved.value.slot_id, moved.value.port) == (key_slot(key), owner.port)
    finally:
        for key in keys:
            cluster.client(cluster.master_for_slot(key_slot(key))).delete(key)


def test_failover_swaps_replica_and_master(scratch: LocalCluster) -> None:
    replica = scratch.replicas()[0]
    old_master_port = scratch.client(replica).info("replication")["master_port"]
    slot = next(s for s, port in _slot_owners(scratch, replica).items() if port == old_master_port)

    scratch.failover(replica)

    assert replica.role == "master"
    assert scratch.client(replica).info("replication")["role"] == "master"
    old_master = next(n for n in scratch.nodes if n.port == old_master_port)
    assert old_master.role == "replica"
    old_info = scratch.client(old_master).info("replication")
    assert old_info["role"] == "slave"
    assert old_info["master_port"] == replica.port
    assert old_info["master_link_status"] == "up"
    assert scratch.master_for_slot(slot) is replica


def test_migrate_moves_slots_with_their_keys_across_masters(scratch: LocalCluster) -> None:
    # 5400-5500 straddles the first two masters' ranges (0-5460, 5461-10922): two sources.
    target = scratch.master_for_slot(16000)
    keys = {}
    for i in range(3000):
        key = f"migrate:{i}".encode()
        if 5400 <= key_slot(key) <= 5500:
            keys[key] = b"v%d" % i
    for key, value in keys.items():
        scratch.client(scratch.master_for_slot(key_slot(key))).set(key, value)

    assert scratch.migrate(range(5400, 5501), target) == 101
    assert scratch.migrate(range(5400, 5501), target) == 0  # already there: nothing to do

    assert {scratch.master_for_slot(s) for s in (5400, 5460, 5461, 5500)} == {target}
    assert scratch.master_for_slot(5399) is not target
    with scratch.client(target) as direct:
        assert [direct.get(key) for key in keys] == list(keys.values())
    with pytest.raises(LocalClusterError, match="not a running master"):
        scratch.migrate([1], scratch.replicas()[0])


def test_kill_and_restart_brings_the_node_back() -> None:
    with LocalCluster(replicas_per_master=0) as local:
        node = local.masters()[1]
        node_id, old_pid = node.node_id, node.pid
        key = next(
            k
            for k in (f"restart:{i}".encode() for i in range(1000))
            if local.master_for_slot(key_slot(k)) is node
        )

        local.kill(node)
        assert not node.is_running()
        with pytest.raises(redis.ConnectionError):
            local.client(node).ping()
        witness = local.masters()[0]
        _wait_for(lambda: "fail" in _flags_seen_by(local, witness, node), "node marked failing")

        local.restart(node)
        local.wait_healthy(timeout=20)

        assert node.pid != old_pid
        assert local.client(node).ping()
        assert local.client(node).execute_command("CLUSTER", "MYID") == node_id.encode()
        assert local.master_for_slot(key_slot(key)) is node
        assert local.client(node).set(key, b"back")
        assert local.client(node).get(key) == b"back"


def test_stop_kills_every_process_and_removes_the_directory() -> None:
    local = LocalCluster(replicas_per_master=0)
    local.start()
    pids = [node.pid for node in local.nodes]
    data_dir = local.data_dir
    assert data_dir is not None and data_dir.is_dir()
    # A SIGSTOPped node must not survive stop() either.
    local.pause(local.nodes[0])

    local.stop()
    local.stop()  # idempotent

    assert all(pid is not None and _process_gone(pid) for pid in pids)
    assert not data_dir.exists()


def test_missing_redis_server_says_how_to_install_it() -> None:
    local = LocalCluster(redis_server="/nonexistent/redis-server")
    with pytest.raises(RedisServerNotFound, match="apt-get install -y redis-server redis-tools"):
        local.start()
    assert isinstance(RedisServerNotFound("x"), RuntimeError)
    local.stop()


def test_a_node_restarted_elsewhere_keeps_its_id_and_the_cluster_learns_its_address() -> None:
    with LocalCluster(masters=3, replicas_per_master=0) as local:
        node = local.nodes[0]
        node_id, old = node.node_id, node.address
        local.restart_elsewhere(node)  # a new port
        assert node.address != old and node.host == "127.0.0.1"
        local.restart_elsewhere(node, host="127.0.0.2")  # a new IP, the same port
        assert node.host == "127.0.0.2"
        local.wait_healthy()
        assert local.client(node).execute_command("CLUSTER", "MYID").decode() == node_id
        for other in local.nodes[1:]:
            assert (
                f"{node_id} {node.address}@"
                in local.client(other).execute_command("CLUSTER", "NODES").decode()
            )
