"""Node actions through the chaos API on the cluster `redis-ambassador dev` started: a killed
master is failed over while the ambassador keeps serving, pause/resume, restart, a forced
failover, and a live slot migration (through the CLI)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from redis_ambassador.faults.client import ChaosApiError, ChaosClient
from redis_ambassador.local.testing import Ambassador, free_port

KEY = "chaosnodes:key"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ambassador]:
    """`redis-ambassador dev`: its own 3+3 cluster, chaos always on, admin on a free port."""
    host, port, admin = "127.0.0.1", free_port(), free_port()
    log = tmp_path_factory.mktemp("dev") / "dev.log"
    args = [sys.executable, "-m", "redis_ambassador", "dev", "--port", str(port),
            "--admin", f"{host}:{admin}"]  # fmt: skip
    running = Ambassador.launch(args, host, port, log)
    running.admin_port = admin
    try:
        running._wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture
def api(dev: Ambassador) -> ChaosClient:
    return ChaosClient(f"127.0.0.1:{dev.admin_port}")


def _nodes(api: ChaosClient) -> dict[str, dict]:
    return {node["address"]: node for node in api.nodes()}


def _owner(api: ChaosClient, key: str) -> str:
    """The master of the key's slot, asked of a running node directly (the ambassador shows
    itself as the whole cluster)."""
    asked = next(n["address"] for n in api.nodes() if n["state"] == "running")
    host, port = asked.rsplit(":", 1)
    with redis.Redis(host=host, port=int(port), protocol=2) as node:
        for start, end, master, *_ in node.execute_command("CLUSTER", "SLOTS"):
            if start <= key_slot(key.encode()) <= end:
                return f"{master[0].decode()}:{master[1]}"
    raise AssertionError("no owner")


def _until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> float:
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - began


def _serves(dev: Ambassador, value: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with dev.client(protocol=2, socket_timeout=2) as client:
                return bool(client.set(KEY, value)) and client.get(KEY) == value.encode()
        except redis.RedisError:
            return False

    return check


def test_the_api_lists_the_nodes_the_ambassador_started(dev: Ambassador, api: ChaosClient) -> None:
    state = api.state()
    assert state["rules"] == []
    roles = sorted(node["role"] for node in state["nodes"])
    assert roles == ["master"] * 3 + ["replica"] * 3
    assert {node["state"] for node in state["nodes"]} == {"running"}


def test_a_killed_master_fails_over_and_the_ambassador_keeps_serving(
    dev: Ambassador, api: ChaosClient
) -> None:
    assert _serves(dev, "before")()
    victim = _owner(api, KEY)
    killed = api.node("kill", victim)
    assert (killed["address"], killed["state"]) == (victim, "killed")
    took = _until("a replica to take the killed master's slots", _serves(dev, "after"))
    print(f"\n  writes to the killed master's slots answered again after {took:.1f}s")
    assert _owner(api, KEY) != victim
    with dev.client(protocol=2) as client:
        assert client.get(KEY) == b"after"

    restarted = api.node("restart", victim)
    assert restarted["state"] == "running"
    _until(
        "the restarted node to rejoin as a replica",
        lambda: _nodes(api)[victim]["role"] == "replica",
    )


def test_pause_and_resume_a_master(dev: Ambassador, api: ChaosClient) -> None:
    owner = _owner(api, KEY)
    assert api.node("pause", owner)["state"] == "paused"
    no_retries = Retry(NoBackoff(), 0)  # redis-py's own would outlast the pause
    with (
        dev.client(protocol=2, socket_timeout=0.5, retry=no_retries) as client,
        pytest.raises(redis.TimeoutError),
    ):
        client.get(KEY)  # no answer from a stopped process
    assert api.node("resume", owner)["state"] == "running"
    _until("the resumed master to answer", _serves(dev, "resumed"))


def test_a_forced_failover_promotes_a_replica_of_the_master(
    dev: Ambassador, api: ChaosClient
) -> None:
    _until("a healthy cluster", _serves(dev, "pre-failover"))
    owner = _owner(api, KEY)
    api.node("failover", owner)  # a master: one of its replicas takes over
    assert _nodes(api)[owner]["role"] == "replica"
    _until("the ambassador to follow the failover", _serves(dev, "post-failover"))
    assert _owner(api, KEY) != owner


def test_a_live_migration_through_the_cli(dev: Ambassador, api: ChaosClient) -> None:
    key = "chaosnodes:migrated"
    slot = key_slot(key.encode())
    owner = _owner(api, key)
    target = next(
        n["address"] for n in api.nodes() if n["role"] == "master" and n["address"] != owner
    )
    with dev.client(protocol=2) as client:
        client.set(key, "moved")
    done = subprocess.run(
        [sys.executable, "-m", "redis_ambassador", "chaos", "migrate",
         "--slots", str(slot), "--to", target, "--admin", f"127.0.0.1:{dev.admin_port}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"moved 1 slots of {slot}-{slot} to {target}\n"
    assert _owner(api, key) == target
    with dev.client(protocol=2) as client:
        assert client.get(key) == b"moved"


def test_unknown_nodes_and_impossible_actions_are_refused(api: ChaosClient) -> None:
    with pytest.raises(ChaosApiError) as unknown:
        api.node("kill", "127.0.0.1:1")
    assert unknown.value.status == 404 and "no node 127.0.0.1:1" in str(unknown.value)
    running = api.nodes()[0]["address"]
    with pytest.raises(ChaosApiError) as not_paused:
        api.node("resume", running)
    assert not_paused.value.status == 409 and "not paused" in str(not_paused.value)
    with pytest.raises(ChaosApiError) as bad:
        api.node("explode", running)
    assert bad.value.status == 400
