"""The read policy's choices, with plain strings standing in for node pools."""

from __future__ import annotations

import pytest

from redis_ambassador.routing.reads import ReadPolicy


def _all_usable(_: str) -> bool:
    return True


def _choices(policy: str, replicas: list[str], usable=_all_usable, n: int = 4) -> list:  # type: ignore[no-untyped-def]
    chooser = ReadPolicy(policy)
    return [chooser.choose("M", replicas, usable) for _ in range(n)]


def test_master_sends_every_read_to_the_master() -> None:
    assert _choices("master", ["R1", "R2"]) == ["M", "M", "M", "M"]
    assert not ReadPolicy("master").spreads


def test_prefer_replica_takes_the_replicas_in_turn_and_falls_back_to_the_master() -> None:
    assert _choices("prefer-replica", ["R1", "R2"]) == ["R1", "R2", "R1", "R2"]
    assert _choices("prefer-replica", ["R1", "R2"], lambda n: n != "R1") == ["R2"] * 4
    assert _choices("prefer-replica", ["R1"], lambda n: n == "M") == ["M"] * 4
    assert _choices("prefer-replica", []) == ["M"] * 4


def test_replica_never_falls_back_to_the_master() -> None:
    assert _choices("replica", ["R1", "R2"]) == ["R1", "R2", "R1", "R2"]
    assert _choices("replica", ["R1"], lambda n: n == "M") == [None] * 4
    assert _choices("replica", []) == [None] * 4


def test_any_spreads_reads_over_the_master_and_its_usable_replicas() -> None:
    assert _choices("any", ["R1", "R2"], n=6) == ["M", "R1", "R2", "M", "R1", "R2"]
    assert _choices("any", ["R1", "R2"], lambda n: n != "M") == ["R1", "R2", "R1", "R2"]
    assert _choices("any", ["R1"], lambda n: False) == ["M"] * 4


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown read policy"):
        ReadPolicy("nearest")
