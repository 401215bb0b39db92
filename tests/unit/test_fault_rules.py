"""Fault rules (faults/rules.py): validation, matching, seeded draws, counts and windows."""

from __future__ import annotations

import pytest

from redis_ambassador.faults.rules import Command, Faults, RuleError, glob_pattern


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def faults(seed: int = 7, clock: Clock | None = None) -> Faults:
    categories = {"get": frozenset({"@read", "@string"}), "set": frozenset({"@write"})}
    return Faults(seed, clock or Clock(), lambda name: categories.get(name, frozenset()))


def decide(table: Faults, name: str = "get", key: bytes = b"k", **kw: object) -> object:
    fields = {"keys": [key], "slot": 1, "node": "h:1", **kw}
    return table.decide(Command(name, **fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"command": "GET"}, "action"),
        ({"error": "X", "probability": 1.5}, "probability"),
        ({"error": "X", "probability": "lots"}, "probability"),
        ({"error": "X", "timeout": True}, "timeout"),
        ({"error": "two\r\nlines"}, "error"),
        ({"error": "X", "slots": "9-3"}, "slots"),
        ({"error": "X", "slots": "0-16384"}, "slots"),
        ({"error": "X", "node": "nohost"}, "node"),
        ({"error": "X", "count": 0}, "count"),
        ({"error": "X", "count": 1.5}, "count"),
        ({"error": "X", "to": "wrong"}, "to"),
        ({"redirect": "sideways"}, "redirect"),
        ({"drop": "during"}, "drop"),
        ({"partition": True}, "node"),
        ({"partition": True, "node": "master"}, "node"),
        ({"partition": True, "node": "h:1", "command": "GET"}, "command"),
        ({"jitter_ms": 5, "error": "X"}, "jitter_ms"),
        ({"delay_ms": 5, "distribution": "pareto"}, "distribution"),
        ({"bandwidth": 0}, "bandwidth"),
        ({"error": "X", "colour": "red"}, "colour"),
        ({"command": 5, "error": "X"}, "command"),
    ],
)
def test_an_invalid_rule_is_refused_naming_the_field(spec: dict, field: str) -> None:
    with pytest.raises(RuleError) as caught:
        faults().add(spec)
    assert str(caught.value).startswith(f"{field}: ")


def test_a_rule_is_shown_normalized_with_its_counters() -> None:
    table = faults()
    view = table.add({"command": ["GET", "@Write"], "error": "-LOADING busy", "slots": 7})
    assert view == {
        "id": "1", "command": ["get", "@write"], "slots": "7-7", "error": "LOADING busy",
        "hits": 0, "matched": 0, "spent": False, "active": True,
    }  # fmt: skip
    assert table.add({"delay_ms": 10})["id"] == "2"
    assert [r["id"] for r in table.view()["rules"]] == ["1", "2"]
    assert table.remove("1") and not table.remove("1")
    assert table.clear() == 1 and table.view() == {"seed": 7, "rules": []}


def test_matching_by_name_category_key_slot_node_and_client() -> None:
    table = faults()
    table.add({"command": "@write", "key": "user:*", "slots": "0-100", "node": "master",
               "client": "worker-?", "error": "X"})  # fmt: skip
    hit = {"categories": frozenset({"@write"}), "key": b"user:1", "slot": 5,
           "client": b"worker-1"}  # fmt: skip
    assert decide(table, "set", **hit) is not None
    for change in (
        {"categories": frozenset({"@read"})},
        {"key": b"session:1"},
        {"slot": 101},
        {"slot": None},
        {"replica": True},
        {"client": b"worker-12"},
    ):
        assert decide(table, "set", **{**hit, **change}) is None, change
    assert table.rules[0].hits == 1


def test_subcommands_match_their_command_name() -> None:
    table = faults()
    table.add({"command": "client", "error": "X"})
    assert decide(table, "client|list") is not None
    assert decide(table, "get") is None


def test_probability_is_respected_and_replayed_by_the_seed() -> None:
    def run(seed: int) -> list[bool]:
        table = faults(seed)
        table.add({"error": "X", "probability": 0.3})
        return [decide(table) is not None for _ in range(10_000)]

    first = run(42)
    assert 2_800 <= sum(first) <= 3_200  # 0.3 of 10,000, within 4.4 standard deviations
    assert run(42) == first
    assert run(43) != first


