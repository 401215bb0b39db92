"""Commands answered by the ambassador itself, and commands it refuses (for now, with the reason).

Connection state (name, protocol, database) belongs to the client's connection to *us*: it must
never reach the node connections that many clients share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from redis_ambassador import errors
from redis_ambassador.protocol.replies import OK, PONG, array, bulk, integer, mapping, null
from redis_ambassador.protocol.requests import string2ll


class Session(Protocol):
    """What a local command may read or change about the client that sent it."""

    id: int
    name: bytes
    protocol: int

    def set_protocol(self, protocol: int) -> None: ...


class ServerFacts(Protocol):
    """What HELLO reports about the server the client believes it talks to."""

    version: bytes


Handler = Callable[[Session, list[bytes], ServerFacts], bytes]


def _ping(client: Session, args: list[bytes], facts: ServerFacts) -> bytes:
    if len(args) == 1:
        return PONG
    if len(args) == 2:
        return bulk(args[1])
    return errors.wrong_arity("ping")


def _echo(client: Session, args: list[bytes], facts: ServerFacts) -> bytes:
    return bulk(args[1]) if len(args) == 2 else errors.wrong_arity("echo")


def _select(client: Session, args: list[bytes], facts: ServerFacts) -> bytes:
    if len(args) != 2:
        return errors.wrong_arity("select")
    db = string2ll(args[1])
    if db is None:
        return errors.NOT_AN_INTEGER
    if not -(2**31) <= db < 2**31:
        return errors.INT_OUT_OF_RANGE
    return OK if db == 0 else errors.SELECT_IN_CLUSTER


def _ok(client: Session, args: list[bytes], facts: ServerFacts) -> bytes:
    if len(args) != 1:
        return errors.wrong_arity(args[0].decode("utf-8", "replace").lower())
    return OK


def _valid_client_name(name: bytes) -> bool:
    # Redis accepts printable ASCII without spaces ('!' .. '~').
    return all(33 <= c <= 126 for c in name)


def _client(client: Session, args: list[bytes], facts: ServerFacts) -> bytes:
    if len(args) < 2:
        return errors.wrong_arity("client")
    sub = args[1].lower()
    if sub == b"setname":
        if len(args) != 3:
            return errors.wrong_arity("client|setname")
        if not _valid_client_name(args[2]):
            return errors.CLIENT_NAME_CHARS
        client.name = args[2]
        return OK
    if sub == b"getname":
        if len(args) != 2:
            return errors.wrong_arity("client|getname")
        return bulk(client.name) if client.name else null(client.protocol)
    if sub == b"id":
        return integer(client.id) if len(args) == 2 else errors.wrong_arity("client|id")
    if sub == b"setinfo":
        # Library name/version: accepted like Redis 7.2 does; nothing routes on them.
        if len(args) != 4:
            return errors.wrong_arity("client|setinfo")
        if args[2].lower() not in (b"lib-name", b"lib-ver"):
            return errors.unrecognized_option(args[2])
        if not _valid_client_name(args[3]):
            return errors.bad_client_attribute(args[2])
        return OK
    if sub in _CLIENT_SUBCOMMANDS:
        return errors.not_supported(
            args, f"'client {sub.decode()}' is not supported by the ambassador yet"
        )
    return errors.unknown_subcommand(args[1], "client")


_CLIENT_SUBCOMMANDS = {
    b"list",
    b"info",
    b"kill",
    b"pause",
    b"unpause",
    b"reply",
    b"tracking",
    b"trackinginfo",
    b"caching",
    b"getredir",
    b"no-evict",
    b"no-touch",
    b"unblock",
    b"help",
}


def _hello(client: Session, args: list[bytes], facts: ServerFacts) -> bytes:
    i = 1
    if len(args) > 1:
        proto = string2ll(args[1])
        if proto is None:
            return errors.HELLO_PROTO_NOT_INTEGER
        if proto not in (2, 3):
            return errors.NOPROTO
        i = 2
    else:
        proto = client.protocol
    name = None
    while i < len(args):
        option = args[i].lower()
        if option == b"setname" and i + 1 < len(args):
            name = args[i + 1]
            if not _valid_client_name(name):
                return errors.CLIENT_NAME_CHARS
            i += 2
        elif option == b"auth" and i + 2 < len(args):
            return errors.not_supported(args, "authentication is not supported yet")
        else:
            return errors.hello_syntax(args[i])
    if name is not None:
        client.name = name
    client.set_protocol(proto)
    return mapping(
        [
            bulk(b"server"), bulk(b"redis"),
            bulk(b"version"), bulk(facts.version),
            bulk(b"proto"), integer(proto),
            bulk(b"id"), integer(client.id),
            bulk(b"mode"), bulk(b"standalone"),
            bulk(b"role"), bulk(b"master"),
            bulk(b"modules"), array([]),
        ],
        proto,
    )  # fmt: skip


# Answered here; QUIT is answered here too but also closes, so the router handles it.
LOCAL: dict[str, Handler] = {
    "ping": _ping,
    "echo": _echo,
    "select": _select,
    "client": _client,
    "hello": _hello,
    "readonly": _ok,  # reads always go to masters for now; accepted so cluster clients work
    "readwrite": _ok,
    "asking": _ok,  # redirections are the ambassador's business
}

_TRANSACTIONS = "transactions are not supported by the ambassador yet"
_PUBSUB = "pub/sub subscriptions are not supported by the ambassador yet"
BLOCKING = "blocking commands are not supported by the ambassador yet"
_SCRIPT_DEBUG = "the Lua debugger needs a connection of its own to one node"
_ONE_NODE = "it would act on one node of the cluster only"
_NOT_HERE = "it is not available through the ambassador"

# Commands that would change the state of a shared node connection, need every node, or act on
# a single node behind the client's back. Each gets a clear error instead.
REFUSED: dict[str, str] = {
    **dict.fromkeys(["multi", "exec", "discard", "watch", "unwatch"], _TRANSACTIONS),
    **dict.fromkeys(
        ["subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"],
        _PUBSUB,
    ),
    "script|debug": _SCRIPT_DEBUG,
    **dict.fromkeys(
        ["shutdown", "debug", "config|set", "config|resetstat", "config|rewrite", "cluster",
         "failover", "replicaof", "slaveof", "save", "bgsave", "bgrewriteaof", "migrate",
         "swapdb", "move", "module", "acl"],
        _ONE_NODE,
    ),
    **dict.fromkeys(
        ["monitor", "sync", "psync", "replconf", "auth", "reset", "wait", "waitaof"], _NOT_HERE
    ),
}  # fmt: skip
