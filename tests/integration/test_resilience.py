"""Circuit breakers and health checks against real processes: a hung node is found without
traffic and failed fast; a whole cluster down fails fast and is found again when it returns.

Breaker transitions are read from the ambassador's log (one line per change).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from conftest import resp
from redis.crc import key_slot

from redis_ambassador.localcluster import LocalCluster, LocalNode

if TYPE_CHECKING:
    from conftest import Ambassador


def _wait_for_log(ambassador: Ambassador, text: str, timeout: float) -> float:
    """Seconds until ``text`` appears in the ambassador's log (fails after ``timeout``)."""
    began = time.monotonic()
    while text not in ambassador.stderr_text():
        assert ambassador.process.poll() is None, "the ambassador exited"
        assert time.monotonic() - began < timeout, f"no {text!r} in the log within {timeout}s"
        time.sleep(0.05)
    return time.monotonic() - began


def _key_on(cluster: LocalCluster, node: LocalNode) -> str:
    i = 0
    while cluster.master_for_slot(key_slot(f"{{hung:{i}}}".encode())).port != node.port:
        i += 1
    return f"{{hung:{i}}}"  # a hashtag: "<key>:list" lives on the same node


def _config(tmp_path: Path, text: str) -> tuple[str, str]:
    path = tmp_path / "ambassador.toml"
    path.write_text(text)
    return ("--config", str(path))


