"""CommandTable: built from a real ``COMMAND`` reply; key positions checked against Redis itself.

``data/command.resp`` is the raw reply of ``COMMAND`` and ``data/command_getkeys.json`` the replies
of ``COMMAND GETKEYS <args...>``, both captured by hand from a Redis 7.0.15 cluster node.
"""

from __future__ import annotations

import json
from pathlib import Path

import hiredis
import pytest

from redis_ambassador.commands.table import CommandSpec, CommandTable, KeySpec

DATA = Path(__file__).parent / "data"


def load_resp(name: str) -> list:
    reader = hiredis.Reader()
    reader.feed((DATA / name).read_bytes())
    reply = reader.gets()
    assert reply is not False, f"{name} holds an incomplete reply"
    return reply


COMMAND_REPLY = load_resp("command.resp")
TABLE = CommandTable.from_reply(COMMAND_REPLY)
GETKEYS = json.loads((DATA / "command_getkeys.json").read_text())["cases"]


def keys_of(args: list[bytes]) -> list[bytes] | None:
    spec = TABLE.resolve(args)
    assert spec is not None, args[0]
    return spec.keys(args)


def case_id(case: dict) -> str:
    return " ".join(a or '""' for a in case["args"])[:60]


# Where CommandSpec.keys() and COMMAND GETKEYS disagree because of a bug here (none known).
KNOWN_BUGS: dict[tuple[str, ...], str] = {}

# Commands whose arguments Redis accepts but whose keys are deliberately not GETKEYS's answer.
INTENTIONAL = {
    # SPUBLISH's channel is a 'not_key' spec, so GETKEYS says "no key arguments"; yet a cluster
    # node redirects SPUBLISH by the channel's slot (observed: -MOVED), so the router must too.
    ("SPUBLISH", "ch", "msg"): [b"ch"],
}

# When Redis cannot name the keys (COMMAND GETKEYS answers an error, or [] for an invalid
# EVAL/FCALL numkeys), keys() must not invent keys that would route or refuse the command
# wrongly. It returns None or [] (the router then sends the command to any master, which replies
# Redis's own error), or, where the key sits at a fixed place, that key (its owner replies the
# same error). The second kind are listed here, each with why it is harmless.
FIXED_KEY_ON_ERROR = {
    # single_key commands: the key's owner replies the arity error.
    ("SET", "k"): [b"k"],
    ("GET", "a", "b"): [b"a"],
    # The destination is at a fixed place; its owner replies "at least 1 input key is needed".
    ("ZUNIONSTORE", "dst", "0", "a"): [b"dst"],
}


def getkeys_params() -> list:
    params = []
    for case in GETKEYS:
        args = tuple(case["args"])
        if args in INTENTIONAL or args[0] == "NOSUCHCOMMAND":
            continue
        marks = []
        if args in KNOWN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[args]))
        params.append(pytest.param(case, id=case_id(case), marks=marks))
    return params


@pytest.mark.parametrize("case", getkeys_params())
def test_keys_match_what_redis_command_getkeys_returns(case: dict) -> None:
    args = [a.encode() for a in case["args"]]
    ours = keys_of(args)
    redis_keys = case.get("keys")
    if redis_keys:
        assert ours == [k.encode() for k in redis_keys]
    elif tuple(case["args"]) in FIXED_KEY_ON_ERROR:
        assert ours == FIXED_KEY_ON_ERROR[tuple(case["args"])]
    else:
        # Redis: an error, or no keys at all (EVAL ... 0, EVAL with a bad numkeys).
        assert not ours


def test_getkeys_fixture_covers_the_representative_commands() -> None:
    names = {c["args"][0] for c in GETKEYS}
    assert len(GETKEYS) >= 60
    for name in ["GET", "SET", "MSET", "EVAL", "EVALSHA", "FCALL", "ZUNIONSTORE", "XREADGROUP",
                 "MIGRATE", "SORT", "BLMPOP", "BZMPOP", "OBJECT", "MEMORY", "XINFO", "GEORADIUS",
                 "GEOSEARCHSTORE", "BITOP", "LMOVE", "SPUBLISH", "CLIENT"]:  # fmt: skip
        assert name in names


