"""The shared-lane rule (commands/lanes.py), read off a real Redis 7.0 ``COMMAND`` table."""

from __future__ import annotations

from test_command_table import TABLE

from redis_ambassador.commands.lanes import connection_state_commands, sets_connection_state
from redis_ambassador.commands.table import CommandSpec


def test_every_command_that_sets_connection_state_is_found_in_the_table() -> None:
    assert connection_state_commands(TABLE) == {
        # @connection: who the connection is, its protocol, database, reply mode, tracking...
        "auth", "hello", "select", "reset", "quit", "readonly", "readwrite", "asking", "wait",
        "client|caching", "client|getname", "client|getredir", "client|help", "client|id",
        "client|info", "client|kill", "client|list", "client|no-evict", "client|pause",
        "client|reply", "client|setname", "client|tracking", "client|trackinginfo",
        "client|unblock", "client|unpause",
        # @transaction
        "multi", "exec", "discard", "watch", "unwatch",
        # subscriptions (pubsub + noscript)
        "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe",
        # a connection turned into another kind of stream
        "monitor", "sync", "psync", "replconf",
    }  # fmt: skip


def test_commands_that_leave_the_connection_as_it_was_may_share_it() -> None:
    for name in ["get", "publish", "spublish", "pubsub|numsub", "command", "command|info", "ping",
                 "echo", "eval", "config|set", "debug", "blpop"]:  # fmt: skip
        base, _, sub = name.partition("|")
        spec = TABLE.get(base.encode())
        assert spec is not None
        if sub:
            spec = spec.subcommands[sub.encode()]
        assert not sets_connection_state(spec), name


def test_a_connection_command_a_newer_redis_adds_is_held_back_by_default() -> None:
    """No list of names to update: CLIENT NO-TOUCH (Redis 7.2) is not in this 7.0 table, and
    its ACL category alone keeps it off the shared lanes."""
    future = CommandSpec(
        "client|no-touch", 3, frozenset(["noscript", "loading", "stale"]),
        categories=frozenset(["@slow", "@connection"]),
    )  # fmt: skip
    assert sets_connection_state(future)
