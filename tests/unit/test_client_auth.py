"""Client authentication policy (commands/auth.py): replies as Redis 7 gives them, and failed
attempts slowed per connection."""

from __future__ import annotations

import pytest

from redis_ambassador.commands.auth import (
    ClientAuth,
    FailedAuths,
    parse_auth,
)
from redis_ambassador.commands.table import CommandSpec
from redis_ambassador.config import load_config

NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def _spec(name: str, arity: int) -> CommandSpec:
    return CommandSpec(name=name, arity=arity, flags=frozenset())


def _auth(mode: str, password: bytes = b"s3cret") -> ClientAuth:
    return ClientAuth(mode, password, FailedAuths(3, 0.5, 10.0))


def test_auth_arguments_are_checked_as_redis_does() -> None:
    assert parse_auth([b"AUTH", b"pw"]) == (None, b"pw")
    assert parse_auth([b"AUTH", b"app", b"pw"]) == (b"app", b"pw")
    assert parse_auth([b"AUTH"]) == b"-ERR wrong number of arguments for 'auth' command\r\n"
    assert parse_auth([b"AUTH", b"a", b"b", b"c"]) == b"-ERR syntax error\r\n"


def test_password_mode_accepts_the_password_for_the_default_user_only() -> None:
    auth = _auth("password")
    assert auth.required and not auth.by_cluster
    assert auth.check(None, b"s3cret").signed_in
    assert auth.check(b"default", b"s3cret").reply == b"+OK\r\n"
    for user, password in ((None, b"wrong"), (b"default", b"s3cre"), (b"app", b"s3cret")):
        verdict = auth.check(user, password)
        assert (verdict.reply, verdict.signed_in, verdict.failed) == (WRONGPASS, False, True)


def test_without_client_auth_auth_behaves_as_on_a_redis_without_a_password() -> None:
    auth = _auth("off", b"")
    assert not auth.required
    # Observed on redis-server 7.0.15 without requirepass.
    verdict = auth.check(None, b"x")
    assert verdict.reply == (
        b"-ERR AUTH <password> called without any password configured for the default user. "
        b"Are you sure your configuration is correct?\r\n"
    )
    assert not verdict.failed
    assert auth.check(b"default", b"anything").signed_in
    assert auth.check(b"app", b"x").reply == WRONGPASS


def test_a_connection_over_the_limit_gets_its_failures_answered_later_and_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = FailedAuths(limit=3, delay=0.5, max_delay=3.0)
    now = 100.0  # a fake clock: the log's rate limit reads it
    waits = []
    for count in range(1, 9):
        waits.append(failures.failed("127.0.0.1:5000 (id 7)", count, now))
        now += waits[-1]
    assert waits == [0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert (failures.failures, failures.delayed) == (8, 5)
    # Another connection from the same address starts from nothing: only its own count matters.
    assert failures.failed("127.0.0.1:5001 (id 8)", 1, now) == 0.0
    # A connection failing for days never overflows the doubling.
    assert failures.failed("127.0.0.1:5000 (id 7)", 100_000, now) == 3.0
    slowed = [r.getMessage() for r in caplog.records]
    assert slowed == [
        "client 127.0.0.1:5000 (id 7): 3 failed AUTHs: its further failed AUTHs are answered "
        "late (server.auth_max_failures)"
    ]


def test_the_slowdown_comes_from_the_config() -> None:
    config = load_config(
        env={},
        overrides={
            "server.auth_max_failures": 2,
            "server.auth_failure_delay": 0.25,
            "server.auth_failure_max_delay": 1,
        },
    )
    failures = ClientAuth.from_config(config.server, b"pw").failures
    assert [failures.failed("c", n, 0.0) for n in range(1, 6)] == [0.0, 0.0, 0.25, 0.5, 1.0]
