"""``redis-ambassador chaos ...``: the chaos control API from the command line.

Each rule field is a flag of ``chaos add`` (``delay_ms`` is ``--delay-ms``); the ambassador
validates the rule, and an invalid one exits 2 with its message, which names the field.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from redis_ambassador.faults.client import ChaosApiError, ChaosClient
from redis_ambassador.faults.control import NODE_ACTIONS
from redis_ambassador.faults.rules import DISTRIBUTIONS

# Every rule field as `chaos add` takes it: (field, argparse options). A unit test checks this
# covers rules.FIELDS, so a new field cannot be forgotten here.
RULE_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("command", {"action": "append", "metavar": "NAME",
                 "help": "command name or @category (repeatable, or comma-separated)"}),
    ("key", {"metavar": "GLOB", "help": "a key of the command matches this glob"}),
    ("slots", {"metavar": "FIRST-LAST", "help": "the command's slot is in this range"}),
    ("node", {"metavar": "HOST:PORT", "help": "the node it goes to, or 'master' / 'replica'"}),
    ("client", {"metavar": "GLOB", "help": "the client's CLIENT SETNAME name matches"}),
    ("probability", {"type": float, "metavar": "P", "help": "0..1 (default 1)"}),
    ("count", {"type": int, "metavar": "N", "help": "at most N faults, then the rule is spent"}),
    ("after", {"type": float, "metavar": "SECONDS", "help": "start acting this much later"}),
    ("duration", {"type": float, "metavar": "SECONDS", "help": "act for this long"}),
    ("delay_ms", {"type": float, "metavar": "MS", "help": "delay (alone, or before the action)"}),
    ("jitter_ms", {"type": float, "metavar": "MS", "help": "spread of the delay"}),
    ("distribution", {"choices": DISTRIBUTIONS, "help": "of the jitter (default uniform)"}),
    ("error", {"metavar": "TEXT", "help": "reply this error instead (not executed)"}),
    ("redirect", {"choices": ("moved", "ask"), "help": "reply a forged redirection"}),
    ("to", {"metavar": "right|wrong|HOST:PORT", "help": "where --redirect points"}),
    ("timeout", {"action": "store_true", "default": None,
                 "help": "execute, but never reply (the client times out)"}),
    ("drop", {"choices": ("before", "after"), "help": "close the client connection before or "
              "after the node executed the command"}),
    ("reset", {"choices": ("before", "after"), "help": "as --drop, with a TCP RST"}),
    ("bandwidth", {"type": int, "metavar": "BYTES_PER_S", "help": "pace replies to the client"}),
    ("split", {"type": int, "metavar": "BYTES", "help": "write each reply in pieces this big"}),
    ("partition", {"action": "store_true", "default": None,
                   "help": "cut the ambassador off from --node HOST:PORT"}),
)  # fmt: skip

EXIT_INVALID = 2  # an invalid rule or request (HTTP 400), as argparse exits for a bad flag
EXIT_FAILED = 1  # unreachable, unknown rule or node, not possible now


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``chaos`` subcommand and its own subcommands."""
    chaos = sub.add_parser("chaos", help="drive the fault injection of a running ambassador")
    actions = chaos.add_subparsers(dest="chaos_command", required=True)

    add = actions.add_parser("add", help="add a fault rule; prints its id")
    for name, options in RULE_FLAGS:
        # dest "rule_command": a bare "command" would overwrite the subcommand's name.
        add.add_argument("--" + name.replace("_", "-"), dest=f"rule_{name}", **options)
    listing = actions.add_parser("list", help="the rules, with their hits")
    listing.add_argument("--json", action="store_true", help="the API's JSON as it is")
    remove = actions.add_parser("remove", help="remove a rule")
    remove.add_argument("rule_id", metavar="ID")
    clear = actions.add_parser("clear", help="remove every rule")
    node = actions.add_parser("node", help="act on a node of a cluster the ambassador started")
    node.add_argument("action", choices=NODE_ACTIONS)
    node.add_argument("address", metavar="HOST:PORT")
    nodes = actions.add_parser("nodes", help="the nodes of a cluster the ambassador started")
    migrate = actions.add_parser("migrate", help="move slots and their keys to a master, live")
    migrate.add_argument("--slots", required=True, metavar="FIRST-LAST")
    migrate.add_argument("--to", required=True, metavar="HOST:PORT")
    for parser in (add, listing, remove, clear, node, nodes, migrate):
        parser.add_argument(
            "--admin", default="127.0.0.1:9090", metavar="HOST:PORT",
            help="the ambassador's admin listener (default 127.0.0.1:9090)",
        )  # fmt: skip
        parser.add_argument(
            "--token", help="server.admin_token, if set (default: $REDIS_AMBASSADOR_ADMIN_TOKEN)"
        )


