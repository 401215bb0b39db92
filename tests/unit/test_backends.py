"""The non-cluster backends' sans-IO parts: the one-shard slot map, which replicas a sentinel's
answer offers for reads, and which sentinel events concern the master."""

from __future__ import annotations

from redis_ambassador.config import Address, AddressMap
from redis_ambassador.topology.backends import Sentinel, _online_replica, one_shard
from redis_ambassador.topology.slotmap import SLOTS
from redis_ambassador.upstream.credentials import Credentials

MASTER = Address("10.0.0.1", 6379)


def replica(**changes: bytes) -> list[bytes]:
    """A SENTINEL REPLICAS entry (abridged), as a flat field/value list."""
    fields = {
        b"name": b"10.0.0.2:6379", b"ip": b"10.0.0.2", b"port": b"6379",
        b"flags": b"slave", b"master-link-status": b"ok",
        b"master-host": b"10.0.0.1", b"master-port": b"6379",
    }  # fmt: skip
    fields.update({k.replace("_", "-").encode(): v for k, v in changes.items()})
    return [item for pair in fields.items() for item in pair]


def test_one_shard_gives_every_slot_to_the_master_and_its_replicas_as_readers() -> None:
    reader = Address("10.0.0.2", 6379)
    slot_map = one_shard(MASTER, [reader])
    assert slot_map.complete and slot_map.masters == {MASTER}
    assert slot_map.readers == {MASTER: (reader,)} and slot_map.replicas == {reader}
    assert len(slot_map.owners) == SLOTS


def test_one_shard_without_a_master_leaves_every_slot_unowned() -> None:
    slot_map = one_shard(None)
    assert not slot_map.masters and slot_map.owners.count(None) == SLOTS


def test_a_replica_is_read_from_only_while_up_linked_and_replicating_the_master() -> None:
    assert _online_replica(replica(), MASTER) == Address("10.0.0.2", 6379)
    assert _online_replica(replica(flags=b"slave,s_down"), MASTER) is None
    assert _online_replica(replica(flags=b"slave,disconnected"), MASTER) is None
    assert _online_replica(replica(master_link_status=b"err"), MASTER) is None
    # Still replicating the old master, just after a failover: it would serve stale data.
    assert _online_replica(replica(master_port=b"6380"), MASTER) is None


def test_a_malformed_replica_entry_is_skipped_not_raised() -> None:
    assert _online_replica(replica(port=b"x"), MASTER) is None
    assert _online_replica(replica(ip=b""), MASTER) is None
    assert _online_replica([b"flags", b"slave", b"master-link-status", b"ok"], MASTER) is None


def test_only_events_about_the_named_master_concern_it() -> None:
    sentinel = Sentinel([Address("s", 26379)], "cache", 1.0, Credentials(), AddressMap())
    assert sentinel._concerns(b"+switch-master", b"cache 10.0.0.1 6379 10.0.0.2 6379")
    assert not sentinel._concerns(b"+switch-master", b"other 10.0.0.1 6379 10.0.0.2 6379")
    event = b"slave 10.0.0.3:6379 10.0.0.3 6379 @ cache 10.0.0.1 6379"
    assert sentinel._concerns(b"+sdown", event)
    assert not sentinel._concerns(b"+sdown", event.replace(b"cache", b"other"))
    assert not sentinel._concerns(b"+sdown", b"master cache 10.0.0.1 6379")
    assert not sentinel._concerns(b"+slave", b"")
