"""Host name resolution: the rate limit (sans-IO, time passed in) and the fallbacks."""

from __future__ import annotations

import socket

import anyio
import pytest

from redis_ambassador.config import Address
from redis_ambassador.upstream.names import FORGET_AFTER, NameCache, Names


def test_a_name_is_looked_up_again_only_after_the_interval() -> None:
    cache = NameCache(min_interval=2.0)
    assert cache.due("redis", now=10.0)
    cache.asked("redis", now=10.0)
    assert not cache.due("redis", now=11.9)
    assert cache.due("other", now=11.9)  # each name has its own clock
    assert cache.due("redis", now=12.0)


def test_the_last_answer_is_kept_until_a_new_one_is_stored() -> None:
    cache = NameCache(min_interval=1.0)
    assert cache.answer("redis") == ()
    cache.store("redis", ["10.0.0.1", "10.0.0.2"])
    assert cache.answer("redis") == ("10.0.0.1", "10.0.0.2")
    cache.store("redis", ["10.0.0.3"])
    assert cache.answer("redis") == ("10.0.0.3",)


class Stub:
    """A lookup whose answers the test changes; counts its calls."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str] | Exception] = {}
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        answer = self.answers[host]
        if isinstance(answer, Exception):
            raise answer
        return answer


def resolve(names: Names, host: str) -> list[str]:
    return [a.host for a in anyio.run(names.resolve, Address(host, 6379))]


def test_ip_addresses_are_never_looked_up() -> None:
    stub = Stub()
    names = Names(stub, 0.001, 1.0)
    assert resolve(names, "10.1.2.3") == ["10.1.2.3"]
    assert resolve(names, "::1") == ["::1"]
    assert stub.calls == 0


def test_a_name_is_resolved_to_all_its_addresses_and_follows_a_change() -> None:
    stub = Stub()
    names = Names(stub, 0.0001, 1.0)
    stub.answers["redis"] = ["10.0.0.1", "10.0.0.2"]
    assert resolve(names, "redis") == ["10.0.0.1", "10.0.0.2"]
    stub.answers["redis"] = ["10.0.0.9"]
    assert resolve(names, "redis") == ["10.0.0.9"]
    assert names.lookups == {"ok": 2, "failed": 0}


def test_within_the_interval_the_cached_answer_is_used() -> None:
    stub = Stub()
    names = Names(stub, 60.0, 1.0)
    stub.answers["redis"] = ["10.0.0.1"]
    for _ in range(100):
        assert resolve(names, "redis") == ["10.0.0.1"]
    assert stub.calls == 1


def test_a_failed_lookup_falls_back_on_the_last_answer_or_says_why() -> None:
    stub = Stub()
    names = Names(stub, 0.0001, 1.0)
    stub.answers["gone"] = socket.gaierror(-2, "Name or service not known")
    with pytest.raises(OSError, match=r"cannot resolve gone: .*Name or service not known"):
        resolve(names, "gone")
    stub.answers["redis"] = ["10.0.0.1"]
    assert resolve(names, "redis") == ["10.0.0.1"]
    stub.answers["redis"] = socket.gaierror(-3, "Temporary failure in name resolution")
    assert resolve(names, "redis") == ["10.0.0.1"]
    stub.answers["redis"] = []
    assert resolve(names, "redis") == ["10.0.0.1"]
    assert names.lookups == {"ok": 1, "failed": 3}


def test_names_not_looked_up_for_an_hour_are_forgotten() -> None:
    cache = NameCache(min_interval=1.0)
    cache.asked("pod-1", now=0.0)
    cache.store("pod-1", ["10.0.0.1"])
    cache.asked("pod-2", now=FORGET_AFTER)
    cache.store("pod-2", ["10.0.0.2"])
    assert cache.answer("pod-1") == ("10.0.0.1",)
    cache.asked("pod-2", now=FORGET_AFTER + 1.0)
    assert cache.answer("pod-1") == ()  # forgotten: the cache does not grow without bound
    assert cache.answer("pod-2") == ("10.0.0.2",)
