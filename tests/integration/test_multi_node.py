"""Commands that span nodes: split by slot, or fanned out to every master, then merged.

These run against a cluster of their own (whole-keyspace commands such as FLUSHALL and DBSIZE
would disturb, or be disturbed by, the other tests' keys), compared with what one Redis says.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(replicas_per_master=0) as local:
        yield local


# FLUSHALL, FLUSHDB, SCRIPT FLUSH and FUNCTION FLUSH are denied by `serve`'s default command
# policy; these tests run them, as `dev` allows.
ALLOW_ALL = "[commands]\ndeny = []\n"


@pytest.fixture(scope="module")
def amb(
    own_cluster: LocalCluster, start_ambassador: Any, tmp_path_factory: pytest.TempPathFactory
) -> Ambassador:
    config = tmp_path_factory.mktemp("multi_node") / "allow_all.toml"
    config.write_text(ALLOW_ALL)
    return start_ambassador(own_cluster, extra_args=("--config", str(config)))


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(amb: Ambassador, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    client = amb.client(protocol=request.param)
    client.flushall()
    yield client
    client.close()


def node_key_counts(cluster: LocalCluster) -> list[int]:
    return [cluster.client(node).dbsize() for node in cluster.masters()]


def test_mget_of_1000_keys_across_every_node_keeps_the_order_and_the_misses(
    r: redis.Redis, own_cluster: LocalCluster
) -> None:
    keys = [f"k{i}" for i in range(1000)]
    present = {k: f"v{k}" for k in keys if random.random() < 0.7}
    r.mset(present)
    asked = keys + keys[:10]  # repeated keys are answered at each place, as Redis does
    assert r.mget(asked) == [present.get(k) and present[k].encode() for k in asked]
    assert all(count > 0 for count in node_key_counts(own_cluster))
    assert len({key_slot(k.encode()) for k in keys}) > 900


def test_mset_across_slots_sets_every_key_on_its_own_node(
    r: redis.Redis, own_cluster: LocalCluster
) -> None:
    assert r.mset({"a": "1", "b": "2", "c": "3", "a{x}": "4"}) is True
    assert r.dbsize() == 4
    for key, value in [("a", b"1"), ("b", b"2"), ("c", b"3"), ("a{x}", b"4")]:
        node = own_cluster.master_for_slot(key_slot(key.encode()))
        assert own_cluster.client(node).get(key) == value
    # The last value given for a key wins, as in one MSET on one Redis.
    r.mset({"b": "x"})
    assert r.execute_command("MSET", "b", "1", "c", "1", "b", "2") is True
    assert r.get("b") == b"2"


def test_counts_are_summed_like_one_redis_counts_them(r: redis.Redis) -> None:
    r.mset({"a": "1", "b": "2", "c": "3"})
    assert r.exists("a", "a", "b", "missing") == 3  # EXISTS counts a key each time it is named
    assert r.touch("a", "b", "missing") == 2
    assert r.delete("a", "a", "missing") == 1
    assert r.unlink("b", "c", "missing") == 2
    assert r.dbsize() == 0


def test_msetnx_across_slots_is_refused_as_redis_cluster_refuses_it(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match=r"^Keys in request don't hash to the same slot$"):
        r.msetnx({"a": "1", "b": "2"})
    assert r.exists("a", "b") == 0
    assert r.msetnx({"{t}a": "1", "{t}b": "2"}) is True


def test_cross_slot_commands_are_refused_like_redis_cluster_when_splitting_is_off(
    own_cluster: LocalCluster, start_ambassador: Any, tmp_path: Path
) -> None:
    config = tmp_path / "strict.toml"
    config.write_text(ALLOW_ALL + "split_cross_slot = false\n")
    strict = start_ambassador(own_cluster, extra_args=("--config", str(config)))
    client = strict.client()
    client.flushall()
    for command in (["MGET", "a", "b"], ["MSET", "a", "1", "b", "2"], ["DEL", "a", "b"]):
        with pytest.raises(redis.ResponseError, match=r"^Keys in request don't hash"):
            client.execute_command(*command)
    assert client.mget("{t}a", "{t}b") == [None, None]  # one slot: routed as before
    client.close()


def test_dbsize_keys_and_randomkey_see_every_node(
    r: redis.Redis, own_cluster: LocalCluster
) -> None:
    assert r.dbsize() == 0
    assert r.randomkey() is None
    keys = {f"u:{i}" for i in range(300)} | {"other"}
    r.mset(dict.fromkeys(keys, "1"))
    assert r.dbsize() == len(keys) == sum(node_key_counts(own_cluster))
    assert {k.decode() for k in r.keys("u:*")} == keys - {"other"}
    assert r.keys("nothing*") == []
    assert r.randomkey().decode() in keys


def test_scan_loop_over_50000_keys_returns_every_key(r: redis.Redis) -> None:
    keys = {f"key:{i}" for i in range(50_000)}
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, "1")
    pipe.execute()
    seen = [k.decode() for k in r.scan_iter(count=1000)]
    assert set(seen) == keys


def test_scan_match_count_and_type_apply_on_every_node(r: redis.Redis) -> None:
    for i in range(200):
        r.set(f"s:{i}", "1")
        r.rpush(f"l:{i}", "1")
    assert {k.decode() for k in r.scan_iter(match="l:1*", count=50)} == {
        f"l:{i}" for i in range(200) if str(i).startswith("1")
    }
    assert len(set(r.scan_iter(_type="list", count=50))) == 200
    cursor, _ = r.scan(0, count=10)
    assert cursor != 0  # a partial page carries on
    with pytest.raises(redis.ResponseError, match=r"^invalid cursor$"):
        r.execute_command("SCAN", "abc")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SCAN", "0", "BOGUS")


def test_flushall_and_flushdb_empty_every_node(r: redis.Redis, own_cluster: LocalCluster) -> None:
    r.mset({f"f{i}": "1" for i in range(100)})
    assert r.flushdb() is True
    assert node_key_counts(own_cluster) == [0, 0, 0]
    r.mset({f"f{i}": "1" for i in range(100)})
    assert r.flushall(asynchronous=True) is True
    assert r.execute_command("FLUSHALL", "SYNC") in (True, b"OK", "OK")
    assert node_key_counts(own_cluster) == [0, 0, 0]


def test_script_loaded_through_the_ambassador_runs_on_every_node(
    r: redis.Redis, own_cluster: LocalCluster
) -> None:
    r.script_flush()
    sha = r.script_load("return redis.call('get', KEYS[1])")
    assert r.script_exists(sha, "f" * 40) == [True, False]
    r.mset({f"e{i}": str(i) for i in range(30)})
    # EVALSHA goes wherever its key lives: every master must know the script.
    assert [r.evalsha(sha, 1, f"e{i}") for i in range(30)] == [str(i).encode() for i in range(30)]
    for node in own_cluster.masters():
        assert own_cluster.client(node).script_exists(sha) == [True]
    # Loaded on one node behind our back: not everywhere, so not "exists".
    lone = own_cluster.client(own_cluster.masters()[0]).script_load("return 2")
    assert r.script_exists(lone) == [False]
    assert r.script_flush() is True
    assert r.script_exists(sha) == [False]


def test_function_library_loaded_once_is_callable_for_keys_on_every_node(
    r: redis.Redis, own_cluster: LocalCluster
) -> None:
    r.function_flush()
    code = (
        "#!lua name=amb\n"
        "redis.register_function('getk', function(k) return redis.call('get', k[1]) end)"
    )
    assert r.function_load(code) in ("amb", b"amb")
    with pytest.raises(redis.ResponseError, match="already exists"):
        r.function_load(code)
    r.mset({f"g{i}": str(i) for i in range(30)})
    assert [r.fcall("getk", 1, f"g{i}") for i in range(30)] == [str(i).encode() for i in range(30)]
    for node in own_cluster.masters():
        assert len(own_cluster.client(node).function_list()) == 1
    assert r.function_delete("amb") in (True, b"OK", "OK")
    for node in own_cluster.masters():
        assert own_cluster.client(node).function_list() == []
