"""The admin HTTP listener against a real ambassador and cluster: /healthz, /readyz through a
master's death and its replica's promotion, and /metrics moving with known traffic."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.crc import key_slot

from redis_ambassador.faults.client import ChaosApiError, ChaosClient
from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador


@pytest.fixture(scope="module")
def admin_cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as local:
        yield local


def _get(
    ambassador: Ambassador, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    url = f"http://127.0.0.1:{ambassador.admin_port}{path}"
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(ambassador: Ambassador) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = _get(ambassador, "/metrics")
    assert status == 200
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_health_ready_and_unknown_paths(
    admin_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> None:
    ambassador = start_ambassador(admin_cluster, admin=True)
    try:
        assert _get(ambassador, "/healthz") == (200, "ok\n")
        assert _get(ambassador, "/readyz") == (200, "ready\n")
        assert _get(ambassador, "/healthz", method="HEAD") == (200, "")
        status, body = _get(ambassador, "/nope")
        assert status == 404 and "/metrics" in body
        assert _get(ambassador, "/metrics", method="POST")[0] == 405
    finally:
        ambassador.stop()


def test_metrics_move_with_known_traffic(
    admin_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> None:
    ambassador = start_ambassador(admin_cluster, admin=True)
    try:
        before = _samples(ambassador)
        with ambassador.client(protocol=2) as client:
            for i in range(10):
                client.set(f"metrics:{i}", "v")
            for i in range(7):
                client.get(f"metrics:{i}")
            client.mget([f"metrics:{i}" for i in range(5)])  # split across slots
            client.execute_command("HGETALL", "metrics:hash")
            client.ping()
            after = _samples(ambassador)
            assert _value(after, "redis_ambassador_client_connections") >= 1
        total = "redis_ambassador_commands_total"
        assert _value(after, total, command="set") - _value(before, total, command="set") == 10
        assert _value(after, total, command="get") - _value(before, total, command="get") == 7
        assert _value(after, total, command="mget") - _value(before, total, command="mget") == 1
        assert (
            _value(after, total, command="hgetall") - _value(before, total, command="hgetall") == 1
        )
        assert _value(after, total, command="ping") - _value(before, total, command="ping") == 1
        accepted = "redis_ambassador_client_connections_total"
        assert _value(after, accepted) > _value(before, accepted)
        for counter in ("client_bytes_received_total", "client_bytes_sent_total"):
            name = f"redis_ambassador_{counter}"
            assert _value(after, name) > _value(before, name)
        masters = [node.address for node in admin_cluster.masters()]
        sent = "redis_ambassador_upstream_commands_total"
        assert (
            sum(_value(after, sent, node=m) - _value(before, sent, node=m) for m in masters) >= 22
        )
        for master in masters:
            assert _value(after, "redis_ambassador_upstream_connections", node=master) >= 1
            assert _value(after, "redis_ambassador_breaker_state", node=master) == 0
        assert _value(after, "redis_ambassador_slots_covered") == 16384
        assert _value(after, "redis_ambassador_ready") == 1
        assert _value(after, "redis_ambassador_topology_refreshes_total", result="failed") == 0
        assert 0 <= _value(after, "redis_ambassador_slot_map_age_seconds") < 60
        assert _value(after, "process_resident_memory_bytes") > 0
        # No label carries a key or a client address.
        labels = {v for (_, pairs) in after for (_, v) in pairs}
        assert not any(v.startswith("metrics:") for v in labels)
    finally:
        ambassador.stop()


def test_readyz_is_false_while_a_master_is_gone_and_true_after_the_failover(
    start_ambassador: Callable[..., Ambassador],
) -> None:
    with LocalCluster() as local:
        ambassador = start_ambassador(local, admin=True)
        try:
            assert _get(ambassador, "/readyz")[0] == 200
            victim = local.master_for_slot(key_slot(b"ready"))
            local.kill(victim)
            deadline = time.monotonic() + 15
            while (status := _get(ambassador, "/readyz"))[0] == 200:
                assert time.monotonic() < deadline, "/readyz stayed ready with a master dead"
                time.sleep(0.05)
            assert status[0] == 503 and status[1].startswith("not ready: "), status
            samples = _samples(ambassador)
            assert _value(samples, "redis_ambassador_ready") == 0
            # INFO through the ambassador says the same.
            with ambassador.client(protocol=2) as client:
                info = client.info("ambassador")
            assert info["ambassador_ready"] == 0
            reason = str(info["ambassador_unready_reason"])
            assert "masters unreachable" in reason or "slots have no master" in reason, info
            deadline = time.monotonic() + 30
            while _get(ambassador, "/readyz")[0] != 200:
                assert time.monotonic() < deadline, "/readyz not ready again after the failover"
                time.sleep(0.1)
            assert local.master_for_slot(key_slot(b"ready")).port != victim.port
            with ambassador.client(protocol=2) as client:
                assert client.set("ready", "again") is True
        finally:
            ambassador.stop()


def test_an_admin_token_guards_everything_but_the_probes(
    admin_cluster: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_AMBASSADOR_ADMIN_TOKEN", "t0ken")
    ambassador = start_ambassador(admin_cluster, admin=True)
    try:
        assert _get(ambassador, "/healthz") == (200, "ok\n")
        assert _get(ambassador, "/readyz") == (200, "ready\n")
        for path in ("/metrics", "/chaos"):
            status, body = _get(ambassador, path)
            assert status == 401 and "Authorization: Bearer" in body, (path, status, body)
            assert _get(ambassador, path, headers={"Authorization": "Bearer nope"})[0] == 401
        status, text = _get(ambassador, "/metrics", headers={"Authorization": "Bearer t0ken"})
        assert status == 200 and "redis_ambassador_ready 1.0" in text
        # Without --chaos the API says so (once past the token).
        status, text = _get(ambassador, "/chaos/rules", "POST", {"Authorization": "Bearer t0ken"})
        assert (status, text) == (404, '{"error": "chaos is not enabled (serve --chaos)"}\n')
        # The chaos client sends $REDIS_AMBASSADOR_ADMIN_TOKEN (here: set above) or --token.
        admin = f"127.0.0.1:{ambassador.admin_port}"
        for client, status in [(ChaosClient(admin), 404), (ChaosClient(admin, token="x"), 401)]:
            with pytest.raises(ChaosApiError) as refused:
                client.rules()
            assert refused.value.status == status
        assert "t0ken" not in ambassador.stderr_text()
    finally:
        ambassador.stop()


def test_an_admin_port_in_use_is_one_clear_line(admin_cluster: LocalCluster) -> None:
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free.bind(("127.0.0.1", 0))
        listen = free.getsockname()[1]
        free.close()  # free for the ambassador's client port: only the admin port is taken
        result = subprocess.run(
            [sys.executable, "-m", "redis_ambassador", "serve", "--listen", f"127.0.0.1:{listen}",
             "--seed", admin_cluster.seeds[0], "--admin", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"redis-ambassador: admin listener: cannot listen on 127.0.0.1:{port}: the port is "
        "already in use (choose another with --admin HOST:PORT, or --admin off)"
    )


def test_latency_histograms_are_sampled_from_real_traffic(
    admin_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> None:
    ambassador = start_ambassador(admin_cluster, admin=True)
    try:
        with ambassador.client(protocol=2, single_connection_client=True) as client:
            for i in range(64 * 10):  # one command per read: every 64th read is timed
                client.get(f"latency:{i}")
        samples = _samples(ambassador)
        requests = _value(samples, "redis_ambassador_request_duration_seconds_count", command="get")
        assert 9 <= requests <= 11, requests
        total = _value(samples, "redis_ambassador_request_duration_seconds_sum", command="get")
        assert 0 < total / requests < 1.0  # seconds per sampled GET: plausible, not zero
        inf = _value(
            samples, "redis_ambassador_request_duration_seconds_bucket", command="get", le="+Inf"
        )
        assert inf == requests
        masters = [node.address for node in admin_cluster.masters()]
        timed = sum(
            _value(samples, "redis_ambassador_node_latency_seconds_count", node=m) for m in masters
        )
        assert timed >= 6, timed  # ~640 flushes over the masters' lanes, one in 64 timed
    finally:
        ambassador.stop()


def test_slow_requests_are_logged_and_counted_but_blocking_ones_are_not(
    admin_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    config = tmp_path / "slow.toml"
    config.write_text('[server]\nslow_log_threshold = 0.05\n[commands]\nallow = ["debug"]\n')
    ambassador = start_ambassador(admin_cluster, admin=True, extra_args=("--config", str(config)))
    try:
        with ambassador.client(protocol=2, client_name="reporter") as client:
            client.get("slow:fast")
            client.blpop(["slow:empty"], timeout=0.2)  # blocks 0.2 s: not slow, just blocking
            client.execute_command("DEBUG", "SLEEP", "0.1")  # answered after 100 ms: slow
            client.get("slow:fast")
        deadline = time.monotonic() + 5
        while "slow request" not in ambassador.stderr_text():
            assert time.monotonic() < deadline, "no slow-request line"
            time.sleep(0.05)
        lines = [line for line in ambassador.stderr_text().splitlines() if "slow request" in line]
        assert len(lines) == 1, lines
        assert "ms for 'debug' from client 127.0.0.1:" in lines[0]
        assert lines[0].endswith(", name reporter)")
        assert _value(_samples(ambassador), "redis_ambassador_slow_requests_total") == 1
    finally:
        ambassador.stop()


def test_errors_are_counted_by_command_whoever_answers(
    admin_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> None:
    ambassador = start_ambassador(admin_cluster, admin=True)
    try:
        with ambassador.client(protocol=2) as client:
            client.set("errors:str", "text")
            for _ in range(3):  # a node's error: WRONGTYPE
                with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                    client.lpush("errors:str", "x")
            with pytest.raises(
                redis.ResponseError, match="same slot"
            ):  # the ambassador's CROSSSLOT
                client.msetnx({"errors:a": "1", "errors:b": "2"})
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command("NOSUCHCOMMAND", "x")
            client.get("errors:str")
        samples = _samples(ambassador)
        errors = "redis_ambassador_command_errors_total"
        assert _value(samples, errors, command="lpush") == 3
        assert _value(samples, errors, command="msetnx") == 1
        assert _value(samples, errors, command="unknown") == 1
        assert _value(samples, errors, command="get") == 0
        assert _value(samples, "redis_ambassador_commands_total", command="lpush") == 3
    finally:
        ambassador.stop()


def test_readyz_says_starting_while_the_cluster_is_being_discovered() -> None:
    """A seed that accepts connections but never answers holds discovery for the connect
    timeout; meanwhile the admin listener already answers: alive, not ready."""
    with socket.socket() as silent, socket.socket() as free, socket.socket() as free2:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        free.bind(("127.0.0.1", 0))
        free2.bind(("127.0.0.1", 0))
        admin_port, listen_port = free.getsockname()[1], free2.getsockname()[1]
        free.close()
        free2.close()
        process = subprocess.Popen(
            [sys.executable, "-m", "redis_ambassador", "serve", "--listen",
             f"127.0.0.1:{listen_port}",
             "--seed", f"127.0.0.1:{silent.getsockname()[1]}", "--admin",
             f"127.0.0.1:{admin_port}", "--connect-timeout", "3"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1):
                        raise AssertionError("ready before the cluster was found")
                except urllib.error.HTTPError as exc:
                    assert exc.code == 503
                    assert exc.read() == b"not ready: starting: discovering the cluster\n"
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert time.monotonic() < deadline, "the admin listener never answered"
                    time.sleep(0.05)
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/healthz", timeout=1) as r:
                assert r.status == 200
            assert process.wait(timeout=20) == 1  # no node answered: one line, exit 1
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            assert process.stderr is not None
            process.stderr.close()
