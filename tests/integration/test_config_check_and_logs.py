"""`redis-ambassador config check` as a user runs it, and `serve`'s JSON log lines against a real
cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from conftest import Ambassador, _die_with_parent, _free_port

from redis_ambassador.config import describe_keys, load_config
from redis_ambassador.local.cluster import LocalCluster

CLI = [sys.executable, "-m", "redis_ambassador"]
KEYS = [key for key, _, _ in describe_keys()]


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without any variable the config reads, plus ``extra``."""
    pattern = ("REDIS_MASTER_HOST", "TARGET_HOST", "TARGET_PORT", "MAX_CONNECTIONS")
    pattern += ("RETRY_COUNT", "RETRY_INTERVAL", "CIRCUIT_BREAK_THRESHOLD")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REDIS_AMBASSADOR_") and k not in pattern
    }
    return {**env, **extra}


def _check(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "config", "check", *args], capture_output=True, text=True, timeout=60, env=env
    )


# -- config check ---------------------------------------------------------------------------------


def test_config_check_prints_every_key_with_where_its_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "ambassador.toml"
    config.write_text('[upstream]\npool_size = 3\nread_policy = "replica"\n', encoding="utf-8")
    env = _env(
        REDIS_MASTER_HOST="10.0.0.5, 10.0.0.6:7000",
        RETRY_INTERVAL="200",
        REDIS_AMBASSADOR_LOG_FORMAT="json",
        CIRCUIT_BREAK_THRESHOLD="9",
        REDIS_AMBASSADOR_BREAKER_FAILURES="4",
    )
    result = _check(
        "--config", str(config), "--read-policy", "any", "--log-level", "warning", env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert [line.split(" = ")[0] for line in lines] == KEYS  # one line per key, in order
    where = {line.split(" = ")[0]: line.rsplit("  # ", 1)[1] for line in lines}
    assert where["cluster.seeds"] == "env REDIS_MASTER_HOST"
    assert where["upstream.retry_backoff"] == "env RETRY_INTERVAL"
    assert where["upstream.breaker_failures"] == "env REDIS_AMBASSADOR_BREAKER_FAILURES"
    assert where["server.log_format"] == "env REDIS_AMBASSADOR_LOG_FORMAT"
    assert where["upstream.pool_size"] == f"file {config}"
    assert where["upstream.read_policy"] == "flag --read-policy"  # the flag beats the file
    assert where["server.log_level"] == "flag --log-level"
    assert where["server.listen"] == "default"
    assert set(where.values()) <= {
        "default",
        f"file {config}",
        "env REDIS_MASTER_HOST",
        "env RETRY_INTERVAL",
        "env REDIS_AMBASSADOR_BREAKER_FAILURES",
        "env REDIS_AMBASSADOR_LOG_FORMAT",
        "flag --read-policy",
        "flag --log-level",
    }

    # The output is TOML, and reads back as the very config `serve` would run with.
    back = tmp_path / "back.toml"
    back.write_text(result.stdout, encoding="utf-8")
    parsed = tomllib.loads(result.stdout)
    assert parsed["cluster"]["seeds"] == ["10.0.0.5:6379", "10.0.0.6:7000"]
    assert parsed["upstream"]["retry_backoff"] == 0.2
    assert load_config(back, env={}) == load_config(
        config,
        env=env,
        overrides={"upstream.read_policy": "any", "server.log_level": "warning"},
    )


def test_config_check_takes_serve_flags_before_or_after_the_subcommand() -> None:
    env = _env()
    result = subprocess.run(
        [*CLI, "--log-format", "json", "config", "check", "--seed", "a:1", "--pool-size", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert 'server.log_format = "json"' in result.stdout
    assert re.search(r'^cluster\.seeds = \["a:1"\] +# flag --seed$', result.stdout, re.M)
    assert re.search(r"^upstream\.pool_size = 5 +# flag --pool-size$", result.stdout, re.M)


def test_config_check_reports_a_config_error_in_one_line_and_exits_2() -> None:
    result = _check("--seed", "a:1", env=_env(RETRY_INTERVAL="soon"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "config error: upstream.retry_backoff = 'soon' (from RETRY_INTERVAL): must be a "
        "duration >= 0: milliseconds (e.g. 200), or with its unit (200ms, 0.2s)\n"
    )


def test_config_check_without_seeds_fails_as_serve_would() -> None:
    result = _check(env=_env())
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "cluster.seeds is empty" in result.stderr
    assert "REDIS_MASTER_HOST" in result.stderr


def test_serve_finds_the_cluster_from_the_pattern_names(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """No --seed: TARGET_HOST/TARGET_PORT name one node, the ambassador finds the rest."""
    host, port = cluster.seeds[0].rsplit(":", 1)
    process = _start_serve(tmp_path, env=_env(TARGET_HOST=host, TARGET_PORT=port, RETRY_COUNT="3"))
    try:
        client = process.client()
        for i in range(50):  # keys on every master
            client.set(f"pattern:{i}", i)
        assert client.get("pattern:49") == b"49"
        client.close()
    finally:
        process.stop()


def _start_serve(tmp_path: Path, env: dict[str, str], *args: str) -> Ambassador:
    """`serve` with the given environment and no --seed (conftest's Ambassador.start always
    passes --seed); the admin listener on a free port, not the default 9090 (which anything else
    on the machine may hold)."""
    port, admin = _free_port("127.0.0.1"), _free_port("127.0.0.1")
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--admin",
                f"127.0.0.1:{admin}",
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            preexec_fn=_die_with_parent,
        )
    ambassador = Ambassador("127.0.0.1", port, process, log)
    try:
        ambassador._wait_ready()
    except BaseException:
        ambassador.stop()
        raise
    return ambassador


# -- JSON logs ----------------------------------------------------------------------------------


def _wait_for(ambassador: Ambassador, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = ambassador.stderr_text()
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"never logged {pattern!r}; stderr:\n{ambassador.stderr_text()}")


def test_serve_logs_json_lines_and_a_sighup_switches_the_format(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    config = tmp_path / "ambassador.toml"
    config.write_text('[server]\nlog_format = "json"\nlog_level = "debug"\n', encoding="utf-8")
    ambassador = Ambassador.start(cluster.seeds, tmp_path, extra_args=("--config", str(config)))
    try:
        client = ambassador.client()
        for i in range(200):
            client.set(f"json-log:{i}", i)
            client.get(f"json-log:{i}")
        client.close()

        config.write_text('[server]\nlog_format = "plain"\nlog_level = "info"\n', encoding="utf-8")
        ambassador.process.send_signal(signal.SIGHUP)
        _wait_for(ambassador, r"config reloaded: .*server\.log_format")
        ambassador.process.send_signal(signal.SIGTERM)
        assert ambassador.process.wait(timeout=15) == 0
    finally:
        ambassador.stop()

    lines = ambassador.stderr_text().splitlines()
    # Up to the reload every line is one JSON object; none for each of the 400 commands.
    reload_at = next(i for i, line in enumerate(lines) if "config reloaded" in line)
    entries = [json.loads(line) for line in lines[: reload_at + 1]]
    assert entries, "nothing logged before the reload"
    assert len(entries) < 100, lines
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
        assert entry["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        assert entry["logger"]
    assert entries[-1]["level"] == "INFO"
    assert entries[-1]["logger"].startswith("redis_ambassador")
    assert "server.log_format" in entries[-1]["message"]
    # After it, the plain format: the drain's lines.
    after = lines[reload_at + 1 :]
    assert any(
        re.search(r" INFO redis_ambassador\S*: SIGTERM received: draining", x) for x in after
    )
    assert not any(line.startswith("{") for line in after), after


def test_a_start_up_failure_is_a_json_line_too(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{_free_port('127.0.0.1')}"  # nothing listens there
    result = subprocess.run(
        [*CLI, "serve", "--listen", f"127.0.0.1:{_free_port('127.0.0.1')}", "--seed", dead,
         "--log-format", "json", "--connect-timeout", "0.5"],
        capture_output=True, text=True, timeout=60, env=_env(),
    )  # fmt: skip
    assert result.returncode == 1
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries[-1]["level"] == "ERROR"
    assert dead in entries[-1]["message"]
