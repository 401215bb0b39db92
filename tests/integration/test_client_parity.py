"""redis-py 8 at its default settings cannot tell the ambassador from one standalone redis-server.

Each test runs one realistic workload twice with the same client settings: against a plain
standalone ``redis-server`` (``standalone_redis``, started by the session, same binary as the
cluster's nodes) and through an ambassador in front of a cluster of this module's own (three
masters, no replicas: DBSIZE, KEYS, SCAN, SCRIPT and FUNCTION see the whole keyspace, so no other
test may share it). Every result the client library hands the application is recorded, errors
included (as type and message), and the two records must be equal item by item. Both sides are
flushed (FLUSHALL, SCRIPT FLUSH, FUNCTION FLUSH sent straight to the standalone server and to each
master, since ``serve``'s command policy may deny the flushes through the ambassador) before each
test, so each protocol's run starts from the same empty server.

Two client settings: ``redis.Redis(host, port)`` exactly as an application writes it, which in
redis-py 8 speaks RESP3 (``HELLO 3``, ``CLIENT MAINT_NOTIFICATIONS``, ``CLIENT SETINFO``), and the
same with ``protocol=2`` (RESP2: two ``CLIENT SETINFO``, errors ignored).

Where a result legitimately differs, the workload records what must be equal instead of the raw
value, and says why next to it: connection ids (each server numbers its own connections),
stream ids made from the clock, TTLs counted down by the clock, INFO's counters (another process,
another history).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador, StandaloneRedis


# -- the two targets, one workload ----------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """An error as the application sees it: the exception redis-py raised, and its text."""

    kind: str
    message: str


def plain_value(value: Any) -> Any:
    """``value`` with every exception (pipelines return them in place) made comparable."""
    if isinstance(value, BaseException):
        return Failure(type(value).__name__, str(value))
    if isinstance(value, list | tuple):
        return type(value)(plain_value(item) for item in value)
    if isinstance(value, dict):
        return {plain_value(k): plain_value(v) for k, v in value.items()}
    return value


_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


class Record:
    """What one workload saw, in order: ``(label, result)``."""

    def __init__(self) -> None:
        self.results: list[tuple[str, Any]] = []

    def __call__(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call and record its result, or the error it raised; return it."""
        name = getattr(call, "__name__", type(call).__name__)
        shown = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        label = _ADDRESS.sub("", f"{name}({shown[:120]})")  # the same label on both sides
        try:
            value = call(*args, **kwargs)
        except redis.RedisError as exc:
            value = exc
        value = plain_value(value)
        self.results.append((label, value))
        return value

    def note(self, label: str, value: Any) -> Any:
        """Record a value the workload derived (what must be equal where the raw one may not)."""
        value = plain_value(value)
        self.results.append((label, value))
        return value


@dataclass
class Target:
    """One server the workload runs against, and the clients it opened there."""

    name: str
    host: str
    port: int
    options: dict[str, Any]
    opened: list[redis.Redis] = field(default_factory=list)

    def client(self, **more: Any) -> redis.Redis:
        """``redis.Redis(host=..., port=...)`` with the test's protocol option, nothing else."""
        client = redis.Redis(host=self.host, port=self.port, **self.options, **more)
        self.opened.append(client)
        return client

    def close(self) -> None:
        for client in self.opened:
            client.close()


Workload = Callable[[Target, Record], None]


@dataclass
class Pair:
    standalone: Target
    ambassador: Target

    def compare(self, workload: Workload) -> list[tuple[str, Any]]:
        """Run ``workload`` on both; fail listing every result that differs."""
        expected, got = Record(), Record()
        workload(self.standalone, expected)
        workload(self.ambassador, got)
        assert [label for label, _ in got.results] == [label for label, _ in expected.results]
        mismatches = [
            f"{label}\n    standalone: {want!r}\n    ambassador: {have!r}"
            for (label, want), (_, have) in zip(expected.results, got.results, strict=True)
            if want != have
        ]
        if mismatches:
            pytest.fail(
                f"{len(mismatches)} of {len(expected.results)} results differ:\n"
                + "\n".join(mismatches),
                pytrace=False,
            )
        return expected.results


@pytest.fixture(scope="module")
def parity_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(replicas_per_master=0) as local:
        yield local


