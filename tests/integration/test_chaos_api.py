"""The chaos control API and the `chaos` CLI against a real `serve --chaos` ambassador: rules
added, listed, hit through a plain redis-py client, removed and cleared; invalid rules refused
naming the field (HTTP 400, CLI exit 2); node actions refused where the ambassador did not start
the cluster."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_ambassador.faults.client import ChaosApiError, ChaosClient
from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador

LOADING = "LOADING Redis is loading the dataset in memory"


@pytest.fixture(scope="module")
def chaotic(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> Iterator[Ambassador]:
    running = start_ambassador(cluster, admin=True, extra_args=("--chaos", "--chaos-seed", "42"))
    yield running
    running.stop()


@pytest.fixture
def api(chaotic: Ambassador) -> Iterator[ChaosClient]:
    client = ChaosClient(f"127.0.0.1:{chaotic.admin_port}")
    yield client
    client.clear()


def _plain(ambassador: Ambassador) -> redis.Redis:
    """redis-py without its own retries: each fault is seen as it is."""
    return ambassador.client(retry=Retry(NoBackoff(), 0))


def _chaos_cli(ambassador: Ambassador, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redis_ambassador", "chaos", *args,
         "--admin", f"127.0.0.1:{ambassador.admin_port}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_rule_added_through_the_api_is_hit_listed_and_removed(
    chaotic: Ambassador, api: ChaosClient
) -> None:
    with _plain(chaotic) as client:
        client.set("chaosapi:k", "v")
        rule = api.add(command="GET", key="chaosapi:*", error=LOADING)
        assert rule["id"] and rule["hits"] == 0 and rule["error"] == LOADING
        for _ in range(3):
            with pytest.raises(redis.BusyLoadingError, match=r"^Redis is loading the dataset"):
                client.get("chaosapi:k")
        assert client.get("other:k") is None  # another key: no fault
        assert client.set("chaosapi:k", "w")  # another command: no fault
        state = api.state()
        assert state["seed"] == 42 and "nodes" not in state
        [listed] = state["rules"]
        assert (listed["id"], listed["hits"], listed["matched"]) == (rule["id"], 3, 3)
        api.remove(rule["id"])
        assert client.get("chaosapi:k") == b"w"
    with pytest.raises(ChaosApiError) as gone:
        api.remove(rule["id"])
    assert gone.value.status == 404
    assert api.rules() == []


def test_clear_removes_every_rule(api: ChaosClient) -> None:
    for i in range(3):
        api.add(key=f"clear:{i}", delay_ms=1)
    assert len(api.rules()) == 3
    assert api.clear() == 3
    assert api.rules() == []


def test_an_invalid_rule_is_refused_with_the_field_named(api: ChaosClient) -> None:
    with pytest.raises(ChaosApiError) as refused:
        api.add(command="GET", error=LOADING, probability=1.5)
    assert refused.value.status == 400
    assert str(refused.value) == "probability: must be between 0 and 1"
    assert api.rules() == []


def test_node_actions_are_refused_when_the_ambassador_did_not_start_the_cluster(
    chaotic: Ambassador, api: ChaosClient, cluster: LocalCluster
) -> None:
    with pytest.raises(ChaosApiError) as refused:
        api.node("kill", cluster.nodes[0].address)
    assert refused.value.status == 409 and "redis-ambassador dev" in str(refused.value)
    assert cluster.nodes[0].is_running()


def test_the_cli_adds_lists_removes_and_clears_rules(chaotic: Ambassador, api: ChaosClient) -> None:
    added = _chaos_cli(
        chaotic, "add", "--command", "GET", "--key", "chaoscli:*", "--error", LOADING
    )
    assert added.returncode == 0, added.stderr
    rule_id = added.stdout.strip()
    assert rule_id.isdigit()
    with _plain(chaotic) as client, pytest.raises(redis.BusyLoadingError):
        client.get("chaoscli:1")
    listed = _chaos_cli(chaotic, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "seed 42, 1 rules",
        f"{rule_id:>4}  hits 1/1 matched  active   --command get --key chaoscli:* "
        f"--error '{LOADING}'",
    ]
    removed = _chaos_cli(chaotic, "remove", rule_id)
    assert (removed.returncode, removed.stdout) == (0, f"removed rule {rule_id}\n")
    again = _chaos_cli(chaotic, "remove", rule_id)
    assert again.returncode == 1 and f"no rule {rule_id}" in again.stderr
    _chaos_cli(chaotic, "add", "--delay-ms", "1")
    cleared = _chaos_cli(chaotic, "clear")
    assert (cleared.returncode, cleared.stdout) == (0, "removed 1 rules\n")


def test_the_cli_exits_2_naming_the_field_of_an_invalid_rule(chaotic: Ambassador) -> None:
    refused = _chaos_cli(chaotic, "add", "--command", "GET", "--drop", "after", "--split", "3")
    assert refused.returncode == 2
    assert refused.stderr == (
        "redis-ambassador chaos: split: one action per rule (also given: drop)\n"
    )
    unreachable = subprocess.run(
        [sys.executable, "-m", "redis_ambassador", "chaos", "list", "--admin", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert unreachable.returncode == 1
    assert "cannot reach the admin listener at http://127.0.0.1:1" in unreachable.stderr


def _raw_http(ambassador: Ambassador, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", ambassador.admin_port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_bad_requests_get_an_answer_and_the_listener_carries_on(
    chaotic: Ambassador, api: ChaosClient
) -> None:
    cases = [
        (b"POST /chaos/rules HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n{}", b"413"),
        (b"POST /chaos/rules HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
         b"411"),
        (b"POST /chaos/rules HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"POST /chaos/rules HTTP/1.1\r\nContent-Length: 3\r\n\r\n{\xff}", b"400"),
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"DELETE /metrics HTTP/1.1\r\n\r\n", b"405"),
    ]  # fmt: skip
    for request, status in cases:
        answer = _raw_http(chaotic, request)
        assert answer.startswith(b"HTTP/1.1 " + status), (request, answer)
    # A body cut short: the connection is closed without an answer, nothing else happens.
    assert _raw_http(chaotic, b"POST /chaos/rules HTTP/1.1\r\nContent-Length: 50\r\n\r\n{") == b""
    assert api.rules() == []
    assert api.add(delay_ms=1)["id"]
