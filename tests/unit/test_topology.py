"""SlotMap from real ``CLUSTER SHARDS`` / ``CLUSTER SLOTS`` replies.

The ``data/cluster_*.resp`` files are raw RESP2 replies captured by hand from local Redis 7.0.15
clusters (see ``data/README.md``):

- ``cluster_shards``/``cluster_slots``: healthy, 3 masters with one replica each;
- ``*_after_failover``: the same cluster after master :12460 was killed and its replica :20263
  took over (the dead node stays listed, ``health fail``, in a shard of its own with no slots);
- ``*_master_failed``: 3 masters, no replicas, master :16362 killed and marked ``fail``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import hiredis
import pytest

from redis_ambassador.config import Address
from redis_ambassador.topology.slotmap import SLOTS, SlotMap

DATA = Path(__file__).parent / "data"


def load_resp(name: str) -> list:
    reader = hiredis.Reader()
    reader.feed((DATA / f"{name}.resp").read_bytes())
    reply = reader.gets()
    assert reply is not False, f"{name} holds an incomplete reply"
    return reply


def at(port: int) -> Address:
    return Address("127.0.0.1", port)


def owned_ranges(slot_map: SlotMap) -> list[tuple[int, int, Address | None]]:
    """The owners as (first, last, owner) runs."""
    runs: list[tuple[int, int, Address | None]] = []
    for slot, owner in enumerate(slot_map.owners):
        if runs and runs[-1][2] == owner and runs[-1][1] == slot - 1:
            runs[-1] = (runs[-1][0], slot, owner)
        else:
            runs.append((slot, slot, owner))
    return runs


HEALTHY_RANGES = [(0, 5461, at(12460)), (5462, 10922, at(20920)), (10923, 16383, at(17055))]
HEALTHY_REPLICAS = {at(20263), at(21425), at(16197)}


def test_healthy_shards_cover_all_16384_slots_with_their_masters() -> None:
    slot_map = SlotMap.from_shards(load_resp("cluster_shards"))
    assert len(slot_map.owners) == SLOTS == 16384
    assert slot_map.complete
    assert owned_ranges(slot_map) == HEALTHY_RANGES
    assert slot_map.masters == {at(12460), at(20920), at(17055)}
    assert slot_map.replicas == HEALTHY_REPLICAS


def test_healthy_slots_reply_gives_the_same_map_as_shards() -> None:
    from_slots = SlotMap.from_slots(load_resp("cluster_slots"), current_host="10.0.0.9")
    assert from_slots == SlotMap.from_shards(load_resp("cluster_shards"))
    assert owned_ranges(from_slots) == HEALTHY_RANGES
    assert from_slots.replicas == HEALTHY_REPLICAS


def test_describe_names_each_slot_range_and_its_master() -> None:
    slot_map = SlotMap.from_shards(load_resp("cluster_shards"))
    assert slot_map.describe() == (
        "0-5461:127.0.0.1:12460, 5462-10922:127.0.0.1:20920, 10923-16383:127.0.0.1:17055"
    )


def test_after_failover_the_promoted_replica_owns_the_slots_of_the_dead_master() -> None:
    slot_map = SlotMap.from_shards(load_resp("cluster_shards_after_failover"))
    assert slot_map.complete
    assert owned_ranges(slot_map) == [
        (0, 5461, at(20263)),
        (5462, 10922, at(20920)),
        (10923, 16383, at(17055)),
    ]
    assert at(12460) not in slot_map.masters
    assert at(12460) not in slot_map.replicas
    assert slot_map.replicas == {at(21425), at(16197)}
    after = SlotMap.from_slots(load_resp("cluster_slots_after_failover"), current_host="x")
    assert after.owners == slot_map.owners


def test_shard_whose_master_has_health_fail_leaves_its_slots_unowned() -> None:
    slot_map = SlotMap.from_shards(load_resp("cluster_shards_master_failed"))
    assert not slot_map.complete
    assert owned_ranges(slot_map) == [
        (0, 5461, at(20755)),
        (5462, 10922, None),
        (10923, 16383, at(12588)),
    ]
    assert slot_map.masters == {at(20755), at(12588)}
    assert "5462-10922:none" in slot_map.describe()


def test_slots_reply_has_no_health_so_the_failed_master_still_owns_its_slots() -> None:
    # CLUSTER SLOTS still lists a failed master: the fallback cannot know better.
    slot_map = SlotMap.from_slots(load_resp("cluster_slots_master_failed"), current_host="x")
    assert slot_map.complete
    assert owned_ranges(slot_map)[1] == (5462, 10922, at(16362))


def test_master_health_fail_in_a_healthy_capture_unowns_only_its_shard() -> None:
    reply = copy.deepcopy(load_resp("cluster_shards"))
    shard = next(s for s in reply if s[1] == [5462, 10922])
    master = next(n for n in shard[3] if n[n.index(b"role") + 1] == b"master")
    master[master.index(b"health") + 1] = b"fail"
    slot_map = SlotMap.from_shards(reply)
    assert owned_ranges(slot_map) == [
        (0, 5461, at(12460)),
        (5462, 10922, None),
        (10923, 16383, at(17055)),
    ]
    assert at(21425) in slot_map.replicas  # its replica is still seen


def test_shard_with_several_slot_ranges_assigns_each_range() -> None:
    reply = copy.deepcopy(load_resp("cluster_shards"))
    first = next(s for s in reply if s[1] == [0, 5461])
    second = next(s for s in reply if s[1] == [5462, 10922])
    first[1] = [0, 99, 5462, 5470]
    second[1] = [100, 5461, 5471, 10922]
    slot_map = SlotMap.from_shards(reply)
    assert slot_map.complete
    assert owned_ranges(slot_map)[:4] == [
        (0, 99, at(12460)),
        (100, 5461, at(20920)),
        (5462, 5470, at(12460)),
        (5471, 10922, at(20920)),
    ]


def test_shard_node_prefers_its_endpoint_over_its_ip() -> None:
    reply = copy.deepcopy(load_resp("cluster_shards"))
    for shard in reply:
        for node in shard[3]:
            node[node.index(b"endpoint") + 1] = b"node-%d.example" % node[node.index(b"port") + 1]
    slot_map = SlotMap.from_shards(reply)
    assert slot_map.owners[0] == Address("node-12460.example", 12460)


def test_slots_reply_with_an_empty_host_uses_the_host_that_was_asked() -> None:
    reply = copy.deepcopy(load_resp("cluster_slots"))
    for entry in reply:
        for node in entry[2:]:
            node[0] = b""
    slot_map = SlotMap.from_slots(reply, current_host="10.1.2.3")
    assert slot_map.complete
    assert slot_map.masters == {Address("10.1.2.3", p) for p in (12460, 20920, 17055)}
    assert slot_map.replicas == {Address("10.1.2.3", p) for p in (20263, 21425, 16197)}


def test_empty_shards_reply_leaves_every_slot_unowned() -> None:
    slot_map = SlotMap.from_shards([])
    assert not slot_map.complete
    assert slot_map.masters == set()
    assert slot_map.describe() == "0-16383:none"


@pytest.mark.parametrize("name", ["cluster_shards", "cluster_shards_after_failover"])
def test_every_slot_of_a_complete_map_is_owned_by_a_listed_master(name: str) -> None:
    slot_map = SlotMap.from_shards(load_resp(name))
    masters = slot_map.masters
    assert set(slot_map.owners) == masters
    assert not masters & slot_map.replicas


def test_shards_name_every_node_by_id_and_a_node_without_address_is_the_one_asked() -> None:
    reply = load_resp("cluster_shards")
    slot_map = SlotMap.from_shards(reply)
    assert set(slot_map.nodes.values()) == slot_map.masters | slot_map.replicas
    assert slot_map.nodes["1997d0bad741cf8d29df3051942a830024f900cf"] == at(17055)
    assert SlotMap.from_slots(load_resp("cluster_slots"), "10.0.0.9").nodes == slot_map.nodes
    # A one-node cluster never met another node, so never learned its own IP: ip and
    # endpoint are empty, as CLUSTER SLOTS's are, and mean "the node you asked".
    alone = [[b"slots", [0, 16383], b"nodes", [[b"id", b"n1", b"port", 7000, b"ip", b"",
              b"endpoint", b"", b"role", b"master", b"health", b"online"]]]]  # fmt: skip
    assert SlotMap.from_shards(alone, current_host="10.0.0.5").masters == {
        Address("10.0.0.5", 7000)
    }


def test_a_translated_map_has_every_address_mapped() -> None:
    slot_map = SlotMap.from_shards(load_resp("cluster_shards"))
    moved = slot_map.translated(lambda a: Address("10.1.1.1", a.port + 1))
    assert moved.masters == {Address("10.1.1.1", a.port + 1) for a in slot_map.masters}
    assert moved.replicas == {Address("10.1.1.1", a.port + 1) for a in slot_map.replicas}
    assert set(moved.nodes.values()) == moved.masters | moved.replicas
    assert all(set(rs) <= moved.replicas for rs in moved.readers.values())
    assert slot_map.translated(lambda a: a) == slot_map
