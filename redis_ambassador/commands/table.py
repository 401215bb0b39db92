"""The command table, learned from the cluster's own ``COMMAND`` reply.

Key positions come from Redis 7 key specs (falling back to the legacy first/last/step triple), so
commands added in newer Redis versions and module commands route without code changes here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def _pairs(flat: list) -> dict[str, object]:
    """A RESP2 flat key/value list as a dict with str keys."""
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One Redis 7 key spec: where the search begins and how keys are found from there."""

    begin: str  # "index", "keyword" or "unknown"
    index: int = 0  # begin=index
    keyword: bytes = b""  # begin=keyword
    startfrom: int = 0  # begin=keyword
    find: str = "range"  # "range", "keynum" or "unknown"
    lastkey: int = 0  # find=range
    keystep: int = 1
    limit: int = 0  # find=range
    keynumidx: int = 0  # find=keynum
    firstkey: int = 0  # find=keynum

    @classmethod
    def from_reply(cls, flat: list) -> KeySpec:
        spec = _pairs(flat)
        begin = _pairs(spec.get("begin_search", []))
        find = _pairs(spec.get("find_keys", []))
        begin_spec = _pairs(begin.get("spec", []) or [])
        find_spec = _pairs(find.get("spec", []) or [])
        kind = _text(begin.get("type", b"unknown"))
        find_kind = _text(find.get("type", b"unknown"))
        return cls(
            begin=kind,
            index=int(begin_spec.get("index", 0)),
            keyword=bytes(begin_spec.get("keyword", b"")).lower(),
            startfrom=int(begin_spec.get("startfrom", 0)),
            find=find_kind,
            lastkey=int(find_spec.get("lastkey", 0)),
            keystep=int(find_spec.get("keystep", 1)) or 1,
            limit=int(find_spec.get("limit", 0)),
            keynumidx=int(find_spec.get("keynumidx", 0)),
            firstkey=int(find_spec.get("firstkey", 0)),
        )

    def key_indexes(self, args: list[bytes]) -> range | None:
        """Argument indexes of the keys this spec finds; None when it cannot say (bad input)."""
        argc = len(args)
        if self.begin == "index":
            first = self.index
        elif self.begin == "keyword":
            first = 0
            start = self.startfrom if self.startfrom > 0 else argc + self.startfrom
            stop, step = (argc - 1, 1) if self.startfrom > 0 else (0, -1)
            for i in range(start, stop, step):
                if i >= argc or i < 1:
                    break
                if bytes(args[i]).lower() == self.keyword:
                    first = i + 1
                    break
            if not first:
                return range(0)
        else:
            return None
        if self.find == "range":
            if self.lastkey >= 0:
                last = first + self.lastkey
            elif not self.limit:
                last = argc + self.lastkey
            else:
                last = first + ((argc - first) // self.limit + self.lastkey)
        elif self.find == "keynum":
            if self.keynumidx >= argc - first:
                return None
            try:
                numkeys = int(args[first + self.keynumidx])
            except ValueError:
                return None
            if numkeys < 0:
                return None
            first += self.firstkey
            last = first + numkeys - 1
            if numkeys == 0:
                return range(0)
        else:
            return None
        if last >= argc or last < first or first >= argc:
            return None
        return range(first, last + 1, self.keystep)


@dataclass(slots=True)
class CommandSpec:
    """What the router needs to know about one command (or one subcommand)."""

    name: str  # lower case; "object|encoding" for subcommands
    arity: int
    flags: frozenset[str]
    key_specs: tuple[KeySpec, ...] = ()
    legacy_keys: tuple[int, int, int] = (0, 0, 0)  # first, last, step
    subcommands: dict[bytes, CommandSpec] = field(default_factory=dict)
    categories: frozenset[str] = frozenset()  # ACL categories, "@read", "@write", ...
    # The one key's index when the command always has exactly one key at a fixed place
    # (GET, SET, HSET, ...): the hot path reads ``args[single_key]`` and skips the specs.
    single_key: int = 0

    @classmethod
    def from_reply(cls, entry: list) -> CommandSpec:
        name = _text(entry[0]).lower()
        flags = frozenset(_text(f).lower() for f in entry[2])
        specs = tuple(KeySpec.from_reply(s) for s in entry[8]) if len(entry) > 8 else ()
        subs = {}
        if len(entry) > 9:
            for sub in entry[9]:
                spec = cls.from_reply(sub)
                subs[spec.name.split("|", 1)[1].encode()] = spec
        spec = cls(
            name=name,
            arity=int(entry[1]),
            flags=flags,
            key_specs=specs,
            legacy_keys=(int(entry[3]), int(entry[4]), int(entry[5])),
            subcommands=subs,
            categories=frozenset(_text(c).lower() for c in entry[6])
            if len(entry) > 6
            else frozenset(),
        )
        spec.single_key = spec._fixed_single_key()
        return spec

    def _fixed_single_key(self) -> int:
        if "movablekeys" in self.flags:
            return 0
        if self.key_specs:
            if len(self.key_specs) != 1:
                return 0
            (ks,) = self.key_specs
            if ks.begin == "index" and ks.find == "range" and ks.lastkey == 0 and ks.index > 0:
                return ks.index
            return 0
        first, last, _ = self.legacy_keys
        return first if first > 0 and last == first else 0

    @property
    def movable(self) -> bool:
        return "movablekeys" in self.flags

    def keys(self, args: list[bytes]) -> list[bytes] | None:
        """The keys in ``args``; None when they cannot be found (arity or syntax error)."""
        if self.single_key:
            return [args[self.single_key]] if len(args) > self.single_key else None
        if self.key_specs:
            found_by_code = _KEYS_BY_CODE.get(self.name)
            if found_by_code is not None:
                return found_by_code(args)
            keys: list[bytes] = []
            for ks in self.key_specs:
                if ks.begin == "unknown":
                    continue  # found by Redis's own code: see _KEYS_FOUND_BY_CODE
                found = ks.key_indexes(args)
                if found is None:
                    return None
                keys.extend(args[i] for i in found)
            extra = _KEYS_FOUND_BY_CODE.get(self.name)
            if extra is not None:
                keys.extend(extra(args))
            return keys
        first, last, step = self.legacy_keys
        if first <= 0:
            return []
        if last < 0:
            last = len(args) + last
        if last >= len(args):
            return None
        return [args[i] for i in range(first, last + 1, step or 1)]


def arity_ok(arity: int, count: int) -> bool:
    """Redis's arity rule: exactly ``arity`` arguments, or at least ``-arity`` when negative."""
    return count == arity if arity > 0 else count >= -arity


def _sort_store_key(args: list[bytes]) -> list[bytes]:
    """SORT's destination, found as Redis's ``sortGetKeys`` does (the last STORE wins)."""
    skip = {b"limit": 2, b"get": 1, b"by": 1}
    found: list[bytes] = []
    i = 2
    while i < len(args):
        option = bytes(args[i]).lower()
        if option in skip:
            i += skip[option]
        elif option == b"store" and i + 1 < len(args):
            found = [args[i + 1]]
        i += 1
    return found


# Keys that a command's specs mark 'unknown' and Redis locates with a function of its own; for
# others, the keys the specs do give route the command and the node checks the rest.
_KEYS_FOUND_BY_CODE = {"sort": _sort_store_key}


class CommandTable:
    """Command specs by name; lookups accept the name in any letter case."""

    def __init__(self, specs: Iterable[CommandSpec]) -> None:
        self._by_name: dict[bytes, CommandSpec] = {}
        for spec in specs:
            raw = spec.name.encode()
            self._by_name[raw] = spec
            self._by_name[raw.upper()] = spec

    @classmethod
    def from_reply(cls, reply: list) -> CommandTable:
        """Build from the raw (undecoded) reply of ``COMMAND``."""
        return cls(CommandSpec.from_reply(entry) for entry in reply)

    def specs(self) -> list[CommandSpec]:
        """Every top-level command, once."""
        return list({id(s): s for s in self._by_name.values()}.values())

    def __len__(self) -> int:
        return len(self.specs())

    def get(self, name: bytes) -> CommandSpec | None:
        """The spec for a command name as the client typed it, or None if unknown."""
        spec = self._by_name.get(name)
        if spec is None:
            spec = self._by_name.get(name.lower())
        return spec

    def resolve(self, args: list[bytes]) -> CommandSpec | None:
        """The spec for a command, descending into its subcommand (``OBJECT ENCODING``)."""
        spec = self.get(args[0])
        if spec is not None and spec.subcommands and len(args) > 1:
            return spec.subcommands.get(args[1].lower(), spec)
        return spec


def _migrate_keys(args: list[bytes]) -> list[bytes] | None:
    """MIGRATE's keys as Redis's ``migrateGetKeys`` finds them: after a KEYS option (looked for
    from the 7th argument on, AUTH and AUTH2 values skipped), else the 4th argument. The specs
    would also give the 4th, which is "" when KEYS is used, and hash to a slot of its own."""
    if len(args) < 6:
        return None
    skip = {b"auth": 1, b"auth2": 2}
    i = 6
    while i < len(args):
        option = bytes(args[i]).lower()
        if option == b"keys":
            return args[i + 1 :] if not args[3] else []
        i += skip.get(option, 0) + 1
    return [args[3]]


# Commands whose keys only Redis's own code finds right; their specs are not used.
_KEYS_BY_CODE = {"migrate": _migrate_keys}
