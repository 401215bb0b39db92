"""Tests for redis_ambassador.config: defaults, sources, precedence and error messages."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from redis_ambassador.config import (
    Address,
    ClusterConfig,
    Config,
    ConfigError,
    ServerConfig,
    UpstreamConfig,
    describe_keys,
    env_var_name,
    explain_config,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
ALL_KEYS = [key for key, _, _ in describe_keys()]


def write(tmp_path: Path, text: str, name: str = "ambassador.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("config error: ")
    assert "\n" not in message
    return message


# --- defaults and the example file -------------------------------------------------------


def test_defaults() -> None:
    config = load_config(env={})
    assert config == Config()
    assert config.server.listen == Address("127.0.0.1", 6379)
    assert config.server.max_bulk_len == 512 * 1024 * 1024
    assert config.server.max_multibulk_len == 1024 * 1024
    assert config.server.max_inflight_per_client == 1024
    assert config.cluster.seeds == ()
    assert config.cluster.refresh_interval == 30.0
    assert config.cluster.min_refresh_interval == 0.1
    assert config.upstream == UpstreamConfig(
        pool_size=2,
        connect_timeout=2.0,
        command_timeout=30.0,
        max_redirects=5,
        retry_attempts=20,
        retry_backoff=0.05,
    )


def test_config_is_frozen() -> None:
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.upstream.pool_size = 3  # type: ignore[misc]


def test_describe_keys_covers_every_field() -> None:
    expected = [
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(Config)
        for f in dataclasses.fields(section.default)  # type: ignore[arg-type]
    ]
    assert expected == ALL_KEYS
    defaults = Config()
    for key, default, help_text in describe_keys():
        section, name = key.split(".")
        assert getattr(getattr(defaults, section), name) == default
        assert help_text and "\n" not in help_text


def test_env_var_names_derived_from_fields() -> None:
    assert env_var_name("server.listen") == "REDIS_AMBASSADOR_LISTEN"
    assert env_var_name("cluster.seeds") == "REDIS_AMBASSADOR_SEEDS"
    assert env_var_name("upstream.pool_size") == "REDIS_AMBASSADOR_POOL_SIZE"
    names = [env_var_name(key) for key in ALL_KEYS]
    assert len(set(names)) == len(names)
    assert "REDIS_AMBASSADOR_CONFIG" not in names


def test_example_file_equals_defaults() -> None:
    assert load_config(EXAMPLE, env={}) == Config()


def test_example_file_documents_every_key_and_its_env_var() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    in_file = [f"{section}.{key}" for section, table in data.items() for key in table]
    assert sorted(in_file) == sorted(ALL_KEYS)

    lines = text.splitlines()
    for key in ALL_KEYS:
        name = key.split(".")[1]
        (index,) = [i for i, line in enumerate(lines) if re.match(rf"{name}\s*=", line)]
        comment = []
        for line in reversed(lines[:index]):
            if not line.startswith("#"):
                break
            comment.append(line)
        assert comment, f"{key} has no comment above it"
        assert env_var_name(key) in " ".join(comment), f"{key}'s comment lacks its env var"


def test_example_header_explains_precedence_and_how_to_pass_the_file() -> None:
    header = EXAMPLE.read_text(encoding="utf-8").split("[server]")[0]
    assert "--config" in header
    assert "REDIS_AMBASSADOR_CONFIG" in header
    assert "defaults < this file < environment < command-line flags" in header


# --- sources and precedence --------------------------------------------------------------


def test_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        listen = "0.0.0.0:7000"
        [cluster]
        seeds = ["10.0.0.1:6379", "[fe80::1]:7001"]
        refresh_interval = 5
        [upstream]
        pool_size = 4
        max_redirects = 0
        retry_backoff = 0
        """,
    )
    config = load_config(path, env={})
    assert config.server.listen == Address("0.0.0.0", 7000)
    assert config.cluster.seeds == (Address("10.0.0.1", 6379), Address("fe80::1", 7001))
    assert config.cluster.refresh_interval == 5.0
    assert isinstance(config.cluster.refresh_interval, float)
    assert config.upstream.pool_size == 4
    assert config.upstream.max_redirects == 0
    assert config.upstream.retry_backoff == 0.0
    # Keys the file leaves out keep their defaults.
    assert config.server.max_bulk_len == ServerConfig().max_bulk_len


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        listen = "10.0.0.1:1000"
        [cluster]
        refresh_interval = 10
        [upstream]
        pool_size = 3
        connect_timeout = 1.5
        """,
    )
    env = {
        "REDIS_AMBASSADOR_LISTEN": "10.0.0.2:2000",
        "REDIS_AMBASSADOR_POOL_SIZE": "5",
        "REDIS_AMBASSADOR_COMMAND_TIMEOUT": "7",
    }
    overrides = {"server.listen": "10.0.0.3:3000", "upstream.command_timeout": 9}
    config = load_config(path, env=env, overrides=overrides)
    assert config.server.listen == Address("10.0.0.3", 3000)  # flag > env > file
    assert config.upstream.pool_size == 5  # env > file
    assert config.upstream.command_timeout == 9.0  # flag > env > default
    assert config.upstream.connect_timeout == 1.5  # file > default
    assert config.cluster.refresh_interval == 10.0  # file only
    assert config.upstream.max_redirects == 5  # default


def test_config_file_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, "[upstream]\npool_size = 7\n")
    config = load_config(env={"REDIS_AMBASSADOR_CONFIG": str(path)})
    assert config.upstream.pool_size == 7


def test_path_argument_beats_config_env(tmp_path: Path) -> None:
    chosen = write(tmp_path, "[upstream]\npool_size = 7\n", "chosen.toml")
    other = write(tmp_path, "[upstream]\npool_size = 8\n", "other.toml")
    config = load_config(chosen, env={"REDIS_AMBASSADOR_CONFIG": str(other)})
    assert config.upstream.pool_size == 7


def test_env_parsing_numbers_and_seeds() -> None:
    env = {
        "REDIS_AMBASSADOR_SEEDS": " a:1, b:2 [::1]:3\tc:4 ,",
        "REDIS_AMBASSADOR_MAX_BULK_LEN": " 1048576 ",
        "REDIS_AMBASSADOR_RETRY_ATTEMPTS": "0",
        "REDIS_AMBASSADOR_REFRESH_INTERVAL": "2.5",
        "REDIS_AMBASSADOR_MIN_REFRESH_INTERVAL": "1",
    }
    config = load_config(env=env)
    assert config.cluster.seeds == (
        Address("a", 1),
        Address("b", 2),
        Address("::1", 3),
        Address("c", 4),
    )
    assert config.server.max_bulk_len == 1048576
    assert config.upstream.retry_attempts == 0
    assert config.cluster.refresh_interval == 2.5
    assert config.cluster.min_refresh_interval == 1.0


def test_empty_env_var_counts_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, "[upstream]\npool_size = 3\n")
    env = {"REDIS_AMBASSADOR_POOL_SIZE": "", "REDIS_AMBASSADOR_CONFIG": " "}
    assert load_config(path, env=env).upstream.pool_size == 3
    assert load_config(env=env) == Config()


def test_unrelated_env_vars_are_ignored() -> None:
    env = {"REDIS_AMBASSADOR_NOT_A_KEY": "debug", "POOL_SIZE": "x", "REDIS_HOST": "x"}
    assert load_config(env=env) == Config()


def test_env_none_means_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_AMBASSADOR_POOL_SIZE", "6")
    monkeypatch.delenv("REDIS_AMBASSADOR_CONFIG", raising=False)
    assert load_config().upstream.pool_size == 6


def test_overrides_accept_strings_and_typed_values() -> None:
    config = load_config(
        env={},
        overrides={
            "cluster.seeds": ["a:1", Address("b", 2)],
            "server.listen": Address("::", 7000),
            "upstream.pool_size": "3",
            "upstream.connect_timeout": "0.25",
            "upstream.max_redirects": None,  # flag not given
        },
    )
    assert config.cluster.seeds == (Address("a", 1), Address("b", 2))
    assert config.server.listen == Address("::", 7000)
    assert config.upstream.pool_size == 3
    assert config.upstream.connect_timeout == 0.25
    assert config.upstream.max_redirects == 5
    assert load_config(env={}, overrides={"cluster.seeds": "a:1,b:2"}).cluster.seeds == (
        Address("a", 1),
        Address("b", 2),
    )


# --- errors ------------------------------------------------------------------------------


def test_env_out_of_range_message() -> None:
    message = error_of(env={"REDIS_AMBASSADOR_POOL_SIZE": "0"})
    assert message == (
        "config error: upstream.pool_size = 0 (from REDIS_AMBASSADOR_POOL_SIZE): "
        "must be an integer >= 1"
    )


def test_env_not_a_number_message() -> None:
    message = error_of(env={"REDIS_AMBASSADOR_COMMAND_TIMEOUT": "soon"})
    assert message == (
        "config error: upstream.command_timeout = 'soon' (from REDIS_AMBASSADOR_COMMAND_TIMEOUT)"
        ": must be a number of seconds > 0"
    )


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("upstream.pool_size", 0, "must be an integer >= 1"),
        ("upstream.pool_size", -3, "must be an integer >= 1"),
        ("upstream.max_redirects", -1, "must be an integer >= 0"),
        ("server.max_bulk_len", 0, "must be an integer >= 1"),
        ("upstream.connect_timeout", 0, "must be a number of seconds > 0"),
        ("upstream.retry_backoff", -0.5, "must be a number of seconds >= 0"),
        ("upstream.breaker_error_percent", 101, "must be an integer from 1 to 100"),
        ("upstream.breaker_error_percent", 0, "must be an integer from 1 to 100"),
        ("upstream.retry_budget_percent", 150, "must be an integer from 0 to 100"),
        ("upstream.idempotent", "set;get", "must be a command name"),
        ("cluster.refresh_interval", "inf", "must be a number of seconds > 0 and finite"),
        ("cluster.refresh_interval", "nan", "must be a number of seconds > 0 and finite"),
        ("upstream.pool_size", "2.5", "must be an integer >= 1"),
        ("upstream.pool_size", True, "must be an integer >= 1, not a boolean"),
        ("upstream.pool_size", 2.0, "must be an integer >= 1, not a float"),
        ("server.listen", "localhost", "invalid address: missing port"),
        ("server.listen", 6379, "must be a host:port string, not an integer"),
        ("cluster.seeds", 5, "must be a list of host:port strings, not an integer"),
    ],
)
def test_override_errors_name_key_source_and_problem(key: str, value: object, problem: str) -> None:
    message = error_of(env={}, overrides={key: value})
    assert message.startswith(f"config error: {key} = ")
    assert "(from command line): " in message
    assert problem in message


def test_file_wrong_type_message(tmp_path: Path) -> None:
    path = write(tmp_path, '[upstream]\npool_size = "2"\n')
    message = error_of(path=path, env={})
    assert message == (
        f"config error: upstream.pool_size = '2' (from {path}): "
        "must be an integer >= 1, not a string"
    )


def test_file_errors_are_reported_even_if_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[upstream]\npool_size = 0\n")
    message = error_of(path=path, env={"REDIS_AMBASSADOR_POOL_SIZE": "4"})
    assert f"upstream.pool_size = 0 (from {path})" in message


def test_bad_seed_item_message(tmp_path: Path) -> None:
    message = error_of(env={"REDIS_AMBASSADOR_SEEDS": "a:1,b,c:3"})
    assert message.startswith(
        "config error: cluster.seeds = 'a:1,b,c:3' (from REDIS_AMBASSADOR_SEEDS): item 'b': "
    )
    assert "missing port" in message
    path = write(tmp_path, '[cluster]\nseeds = ["a:1", 2]\n')
    message = error_of(path=path, env={})
    assert f"(from {path}): item 2: must be a host:port string, not an integer" in message


def test_seeds_as_string_in_file_is_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[cluster]\nseeds = "a:1"\n')
    assert "must be a list of host:port strings, not a string" in error_of(path=path, env={})


def test_unparsable_address_message() -> None:
    message = error_of(env={"REDIS_AMBASSADOR_LISTEN": "127.0.0.1:70000"})
    assert message == (
        "config error: server.listen = '127.0.0.1:70000' (from REDIS_AMBASSADOR_LISTEN): "
        "invalid address: port 70000 is out of range 1..65535"
    )


def test_unknown_key_suggests_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisen = "127.0.0.1:1"\n')
    message = error_of(path=path, env={})
    assert message == (
        f"config error: unknown key 'server.lisen' in {path} (did you mean 'server.listen'?)"
    )


def test_key_in_wrong_section_suggests_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\npool_size = 2\n")
    assert "unknown key 'server.pool_size'" in error_of(path=path, env={})
    assert "(did you mean 'upstream.pool_size'?)" in error_of(path=path, env={})


def test_key_outside_any_section(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = "127.0.0.1:1"\n')
    message = error_of(path=path, env={})
    assert message == (
        f"config error: unknown key 'listen' in {path} (did you mean 'server.listen'?)"
    )


def test_unknown_key_without_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[upstream]\nzzz = 1\n")
    assert error_of(path=path, env={}) == f"config error: unknown key 'upstream.zzz' in {path}"


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[sever]\nlisten = '127.0.0.1:1'\n")
    message = error_of(path=path, env={})
    assert (
        message == f"config error: unknown section '[sever]' in {path} (did you mean '[server]'?)"
    )


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "server = 5\n")
    assert error_of(path=path, env={}) == (
        f"config error: 'server' in {path} must be a [server] table, not an integer"
    )


def test_unknown_override_key() -> None:
    message = error_of(env={}, overrides={"upstream.poolsize": 3})
    assert message == (
        "config error: unknown key 'upstream.poolsize' from command line "
        "(did you mean 'upstream.pool_size'?)"
    )


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nlisten = \n")
    message = error_of(path=path, env={})
    assert message.startswith(f"config error: invalid TOML in {path}: ")
    assert "line 2" in message  # TOML's own error, with its position


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n")
    assert error_of(path=path, env={}).startswith(f"config error: invalid TOML in {path}: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert error_of(path=path, env={}) == f"config error: config file {path} not found"


def test_missing_file_named_by_env(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    message = error_of(env={"REDIS_AMBASSADOR_CONFIG": str(path)})
    assert message == (
        f"config error: config file {path} not found (named by REDIS_AMBASSADOR_CONFIG)"
    )


def test_directory_as_file(tmp_path: Path) -> None:
    assert error_of(path=tmp_path, env={}) == f"config error: config file {tmp_path} is a directory"


def test_min_refresh_interval_above_refresh_interval(tmp_path: Path) -> None:
    path = write(tmp_path, "[cluster]\nrefresh_interval = 1\n")
    message = error_of(path=path, env={"REDIS_AMBASSADOR_MIN_REFRESH_INTERVAL": "2"})
    assert message == (
        "config error: cluster.min_refresh_interval = 2.0 "
        "(from REDIS_AMBASSADOR_MIN_REFRESH_INTERVAL): "
        f"must be <= cluster.refresh_interval (1.0, from {path})"
    )


def test_output_buffer_hard_limit_below_the_soft_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nmax_output_buffer = 2000\n")
    message = error_of(path=path, env={"REDIS_AMBASSADOR_OUTPUT_BUFFER_HARD_LIMIT": "1000"})
    assert message == (
        "config error: server.output_buffer_hard_limit = 1000 "
        "(from REDIS_AMBASSADOR_OUTPUT_BUFFER_HARD_LIMIT): "
        f"must be >= server.max_output_buffer (2000, from {path})"
    )


def test_client_limits_default_to_redis_values() -> None:
    server = load_config(env={}).server
    assert server.max_clients == 10_000  # maxclients
    assert server.max_query_buffer == 1024**3  # client-query-buffer-limit 1gb
    # client-output-buffer-limit, replica class: 256mb 64mb 60
    assert (server.output_buffer_hard_limit, server.max_output_buffer) == (256 * 2**20, 64 * 2**20)
    assert server.output_buffer_soft_seconds == 60.0


def test_config_error_carries_key_and_source() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"REDIS_AMBASSADOR_POOL_SIZE": "x"})
    assert info.value.key == "upstream.pool_size"
    assert info.value.source == "REDIS_AMBASSADOR_POOL_SIZE"
    assert isinstance(info.value, ValueError)


# --- Address -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "printed"),
    [
        ("127.0.0.1:6379", "127.0.0.1", 6379, "127.0.0.1:6379"),
        ("redis-0.redis.svc:7000", "redis-0.redis.svc", 7000, "redis-0.redis.svc:7000"),
        ("[::1]:6379", "::1", 6379, "[::1]:6379"),
        ("[2001:db8::5]:1", "2001:db8::5", 1, "[2001:db8::5]:1"),
        ("[fe80::1%eth0]:65535", "fe80::1%eth0", 65535, "[fe80::1%eth0]:65535"),
        ("  localhost:6380 ", "localhost", 6380, "localhost:6380"),
    ],
)
def test_address_parse_and_str(text: str, host: str, port: int, printed: str) -> None:
    address = Address.parse(text)
    assert address == Address(host, port)
    assert str(address) == printed
    assert Address.parse(str(address)) == address


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty address"),
        ("localhost", "missing port"),
        (":6379", "missing host"),
        ("::1:6379", "IPv6 addresses need brackets"),
        ("[::1]6379", "missing ':port' after ']'"),
        ("[::1:6379", "missing ']'"),
        ("[]:6379", "missing host"),
        ("host:0", "port 0 is out of range 1..65535"),
        ("host:65536", "port 65536 is out of range 1..65535"),
        ("host:", "port '' is not a number"),
        ("host:-1", "port '-1' is not a number"),
        ("host:http", "port 'http' is not a number"),
        ("host:\u00b2", "is not a number"),
        ("a b:1", "contains whitespace"),
    ],
)
def test_address_parse_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        Address.parse(text)
    assert str(info.value).startswith(f"invalid address {text!r}: ")
    assert problem in str(info.value)


def test_address_constructor_validates() -> None:
    with pytest.raises(ValueError):
        Address("", 1)
    with pytest.raises(ValueError):
        Address("h", 0)
    with pytest.raises(ValueError):
        Address("h", True)


def test_sections_construct_with_defaults() -> None:
    assert ClusterConfig().seeds == ()
    assert Config().cluster == ClusterConfig()


@pytest.mark.parametrize(
    ("text", "value"), [("false", False), ("No", False), ("on", True), ("1", True)]
)
def test_boolean_keys_read_true_and_false_words_from_the_environment(
    text: str, value: bool
) -> None:
    config = load_config(None, env={"REDIS_AMBASSADOR_SPLIT_CROSS_SLOT": text})
    assert config.commands.split_cross_slot is value


def test_boolean_key_with_another_word_names_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"commands.split_cross_slot .*true or false"):
        load_config(None, env={"REDIS_AMBASSADOR_SPLIT_CROSS_SLOT": "maybe"})


def test_cluster_view_is_single_unless_set_to_real(tmp_path: Path) -> None:
    assert load_config(None, env={}).commands.cluster_view == "single"
    path = write(tmp_path, '[commands]\ncluster_view = "real"\n')
    assert load_config(path, env={}).commands.cluster_view == "real"
    env = {"REDIS_AMBASSADOR_CLUSTER_VIEW": " Real "}
    assert load_config(None, env=env).commands.cluster_view == "real"


def test_cluster_view_with_another_word_names_the_key_and_the_choices(tmp_path: Path) -> None:
    message = error_of(env={"REDIS_AMBASSADOR_CLUSTER_VIEW": "nodes"})
    assert message == (
        "config error: commands.cluster_view = 'nodes' (from REDIS_AMBASSADOR_CLUSTER_VIEW): "
        "must be 'single' or 'real'"
    )
    path = write(tmp_path, "[commands]\ncluster_view = true\n")
    assert error_of(path=path, env={}).endswith("must be 'single' or 'real', not a boolean")


def test_address_map_from_a_toml_table_or_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[cluster]\naddress_map = { "172.18.0.2:6379" = "127.0.0.1:7000", '
        '"redis-1:6379" = "[::1]:7001" }\n',
    )
    mapping = load_config(path, env={}).cluster.address_map
    assert mapping(Address("172.18.0.2", 6379)) == Address("127.0.0.1", 7000)
    assert mapping(Address("redis-1", 6379)) == Address("::1", 7001)
    assert mapping(Address("172.18.0.9", 6379)) == Address("172.18.0.9", 6379)  # unmapped
    text = "172.18.0.2:6379=127.0.0.1:7000, redis-1:6379=[::1]:7001"
    from_env = load_config(env={"REDIS_AMBASSADOR_ADDRESS_MAP": text}).cluster.address_map
    assert from_env == mapping
    assert not load_config(env={}).cluster.address_map


def test_address_map_errors_name_the_item(tmp_path: Path) -> None:
    path = write(tmp_path, '[cluster]\naddress_map = { "172.18.0.2" = "127.0.0.1:7000" }\n')
    assert "item '172.18.0.2': invalid address: missing port" in error_of(path=path, env={})
    assert "announced=reachable" in error_of(env={"REDIS_AMBASSADOR_ADDRESS_MAP": "a:1"})
    path = write(tmp_path, '[cluster]\naddress_map = ["a:1=b:2"]\n')
    assert "must be a table" in error_of(path=path, env={})


# --- backends ------------------------------------------------------------------------------


def test_backend_is_cluster_unless_set_by_file_env_or_flag(tmp_path: Path) -> None:
    assert load_config(None, env={}).cluster.backend == "cluster"
    path = write(tmp_path, '[cluster]\nbackend = "sentinel"\nsentinel_master = "cache"\n')
    config = load_config(path, env={})
    assert (config.cluster.backend, config.cluster.sentinel_master) == ("sentinel", "cache")
    env = {"REDIS_AMBASSADOR_BACKEND": " Standalone ", "REDIS_AMBASSADOR_SEEDS": "h:1"}
    assert load_config(None, env=env).cluster.backend == "standalone"
    flags = {"cluster.backend": "sentinel", "cluster.sentinel_master": "other"}
    assert load_config(None, env={}, overrides=flags).cluster.sentinel_master == "other"


def test_backend_with_another_word_and_an_empty_master_name_are_errors(tmp_path: Path) -> None:
    assert error_of(env={"REDIS_AMBASSADOR_BACKEND": "proxy"}) == (
        "config error: cluster.backend = 'proxy' (from REDIS_AMBASSADOR_BACKEND): "
        "must be 'cluster' or 'standalone' or 'sentinel'"
    )
    path = write(tmp_path, '[cluster]\nbackend = "sentinel"\nsentinel_master = " "\n')
    assert error_of(path=path, env={}).endswith(
        "the sentinel backend needs the name the sentinels monitor the master by"
    )


def test_a_standalone_backend_has_no_replicas_to_read_from() -> None:
    env = {"REDIS_AMBASSADOR_BACKEND": "standalone", "REDIS_AMBASSADOR_READ_POLICY": "replica"}
    assert "the standalone backend has no replicas, so every read would fail" in error_of(env=env)
    env["REDIS_AMBASSADOR_READ_POLICY"] = "prefer-replica"  # falls back to the server
    assert load_config(None, env=env).upstream.read_policy == "prefer-replica"


def test_the_sentinel_password_is_given_one_way_and_never_shown(tmp_path: Path) -> None:
    env = {
        "REDIS_AMBASSADOR_SENTINEL_PASSWORD": "s3cret",
        "REDIS_AMBASSADOR_SENTINEL_PASSWORD_FILE": str(tmp_path / "secret"),
    }
    assert "are both set: give the password one way" in error_of(env=env)
    del env["REDIS_AMBASSADOR_SENTINEL_PASSWORD_FILE"]
    _, settings = explain_config(None, env=env)
    (shown,) = [s.shown for s in settings if s.key == "cluster.sentinel_password"]
    assert "s3cret" not in shown


def test_a_standalone_backend_takes_one_seed() -> None:
    env = {"REDIS_AMBASSADOR_BACKEND": "standalone", "REDIS_AMBASSADOR_SEEDS": "a:1 b:2"}
    assert error_of(env=env) == (
        "config error: cluster.seeds (from REDIS_AMBASSADOR_SEEDS): the standalone backend is "
        "one server, so one seed, not 2 (cluster.backend from REDIS_AMBASSADOR_BACKEND)"
    )


def test_cluster_view_defaults_to_the_servers_own_answer_in_front_of_one_server(
    tmp_path: Path,
) -> None:
    for backend in ("standalone", "sentinel"):
        env = {"REDIS_AMBASSADOR_BACKEND": backend}
        assert load_config(None, env=env).commands.cluster_view == "real"
        env["REDIS_AMBASSADOR_CLUSTER_VIEW"] = "single"
        assert load_config(None, env=env).commands.cluster_view == "single"


def test_a_removed_key_is_refused_saying_what_took_its_place(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nauth_failure_window = 60\n")
    message = error_of(path=path, env={})
    assert f"'server.auth_failure_window' in {path} is gone: failed AUTHs are no longer " in message
    assert "server.auth_max_failures, auth_failure_delay and auth_failure_max_delay" in message
    # From the environment too, where an unknown REDIS_AMBASSADOR_* name would be ignored.
    message = error_of(env={"REDIS_AMBASSADOR_AUTH_FAILURE_WINDOW": "60"})
    assert message.startswith(
        "config error: REDIS_AMBASSADOR_AUTH_FAILURE_WINDOW sets 'server.auth_failure_window', "
        "which is gone: "
    )
