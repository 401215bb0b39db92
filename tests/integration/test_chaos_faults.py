"""Each fault's observable effect through a plain redis.Redis client, against the real session
cluster, with rules added through the CHAOS command (in-band control) or the config file.

Whether a faulted command ran is checked on the node that owns its key, not through the
ambassador.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import Ambassador, RawConnection, StandaloneRedis, resp
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry
from traffic import no_retry_client

from redis_ambassador.local.cluster import LocalCluster

SEED = 42


@pytest.fixture(scope="module")
def chaotic(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path_factory
) -> Ambassador:
    """An ambassador with chaos and in-band control on, and a short wait for a new master (so a
    partitioned node's keys fail fast) and breaker reset (so it comes back fast)."""
    config = tmp_path_factory.mktemp("chaos") / "chaos.toml"
    config.write_text(
        "[upstream]\nretry_deadline = 0.5\nbreaker_reset_timeout = 0.3\n"
        "health_check_interval = 0.2\n"
    )
    return start_ambassador(
        cluster,
        admin=True,
        extra_args=("--chaos", "--chaos-in-band", "--chaos-seed", str(SEED), "--config",
                    str(config)),
    )  # fmt: skip


@pytest.fixture
def client(chaotic: Ambassador) -> Iterator[redis.Redis]:
    conn = chaotic.client(socket_timeout=5)
    yield conn
    conn.execute_command("CHAOS", "CLEAR")
    conn.close()


def add(conn: redis.Redis, /, **rule: object) -> str:
    return conn.execute_command("CHAOS", "ADD", json.dumps(rule)).decode()


def rules(client: redis.Redis) -> dict:
    return json.loads(client.execute_command("CHAOS", "LIST"))


def on_node(cluster: LocalCluster, key: str) -> redis.Redis:
    return cluster.client(cluster.master_for_slot(key_slot(key.encode())))


def test_an_error_reply_is_byte_exact_and_the_command_does_not_run(
    chaotic: Ambassador, client: redis.Redis, cluster: LocalCluster
) -> None:
    add(
        client,
        command="SET",
        key="chaos:err:*",
        error="READONLY You can't write against a read only replica.",
    )
    with chaotic.raw() as raw:
        reply = raw.exchange(resp("SET", "chaos:err:1", "v"))
    assert reply == [b"-READONLY You can't write against a read only replica.\r\n"]
    assert on_node(cluster, "chaos:err:1").get("chaos:err:1") is None
    client.set("chaos:other", "v")  # other keys are untouched
    with pytest.raises(redis.exceptions.BusyLoadingError):
        add(client, command="GET", error="LOADING Redis is loading the dataset in memory")
        client.get("chaos:other")


def test_a_delay_holds_the_reply_and_keeps_the_order_commands_run_in(
    client: redis.Redis,
) -> None:
    add(client, command="GET", key="chaos:delay", delay_ms=300)
    client.set("chaos:delay", "1")
    started = time.monotonic()
    assert client.get("chaos:delay") == b"1"
    assert 0.29 <= time.monotonic() - started < 1.3  # timers may fire a little early
    started = time.monotonic()
    client.set("chaos:undelayed", "1")
    assert time.monotonic() - started < 0.25
    # The GET ran when it was sent; only its reply waited: the SET after it did not overtake it.
    pipe = client.pipeline(transaction=False)
    pipe.set("chaos:delay", "a").get("chaos:delay").set("chaos:delay", "b").get("chaos:delay")
    assert pipe.execute() == [True, b"a", True, b"b"]


def test_a_timeout_swallows_the_reply_of_a_command_that_ran(
    chaotic: Ambassador, client: redis.Redis, cluster: LocalCluster
) -> None:
    add(client, command="SET", key="chaos:timeout", timeout=True)
    impatient = chaotic.client(socket_timeout=0.5)
    with pytest.raises(redis.exceptions.TimeoutError):
        impatient.set("chaos:timeout", "ran")
    impatient.close()
    assert on_node(cluster, "chaos:timeout").get("chaos:timeout") == b"ran"


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_dropped_connection_before_or_after_the_node_ran_the_command(
    chaotic: Ambassador, client: redis.Redis, cluster: LocalCluster, when: str
) -> None:
    key = f"chaos:drop:{when}"
    on_node(cluster, key).delete(key)
    add(client, command="SET", key=key, drop=when)
    victim = no_retry_client(chaotic)
    with pytest.raises(redis.exceptions.ConnectionError):
        victim.set(key, "v")
    victim.close()
    expected = b"v" if when == "after" else None
    assert on_node(cluster, key).get(key) == expected


def test_a_reset_is_a_tcp_rst(chaotic: Ambassador, client: redis.Redis) -> None:
    add(client, command="GET", key="chaos:reset", reset="before")
    with socket.create_connection((chaotic.host, chaotic.port), timeout=5) as sock:
        sock.sendall(resp("GET", "chaos:reset"))
        with pytest.raises(ConnectionResetError):
            sock.recv(100)


def test_forged_redirections_are_followed_and_counted(
    chaotic: Ambassador, client: redis.Redis
) -> None:
    client.set("chaos:moved", "here")
    before = _metric(chaotic, "redis_ambassador_redirects_total", 'kind="moved"')
    add(client, command="GET", key="chaos:moved", redirect="moved", to="wrong", count=5)
    add(client, command="GET", key="chaos:asked", redirect="ask")
    assert [client.get("chaos:moved") for _ in range(10)] == [b"here"] * 10
    assert client.get("chaos:asked") is None
    # Each forged MOVED to the wrong node is followed there, whose real MOVED leads back.
    assert _metric(chaotic, "redis_ambassador_redirects_total", 'kind="moved"') >= before + 10


def test_bandwidth_paces_a_large_reply(client: redis.Redis) -> None:
    client.set("chaos:big", b"x" * 100_000)
    add(client, command="GET", key="chaos:big", bandwidth=250_000)
    started = time.monotonic()
    assert client.get("chaos:big") == b"x" * 100_000
    assert time.monotonic() - started >= 0.35  # 100 KB at 250 KB/s


def test_split_writes_the_reply_in_pieces(chaotic: Ambassador, client: redis.Redis) -> None:
    client.set("chaos:split", b"y" * 60)
    add(client, command="GET", key="chaos:split", split=7)
    expected = b"$60\r\n" + b"y" * 60 + b"\r\n"
    chunks = []
    with socket.create_connection((chaotic.host, chaotic.port), timeout=5) as sock:
        sock.sendall(resp("GET", "chaos:split"))
        while sum(map(len, chunks)) < len(expected):
            chunks.append(sock.recv(1000))
    assert b"".join(chunks) == expected
    assert len(chunks) > 1
    # However the client's reads merged them, the pieces were written 7 bytes at a time.
    assert all(len(chunk) % 7 == 0 for chunk in chunks[:-1])


def test_probability_is_respected_over_thousands_of_commands(client: redis.Redis) -> None:
    add(client, command="GET", key="chaos:coin", error="ERR coin", probability=0.25)
    pipe = client.pipeline(transaction=False)
    for _ in range(4000):
        pipe.get("chaos:coin")
    errors = sum(isinstance(r, redis.ResponseError) for r in pipe.execute(raise_on_error=False))
    assert 860 <= errors <= 1140  # 1000 expected; 4.5 standard deviations either side
    (rule,) = rules(client)["rules"]
    assert (rule["matched"], rule["hits"]) == (4000, errors)


def test_the_same_seed_replays_the_same_faults(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> None:
    def pattern() -> list[bool]:
        other = start_ambassador(cluster, extra_args=("--chaos", "--chaos-in-band",
                                                      "--chaos-seed", "7"))  # fmt: skip
        conn = other.client()
        add(conn, command="GET", key="chaos:replay", error="ERR flip", probability=0.5)
        pipe = conn.pipeline(transaction=False)
        for _ in range(200):
            pipe.get("chaos:replay")
        replies = pipe.execute(raise_on_error=False)
        conn.close()
        other.stop()
        return [isinstance(r, redis.ResponseError) for r in replies]

    first = pattern()
    assert 60 < sum(first) < 140
    assert pattern() == first


def test_matching_by_client_name_count_and_window(chaotic: Ambassador, client: redis.Redis) -> None:
    add(client, command="GET", client="worker-*", error="ERR named", count=3)
    named = chaotic.client(client_name="worker-1")
    other = chaotic.client(client_name="web")
    results = []
    for _ in range(5):
        assert other.get("chaos:named") is None
        try:
            results.append(named.get("chaos:named"))
        except redis.ResponseError as exc:
            results.append(str(exc))
    assert results == ["named", "named", "named", None, None]
    (rule,) = rules(client)["rules"]
    assert (rule["hits"], rule["spent"], rule["active"]) == (3, True, False)
    client.execute_command("CHAOS", "CLEAR")
    add(client, command="GET", key="chaos:window", error="ERR window", after=0.3, duration=0.3)
    assert client.get("chaos:window") is None
    time.sleep(0.35)
    with pytest.raises(redis.ResponseError, match="window"):
        client.get("chaos:window")
    time.sleep(0.35)
    assert client.get("chaos:window") is None
    named.close()
    other.close()


def test_a_rule_on_a_category_or_node_role(client: redis.Redis, cluster: LocalCluster) -> None:
    add(client, command="@write", key="chaos:cat:*", error="ERR no writes")
    with pytest.raises(redis.ResponseError, match="no writes"):
        client.hset("chaos:cat:h", "f", "v")
    assert client.hgetall("chaos:cat:h") == {}
    client.execute_command("CHAOS", "CLEAR")
    owner = cluster.master_for_slot(key_slot(b"chaos:node"))
    add(client, node=owner.address, error="ERR that node")
    with pytest.raises(redis.ResponseError, match="that node"):
        client.get("chaos:node")
    elsewhere = next(
        f"chaos:node:{n}" for n in range(1000)
        if cluster.master_for_slot(key_slot(f"chaos:node:{n}".encode())) is not owner
    )  # fmt: skip
    assert client.get(elsewhere) is None


def test_a_partition_cuts_the_node_off_until_the_rule_goes(
    chaotic: Ambassador, client: redis.Redis, cluster: LocalCluster
) -> None:
    key = "chaos:partition"
    client.set(key, "kept")
    owner = cluster.master_for_slot(key_slot(key.encode()))
    rule = add(client, node=owner.address, partition=True)
    with pytest.raises(redis.ResponseError, match=f"node {owner.address} unavailable"):
        for _ in range(50):  # until the breaker opens (the first attempts are refused)
            client.get(key)
            time.sleep(0.05)
    assert on_node(cluster, key).get(key) == b"kept"  # the node itself is fine
    client.execute_command("CHAOS", "REMOVE", rule)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert client.get(key) == b"kept"
            break
        except redis.ResponseError:
            assert time.monotonic() < deadline, "the node did not come back"
            time.sleep(0.1)


def test_injected_faults_are_in_the_metrics(chaotic: Ambassador, client: redis.Redis) -> None:
    rule = add(client, command="GET", key="chaos:metric", error="ERR counted", count=4)
    for _ in range(6):
        with contextlib.suppress(redis.ResponseError):
            client.get("chaos:metric")
    labels = f'action="error",rule="{rule}"'
    assert _metric(chaotic, "redis_ambassador_chaos_faults_total", labels) == 4
    assert _metric(chaotic, "redis_ambassador_chaos_rules", "") == 1


def test_the_chaos_command_validates_and_explains(chaotic: Ambassador, client: redis.Redis) -> None:
    with chaotic.raw() as raw:
        assert raw.exchange(resp("CHAOS", "ADD", '{"error": "X", "probability": 2}')) == [
            b"-ERR invalid chaos rule: probability: must be between 0 and 1\r\n"
        ]
        assert raw.exchange(resp("CHAOS", "ADD", "{nope"))[0].startswith(
            b"-ERR invalid chaos rule: rule: not JSON"
        )
        assert raw.exchange(resp("CHAOS", "BOGUS")) == [
            b"-ERR unknown subcommand 'BOGUS'. Try CHAOS HELP.\r\n"
        ]
        assert raw.exchange(resp("CHAOS", "REMOVE", "999")) == [b":0\r\n"]
        help_lines = raw.exchange(resp("CHAOS", "HELP"))[0]
    assert help_lines.startswith(b"*") and b"+ADD <rule-json>\r\n" in help_lines


def test_without_chaos_the_command_is_unknown_as_in_redis(
    ambassador: Ambassador, standalone_redis: StandaloneRedis, raw: Callable[..., RawConnection]
) -> None:
    request = resp("CHAOS", "LIST")
    with ambassador.raw() as through, raw(standalone_redis.host, standalone_redis.port) as direct:
        assert through.exchange(request) == direct.exchange(request)


def test_rules_preloaded_from_the_config_file(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    config = tmp_path / "preload.toml"
    config.write_text(
        '[chaos]\nenabled = true\n\n[[chaos.rules]]\ncommand = "GET"\nkey = "chaos:pre"\n'
        'error = "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to '
        "'no'.\"\n"
    )
    preloaded = start_ambassador(cluster, extra_args=("--config", str(config)))
    conn = preloaded.client()
    with pytest.raises(redis.ResponseError, match="Link with MASTER is down"):
        conn.get("chaos:pre")
    assert conn.get("chaos:unmatched") is None
    # In-band control stays off unless asked for.
    with pytest.raises(redis.ResponseError, match="unknown command 'CHAOS'"):
        conn.execute_command("CHAOS", "LIST")
    conn.close()


def _metric(ambassador: Ambassador, name: str, labels: str) -> float:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{ambassador.admin_port}/metrics", timeout=5
    ) as response:
        text = response.read().decode()
    pattern = rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$"
    total = 0.0
    for match in re.finditer(pattern, text, re.MULTILINE):
        if labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


def test_commands_the_ambassador_answers_are_faulted_when_a_rule_names_them(
    chaotic: Ambassador, client: redis.Redis
) -> None:
    add(client, error="ERR everything")  # a catch-all rule leaves PING (and handshakes) alone
    assert client.ping() is True
    client.execute_command("CHAOS", "CLEAR")
    add(client, command="PING", delay_ms=300, count=1)
    add(client, command="PING", error="LOADING Redis is loading the dataset in memory", count=1)
    started = time.monotonic()
    assert client.ping() is True
    assert time.monotonic() - started >= 0.29  # timers may fire a little early
    with chaotic.raw() as raw:
        assert raw.exchange(resp("PING")) == [
            b"-LOADING Redis is loading the dataset in memory\r\n"
        ]
        assert raw.exchange(resp("PING")) == [b"+PONG\r\n"]


def test_with_an_admin_token_the_chaos_command_asks_for_it_first(
    cluster: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    config = tmp_path / "token.toml"
    config.write_text(
        '[server]\nadmin_token = "s3cret"\n\n[chaos]\nenabled = true\nin_band = true\n'
    )
    guarded = start_ambassador(cluster, extra_args=("--config", str(config)))
    with guarded.raw() as raw:
        assert raw.exchange(resp("CHAOS", "LIST")) == [
            b"-NOAUTH CHAOS needs the admin token (server.admin_token): send CHAOS AUTH "
            b"<token> first\r\n"
        ]
        assert raw.exchange(resp("CHAOS", "AUTH", "guess")) == [
            b"-WRONGPASS invalid admin token\r\n"
        ]
        assert raw.exchange(resp("CHAOS", "AUTH", "s3cret")) == [b"+OK\r\n"]
        assert raw.exchange(resp("CHAOS", "CLEAR")) == [b":0\r\n"]
        assert raw.exchange(resp("RESET")) == [b"+RESET\r\n"]
        assert raw.exchange(resp("CHAOS", "CLEAR"))[0].startswith(b"-NOAUTH")


def test_chaos_auth_without_a_token_configured(chaotic: Ambassador) -> None:
    with chaotic.raw() as raw:
        assert raw.exchange(resp("CHAOS", "AUTH", "x")) == [
            b"-ERR CHAOS AUTH called without server.admin_token configured\r\n"
        ]


def test_every_fault_at_once_under_load_harms_nothing_lasting(
    chaotic: Ambassador, client: redis.Redis
) -> None:
    """Twelve clients pipelining through every action at once (catch-all rules at a few
    percent each): the ambassador neither crashes nor logs a traceback nor grows, and once the
    rules are cleared every client is answered correctly again."""
    spread = [
        {"delay_ms": 20, "jitter_ms": 20}, {"error": "LOADING Redis is loading the dataset"},
        {"redirect": "moved", "to": "wrong"}, {"redirect": "ask"}, {"timeout": True},
        {"drop": "before"}, {"drop": "after"}, {"reset": "before"}, {"reset": "after"},
        {"split": 3}, {"bandwidth": 200_000},
    ]  # fmt: skip
    ids = [add(client, key="chaos:load:*", probability=0.01, **rule) for rule in spread]
    rss_before = chaotic.rss_bytes()
    stop = time.monotonic() + 4

    def worker(n: int) -> None:
        conn = chaotic.client(socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
        while time.monotonic() < stop:
            pipe = conn.pipeline(transaction=False)
            for i in range(8):
                pipe.set(f"chaos:load:{n}:{i}", i).get(f"chaos:load:{n}:{i}")
                pipe.incr(f"chaos:load:{n}")
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                pipe.execute(raise_on_error=False)
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hits = {rule["id"]: rule["hits"] for rule in rules(client)["rules"]}
    assert all(hits[rule_id] > 0 for rule_id in ids), hits
    client.execute_command("CHAOS", "CLEAR")
    assert chaotic.process.poll() is None
    assert "Traceback" not in chaotic.stderr_text()
    assert chaotic.rss_bytes() - rss_before < 32 * 1024 * 1024
    fresh = chaotic.client(socket_timeout=5)
    pipe = fresh.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"chaos:load:after:{i}", i).get(f"chaos:load:after:{i}")
    assert pipe.execute() == [x for i in range(200) for x in (True, str(i).encode())]
    fresh.close()
