"""CLIENT and RESET: the state of one client's connection, kept by the ambassador.

Redis keeps a connection's name, protocol, library info and modes on that connection; here they
live on the client's session with the ambassador, never on the node connections that many clients
share. Replies are Redis 7.2's, byte for byte (``clientCommand``, ``resetCommand`` and
``catClientInfoString`` in ``networking.c``). CLIENT INFO and CLIENT LIST describe connections to
the ambassador: the fields it knows are real (id, addresses, fd, name, age, flags, resp, lib-name,
lib-ver), the ones it does not measure are constants a quiet Redis connection would show.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from redis_ambassador import errors
from redis_ambassador.commands.state import ClientState, Handler, ServerFacts
from redis_ambassador.commands.table import arity_ok
from redis_ambassador.protocol.replies import OK, array, bulk, integer, null, status, verbatim
from redis_ambassador.protocol.requests import as_bytes, string2ll

RESET = b"+RESET\r\n"


def valid_client_attribute(value: bytes) -> bool:
    """Redis accepts printable ASCII without spaces ('!' .. '~') in names and library info, so
    CLIENT LIST lines always split on spaces."""
    return all(33 <= c <= 126 for c in value)


def reset_command(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """RESET: back to a fresh connection's state, as Redis 7.2's ``clearClientConnectionState``
    does. Library name and version stay: they still describe the library on the connection."""
    if len(args) != 1:
        return errors.wrong_arity("reset")
    client.name = b""
    client.no_evict = False
    client.no_touch = False
    client.set_protocol(2)
    return RESET


class Container:
    """A command made of subcommands (CLIENT, CLUSTER) answered here, checking as Redis does:
    the subcommand first (unknown, or refused here with the reason), then its arity."""

    def __init__(
        self, command: str, subcommands: dict[bytes, tuple[int, Handler]], refused: dict[bytes, str]
    ) -> None:
        self._command = command
        self._subcommands = subcommands
        self._refused = refused

    def knows(self, sub: bytes) -> bool:
        """Whether ``sub`` (lower case) is answered or refused here: some are whatever the
        nodes' Redis version knows (CLIENT SETINFO and NO-TOUCH, for client libraries)."""
        return sub in self._subcommands or sub in self._refused

    def __call__(self, client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
        command = self._command
        if len(args) < 2:
            return errors.wrong_arity(command)
        args = as_bytes(args)  # options read as text, names kept
        sub = args[1].lower()
        found = self._subcommands.get(sub)
        if found is None:
            reason = self._refused.get(sub)
            if reason is not None:
                return errors.not_supported([f"{command} ".encode() + sub], reason)
            return errors.unknown_subcommand(args[1], command)
        arity, handler = found
        if not arity_ok(arity, len(args)):
            return errors.wrong_arity(f"{command}|{sub.decode()}")
        return handler(client, args, facts)


def _setname(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    if not valid_client_attribute(args[2]):
        return errors.CLIENT_NAME_CHARS
    client.name = args[2]
    return OK


def _getname(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    return bulk(client.name) if client.name else null(client.protocol)


def _id(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    return integer(client.id)


def _setinfo(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """Library name and version (Redis 7.2), shown by CLIENT INFO/LIST; empty clears."""
    option = args[2].lower()
    if option not in (b"lib-name", b"lib-ver"):
        return errors.unrecognized_option(args[2])
    if not valid_client_attribute(args[3]):
        return errors.bad_client_attribute(args[2])
    if option == b"lib-name":
        client.lib_name = args[3]
    else:
        client.lib_ver = args[3]
    return OK


_ON_OFF = {b"on": True, b"off": False}


def _on_off(value: bytes) -> bool | None:
    return _ON_OFF.get(value.lower())


def _no_evict(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """Stored and shown (flag ``e``): the ambassador evicts no clients by memory."""
    on = _on_off(args[2])
    if on is None:
        return errors.SYNTAX
    client.no_evict = on
    return OK


def _no_touch(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """Stored and shown (flag ``T``). Not passed on: the node connections are shared, so the
    nodes still update the LRU/LFU of the keys this client reads."""
    on = _on_off(args[2])
    if on is None:
        return errors.SYNTAX
    client.no_touch = on
    return OK


_ENDPOINT_TYPES = frozenset(
    [b"internal-ip", b"internal-fqdn", b"external-ip", b"external-fqdn", b"none"]
)


def _maint_notifications(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """``CLIENT MAINT_NOTIFICATIONS ON|OFF [moving-endpoint-type TYPE]``, which node-redis and
    redis-py send on connect (Redis Cloud and Software answer it; open-source Redis does not
    have it). Accepted: the ambassador has no maintenance to announce, so it never sends the
    notifications. The option names and endpoint types are those the client libraries send."""
    if _on_off(args[2]) is None:
        return errors.SYNTAX
    options = args[3:]
    if len(options) % 2:
        return errors.SYNTAX
    for i in range(0, len(options), 2):
        if options[i].lower() != b"moving-endpoint-type":
            return errors.SYNTAX
        if options[i + 1].lower() not in _ENDPOINT_TYPES:
            return errors.SYNTAX
    return OK


def _info(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    line = describe(client, time.monotonic(), b"client|info")
    return verbatim(line + b"\n", client.protocol)


def _list(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """CLIENT LIST [TYPE type | ID id ...]: this ambassador's clients, all of type ``normal``."""
    chosen = _chosen_clients(client, args, facts.clients)
    if isinstance(chosen, bytes):
        return chosen  # an error
    now = time.monotonic()
    lines = [describe(c, now, b"client|list" if c is client else b"NULL") + b"\n" for c in chosen]
    return verbatim(b"".join(lines), client.protocol)


def _chosen_clients(
    caller: ClientState, args: list[bytes], clients: Iterable[ClientState]
) -> list[ClientState] | bytes:
    """The clients a CLIENT LIST filter selects (in Redis's order), or the error it earns."""
    if len(args) == 4 and args[2].lower() == b"type":
        kind = args[3].lower()
        if kind not in _CLIENT_TYPES:
            return errors.unknown_client_type(args[3])
        return sorted(clients, key=_by_id) if kind == b"normal" else []
    if len(args) > 3 and args[2].lower() == b"id":
        by_id = {c.id: c for c in clients}
        chosen = []
        for raw in args[3:]:
            wanted = string2ll(raw)
            if wanted is None:
                return errors.INVALID_CLIENT_ID
            if wanted in by_id:
                chosen.append(by_id[wanted])
        return chosen
    if len(args) != 2:
        return errors.SYNTAX
    return sorted(clients, key=_by_id)


def _by_id(client: ClientState) -> int:
    return client.id


_CLIENT_TYPES = frozenset([b"normal", b"master", b"replica", b"slave", b"pubsub"])


def describe(client: ClientState, now: float, command: bytes) -> bytes:
    """One CLIENT INFO/LIST line in Redis 7.2's format (no trailing newline).

    Ours: id, addr, laddr, fd (our socket), name, age, flags (``e``, ``T`` or ``N``), resp,
    lib-name, lib-ver, idle (since the client's last read: what ``server.idle_timeout``
    measures), and cmd for the calling client (``NULL`` for others: the ambassador does not
    record each client's last command), user (as it authenticated). Constant: sub/psub/ssub=0
    and multi=-1 (not counted here), db=0 (the only database of a cluster), buffer and memory
    sizes 0, redir=-1.
    """
    flags = (b"e" if client.no_evict else b"") + (b"T" if client.no_touch else b"")
    return (
        b"id=%d addr=%b laddr=%b fd=%d name=%b age=%d idle=%d flags=%b db=0 sub=0 psub=0 ssub=0 "
        b"multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 "
        b"tot-mem=0 events=r cmd=%b user=%b redir=-1 resp=%d lib-name=%b lib-ver=%b"
        % (
            client.id,
            _address(*_split_address(client.peer)),
            _address(*client.local_address),
            client.fd,
            client.name,
            max(0, int(now - client.connected_at)),
            max(0, int(now - client.last_read)),
            flags or b"N",
            command,
            client.user,
            client.protocol,
            client.lib_name,
            client.lib_ver,
        )
    )


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else ("?", 0)


def _address(host: str, port: int) -> bytes:
    """``ip:port`` as Redis writes it (``anetFormatAddr``): IPv6 in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}".encode()


_HELP = [
    b"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    b"GETNAME",
    b"    Return the name of the current connection.",
    b"ID",
    b"    Return the ID of the current connection.",
    b"INFO",
    b"    Return information about the current client connection.",
    b"LIST [options ...]",
    b"    Return information about client connections. Options:",
    b"    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    b"      Return clients of specified type.",
    b"    * ID <client-id> [<client-id> ...]",
    b"      Return clients with the given IDs.",
    b"SETNAME <name>",
    b"    Assign the name <name> to the current connection.",
    b"SETINFO <option> <value>",
    b"    Set client meta attr. Options are:",
    b"    * LIB-NAME: the client lib name.",
    b"    * LIB-VER: the client lib version.",
    b"NO-EVICT (ON|OFF)",
    b"    Protect current client connection from eviction.",
    b"NO-TOUCH (ON|OFF)",
    b"    Will not touch LRU/LFU stats when this mode is on.",
    b"MAINT_NOTIFICATIONS (ON|OFF) [moving-endpoint-type <type>]",
    b"    Accepted; redis-ambassador sends no maintenance notifications.",
    b"HELP",
    b"    Prints this help.",
]


def _help(client: ClientState, args: list[bytes], facts: ServerFacts) -> bytes:
    """What the ambassador answers, in the words of Redis 7.2's CLIENT HELP."""
    return array([status(line) for line in _HELP])


# Subcommand -> (arity as in Redis's command table, handler).
_SUBCOMMANDS: dict[bytes, tuple[int, Handler]] = {
    b"setname": (3, _setname),
    b"getname": (2, _getname),
    b"id": (2, _id),
    b"setinfo": (4, _setinfo),
    b"info": (2, _info),
    b"list": (-2, _list),
    b"no-evict": (3, _no_evict),
    b"no-touch": (3, _no_touch),
    b"maint_notifications": (-3, _maint_notifications),
    b"help": (2, _help),
}

_TRACKING = (
    "client-side caching needs invalidation messages about this client's keys alone, which "
    "cannot be made correct over node connections shared by many clients"
)
_REFUSED: dict[bytes, str] = {
    **dict.fromkeys([b"tracking", b"trackinginfo", b"caching", b"getredir"], _TRACKING),
    b"kill": "closing other clients' connections is not supported by the ambassador yet",
    b"pause": "pausing clients is not supported by the ambassador yet",
    b"unpause": "pausing clients is not supported by the ambassador yet",
    b"unblock": "unblocking another client's command is not supported by the ambassador yet",
}
client_command = Container("client", _SUBCOMMANDS, _REFUSED)
