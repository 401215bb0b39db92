"""Secrets under a running ambassador: rotated by SIGHUP (the clients' password file, the
cluster's password), and never shown anywhere, on any path."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Ambassador, RawConnection, resp

from redis_ambassador.localcluster import LocalCluster

CLI = [sys.executable, "-m", "redis_ambassador"]
OK = b"+OK\r\n"
NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def _toml(path: Path, **sections: dict[str, object]) -> Path:
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_value(value)}" for key, value in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _value(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


# -- the clients' password ------------------------------------------------------------------------


def test_a_rewritten_requirepass_file_takes_effect_on_sighup_for_new_sign_ins(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    secret = tmp_path / "requirepass"
    secret.write_text("first-pw\n")
    config = _toml(
        tmp_path / "ambassador.toml",
        server={"client_auth": "password", "requirepass_file": str(secret)},
    )
    ambassador = start_ambassador(cluster, extra_args=("--config", str(config)))
    with RawConnection(ambassador.host, ambassador.port) as early:
        assert early.exchange(resp("AUTH", "first-pw") + resp("SET", "rotated", "1"), 2) == [OK] * 2

        secret.write_text("second-pw\n")  # as a Kubernetes secret mount is updated
        line = ambassador.reload("config reload")
        assert line.endswith("config reloaded: server.requirepass_file now in effect"), line
        with RawConnection(ambassador.host, ambassador.port) as late:
            assert late.exchange(resp("AUTH", "first-pw") + resp("GET", "rotated"), 2) == [
                WRONGPASS,
                NOAUTH,
            ]
            assert late.exchange(resp("AUTH", "second-pw") + resp("GET", "rotated"), 2) == [
                OK,
                b"$1\r\n1\r\n",
            ]
        # Signed in before the rotation: still in, as on Redis after CONFIG SET requirepass.
        assert early.exchange(resp("GET", "rotated")) == [b"$1\r\n1\r\n"]

        # A file that cannot be read is never taken as "no password": the running one stays.
        secret.unlink()
        line = ambassador.reload("config reload")
        assert line.endswith(
            f"config reload: config error: server.requirepass_file: {secret} not found; "
            "still using the running clients' password"
        ), line
        with RawConnection(ambassador.host, ambassador.port) as late:
            assert late.exchange(resp("AUTH", "second-pw")) == [OK]
    assert "second-pw" not in ambassador.stderr_text()


# -- the cluster's password -----------------------------------------------------------------------

OLD_CLUSTER_PW = "cluster-pw-before"
NEW_CLUSTER_PW = "cluster-pw-after"


@pytest.fixture
def protected() -> Iterator[LocalCluster]:
    """A one-master cluster whose nodes ask for OLD_CLUSTER_PW (this test rotates it)."""
    with LocalCluster(masters=1, replicas_per_master=0, password=OLD_CLUSTER_PW) as local:
        yield local


def _rotate_on_the_nodes(local: LocalCluster, old: str, new: str) -> None:
    """What an operator does first: the nodes take the new password (connections already
    signed in stay so), before the ambassador is given it."""
    for node in local.nodes:
        with local.client(node, password=old) as admin:
            admin.config_set("masterauth", new)
            admin.config_set("requirepass", new)


def test_a_rotated_cluster_password_signs_in_every_new_node_connection(
    protected: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    secret = tmp_path / "cluster-password"
    secret.write_text(OLD_CLUSTER_PW + "\n")
    config = _toml(
        tmp_path / "ambassador.toml",
        upstream={"password_file": str(secret), "pool_size": 1},
        cluster={"refresh_interval": 0.5},
    )
    ambassador = start_ambassador(protected, extra_args=("--config", str(config)), admin=True)
    # Connected and signed in (no client auth: the ambassador's user) before the rotation.
    early = RawConnection(ambassador.host, ambassador.port)
    assert early.exchange(resp("SET", "k", "v")) == [OK]
    _rotate_on_the_nodes(protected, OLD_CLUSTER_PW, NEW_CLUSTER_PW)
    # Until the ambassador is told, a new node connection is refused: the test can tell.
    with RawConnection(ambassador.host, ambassador.port) as before:
        refused = before.exchange(resp("BLPOP", "queue", "0.01"))[0]
        assert b"authentication failed: WRONGPASS" in refused, refused

    secret.write_text(NEW_CLUSTER_PW + "\n")
    line = ambassador.reload("config reload")
    assert line.endswith("config reloaded: upstream.password_file now in effect"), line
    reloaded_at = len(ambassador.stderr_text())
    refreshed = ambassador.metric("topology_refreshes_total", result="ok")
    for node in protected.nodes:  # every connection the ambassador has open to the nodes drops
        with protected.client(node, password=NEW_CLUSTER_PW) as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    # The pool's lane reopens signed in anew; the early client's own connections (a blocking
    # command, a subscription) open now, with the new password, not the one it started with.
    assert early.exchange(resp("GET", "k")) == [b"$1\r\nv\r\n"]
    assert early.exchange(resp("RPUSH", "queue", "job")) == [b":1\r\n"]
    assert early.exchange(resp("BLPOP", "queue", "1")) == [b"*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n"]
    assert early.exchange(resp("SUBSCRIBE", "news")) == [
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    ]
    with ambassador.client() as publisher:
        assert publisher.publish("news", "hello") == 1
    assert early.read_reply() == b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    early.close()
    # Discovery signs in anew: refreshes (every 0.5 s) succeed again, and keep succeeding (those
    # between the nodes' change and the SIGHUP failed, as they should).
    deadline = time.monotonic() + 20

    def refreshes_after(count: int) -> None:
        while ambassador.metric("topology_refreshes_total", result="ok") < refreshed + count:
            assert time.monotonic() < deadline, ambassador.stderr_text()
            time.sleep(0.1)

    refreshes_after(1)
    failed = ambassador.metric("topology_refreshes_total", result="failed")
    refreshes_after(3)
    assert ambassador.metric("topology_refreshes_total", result="failed") == failed
    # So do the health checks: their probe connection, dropped too, is back and PINGing.
    node = protected.nodes[0]
    with protected.client(node, password=NEW_CLUSTER_PW) as admin:
        while b"cmd=ping" not in admin.execute_command("CLIENT", "LIST", "TYPE", "normal"):
            assert time.monotonic() < deadline, ambassador.stderr_text()
            time.sleep(0.1)
    assert ambassador.metric("breaker_state", node=node.address) == 0  # closed all along
    after = ambassador.stderr_text()[reloaded_at:]
    assert "authentication failed" not in after and "circuit breaker" not in after, after
    assert OLD_CLUSTER_PW not in ambassador.stderr_text()
    assert NEW_CLUSTER_PW not in ambassador.stderr_text()
