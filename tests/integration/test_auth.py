"""Authentication through real processes: a password-protected cluster with ACL users, the
ambassador signing in to it, and clients signing in to the ambassador (server.client_auth)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import Ambassador, RawConnection, _free_port, resp
from redis.crc import key_slot

from redis_ambassador.localcluster import LocalCluster

CLUSTER_PASSWORD = "cluster-pw-7f3a"
APP_PASSWORD = "app-pw-91c2"
AMB_PASSWORD = "amb-pw-3e8b"
REQUIREPASS = "client-pw-55d0"

NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
NOAUTH_HELLO = (
    b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
    b"AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
    b"protocol version at the same time\r\n"
)
NOPERM_CHANNELS = (
    b"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n"
)
NOPERM_KEYS = (
    b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
)


@pytest.fixture(scope="module")
def secured() -> Iterator[LocalCluster]:
    """A cluster whose nodes require a password, with the ACL users ``app`` (keys ``app:*``
    only) and ``amb`` (anything but KEYS) on every node (ACL rules are per node)."""
    with LocalCluster(masters=3, replicas_per_master=0, password=CLUSTER_PASSWORD) as local:
        for node in local.nodes:
            with local.client(node) as admin:
                admin.execute_command(
                    "ACL", "SETUSER", "app", "on", f">{APP_PASSWORD}", "~app:*", "+@all"
                )
                admin.execute_command(
                    "ACL", "SETUSER", "amb", "on", f">{AMB_PASSWORD}", "~*", "&*", "+@all", "-keys"
                )
        yield local


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster-password"
    path.write_text(CLUSTER_PASSWORD + "\n")  # as `echo` writes it
    return path


def _config(
    tmp_path: Path, password_file: Path, upstream: dict[str, object] | None = None, **server: object
) -> str:
    lines = ["[upstream]", f'password_file = "{password_file}"']
    lines += [f"{key} = {value!r}".replace("'", '"') for key, value in (upstream or {}).items()]
    lines += ["[server]"]
    lines += [f"{key} = {value!r}".replace("'", '"') for key, value in server.items()]
    path = tmp_path / "ambassador.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _start(
    start_ambassador: Callable[..., Ambassador],
    local: LocalCluster,
    config: str,
    admin: bool = False,
) -> Ambassador:
    return start_ambassador(local, extra_args=("--config", config), admin=admin)


def _metric(admin_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


# -- the ambassador's own credentials ---------------------------------------------------------


def test_the_upstream_password_from_a_file_serves_every_kind_of_connection_and_is_never_shown(
    secured: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    password_file: Path,
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, password_file)
    ambassador = _start(start_ambassador, secured, config)
    with ambassador.client(protocol=2) as client:
        # Pool lanes (RESP2, and RESP3 below), discovery and the command table already worked.
        for n in range(20):
            client.set(f"k{n}", n)
        assert client.mget([f"k{n}" for n in range(20)]) == [str(n).encode() for n in range(20)]
        # A blocking command and WATCH run on connections of the client's own.
        client.rpush("queue", "job")
        assert client.blpop(["queue"], timeout=1) == (b"queue", b"job")
        with client.pipeline() as tx:
            tx.watch("k1")
            tx.multi()
            tx.incr("k1")
            assert tx.execute() == [2]
        # Subscriber connections.
        pubsub = client.pubsub()
        pubsub.subscribe("news")
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
        client.publish("news", "hello")
        message = pubsub.get_message(timeout=2)
        assert message is not None and message["data"] == b"hello"
        pubsub.close()
    with ambassador.client(protocol=3) as client:
        assert client.get("k3") == b"3"
    time.sleep(2.5)  # health checks ran (every second), signed in: no breaker opened
    log = ambassador.stderr_text()
    assert "circuit breaker" not in log and "health check" not in log, log
    assert CLUSTER_PASSWORD not in log
    checked = subprocess.run(
        [sys.executable, "-m", "redis_ambassador", "config", "check", "--config", config,
         "--seed", secured.seeds[0]],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "REDIS_AMBASSADOR_REQUIREPASS": REQUIREPASS},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert f'upstream.password_file = "{password_file}"' in checked.stdout
    assert 'server.requirepass = "<secret>"' in checked.stdout
    assert CLUSTER_PASSWORD not in checked.stdout + checked.stderr
    assert REQUIREPASS not in checked.stdout + checked.stderr


def test_the_ambassador_signs_in_as_its_acl_user_whose_rules_the_nodes_apply(
    secured: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    tmp_path: Path,
) -> None:
    secret = tmp_path / "amb-password"
    secret.write_text(AMB_PASSWORD)
    config = _config(tmp_path, secret, {"username": "amb"})
    ambassador = _start(start_ambassador, secured, config)
    with ambassador.client(protocol=2) as client:
        client.set("k", "v")
        assert client.get("k") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError, match="'keys' command"):
            client.keys("*")  # every master refuses it: amb may not
    assert AMB_PASSWORD not in ambassador.stderr_text()


def test_a_wrong_upstream_password_fails_the_start_clearly_without_showing_it(
    secured: LocalCluster, tmp_path: Path
) -> None:
    wrong = "not-the-cluster-password"
    result = subprocess.run(
        [sys.executable, "-m", "redis_ambassador", "serve", "--listen",
         f"127.0.0.1:{_free_port('127.0.0.1')}", "--seed", secured.seeds[0]],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "REDIS_AMBASSADOR_PASSWORD": wrong},
    )  # fmt: skip
    assert result.returncode != 0
    assert "invalid username-password pair" in result.stderr, result.stderr
    assert wrong not in result.stdout + result.stderr


def test_a_node_refusing_the_ambassadors_auth_fails_its_commands_and_its_breaker(
    secured: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    password_file: Path,
    tmp_path: Path,
) -> None:
    # A breaker slow to open (failing health checks follow each other every 0.1 s: about 3 s
    # here), so the commands sent meanwhile show what they get.
    # A command waits at most retry_deadline for a master whose breaker is open.
    lenient = {"breaker_failures": 30, "breaker_min_commands": 1000, "retry_deadline": 0.5}
    ambassador = _start(start_ambassador, secured, _config(tmp_path, password_file, lenient))
    key = "refused"
    master = secured.master_for_slot(key_slot(key.encode()))
    seen: list[str] = []
    with ambassador.client(protocol=2) as client:
        client.set(key, "v")
        with secured.client(master) as admin:
            admin.config_set("requirepass", "changed-pw")
            try:
                # The ambassador's connections are dropped: its new ones are refused.
                admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                deadline = time.monotonic() + 20
                while "circuit breaker open" not in "".join(seen[-1:]):
                    assert time.monotonic() < deadline, seen
                    started = time.monotonic()
                    with pytest.raises(redis.ResponseError) as raised:
                        client.set(key, "v")  # a write: never sent again after its AUTH failed
                    assert time.monotonic() - started < 3  # an error, not a hang
                    seen.append(str(raised.value))
            finally:
                with secured.client(master, password="changed-pw") as changed:
                    changed.config_set("requirepass", CLUSTER_PASSWORD)
    assert any("authentication failed: WRONGPASS" in error for error in seen), seen
    assert not any("changed-pw" in error or CLUSTER_PASSWORD in error for error in seen)
    log = ambassador.stderr_text()
    assert f"node {master.address}: circuit breaker closed -> open" in log, log
    assert "authentication failed" in log, log
    assert "changed-pw" not in log and CLUSTER_PASSWORD not in log


# -- clients signing in: requirepass ---------------------------------------------------------


def test_requirepass_mode_answers_noauth_and_wrongpass_byte_for_byte_as_redis(
    secured: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    password_file: Path,
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, password_file, client_auth="password", requirepass=REQUIREPASS)
    ambassador = _start(start_ambassador, secured, config)
    with RawConnection(ambassador.host, ambassador.port) as conn:
        assert conn.exchange(resp("GET", "k")) == [NOAUTH]
        assert conn.exchange(resp("PING")) == [NOAUTH]
        assert conn.exchange(resp("HELLO", "3")) == [NOAUTH_HELLO]
        assert conn.exchange(resp("AUTH", "wrong")) == [WRONGPASS]
        assert conn.exchange(resp("AUTH", "default", "wrong")) == [WRONGPASS]
        assert conn.exchange(resp("AUTH", "someone", REQUIREPASS)) == [WRONGPASS]
        assert conn.exchange(resp("HELLO", "3", "AUTH", "default", "wrong")) == [WRONGPASS]
        assert conn.exchange(resp("AUTH", "a", "b", "c")) == [b"-ERR syntax error\r\n"]
        assert conn.exchange(resp("GET")) == [
            b"-ERR wrong number of arguments for 'get' command\r\n"
        ]
        # Signed in and straight on in one write, as a pipelining client does.
        assert conn.exchange(resp("AUTH", REQUIREPASS) + resp("SET", "k", "v"), 2) == [
            b"+OK\r\n",
            b"+OK\r\n",
        ]
        assert conn.exchange(resp("GET", "k")) == [b"$1\r\nv\r\n"]
        # AUTH is never queued in a transaction (it would sign in a shared node connection).
        queued = conn.exchange(resp("MULTI") + resp("AUTH", REQUIREPASS) + resp("EXEC"), 3)
        assert queued[0] == b"+OK\r\n" and queued[1].startswith(b"-ERR redis-ambassador")
        assert queued[2].startswith(b"-EXECABORT")
        # RESET signs out, as on Redis.
        assert conn.exchange(resp("RESET") + resp("GET", "k"), 2) == [b"+RESET\r\n", NOAUTH]
        hello = conn.exchange(resp("HELLO", "3", "AUTH", "default", REQUIREPASS))[0]
        assert hello.startswith(b"%7\r\n") and b"proto\r\n:3\r\n" in hello
        assert conn.exchange(resp("GET", "k")) == [b"$1\r\nv\r\n"]
    with ambassador.client(protocol=3, password=REQUIREPASS) as client:  # redis-py's HELLO AUTH
        assert client.get("k") == b"v"
    # MONITOR shows what clients run, but never a password.
    with RawConnection(ambassador.host, ambassador.port) as monitor:
        assert monitor.exchange(resp("AUTH", REQUIREPASS) + resp("MONITOR"), 2) == [b"+OK\r\n"] * 2
        with RawConnection(ambassador.host, ambassador.port) as conn:
            signed_in = resp("AUTH", REQUIREPASS) + resp(
                "HELLO", "2", "AUTH", "default", REQUIREPASS
            )
            assert len(conn.exchange(signed_in + resp("GET", "k"), 3)) == 3
        seen = monitor.read_reply()
        assert b'"GET" "k"' in seen and REQUIREPASS.encode() not in seen
    assert REQUIREPASS not in ambassador.stderr_text()


def test_without_client_auth_auth_is_answered_as_by_a_redis_without_a_password(
    ambassador: Ambassador,
) -> None:
    with ambassador.raw() as conn:
        assert conn.exchange(resp("AUTH", "x")) == [
            b"-ERR AUTH <password> called without any password configured for the default "
            b"user. Are you sure your configuration is correct?\r\n"
        ]
        assert conn.exchange(resp("AUTH", "default", "x")) == [b"+OK\r\n"]
        assert conn.exchange(resp("AUTH", "someone", "x")) == [WRONGPASS]
        assert conn.exchange(resp("PING")) == [b"+PONG\r\n"]
        assert conn.exchange(resp("ACL", "WHOAMI")) == [b"$7\r\ndefault\r\n"]


def test_failed_auths_slow_only_their_own_connection_never_another_from_the_same_address(
    secured: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    password_file: Path,
    tmp_path: Path,
) -> None:
    config = _config(
        tmp_path,
        password_file,
        client_auth="password",
        requirepass=REQUIREPASS,
        auth_max_failures=3,
        auth_failure_delay=1.5,
        auth_failure_max_delay=3.0,
    )
    ambassador = _start(start_ambassador, secured, config, admin=True)
    assert ambassador.admin_port is not None
    with RawConnection(ambassador.host, ambassador.port) as guesser:
        for _ in range(3):
            assert guesser.exchange(resp("AUTH", "guess")) == [WRONGPASS]  # answered at once
        started = time.monotonic()
        # Past the limit: answered late, and what follows it on the connection waits its turn.
        guesser.send(resp("AUTH", "guess") + resp("GET", "k"))
        # Meanwhile clients from the same address (every client of a sidecar is) sign in at once.
        for _ in range(3):
            with RawConnection(ambassador.host, ambassador.port) as other:
                assert other.exchange(resp("AUTH", REQUIREPASS) + resp("SET", "k", "v"), 2) == [
                    b"+OK\r\n",
                    b"+OK\r\n",
                ]
        assert select.select([guesser.sock], [], [], 0)[0] == []  # still waiting
        assert guesser.read_replies(2) == [WRONGPASS, NOAUTH]
        assert time.monotonic() - started >= 1.5
        # A right password is answered at once, even here.
        assert guesser.exchange(resp("AUTH", REQUIREPASS) + resp("GET", "k"), 2) == [
            b"+OK\r\n",
            b"$1\r\nv\r\n",
        ]
    assert _metric(ambassador.admin_port, "redis_ambassador_auth_failures_total") == 4
    assert _metric(ambassador.admin_port, "redis_ambassador_auth_failures_delayed_total") == 1
    log = ambassador.stderr_text()
    assert "3 failed AUTHs: its further failed AUTHs are answered late" in log, log
    assert "slow request" not in log


# -- clients signing in: ACL users ------------------------------------------------------------


def test_an_acl_user_runs_with_its_own_permissions_and_gets_redis_own_noperm(
    secured: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    password_file: Path,
    tmp_path: Path,
) -> None:
    ambassador = _start(
        start_ambassador, secured, _config(tmp_path, password_file, client_auth="acl")
    )
    with RawConnection(ambassador.host, ambassador.port) as conn:
        assert conn.exchange(resp("GET", "app:1")) == [NOAUTH]
        assert conn.exchange(resp("AUTH", "app", "wrong")) == [WRONGPASS]
        assert conn.exchange(resp("AUTH", "nobody", APP_PASSWORD)) == [WRONGPASS]
        # Checked by the cluster; what follows in the same write waits for the verdict.
        assert conn.exchange(
            resp("AUTH", "app", APP_PASSWORD) + resp("SET", "app:1", "v") + resp("GET", "other"),
            3,
        ) == [b"+OK\r\n", b"+OK\r\n", NOPERM_KEYS]
        for n in range(30):  # keys on every master: each node applies the user's rules
            assert conn.exchange(resp("SET", f"other{n}", "x")) == [NOPERM_KEYS]
            assert conn.exchange(resp("SET", f"app:n{n}", "x")) == [b"+OK\r\n"]
        # Its own connections (a blocking command, subscriptions) run as the user too.
        assert conn.exchange(resp("BLPOP", "otherlist", "1")) == [NOPERM_KEYS]
        assert conn.exchange(resp("SUBSCRIBE", "news", "sports")) == [NOPERM_CHANNELS]
        assert conn.exchange(resp("PING")) == [b"+PONG\r\n"]
        assert conn.exchange(resp("CLIENT", "INFO"))[0].find(b" user=app ") > 0
        assert conn.exchange(resp("ACL", "WHOAMI")) == [b"$3\r\napp\r\n"]
    # redis-py's HELLO 3 AUTH user pass.
    with ambassador.client(protocol=3, username="app", password=APP_PASSWORD) as client:
        assert client.get("app:1") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("other")
    # The default user with the cluster's password uses the ambassador's own connections.
    with ambassador.client(protocol=2, password=CLUSTER_PASSWORD) as client:
        assert client.set("other", "x")
    log = ambassador.stderr_text()
    assert APP_PASSWORD not in log and CLUSTER_PASSWORD not in log
    assert "circuit breaker" not in log, log


def test_an_acl_users_changed_password_fails_only_that_users_commands(
    secured: LocalCluster,
    start_ambassador: Callable[..., Ambassador],
    password_file: Path,
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, password_file, client_auth="acl")
    ambassador = _start(start_ambassador, secured, config)
    with (
        RawConnection(ambassador.host, ambassador.port) as app,
        ambassador.client(password=CLUSTER_PASSWORD) as other,
    ):
        assert (
            app.exchange(resp("AUTH", "app", APP_PASSWORD) + resp("SET", "app:x", "1"), 2)
            == [b"+OK\r\n"] * 2
        )
        assert other.set("warm", 1)
        admins = [secured.client(node) for node in secured.nodes]
        try:
            for admin in admins:  # the user's password changes, and its connections drop
                admin.execute_command("ACL", "SETUSER", "app", "resetpass", ">rotated-pw")
                admin.execute_command("CLIENT", "KILL", "USER", "app")
            failed = app.exchange(resp("SET", "app:x", "2"))[0]
            assert failed.startswith(b"-ERR redis-ambassador: node ")
            assert b"authentication failed: WRONGPASS" in failed
            assert b"rotated-pw" not in failed and APP_PASSWORD.encode() not in failed
            # Signing in with the new password works; other users never noticed.
            assert app.exchange(resp("AUTH", "app", "rotated-pw") + resp("GET", "app:x"), 2) == [
                b"+OK\r\n",
                b"$1\r\n1\r\n",
            ]
            for n in range(20):
                assert other.set(f"key{n}", n)
        finally:
            for admin in admins:
                admin.execute_command("ACL", "SETUSER", "app", "resetpass", f">{APP_PASSWORD}")
                admin.close()
    assert "circuit breaker" not in ambassador.stderr_text()
