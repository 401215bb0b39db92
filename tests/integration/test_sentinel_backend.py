"""The ambassador in front of a Sentinel-managed master and replica (``--backend sentinel``),
with real ``redis-server --sentinel`` processes: the master the sentinels name is served, reads
follow ``read_policy`` to its replica, and a failover is followed without a restart."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from conftest import _free_port, resp

from redis_ambassador.local.servers import LocalSentinelSet, LocalServer, LocalStandalone

if TYPE_CHECKING:
    from conftest import Ambassador


def calls(server: LocalServer, command: str) -> int:
    """How many times ``server`` ran ``command`` since its stats were last reset."""
    with server.client() as client:
        stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def reset_stats(*servers: LocalServer) -> None:
    for server in servers:
        with server.client() as client:
            client.config_resetstat()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_named_master_is_served_and_reads_go_to_its_replica(
    sentinel_set: LocalSentinelSet, start_ambassador: Callable[..., Ambassador]
) -> None:
    ambassador = start_ambassador(sentinel_set, extra_args=("--read-policy", "replica"))
    master, (replica,) = sentinel_set.master(), sentinel_set.replicas()
    with ambassador.client(protocol=2) as client, replica.client() as on_replica:
        assert client.mset({"a": "1", "b": "2"})  # keys in two slots: one server takes both
        wait_until(lambda: on_replica.get("b") == b"2", "the replica to have the write")
        reset_stats(master, replica)
        assert client.get("a") == b"1"
        assert client.get("b") == b"2"
    assert calls(replica, "get") == 2
    assert calls(master, "get") == 0


def test_addresses_the_sentinels_give_are_mapped_by_address_map(
    sentinel_set: LocalSentinelSet, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    """A Docker-style set: the sentinels name addresses the ambassador must dial otherwise."""
    master, (replica,) = sentinel_set.master(), sentinel_set.replicas()
    mapped = {master: f"localhost:{master.port}", replica: f"localhost:{replica.port}"}
    pairs = ", ".join(f'"{node.address}" = "{to}"' for node, to in mapped.items())
    config = tmp_path / "ambassador.toml"
    config.write_text(f"[cluster]\naddress_map = {{ {pairs} }}\n")
    ambassador = start_ambassador(
        sentinel_set, extra_args=("--config", str(config), "--read-policy", "replica"), admin=True
    )
    with ambassador.client(protocol=2) as client:
        assert client.set("k", "v")
        with replica.client() as on_replica:
            wait_until(lambda: on_replica.get("k") == b"v", "the replica to have the write")
        assert client.get("k") == b"v"
    assert ambassador.metric("backend_masters", backend="sentinel", master=mapped[master]) == 1
    assert ambassador.metric("upstream_commands_total", node=mapped[replica]) >= 1


def test_a_sentinel_failover_is_followed_with_errors_only_during_the_promotion(
    sentinel_set: LocalSentinelSet, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    # The old master becomes a readable replica after its resync, which no sentinel event
    # announces: the periodic refresh finds it.
    config = tmp_path / "ambassador.toml"
    config.write_text("[cluster]\nrefresh_interval = 1.0\n")
    ambassador = start_ambassador(
        sentinel_set,
        extra_args=("--read-policy", "prefer-replica", "--config", str(config)),
        admin=True,
    )
    old = sentinel_set.master()
    outcomes: list[tuple[float, str]] = []  # (when, "ok" or the error)
    stop = threading.Event()

    def write() -> None:
        with ambassador.client(protocol=2, socket_timeout=10) as client:
            while not stop.is_set():
                try:
                    client.incr("counter")
                    outcomes.append((time.monotonic(), "ok"))
                except redis.RedisError as exc:
                    outcomes.append((time.monotonic(), str(exc)))
                time.sleep(0.005)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: len(outcomes) > 20, "writes before the failover")
        started = time.monotonic()
        new = sentinel_set.failover()
        promoted = time.monotonic()
        # Writes reach the promoted master through the same ambassador process.
        with new.client() as direct:
            before = int(direct.get("counter") or 0)
            wait_until(
                lambda: int(direct.get("counter") or 0) > before + 20, "writes on the new master"
            )
        after = time.monotonic()
        wait_until(lambda: any(t > after + 1 for t, _ in outcomes), "writes after the switch")
    finally:
        stop.set()
        writer.join(20)
    assert new is not old
    assert ambassador.process.poll() is None
    assert ambassador.metric("backend_masters", backend="sentinel", master=new.address) == 1
    assert ambassador.metric("backend_masters", backend="sentinel", master=old.address) == 0
    errors = [(t, e) for t, e in outcomes if e != "ok"]
    assert all(started <= t <= promoted + 1 for t, _ in errors), errors
    assert sum(1 for t, e in outcomes if e == "ok" and t > promoted) > 20
    assert len(errors) <= 5, errors
    # Once the old master replicates the new one, it is the replica reads go to.
    sentinel_set.wait_settled(new)
    reset_stats(old, new)
    with ambassador.client(protocol=2) as client:
        wait_until(
            lambda: (client.get("counter"), calls(old, "get"))[1] > 0, "a read on the old master"
        )
        assert client.incr("counter") > 20
    assert calls(new, "incrby") == 1  # redis-py's INCR


def test_commands_wait_for_the_promotion_when_the_master_dies(
    sentinel_set: LocalSentinelSet, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    """SIGKILL the master: the sentinels see it down after 1 s and promote the replica; the
    writes sent meanwhile wait for it (upstream.retry_deadline) instead of failing."""
    config = tmp_path / "ambassador.toml"
    # A few seconds usually; room for a slow, shared machine.
    config.write_text("[upstream]\nretry_deadline = 20.0\nretry_attempts = 100\n")
    ambassador = start_ambassador(sentinel_set, extra_args=("--config", str(config)))
    old, (replica,) = sentinel_set.master(), sentinel_set.replicas()
    with ambassador.client(protocol=2) as client:
        assert client.set("k", "before")
    answers: list[object] = []

    def write_during_the_failover() -> None:
        with ambassador.client(protocol=2, socket_timeout=30) as client:
            try:
                answers.append(client.set("k", "during"))
            except redis.RedisError as exc:
                answers.append(exc)

    old.kill()
    writer = threading.Thread(target=write_during_the_failover)
    writer.start()
    writer.join(30)
    assert answers == [True]
    with replica.client() as promoted:
        assert promoted.get("k") == b"during"
        assert promoted.role()[0] == b"master"
    assert ambassador.process.poll() is None


def pubsub_clients(server: LocalServer) -> int:
    """Subscribed connections on ``server``, the sentinels' own (hello channel) not counted."""
    with server.client() as client:
        listed = client.client_list(_type="pubsub")
    return sum(1 for c in listed if not str(c.get("name", "")).startswith("sentinel-"))


