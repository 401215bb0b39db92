"""Fault rules: which commands misbehave, and how (sans-IO: the clock and the seed are given).

A rule is a match (command names or ACL categories, key glob, slot range, node, client name,
probability, count, time window) and an action (delay, error, forged redirection, swallowed
reply, dropped or reset connection, paced or split replies, or a partitioned node). ``Faults``
holds the rules of one ambassador; ``decide`` is asked at the node boundary for each command a
rule could concern, and answers with the rule that fires, if any.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis_ambassador.slots import SLOTS

# Actions, in the order a rule's fields are checked; a rule has at most one (a delay may come
# before any of them, or stand alone).
ACTIONS = ("error", "redirect", "timeout", "drop", "reset", "bandwidth", "split", "partition")
_MATCH_FIELDS = ("command", "key", "slots", "node", "client", "probability", "count", "after",
                 "duration")  # fmt: skip
_DELAY_FIELDS = ("delay_ms", "jitter_ms", "distribution")
FIELDS = frozenset([*_MATCH_FIELDS, *_DELAY_FIELDS, *ACTIONS, "to"])
DISTRIBUTIONS = ("uniform", "normal", "exponential")


class RuleError(ValueError):
    """An invalid rule; the message begins with the field at fault ("probability: ...")."""


@dataclass(frozen=True, slots=True)
class Command:
    """What rules match a command on, as it is about to be sent."""

    name: str  # lower case; "client|list" for a subcommand
    categories: frozenset[str] = frozenset()  # its ACL categories, "@read", ...
    keys: Sequence[bytes] = ()
    slot: int | None = None
    node: str = ""  # "host:port" it goes to; "": the ambassador answers it itself
    replica: bool = False  # that node is a replica
    client: bytes = b""  # the client's CLIENT SETNAME name


@dataclass(slots=True)
class Rule:
    """One fault rule and its counters."""

    id: str
    spec: dict[str, Any]  # normalized, as shown back
    created: float  # clock time it was added
    commands: frozenset[str] | None = None  # lower-case names; None: any command
    categories: frozenset[str] = frozenset()  # "@read", ...
    key: re.Pattern[bytes] | None = None
    slots: tuple[int, int] | None = None
    node: str | None = None  # "host:port", "master" or "replica"
    client: re.Pattern[bytes] | None = None
    probability: float = 1.0
    count: int | None = None
    after: float = 0.0
    duration: float | None = None
    delay: tuple[float, float, str] | None = None  # seconds, jitter seconds, distribution
    action: str = "delay"  # one of ACTIONS, or "delay" for a delay alone
    hits: int = 0
    matched: int = 0
    rng: random.Random = field(default_factory=random.Random)

    @property
    def spent(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def active(self, now: float) -> bool:
        """Inside its time window and not spent."""
        age = now - self.created
        if age < self.after or self.spent:
            return False
        return self.duration is None or age < self.after + self.duration

    def delay_seconds(self) -> float:
        """This injection's delay, drawn from the rule's distribution (0 without a delay)."""
        if self.delay is None:
            return 0.0
        base, jitter, distribution = self.delay
        if not jitter:
            return base
        if distribution == "normal":
            drawn = self.rng.gauss(base, jitter)
        elif distribution == "exponential":
            drawn = base + self.rng.expovariate(1 / jitter)
        else:
            drawn = base + self.rng.uniform(-jitter, jitter)
        return max(0.0, drawn)

    def view(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.spec,
            "hits": self.hits,
            "matched": self.matched,
            "spent": self.spent,
            "active": self.active(now),
        }


class Faults:
    """The fault rules of one ambassador, their seeded random draws and their counters."""

    def __init__(
        self,
        seed: int,
        clock: Callable[[], float],
        categories: Callable[[str], frozenset[str]] = lambda name: frozenset(),
    ) -> None:
        self.seed = seed
        self._clock = clock
        # A command name's ACL categories (from COMMAND), for rules that name categories.
        self._categories_of = categories
        self.rules: list[Rule] = []
        self._ids = itertools.count(1)
        # Faults injected by rule id and action (kept after a rule is removed: a counter).
        self.injected: dict[tuple[str, str], int] = {}
        self.on_change: Callable[[], None] = lambda: None  # rules added, removed or spent

    @classmethod
    def seeded(
        cls,
        seed: int,
        specs: Iterable[Mapping[str, Any]],
        clock: Callable[[], float],
        categories: Callable[[str], frozenset[str]],
    ) -> Faults:
        """These rules (``[chaos]``'s) in place, seeded by ``seed`` or, for 0, a random one."""
        faults = cls(seed or random.SystemRandom().randrange(1, 1 << 31), clock, categories)
        for spec in specs:
            faults.add(spec)
        return faults

    # -- the control surface (HTTP API, CLI, in-band, config) --------------------------------

    def add(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and add a rule; return its view. Raises RuleError naming the bad field."""
        rule_id = str(next(self._ids))
        rule = parse_rule(spec, rule_id, self._clock())
        # Each rule draws from a generator of its own, seeded by the seed and its id: a run
        # replays the same faults whatever other rules come and go.
        rule.rng = random.Random(f"{self.seed}:{rule_id}")
        self.rules.append(rule)
        self.on_change()
        return rule.view(self._clock())

    def remove(self, rule_id: str) -> bool:
        kept = [rule for rule in self.rules if rule.id != rule_id]
        removed = len(kept) != len(self.rules)
        self.rules = kept
        if removed:
            self.on_change()
        return removed

    def clear(self) -> int:
        removed = len(self.rules)
        self.rules = []
        if removed:
            self.on_change()
        return removed

    def view(self) -> dict[str, Any]:
        now = self._clock()
        return {"seed": self.seed, "rules": [rule.view(now) for rule in self.rules]}

    # -- what the router asks ----------------------------------------------------------------

    def command_rules(self) -> list[Rule]:
        """The rules that act on commands (not partitions), spent ones left out."""
        return [r for r in self.rules if r.action != "partition" and not r.spent]

    def names_at_stake(self, known: Iterable[str]) -> frozenset[str] | None:
        """Lower-case command names some rule may act on (None: every command), so the rest
        keep the router's fast path."""
        names: set[str] = set()
        for rule in self.command_rules():
            if rule.commands is None and not rule.categories:
                return None
            if rule.commands is not None:
                names.update(name.split("|", 1)[0] for name in rule.commands)
            if rule.categories:
                names.update(n for n in known if rule.categories & self._categories_of(n))
        return frozenset(names)

    def partitioned(self) -> frozenset[str]:
        """Nodes ("host:port") cut off from the ambassador by an active rule now."""
        now = self._clock()
        return frozenset(
            rule.node for rule in self.rules  # type: ignore[misc]
            if rule.action == "partition" and rule.active(now)
        )  # fmt: skip

    def decide(self, command: Command) -> Rule | None:
        """The rule that fires for ``command``, if any: the first active rule that matches it
        and wins its probability draw. Counts the hit."""
        now = self._clock()
        for rule in self.rules:
            if rule.action == "partition" or not rule.active(now):
                continue
            if not _matches(rule, command):
                continue
            rule.matched += 1
            if rule.probability < 1.0 and rule.rng.random() >= rule.probability:
                continue
            rule.hits += 1
            counted = (rule.id, rule.action)
            self.injected[counted] = self.injected.get(counted, 0) + 1
            if rule.spent:
                self.on_change()
            return rule
        return None


def _matches(rule: Rule, command: Command) -> bool:
    name = command.name
    if not command.node and (rule.node is not None or not _names_command(rule, name)):
        return False
    restricted = rule.commands is not None or rule.categories
    if restricted and not _names_command(rule, name) and not (rule.categories & command.categories):
        return False
    if rule.key is not None and not any(rule.key.fullmatch(key) for key in command.keys):
        return False
    slot = command.slot
    if rule.slots is not None and (slot is None or not rule.slots[0] <= slot <= rule.slots[1]):
        return False
    if rule.node is not None:
        if rule.node == "master":
            if command.replica:
                return False
        elif rule.node == "replica":
            if not command.replica:
                return False
        elif rule.node != command.node:
            return False
    return rule.client is None or rule.client.fullmatch(command.client) is not None


def _names_command(rule: Rule, name: str) -> bool:
    commands = rule.commands
    return commands is not None and (name in commands or name.split("|", 1)[0] in commands)


# -- parsing and validation ----------------------------------------------------------------------


def parse_rule(spec: Mapping[str, Any], rule_id: str, now: float) -> Rule:
    """A Rule from its JSON-like spec; RuleError names the first field at fault."""
    if not isinstance(spec, Mapping):
        raise RuleError("rule: must be an object of fields")
    unknown = sorted(set(spec) - FIELDS)
    if unknown:
        raise RuleError(f"{unknown[0]}: unknown field (known: {', '.join(sorted(FIELDS))})")
    given = {k: v for k, v in spec.items() if v is not None}
    rule = Rule(id=rule_id, spec={}, created=now)
    shown = rule.spec
    if "command" in given:
        names = _names(given["command"])
        rule.commands = frozenset(n for n in names if not n.startswith("@")) or None
        rule.categories = frozenset(n for n in names if n.startswith("@"))
        shown["command"] = names
    if "key" in given:
        rule.key = glob_pattern(_text("key", given["key"]).encode())
        shown["key"] = given["key"]
    if "slots" in given:
        rule.slots = slot_range(given["slots"])
        shown["slots"] = f"{rule.slots[0]}-{rule.slots[1]}"
    if "node" in given:
        rule.node = _node(given["node"])
        shown["node"] = rule.node
    if "client" in given:
        rule.client = glob_pattern(_text("client", given["client"]).encode())
        shown["client"] = given["client"]
    if "probability" in given:
        rule.probability = _number("probability", given["probability"], 0.0, 1.0)
        shown["probability"] = rule.probability
    if "count" in given:
        rule.count = int(_number("count", given["count"], 1, math.inf, integer=True))
        shown["count"] = rule.count
    if "after" in given:
        rule.after = _number("after", given["after"], 0.0, math.inf)
        shown["after"] = rule.after
    if "duration" in given:
        rule.duration = _number("duration", given["duration"], 0.0, math.inf)
        shown["duration"] = rule.duration
    _parse_delay(given, rule)
    _parse_action(given, rule)
    return rule


def _parse_delay(given: Mapping[str, Any], rule: Rule) -> None:
    if "delay_ms" not in given:
        for name in ("jitter_ms", "distribution"):
            if name in given:
                raise RuleError(f"{name}: only with delay_ms")
        return
    delay = _number("delay_ms", given["delay_ms"], 0.0, 3_600_000.0)
    jitter = _number("jitter_ms", given.get("jitter_ms", 0), 0.0, 3_600_000.0)
    distribution = given.get("distribution", "uniform")
    if distribution not in DISTRIBUTIONS:
        raise RuleError(f"distribution: one of {', '.join(DISTRIBUTIONS)}")
    rule.delay = (delay / 1000, jitter / 1000, distribution)
    rule.spec["delay_ms"] = delay
    if jitter:
        rule.spec["jitter_ms"] = jitter
        rule.spec["distribution"] = distribution


def _parse_action(given: Mapping[str, Any], rule: Rule) -> None:
    actions = [name for name in ACTIONS if name in given and given[name] is not False]
    if len(actions) > 1:
        raise RuleError(f"{actions[1]}: one action per rule (also given: {actions[0]})")
    if "to" in given and actions != ["redirect"]:
        raise RuleError("to: only with redirect")
    if not actions:
        if rule.delay is None:
            raise RuleError(f"action: give delay_ms or one of {', '.join(ACTIONS)}")
        return
    action = rule.action = actions[0]
    value = given[action]
    shown = rule.spec
    if action == "error":
        text = _text("error", value).strip()
        if not text or "\r" in text or "\n" in text:
            raise RuleError("error: a one-line error text, e.g. 'LOADING Redis is loading'")
        shown["error"] = text.removeprefix("-")
    elif action == "redirect":
        if value not in ("moved", "ask"):
            raise RuleError("redirect: 'moved' or 'ask'")
        to = given.get("to", "right")
        if to not in ("right", "wrong"):
            to = _node(to, field="to")
            if to in ("master", "replica"):
                raise RuleError("to: 'right', 'wrong' or HOST:PORT")
        shown["redirect"] = value
        shown["to"] = to
    elif action in ("timeout", "partition"):
        if value is not True:
            raise RuleError(f"{action}: true or absent")
        if action == "partition":
            if rule.node in (None, "master", "replica"):
                raise RuleError("node: partition needs one node as HOST:PORT")
            extra = [n for n in (*_MATCH_FIELDS[:3], "client") if n in given]
            extra += [n for n in ("probability", "count") if n in given]
            if extra or rule.delay is not None:
                raise RuleError(f"{(extra or ['delay_ms'])[0]}: a partition cuts off a whole node")
        shown[action] = True
    elif action in ("drop", "reset"):
        if value is True:
            value = "before"
        if value not in ("before", "after"):
            raise RuleError(f"{action}: 'before' or 'after' (the node executed the command)")
        shown[action] = value
    else:  # bandwidth (bytes per second) or split (bytes per packet)
        shown[action] = int(_number(action, value, 1, 1 << 30, integer=True))


def _names(value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise RuleError("command: a name or category, or a list of them")
    names = []
    for item in items:
        text = _text("command", item).strip().lower()
        if not text or " " in text:
            raise RuleError(f"command: {item!r} is not a command name or @category")
        names.append(text)
    return names


def slot_range(value: object) -> tuple[int, int]:
    """``"0-5460"``, ``"42"``, ``42`` or ``[0, 5460]`` as (first, last), inclusive; RuleError
    naming the field ``slots`` otherwise (node actions' migrations take the same)."""
    if isinstance(value, int) and not isinstance(value, bool):
        bounds = [value, value]
    elif isinstance(value, list | tuple) and len(value) == 2:
        bounds = list(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(-\d+)?", value.strip()):
        first, _, last = value.strip().partition("-")
        bounds = [int(first), int(last or first)]
    else:
        raise RuleError("slots: a slot or an inclusive range, e.g. '0-5460'")
    if not all(isinstance(b, int) and 0 <= b < SLOTS for b in bounds) or bounds[0] > bounds[1]:
        raise RuleError(f"slots: a range within 0-{SLOTS - 1}, first <= last")
    return bounds[0], bounds[1]


def _node(value: object, field: str = "node") -> str:
    text = _text(field, value).strip()
    if text in ("master", "replica"):
        return text
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RuleError(f"{field}: HOST:PORT, 'master' or 'replica'")
    return f"{host.strip('[]')}:{int(port)}"


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise RuleError(f"{name}: must be a string")
    return value


def _number(name: str, value: object, low: float, high: float, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RuleError(f"{name}: must be a number")
    try:
        number = float(value)
    except ValueError:
        raise RuleError(f"{name}: must be a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        shown_high = "" if high == math.inf else f" and {high:g}"
        raise RuleError(f"{name}: must be between {low:g}{shown_high}" if shown_high
                        else f"{name}: must be at least {low:g}")  # fmt: skip
    if integer and number != int(number):
        raise RuleError(f"{name}: must be a whole number")
    return number


def glob_pattern(pattern: bytes) -> re.Pattern[bytes]:
    """A Redis glob (KEYS, SCAN MATCH: ``*``, ``?``, ``[a-z]``, ``[^x]``, ``\\`` escapes) as
    a compiled regular expression, matched against a whole key."""
    out = bytearray()
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        if c == b"*":
            out += b".*"
        elif c == b"?":
            out += b"."
        elif c == b"\\" and i + 1 < n:
            i += 1
            out += re.escape(pattern[i : i + 1])
        elif c == b"[":
            end = pattern.find(b"]", i + 2 if pattern[i + 1 : i + 2] in (b"^", b"]") else i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith(b"^")
                if negate:
                    body = body[1:]
                klass = bytearray(b"[^" if negate else b"[")
                k = 0
                while k < len(body):
                    ch = body[k : k + 1]
                    if ch == b"\\" and k + 1 < len(body):
                        k += 1
                        ch = body[k : k + 1]
                    if body[k + 1 : k + 2] == b"-" and k + 2 < len(body):
                        low, high = sorted((ch, body[k + 2 : k + 3]))
                        klass += re.escape(low) + b"-" + re.escape(high)
                        k += 3
                        continue
                    klass += re.escape(ch)
                    k += 1
                out += klass + b"]" if len(klass) > 2 - (not negate) else b"(?!)"
                i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(bytes(out), re.DOTALL)
