"""INFO through the ambassador: the whole cluster, described as one standalone server would be.

Every master gets the client's INFO as sent (so the nodes pick the sections, ``INFO keyspace``,
``INFO server clients``, ``all``, ``everything`` and ``default`` alike) and the answers are merged
section by section (sans-IO, over the replies' text):

- ``# Server``: the first master's, saying ``redis_mode:standalone``, the lowest ``redis_version``
  among the nodes and the ambassador's own ``tcp_port``;
- ``# Clients``: ``connected_clients`` is the ambassador's own clients, ``cluster_connections``
  0; blocked, tracking and timeout-table counts summed, recent buffer peaks the highest;
- ``# Memory``: byte counts summed (``maxmemory`` too, or 0 when any master has no limit), their
  ``_human`` forms and the ratios and percentages recomputed from the sums; script and function
  counts the highest (every master holds the same ones);
- ``# Persistence``: the first master's, with changes since the last save, saves and rewrites
  summed, and ``loading`` and the ``*_in_progress`` flags set when any master's is;
- ``# Stats`` and ``# CPU``: every numeric field summed, except the latest fork time and the
  current eviction and defrag times (the highest) and ``expired_stale_perc`` (the first master's);
- ``# Replication``: the first master's, without its replicas (``connected_slaves:0``): they are
  behind the ambassador, and a client that found them would go around it;
- ``# Commandstats``, ``# Errorstats``: counts and times summed per command and per error,
  ``usec_per_call`` recomputed; ``# Latencystats``: per command the highest of each percentile;
- ``# Cluster``: ``cluster_enabled:0``, so client libraries do not switch to cluster mode;
- ``# Keyspace``: keys and expires summed per database, ``avg_ttl`` the mean weighted by expires;
- anything else (module sections, ``# Modules``): the first master's;
- ``# Ambassador``: the ambassador itself, in the default selection and by name.

INFO always answers: a master that fails is left out (``ambassador_masters_answered`` says how many
did), and with none the sections the ambassador can fill alone are still there.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis_ambassador import __version__
from redis_ambassador.protocol.replies import bulk_value, verbatim

Reply = bytes | bytearray
Lines = list[bytes]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the merges say about the ambassador and the cluster, as the router sees them when
    the command arrives."""

    protocol: int  # the client's
    port: int  # the ambassador's, as the client dialed it
    version: bytes  # the lowest Redis version among the nodes
    clients: int  # clients connected to the ambassador
    masters: tuple[str, ...]  # host:port, in the order the parts are sent
    replicas: int
    slots_covered: int
    uptime: int
    breakers_open: int = 0  # nodes whose circuit breaker is not closed
    unready: str = ""  # why /readyz says no; empty when ready


# Redis 7's section order (genRedisInfoString); module sections follow, then the ambassador's.
_ORDER = [
    "server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules",
    "commandstats", "errorstats", "latencystats", "cluster", "keyspace",
]  # fmt: skip
# What INFO and INFO default show: Redis's default sections, and the ambassador's.
_DEFAULT = frozenset(_ORDER) - {"commandstats", "latencystats"} | {"ambassador"}


def merge_info(args: list[bytes], view: ClusterView) -> Callable[[Sequence[Reply]], bytes]:
    """The merge for one INFO command (its arguments choose the sections)."""
    wanted = _selection(args)

    def merge(replies: Sequence[Reply]) -> bytes:
        texts = [_text(reply) for reply in replies if reply[:1] in (b"$", b"=")]
        return verbatim(info_text(texts, wanted, view), view.protocol)

    return merge


def _selection(args: list[bytes]) -> Callable[[str], bool]:
    """Whether INFO with these arguments shows a section (Redis's genInfoSectionDict rules)."""
    names = {bytes(arg).decode("utf-8", "replace").lower() for arg in args[1:]} or {"default"}
    every = bool(names & {"all", "everything"})
    default = "default" in names
    return lambda section: every or (default and section in _DEFAULT) or section in names


def _text(reply: Reply) -> bytes:
    payload = bulk_value(reply)
    return payload[4:] if reply[:1] == b"=" else payload  # verbatim: "txt:" first


