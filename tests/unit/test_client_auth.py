"""Client authentication policy (server/auth.py): replies as Redis 7 gives them, and the limit
on failed attempts per address."""

from __future__ import annotations

import pytest

from redis_ambassador.commands.table import CommandSpec
from redis_ambassador.server.auth import (
    ClientAuth,
    FailedAuths,
    parse_auth,
    unauthenticated_reply,
)

NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def _spec(name: str, arity: int) -> CommandSpec:
    return CommandSpec(name=name, arity=arity, flags=frozenset())


def _auth(mode: str, password: bytes = b"s3cret", limit: int = 3) -> ClientAuth:
    return ClientAuth(mode, password, FailedAuths(limit, 60.0))


def test_an_unauthenticated_client_gets_what_redis_7_answers() -> None:
    # Observed on redis-server 7.0.15 with requirepass: unknown command and arity come first.
    assert unauthenticated_reply(_spec("get", 2), [b"GET", b"k"]) == NOAUTH
    assert unauthenticated_reply(_spec("get", 2), [b"GET"]) == (
        b"-ERR wrong number of arguments for 'get' command\r\n"
    )
    assert unauthenticated_reply(None, [b"FOO"]) == (
        b"-ERR unknown command 'FOO', with args beginning with: \r\n"
    )
    assert unauthenticated_reply(_spec("exec", 1), [b"EXEC"]) == (
        b"-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n"
    )
    for name in ("auth", "hello", "quit", "reset"):
        assert unauthenticated_reply(_spec(name, -1), [name.encode()]) is None


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


def test_an_address_over_the_limit_is_refused_until_its_oldest_failure_leaves_the_window() -> None:
    failures = FailedAuths(3, 60.0)
    for t in (0.0, 10.0, 20.0):
        assert failures.retry_in("10.0.0.1", t) == 0.0
        failures.failed("10.0.0.1", t)
    assert failures.retry_in("10.0.0.1", 30.0) == pytest.approx(30.0)
    assert failures.retry_in("10.0.0.2", 30.0) == 0.0  # another address is not affected
    assert failures.retry_in("10.0.0.1", 60.0) == 0.0  # the failure at 0 has left the window
    assert (failures.failures, failures.refused) == (3, 1)


def test_failures_are_remembered_for_a_bounded_number_of_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from redis_ambassador.server import auth

    monkeypatch.setattr(auth, "_MAX_ADDRESSES", 100)
    failures = FailedAuths(1, 60.0)
    for n in range(1000):
        failures.failed(f"10.0.{n // 256}.{n % 256}", float(n) / 1000)
    assert len(failures._failed) <= 100
    assert failures.retry_in("10.0.3.231", 1.0) > 0  # the latest are kept
