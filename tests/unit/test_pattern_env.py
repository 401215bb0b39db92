"""The Ambassador pattern's environment variable names, `explain_config`'s sources, and where
the pattern names rank: defaults < file < pattern names < REDIS_AMBASSADOR_* < flags."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from redis_ambassador.config import (
    PATTERN_ENV,
    Address,
    Config,
    ConfigError,
    Setting,
    describe_keys,
    explain_config,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
CONFIGURATION_DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def error_of(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- seeds: REDIS_MASTER_HOST, TARGET_HOST + TARGET_PORT -----------------------------------


@pytest.mark.parametrize(
    ("env", "seeds"),
    [
        ({"REDIS_MASTER_HOST": "redis-0"}, [("redis-0", 6379)]),
        ({"REDIS_MASTER_HOST": "redis-0:7000"}, [("redis-0", 7000)]),
        ({"REDIS_MASTER_HOST": " a, b:7001 c\t"}, [("a", 6379), ("b", 7001), ("c", 6379)]),
        ({"TARGET_HOST": "10.0.0.5"}, [("10.0.0.5", 6379)]),
        ({"TARGET_HOST": "10.0.0.5", "TARGET_PORT": "7000"}, [("10.0.0.5", 7000)]),
        # TARGET_PORT is the port of the TARGET_HOST items that name none.
        (
            {"TARGET_HOST": "a,b:7005", "TARGET_PORT": " 7000 "},
            [("a", 7000), ("b", 7005)],
        ),
        # IPv6: bare (no port possible), bracketed, bracketed with a port.
        (
            {"TARGET_HOST": "::1 [fe80::2] [::3]:7003", "TARGET_PORT": "7000"},
            [("::1", 7000), ("fe80::2", 7000), ("::3", 7003)],
        ),
        # Both names: every node is a seed, duplicates once.
        (
            {"REDIS_MASTER_HOST": "m", "TARGET_HOST": "t m:6379"},
            [("m", 6379), ("t", 6379)],
        ),
    ],
)
def test_seed_names(env: dict[str, str], seeds: list[tuple[str, int]]) -> None:
    assert load_config(env=env).cluster.seeds == tuple(Address(h, p) for h, p in seeds)


def test_target_port_alone_is_an_error() -> None:
    assert error_of({"TARGET_PORT": "7000"}) == (
        "config error: cluster.seeds = '7000' (from TARGET_PORT): TARGET_PORT is the port of "
        "the TARGET_HOST nodes, and TARGET_HOST is not set"
    )


@pytest.mark.parametrize("port", ["0", "65536", "x", "70 00", "²"])
def test_bad_target_port(port: str) -> None:
    message = error_of({"TARGET_HOST": "a", "TARGET_PORT": port})
    assert "(from TARGET_PORT): must be a port number from 1 to 65535" in message


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("REDIS_MASTER_HOST", "a:x", "item 'a:x': port 'x' is not a number"),
        ("TARGET_HOST", "a, b:99999", "item 'b:99999': port 99999 is out of range 1..65535"),
        ("TARGET_HOST", "[]", "item '[]': missing host"),
        ("REDIS_MASTER_HOST", ":6379", "item ':6379': missing host"),
    ],
)
def test_bad_seed_items_name_the_variable_and_the_item(name: str, text: str, problem: str) -> None:
    assert error_of({name: text}) == (
        f"config error: cluster.seeds = {text!r} (from {name}): {problem}"
    )


def test_empty_pattern_variables_count_as_unset() -> None:
    env = {name: " " for name in PATTERN_ENV}
    assert load_config(env=env) == Config()


# --- the other names -------------------------------------------------------------------------


def test_max_connections_retry_count_and_circuit_break_threshold() -> None:
    config = load_config(
        env={"MAX_CONNECTIONS": "8", "RETRY_COUNT": "0", "CIRCUIT_BREAK_THRESHOLD": "3"}
    )
    assert config.upstream.pool_size == 8
    assert config.upstream.retry_attempts == 0
    assert config.upstream.breaker_failures == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200", 0.2),  # a bare number is milliseconds
        ("0", 0.0),
        ("50ms", 0.05),
        (" 50 MS ", 0.05),
        ("0.2s", 0.2),
        ("2S", 2.0),
        ("1.5", 0.0015),
        (".5s", 0.5),
    ],
)
def test_retry_interval_is_milliseconds_unless_it_names_its_unit(text: str, seconds: float) -> None:
    backoff = load_config(env={"RETRY_INTERVAL": text}).upstream.retry_backoff
    assert backoff == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-5", "5m", "fast", "1e3", "5 ms s", "inf"])
def test_bad_retry_interval(text: str) -> None:
    assert error_of({"RETRY_INTERVAL": text}) == (
        f"config error: upstream.retry_backoff = {text!r} (from RETRY_INTERVAL): must be a "
        "duration >= 0: milliseconds (e.g. 200), or with its unit (200ms, 0.2s)"
    )


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("MAX_CONNECTIONS", "0", "upstream.pool_size = 0 (from MAX_CONNECTIONS): must be an "
         "integer >= 1"),
        ("RETRY_COUNT", "many", "upstream.retry_attempts = 'many' (from RETRY_COUNT): must be "
         "an integer >= 0"),
        (
            "CIRCUIT_BREAK_THRESHOLD",
            "0",
            "upstream.breaker_failures = 0 (from CIRCUIT_BREAK_THRESHOLD): must be an integer >= 1",
        ),
    ],
)  # fmt: skip
def test_bad_values_name_the_pattern_variable(name: str, text: str, problem: str) -> None:
    assert error_of({name: text}) == f"config error: {problem}"


# --- precedence --------------------------------------------------------------------------------


def test_redis_ambassador_names_win_over_the_pattern_names() -> None:
    env = {
        "REDIS_MASTER_HOST": "m",
        "TARGET_HOST": "t",
        "REDIS_AMBASSADOR_SEEDS": "s:1",
        "MAX_CONNECTIONS": "8",
        "REDIS_AMBASSADOR_POOL_SIZE": "3",
        "RETRY_COUNT": "1",
        "REDIS_AMBASSADOR_RETRY_ATTEMPTS": "2",
        "RETRY_INTERVAL": "500",
        "REDIS_AMBASSADOR_RETRY_BACKOFF": "0.01",
        "CIRCUIT_BREAK_THRESHOLD": "9",
        "REDIS_AMBASSADOR_BREAKER_FAILURES": "4",
    }
    config = load_config(env=env)
    assert config.cluster.seeds == (Address("s", 1),)
    assert config.upstream.pool_size == 3
    assert config.upstream.retry_attempts == 2
    assert config.upstream.retry_backoff == 0.01
    assert config.upstream.breaker_failures == 4


def test_a_bad_pattern_value_is_reported_even_when_the_specific_name_overrides_it() -> None:
    message = error_of({"RETRY_COUNT": "x", "REDIS_AMBASSADOR_RETRY_ATTEMPTS": "2"})
    assert "(from RETRY_COUNT)" in message


def test_pattern_names_beat_the_file_and_lose_to_flags(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(
        '[cluster]\nseeds = ["f:1"]\n[upstream]\npool_size = 5\nretry_attempts = 6\n',
        encoding="utf-8",
    )
    env = {"TARGET_HOST": "t", "MAX_CONNECTIONS": "7", "RETRY_COUNT": "8"}
    config = load_config(path, env=env)
    assert config.cluster.seeds == (Address("t", 6379),)
    assert (config.upstream.pool_size, config.upstream.retry_attempts) == (7, 8)

    flags = {"cluster.seeds": ["flag:2"], "upstream.pool_size": 9}
    config = load_config(path, env=env, overrides=flags)
    assert config.cluster.seeds == (Address("flag", 2),)
    assert (config.upstream.pool_size, config.upstream.retry_attempts) == (9, 8)


# --- explain_config: each value's source ----------------------------------------------------


def test_explain_config_says_where_each_value_came_from(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[upstream]\nconnect_timeout = 3\n", encoding="utf-8")
    env = {
        "TARGET_HOST": "t",
        "TARGET_PORT": "7000",
        "REDIS_AMBASSADOR_POOL_SIZE": "4",
        "RETRY_INTERVAL": "20",
    }
    config, settings = explain_config(
        path, env=env, overrides={"upstream.read_policy": "any", "server.listen": None}
    )
    assert config == load_config(
        path, env=env, overrides={"upstream.read_policy": "any", "server.listen": None}
    )
    assert [s.key for s in settings] == [key for key, _, _ in describe_keys()]
    by_key = {s.key: s for s in settings}
    assert by_key["upstream.connect_timeout"] == Setting(
        "upstream.connect_timeout", 3.0, "file", str(path)
    )
    assert by_key["cluster.seeds"] == Setting(
        "cluster.seeds", (Address("t", 7000),), "env", "TARGET_HOST, TARGET_PORT"
    )
    assert by_key["upstream.pool_size"].source == "REDIS_AMBASSADOR_POOL_SIZE"
    assert by_key["upstream.retry_backoff"] == Setting(
        "upstream.retry_backoff", 0.02, "env", "RETRY_INTERVAL"
    )
    assert by_key["upstream.read_policy"] == Setting(
        "upstream.read_policy", "any", "flag", "command line"
    )
    assert by_key["server.listen"] == Setting(
        "server.listen", Address("127.0.0.1", 6379), "default", "default"
    )
    assert [s.key for s in settings if s.secret] == [
        "server.admin_token",
        "server.requirepass",
        "cluster.sentinel_password",
        "upstream.password",
    ]


def test_a_secret_is_masked_when_set_and_shown_empty_when_not() -> None:
    def token(env: dict[str, str]) -> Setting:
        _config, settings = explain_config(env=env)
        return next(s for s in settings if s.key == "server.admin_token")

    assert token({}).shown == '""'
    masked = token({"REDIS_AMBASSADOR_ADMIN_TOKEN": "Tok en"})
    assert masked.value == "Tok en"  # kept as given: no case folding, no trimming
    assert masked.shown == '"<secret>"'


def test_explained_values_read_back_as_toml_giving_the_same_config(tmp_path: Path) -> None:
    env = {"REDIS_MASTER_HOST": "[::1]:7000 a", "REDIS_AMBASSADOR_ADMIN": "off"}
    overrides = {"commands.allow": "flushdb", "commands.split_cross_slot": "false"}
    config, settings = explain_config(env=env, overrides=overrides)
    text = "\n".join(f"{s.key} = {s.shown}" for s in settings)
    path = tmp_path / "back.toml"
    path.write_text(text, encoding="utf-8")
    tomllib.loads(text)
    assert load_config(path, env={}) == config


def test_a_secret_setting_is_masked() -> None:
    setting = Setting("server.password", "hunter2", "env", "REDIS_AMBASSADOR_PASSWORD", True)
    assert "hunter2" not in setting.shown
    assert Setting("server.password", "hunter2", "env", "X").shown == '"hunter2"'


# --- documentation -----------------------------------------------------------------------------


def test_the_example_file_names_each_pattern_variable_above_its_key() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for name, dotted in PATTERN_ENV.items():
        key = dotted.split(".")[1]
        (index,) = [i for i, line in enumerate(lines) if re.match(rf"{key}\s*=", line)]
        comment = []
        for line in reversed(lines[:index]):
            if not line.startswith("#"):
                break
            comment.append(line)
        assert name in " ".join(comment), f"{name} is not named above {dotted}"


def test_the_configuration_docs_name_each_pattern_variable() -> None:
    text = CONFIGURATION_DOCS.read_text(encoding="utf-8")
    for name in PATTERN_ENV:
        assert f"`{name}`" in text, name
    assert "config check" in text