def test_a_hung_node_is_found_by_health_checks_failed_fast_and_its_recovery_noticed(
    start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    # No replicas and a long node timeout: the pause cannot turn into a failover. The command
    # timeout stays at its generous default (30 s): the breaker, not the timeout, must act.
    with LocalCluster(replicas_per_master=0, node_timeout_ms=15_000) as local:
        config = _config(tmp_path, "[upstream]\nretry_deadline = 0.5\n")
        ambassador = start_ambassador(local, extra_args=config)
        hung = local.masters()[0]
        key = _key_on(local, hung)
        client = ambassador.client(protocol=2, socket_timeout=20)
        blocked = ambassador.raw(timeout=20)
        try:
            assert client.set(key, "v") is True
            blocked.send(resp("BLPOP", f"{key}:list", "0"))  # blocked on the node, forever
            local.pause(hung)
            # No client traffic at all: the health checks alone open the breaker.
            opened = _wait_for_log(
                ambassador, f"node {hung.address}: circuit breaker closed -> open", 15
            )
            # The blocked client is told, rather than left waiting on a node that is gone.
            told = f"-ERR redis-ambassador: node {hung.address} unavailable: circuit breaker open ("
            assert blocked.read_reply(timeout=5).startswith(told.encode())
            began = time.monotonic()
            try:
                client.get(key)
                raise AssertionError("a read of the hung node's key succeeded")
            except redis.ResponseError as exc:
                assert str(exc) == (
                    f"redis-ambassador: node {hung.address} unavailable: circuit breaker open"
                )
            waited = time.monotonic() - began
            assert waited < 2.0, f"the error took {waited:.1f}s (retry_deadline is 0.5 s)"
            print(f"hung node: breaker open after {opened:.1f}s; its key failed in {waited:.2f}s")
            local.resume(hung)
            _wait_for_log(
                ambassador, f"node {hung.address}: circuit breaker half-open -> closed", 10
            )
            assert client.get(key) == b"v"
        finally:
            local.resume(hung)
            client.close()
            blocked.close()
            ambassador.stop()


def test_a_whole_cluster_down_fails_fast_and_is_served_again_when_it_returns(
    start_ambassador: Callable[..., Ambassador],
) -> None:
    with LocalCluster(replicas_per_master=0) as local:
        ambassador = start_ambassador(local)
        client = ambassador.client(protocol=2, socket_timeout=20)
        try:
            assert client.set("down:{a}", "1") is True
            masters = local.masters()
            for node in masters:
                local.kill(node)
            # Every node refuses: no retry deadline is waited out, the client hears at once.
            _wait_for_log(ambassador, "topology refresh failed", 10)
            for _ in range(3):
                began = time.monotonic()
                try:
                    client.get("down:{a}")
                    raise AssertionError("a read succeeded with every node dead")
                except redis.ResponseError as exc:
                    assert "unavailable" in str(exc) or "not served" in str(exc), exc
                waited = time.monotonic() - began
                assert waited < 1.0, f"the error took {waited:.2f}s"
            for node in masters:
                local.restart(node)
            local.wait_healthy()
            # Found again without a restart: the breakers' probes see the nodes answer.
            deadline = time.monotonic() + 15
            while True:
                try:
                    assert client.set("down:{a}", "2") is True
                    break
                except redis.ResponseError:
                    assert time.monotonic() < deadline, "not served again within 15 s"
                    time.sleep(0.1)
            assert client.get("down:{a}") == b"2"
            assert ambassador.process.poll() is None
        finally:
            client.close()
            ambassador.stop()


def test_commands_in_flight_when_their_master_dies_are_replayed_only_if_reads_or_idempotent(
    start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    """The master is paused (so the commands surely reached it and wait there) and then
    killed: its connections reset with the commands unanswered. The read and the SET declared
    idempotent are sent again and answered by the promoted replica; the INCR may have run, so
    its client is told."""
    with LocalCluster() as local:
        config = _config(tmp_path, '[upstream]\nretry_deadline = 20\nidempotent = ["set"]\n')
        ambassador = start_ambassador(local, extra_args=config, admin=True)
        tag = "{inflight}"
        victim = local.master_for_slot(key_slot(tag.encode()))
        with local.client(victim) as direct:
            direct.set(f"{tag}:read", "kept")
            assert direct.execute_command("WAIT", 1, 5000) == 1
        raws = {name: ambassador.raw(timeout=30) for name in ("get", "set", "incr")}
        try:
            for raw in raws.values():  # each opens its lanes while the master answers
                raw.send(b"*1\r\n$4\r\nPING\r\n")
                assert raw.read_reply() == b"+PONG\r\n"
            local.pause(victim)
            raws["get"].send(resp("GET", f"{tag}:read"))
            raws["set"].send(resp("SET", f"{tag}:written", "v"))
            raws["incr"].send(resp("INCR", f"{tag}:n"))
            time.sleep(0.3)  # written to the paused node, unanswered
            local.kill(victim)
            assert raws["get"].read_reply(timeout=30) == b"$4\r\nkept\r\n"
            assert raws["set"].read_reply(timeout=30) == b"+OK\r\n"
            incr = raws["incr"].read_reply(timeout=30)
            assert (
                incr
                == (
                    f"-ERR redis-ambassador: node {victim.address} unavailable: connection lost\r\n"
                ).encode()
            )
            promoted = local.master_for_slot(key_slot(tag.encode()))
            with local.client(promoted) as direct:
                assert direct.get(f"{tag}:written") == b"v"
            # The INCR's error came after routing (the connection died): counted all the same.
            url = f"http://127.0.0.1:{ambassador.admin_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                metrics = response.read().decode()
            assert 'redis_ambassador_command_errors_total{command="incr"} 1.0' in metrics
            assert 'redis_ambassador_command_errors_total{command="get"}' not in metrics
        finally:
            for raw in raws.values():
                raw.close()
            ambassador.stop()


def test_a_node_closing_the_shared_connections_opens_no_breaker_and_fails_no_read(
    start_ambassador: Callable[..., Ambassador],
) -> None:
    """Every master closes every connection the ambassador shares among clients, ten times
    over (an operator's CLIENT KILL; a limit of the node's one client's command tripped): the
    node did not fail, so no breaker opens, and the reads caught in flight are sent again."""
    with LocalCluster(replicas_per_master=0) as local:
        ambassador = start_ambassador(local, admin=True)
        masters = local.masters()
        keys = [_key_on(local, node) for node in masters]
        problems: list[str] = []
        stop = threading.Event()

        def read_checked() -> None:
            with ambassador.client(protocol=2, socket_timeout=20) as client:
                while not stop.is_set():
                    pipe = client.pipeline(transaction=False)
                    for _ in range(5):
                        for key in keys:
                            pipe.get(key)
                    for key, got in zip(keys * 5, pipe.execute(raise_on_error=False), strict=True):
                        if got != key.encode():
                            problems.append(f"GET {key} -> {got!r}")

        with ambassador.client(protocol=2) as client:
            for key in keys:
                client.set(key, key)
        reader = threading.Thread(target=read_checked)
        reader.start()
        try:
            for _ in range(10):
                for node in masters:
                    with local.client(node) as direct:
                        direct.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                time.sleep(0.05)
        finally:
            stop.set()
            reader.join()
        assert problems == []
        assert "circuit breaker closed -> open" not in ambassador.stderr_text()
        for node in masters:
            assert ambassador.metric("breaker_state", node=node.address) == 0
        ambassador.stop()
