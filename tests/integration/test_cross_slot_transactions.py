"""MULTI/EXEC whose keys span slots (commands.cross_slot_transactions), against a real cluster
and compared with one plain redis-server: under ``per-node`` the replies are byte for byte one
Redis's; under ``refuse``, Redis Cluster's CROSSSLOT naming the setting; WATCH on one node
decides the whole; a node dying between two parts leaves the first applied and says so."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Ambassador, RawConnection, resp

from redis_ambassador.local.cluster import LocalCluster
from redis_ambassador.local.servers import LocalStandalone
from redis_ambassador.slots import key_slot

# Hash tags on each master of the session's 3-master cluster ({b} slot 3300, {c} 7365, {a}
# 15495) and one more on the first ({f} 3168), so a transaction also has two slots on one node.
_TAGS = ["{b}", "{c}", "{a}", "{f}"]
EXEC_FAILED = b"-ERR redis-ambassador: this command's part of the transaction failed ("


def _keys(run: str) -> list[str]:
    return [f"{tag}{run}:{name}" for tag in _TAGS for name in ("s", "n", "l", "h", "z")]


def _random_command(rng: random.Random, keys: list[str]) -> list[str]:
    """A command whose reply is the same on any server given the same data: strings,
    counters, lists, hashes, sets, sorted sets, type errors, keyless ones, and multi-key
    commands over keys in several slots (split inside the transaction)."""
    key = rng.choice(keys)
    value = rng.choice(["a", "b", "10", "x y"])
    some = rng.sample(keys, rng.randint(2, 4))
    if rng.random() < 0.2:
        name = rng.choice(["MGET", "DEL", "UNLINK", "EXISTS", "TOUCH", "MSET"])
        if name == "MSET":
            return [name, *(part for key in some for part in (key, value))]
        return [name, *some]
    return rng.choice(
        [
            ["SET", key, value], ["GET", key], ["INCR", key], ["INCRBY", key, "5"],
            ["APPEND", key, value], ["STRLEN", key], ["LPUSH", key, value],
            ["LRANGE", key, "0", "-1"], ["HSET", key, "f", value], ["HGETALL", key],
            ["SADD", key, value], ["SCARD", key], ["ZADD", key, "1.5", value],
            ["ZRANGE", key, "0", "-1", "WITHSCORES"], ["DEL", key], ["EXISTS", key],
            ["TYPE", key], ["PING"], ["ECHO", value], ["CLIENT", "GETNAME"],
        ]
    )  # fmt: skip


def _transaction(conn: RawConnection, commands: list[list[str]]) -> list[bytes]:
    """MULTI, the commands, EXEC in one write; every reply, EXEC's last."""
    request = resp("MULTI") + b"".join(resp(*c) for c in commands) + resp("EXEC")
    return conn.exchange(request, len(commands) + 2)


def _address(server: LocalStandalone) -> tuple[str, int]:
    host, _, port = server.seeds[0].rpartition(":")
    return host, int(port)


