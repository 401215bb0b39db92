"""The pytest plugin (redis_ambassador.local.testing) used by the project's own tests: faults
through ``chaos.fault`` seen by a plain redis-py client, node helpers, ``wait_healthy``, and the
example app's chaos tests run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_ambassador.local.testing import Chaos

pytest_plugins = ["redis_ambassador.local.testing"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _plain(chaos: Chaos) -> redis.Redis:
    """A plain redis.Redis on the ambassador, without redis-py's own retries (it retries
    LOADING by default: BusyLoadingError is a ConnectionError)."""
    return redis.Redis(host=chaos.host, port=chaos.port, retry=Retry(NoBackoff(), 0))


def test_a_fault_with_a_probability_is_seen_through_a_plain_client(chaos: Chaos) -> None:
    client = _plain(chaos)
    client.set("plugin:k", "v")
    seen: Counter[str] = Counter()
    with chaos.fault(
        command="GET", error="LOADING Redis is loading the dataset in memory", probability=0.5
    ) as fault:
        for _ in range(400):
            try:
                assert client.get("plugin:k") == b"v"
                seen["ok"] += 1
            except redis.BusyLoadingError as exc:
                assert str(exc) == "Redis is loading the dataset in memory"
                seen["loading"] += 1
        assert 140 <= seen["loading"] <= 260, seen  # 200 expected; 7 standard deviations
        assert (fault.hits, fault.matched) == (seen["loading"], 400)
    assert client.get("plugin:k") == b"v"  # the rule went with the block
    assert chaos.rules() == []


def test_rules_left_by_a_test_are_removed_after_it(chaos: Chaos) -> None:
    chaos.add(key="plugin:left:*", delay_ms=1)
    assert len(chaos.rules()) == 1  # the next test starts without it (restore())


def test_a_killed_master_is_failed_over_and_wait_healthy_waits_for_it(chaos: Chaos) -> None:
    assert chaos.rules() == []  # the previous test's rule is gone
    victim = chaos.master_for("plugin:kill")
    chaos.kill(victim)
    chaos.wait_healthy()
    assert chaos.master_for("plugin:kill") is not victim
    with _plain(chaos) as client:
        assert client.set("plugin:kill", "alive") and client.get("plugin:kill") == b"alive"


def test_the_killed_master_was_brought_back_as_a_replica(chaos: Chaos) -> None:
    assert all(node.is_running() for node in chaos.cluster.nodes)
    assert len(chaos.masters()) == 3 and len(chaos.replicas()) == 3


def test_a_paused_master_times_commands_out_until_resumed(chaos: Chaos) -> None:
    owner = chaos.master_for("plugin:pause")
    chaos.pause(owner)
    with (
        redis.Redis(
            host=chaos.host, port=chaos.port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
        ) as client,
        pytest.raises(redis.TimeoutError),
    ):
        client.get("plugin:pause")
    chaos.resume(owner)
    chaos.wait_healthy()
    with _plain(chaos) as client:
        assert client.set("plugin:pause", "back")


def test_the_example_app_passes_its_chaos_tests() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLES / "test_inventory_chaos.py"), "-q",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=300, check=False, cwd=EXAMPLES,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
