"""The command policy: which commands clients may run through the ambassador at all.

One switchboard for what can harm the whole cluster (FLUSHALL, CONFIG SET, DEBUG, MIGRATE, ...):
``[commands] deny`` names what is refused, ``allow`` punches holes in it. ``serve`` starts from
``config.DEFAULT_DENIED``, ``dev`` from nothing denied. A denied command gets ``-NOPERM``, the
error Redis gives a user whose ACL forbids a command, naming the keys that change the decision.

Names are Redis's ACL names: ``flushall`` covers every form of the command, ``config|set`` one
subcommand. DEBUG has no subcommands in Redis's command table, yet ``debug|sleep`` works here too:
its first argument is taken as the subcommand, so one DEBUG subcommand can be allowed alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis_ambassador import errors
from redis_ambassador.commands.local import LOCAL
from redis_ambassador.commands.table import CommandTable
from redis_ambassador.config import CommandsConfig

# Containers whose subcommands Redis's command table does not list.
_UNLISTED_SUBCOMMANDS = frozenset(["debug"])


class CommandPolicy:
    """Decides, by command name, whether a command may run; sans-IO."""

    def __init__(self, deny: Iterable[str] = (), allow: Iterable[str] = ()) -> None:
        self._deny = frozenset(name.lower() for name in deny)
        self._allow = frozenset(name.lower() for name in allow)
        self.active = bool(self._deny - self._allow)

    @classmethod
    def from_config(cls, config: CommandsConfig) -> CommandPolicy:
        return cls(config.deny, config.allow)

    def check(self, name: str, args: list[bytes]) -> bytes | None:
        """The NOPERM error for a denied command, None if it may run. ``name`` is the command
        table's (``config|set``), ``args`` the command as sent."""
        if not self.active:
            return None
        base = name.split("|", 1)[0]
        if base in _UNLISTED_SUBCOMMANDS and len(args) > 1:
            name = f"{base}|{args[1].decode('utf-8', 'replace').lower()}"
        if name in self._allow or base in self._allow:
            return None
        if name in self._deny or base in self._deny:
            return errors.command_denied(name)
        return None

    def denies_always(self, name: str) -> bool:
        """Whether every use of a command without subcommands is denied (such commands are
        kept off the router's fast path, which does not look at the policy)."""
        return name in self._deny and name not in self._allow

    def problems(self, table: CommandTable) -> list[str]:
        """Names in the lists that cannot have the effect their writer meant, for the log:
        unknown to the cluster, or answered by the ambassador itself (never governed)."""
        found = []
        for key, names in (("commands.deny", self._deny), ("commands.allow", self._allow)):
            for name in sorted(names):
                base, _, sub = name.partition("|")
                spec = table.get(base.encode())
                if base in LOCAL or base == "quit":
                    found.append(f"{key} names '{name}', which the ambassador answers itself")
                elif spec is None or (
                    sub and spec.subcommands and sub.encode() not in spec.subcommands
                ):
                    found.append(f"{key} names '{name}', which the cluster does not know")
        return found