def info_text(texts: Sequence[bytes], wanted: Callable[[str], bool], view: ClusterView) -> bytes:
    """The merged INFO text from the masters' texts (first master first)."""
    nodes = [_sections(text) for text in texts]
    titles: dict[str, bytes] = {}
    for sections in nodes:
        for name, (title, _) in sections.items():
            titles.setdefault(name, title)
    for name, title in _OURS.items():
        if wanted(name):
            titles.setdefault(name, title)
    rank = {name: i for i, name in enumerate([*_ORDER, *titles, "ambassador"])}
    rendered = []
    for name in sorted(titles, key=lambda n: (n == "ambassador", rank[n])):
        if name == "ambassador":
            lines = _ambassador(view, answered=len(texts))
        else:
            parts = [sections[name][1] for sections in nodes if name in sections]
            lines = _MERGES.get(name, _first)(parts, view)
        rendered.append(b"# %b\r\n%b" % (titles[name], b"".join(line + b"\r\n" for line in lines)))
    return b"\r\n".join(rendered)


def _sections(text: bytes) -> dict[str, tuple[bytes, Lines]]:
    """A node's INFO text by section (lower-case name -> title as written, field lines)."""
    sections: dict[str, tuple[bytes, Lines]] = {}
    lines: Lines | None = None
    for line in text.split(b"\r\n"):
        if line.startswith(b"# "):
            title = line[2:]
            lines = sections.setdefault(title.decode("utf-8", "replace").lower(), (title, []))[1]
        elif line and lines is not None:
            lines.append(line)
    return sections


# -- combining one field's values ------------------------------------------------------------

_FIRST, _SUM, _MAX = "first", "sum", "max"


def _number(value: bytes) -> int | float | None:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return None


def _combine(rule: str, values: Sequence[bytes]) -> bytes:
    """The values of one field on every node as one: summed, the highest, or the first's;
    numbers keep the first value's format (``0.12`` stays two decimals)."""
    if rule == _FIRST or len(values) == 1:
        return values[0]
    numbers = [_number(value) for value in values]
    if any(n is None for n in numbers):
        return values[0]
    total = sum(numbers) if rule == _SUM else max(numbers)  # type: ignore[type-var, arg-type]
    return _like(total, values[0])


def _like(number: float, sample: bytes) -> bytes:
    if b"." in sample:
        return b"%.*f" % (len(sample.rpartition(b".")[2]), number)
    return b"%d" % number


def _fields(parts: Sequence[Lines]) -> dict[bytes, list[bytes]]:
    """``name:value`` lines of every node, by name, in the first node's order."""
    found: dict[bytes, list[bytes]] = {}
    for lines in parts:
        for line in lines:
            name, _, value = line.partition(b":")
            found.setdefault(name, []).append(value)
    return found


def _by_rules(parts: Sequence[Lines], default: str, rules: dict[bytes, str]) -> dict[bytes, bytes]:
    return {
        name: _combine(rules.get(name, default), values) for name, values in _fields(parts).items()
    }


def _lines(fields: dict[bytes, bytes]) -> Lines:
    return [name + b":" + value for name, value in fields.items()]


# -- the sections -------------------------------------------------------------------------------


def _first(parts: Sequence[Lines], view: ClusterView) -> Lines:
    return list(parts[0]) if parts else []


def _server(parts: Sequence[Lines], view: ClusterView) -> Lines:
    fields = _by_rules(parts[:1], _FIRST, {})
    # Replaced where the node put them (added at the end when no master answered).
    fields[b"redis_version"] = view.version
    fields[b"redis_mode"] = b"standalone"
    fields[b"tcp_port"] = b"%d" % view.port
    return _lines(fields)


_CLIENTS = {
    **dict.fromkeys(
        [b"blocked_clients", b"tracking_clients", b"clients_in_timeout_table", b"pubsub_clients",
         b"watching_clients", b"total_watched_keys", b"total_blocking_keys",
         b"total_blocking_keys_on_nokey"],
        _SUM,
    ),
    b"client_recent_max_input_buffer": _MAX,
    b"client_recent_max_output_buffer": _MAX,
}  # fmt: skip


def _clients(parts: Sequence[Lines], view: ClusterView) -> Lines:
    fields = _by_rules(parts, _FIRST, _CLIENTS)
    fields[b"connected_clients"] = b"%d" % view.clients
    if b"cluster_connections" in fields or not parts:
        fields[b"cluster_connections"] = b"0"
    return _lines(fields)


