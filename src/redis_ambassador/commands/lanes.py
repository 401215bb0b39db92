"""The shared-lane rule: which commands may travel a node connection that many clients share.

A shared lane carries every client's commands, pipelined on one connection. A command sent there
must neither change that connection's state (its user, protocol, database, READONLY flag, reply
mode, tracking, subscriptions, MULTI, WATCH, client name) nor make the node close it, or one
client's command would change what every other client's commands do.

The rule is read off the command table the cluster itself reports (``COMMAND``), not kept as a
list of names, so a command a newer Redis adds is held back by default instead of forwarded
unexamined. A command sets connection state when Redis files it under the ``@connection`` or
``@transaction`` ACL category, or it is a subscription (``pubsub`` and ``noscript``: PUBLISH and
PUBSUB NUMSUB are ``pubsub`` too, but scripts may run them, so they leave the connection as it
was). MONITOR, SYNC, PSYNC and REPLCONF turn a connection into another kind of stream and are
named, as no flag says so.

Every such command needs a handler of the ambassador's: answered here for the client alone (CLIENT,
HELLO, SELECT, ...), or sent on a connection of the client's own (subscriptions). The router
refuses any it has no handler for; ``FORWARDED`` lists the few that may be forwarded because they
read and change nothing of the connection. Sans-IO.
"""

from __future__ import annotations

from collections.abc import Iterator

from redis_ambassador.commands.table import CommandSpec, CommandTable

# Commands that make a connection a replication stream or a MONITOR feed.
_STREAM_KINDS = frozenset(["monitor", "sync", "psync", "replconf"])
# @connection commands that neither read nor change the connection they run on: a node's answer
# over a shared lane is the answer the client would get from one Redis.
FORWARDED = frozenset(["command", "ping", "echo"])
# Redis refuses these command names and closes the connection (cross-protocol scripting: an
# HTTP request sent to a Redis port); never in ``COMMAND``.
CROSS_PROTOCOL = frozenset([b"post", b"host:"])


def sets_connection_state(spec: CommandSpec) -> bool:
    """Whether running ``spec`` on a connection could change that connection's state."""
    base = spec.name.split("|", 1)[0]
    if base in FORWARDED:
        return False
    categories = spec.categories
    return (
        "@connection" in categories
        or "@transaction" in categories
        or ("pubsub" in spec.flags and "noscript" in spec.flags)
        or base in _STREAM_KINDS
    )


def connection_state_commands(table: CommandTable) -> frozenset[str]:
    """Every name in ``table`` (subcommands as ``client|reply``) that sets connection state."""
    return frozenset(spec.name for spec in _every_spec(table) if sets_connection_state(spec))


def _every_spec(table: CommandTable) -> Iterator[CommandSpec]:
    for spec in table.specs():
        yield spec
        yield from spec.subcommands.values()
