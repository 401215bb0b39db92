"""Secrets under a running ambassador: rotated by SIGHUP (the clients' password file, the
cluster's password), and never shown anywhere, on any path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Ambassador, RawConnection, _free_port, resp

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


# -- secrets are never shown ----------------------------------------------------------------------

# One recognisable value per secret key and file; none may appear in any output, reply or metric.
CLUSTER_FILE_PW = "S3CRET-upstream-password-file-1"  # the nodes' password, from password_file
UPSTREAM_PW = "S3CRET-upstream-password-2"  # a wrong one, set as upstream.password on reload
REQUIREPASS_FILE_PW = "S3CRET-requirepass-file-1"
REQUIREPASS = "S3CRET-requirepass-2"
ENV_REQUIREPASS = "S3CRET-requirepass-env-3"
ADMIN_TOKENS = ("S3CRET-admin-token-1", "S3CRET-admin-token-2", "S3CRET-admin-token-3")
SENTINEL_FILE_PW = "S3CRET-sentinel-password-file-1"
SENTINEL_PW = "S3CRET-sentinel-password-2"
BROKEN = "S3CRET-broken-4"  # in config files that do not load
SECRETS = (
    CLUSTER_FILE_PW, UPSTREAM_PW, REQUIREPASS_FILE_PW, REQUIREPASS, ENV_REQUIREPASS,
    *ADMIN_TOKENS, SENTINEL_FILE_PW, SENTINEL_PW, BROKEN,
)  # fmt: skip


@pytest.fixture(scope="module")
def secret_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(masters=1, replicas_per_master=0, password=CLUSTER_FILE_PW) as local:
        yield local


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def _get(url: str, token: str | None = None) -> str:
    """A GET's status and body (an error's too)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return f"{response.status} {response.read().decode()}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()}"


