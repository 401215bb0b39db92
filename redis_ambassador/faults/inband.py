"""In-band chaos control: the ``CHAOS`` command on the Redis port, for environments where only
that port is reachable (``chaos.in_band``; off by default under ``serve``).

    CHAOS ADD <rule as JSON>   -> the new rule's id (bulk string)
    CHAOS LIST                 -> every rule and its counters, as JSON (bulk string)
    CHAOS REMOVE <id>          -> :1 if removed, :0 if there was no such rule
    CHAOS CLEAR                -> how many rules were removed
    CHAOS AUTH <token>         -> +OK; with ``server.admin_token`` set, every subcommand but
                                  HELP needs it first on the connection (RESET forgets it)
    CHAOS HELP
"""

from __future__ import annotations

import hmac
import json
from typing import Protocol

from redis_ambassador import errors
from redis_ambassador.faults.rules import Faults, RuleError
from redis_ambassador.protocol.replies import OK, array, bulk, integer, status
from redis_ambassador.protocol.requests import as_bytes


class Asker(Protocol):
    """The client sending CHAOS: whether it gave the admin token on its connection."""

    chaos_admin: bool


_HELP = [
    "CHAOS <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ADD <rule-json>",
    '    Add a fault rule, e.g. \'{"command": "GET", "error": "LOADING busy"}\'; returns its id.',
    "LIST",
    "    The rules, their hits and the seed, as JSON.",
    "REMOVE <id>",
    "    Remove one rule.",
    "CLEAR",
    "    Remove every rule.",
    "AUTH <token>",
    "    Give the admin token (server.admin_token), when one is set, before the rest.",
    "HELP",
    "    Print this help.",
]
_ARITY = {b"add": 3, b"list": 2, b"remove": 3, b"clear": 2, b"help": 2, b"auth": 3}


def chaos_command(faults: Faults, client: Asker, args: list[bytes], token: str) -> bytes:
    """The reply to one CHAOS command (Redis's wording for arity and unknown subcommands);
    ``token``: the admin token the client must give first ("": none)."""
    if len(args) < 2:
        return errors.wrong_arity("chaos")
    sub = args[1].lower()
    arity = _ARITY.get(sub)
    if arity is None:
        return errors.unknown_subcommand(args[1], "chaos")
    if len(args) != arity:
        return errors.wrong_arity(f"chaos|{sub.decode()}")
    args = as_bytes(args)  # a rule, an id or the token: read as text
    if sub == b"auth":
        if not token:
            return errors.CHAOS_NO_TOKEN
        if not hmac.compare_digest(args[2], token.encode()):
            return errors.CHAOS_WRONG_TOKEN
        client.chaos_admin = True
        return OK
    if token and not client.chaos_admin and sub != b"help":
        return errors.CHAOS_NOAUTH
    if sub == b"add":
        try:
            spec = json.loads(args[2])
        except (ValueError, UnicodeDecodeError) as exc:
            return errors.invalid_rule(f"rule: not JSON ({exc})")
        try:
            return bulk(faults.add(spec)["id"].encode())
        except RuleError as exc:
            return errors.invalid_rule(str(exc))
    if sub == b"list":
        return bulk(json.dumps(faults.view()).encode())
    if sub == b"remove":
        return integer(int(faults.remove(args[2].decode(errors="replace"))))
    if sub == b"clear":
        return integer(faults.clear())
    return array([status(line.encode()) for line in _HELP])
