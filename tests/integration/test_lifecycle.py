"""Process lifecycle with a real ambassador process: SIGTERM drains (every reply to a command
already read is written before its client is closed), SIGHUP reloads the config file, and idle
clients are closed after ``server.idle_timeout``."""

from __future__ import annotations

import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Ambassador, RawConnection, _free_port, resp
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster

NIL = (b"*-1\r\n", b"$-1\r\n")  # BLPOP's timeout reply (RESP2 null array; either is a nil)


def wait_for_log(ambassador: Ambassador, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    """The first match of ``pattern`` in the ambassador's log, once it has been written."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, ambassador.stderr_text())
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line matching {pattern!r}:\n{ambassador.stderr_text()}")
        time.sleep(0.02)


def exit_code(ambassador: Ambassador, timeout: float = 10.0) -> int:
    return ambassador.process.wait(timeout=timeout)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def key() -> str:
    return f"lifecycle:{uuid.uuid4().hex}"


# -- graceful shutdown ---------------------------------------------------------------------------


def test_sigterm_writes_every_reply_already_owed_then_closes_refuses_new_clients_and_exits_0(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], key: str
) -> None:
    ambassador = start_ambassador(cluster)
    idle = ambassador.raw()
    assert idle.exchange(resp("PING")) == [b"+PONG\r\n"]
    busy = ambassador.raw()
    # One small write, so one read: 200 commands, a blocking one that answers after 1 s, and
    # 50 more that the ambassador holds until it has (a blocked Redis client runs nothing after).
    before = [resp("SET", f"{{{key}}}{i}", i) for i in range(100)]
    before += [resp("GET", f"{{{key}}}{i}") for i in range(100)]
    after = [resp("INCR", f"{{{key}}}n") for _ in range(50)]
    busy.send(b"".join([*before, resp("BLPOP", f"{key}:empty", "1"), *after]))
    assert busy.read_replies(200)[-1] == b"$2\r\n99\r\n"  # the read happened; BLPOP is blocked

    ambassador.process.send_signal(signal.SIGTERM)
    wait_for_log(
        ambassador, r"SIGTERM received: draining: 2 clients open, 51 commands awaiting replies"
    )
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ambassador.host, ambassador.port), timeout=2).close()
    assert idle.read_until_closed(timeout=0.8) == b""  # nothing owed: closed at once

    assert busy.read_reply(timeout=5) in NIL
    assert busy.read_replies(50) == [b":%d\r\n" % n for n in range(1, 51)]
    assert busy.read_until_closed() == b""
    assert exit_code(ambassador) == 0
    log = ambassador.stderr_text()
    assert re.search(r"drained in [\d.]+s: every reply written", log), log
    assert "Traceback" not in log


def test_drain_timeout_bounds_the_wait_and_the_log_counts_what_was_cut_off(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], key: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "drain.toml", "[server]\ndrain_timeout = 0.5\n")
    ambassador = start_ambassador(cluster, extra_args=("--config", str(config)))
    blocked = ambassador.raw()
    block_forever(cluster, blocked, f"{key}:never")

    started = time.monotonic()
    ambassador.process.send_signal(signal.SIGTERM)
    assert blocked.read_until_closed(timeout=5) == b""
    assert exit_code(ambassador) == 0
    assert 0.4 < time.monotonic() - started < 4
    assert re.search(
        r"drain cut off by drain_timeout after [\d.]+s: closing 1 clients with 1 commands "
        r"unanswered",
        ambassador.stderr_text(),
    )


def test_a_second_sigterm_during_the_drain_stops_at_once(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], key: str
) -> None:
    ambassador = start_ambassador(cluster)  # drain_timeout: the default 10 s
    blocked = ambassador.raw()
    block_forever(cluster, blocked, f"{key}:never")
    ambassador.process.send_signal(signal.SIGTERM)
    wait_for_log(ambassador, r"draining: 1 clients open, 1 commands awaiting replies")

    started = time.monotonic()
    ambassador.process.send_signal(signal.SIGINT)
    assert exit_code(ambassador) == 0
    assert time.monotonic() - started < 3
    assert blocked.read_until_closed(timeout=1) == b""
    assert re.search(
        r"drain cut off by SIGINT after [\d.]+s: closing 1 clients with 1 commands",
        ambassador.stderr_text(),
    )


def block_forever(cluster: LocalCluster, conn: RawConnection, key: str) -> None:
    """Send ``BLPOP key 0`` and return once the key's master has one more client blocked in
    BLPOP: the ambassador has read it and sent it on."""
    node = cluster.master_for_slot(key_slot(key.encode()))

    def blocked() -> int:
        with cluster.client(node) as client:
            listing = client.execute_command("CLIENT", "LIST")
        return len(re.findall(rb"flags=b .*cmd=blpop", listing))

    before = blocked()
    conn.send(resp("BLPOP", key, "0"))
    deadline = time.monotonic() + 5
    while blocked() <= before:
        assert time.monotonic() < deadline, f"BLPOP {key} never reached its node"
        time.sleep(0.01)


# -- SIGHUP reloads the config --------------------------------------------------------------------


@pytest.fixture
def reloadable(tmp_path: Path) -> Iterator[tuple[Ambassador, Path, LocalCluster]]:
    """An ambassador on a cluster of its own (FLUSHDB runs here), configured by a file alone:
    no --listen flag, which would override the file's listen key."""
    with LocalCluster() as local:
        host, port = "127.0.0.1", _free_port("127.0.0.1")
        config = write_config(tmp_path / "ambassador.toml", f'[server]\nlisten = "{host}:{port}"\n')
        args = [sys.executable, "-m", "redis_ambassador", "serve", "--config", str(config)]
        for seed in local.seeds:
            args += ["--seed", seed]
        ambassador = Ambassador.launch(args, host, port, tmp_path / "ambassador.log")
        try:
            ambassador._wait_ready()
            yield ambassador, config, local
        finally:
            ambassador.stop()


def test_sighup_applies_a_new_command_policy_and_reports_what_needs_a_restart(
    reloadable: tuple[Ambassador, Path, LocalCluster],
) -> None:
    ambassador, config, _ = reloadable
    listen = f"{ambassador.host}:{ambassador.port}"
    conn = ambassador.raw()
    assert conn.exchange(resp("FLUSHDB"))[0].startswith(b"-")  # `serve` denies it by default

    write_config(config, f'[server]\nlisten = "{listen}"\n[commands]\nallow = ["flushdb"]\n')
    ambassador.process.send_signal(signal.SIGHUP)
    wait_for_log(ambassador, r"config reloaded: commands\.allow now in effect")
    assert conn.exchange(resp("FLUSHDB")) == [b"+OK\r\n"]  # a client already connected, too

    moved = f"127.0.0.1:{_free_port('127.0.0.1')}"
    write_config(
        config,
        f'[server]\nlisten = "{moved}"\n[upstream]\npool_size = 3\n'
        '[commands]\nallow = ["flushdb"]\n',
    )
    ambassador.process.send_signal(signal.SIGHUP)
    line = wait_for_log(ambassador, r"config reload: .* a restart; still using .*").group(0)
    assert line.startswith("config reload: server.listen, upstream.pool_size need a restart")
    assert f"server.listen = '{listen}'" in line and "upstream.pool_size = 2" in line
    assert conn.exchange(resp("PING")) == [b"+PONG\r\n"]  # still serving where it was

    write_config(config, "[server]\nlisten = \n")
    ambassador.process.send_signal(signal.SIGHUP)
    wait_for_log(
        ambassador,
        r"config reload failed: config error: invalid TOML in .*; still using the running config",
    )
    assert conn.exchange(resp("FLUSHDB")) == [b"+OK\r\n"]  # the running config was kept

    ambassador.process.send_signal(signal.SIGTERM)
    assert exit_code(ambassador) == 0


# -- idle clients ---------------------------------------------------------------------------------


def test_idle_clients_are_closed_after_idle_timeout_but_blocked_and_subscribed_ones_are_not(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], key: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "idle.toml", "[server]\nidle_timeout = 1\n")
    ambassador = start_ambassador(cluster, extra_args=("--config", str(config)))
    blocked = ambassador.raw()
    block_forever(cluster, blocked, key)
    subscriber = ambassador.raw()
    assert subscriber.exchange(resp("SUBSCRIBE", key)) == [
        b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%b\r\n:1\r\n" % (len(key), key.encode())
    ]
    idle = ambassador.raw()
    assert idle.exchange(resp("PING")) == [b"+PONG\r\n"]
    started = time.monotonic()

    # The idle client read last: once it is closed, the others were idle longer, and spared.
    assert idle.read_until_closed(timeout=5) == b""
    assert 1 <= time.monotonic() - started < 3.5
    other = ambassador.raw()
    other.exchange(resp("PUBLISH", key, "m"))
    assert subscriber.read_reply() == b"*3\r\n$7\r\nmessage\r\n$%d\r\n%b\r\n$1\r\nm\r\n" % (
        len(key),
        key.encode(),
    )
    assert other.exchange(resp("RPUSH", key, "v")) == [b":1\r\n"]
    assert blocked.read_reply() == b"*2\r\n$%d\r\n%b\r\n$1\r\nv\r\n" % (len(key), key.encode())
    # Answered, the formerly blocked client is idle like any other.
    assert blocked.read_until_closed(timeout=5) == b""
