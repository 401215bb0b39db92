"""In-band chaos control: the ``CHAOS`` command on the Redis port, for environments where only
that port is reachable (``chaos.in_band``; off by default under ``serve``).

    CHAOS ADD <rule as JSON>   -> the new rule's id (bulk string)
    CHAOS LIST                 -> every rule and its counters, as JSON (bulk string)
    CHAOS REMOVE <id>          -> :1 if removed, :0 if there was no such rule
    CHAOS CLEAR                -> how many rules were removed
    CHAOS HELP
"""

from __future__ import annotations

import json

from redis_ambassador import errors
from redis_ambassador.faults.rules import Faults, RuleError
from redis_ambassador.protocol.replies import array, bulk, integer, status

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
    "HELP",
    "    Print this help.",
]
_ARITY = {b"add": 3, b"list": 2, b"remove": 3, b"clear": 2, b"help": 2}


def chaos_command(faults: Faults, args: list[bytes]) -> bytes:
    """The reply to one CHAOS command (Redis's wording for arity and unknown subcommands)."""
    if len(args) < 2:
        return errors.wrong_arity("chaos")
    sub = args[1].lower()
    arity = _ARITY.get(sub)
    if arity is None:
        return errors.unknown_subcommand(args[1], "chaos")
    if len(args) != arity:
        return errors.wrong_arity(f"chaos|{sub.decode()}")
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
