"""The command line as a user meets it: `dev` end to end, `serve` refusing what it cannot do."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from redis_ambassador.localcluster import LocalCluster

CLI = [sys.executable, "-m", "redis_ambassador"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_until(process: subprocess.Popen[bytes], pattern: str, timeout: float) -> str:
    """What the process printed until a line matches ``pattern``; fails with it on timeout."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            if re.search(pattern, seen.decode(errors="replace")):
                return seen.decode(errors="replace")
    raise AssertionError(f"never printed {pattern!r}; got: {seen.decode(errors='replace')}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_dev_serves_a_local_cluster_and_ctrl_c_removes_every_process_and_file() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [*CLI, "dev", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = _read_until(process, rf"ambassador serving on 127\.0\.0\.1:{port}", timeout=90)
        nodes = _children(process.pid)
        assert len(nodes) == 6, lines  # 3 masters + 3 replicas
        data_dirs = {Path(os.readlink(f"/proc/{pid}/cwd")).parent for pid in nodes}
        client = redis.Redis(port=port)
        assert client.set("foo", "bar") is True
        assert client.get("foo") == b"bar"
        # dev's command policy allows what serve denies by default.
        assert client.flushall() is True
        assert client.config_set("slowlog-max-len", 200) is True
        client.close()

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in nodes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in nodes if _alive(pid)]
        assert not [d for d in data_dirs if d.exists()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("topology", "started", "processes"),
    [
        ("standalone", r"local standalone redis-server on 127\.0\.0\.1:\d+", 1),
        ("sentinel", r"local sentinel set 'mymaster': master \S+, replicas \S+, sentinels", 5),
    ],
)
def test_dev_topology_starts_that_shape_says_what_and_removes_it_on_ctrl_c(
    topology: str, started: str, processes: int
) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [*CLI, "dev", "--topology", topology, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = _read_until(process, rf"ambassador serving on 127\.0\.0\.1:{port}", timeout=90)
        assert re.search(started, lines), lines
        servers = _children(process.pid)
        assert len(servers) == processes, lines
        with redis.Redis(port=port, protocol=2) as client:
            assert client.mset({"a": "1", "b": "2"}) is True  # two slots: no CROSSSLOT
            with pytest.raises(redis.ResponseError, match="cluster support disabled"):
                client.execute_command("CLUSTER", "INFO")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in servers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in servers if _alive(pid)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (["--masters", "0"], "--masters = 0 (from command line): must be an integer >= 1"),
        (["--replicas", "-1"], "--replicas = -1 (from command line): must be an integer >= 0"),
        (["--topology", "sentinel", "--replicas", "-2"], "--replicas = -2 (from command line)"),
        (["--port", "-1"], "--port = -1 (from command line): must be an integer from 1 to 65535"),
        (["--port", "70000"], "--port = 70000 (from command line): must be an integer from 1"),
        (["--host", " "], "--host = ' ' (from command line): must be a host name or IP address"),
        (["--pool-size", "0"], "upstream.pool_size = 0 (from command line): must be an integer"),
    ],
)
def test_dev_refuses_a_bad_flag_in_one_line_as_serve_does(flags: list[str], line: str) -> None:
    result = subprocess.run(
        [*CLI, "dev", *flags], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 2
    assert result.stdout == ""  # nothing was started
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("config error: " + line), result.stderr


def test_serve_on_a_port_in_use_says_so_in_one_line_without_a_traceback(
    cluster: LocalCluster,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*CLI, "serve", "--listen", f"127.0.0.1:{port}", "--seed", cluster.seeds[0]],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in result.stderr


def test_serve_refuses_a_bad_setting_naming_the_key_and_where_it_came_from() -> None:
    result = subprocess.run(
        [*CLI, "serve", "--seed", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REDIS_AMBASSADOR_POOL_SIZE": "0"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "config error: upstream.pool_size = 0 (from REDIS_AMBASSADOR_POOL_SIZE): "
        "must be an integer >= 1"
    )


def test_serve_without_seeds_says_how_to_give_them() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_AMBASSADOR_")}
    result = subprocess.run([*CLI, "serve"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "cluster.seeds is empty" in result.stderr
    assert "--seed HOST:PORT" in result.stderr


def test_serve_with_no_reachable_seed_exits_with_a_clear_message() -> None:
    result = subprocess.run(
        [
            *CLI,
            "serve",
            "--listen",
            f"127.0.0.1:{_free_port()}",
            "--seed",
            f"127.0.0.1:{_free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no cluster node answered" in result.stderr