def test_a_rules_draws_do_not_depend_on_other_rules_draws() -> None:
    def draws(with_other: bool) -> list[bool]:
        table = faults(3)
        table.add({"command": "get", "error": "X", "probability": 0.5})
        if with_other:
            table.add({"command": "set", "error": "Y", "probability": 0.5})
        rule = table.rules[0]
        results = []
        for _ in range(200):
            decide(table, "set")
            results.append(decide(table, "get") is rule)
        return results

    assert draws(False) == draws(True)


def test_count_limits_the_faults_and_a_spent_rule_stays_listed() -> None:
    table = faults()
    changes = []
    table.on_change = lambda: changes.append(1)
    table.add({"error": "X", "count": 3})
    assert [decide(table) is not None for _ in range(5)] == [True, True, True, False, False]
    (view,) = table.view()["rules"]
    assert (view["hits"], view["spent"], view["active"]) == (3, True, False)
    assert len(changes) == 2  # added, then spent
    assert table.names_at_stake(["get"]) == frozenset()


def test_the_time_window() -> None:
    clock = Clock()
    table = faults(clock=clock)
    table.add({"error": "X", "after": 5, "duration": 10})
    assert decide(table) is None
    clock.now += 5
    assert decide(table) is not None
    clock.now += 9.9
    assert decide(table) is not None
    clock.now += 0.1
    assert decide(table) is None


def test_names_at_stake_keep_other_commands_on_the_fast_path() -> None:
    table = faults()
    assert table.names_at_stake(["get", "set"]) == frozenset()
    table.add({"command": ["GET", "client|list"], "delay_ms": 1})
    assert table.names_at_stake(["get", "set"]) == {"get", "client"}
    table.add({"command": "@write", "delay_ms": 1})
    assert table.names_at_stake(["get", "set", "del"]) == {"get", "client", "set"}
    table.add({"partition": True, "node": "h:1"})
    assert table.names_at_stake(["get"]) == {"get", "client"}
    table.add({"key": "k", "delay_ms": 1})
    assert table.names_at_stake(["get"]) is None


def test_partitions_are_listed_while_active_and_never_decide() -> None:
    clock = Clock()
    table = faults(clock=clock)
    table.add({"partition": True, "node": "10.0.0.1:7000", "duration": 2})
    assert table.partitioned() == {"10.0.0.1:7000"}
    assert decide(table, node="10.0.0.1:7000") is None
    clock.now += 2
    assert table.partitioned() == frozenset()


def test_delays_follow_their_distribution() -> None:
    table = faults()
    table.add({"delay_ms": 100})
    table.add({"delay_ms": 100, "jitter_ms": 20})
    table.add({"delay_ms": 100, "jitter_ms": 20, "distribution": "exponential"})
    fixed, uniform, exponential = table.rules
    assert fixed.delay_seconds() == 0.1
    drawn = [uniform.delay_seconds() for _ in range(1000)]
    assert min(drawn) >= 0.08 and max(drawn) <= 0.12
    tail = [exponential.delay_seconds() for _ in range(1000)]
    assert min(tail) >= 0.1 and 0.115 <= sum(tail) / len(tail) <= 0.125


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        (b"user:*", b"user:1", True),
        (b"user:*", b"users:1", False),
        (b"h?llo", b"hallo", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hbllo", True),  # Redis accepts reversed ranges
        (b"a\\*b", b"a*b", True),
        (b"a\\*b", b"axb", False),
        (b"*", b"multi\nline", True),
        (b"[", b"[", True),
    ],
)
def test_key_globs_follow_redis(pattern: bytes, key: bytes, matches: bool) -> None:
    assert (glob_pattern(pattern).fullmatch(key) is not None) is matches


def test_commands_the_ambassador_answers_are_faulted_only_by_rules_naming_them() -> None:
    table = faults()
    table.add({"error": "X"})
    table.add({"command": "@connection", "error": "Y"})
    table.add({"node": "master", "command": "ping", "error": "Z"})
    assert decide(table, "ping", node="", categories=frozenset({"@connection"})) is None
    table.add({"command": "PING", "error": "W"})
    rule = decide(table, "ping", node="", categories=frozenset({"@connection"}))
    assert rule is not None and rule.spec["error"] == "W"