@pytest.fixture(scope="module")
def parity_ambassador(
    parity_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> Ambassador:
    """`serve` with its default settings in front of the module's cluster."""
    return start_ambassador(parity_cluster)


def flush(client: redis.Redis) -> None:
    client.flushall()
    client.script_flush()
    client.function_flush()


# redis-py 8's default is RESP3; protocol=2 is the other setting applications use.
CLIENT_SETTINGS = [
    pytest.param({}, id="defaults-resp3"),
    pytest.param({"protocol": 2}, id="resp2"),
]


@pytest.fixture(params=CLIENT_SETTINGS)
def pair(
    request: pytest.FixtureRequest,
    standalone_redis: StandaloneRedis,
    parity_cluster: LocalCluster,
    parity_ambassador: Ambassador,
) -> Iterator[Pair]:
    with standalone_redis.client() as admin:
        flush(admin)
    for node in parity_cluster.masters():
        with parity_cluster.client(node) as admin:
            flush(admin)
    options: dict[str, Any] = request.param
    both = Pair(
        Target("standalone", standalone_redis.host, standalone_redis.port, dict(options)),
        Target("ambassador", parity_ambassador.host, parity_ambassador.port, dict(options)),
    )
    try:
        yield both
    finally:
        both.standalone.close()
        both.ambassador.close()


def _pairs(value: Any) -> Any:
    """A RESP2 flat ``[k, v, k, v]`` list as a dict (RESP3 gives the dict), recursively."""
    if (
        isinstance(value, list)
        and len(value) % 2 == 0
        and all(isinstance(k, bytes) for k in value[::2])
    ):
        return {k: _pairs(v) for k, v in zip(value[::2], value[1::2], strict=True)}
    if isinstance(value, dict):
        return {k: _pairs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pairs(v) for v in value]
    return value


def in_range(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int | float) and low <= value <= high


# -- the workloads ---------------------------------------------------------------------------------


def strings(t: Target, rec: Record) -> None:
    r = t.client()
    rec(r.set, "s:plain", "v")
    rec(r.set, "s:plain", "w", get=True)
    rec(r.set, "s:plain", "x", nx=True)
    rec(r.set, "s:missing", "x", xx=True)
    rec(r.set, "s:missing", "x", xx=True, get=True)
    rec(r.set, "s:ex", "v", ex=100)
    rec(r.set, "s:px", "v", px=100_000)
    rec(r.set, "s:ex", "v2", keepttl=True)
    rec(r.set, "s:exat", "v", exat=4_000_000_000)
    rec(r.expiretime, "s:exat")
    # TTLs count down with the clock: what must agree is the range they fall in.
    rec.note("ttl s:ex kept (90..100)", in_range(90, 100)(r.ttl("s:ex")))
    rec.note("pttl s:px (90000..100000)", in_range(90_000, 100_000)(r.pttl("s:px")))
    rec(r.get, "s:plain")
    rec(r.get, "s:missing")
    rec(r.set, "s:bin", b"a\r\nb\x00c\xff")
    rec(r.get, "s:bin")
    rec(r.set, "s:big", b"x" * 200_000)
    rec(r.strlen, "s:big")
    rec(r.get, "s:big")
    rec(r.incr, "s:n")
    rec(r.incrby, "s:n", 41)
    rec(r.decr, "s:n")
    rec(r.decrby, "s:n", 2)
    rec(r.incr, "s:plain")  # not an integer
    rec(r.incrby, "s:n", 2**63)  # out of range
    rec(r.incrbyfloat, "s:f", 1.5)
    rec(r.incrbyfloat, "s:f", "2.0e2")
    rec(r.incrbyfloat, "s:f", -0.1)
    rec(r.get, "s:f")
    rec(r.append, "s:a", "hello")
    rec(r.append, "s:a", " world")
    rec(r.getrange, "s:a", 0, 4)
    rec(r.getrange, "s:a", -5, -1)
    rec(r.getrange, "s:a", 100, 200)
    rec(r.setrange, "s:a", 6, "WORLD")
    rec(r.get, "s:a")
    many = {f"s:m{i}": str(i) for i in range(60)}  # dozens of slots, every master
    rec(r.mset, many)
    rec(r.mget, [f"s:m{i}" for i in range(65)])
    rec(r.mget, "s:m3", "s:m3", "s:nope", "s:m59")
    rec(r.msetnx, {"{s}x": "1", "{s}y": "2"})
    rec(r.msetnx, {"{s}y": "3", "{s}z": "4"})
    rec(r.mget, "{s}x", "{s}y", "{s}z")
    rec(r.setnx, "s:nx", 1)
    rec(r.setnx, "s:nx", 2)
    rec(r.getdel, "s:nx")
    rec(r.getdel, "s:nx")
    rec(r.set, "s:gx", "g")
    rec(r.getex, "s:gx", ex=100)
    rec.note("ttl after GETEX EX 100 (90..100)", in_range(90, 100)(r.ttl("s:gx")))
    rec(r.getex, "s:gx", persist=True)
    rec(r.ttl, "s:gx")
    rec(r.getex, "s:gx", exat=4_000_000_000)
    rec(r.expiretime, "s:gx")
    rec(r.getex, "s:nothing", ex=10)
    rec(r.execute_command, "SETEX", "s:setex", 100, "v")  # r.setex is deprecated in redis-py 8
    rec(r.psetex, "s:psetex", 100_000, "v")
    rec(r.mget, "s:setex", "s:psetex")
    rec(r.set, "{s}lcs1", "ohmytext")
    rec(r.set, "{s}lcs2", "mynewtext")
    rec(r.lcs, "{s}lcs1", "{s}lcs2")
    rec(r.lcs, "{s}lcs1", "{s}lcs2", len=True)
    rec(r.setbit, "s:bits", 7, 1)
    rec(r.setbit, "s:bits", 100, 1)
    rec(r.getbit, "s:bits", 7)
    rec(r.bitcount, "s:bits")
    rec(r.bitpos, "s:bits", 1)
    rec(r.pfadd, "s:hll", *[f"e{i}" for i in range(100)])
    rec(r.pfcount, "s:hll")
    rec(r.set, "s:n", "not an int anymore", xx=True)
    rec(r.decr, "s:n")


def hashes(t: Target, rec: Record) -> None:
    r = t.client()
    rec(r.hset, "h:user", mapping={"name": "ada", "age": "36", "lang": "en"})
    rec(r.hset, "h:user", "age", "37")
    rec(r.hget, "h:user", "name")
    rec(r.hget, "h:user", "nope")
    rec(r.hmget, "h:user", ["name", "nope", "age"])
    rec(r.hgetall, "h:user")
    rec(r.hgetall, "h:none")
    rec(r.hincrby, "h:user", "age", 5)
    rec(r.hincrby, "h:user", "visits", -1)
    rec(r.hincrby, "h:user", "name", 1)  # not an integer
    rec(r.hincrbyfloat, "h:user", "score", 1.25)
    rec(r.hincrbyfloat, "h:user", "score", "1e3")
    rec(r.hsetnx, "h:user", "name", "bob")
    rec(r.hsetnx, "h:user", "city", "london")
    rec(r.hexists, "h:user", "city")
    rec(r.hlen, "h:user")
    rec(r.hkeys, "h:user")
    rec(r.hvals, "h:user")
    rec(r.hstrlen, "h:user", "city")
    rec(r.hdel, "h:user", "city", "nope")
    rec(r.hscan, "h:user")  # small: listpack, one call returns everything in order
    rec(r.hscan, "h:user", match="a*")
    rec(r.set, "h:string", "x")
    rec(r.hget, "h:string", "f")  # WRONGTYPE
    big = {f"field{i}": str(i) for i in range(1500)}  # a real hash table
    rec(r.hset, "h:big", mapping=big)
    rec(r.hlen, "h:big")
    rec.note("hscan_iter h:big count=100", dict(r.hscan_iter("h:big", count=100)))
    rec.note("hscan_iter h:big match", dict(r.hscan_iter("h:big", match="field1?", count=50)))
    rec(r.object, "encoding", "h:user")
    rec(r.object, "encoding", "h:big")


def lists(t: Target, rec: Record) -> None:
    r = t.client()
    rec(r.lpush, "l:q", "c", "b", "a")
    rec(r.rpush, "l:q", "d", "e", "f", "g")
    rec(r.lrange, "l:q", 0, -1)
    rec(r.lrange, "l:q", -3, 100)
    rec(r.llen, "l:q")
    rec(r.lindex, "l:q", 2)
    rec(r.lindex, "l:q", 99)
    rec(r.linsert, "l:q", "before", "d", "c2")
    rec(r.lset, "l:q", 0, "A")
    rec(r.lset, "l:q", 99, "x")  # index out of range
    rec(r.lpos, "l:q", "e")
    rec(r.rpush, "l:q", "e", "e")
    rec(r.lpos, "l:q", "e", count=0)
    rec(r.lrem, "l:q", 2, "e")
    rec(r.lpop, "l:q")
    rec(r.lpop, "l:q", 2)
    rec(r.rpop, "l:q", 2)
    rec(r.lpop, "l:none")
    rec(r.lpop, "l:none", 3)
    rec(r.lrange, "l:q", 0, -1)
    rec(r.ltrim, "l:q", 0, 1)
    rec(r.lrange, "l:q", 0, -1)
    rec(r.rpush, "{l}src", "1", "2", "3", "4")
    rec(r.lmove, "{l}src", "{l}dst", "LEFT", "RIGHT")
    rec(r.lmove, "{l}src", "{l}dst", "RIGHT", "LEFT")
    rec(r.rpoplpush, "{l}src", "{l}dst")
    rec(r.lrange, "{l}src", 0, -1)
    rec(r.lrange, "{l}dst", 0, -1)
    rec(r.lmpop, 2, "{l}empty", "{l}dst", direction="LEFT", count=2)
    rec(r.lmove, "{l}empty", "{l}dst", "LEFT", "LEFT")
    # Blocking pops with something to pop return at once; on an empty list after the timeout.
    rec(r.blpop, ["{l}none", "{l}dst"], timeout=1)
    rec(r.brpop, ["l:none"], timeout=0.1)
    rec(r.blmove, "{l}dst", "{l}src", 1, "LEFT", "LEFT")
    # A worker blocked on an empty queue gets what another client pushes (pushed from a thread
    # a moment later; had the push come first, BLPOP would return the same thing at once).
    producer = t.client()
    timer = threading.Timer(0.2, producer.rpush, ("{l}jobs", "job-1", "job-2"))
    timer.start()
    try:
        rec(r.blpop, ["{l}urgent", "{l}jobs"], timeout=10)
    finally:
        timer.join()
    rec(r.lrange, "{l}jobs", 0, -1)
    rec(r.rpush, "l:big", *[str(i) for i in range(300)])
    rec(r.object, "encoding", "l:q")
    rec(r.object, "encoding", "l:big")
    rec(r.set, "l:string", "x")
    rec(r.lpush, "l:string", "x")  # WRONGTYPE


def sets(t: Target, rec: Record) -> None:
    r = t.client()
    rec(r.sadd, "{u}a", "x", "y", "z", "w")
    rec(r.sadd, "{u}a", "x", "v")
    rec(r.sadd, "{u}b", "y", "z", "q")
    rec(r.smembers, "{u}a")
    rec(r.smembers, "{u}none")
    rec(r.sismember, "{u}a", "x")
    rec(r.smismember, "{u}a", ["x", "nope", "y"])
    rec(r.scard, "{u}a")
    rec(r.sinter, "{u}a", "{u}b")
    rec(r.sunion, "{u}a", "{u}b")
    rec(r.sdiff, "{u}a", "{u}b")
    rec(r.sintercard, 2, ["{u}a", "{u}b"])
    rec(r.sinterstore, "{u}dst", ["{u}a", "{u}b"])
    rec(r.smembers, "{u}dst")
    rec(r.smove, "{u}a", "{u}b", "v")
    rec(r.srem, "{u}a", "w", "nope")
    rec(r.smembers, "{u}a")
    rec(r.sadd, "s:ints", *range(100))
    rec(r.object, "encoding", "s:ints")
    rec(r.object, "encoding", "{u}a")
    rec(r.sadd, "s:big", *[f"m{i}" for i in range(1000)])
    rec(r.object, "encoding", "s:big")
    rec.note("sscan {u}a as a set", {m for m in r.sscan_iter("{u}a")})
    rec.note("sscan_iter s:big count=50", set(r.sscan_iter("s:big", count=50)))
    rec.note("sscan_iter s:big match", set(r.sscan_iter("s:big", match="m9*", count=50)))


def sorted_sets(t: Target, rec: Record) -> None:
    r = t.client()
    rec(r.zadd, "z:board", {"ada": 10, "bob": 2.5, "cy": -1, "dee": 1e300})
    rec(r.zadd, "z:board", {"ada": 5}, gt=True, ch=True)
    rec(r.zadd, "z:board", {"ada": 50}, gt=True, ch=True)
    rec(r.zadd, "z:board", {"eve": 3}, xx=True)
    rec(r.zadd, "z:board", {"bob": 0.1}, nx=True)
    rec(r.zadd, "z:board", {"bob": 0.1}, incr=True)
    rec(r.zadd, "z:board", {"inf": float("inf"), "ninf": float("-inf")})
    rec(r.zrange, "z:board", 0, -1, withscores=True)
    rec(r.zrange, "z:board", 0, 2, desc=True, withscores=True)
    rec(r.zrange, "z:board", 0, 10, byscore=True, offset=1, num=2, withscores=True)
    rec(r.zrangebyscore, "z:board", "-inf", "+inf")
    rec(r.zrangebyscore, "z:board", 0, 100, withscores=True)
    rec(r.zrangebyscore, "z:board", "(0", 100, start=1, num=1, withscores=True)
    rec(r.zrevrangebyscore, "z:board", 100, 0, withscores=True)
    rec(r.zincrby, "z:board", 0.2, "bob")
    rec(r.zincrby, "z:board", 1, "new")
    rec(r.zscore, "z:board", "bob")
    rec(r.zscore, "z:board", "dee")
    rec(r.zscore, "z:board", "inf")
    rec(r.zscore, "z:board", "nobody")
    rec(r.zmscore, "z:board", ["ada", "nobody", "cy"])
    rec(r.zrank, "z:board", "bob")
    rec(r.zrevrank, "z:board", "bob")
    rec(r.zrank, "z:board", "nobody")
    rec(r.zcount, "z:board", 0, 100)
    rec(r.zcard, "z:board")
    rec(r.zrem, "z:board", "ninf", "nobody")
    rec(r.zpopmin, "z:board")
    rec(r.zpopmax, "z:board", 2)
    rec(r.zadd, "{z}a", {"x": 1, "y": 2, "z": 3})
    rec(r.zadd, "{z}b", {"y": 10, "z": 20, "w": 30})
    rec(r.zunionstore, "{z}u", {"{z}a": 2, "{z}b": 1})
    rec(r.zrange, "{z}u", 0, -1, withscores=True)
    rec(r.zinterstore, "{z}i", ["{z}a", "{z}b"], aggregate="MAX")
    rec(r.zrange, "{z}i", 0, -1, withscores=True)
    rec(r.zrangestore, "{z}r", "{z}u", 0, 1)
    rec(r.zrange, "{z}r", 0, -1, withscores=True)
    rec(r.zunion, ["{z}a", "{z}b"], withscores=True)
    rec(r.zscan, "{z}a")
    rec(r.zadd, "z:big", {f"m{i}": i / 7 for i in range(500)})
    rec.note("zscan_iter z:big", dict(r.zscan_iter("z:big", count=50)))
    rec(r.object, "encoding", "{z}a")
    rec(r.object, "encoding", "z:big")
    rec(r.zadd, "z:board", {"x": "not a number"})  # not a valid float


def streams(t: Target, rec: Record) -> None:
    r = t.client()
    rec(r.xadd, "x:s", {"temp": "20", "unit": "c"}, id="1-1")
    rec(r.xadd, "x:s", {"temp": "21"}, id="1-2")
    rec(r.xadd, "x:s", {"temp": "22"}, id="2-0")
    rec(r.xadd, "x:s", {"temp": "0"}, id="1-5")  # must exceed the top id
    rec(r.xadd, "x:s", {"temp": "23"}, id="3-*")
    rec(r.xlen, "x:s")
    rec(r.xrange, "x:s")
    rec(r.xrange, "x:s", min="1-2", max="+", count=2)
    rec(r.xrevrange, "x:s", count=1)
    rec(r.xread, {"x:s": "0-0"})
    rec(r.xread, {"x:s": "1-2"}, count=1)
    rec(r.xread, {"x:s": "$"}, block=100)  # nothing new: None after 100 ms
    rec(r.xgroup_create, "x:s", "workers", id="0")
    rec(r.xgroup_create, "x:s", "workers", id="0")  # BUSYGROUP
    rec(r.xgroup_create, "x:new", "g", id="$", mkstream=True)
    rec(r.xreadgroup, "workers", "alice", {"x:s": ">"}, count=2)
    rec(r.xreadgroup, "workers", "bob", {"x:s": ">"})
    rec(r.xreadgroup, "workers", "alice", {"x:s": "0"})  # alice's pending entries
    rec(r.xack, "x:s", "workers", "1-1", "9-9")
    rec(r.xpending, "x:s", "workers")
    # Per entry, the time since delivery is the clock's; the rest must agree.
    pending = r.xpending_range("x:s", "workers", min="-", max="+", count=10)
    rec.note(
        "xpending_range without time_since_delivered",
        [{k: v for k, v in entry.items() if k != "time_since_delivered"} for entry in pending],
    )
    rec(r.xclaim, "x:s", "workers", "bob", 0, ["1-2"])
    rec(r.xautoclaim, "x:s", "workers", "alice", 0, start_id="0-0", count=10)
    info = r.xinfo_stream("x:s")
    rec.note("xinfo_stream", info)
    full = r.xinfo_stream("x:s", full=True)
    rec.note("xinfo_stream full: length, entries, groups' names", (
        full["length"], full["entries"], [g["name"] for g in full["groups"]],
    ))  # fmt: skip
    rec.note("xinfo_groups", [
        {k: v for k, v in group.items()} for group in r.xinfo_groups("x:s")
    ])  # fmt: skip
    rec.note("xinfo_consumers (names, pending)", [
        (c["name"], c["pending"]) for c in r.xinfo_consumers("x:s", "workers")
    ])  # fmt: skip
    rec(r.xdel, "x:s", "1-2", "8-8")
    rec(r.xtrim, "x:s", maxlen=2, approximate=False)
    rec(r.xrange, "x:s")
    rec(r.xadd, "x:capped", {"n": "1"}, id="5-0", maxlen=1, approximate=False)
    rec(r.xadd, "x:capped", {"n": "2"}, id="6-0", maxlen=1, approximate=False)
    rec(r.xrange, "x:capped")
    rec(r.xgroup_destroy, "x:s", "workers")
    rec(r.object, "encoding", "x:s")
    # An id from the clock: each server's own time, so only its shape and order are compared.
    first = r.xadd("x:auto", {"a": "1"})
    second = r.xadd("x:auto", {"a": "2"})
    rec.note(
        "auto ids look like ms-seq", all(re.fullmatch(rb"\d+-\d+", i) for i in (first, second))
    )
    rec.note(
        "auto ids increase",
        tuple(map(int, first.split(b"-"))) < tuple(map(int, second.split(b"-"))),
    )
    rec(r.xadd, "x:s", {"bad": "id"}, id="0-0")  # error: equal or smaller than the top


def helpers(t: Target, rec: Record) -> None:
    """redis-py's own building blocks: Lock (SET NX PX and Lua scripts run by EVALSHA), and
    the geo, bitfield and HyperLogLog commands apps reach for."""
    r = t.client()
    lock = r.lock("hl:lock", timeout=30)
    rec(lock.acquire, blocking=False)
    rec(r.lock("hl:lock", timeout=30).acquire, blocking=False)  # held: not acquired
    rec(lock.locked)
    rec(lock.owned)
    rec(lock.extend, 10)
    rec.note("lock ttl after extend (30..40 s)", in_range(30_000, 40_000)(r.pttl("hl:lock")))
    rec(lock.reacquire)
    rec(lock.release)
    rec(lock.locked)
    rec(lock.release)  # not held any more: LockNotOwnedError
    with r.lock("hl:ctx", timeout=5, blocking_timeout=1) as held:
        rec.note("lock as a context manager owns it", held.owned())
    rec(r.geoadd, "hl:geo", [13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"])
    rec(r.geodist, "hl:geo", "Palermo", "Catania", unit="km")
    rec(r.geopos, "hl:geo", "Palermo", "nowhere")
    rec(r.geohash, "hl:geo", "Palermo")
    rec(r.geosearch, "hl:geo", longitude=15, latitude=37, radius=200, unit="km", withdist=True,
        withcoord=True, sort="ASC")  # fmt: skip
    rec(r.bitfield("hl:bf").set("u8", 0, 200).incrby("u8", 0, 100).get("i8", 0).execute)
    rec(r.bitfield_ro, "hl:bf", "u8", 0)
    rec(r.pfadd, "{hl}a", "x", "y", "z")
    rec(r.pfadd, "{hl}b", "z", "w")
    rec(r.pfmerge, "{hl}all", "{hl}a", "{hl}b")
    rec(r.pfcount, "{hl}all")
    rec(r.rpush, "hl:sortme", "3", "1", "2", "10")
    rec(r.sort, "hl:sortme")
    rec(r.sort, "hl:sortme", desc=True, start=0, num=2)
    rec(r.rpush, "{hl}names", "bob", "ada", "cy")
    rec(r.sort, "{hl}names", alpha=True, store="{hl}sorted")
    rec(r.lrange, "{hl}sorted", 0, -1)


def pipelines(t: Target, rec: Record) -> None:
    r = t.client()
    pipe = r.pipeline(transaction=False)
    for i in range(100):  # 500 commands, keys on every master, replies of every type
        pipe.set(f"p:s{i}", i)
        pipe.incr(f"p:c{i % 7}")
        pipe.hset(f"p:h{i % 5}", f"f{i}", i)
        pipe.zadd(f"p:z{i % 3}", {f"m{i}": i / 3})
        if i % 10 == 3:
            pipe.lpush(f"p:s{i}", "x")  # WRONGTYPE, in place, the rest goes on
        else:
            pipe.get(f"p:s{i}")
    rec(pipe.execute, raise_on_error=False)
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.get(f"p:s{i}")
        pipe.hgetall(f"p:h{i % 5}")
        pipe.zscore(f"p:z{i % 3}", f"m{i}")
        pipe.mget(f"p:s{i}", f"p:s{(i * 37) % 100}", "p:none")
        pipe.exists(f"p:s{i}", f"p:c{i % 7}", "p:none")
    rec(pipe.execute)
    pipe = r.pipeline(transaction=False)
    pipe.set("p:x", "1").lpush("p:x", "y").get("p:x")
    rec(pipe.execute)  # raises the first error, as redis-py does by default


def transactions(t: Target, rec: Record) -> None:
    r = t.client()
    pipe = r.pipeline()  # transaction=True is redis-py's default
    pipe.set("{tx}a", 1).incr("{tx}a").incrby("{tx}b", 10).lpush("{tx}l", "x", "y")
    pipe.get("{tx}a").mget("{tx}a", "{tx}b").lrange("{tx}l", 0, -1)
    rec(pipe.execute)
    pipe = r.pipeline()
    pipe.set("{tx}s", "text").incr("{tx}s").get("{tx}s")  # an error at EXEC, the rest ran
    rec(pipe.execute, raise_on_error=False)
    pipe = r.pipeline()
    pipe.set("{tx}s", "again").execute_command("NOSUCHCOMMAND", "{tx}s")  # EXECABORT
    rec(pipe.execute)
    rec(r.get, "{tx}s")

    # Optimistic locking, the way redis-py documents it.
    with r.pipeline() as pipe:
        pipe.watch("{tx}counter", "{tx}log")
        current = int(pipe.get("{tx}counter") or 0)
        pipe.multi()
        pipe.set("{tx}counter", current + 1)
        pipe.rpush("{tx}log", current)
        rec(pipe.execute)

    other = t.client()
    with r.pipeline() as pipe:
        pipe.watch("{tx}counter")
        current = int(pipe.get("{tx}counter") or 0)
        other.incr("{tx}counter")  # another client changes the watched key
        pipe.multi()
        pipe.set("{tx}counter", current + 100)
        rec(pipe.execute)  # WatchError
    rec(r.get, "{tx}counter")

    def bump(pipe: redis.client.Pipeline) -> None:
        value = int(pipe.get("{tx}counter") or 0)
        pipe.multi()
        pipe.set("{tx}counter", value * 10)

    rec(r.transaction, bump, "{tx}counter")
    rec(r.get, "{tx}counter")
    with r.pipeline() as pipe:
        pipe.watch("{tx}counter")
        pipe.unwatch()
        other.set("{tx}counter", "0")
        pipe.multi()
        pipe.incr("{tx}counter")
        rec(pipe.execute)  # unwatched: runs


def pubsub(t: Target, rec: Record) -> None:
    r = t.client()
    p = r.pubsub()
    p.subscribe("ps:news", "ps:sport")
    rec.note("first confirmation", p.get_message(timeout=5))
    rec.note("second confirmation", p.get_message(timeout=5))
    p.psubscribe("ps:n*")
    rec.note("pattern confirmation", p.get_message(timeout=5))
    rec(r.pubsub_numsub, "ps:news", "ps:sport", "ps:none")
    rec(r.pubsub_numpat)
    rec.note("pubsub_channels ps:* (dict order)", sorted(r.pubsub_channels("ps:*")))
    rec(r.publish, "ps:news", "hello")  # to a channel and a pattern: counts 2
    rec.note("message", p.get_message(timeout=5))
    rec.note("pmessage", p.get_message(timeout=5))
    rec(r.publish, "ps:sport", b"\x00binary\r\n")
    rec.note("binary message", p.get_message(timeout=5))
    rec.note("nothing more", p.get_message(timeout=0.2))
    p.unsubscribe("ps:news")
    rec.note("unsubscribe confirmation", p.get_message(timeout=5))
    p.punsubscribe()
    rec.note("punsubscribe confirmation", p.get_message(timeout=5))
    rec(r.publish, "ps:news", "nobody listens")
    p.unsubscribe()
    rec.note("last unsubscribe", p.get_message(timeout=5))
    p.close()
    shard = r.pubsub()  # shard channels (Redis 7): SSUBSCRIBE/SPUBLISH
    shard.ssubscribe("ps:{orders}")
    rec.note("ssubscribe confirmation", shard.get_sharded_message(timeout=5))
    rec(r.spublish, "ps:{orders}", "order-1")
    rec.note("smessage", shard.get_sharded_message(timeout=5))
    rec(r.pubsub_shardnumsub, "ps:{orders}")
    shard.sunsubscribe()
    rec.note("sunsubscribe confirmation", shard.get_sharded_message(timeout=5))
    shard.close()


SET_AND_READ = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
LIBRARY = """#!lua name=paritylib
redis.register_function('pincr', function(keys, args)
    return redis.call('INCRBY', keys[1], args[1])
end)
redis.register_function{
    function_name='pget',
    callback=function(keys, args) return redis.call('GET', keys[1]) end,
    flags={'no-writes'}
}
"""


def scripts(t: Target, rec: Record) -> None:
    r = t.client()
    rec(r.eval, SET_AND_READ, 1, "sc:k", "v")
    rec(r.eval, "return {1, 2, 'three', {4, 5}, false, 3.99}", 0)
    rec(r.eval, "return redis.call('GET', KEYS[1])", 1, "sc:missing")
    rec(r.eval, "return redis.status_reply('FINE')", 0)
    rec(r.eval, "return redis.error_reply('MYERR custom')", 0)
    rec(r.eval, "return redis.call('INCR', KEYS[1])", 1, "sc:k")  # error inside the script
    rec(r.eval, "this is not lua", 0)
    rec(r.hset, "sc:h", mapping={"a": "1", "b": "2"})
    # RESP3 from inside the script: a map and a double when the client speaks RESP3.
    rec(r.eval, "redis.setresp(3); return redis.call('HGETALL', KEYS[1])", 1, "sc:h")
    rec(r.eval, "return {double=3.5}", 0)
    sha = rec(r.script_load, SET_AND_READ)
    rec(r.script_exists, sha, "0" * 40)
    rec(r.evalsha, sha, 1, "sc:x", "5")
    rec(r.evalsha, "f" * 40, 0)  # NOSCRIPT
    rec(r.eval_ro, "return redis.call('GET', KEYS[1])", 1, "sc:x")
    script = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    for key in ("sc:r1", "sc:r2", "sc:r3"):  # keys on other masters: EVALSHA must find it
        rec(script, keys=[key], args=[3])
    rec(r.function_load, LIBRARY)
    rec(r.function_load, LIBRARY)  # already exists
    rec(r.function_load, LIBRARY, replace=True)
    for key in ("fn:a", "fn:b", "fn:c"):
        rec(r.fcall, "pincr", 1, key, 5)
        rec(r.fcall_ro, "pget", 1, key)
    rec(r.fcall_ro, "pincr", 1, "fn:a", 1)  # a write function, read-only call
    # A library's functions live in a dict hashed with a per-process seed: FUNCTION LIST's order
    # differs between any two processes, so the functions are compared sorted by name.
    libraries = plain_value(r.function_list("paritylib"))
    rec.note("function_list, functions by name", [
        {**lib, b"functions": sorted(lib[b"functions"], key=lambda f: f[b"name"])}
        for lib in (_pairs(item) for item in libraries)
    ])  # fmt: skip
    rec(r.function_delete, "paritylib")
    rec(r.fcall, "pincr", 1, "fn:a", 1)  # no such function


def keyspace(t: Target, rec: Record) -> None:
    r = t.client()
    pipe = r.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"ks:{i}", i)
        if i % 10 == 0:
            pipe.hset(f"kh:{i}", "f", i)
    pipe.execute()
    rec(r.dbsize)
    rec.note("scan_iter match=ks:* count=100", set(r.scan_iter(match="ks:*", count=100)))
    rec.note("scan_iter everything", set(r.scan_iter(count=500)))
    rec.note("scan_iter _type=hash", set(r.scan_iter(_type="hash", count=1000)))
    rec.note("scan_iter match=ks:29?", set(r.scan_iter(match="ks:29?")))
    rec.note("keys ks:1?? sorted", sorted(r.keys("ks:1??")))
    rec.note("randomkey is a key", r.randomkey() in set(r.keys("*")))
    rec(r.exists, "ks:1", "ks:2", "ks:1", "nope", "kh:10")
    rec(r.touch, "ks:1", "ks:2", "nope")
    rec(r.delete, *[f"ks:{i}" for i in range(100)], "nope")
    rec(r.unlink, *[f"ks:{i}" for i in range(100, 150)], "ks:1", "nope")
    rec(r.dbsize)
    rec(r.set, "{k}a", "1")
    rec(r.lpush, "{k}list", "x")
    rec(r.sadd, "{k}set", "x")
    rec(r.zadd, "{k}zset", {"x": 1})
    rec(r.hset, "{k}hash", "f", "v")
    rec(r.xadd, "{k}stream", {"f": "v"}, id="1-0")
    for key in ("{k}a", "{k}list", "{k}set", "{k}zset", "{k}hash", "{k}stream", "{k}none"):
        rec(r.type, key)
    rec(r.ttl, "{k}a")
    rec(r.ttl, "{k}none")
    rec(r.pttl, "{k}none")
    rec(r.expire, "{k}a", 100)
    rec(r.expire, "{k}a", 50, nx=True)
    rec(r.expire, "{k}a", 500, gt=True)
    rec.note("ttl after EXPIRE GT 500 (490..500)", in_range(490, 500)(r.ttl("{k}a")))
    rec(r.expireat, "{k}a", 4_000_000_000)
    rec(r.expiretime, "{k}a")
    rec(r.pexpiretime, "{k}a")
    rec(r.persist, "{k}a")
    rec(r.persist, "{k}a")
    rec(r.ttl, "{k}a")
    rec(r.expire, "{k}none", 10)
    rec(r.rename, "{k}a", "{k}b")
    rec(r.rename, "{k}a", "{k}c")  # no such key
    rec(r.renamenx, "{k}b", "{k}list")
    rec(r.copy, "{k}b", "{k}copy")
    rec(r.mget, "{k}a", "{k}b", "{k}copy")
    rec(r.set, "{k}int", "12345")
    rec(r.set, "{k}emb", "short")
    rec(r.set, "{k}raw", "x" * 100)
    for key in ("{k}int", "{k}emb", "{k}raw", "{k}list", "{k}set", "{k}zset", "{k}hash",
                "{k}stream", "{k}none"):  # fmt: skip
        rec(r.object, "encoding", key)
    rec(r.object, "refcount", "{k}emb")
    dumped = rec(r.dump, "{k}hash")
    rec(r.restore, "{k}restored", 0, dumped)
    rec(r.restore, "{k}restored", 0, dumped)  # BUSYKEY
    rec(r.hgetall, "{k}restored")
    # A cluster node's keys carry its slot-to-keys links (16 more bytes each in Redis 7.0), so
    # MEMORY USAGE is the node's, not what one standalone server would say: only its presence.
    rec.note("memory usage is a positive integer", in_range(1, 1000)(r.memory_usage("{k}emb")))


def connection(t: Target, rec: Record) -> None:
    r = t.client()
    rec(r.ping)
    rec(r.echo, "hello")
    rec(r.echo, b"\x00\r\n")
    rec(r.execute_command, "PING", "message")
    rec(r.client_getname)
    rec(r.client_setname, "parity-app")
    rec(r.client_getname)
    rec(r.client_setname, "has space")  # not allowed
    rec(r.select, 0)
    own_id = r.client_id()
    rec.note("client id is an integer", isinstance(own_id, int) and own_id > 0)
    info = r.client_info()
    # CLIENT INFO: these fields are the connection's state; addr, fd, age, idle, the buffer
    # sizes and ids are each server's own. lib-name/lib-ver are not compared: this Redis (7.0)
    # refuses CLIENT SETINFO, which the ambassador answers as Redis 7.2 does.
    rec.note("client info: id is CLIENT ID", int(info["id"]) == own_id)
    rec.note("client info fields", {
        k: info[k] for k in ("name", "db", "sub", "psub", "multi", "flags", "cmd", "user")
    })  # fmt: skip
    rec.note("client info resp", info.get("resp"))
    protocol = t.options.get("protocol", 3)
    hello = r.execute_command("HELLO", protocol)
    if isinstance(hello, list):  # redis-py leaves RESP2's HELLO a flat list
        hello = dict(zip(hello[::2], hello[1::2], strict=True))
    # Each server numbers its connections: the id must be this client's, the rest equal.
    rec.note("hello id is CLIENT ID", hello.get(b"id", hello.get("id")) == own_id)
    rec.note("hello", {k: v for k, v in hello.items() if k not in (b"id", "id")})
    rec(r.execute_command, "HELLO", 4)  # NOPROTO
    rec(r.config_get, "maxmemory-policy")
    rec(r.config_get, "hash-max-listpack-*")
    rec(r.command_count)
    rec(r.execute_command, "COMMAND", "INFO", "get", "mset")
    now = r.time()
    rec.note("time is (seconds, microseconds)", isinstance(now, tuple) and len(now) == 2)


def info(t: Target, rec: Record) -> None:
    r = t.client()
    for i in range(40):
        r.set(f"i:{i}", i)
    r.set("i:ttl", "x", ex=1000)
    server = r.info("server")
    rec.note("redis_mode", server.get("redis_mode"))
    rec.note("redis_version", server.get("redis_version"))
    # The rest of the server section is the process's own: pid, run_id, uptime, port, paths.
    rec.note("server section fields present", {
        "redis_version", "redis_mode", "os", "arch_bits", "process_id", "run_id", "tcp_port",
        "uptime_in_seconds",
    } <= set(server))  # fmt: skip
    everything = r.info()
    rec.note("cluster_enabled", everything.get("cluster_enabled"))
    rec.note("db0 keys and expires", {
        k: v for k, v in everything.get("db0", {}).items() if k in ("keys", "expires")
    })  # fmt: skip
    # Counters (memory, stats, clients) are each process's own history: only their presence.
    for name in ("used_memory", "connected_clients", "total_commands_processed", "role"):
        rec.note(f"info has {name}", name in everything)
    rec.note("role", everything.get("role"))
    # Every field a standalone server shows, the ambassador shows: only the ambassador_* fields
    # are its own, and errorstat_* depend on the errors each server has seen so far.
    rec.note("INFO field names, without ambassador_* and errorstat_*", sorted(
        k for k in everything if not k.startswith(("ambassador_", "errorstat_"))
    ))  # fmt: skip
    rec.note("info keyspace", r.info("keyspace").get("db0", {}).get("keys"))


@pytest.mark.parametrize(
    "workload",
    [strings, hashes, lists, sets, sorted_sets, streams, helpers, pipelines, transactions,
     pubsub, scripts, keyspace, connection, info],
)  # fmt: skip
def test_workload_gives_the_same_results_as_a_standalone_redis(
    pair: Pair, workload: Workload
) -> None:
    pair.compare(workload)


# -- what still tells them apart ------------------------------------------------------------------


def server_config(t: Target, rec: Record) -> None:
    r = t.client()
    rec.note("CONFIG GET port is the port the client dialed", r.config_get("port").get("port")
             == str(t.port))  # fmt: skip
    rec.note("INFO tcp_port is the port the client dialed", r.info("server")["tcp_port"] == t.port)
    rec(r.config_get, "cluster-enabled")
    rec.note("INFO cluster_enabled", r.info("cluster")["cluster_enabled"])


def test_config_get_agrees_with_info_about_the_server(pair: Pair) -> None:
    pair.compare(server_config)


def test_role_lists_no_replicas_as_info_replication_does(
    ambassador: Ambassador, cluster: LocalCluster, standalone_redis: StandaloneRedis
) -> None:
    """Against the session cluster, which has replicas: ROLE must agree with INFO."""
    assert cluster.replicas()
    with standalone_redis.client() as plain, ambassador.client() as through:
        expected = plain.execute_command("ROLE")
        got = through.execute_command("ROLE")
        replicas_in_info = through.info("replication")["connected_slaves"]
    assert expected == [b"master", 0, []]
    assert replicas_in_info == 0
    assert (got[0], got[2]) == (b"master", [])


CROSSSLOT = Failure("ClusterCrossSlotError", "Keys in request don't hash to the same slot")


def test_what_a_cluster_refuses_gets_the_clusters_error(pair: Pair) -> None:
    """Where one Redis and a Redis Cluster differ by nature, the application gets what Redis
    Cluster answers (docs/commands.md: "What it does with each command"); pinned here so a
    change shows.
    Each command's two keys hash to different slots."""
    cases: list[tuple[tuple[str, ...], Failure]] = [
        (("BLPOP", "la", "lb", "0.1"), CROSSSLOT),  # a priority queue over two lists
        (("SINTER", "a", "b"), CROSSSLOT),
        (("XREAD", "STREAMS", "xa", "xb", "0", "0"), CROSSSLOT),
        (("EVAL", "return 1", "2", "a", "b"), CROSSSLOT),
        # Redis 7.0 refuses SORT's BY and GET patterns in cluster mode, whatever their slot.
        (("SORT", "{s}l", "BY", "{s}w_*"),
         Failure("ResponseError", "BY option of SORT denied in Cluster mode.")),
        (("SORT", "{s}l", "GET", "#"),
         Failure("ResponseError", "GET option of SORT denied in Cluster mode.")),
        (("RENAME", "a", "b"), CROSSSLOT),
        (("SELECT", "1"), Failure("ResponseError", "SELECT is not allowed in cluster mode")),
    ]  # fmt: skip
    plain, through = pair.standalone.client(), pair.ambassador.client()
    for client in (plain, through):
        client.sadd("a", "x")
        client.rpush("{s}l", "2", "1")
    # A script that touches a key it did not declare runs on the node of the keys it declared
    # (any master when none), which refuses keys of other slots.
    script = "return redis.call('SCARD', 'a')"
    assert plain.eval(script, 1, "b") == 1
    with pytest.raises(redis.ResponseError, match=r"^Script attempted to access"):
        through.eval(script, 1, "b")
    for command, refusal in cases:
        keys = [k for k in command[1:] if k.isalpha() and k not in ("BY", "GET", "STREAMS")]
        assert len({key_slot(k.encode()) for k in keys}) == len(keys), command
        plain.execute_command(*command)  # one Redis runs it
        try:
            got: Any = through.execute_command(*command)
        except redis.RedisError as exc:
            got = plain_value(exc)
        assert got == refusal, command