_MEMORY_BYTES = [
    b"used_memory", b"used_memory_rss", b"used_memory_peak", b"used_memory_overhead",
    b"used_memory_startup", b"used_memory_dataset", b"allocator_allocated", b"allocator_active",
    b"allocator_resident", b"used_memory_lua", b"used_memory_vm_eval", b"used_memory_scripts_eval",
    b"used_memory_vm_functions", b"used_memory_vm_total", b"used_memory_functions",
    b"used_memory_scripts", b"allocator_frag_bytes", b"allocator_rss_bytes",
    b"rss_overhead_bytes", b"mem_fragmentation_bytes", b"mem_not_counted_for_evict",
    b"mem_replication_backlog", b"mem_total_replication_buffers", b"mem_clients_slaves",
    b"mem_clients_normal", b"mem_cluster_links", b"mem_aof_buffer", b"lazyfree_pending_objects",
    b"lazyfreed_objects",
]  # fmt: skip
_MEMORY = {
    **dict.fromkeys(_MEMORY_BYTES, _SUM),
    **dict.fromkeys(
        [b"number_of_cached_scripts", b"number_of_functions", b"number_of_libraries",
         b"active_defrag_running"],
        _MAX,
    ),
}  # fmt: skip
# Recomputed from the sums: field -> (numerator, denominator, format).
_MEMORY_RATIOS = {
    b"used_memory_peak_perc": (b"used_memory", b"used_memory_peak", b"%.2f%%"),
    b"allocator_frag_ratio": (b"allocator_active", b"allocator_allocated", b"%.2f"),
    b"allocator_rss_ratio": (b"allocator_resident", b"allocator_active", b"%.2f"),
    b"rss_overhead_ratio": (b"used_memory_rss", b"allocator_resident", b"%.2f"),
    b"mem_fragmentation_ratio": (b"used_memory_rss", b"used_memory", b"%.2f"),
}


def _memory(parts: Sequence[Lines], view: ClusterView) -> Lines:
    fields = _by_rules(parts, _FIRST, _MEMORY)
    limits = _fields(parts).get(b"maxmemory", [])
    if limits:
        unlimited = any(_number(limit) == 0 for limit in limits)
        fields[b"maxmemory"] = b"0" if unlimited else _combine(_SUM, limits)
    for name in [*_MEMORY_BYTES, b"maxmemory"]:
        human = name + b"_human"
        if human in fields and name in fields:
            fields[human] = bytes_to_human(int(fields[name]))
    for name, (top, bottom, form) in _MEMORY_RATIOS.items():
        _ratio(fields, name, fields.get(top), fields.get(bottom), form)
    if b"used_memory_dataset_perc" in fields and b"used_memory_startup" in fields:
        net = int(fields[b"used_memory"]) - int(fields[b"used_memory_startup"])
        dataset = fields.get(b"used_memory_dataset")
        _ratio(fields, b"used_memory_dataset_perc", dataset, b"%d" % net, b"%.2f%%")
    return _lines(fields)


def _ratio(
    fields: dict[bytes, bytes], name: bytes, top: bytes | None, bottom: bytes | None, form: bytes
) -> None:
    if name not in fields or top is None or bottom is None:
        return
    numerator, denominator = _number(top), _number(bottom)
    if numerator is not None and denominator:
        scale = 100 if form.endswith(b"%%") else 1
        fields[name] = form % (numerator * scale / denominator)


def bytes_to_human(n: int) -> bytes:
    """Redis's bytesToHuman: ``200B``, ``976.55K``, ``6.63M``."""
    if n < 1024:
        return b"%dB" % n
    for power, unit in enumerate(b"KMGTP", start=1):
        if n < 1024 ** (power + 1):
            return b"%.2f%c" % (n / 1024**power, unit)
    return b"%dB" % n


_PERSISTENCE = {
    **dict.fromkeys(
        [b"rdb_changes_since_last_save", b"rdb_saves", b"aof_rewrites"], _SUM
    ),
    **dict.fromkeys(
        [b"loading", b"async_loading", b"rdb_bgsave_in_progress", b"aof_rewrite_in_progress",
         b"aof_rewrite_scheduled", b"module_fork_in_progress"],
        _MAX,
    ),
}  # fmt: skip


def _persistence(parts: Sequence[Lines], view: ClusterView) -> Lines:
    return _lines(_by_rules(parts, _FIRST, _PERSISTENCE))


_STATS = {
    b"latest_fork_usec": _MAX,
    b"current_eviction_exceeded_time": _MAX,
    b"current_active_defrag_time": _MAX,
    b"expired_stale_perc": _FIRST,
}


def _stats(parts: Sequence[Lines], view: ClusterView) -> Lines:
    return _lines(_by_rules(parts, _SUM, _STATS))


def _cpu(parts: Sequence[Lines], view: ClusterView) -> Lines:
    return _lines(_by_rules(parts, _SUM, {}))


