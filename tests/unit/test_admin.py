"""Admin commands: where they go, and how the masters' replies merge into one server's (sans-IO).

The node replies are real ones, captured from two masters of a redis-server 7.0.15 cluster
(``data/admin_*``; how they were taken is in ``data/README.md``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hiredis
import pytest

from redis_ambassador import __version__
from redis_ambassador.commands.admin import ADMIN, Plan, To
from redis_ambassador.commands.info import ClusterView, bytes_to_human
from redis_ambassador.commands.merges import (
    FANOUT,
    all_ok,
    labelled_texts,
    latency_histogram,
    latency_history,
    latency_latest,
    slowlog_get,
    sum_integers,
)
from redis_ambassador.protocol.replies import bulk_value, elements

DATA = Path(__file__).parent / "data"


def captured(name: str) -> list[bytes]:
    """The replies of masters a and b to one command."""
    return [(DATA / f"admin_{name}".replace("*", node)).read_bytes() for node in "ab"]


def decode(reply: bytes) -> object:
    reader = hiredis.Reader()
    reader.feed(reply)
    return reader.gets()


def plan(*args: bytes, view: ClusterView | None = None) -> Plan:
    name = args[0].decode().lower()
    if name in ("config", "slowlog", "latency"):
        name += "|" + args[1].decode().lower()
    return ADMIN[name](list(args), view or VIEW)


VIEW = ClusterView(
    protocol=2,
    port=6390,
    version=b"6.2.14",  # lower than the nodes' 7.0.15: INFO must say the view's
    clients=7,
    masters=("127.0.0.1:14411", "127.0.0.1:18824"),
    replicas=2,
    slots_covered=16384,
    uptime=42,
)
NODE_ERROR = b"-ERR redis-ambassador: node 127.0.0.1:14411 unavailable: connection lost\r\n"


# -- CONFIG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", [b"SET", b"RESETSTAT", b"REWRITE"])
def test_config_changes_go_to_every_node_and_succeed_only_if_every_node_says_ok(
    sub: bytes,
) -> None:
    decided = plan(b"CONFIG", sub, b"maxmemory", b"1mb")
    assert decided.to is To.NODES
    assert decided.merge is all_ok
    unknown = b"-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n"
    assert all_ok([b"+OK\r\n", unknown, b"+OK\r\n"]) == unknown


def test_config_get_says_port_and_cluster_enabled_as_the_one_server_info_describes() -> None:
    from redis_ambassador.commands.admin import standalone_config

    # Shapes as redis-server 7.0.15 sends them: a flat array in RESP2, a map in RESP3.
    resp2 = b"*4\r\n$4\r\nport\r\n$5\r\n16483\r\n$15\r\ncluster-enabled\r\n$3\r\nyes\r\n"
    assert standalone_config(resp2, 6379) == (
        b"*4\r\n$4\r\nport\r\n$4\r\n6379\r\n$15\r\ncluster-enabled\r\n$2\r\nno\r\n"
    )
    resp3 = b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
    assert standalone_config(resp3, 6379) == resp3
    assert standalone_config(b"-ERR x\r\n", 6379) == b"-ERR x\r\n"
    assert "config|get" in ADMIN and "config|get" not in FANOUT


# -- SLOWLOG ------------------------------------------------------------------------------------


def entries(reply: bytes) -> list[tuple[int, int, list[bytes]]]:
    """(timestamp, id, arguments) of each SLOWLOG entry."""
    return [(e[1], e[0], e[3]) for e in decode(reply)]  # type: ignore[union-attr, index]


def test_slowlog_get_merges_every_masters_entries_newest_first() -> None:
    replies = captured("slowlog_get_*.resp")
    merged = slowlog_get(10)(replies)
    every = sorted(entries(replies[0]) + entries(replies[1]), reverse=True)
    assert entries(merged) == every
    assert len(every) == 4
    # The entries are the nodes' bytes, untouched.
    assert all(entry in replies[0] or entry in replies[1] for entry in elements(merged))


def test_slowlog_get_count_limits_the_merged_entries() -> None:
    replies = captured("slowlog_get_*.resp")
    newest = entries(slowlog_get(None)(replies))
    assert entries(slowlog_get(3)(replies)) == newest[:3]
    assert slowlog_get(0)(replies) == b"*0\r\n"
    assert entries(plan(b"SLOWLOG", b"GET").merge(replies)) == newest  # type: ignore[misc]


@pytest.mark.parametrize(
    ("count", "limit"), [(None, 10), (b"3", 3), (b"0", 0), (b"-1", None), (b"x", None)]
)
def test_slowlog_get_reads_the_count_as_redis_does(count: bytes | None, limit: int | None) -> None:
    args = [b"SLOWLOG", b"GET"] + ([count] if count is not None else [])
    decided = plan(*args)
    assert decided.to is To.MASTERS
    many = b"*1\r\n*6\r\n:%d\r\n:100\r\n:1\r\n*1\r\n$1\r\nx\r\n$0\r\n\r\n$0\r\n\r\n"
    replies = [b"*12\r\n" + b"".join((many % i)[4:] for i in range(12))]
    assert len(decode(decided.merge(replies))) == (12 if limit is None else limit)  # type: ignore[arg-type, misc]


def test_slowlog_get_with_a_bad_count_answers_the_nodes_error() -> None:
    bad = b"-ERR count should be greater than or equal to -1\r\n"
    assert plan(b"SLOWLOG", b"GET", b"-2").merge([bad, bad]) == bad  # type: ignore[misc]


def test_slowlog_len_is_summed_and_reset_goes_to_every_master() -> None:
    assert FANOUT["slowlog|len"] is sum_integers
    assert sum_integers([b":2\r\n", b":3\r\n"]) == b":5\r\n"
    assert FANOUT["slowlog|reset"] is all_ok


# -- LATENCY ------------------------------------------------------------------------------------


def test_latency_latest_has_one_entry_per_event_latest_of_any_master_worst_of_all() -> None:
    replies = captured("latency_latest_*.resp")
    (a,), (b,) = (decode(r) for r in replies)  # type: ignore[misc]
    newest = max(a, b, key=lambda e: e[1])
    assert decode(latency_latest(replies)) == [[b"command", newest[1], newest[2], max(a[3], b[3])]]
    made_up = (
        b"*2\r\n*4\r\n$4\r\nfork\r\n:10\r\n:5\r\n:9\r\n*4\r\n$7\r\ncommand\r\n:9\r\n:1\r\n:1\r\n"
    )
    merged = decode(latency_latest([made_up, replies[0]]))
    assert merged[0] == [b"fork", 10, 5, 9]  # type: ignore[index]
    assert merged[1] == [b"command", a[1], a[2], a[3]]  # type: ignore[index]


def test_latency_history_merges_samples_oldest_first() -> None:
    replies = captured("latency_history_*.resp")
    worst: dict[int, int] = {}
    for at, latency in decode(replies[0]) + decode(replies[1]):  # type: ignore[operator]
        worst[at] = max(latency, worst.get(at, 0))
    assert decode(latency_history(replies)) == [list(sample) for sample in sorted(worst.items())]
    same_second = [b"*1\r\n*2\r\n:100\r\n:5\r\n", b"*1\r\n*2\r\n:100\r\n:9\r\n"]
    assert latency_history(same_second) == b"*1\r\n*2\r\n:100\r\n:9\r\n"
    many = b"*200\r\n" + b"".join(b"*2\r\n:%d\r\n:1\r\n" % t for t in range(200))
    assert decode(latency_history([many]))[0] == [40, 1]  # type: ignore[index]


@pytest.mark.parametrize("ext", ["resp", "resp3"])
def test_latency_histogram_adds_calls_and_buckets_in_the_nodes_encoding(ext: str) -> None:
    replies = captured(f"latency_histogram_*.{ext}")
    merged = latency_histogram(replies)
    assert merged[:1] == replies[0][:1]  # a map in RESP3, a flat array in RESP2

    def table(reply: bytes) -> dict[bytes, tuple[int, dict[int, int]]]:
        found = decode(reply)
        pairs = (
            found.items() if isinstance(found, dict) else zip(found[::2], found[1::2], strict=True)
        )  # type: ignore[index, union-attr]
        result = {}
        for name, details in pairs:
            details = (
                details
                if isinstance(details, dict)
                else dict(zip(details[::2], details[1::2], strict=True))
            )
            buckets = details[b"histogram_usec"]
            if not isinstance(buckets, dict):
                buckets = dict(zip(buckets[::2], buckets[1::2], strict=True))
            result[name] = (details[b"calls"], buckets)
        return result

    a, b = table(replies[0]), table(replies[1])
    expected = {
        name: (
            a[name][0] + b[name][0],
            {k: a[name][1].get(k, 0) + b[name][1].get(k, 0) for k in a[name][1] | b[name][1]},
        )
        for name in a
    }
    assert table(merged) == expected
    assert set(expected) == {b"set", b"debug"}


def test_latency_doctor_reports_each_master_under_its_name_as_verbatim_text() -> None:
    replies = captured("latency_doctor_*.resp3")
    decided = plan(b"LATENCY", b"DOCTOR")
    assert decided.to is To.MASTERS
    merged = decided.merge(replies)  # type: ignore[misc]
    assert merged.startswith(b"=")
    text = bulk_value(merged)[4:]  # after "txt:"
    assert text.startswith(b"# node 127.0.0.1:14411\nDave, I have observed latency spikes")
    assert b"\n# node 127.0.0.1:18824\nDave" in text
    assert bulk_value(replies[1])[4:] in text
    resp2 = [b"$2\r\nok\r\n", b"$2\r\nno\r\n"]
    assert labelled_texts(["x:1", "y:2"])(resp2) == (b"$27\r\n# node x:1\nok\n# node y:2\nno\r\n")


def test_latency_latest_history_histogram_and_reset_go_to_every_master() -> None:
    assert FANOUT["latency|latest"] is latency_latest
    assert FANOUT["latency|history"] is latency_history
    assert FANOUT["latency|histogram"] is latency_histogram
    assert FANOUT["latency|reset"] is sum_integers


def test_a_failed_master_makes_the_merged_reply_its_error() -> None:
    for merge in (latency_latest, latency_history, latency_histogram, slowlog_get(10)):
        assert merge([b"*0\r\n", NODE_ERROR]) == NODE_ERROR


# -- DEBUG --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "keys"),
    [
        ([b"DEBUG", b"OBJECT", b"k"], (b"k",)),
        ([b"debug", b"sdslen", b"k"], (b"k",)),
        ([b"DEBUG", b"QUICKLIST", b"k", b"1"], (b"k",)),  # 1 is an option, not a key
        ([b"DEBUG", b"DIGEST-VALUE", b"a", b"b"], (b"a", b"b")),
    ],
)
def test_debug_subcommands_about_a_key_go_to_its_master(
    args: list[bytes], keys: tuple[bytes, ...]
) -> None:
    assert plan(*args) == Plan(To.KEYS, keys=keys)


def test_debug_sleep_and_set_active_expire_go_to_every_master() -> None:
    for sub in (b"SLEEP", b"set-active-expire", b"LOG"):
        assert plan(b"DEBUG", sub, b"0") == Plan(To.MASTERS, all_ok)


def test_debug_help_protocol_and_error_go_to_any_master_as_does_a_missing_argument() -> None:
    for args in (
        [b"DEBUG", b"HELP"],
        [b"DEBUG", b"PROTOCOL", b"map"],
        [b"DEBUG"],
        [b"DEBUG", b"OBJECT"],
    ):
        assert plan(*args) == Plan(To.ANY)


@pytest.mark.parametrize(
    "sub", [b"RELOAD", b"restart", b"SEGFAULT", b"POPULATE", b"DIGEST", b"pause-cron"]
)
def test_debug_subcommands_that_act_on_one_node_are_refused_with_the_reason(sub: bytes) -> None:
    decided = plan(b"DEBUG", sub)
    assert decided.to is To.NOWHERE
    assert decided.reply == (
        b"-ERR redis-ambassador does not support 'debug %b': it acts on one node's process, "
        b"replication or share of the keys; run it on the node itself\r\n" % sub.lower()
    )


def test_an_unknown_debug_subcommand_gets_redis_own_error_without_reaching_a_node() -> None:
    # Observed on redis-server 7.0.15.
    assert plan(b"DEBUG", b"NOSUCH").reply == (
        b"-ERR unknown subcommand or wrong number of arguments for 'NOSUCH'. Try DEBUG HELP.\r\n"
    )


# -- INFO ---------------------------------------------------------------------------------------


def as_sent(sections: tuple[bytes, ...]) -> list[bytes]:
    """The captured masters' INFO replies cut to what they send for ``INFO sections...``
    (the ``everything`` capture holds every section)."""
    names = {s.decode().lower() for s in sections}
    if not names or names & {"default", "all", "everything"}:
        return captured("info_everything_*.resp")  # close enough: the ambassador only merges
    replies = []
    for reply in captured("info_everything_*.resp"):
        kept = [
            part
            for part in bulk_value(reply).split(b"\r\n\r\n")
            if part[2:].split(b"\r\n")[0].decode().lower() in names
        ]
        text = b"\r\n\r\n".join(kept) + (
            b"\r\n" if kept and not kept[-1].endswith(b"\r\n") else b""
        )
        replies.append(b"$%d\r\n%b\r\n" % (len(text), text))
    return replies


def info(*sections: bytes, replies: list[bytes] | None = None, protocol: int = 2) -> bytes:
    """INFO's merged reply, from the captured masters' unless ``replies`` are given."""
    decided = plan(b"INFO", *sections, view=dataclasses.replace(VIEW, protocol=protocol))
    assert decided.to is To.MASTERS and decided.always
    return decided.merge(as_sent(sections) if replies is None else replies)  # type: ignore[misc]


def fields(reply: bytes) -> dict[str, str]:
    text = bulk_value(reply)
    if reply.startswith(b"="):
        text = text[4:]
    found = {}
    for line in text.decode().split("\r\n"):
        if line and not line.startswith("#"):
            name, _, value = line.partition(":")
            found[name] = value
    return found


def titles(reply: bytes) -> list[str]:
    return [line for line in bulk_value(reply).decode().split("\r\n") if line.startswith("#")]


NODES = [fields(reply) for reply in captured("info_everything_*.resp")]


# Keys with a TTL: 2 on a (avg_ttl 998876 ms), 4 on b (1999388 ms).
AVG_TTL = (998876 * 2 + 1999388 * 4) // 6


def node_sum(name: str) -> int:
    return sum(int(node[name]) for node in NODES)


def test_info_describes_a_standalone_server_with_the_lowest_version_on_our_port() -> None:
    merged = fields(info(b"everything"))
    assert merged["redis_mode"] == "standalone"
    assert merged["redis_version"] == "6.2.14"
    assert merged["tcp_port"] == "6390"
    assert merged["cluster_enabled"] == "0"
    assert merged["run_id"] == NODES[0]["run_id"]  # the rest of Server is the first master's


def test_info_clients_are_the_ambassadors_own() -> None:
    merged = fields(info(b"clients"))
    assert merged["connected_clients"] == "7"
    assert merged["cluster_connections"] == "0"
    assert merged["blocked_clients"] == str(node_sum("blocked_clients"))


def test_info_counts_are_summed() -> None:
    merged = fields(info(b"everything"))
    for name in ("total_commands_processed", "keyspace_misses", "total_net_input_bytes",
                 "expired_keys", "total_connections_received", "used_memory",
                 "used_memory_rss", "rdb_changes_since_last_save"):  # fmt: skip
        assert merged[name] == str(node_sum(name)), name
    assert merged["used_cpu_sys"] == f"{sum(float(n['used_cpu_sys']) for n in NODES):.6f}"
    assert merged["used_memory_human"] == bytes_to_human(node_sum("used_memory")).decode()
    assert merged["mem_fragmentation_ratio"] == "%.2f" % (
        node_sum("used_memory_rss") / node_sum("used_memory")
    )
    assert merged["maxmemory"] == "0"  # no limit on some node: no limit
    assert merged["mem_allocator"] == NODES[0]["mem_allocator"]


def test_info_commandstats_and_errorstats_add_up_per_command_and_error() -> None:
    merged = fields(info(b"everything"))
    assert (
        merged["cmdstat_set"]
        == "calls=11,usec=92,usec_per_call=8.36,rejected_calls=0,failed_calls=0"
    )
    assert merged["errorstat_ERR"] == "count=669"
    assert merged["errorstat_MOVED"] == "count=1"  # on one node only


def test_info_keyspace_sums_keys_and_weighs_avg_ttl_by_expires() -> None:
    merged = fields(info(b"keyspace"))
    assert merged == {"db0": f"keys=11,expires=6,avg_ttl={AVG_TTL}"}


def test_info_replication_hides_the_replicas_behind_the_ambassador() -> None:
    merged = fields(info(b"replication"))
    assert merged["role"] == "master"
    assert merged["connected_slaves"] == "0"
    assert not [name for name in merged if name.startswith("slave")]


def test_info_of_one_master_is_its_own_text_but_for_the_fields_the_ambassador_owns() -> None:
    (node,) = captured("info_everything_*.resp")[:1]
    merged = bulk_value(info(b"everything", replies=[node]))
    body, _, ambassador = merged.rpartition(b"\r\n# Ambassador\r\n")
    ours = {b"redis_mode", b"tcp_port", b"redis_version", b"cluster_connections",
            b"connected_clients", b"connected_slaves", b"cluster_enabled"}  # fmt: skip

    def others(text: bytes) -> list[bytes]:
        return [
            line
            for line in text.split(b"\r\n")
            if line.partition(b":")[0] not in ours and not line.startswith(b"slave0:")
        ]

    # Byte for byte, sections, blank lines and all; ratios and _human forms recomputed from the
    # (single) values come out as Redis wrote them.
    assert others(body) == others(bulk_value(node))
    assert ambassador.startswith(b"ambassador_version:")


def test_info_sections_come_in_redis_order_with_the_ambassadors_last() -> None:
    assert titles(info(b"everything")) == [
        "# Server", "# Clients", "# Memory", "# Persistence", "# Stats", "# Replication",
        "# CPU", "# Modules", "# Commandstats", "# Errorstats", "# Latencystats", "# Cluster",
        "# Keyspace", "# Ambassador",
    ]  # fmt: skip
    assert fields(info(b"ambassador")) == {
        "ambassador_version": __version__,
        "ambassador_uptime_in_seconds": "42",
        "ambassador_connected_clients": "7",
        "ambassador_masters": "2",
        "ambassador_replicas": "2",
        "ambassador_slots_covered": "16384",
        "ambassador_masters_answered": "2",
        "ambassador_breakers_open": "0",
        "ambassador_ready": "1",
    }


def test_info_says_why_the_ambassador_is_not_ready() -> None:
    view = dataclasses.replace(VIEW, breakers_open=1, unready="masters unreachable: a:1")
    decided = plan(b"INFO", b"ambassador", view=view)
    merged = fields(decided.merge([]))  # type: ignore[misc]
    assert merged["ambassador_breakers_open"] == "1"
    assert merged["ambassador_ready"] == "0"
    assert merged["ambassador_unready_reason"] == "masters unreachable: a:1"


@pytest.mark.parametrize(
    ("sections", "ambassador"),
    [((), True), ((b"default",), True), ((b"ALL",), True), ((b"server",), False),
     ((b"keyspace", b"ambassador"), True)],
)  # fmt: skip
def test_info_shows_the_ambassador_section_by_default_and_by_name(
    sections: tuple[bytes, ...], ambassador: bool
) -> None:
    assert (b"# Ambassador" in info(*sections)) is ambassador


def test_info_is_a_bulk_string_in_resp2_and_a_verbatim_string_in_resp3() -> None:
    replies = captured("info_keyspace_*.resp3")
    assert replies[0].startswith(b"=")  # as the nodes send it to a RESP3 client
    text = b"# Keyspace\r\ndb0:keys=11,expires=6,avg_ttl=%d\r\n" % AVG_TTL
    assert info(b"keyspace", replies=replies, protocol=3) == b"=%d\r\ntxt:%b\r\n" % (
        len(text) + 4,
        text,
    )
    resp2 = [b"$%d\r\n%b\r\n" % (len(bulk_value(r)) - 4, bulk_value(r)[4:]) for r in replies]
    assert info(b"keyspace", replies=resp2) == b"$%d\r\n%b\r\n" % (len(text), text)


def test_info_always_answers_from_what_the_ambassador_knows_when_no_master_does() -> None:
    merged = info(replies=[NODE_ERROR])
    assert titles(merged) == ["# Server", "# Clients", "# Cluster", "# Keyspace", "# Ambassador"]
    assert fields(merged) == {
        "redis_version": "6.2.14",
        "redis_mode": "standalone",
        "tcp_port": "6390",
        "connected_clients": "7",
        "cluster_connections": "0",
        "cluster_enabled": "0",
        **fields(info(b"ambassador", replies=[])),
        "ambassador_masters_answered": "0",
    }
    assert info(b"keyspace", replies=[]) == b"$12\r\n# Keyspace\r\n\r\n"
    assert info(b"memory", replies=[]) == b"$0\r\n\r\n"  # as Redis answers a section it lacks


def test_info_leaves_out_a_master_that_failed_and_says_so() -> None:
    a, _ = captured("info_everything_*.resp")
    merged = fields(info(replies=[a, NODE_ERROR]))
    assert merged["ambassador_masters_answered"] == "1"
    assert merged["total_commands_processed"] == NODES[0]["total_commands_processed"]


@pytest.mark.parametrize(
    ("n", "human"),
    [(200, b"200B"), (999992, b"976.55K"), (6955008, b"6.63M"), (25276510208, b"23.54G")],
)
def test_bytes_to_human_as_redis_writes_it(n: int, human: bytes) -> None:
    assert bytes_to_human(n) == human
