"""Topology changes under live traffic: a slot migrated key by key, and a manual failover.

Each test gets its own cluster and ambassador, so the session ones stay untouched.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import redis
from redis.exceptions import MovedError
from traffic import Traffic, key_slot, no_retry_client

from redis_ambassador.local.cluster import LocalCluster, LocalNode

if TYPE_CHECKING:
    from conftest import Ambassador

# Failover is graceful (CLUSTER FAILOVER without FORCE): the old master pauses writes until the
# replica has caught up, so a correct ambassador shows clients no error at all.
FAILOVER_ERROR_BOUND = 0


@pytest.fixture
def private_cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as local:
        yield local


@pytest.fixture
def private_ambassador(
    private_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> Iterator[Ambassador]:
    own = start_ambassador(private_cluster)
    yield own
    own.stop()


def _command(cluster: LocalCluster, node: LocalNode, *args: object) -> object:
    with cluster.client(node) as client:
        return client.execute_command(*args)


def test_a_slot_migrated_live_shows_clients_no_error_and_loses_no_acknowledged_write(
    private_cluster: LocalCluster, private_ambassador: Ambassador
) -> None:
    cluster = private_cluster
    tag = "{migrating}"
    slot = key_slot(tag)
    source = cluster.master_for_slot(slot)
    target = next(m for m in cluster.masters() if m is not source)

    preloaded = {f"{tag}:pre:{i}": f"pre-{i}" for i in range(300)}
    with private_ambassador.client() as setup:
        assert setup.mset(preloaded) is True

    acked: dict[str, str] = {}
    incrs = 0
    pre_keys = list(preloaded)
    rng = random.Random(7)

    def one_round(client: redis.Redis, n: int) -> list[str]:
        nonlocal incrs
        key, value = f"{tag}:w:{n}", f"w-{n}"
        pre = rng.choice(pre_keys)
        problems: list[str] = []
        assert client.set(key, value) is True
        acked[key] = value
        if (got := client.get(key)) != value.encode():
            problems.append(f"GET {key} -> {got!r}")
        if (count := client.incr(f"{tag}:counter")) != incrs + 1:
            problems.append(f"INCR -> {count}, expected {incrs + 1}")
        incrs += 1
        # A pipeline whose commands straddle keys already moved and keys not yet moved.
        keys = [pre, key, rng.choice(pre_keys)]
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.get(k)
        if (replies := pipe.execute()) != [(acked | preloaded)[k].encode() for k in keys]:
            problems.append(f"pipeline GET {keys} -> {replies!r}")
        return problems

    traffic = Traffic(private_ambassador, one_round)
    traffic.start()
    try:
        traffic.wait_rounds(30)
        _command(cluster, target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        _command(cluster, source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        batches = 0
        deadline = time.monotonic() + 60
        while True:
            keys = _command(cluster, source, "CLUSTER", "GETKEYSINSLOT", slot, 10)
            assert isinstance(keys, list)
            if not keys:
                break
            assert time.monotonic() < deadline, "migration did not finish in time"
            _command(
                cluster, source, "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys
            )
            batches += 1
            # Let the client run between batches, so it meets the slot half-moved.
            traffic.wait_rounds(1)
        assert batches >= 30, "the slot should move in many small batches"
        for node in [target, source, *(m for m in cluster.masters() if m not in (source, target))]:
            _command(cluster, node, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        traffic.wait_rounds(30)
    finally:
        traffic.stop()

    print(f"migration: {batches} MIGRATE batches during {traffic.rounds} client rounds")
    assert traffic.errors == []
    assert traffic.problems == []
    assert cluster.master_for_slot(slot) is target
    with cluster.client(target) as direct:
        pipe = direct.pipeline(transaction=False)
        for key in acked:
            pipe.get(key)
        assert pipe.execute() == [v.encode() for v in acked.values()]
        assert direct.mget(list(preloaded)) == [v.encode() for v in preloaded.values()]
        assert direct.get(f"{tag}:counter") == str(incrs).encode()
    with cluster.client(source) as old, pytest.raises(MovedError) as moved:
        old.get(f"{tag}:counter")
    assert (moved.value.slot_id, moved.value.port) == (slot, target.port)


def test_a_manual_failover_under_traffic_keeps_acknowledged_writes_and_moves_new_writes(
    private_cluster: LocalCluster, private_ambassador: Ambassador
) -> None:
    cluster = private_cluster
    tag = "{failover}"
    old_master = cluster.master_for_slot(key_slot(tag))
    replica = next(
        r
        for r in cluster.replicas()
        if cluster.client(r).info("replication")["master_port"] == old_master.port
    )

    acked: dict[str, str] = {}
    incr_attempts = 0
    incr_acked = 0

    def one_round(client: redis.Redis, n: int) -> list[str]:
        nonlocal incr_attempts, incr_acked
        problems: list[str] = []
        # Keys on every master, and a counter on the master that fails over.
        key, value = f"fo:{n}", f"v-{n}"
        assert client.set(key, value) is True
        acked[key] = value
        tagged = f"{tag}:{n}"
        assert client.set(tagged, value) is True
        acked[tagged] = value
        incr_attempts += 1
        count = client.incr(f"{tag}:counter")
        incr_acked += 1
        if count < incr_acked:
            problems.append(f"INCR -> {count} after {incr_acked} acknowledged")
        if (got := client.get(tagged)) != value.encode():
            problems.append(f"GET {tagged} -> {got!r}")
        return problems

    traffic = Traffic(private_ambassador, one_round)
    traffic.start()
    try:
        traffic.wait_rounds(50)
        cluster.failover(replica)
        traffic.wait_rounds(50)
    finally:
        traffic.stop()

    print(
        f"failover: {len(traffic.errors)} client-visible errors in {traffic.rounds} rounds"
        + "".join(f"\n  {e}" for e in traffic.errors[:10])
    )
    assert len(traffic.errors) <= FAILOVER_ERROR_BOUND, traffic.errors[:10]
    assert traffic.problems == []
    assert cluster.master_for_slot(key_slot(tag)) is replica
    new_master = replica

    # Every acknowledged write is there, through the ambassador and on its owner directly.
    with private_ambassador.client() as client:
        pipe = client.pipeline(transaction=False)
        for key in acked:
            pipe.get(key)
        assert pipe.execute() == [v.encode() for v in acked.values()]
    owners: dict[LocalNode, list[str]] = {}
    for key in acked:
        owners.setdefault(cluster.master_for_slot(key_slot(key)), []).append(key)
    for node, keys in owners.items():
        with cluster.client(node) as direct:
            pipe = direct.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            assert pipe.execute() == [acked[k].encode() for k in keys], node.address
    with cluster.client(new_master) as direct:
        counter = int(direct.get(f"{tag}:counter") or 0)
    assert incr_acked <= counter <= incr_attempts

    # New writes now go straight to the new master: the old one rejects none of them.
    def rejected_sets(node: LocalNode) -> int:
        stats = cluster.client(node).info("commandstats").get("cmdstat_set", {})
        return int(stats.get("rejected_calls", 0))

    rejected_before = rejected_sets(old_master)
    fresh = {f"{tag}:after:{i}": f"after-{i}" for i in range(200)}
    with private_ambassador.client() as client:
        for key, value in fresh.items():
            assert client.set(key, value) is True
    with cluster.client(new_master) as direct:
        assert direct.mget(list(fresh)) == [v.encode() for v in fresh.values()]
    assert rejected_sets(old_master) == rejected_before, (
        "the ambassador still sends writes to the old master"
    )
    with cluster.client(old_master) as old, pytest.raises(MovedError) as moved:
        old.get(f"{tag}:after:0")
    assert moved.value.port == new_master.port


@dataclass
class PauseOutcome:
    frozen: LocalNode
    reply: bytes  # what the client waiting on the paused master got
    waited: float  # seconds until it got it
    slowest_other: float  # slowest GET on the other masters meanwhile
    recovered: bool  # the paused master's key answered again after the resume


def _pause_a_master_under_a_waiting_client(
    start_ambassador: Callable[..., Ambassador], command_timeout: float
) -> PauseOutcome:
    """Pause a master while a client waits on it and others use the other masters."""
    # No replicas and a long node timeout: the pause cannot turn into a failover.
    with LocalCluster(replicas_per_master=0, node_timeout_ms=15_000) as local:
        ambassador = start_ambassador(local, extra_args=("--command-timeout", str(command_timeout)))
        try:
            frozen = local.masters()[0]
            keys: dict[LocalNode, str] = {}
            i = 0
            while len(keys) < len(local.masters()):
                keys.setdefault(local.master_for_slot(key_slot(f"pause:{i}")), f"pause:{i}")
                i += 1
            client = no_retry_client(ambassador)
            for key in keys.values():
                assert client.set(key, key) is True
            stuck_key = keys[frozen]
            free_keys = [k for node, k in keys.items() if node is not frozen]

            stuck = ambassador.raw(timeout=10)
            local.pause(frozen)
            try:
                began = time.monotonic()
                stuck.send(f"*2\r\n$3\r\nGET\r\n${len(stuck_key)}\r\n{stuck_key}\r\n".encode())
                slowest = 0.0
                while time.monotonic() - began < command_timeout:
                    for key in free_keys:
                        t = time.monotonic()
                        assert client.get(key) == key.encode()
                        slowest = max(slowest, time.monotonic() - t)
                reply = stuck.read_reply(timeout=10)
                waited = time.monotonic() - began
            finally:
                local.resume(frozen)
            local.wait_healthy()
            recovered = False
            deadline = time.monotonic() + 10
            while not recovered and time.monotonic() < deadline:
                try:
                    recovered = client.get(stuck_key) == stuck_key.encode()
                except redis.ResponseError:
                    time.sleep(0.1)
            stuck.close()
            client.close()
            return PauseOutcome(frozen, reply, waited, slowest, recovered)
        finally:
            ambassador.stop()


def test_a_paused_master_costs_only_its_own_keys_an_error_after_the_command_timeout(
    start_ambassador: Callable[..., Ambassador],
) -> None:
    outcome = _pause_a_master_under_a_waiting_client(start_ambassador, command_timeout=1)
    address = outcome.frozen.address
    expected = f"-ERR redis-ambassador: node {address} unavailable: no reply within 1s\r\n"
    assert outcome.reply == expected.encode()
    assert 1.0 <= outcome.waited < 4.0, f"the error came after {outcome.waited:.2f}s"
    assert outcome.slowest_other < 0.5, f"other masters took {outcome.slowest_other:.2f}s"
    assert outcome.recovered, "the resumed master's key never answered again"


def test_a_killed_master_shows_clients_a_bounded_error_window_and_its_keys_work_after_failover(
    private_cluster: LocalCluster, private_ambassador: Ambassador
) -> None:
    """SIGKILL, not a graceful failover: the command on the wire when the node dies may have run
    and is answered with an error; later commands for its slots wait for the promotion (retry
    budget: about 6.5 s with the default settings) and then succeed. Beyond the budget they
    would get an error too; the test bounds and reports the window."""
    cluster = private_cluster
    tag = "{killed}"
    victim = cluster.master_for_slot(key_slot(tag))
    acked: dict[str, str] = {}
    failed: list[str] = []

    def one_round(client: redis.Redis, n: int) -> list[str]:
        key = f"{tag}:{n}"
        try:
            assert client.set(key, f"v{n}") is True
        except redis.ResponseError as exc:
            if "unavailable" not in str(exc) and "Hash slot not served" not in str(exc):
                raise
            failed.append(f"{time.monotonic():.2f} {exc}")
            return []
        acked[key] = f"v{n}"
        return []

    traffic = Traffic(private_ambassador, one_round)
    traffic.start()
    try:
        traffic.wait_rounds(50)
        killed_at = time.monotonic()
        cluster.kill(victim)
        deadline = killed_at + 30
        while cluster.master_for_slot(key_slot(tag)).port == victim.port:
            assert time.monotonic() < deadline, "no replica took over within 30 s"
            time.sleep(0.1)
        promoted_after = time.monotonic() - killed_at
        traffic.wait_rounds(100, timeout=30)
    finally:
        traffic.stop()
    assert not traffic.errors, traffic.errors[:5]
    assert not traffic.problems, traffic.problems[:5]
    print(
        f"killed master: promoted after {promoted_after:.1f} s; {len(acked)} writes acknowledged, "
        f"{len(failed)} answered with an error: {failed}"
    )
    # The command on the wire at the kill; at most one more whose retry budget (6.5 s) ran out
    # as the promotion landed (a loaded machine makes both slower), and one per further budget.
    assert len(failed) <= 2 + int(promoted_after // 6.5), failed
    new_master = cluster.master_for_slot(key_slot(tag))
    with cluster.client(new_master) as direct:
        values = direct.mget(list(acked))
    missing = [k for k, v in zip(acked, values, strict=True) if v is None]
    # Redis replicates asynchronously: a write the dead master acknowledged just before dying
    # may not have reached its replica. That loss is Redis's, not ours: bounded and reported.
    print(f"killed master: {len(missing)} acknowledged writes not on the promoted replica")
    assert len(missing) <= 5, missing[:10]