def _replication(parts: Sequence[Lines], view: ClusterView) -> Lines:
    fields = _by_rules(parts[:1], _FIRST, {})
    if b"connected_slaves" in fields:
        fields[b"connected_slaves"] = b"0"
    return [line for line in _lines(fields) if not _is_replica_line(line)]


def _is_replica_line(line: bytes) -> bool:
    """``slave0:ip=...,port=...``: a replica of the node answering."""
    name = line.partition(b":")[0]
    return name.startswith(b"slave") and name[5:].isdigit()


def _cluster(parts: Sequence[Lines], view: ClusterView) -> Lines:
    return [b"cluster_enabled:0"]


# -- sections of name:key=value,... lines -------------------------------------------------------


def _per_line(
    parts: Sequence[Lines], combine: Callable[[list[dict[bytes, bytes]]], dict[bytes, bytes]]
) -> Lines:
    grouped: dict[bytes, list[dict[bytes, bytes]]] = {}
    for lines in parts:
        for line in lines:
            name, _, value = line.partition(b":")
            pairs = (item.partition(b"=") for item in value.split(b","))
            grouped.setdefault(name, []).append({key: val for key, _, val in pairs})
    return [
        name + b":" + b",".join(key + b"=" + value for key, value in combine(nodes).items())
        for name, nodes in grouped.items()
    ]


def _each_key(nodes: list[dict[bytes, bytes]], rule: str) -> dict[bytes, bytes]:
    keys = dict.fromkeys(key for node in nodes for key in node)
    return {key: _combine(rule, [node[key] for node in nodes if key in node]) for key in keys}


def _commandstats(parts: Sequence[Lines], view: ClusterView) -> Lines:
    def combine(nodes: list[dict[bytes, bytes]]) -> dict[bytes, bytes]:
        fields = _each_key(nodes, _SUM)
        calls, usec = _number(fields.get(b"calls", b"")), _number(fields.get(b"usec", b""))
        if b"usec_per_call" in fields and calls and usec is not None:
            # Redis divides in C float (single precision): 2419/40 prints 60.47, not 60.48.
            fields[b"usec_per_call"] = b"%.2f" % _float32(_float32(usec) / _float32(calls))
        return fields

    return _per_line(parts, combine)


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _errorstats(parts: Sequence[Lines], view: ClusterView) -> Lines:
    return _per_line(parts, lambda nodes: _each_key(nodes, _SUM))


def _latencystats(parts: Sequence[Lines], view: ClusterView) -> Lines:
    return _per_line(parts, lambda nodes: _each_key(nodes, _MAX))


def _keyspace(parts: Sequence[Lines], view: ClusterView) -> Lines:
    def combine(nodes: list[dict[bytes, bytes]]) -> dict[bytes, bytes]:
        fields = _each_key(nodes, _SUM)
        if b"avg_ttl" in fields:
            weighted = [
                (int(node[b"avg_ttl"]), int(node.get(b"expires", b"0")))
                for node in nodes
                if int(node.get(b"avg_ttl", b"0")) > 0
            ]
            weight = sum(expires for _, expires in weighted)
            total = sum(ttl * expires for ttl, expires in weighted)
            fields[b"avg_ttl"] = b"%d" % (total // weight if weight else 0)
        return fields

    return _per_line(parts, combine)


def _ambassador(view: ClusterView, answered: int) -> Lines:
    return [
        b"ambassador_version:%s" % __version__.encode(),
        b"ambassador_uptime_in_seconds:%d" % view.uptime,
        b"ambassador_connected_clients:%d" % view.clients,
        b"ambassador_masters:%d" % len(view.masters),
        b"ambassador_replicas:%d" % view.replicas,
        b"ambassador_slots_covered:%d" % view.slots_covered,
        b"ambassador_masters_answered:%d" % answered,
        b"ambassador_breakers_open:%d" % view.breakers_open,
        b"ambassador_ready:%d" % (not view.unready),
        *([b"ambassador_unready_reason:%s" % view.unready.encode()] if view.unready else []),
    ]


_MERGES: dict[str, Callable[[Sequence[Lines], ClusterView], Lines]] = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "persistence": _persistence,
    "stats": _stats,
    "replication": _replication,
    "cpu": _cpu,
    "commandstats": _commandstats,
    "errorstats": _errorstats,
    "latencystats": _latencystats,
    "cluster": _cluster,
    "keyspace": _keyspace,
}

# Sections the ambassador fills on its own when no master answered (titles as Redis writes them).
_OURS = {
    "server": b"Server",
    "clients": b"Clients",
    "cluster": b"Cluster",
    "keyspace": b"Keyspace",
    "ambassador": b"Ambassador",
}
