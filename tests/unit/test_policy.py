"""The command policy: ``[commands] deny``/``allow``, what `serve` and `dev` start from, and the
error a denied command gets."""

from __future__ import annotations

from pathlib import Path

import hiredis
import pytest

from redis_ambassador.commands.policy import CommandPolicy
from redis_ambassador.commands.table import CommandTable
from redis_ambassador.config import (
    DEFAULT_DENIED,
    DEV_DEFAULTS,
    CommandsConfig,
    ConfigError,
    load_config,
)

DATA = Path(__file__).parent / "data"


def denial(name: str) -> bytes:
    return (
        b"-NOPERM redis-ambassador's command policy denies '%b' (commands.deny); "
        b"to allow it, add '%b' to commands.allow\r\n" % (name.encode(), name.encode())
    )


SERVE = CommandPolicy.from_config(load_config(env={}).commands)
DEV = CommandPolicy.from_config(load_config(env={}, defaults=DEV_DEFAULTS).commands)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("flushall", [b"FLUSHALL", b"ASYNC"]),
        ("flushdb", [b"flushdb"]),
        ("script|flush", [b"SCRIPT", b"FLUSH"]),
        ("function|flush", [b"FUNCTION", b"FLUSH"]),
        ("config|set", [b"CONFIG", b"SET", b"maxmemory", b"1"]),
        ("config|resetstat", [b"CONFIG", b"RESETSTAT"]),
        ("config|rewrite", [b"CONFIG", b"REWRITE"]),
        ("debug", [b"DEBUG", b"SLEEP", b"0"]),
        ("migrate", [b"MIGRATE", b"h", b"1", b"k", b"0", b"10"]),
    ],
)
def test_serve_denies_what_can_harm_the_cluster_and_dev_allows_it(
    name: str, args: list[bytes]
) -> None:
    expected = name if name != "debug" else "debug|sleep"
    assert SERVE.check(name, args) == denial(expected)
    assert DEV.check(name, args) is None


def test_serve_allows_everything_else() -> None:
    for name, args in [
        ("get", [b"GET", b"k"]),
        ("config|get", [b"CONFIG", b"GET", b"*"]),
        ("info", [b"INFO"]),
        ("slowlog|reset", [b"SLOWLOG", b"RESET"]),
        ("script|load", [b"SCRIPT", b"LOAD", b"return 1"]),
    ]:
        assert SERVE.check(name, args) is None, name


def test_allow_punches_a_hole_in_deny_for_a_command_or_one_subcommand() -> None:
    policy = CommandPolicy(DEFAULT_DENIED, ["flushdb", "debug|object"])
    assert policy.check("flushdb", [b"FLUSHDB"]) is None
    assert policy.check("flushall", [b"FLUSHALL"]) == denial("flushall")
    assert policy.check("debug", [b"DEBUG", b"OBJECT", b"k"]) is None
    assert policy.check("debug", [b"debug", b"Sleep", b"0"]) == denial("debug|sleep")
    assert policy.check("debug", [b"DEBUG"]) == denial("debug")


def test_one_subcommand_can_be_denied_alone() -> None:
    policy = CommandPolicy(["config|set", "client|kill"])
    assert policy.check("config|set", [b"CONFIG", b"SET", b"a", b"b"]) == denial("config|set")
    assert policy.check("config|get", [b"CONFIG", b"GET", b"a"]) is None
    assert policy.check("config", [b"CONFIG"]) is None


def test_a_command_denied_whole_is_kept_off_the_fast_path() -> None:
    policy = CommandPolicy(["get", "config|set"], ["set"])
    assert policy.denies_always("get")
    assert not policy.denies_always("set")
    assert not policy.denies_always("config")
    assert not CommandPolicy(["get"], ["get"]).active
    assert not DEV.active


def test_names_that_cannot_work_are_reported_for_the_log() -> None:
    table = CommandTable.from_reply(_command_reply())
    policy = CommandPolicy(["flushal", "ping", "config|sett", "config|set", "debug|sleep"], ["x"])
    assert policy.problems(table) == [
        "commands.deny names 'config|sett', which the cluster does not know",
        "commands.deny names 'flushal', which the cluster does not know",
        "commands.deny names 'ping', which the ambassador answers itself",
        "commands.allow names 'x', which the cluster does not know",
    ]
    assert SERVE.problems(table) == []


def _command_reply() -> list:
    reader = hiredis.Reader()
    reader.feed((DATA / "command.resp").read_bytes())
    return reader.gets()  # type: ignore[no-any-return]


# -- configuration ------------------------------------------------------------------------------


def test_the_lists_come_from_file_and_environment_in_any_letter_case(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[commands]\ndeny = ["FLUSHALL", "Config|Set"]\nallow = []\n')
    assert load_config(path, env={}).commands == CommandsConfig(
        deny=("flushall", "config|set"), allow=()
    )
    env = {"REDIS_AMBASSADOR_ALLOW": "flushall, debug|object  migrate"}
    assert load_config(env=env).commands.allow == ("flushall", "debug|object", "migrate")
    assert load_config(env={"REDIS_AMBASSADOR_DENY": " "}).commands.deny == DEFAULT_DENIED


def test_dev_starts_from_nothing_denied_but_its_sources_still_win(tmp_path: Path) -> None:
    assert load_config(env={}, defaults=DEV_DEFAULTS).commands.deny == ()
    env = {"REDIS_AMBASSADOR_DENY": "flushall"}
    assert load_config(env=env, defaults=DEV_DEFAULTS).commands.deny == ("flushall",)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"flushall"', "must be a list of command names, not a string"),
        ("[1]", "item 1: must be a command name, not an integer"),
        ('["config set"]', "item 'config set': must be a command name as Redis's ACL writes it"),
        ('["a|b|c"]', "item 'a|b|c': must be a command name"),
    ],
)
def test_a_bad_list_names_the_key_and_the_item(tmp_path: Path, value: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[commands]\ndeny = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith("config error: commands.deny = ")
    assert problem in str(info.value)