def run(args: argparse.Namespace) -> int:
    """Carry out ``redis-ambassador chaos ...``; the exit status."""
    client = ChaosClient(args.admin, token=args.token)
    try:
        return _COMMANDS[args.chaos_command](client, args)
    except ChaosApiError as exc:
        print(f"redis-ambassador chaos: {exc}", file=sys.stderr)
        return EXIT_INVALID if exc.status == 400 else EXIT_FAILED


def rule_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The rule the ``chaos add`` flags describe (flags not given are left out)."""
    spec = {name: getattr(args, f"rule_{name}") for name, _ in RULE_FLAGS}
    if spec["command"]:
        spec["command"] = [n.strip() for given in spec["command"] for n in given.split(",")]
    return {name: value for name, value in spec.items() if value is not None}


def _add(client: ChaosClient, args: argparse.Namespace) -> int:
    print(client.add(**rule_spec(args))["id"])
    return 0


def _list(client: ChaosClient, args: argparse.Namespace) -> int:
    state = client.state()
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    print(f"seed {state['seed']}, {len(state['rules'])} rules")
    for rule in state["rules"]:
        print(describe_rule(rule))
    return 0


def describe_rule(rule: dict[str, Any]) -> str:
    """One line: id, counters, state, then the rule's fields as ``chaos add`` flags."""
    state = "spent" if rule["spent"] else "active" if rule["active"] else "waiting"
    counters = {"id", "hits", "matched", "spent", "active"}
    fields = " ".join(_as_flag(name, value) for name, value in rule.items() if name not in counters)
    return f"{rule['id']:>4}  hits {rule['hits']}/{rule['matched']} matched  {state:<7}  {fields}"


def _as_flag(name: str, value: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if value is True:
        return flag
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{flag} {text!r}" if " " in text else f"{flag} {text}"


def _remove(client: ChaosClient, args: argparse.Namespace) -> int:
    client.remove(args.rule_id)
    print(f"removed rule {args.rule_id}")
    return 0


def _clear(client: ChaosClient, args: argparse.Namespace) -> int:
    print(f"removed {client.clear()} rules")
    return 0


def _node(client: ChaosClient, args: argparse.Namespace) -> int:
    print(_describe_node(client.node(args.action, args.address)))
    return 0


def _nodes(client: ChaosClient, args: argparse.Namespace) -> int:
    for node in client.nodes():
        print(_describe_node(node))
    return 0


def _describe_node(node: dict[str, Any]) -> str:
    return f"{node['address']}  {node['role']:<7}  {node['state']:<7}  pid {node['pid']}"


def _migrate(client: ChaosClient, args: argparse.Namespace) -> int:
    done = client.migrate(args.slots, args.to)
    print(f"moved {done['moved']} slots of {done['slots']} to {done['to']}")
    return 0


_COMMANDS = {
    "add": _add,
    "list": _list,
    "remove": _remove,
    "clear": _clear,
    "node": _node,
    "nodes": _nodes,
    "migrate": _migrate,
}
