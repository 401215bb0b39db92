"""compose/app/app.py through a real ambassador, in front of a cluster whose nodes announce
host names as compose.yaml's do (cluster-preferred-endpoint-type hostname): no Docker needed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from packaging_helpers import COMPOSE_DIR

from redis_ambassador.local.cluster import LocalCluster


@pytest.fixture(scope="module")
def hostname_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(masters=3, replicas_per_master=0) as local:
        for node in local.nodes:
            with local.client(node) as client:
                client.config_set("cluster-announce-hostname", "localhost")
                client.config_set("cluster-preferred-endpoint-type", "hostname")
        # Host names travel by gossip: wait until every node names every master by it.
        deadline = time.monotonic() + 20
        while True:
            endpoints = set()
            for node in local.nodes:
                with local.client(node) as client:
                    for slots in client.execute_command("CLUSTER", "SLOTS"):
                        endpoints.add(slots[2][0])
            if endpoints == {b"localhost"} or endpoints == {"localhost"}:
                break
            assert time.monotonic() < deadline, f"endpoints still {endpoints}"
            time.sleep(0.1)
        yield local


def test_example_app_through_the_ambassador(
    hostname_cluster: LocalCluster, start_ambassador: Callable[..., object]
) -> None:
    ambassador = start_ambassador(hostname_cluster)
    result = subprocess.run(
        [sys.executable, str(COMPOSE_DIR / "app" / "app.py")],
        env={
            "REDIS_HOST": f"{ambassador.host}:{ambassador.port}",  # type: ignore[attr-defined]
            "APP_ITERATIONS": "30",
            "APP_INTERVAL": "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rounds = [line for line in result.stdout.splitlines() if line.startswith("app: round")]
    assert len(rounds) == 30
    assert all(": ok SET/GET " in line for line in rounds), result.stdout
    assert rounds[-1].endswith("INCR example:hits=30")
    assert "app: done: 30 rounds, 0 errors" in result.stdout
