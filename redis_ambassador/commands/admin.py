"""Server and admin commands: inspect and tune the whole cluster as if it were one server.

Each admin command gets a ``Plan`` (sans-IO; the router sends the parts and merges the replies):

- ``CONFIG SET/RESETSTAT/REWRITE`` go to *every node*, masters and replicas (a replica promoted
  later must behave as its master did): ``+OK`` only if every node said so, else the first error.
  ``CONFIG GET`` is not here: any master answers it as one server would (the RESP3 map included);
- ``INFO`` goes to every master and the answers merge into one server's (``commands/info.py``);
- ``SLOWLOG GET [count]``: every master's entries, newest first, ``count`` of them (default 10);
- ``LATENCY DOCTOR``: every master's report, each under its node's name. SLOWLOG LEN/RESET and
  LATENCY LATEST/HISTORY/HISTOGRAM/RESET need no arguments to merge: they are ``FANOUT`` entries;
- ``DEBUG``, by subcommand: the ones about a key go to the key's master, the cluster-wide knobs
  and ``SLEEP`` to every master, the stateless ones to any master; the rest act on one node's
  process, replication or dataset and are refused with the reason.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis_ambassador import errors
from redis_ambassador.commands.info import ClusterView, merge_info
from redis_ambassador.commands.merges import Merge, all_ok, labelled_texts, slowlog_get
from redis_ambassador.protocol.replies import bulk, bulk_value, elements, mapping
from redis_ambassador.protocol.requests import string2ll

_STARTED = time.monotonic()


def uptime() -> int:
    """Seconds since the ambassador started (INFO's ``ambassador_uptime_in_seconds``)."""
    return int(time.monotonic() - _STARTED)


class To(enum.Enum):
    """Where a plan sends the command."""

    MASTERS = "every master"
    NODES = "every node, masters and replicas"
    KEYS = "the master of the keys' slot"
    ANY = "any one master"
    ANY_MERGED = "any one master, its reply rewritten by the merge"
    NOWHERE = "answered by the plan itself"


@dataclass(frozen=True, slots=True)
class Plan:
    """Where one admin command goes, and how its replies become one."""

    to: To
    merge: Merge | None = None
    keys: tuple[bytes, ...] = ()  # To.KEYS
    reply: bytes = b""  # To.NOWHERE
    always: bool = False  # answer (merge no replies) even when no master is known: INFO


Planner = Callable[[list[bytes], ClusterView], Plan]


def _info(args: list[bytes], view: ClusterView) -> Plan:
    return Plan(To.MASTERS, merge_info(args, view), always=True)


def _every_node(args: list[bytes], view: ClusterView) -> Plan:
    return Plan(To.NODES, all_ok)


_SLOWLOG_DEFAULT = 10


def _slowlog_get(args: list[bytes], view: ClusterView) -> Plan:
    limit: int | None = _SLOWLOG_DEFAULT
    if len(args) > 2:
        # Bad counts are the nodes' to refuse (their error is the reply); -1 asks for all.
        count = string2ll(args[2])
        limit = count if count is not None and count >= 0 else None
    return Plan(To.MASTERS, slowlog_get(limit))


def _latency_doctor(args: list[bytes], view: ClusterView) -> Plan:
    return Plan(To.MASTERS, labelled_texts(view.masters))


# DEBUG subcommands, as Redis 7 lists them in DEBUG HELP.
_DEBUG_BY_KEY = frozenset(
    [b"object", b"sdslen", b"htstats-key", b"listpack", b"quicklist", b"ziplist", b"digest-value"]
)
_DEBUG_ON_MASTERS = frozenset(
    [b"sleep", b"set-active-expire", b"log", b"quicklist-packed-threshold",
     b"set-skip-checksum-validation"]
)  # fmt: skip
_DEBUG_ANY = frozenset(
    [b"help", b"protocol", b"error", b"stringmatch-test", b"structsize", b"client-eviction"]
)
_DEBUG_REFUSED = frozenset(
    [b"aof-flush-sleep", b"assert", b"change-repl-id", b"config-rewrite-force-all",
     b"crash-and-recover", b"digest", b"leak", b"htstats", b"loadaof", b"replicate",
     b"mallctl", b"mallctl-str", b"drop-cluster-packet-filter", b"oom", b"panic", b"populate",
     b"reload", b"restart", b"segfault", b"pause-cron", b"replybuffer", b"clusterlink",
     b"set-disable-deny-scripts", b"dict-resizing", b"script", b"jmap"]
)  # fmt: skip
_DEBUG_ONE_NODE = (
    "it acts on one node's process, replication or share of the keys; run it on the node itself"
)


def _debug(args: list[bytes], view: ClusterView) -> Plan:
    if len(args) < 2:
        return Plan(To.ANY)  # the node's arity error
    sub = args[1].lower()
    if sub in _DEBUG_BY_KEY:
        # Without a key, the node words the error.
        return Plan(To.KEYS, keys=_debug_keys(sub, args)) if len(args) > 2 else Plan(To.ANY)
    if sub in _DEBUG_ON_MASTERS:
        return Plan(To.MASTERS, all_ok)
    if sub in _DEBUG_ANY:
        return Plan(To.ANY)
    if sub in _DEBUG_REFUSED:
        return Plan(To.NOWHERE, reply=errors.not_supported([b"debug " + sub], _DEBUG_ONE_NODE))
    # Not sent anywhere: a subcommand newer than this list might act on one node only.
    return Plan(To.NOWHERE, reply=errors.debug_unknown_subcommand(args[1]))


def _debug_keys(sub: bytes, args: list[bytes]) -> tuple[bytes, ...]:
    """The keys DEBUG routes by: every argument of DIGEST-VALUE, the first of the others
    (``DEBUG QUICKLIST key 1``: 1 is an option)."""
    return tuple(args[2:]) if sub == b"digest-value" else (args[2],)


def _config_get(args: list[bytes], view: ClusterView) -> Plan:
    """CONFIG GET from one master, saying what INFO says about the server it describes."""
    return Plan(To.ANY_MERGED, merge=lambda replies: standalone_config(replies[0], view.port))


# Parameters whose node value would contradict the one server the ambassador presents.
def standalone_config(reply: bytes, port: int) -> bytes:
    """A node's CONFIG GET reply (flat array in RESP2, map in RESP3) with ``port`` the
    ambassador's and ``cluster-enabled`` off, as its INFO says."""
    if reply[:1] in (b"-", b"!"):
        return reply
    items = elements(reply)
    for k in range(0, len(items) - 1, 2):
        name = bulk_value(items[k])
        if name == b"port":
            items[k + 1] = bulk(b"%d" % port)
        elif name == b"cluster-enabled":
            items[k + 1] = bulk(b"no")
    return mapping(items, 3 if reply[:1] == b"%" else 2)


# Admin commands planned here, by the command table's name (``debug`` has no subcommands there).
ADMIN: dict[str, Planner] = {
    "info": _info,
    "config|get": _config_get,
    "config|set": _every_node,
    "config|resetstat": _every_node,
    "config|rewrite": _every_node,
    "slowlog|get": _slowlog_get,
    "latency|doctor": _latency_doctor,
    "debug": _debug,
}