def test_spublish_routes_by_its_shard_channel_although_getkeys_lists_no_key() -> None:
    case = next(c for c in GETKEYS if c["args"][0] == "SPUBLISH")
    assert case["error"] == "ERR The command has no key arguments"
    for args, expected in INTENTIONAL.items():
        assert keys_of([a.encode() for a in args]) == expected


def test_unknown_command_has_no_spec_as_redis_has_no_command() -> None:
    case = next(c for c in GETKEYS if c["args"][0] == "NOSUCHCOMMAND")
    assert case["error"] == "ERR Invalid command specified"
    assert TABLE.resolve([b"NOSUCHCOMMAND", b"a"]) is None
    assert TABLE.get(b"nosuchcommand") is None


# --- the table itself --------------------------------------------------------------------------


def test_table_holds_every_command_of_the_reply_once() -> None:
    assert len(TABLE) == len(COMMAND_REPLY)
    names = sorted(s.name for s in TABLE.specs())
    assert names == sorted(e[0].decode().lower() for e in COMMAND_REPLY)


@pytest.mark.parametrize("name", [b"get", b"GET", b"Get", b"gEt"])
def test_lookup_accepts_any_letter_case(name: bytes) -> None:
    spec = TABLE.get(name)
    assert spec is not None
    assert spec.name == "get"
    assert spec is TABLE.get(b"get")


def test_spec_carries_arity_and_lower_case_flags_from_the_reply() -> None:
    get = TABLE.get(b"get")
    assert get is not None
    assert get.arity == 2
    assert {"readonly", "fast"} <= get.flags
    mset = TABLE.get(b"MSET")
    assert mset is not None
    assert mset.arity == -3
    eval_ = TABLE.get(b"eval")
    assert eval_ is not None
    assert eval_.movable


@pytest.mark.parametrize(
    ("args", "name", "keys"),
    [
        ([b"OBJECT", b"ENCODING", b"k"], "object|encoding", [b"k"]),
        ([b"object", b"encoding", b"k"], "object|encoding", [b"k"]),
        ([b"Object", b"Freq", b"k"], "object|freq", [b"k"]),
        ([b"MEMORY", b"usage", b"k", b"SAMPLES", b"5"], "memory|usage", [b"k"]),
        ([b"XINFO", b"STREAM", b"s"], "xinfo|stream", [b"s"]),
        ([b"XGROUP", b"CREATE", b"s", b"g", b"$"], "xgroup|create", [b"s"]),
        ([b"CLIENT", b"ID"], "client|id", []),
        ([b"CONFIG", b"get", b"maxmemory"], "config|get", []),
    ],
)
def test_resolve_descends_into_the_subcommand_in_any_letter_case(
    args: list[bytes], name: str, keys: list[bytes]
) -> None:
    spec = TABLE.resolve(args)
    assert spec is not None
    assert spec.name == name
    assert spec.keys(args) == keys


def test_resolve_keeps_the_container_for_an_unknown_or_missing_subcommand() -> None:
    assert TABLE.resolve([b"OBJECT", b"NOSUCH", b"k"]) is TABLE.get(b"object")
    assert TABLE.resolve([b"OBJECT"]) is TABLE.get(b"object")
    assert TABLE.resolve([b"GET", b"k"]) is TABLE.get(b"get")  # no subcommands: args[1] is a key


@pytest.mark.parametrize(
    "name",
    [b"get", b"set", b"hset", b"hget", b"incr", b"getex", b"lpush", b"expire", b"ttl", b"type",
     b"append", b"setex", b"zadd", b"sadd", b"xadd", b"spublish"],
)  # fmt: skip
def test_single_key_is_one_for_fixed_single_key_commands(name: bytes) -> None:
    spec = TABLE.get(name)
    assert spec is not None
    assert spec.single_key == 1