def test_subscribers_move_to_the_new_master_at_the_switch(
    sentinel_set: LocalSentinelSet, start_ambassador: Callable[..., Ambassador]
) -> None:
    """After SENTINEL FAILOVER the old master runs on, a master still, until a sentinel demotes
    it (up to 10 s later); subscribers there would hear nothing published on the new one."""
    ambassador = start_ambassador(sentinel_set)
    old = sentinel_set.master()
    with ambassador.client(protocol=2) as subscriber, ambassador.client(protocol=2) as publisher:
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe("news")
        pubsub.ssubscribe("shard-news")
        wait_until(lambda: pubsub_clients(old) == 2, "both subscriptions on the master")
        new = sentinel_set.failover()
        wait_until(lambda: pubsub_clients(new) == 2, "the subscriptions on the new master", 5)
        assert pubsub_clients(old) == 0
        assert publisher.publish("news", "after") == 1
        assert publisher.spublish("shard-news", "sharded") == 1
        got: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)  # None also for a confirmation
            if message is not None:
                got.append((message["type"], message["data"]))
        assert got == [("message", b"after"), ("smessage", b"sharded")]
        pubsub.close()


def test_sentinels_that_ask_for_a_password_get_it_from_a_secret_file(
    start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    secret = tmp_path / "sentinel-password"
    secret.write_text("s3cret\n")  # as `echo` or an editor leaves it
    config = tmp_path / "ambassador.toml"
    config.write_text(f'[cluster]\nsentinel_password_file = "{secret}"\n')
    with LocalSentinelSet(sentinel_password="s3cret") as protected:
        ambassador = start_ambassador(protected, extra_args=("--config", str(config)))
        with ambassador.client(protocol=2) as client:
            assert client.set("k", "v")
            new = protected.failover()
            # The switch is heard on the sentinels' (password-protected) event channel.
            wait_until(lambda: "+switch-master" in ambassador.stderr_text(), "the switch event")
            with new.client() as direct:
                wait_until(lambda: client.set("k", "after") and direct.get("k") == b"after",
                           "writes on the new master")  # fmt: skip


def test_a_seed_that_is_no_sentinel_stops_start_up_with_one_line(
    standalone_redis: LocalStandalone,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "redis_ambassador", "serve", "--listen", f"127.0.0.1:{_free_port()}",
         "--backend", "sentinel", "--seed", standalone_redis.seeds[0]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no sentinel answered for master 'mymaster'" in result.stderr
    assert "unknown command 'SENTINEL'" in result.stderr


def test_with_no_master_left_commands_get_masterdown_after_waiting(
    sentinel_set: LocalSentinelSet, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    config = tmp_path / "ambassador.toml"
    config.write_text("[upstream]\nretry_deadline = 0.5\n")
    ambassador = start_ambassador(sentinel_set, extra_args=("--config", str(config)), admin=True)
    for node in sentinel_set.data:
        node.kill()
    expected = b"-MASTERDOWN redis-ambassador: no reachable master (sentinel backend)\r\n"
    replies: list[bytes] = []

    def masterdown() -> bool:
        with ambassador.raw(timeout=10) as conn:
            replies.extend(conn.exchange(resp("SET", "k", "v")))
        return replies[-1] == expected

    wait_until(masterdown, "MASTERDOWN")
    assert ambassador.metric("ready") == 0
    # Logged once, not at each of the refreshes the waiting commands asked for.
    assert ambassador.stderr_text().count("which is not a reachable master") == 1
