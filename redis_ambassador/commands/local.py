"""Commands answered by the ambassador itself, and commands it refuses (for now, with the reason).

Connection state (name, protocol, database) belongs to the client's connection to *us*: it must
never reach the node connections that many clients share.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis_ambassador import errors
from redis_ambassador.commands.cluster import cluster_command
from redis_ambassador.commands.connection import (
    client_command,
    reset_command,
    valid_client_attribute,
)
from redis_ambassador.commands.state import ClientState, Handler, ServerFacts
from redis_ambassador.protocol.replies import OK, PONG, array, bulk, integer, mapping
from redis_ambassador.protocol.requests import as_bytes, string2ll


def _ping(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    if len(args) == 1:
        return PONG
    if len(args) == 2:
        return bulk(args[1])
    return errors.wrong_arity("ping")


def _echo(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    return bulk(args[1]) if len(args) == 2 else errors.wrong_arity("echo")


def _select(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    if len(args) != 2:
        return errors.wrong_arity("select")
    db = string2ll(args[1])
    if db is None:
        return errors.NOT_AN_INTEGER
    if not -(2**31) <= db < 2**31:
        return errors.INT_OUT_OF_RANGE
    if db == 0:
        return OK
    return errors.SELECT_ONE_SERVER if facts.one_server else errors.SELECT_IN_CLUSTER


def _ok(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    if len(args) != 1:
        return errors.wrong_arity(args[0].decode("utf-8", "replace").lower())
    return OK


@dataclass(frozen=True)
class Hello:
    """A parsed HELLO: the protocol asked for (None: keep the client's), and its options in the
    order given, which Redis applies in that order as it reads them (an AUTH signs in, a SETNAME
    names the client, before a later option is even looked at): ``(b"auth", user, password)``,
    ``(b"setname", name)``, or ``(b"error", reply)`` where the options stop making sense."""

    protocol: int | None
    options: tuple[tuple[bytes, ...], ...]


def parse_hello(args: list[bytes]) -> Hello | bytes:
    """HELLO's arguments, or the error Redis gives for its protocol version (checked first)."""
    args = as_bytes(args)  # options read as text, the name and credentials kept
    i = 1
    proto = None
    if len(args) > 1:
        proto = string2ll(args[1])
        if proto is None:
            return errors.HELLO_PROTO_NOT_INTEGER
        if proto not in (2, 3):
            return errors.NOPROTO
        i = 2
    options: list[tuple[bytes, ...]] = []
    while i < len(args):
        option = args[i].lower()
        if option == b"setname" and i + 1 < len(args):
            options.append((b"setname", args[i + 1]))
            i += 2
        elif option == b"auth" and i + 2 < len(args):
            options.append((b"auth", args[i + 1], args[i + 2]))
            i += 3
        else:
            options.append((b"error", errors.hello_syntax(args[i])))
            break
    return Hello(proto, tuple(options))


def hello_options(client: ClientState, hello: Hello, start: int = 0) -> tuple[int, bytes | None]:
    """Apply HELLO's options from ``start`` on, in order, until its next AUTH (for the caller
    to check): ``(that AUTH's index, None)``; ``(index, error)`` where one fails (a name Redis
    refuses, a syntax error); ``(len(options), None)`` once all applied."""
    options = hello.options
    for index in range(start, len(options)):
        kind, value = options[index][:2]
        if kind == b"auth":
            return index, None
        if kind == b"error":
            return index, value
        if not valid_client_attribute(value):
            return index, errors.CLIENT_NAME_CHARS
        client.name = value
    return len(options), None


def hello_reply(client: ClientState, protocol: int | None, facts: ServerFacts) -> bytes:
    """A HELLO whose options all applied: switch to ``protocol`` (None: keep the client's) and
    answer with the server map."""
    proto = client.protocol if protocol is None else protocol
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


def _hello(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """HELLO without AUTH, from a client that is in (the router signs the others in)."""
    hello = parse_hello(args)
    if isinstance(hello, bytes):
        return hello
    index, failed = hello_options(client, hello)
    if failed is not None:
        return failed
    assert index == len(hello.options), "HELLO ... AUTH is the router's"
    return hello_reply(client, hello.protocol, facts)


def _role(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """ROLE as a master without replicas says it: the ambassador is the one server the client
    sees (the nodes' replicas are behind it, as INFO replication says)."""
    if len(args) != 1:
        return errors.wrong_arity("role")
    return array([bulk(b"master"), integer(0), array([])])


# Answered here; QUIT is answered here too but also closes, and AUTH and HELLO may need the
# cluster to check a user, so the router handles those.
LOCAL: dict[str, Handler] = {
    "ping": _ping,
    "echo": _echo,
    "select": _select,
    "client": client_command,
    "hello": _hello,
    "reset": reset_command,
    "cluster": cluster_command,  # describes the ambassador as one node owning every slot
    "readonly": _ok,  # reads always go to masters for now; accepted so cluster clients work
    "readwrite": _ok,
    "role": _role,
    "asking": _ok,  # redirections are the ambassador's business
}

# Answered here and changing nothing about the client (CLUSTER: every subcommand): inside MULTI
# they are queued and answered at EXEC in their place, as one Redis would. The other local
# commands (SELECT, CLIENT SETNAME, HELLO, ...) change the client's session, which is kept here
# and not replayed at EXEC: they cannot be queued.
_INERT = frozenset(
    ["ping", "echo", "readonly", "readwrite", "asking", "role", "client|getname", "client|id",
     "client|info", "client|list", "client|help"]
)  # fmt: skip


def answered_at_exec(name: str) -> bool:
    """Whether the local command ``name`` (as the command table names it) may be queued."""
    return name in _INERT or name.startswith("cluster")


BLOCKING_WITHOUT_KEYS = "a blocking command without keys has no node to wait on"
_WAIT = (
    "it counts the replicas that acknowledged this connection's writes, and the ambassador "
    "sends a client's writes over node connections shared with other clients"
)
_SCRIPT_DEBUG = "the Lua debugger needs a connection of its own to one node"
_ONE_NODE = "it would act on one node of the cluster only"
_NOT_HERE = "it is not available through the ambassador"

# Commands that would change the state of a shared node connection, need every node, or act on
# a single node behind the client's back. Each gets a clear error instead.
REFUSED: dict[str, str] = {
    "script|debug": _SCRIPT_DEBUG,
    **dict.fromkeys(
        ["shutdown", "failover", "replicaof", "slaveof", "save", "bgsave", "bgrewriteaof",
         "swapdb", "move", "module", "acl"],
        _ONE_NODE,
    ),
    **dict.fromkeys(["wait", "waitaof"], _WAIT),
    **dict.fromkeys(
        ["sync", "psync", "replconf"], _NOT_HERE
    ),
}  # fmt: skip