@pytest.mark.parametrize(
    "name",
    [b"mset", b"mget", b"del", b"exists", b"eval", b"evalsha", b"fcall", b"zunionstore",
     b"zinter", b"sort", b"migrate", b"rename", b"smove", b"lmove", b"blpop", b"bitop",
     b"xread", b"georadius", b"ping", b"publish", b"object", b"client", b"lmpop"],
)  # fmt: skip
def test_single_key_is_zero_for_commands_without_exactly_one_fixed_key(name: bytes) -> None:
    spec = TABLE.get(name)
    assert spec is not None
    assert spec.single_key == 0


def test_subcommands_get_single_key_at_their_own_fixed_index() -> None:
    assert TABLE.resolve([b"OBJECT", b"ENCODING", b"k"]).single_key == 2  # type: ignore[union-attr]
    assert TABLE.resolve([b"XINFO", b"STREAM", b"s"]).single_key == 2  # type: ignore[union-attr]
    assert TABLE.resolve([b"MEMORY", b"USAGE", b"k"]).single_key == 2  # type: ignore[union-attr]


def all_specs() -> list[CommandSpec]:
    specs = []
    for spec in TABLE.specs():
        specs.append(spec)
        specs.extend(spec.subcommands.values())
    return specs


def test_single_key_agrees_with_redis_legacy_first_last_step_for_every_command() -> None:
    # Redis's own (first, last, step) triple is (k, k, 1) for a single fixed key at k.
    for spec in all_specs():
        if spec.single_key:
            assert spec.legacy_keys == (spec.single_key, spec.single_key, 1), spec.name
            assert not spec.movable, spec.name


def test_single_key_returns_the_key_at_its_index_or_none_when_args_are_too_short() -> None:
    get = TABLE.get(b"get")
    assert get is not None
    assert get.keys([b"GET", b"k"]) == [b"k"]
    assert get.keys([b"GET"]) is None


# --- KeySpec on its own --------------------------------------------------------------------------


def spec_of(begin: list, find: list) -> KeySpec:
    return KeySpec.from_reply([b"flags", [b"RW"], b"begin_search", begin, b"find_keys", find])


def test_keyword_spec_searches_backwards_from_a_negative_startfrom() -> None:
    spec = spec_of(
        [b"type", b"keyword", b"spec", [b"keyword", b"KEYS", b"startfrom", -2]],
        [b"type", b"range", b"spec", [b"lastkey", -1, b"keystep", 1, b"limit", 0]],
    )
    assert spec.key_indexes([b"X", b"a", b"KEYS", b"k1", b"keys", b"k2"]) == range(5, 6)
    assert spec.key_indexes([b"X", b"a", b"b"]) == range(0)


def test_keynum_spec_with_bad_numkeys_cannot_say_where_the_keys_are() -> None:
    spec = spec_of(
        [b"type", b"index", b"spec", [b"index", 2]],
        [b"type", b"keynum", b"spec", [b"keynumidx", 0, b"firstkey", 1, b"keystep", 1]],
    )
    assert spec.key_indexes([b"EVAL", b"s", b"2", b"a", b"b"]) == range(3, 5)
    assert spec.key_indexes([b"EVAL", b"s", b"0"]) == range(0)
    assert spec.key_indexes([b"EVAL", b"s", b"3", b"a"]) is None
    assert spec.key_indexes([b"EVAL", b"s", b"-1"]) is None
    assert spec.key_indexes([b"EVAL", b"s", b"x"]) is None
    assert spec.key_indexes([b"EVAL", b"s"]) is None


def test_range_spec_with_limit_takes_the_first_part_of_the_remaining_args() -> None:
    # XREAD ... STREAMS k1 k2 id1 id2: keys are the first half after STREAMS.
    spec = spec_of(
        [b"type", b"keyword", b"spec", [b"keyword", b"STREAMS", b"startfrom", 1]],
        [b"type", b"range", b"spec", [b"lastkey", -1, b"keystep", 1, b"limit", 2]],
    )
    args = [b"XREAD", b"COUNT", b"1", b"STREAMS", b"a", b"b", b"0", b"0"]
    assert spec.key_indexes(args) == range(4, 6)