def test_no_secret_reaches_a_log_a_metric_a_reply_or_config_check_on_any_path(
    secret_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    seen: list[str] = []  # everything printed, logged, answered or served
    files = {
        "cluster": (tmp_path / "cluster-pw", CLUSTER_FILE_PW),
        "requirepass": (tmp_path / "requirepass", REQUIREPASS_FILE_PW),
        "sentinel": (tmp_path / "sentinel-pw", SENTINEL_FILE_PW),
    }
    for path, secret in files.values():
        path.write_text(secret + "\n")
    server = {
        "client_auth": "password",
        "requirepass_file": str(files["requirepass"][0]),
        "admin_token": ADMIN_TOKENS[0],
    }
    first = {
        "server": server,
        "cluster": {"sentinel_password_file": str(files["sentinel"][0])},
        "upstream": {"password_file": str(files["cluster"][0])},
    }
    config = _toml(tmp_path / "ambassador.toml", **first)
    seed = ("--seed", secret_cluster.seeds[0])

    # `config check`, in both log formats; and a secret given two ways, an error.
    for log_format in ("plain", "json"):
        checked = _run(
            "config", "check", "--config", str(config), *seed, "--log-format", log_format
        )
        assert checked.returncode == 0, checked.stderr
        assert 'server.admin_token = "<secret>"' in checked.stdout
        seen += [checked.stdout, checked.stderr]
    twice = _run("config", "check", "--config", str(config), *seed,
                 env={"REDIS_AMBASSADOR_REQUIREPASS": ENV_REQUIREPASS})  # fmt: skip
    assert twice.returncode == 2 and "are both set" in twice.stderr
    seen += [twice.stdout, twice.stderr]

    # Start-up failures: a secret of the wrong type, a wrong cluster password, a missing file.
    wrong_type = _toml(tmp_path / "wrong-type.toml", server={"requirepass": [BROKEN]})
    wrong_password = {"REDIS_AMBASSADOR_PASSWORD": UPSTREAM_PW}
    missing = {"REDIS_AMBASSADOR_PASSWORD_FILE": str(tmp_path / "nowhere")}
    for args, env, says in (
        (("--config", str(wrong_type)), {}, "must be a string"),
        (("--log-format", "json"), wrong_password, "invalid username-password pair"),
        ((), missing, "nowhere not found"),
    ):
        failed = _run("serve", "--listen", f"127.0.0.1:{_free_port()}", *seed, *args, env=env)
        assert failed.returncode != 0 and says in failed.stderr, failed.stderr
        seen += [failed.stdout, failed.stderr]

    # Serving: bad AUTHs, a good one, the metrics with and without the token.
    ambassador = start_ambassador(secret_cluster, extra_args=("--config", str(config)), admin=True)
    metrics = f"http://127.0.0.1:{ambassador.admin_port}/metrics"
    with RawConnection(ambassador.host, ambassador.port) as conn:
        for guess in (REQUIREPASS, ADMIN_TOKENS[0], CLUSTER_FILE_PW):
            seen += conn.exchange(resp("AUTH", guess) + resp("AUTH", "default", guess), 2)
        assert conn.exchange(resp("AUTH", REQUIREPASS_FILE_PW)) == [OK]
        seen += conn.exchange(resp("HELLO", "3", "AUTH", "default", SENTINEL_PW))
    seen += [_get(metrics), _get(metrics, ADMIN_TOKENS[1]), _get(metrics, ADMIN_TOKENS[0])]
    assert "redis_ambassador_auth_failures_total 7.0" in seen[-1]

    # A reload changing every secret (the cluster's password to a wrong one), and a key that
    # needs a restart.
    _toml(
        config,
        server={"client_auth": "password", "requirepass": REQUIREPASS,
                "admin_token": ADMIN_TOKENS[1], "max_clients": 100},
        cluster={"sentinel_password": SENTINEL_PW},
        upstream={"password": UPSTREAM_PW, "pool_size": 3},
    )  # fmt: skip
    line = ambassador.reload("config reloaded")
    assert line.endswith(
        "config reloaded: server.admin_token, server.max_clients, server.requirepass, "
        "server.requirepass_file, cluster.sentinel_password, cluster.sentinel_password_file, "
        "upstream.password, upstream.password_file now in effect"
    ), line
    ambassador.reload("upstream.pool_size needs a restart")  # the same reload's warning
    with RawConnection(ambassador.host, ambassador.port) as conn:
        seen += conn.exchange(resp("AUTH", REQUIREPASS_FILE_PW))
        assert conn.exchange(resp("AUTH", REQUIREPASS)) == [OK]
        refused = conn.exchange(resp("BLPOP", "queue", "0.01"))[0]  # a new node connection
        assert b"authentication failed: WRONGPASS" in refused, refused
        seen.append(refused)
    seen += [_get(metrics, ADMIN_TOKENS[0]), _get(metrics, ADMIN_TOKENS[1])]
    assert seen[-2].startswith("401") and seen[-1].startswith("200")

    # Reloads that fail: a file gone, a secret of the wrong type, TOML that does not parse.
    _toml(config, server={"client_auth": "password", "requirepass_file": str(tmp_path / "gone")})
    ambassador.reload(r"config error: server\.requirepass_file: .*gone not found")
    _toml(config, server={"admin_token": 7, "requirepass": BROKEN})
    ambassador.reload("config reload failed: config error: server.admin_token = '<secret>'")
    (tmp_path / "ambassador.toml").write_text(f'[server]\nrequirepass = "{BROKEN}\n')
    ambassador.reload("config reload failed: config error: invalid TOML")
    assert _get(metrics, ADMIN_TOKENS[1]).startswith("200")  # still the running token

    ambassador.process.send_signal(signal.SIGTERM)
    stdout, _ = ambassador.process.communicate(timeout=30)
    seen += [stdout.decode(errors="replace"), ambassador.stderr_text()]
    everything = "\n".join(s if isinstance(s, str) else s.decode(errors="replace") for s in seen)
    assert [secret for secret in SECRETS if secret in everything] == []