@pytest.mark.parametrize("protocol", [2, 3])
def test_random_transactions_over_slots_get_one_redis_replies_byte_for_byte(
    ambassador: Ambassador, standalone_redis: LocalStandalone, protocol: int
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    keys = _keys(run)
    with ambassador.raw() as through, RawConnection(*_address(standalone_redis)) as plain:
        if protocol == 3:
            assert (
                through.exchange(resp("HELLO", "3"))[0][:1]
                == plain.exchange(resp("HELLO", "3"))[0][:1]
            )
        for number in range(40):
            commands = [_random_command(rng, keys) for _ in range(rng.randint(1, 12))]
            got = _transaction(through, commands)
            expected = _transaction(plain, commands)
            assert got == expected, f"seed {seed}, transaction {number}: {commands}"
        for key in keys:
            plain.exchange(resp("DEL", key))
            through.exchange(resp("DEL", key))


def test_commands_sent_after_exec_see_every_part_applied(ambassador: Ambassador) -> None:
    """The parts go out one after another; what the client sends after EXEC, in the same write
    or the next, must not overtake the later parts (it would not see their writes)."""
    run = uuid.uuid4().hex[:8]
    with ambassador.raw() as conn:
        for n in range(50):
            first, second = f"{{b}}{run}:{n}", f"{{a}}{run}:{n}"
            tx = resp("MULTI") + resp("SET", first, "1") + resp("INCR", second) + resp("EXEC")
            after = resp("GET", second) + resp("DEL", first, second)
            if n % 2:
                conn.send(tx + after)
            else:
                conn.send(tx)
                conn.send(after)
            assert conn.read_replies(6) == [
                b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"*2\r\n+OK\r\n:1\r\n",
                b"$1\r\n1\r\n", b":2\r\n",
            ]  # fmt: skip


def test_refuse_answers_redis_clusters_crossslot_naming_the_setting(
    start_ambassador: Callable[..., Ambassador], cluster: LocalCluster, tmp_path: Path
) -> None:
    config = tmp_path / "refuse.toml"
    config.write_text('[commands]\ncross_slot_transactions = "refuse"\n')
    ambassador = start_ambassador(cluster, extra_args=("--config", str(config)))
    run = uuid.uuid4().hex[:8]
    first, second = f"{{b}}{run}:x", f"{{a}}{run}:y"
    with ambassador.raw() as conn:
        replies = _transaction(conn, [["SET", first, "1"], ["SET", second, "2"]])
        assert conn.exchange(resp("EXISTS", first, second)) == [b":0\r\n"]
    assert replies == [
        b"+OK\r\n",
        b"+QUEUED\r\n",
        b"-CROSSSLOT Keys in request don't hash to the same slot "
        b"(commands.cross_slot_transactions = refuse)\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    ]


def test_a_watch_on_one_node_decides_a_transaction_over_two_as_arq_enqueues(
    ambassador: Ambassador,
) -> None:
    """arq: WATCH the job key, then MULTI, PSETEX the job, ZADD the queue, EXEC."""
    run = uuid.uuid4().hex[:8]
    job, queue = f"{{b}}{run}:job", f"{{a}}{run}:queue"
    assert key_slot(job.encode()) // 5461 != key_slot(queue.encode()) // 5461
    enqueue = [["PSETEX", job, "60000", "payload"], ["ZADD", queue, "1", job]]
    with ambassador.raw() as conn, ambassador.raw() as other:
        assert conn.exchange(resp("WATCH", job)) == [b"+OK\r\n"]
        assert _transaction(conn, enqueue)[-1] == b"*2\r\n+OK\r\n:1\r\n"
        # A second enqueue while another client touches the watched key: nothing runs.
        assert conn.exchange(resp("WATCH", job)) == [b"+OK\r\n"]
        assert other.exchange(resp("SET", job, "changed")) == [b"+OK\r\n"]
        aborted = _transaction(conn, [["PSETEX", job, "60000", "again"], ["ZADD", queue, "2", "x"]])
        assert aborted[-1] == b"*-1\r\n"
        assert conn.exchange(resp("ZCARD", queue) + resp("GET", job), 2) == [
            b":1\r\n",
            b"$7\r\nchanged\r\n",
        ]
        conn.exchange(resp("DEL", job) + resp("DEL", queue), 2)


def test_a_node_dying_between_two_parts_leaves_the_first_applied_and_says_so(
    start_ambassador: Callable[..., Ambassador],
) -> None:
    with LocalCluster() as local:
        ambassador = start_ambassador(local)
        run = uuid.uuid4().hex[:8]
        first, second = f"{{b}}{run}:n", f"{{a}}{run}:n"
        a, b = (
            local.master_for_slot(key_slot(first.encode())),
            local.master_for_slot(key_slot(second.encode())),
        )
        assert a.port != b.port
        with ambassador.raw(timeout=30) as conn:
            assert conn.exchange(resp("PING") + resp("GET", second), 2)[0] == b"+PONG\r\n"
            local.pause(b)  # its part is written to it, and waits there
            conn.send(resp("MULTI") + resp("INCR", first) + resp("INCR", second) + resp("EXEC"))
            assert conn.read_replies(3) == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"]
            time.sleep(0.5)  # the first part has run; the second waits on the paused node
            local.kill(b)
            (reply,) = conn.read_replies(1, timeout=30)
        assert reply.startswith(b"*2\r\n:1\r\n" + EXEC_FAILED), reply
        assert b"the parts before it were applied" in reply
        with local.client(a) as direct:
            assert direct.get(first) == b"1"  # ran once, and only once
        local.wait_healthy()
        with local.client(local.master_for_slot(key_slot(second.encode()))) as direct:
            assert direct.get(second) is None  # the killed node's part never ran
