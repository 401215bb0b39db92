"""The one typed configuration object, loaded and validated once at start.

Precedence, lowest to highest: defaults < TOML file < environment < flags (``overrides``).

Keys are addressed as ``section.key`` (``upstream.pool_size``). Each key can also be set
from the environment as ``REDIS_AMBASSADOR_<KEY>`` -- the key name upper-cased, without
its section (key names are unique across sections). ``REDIS_AMBASSADOR_CONFIG`` names the
config file when no path is given.

Every value from every source is validated, even one a later source overrides, so a
broken file is reported instead of silently masked. Numeric limits:

* integers must be >= 1, except ``upstream.max_redirects`` and
  ``upstream.retry_attempts``, where 0 means "don't follow / don't retry; return the
  error to the client", and ``upstream.retry_budget_percent``/``retry_budget_floor`` (0 allowed);
  percentages are at most 100;
* durations are seconds (int or float), finite and > 0, except
  ``upstream.retry_backoff`` which may be 0 (retry immediately), and
  ``server.drain_timeout``, ``server.idle_timeout``, ``server.output_buffer_soft_seconds`` and
  ``server.slow_log_threshold``, where 0 means "no wait", "never", "never" and "never";
* ``server.output_buffer_hard_limit`` must not be below ``server.max_output_buffer``;
* ``cluster.min_refresh_interval`` must not exceed ``cluster.refresh_interval``.

Command lists (``commands.deny``, ``commands.allow``) hold command names as Redis's ACL writes
them: ``flushall``, or ``config|set`` for one subcommand; any letter case, stored lower-case.
From the environment they are separated by commas or spaces. ``commands.cluster_view`` is one
of the words it lists (``single``, ``real``), in any letter case; its default follows
``cluster.backend`` (``single`` for a cluster, ``real`` for one server: see ``_load_values``).
A standalone backend takes exactly one seed.

``redis-ambassador dev`` starts from different defaults (``DEV_DEFAULTS``: every command
allowed, chaos enabled with in-band control); files, the environment and flags still override
them.

``[chaos]`` keys take ``REDIS_AMBASSADOR_CHAOS_*`` environment names (``REDIS_AMBASSADOR_CHAOS``
for ``chaos.enabled``); ``chaos.rules`` from the environment is a JSON array of rule objects,
each validated as the admin API validates it.

The Ambassador pattern's generic environment variable names set keys too (``PATTERN_ENV``),
ranking below the ``REDIS_AMBASSADOR_*`` names (defaults < file < pattern names <
REDIS_AMBASSADOR_* < flags):

* ``REDIS_MASTER_HOST`` and ``TARGET_HOST``: ``cluster.seeds``, comma/space-separated
  ``host`` or ``host:port`` items; an item without a port gets 6379 (REDIS_MASTER_HOST) or
  ``TARGET_PORT`` (TARGET_HOST; 6379 when unset). Both set: all their nodes are seeds.
  ``TARGET_PORT`` without ``TARGET_HOST`` is an error.
* ``MAX_CONNECTIONS``: ``upstream.pool_size``, the ambassador's connections to the backend,
  counted per node (client connections are limited by ``server.max_clients``).
* ``RETRY_COUNT``: ``upstream.retry_attempts``; ``CIRCUIT_BREAK_THRESHOLD``:
  ``upstream.breaker_failures``.
* ``RETRY_INTERVAL``: ``upstream.retry_backoff``, in milliseconds unless a unit is given
  (``200``, ``200ms`` and ``0.2s`` all mean 0.2 seconds).

An empty environment variable counts as unset (container tooling often exports empty
values for "not configured"). Unknown ``REDIS_AMBASSADOR_*`` variables are ignored, since
other parts of the program may define their own.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis_ambassador.faults.rules import RuleError, parse_rule

__all__ = [
    "BACKENDS",
    "DEFAULT_DENIED",
    "DEV_DEFAULTS",
    "ENV_PREFIX",
    "PATTERN_ENV",
    "Address",
    "AddressMap",
    "ChaosConfig",
    "ClusterConfig",
    "CommandsConfig",
    "Config",
    "ConfigError",
    "ServerConfig",
    "Setting",
    "UpstreamConfig",
    "describe_keys",
    "env_var_name",
    "explain_config",
    "load_config",
    "show_value",
]

ENV_PREFIX = "REDIS_AMBASSADOR_"
CONFIG_ENV_VAR = ENV_PREFIX + "CONFIG"

_ADDRESS_EXAMPLE = "e.g. 127.0.0.1:6379 or [::1]:6379"


def _address_problem(text: str) -> tuple[str, int] | str:
    """Split ``text`` into (host, port), or return why it can't be."""
    text = text.strip()
    if not text:
        return f"empty address; expected host:port, {_ADDRESS_EXAMPLE}"
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            return "missing ']' after IPv6 host; expected [host]:port"
        host, rest = text[1:close], text[close + 1 :]
        if not rest.startswith(":"):
            return "missing ':port' after ']'; expected [host]:port"
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            return f"missing port; expected host:port, {_ADDRESS_EXAMPLE}"
        if ":" in host:
            return "IPv6 addresses need brackets, e.g. [::1]:6379"
    if not host:
        return f"missing host; expected host:port, {_ADDRESS_EXAMPLE}"
    if any(c.isspace() for c in host):
        return f"host {host!r} contains whitespace"
    # isascii() too: str.isdigit() accepts digits like '²' that int() rejects.
    if not (port_text.isascii() and port_text.isdigit()):
        return f"port {port_text!r} is not a number"
    port = int(port_text)
    if not 1 <= port <= 65535:
        return f"port {port} is out of range 1..65535"
    return host, port


@dataclass(frozen=True)
class Address:
    """A TCP endpoint; IPv6 hosts are stored without brackets."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"invalid address host {self.host!r}: must be a non-empty string")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ValueError(f"invalid address port {self.port!r}: must be an integer")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"invalid address port {self.port}: out of range 1..65535")

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port`` or ``[ipv6]:port``; raise ValueError saying what is wrong."""
        result = _address_problem(text)
        if isinstance(result, str):
            raise ValueError(f"invalid address {text!r}: {result}")
        return cls(*result)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AddressMap:
    """Announced node addresses and the addresses to dial instead (NAT, port forwarding)."""

    pairs: tuple[tuple[Address, Address], ...] = ()
    _lookup: dict[Address, Address] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lookup", dict(self.pairs))

    def __call__(self, address: Address) -> Address:
        """Where to reach the node announced as ``address`` (itself when not mapped)."""
        return self._lookup.get(address, address)

    def __bool__(self) -> bool:
        return bool(self.pairs)


def _int(default: int, help: str, minimum: int = 1, maximum: int | None = None) -> Any:
    return field(default=default, metadata={"help": help, "min": minimum, "max": maximum})


def _seconds(default: float, help: str, allow_zero: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "min": 0.0, "allow_zero": allow_zero})


@dataclass(frozen=True)
class ServerConfig:
    """TOML section ``[server]``: the client-facing listener."""

    listen: Address = field(
        default=Address("127.0.0.1", 6379),
        metadata={"help": "address the plain-Redis listener binds, host:port"},
    )
    admin: Address | None = field(
        default=Address("127.0.0.1", 9090),
        metadata={
            "help": "address of the admin HTTP listener (/metrics, /healthz, /readyz), "
            "host:port, or 'off'"
        },
    )
    admin_token: str = field(
        default="",
        metadata={
            "help": "when set, the admin listener asks for 'Authorization: Bearer <token>' on "
            "every path but /healthz and /readyz ('': no token)",
            "secret": True,
        },
    )
    max_clients: int = _int(
        10000,
        "client connections served at once; one more gets Redis's '-ERR max number of clients "
        "reached' and is closed (Redis maxclients)",
    )
    max_bulk_len: int = _int(
        512 * 1024 * 1024,
        "largest bulk string a client may send, in bytes (Redis proto-max-bulk-len)",
    )
    max_multibulk_len: int = _int(1024 * 1024, "most array items in one client request")
    max_query_buffer: int = _int(
        1024 * 1024 * 1024,
        "bytes of one client's unfinished request held while the rest arrives; over it the "
        "client is closed (Redis client-query-buffer-limit)",
    )
    max_inflight_per_client: int = _int(
        1024, "commands awaiting replies before we stop reading that client (backpressure)"
    )
    max_output_buffer: int = _int(
        64 * 1024 * 1024,
        "bytes of replies buffered for a client that is not reading them before we stop "
        "reading its commands; the soft output buffer limit (Redis client-output-buffer-limit)",
    )
    output_buffer_soft_seconds: float = _seconds(
        60.0,
        "seconds a client's replies may stay over max_output_buffer (not read) before it is "
        "closed (0: never)",
        allow_zero=True,
    )
    output_buffer_hard_limit: int = _int(
        256 * 1024 * 1024,
        "bytes of replies buffered for a client over which it is closed at once (the hard "
        "output buffer limit); at least max_output_buffer",
    )
    drain_timeout: float = _seconds(
        10.0,
        "seconds a SIGTERM/SIGINT waits for replies to commands already read before closing "
        "what is left (0: no wait)",
        allow_zero=True,
    )
    idle_timeout: float = _seconds(
        0.0,
        "seconds a client may stay idle (no command, none in flight) before it is closed; "
        "blocked and subscribed clients are exempt (0: never, like Redis's timeout)",
        allow_zero=True,
    )
    tls_listen: Address | None = field(
        default=None,
        metadata={
            "help": "address of a TLS listener for clients, beside the plain one (like Redis's "
            "tls-port), host:port, or 'off'"
        },
    )
    tls_listen_cert_file: str = field(
        default="",
        metadata={"help": "PEM certificate (chain) the TLS listener presents to clients"},
    )
    tls_listen_key_file: str = field(
        default="", metadata={"help": "PEM private key of tls_listen_cert_file"}
    )
    tls_listen_ca_file: str = field(
        default="",
        metadata={
            "help": "PEM CA bundle; set: mutual TLS, every TLS client must present a "
            "certificate signed by one of these CAs ('': no client certificate asked)"
        },
    )
    slow_log_threshold: float = _seconds(
        0.1,
        "seconds from reading a client's commands to writing their replies above which the "
        "request is logged as slow (0: never); blocking commands are not logged",
        allow_zero=True,
    )
    log_level: str = field(
        default="info",
        metadata={
            "help": "least severe log lines written: 'debug', 'info', 'warning' or 'error'",
            "choices": ("debug", "info", "warning", "error"),
        },
    )
    log_format: str = field(
        default="plain",
        metadata={
            "help": "log lines on stderr as 'plain' text or 'json' (one object per line: "
            "time, level, logger, message, exception)",
            "choices": ("plain", "json"),
        },
    )
    client_auth: str = field(
        default="off",
        metadata={
            "help": "how clients authenticate: 'off' (no AUTH needed), 'password' (AUTH with "
            "server.requirepass, as Redis's requirepass), 'acl' (AUTH user pass, checked by the "
            "cluster; the client's commands then run as that user on the nodes)",
            "choices": ("off", "password", "acl"),
        },
    )
    requirepass: str = field(
        default="",
        metadata={
            "help": "the password clients give with AUTH (client_auth = 'password')",
            "secret": True,
        },
    )
    requirepass_file: str = field(
        default="",
        metadata={
            "help": "a file holding server.requirepass (a Kubernetes secret mount), read at start "
            "and on each reload"
        },
    )
    auth_max_failures: int = _int(
        10,
        "failed AUTHs on one client connection after which its further failed AUTHs are "
        "answered late (other connections, from the same address or not, are never slowed)",
    )
    auth_failure_delay: float = _seconds(
        0.5,
        "seconds the first late answer waits; doubled for each further failed AUTH on that "
        "connection, up to auth_failure_max_delay; nothing it sent after the AUTH runs before",
    )
    auth_failure_max_delay: float = _seconds(
        10.0, "seconds; the longest a failed AUTH's answer waits"
    )


# cluster.backend's words, in the order the help lists them.
BACKENDS = ("cluster", "standalone", "sentinel")


@dataclass(frozen=True)
class ClusterConfig:
    """TOML section ``[cluster]``: finding and tracking the cluster topology."""

    backend: str = field(
        default="cluster",
        metadata={
            "help": "what is behind the ambassador: 'cluster' (a Redis Cluster), 'standalone' "
            "(one Redis server: no slots, every command passes through) or 'sentinel' (the "
            "master of cluster.sentinel_master and its replicas, found from Redis Sentinels)",
            "choices": BACKENDS,
        },
    )
    seeds: tuple[Address, ...] = field(
        default=(),
        metadata={
            "help": "host:port of nodes of an existing cluster (backend 'standalone': the one "
            "server; 'sentinel': the sentinels); `serve` needs at least one"
        },
    )
    sentinel_master: str = field(
        default="mymaster",
        metadata={"help": "backend 'sentinel': the name the sentinels monitor the master by"},
    )
    sentinel_password: str = field(
        default="",
        metadata={
            "help": "backend 'sentinel': the password the sentinels ask for (their "
            "requirepass; '': none)",
            "secret": True,
        },
    )
    sentinel_password_file: str = field(
        default="",
        metadata={
            "help": "a file holding cluster.sentinel_password (a Kubernetes secret mount), "
            "read at start and on each reload"
        },
    )
    refresh_interval: float = _seconds(30.0, "seconds between periodic topology refreshes")
    min_refresh_interval: float = _seconds(
        0.1, "seconds; no two topology refreshes closer than this (coalescing)"
    )
    refresh_nodes: int = _int(3, "nodes asked for their view of the cluster on each refresh")
    resolve_interval: float = _seconds(
        1.0, "seconds; a host name (seed or node) is looked up again at most this often"
    )
    address_map: AddressMap = field(
        default=AddressMap(),
        metadata={
            "help": "announced node host:port -> the host:port to dial instead (NAT, Docker "
            "port forwarding), applied to every address the cluster reports"
        },
    )


@dataclass(frozen=True)
class UpstreamConfig:
    """TOML section ``[upstream]``: connections to cluster nodes and retry policy."""

    pool_size: int = _int(2, "pipelined connections per node, shared by all clients")
    connect_timeout: float = _seconds(2.0, "seconds to establish a connection to a node")
    command_timeout: float = _seconds(30.0, "seconds a command may wait for its node's reply")
    max_redirects: int = _int(
        5, "MOVED/ASK hops followed per command (0: return them to the client)", minimum=0
    )
    retry_attempts: int = _int(
        20, "times one command is sent again after a failure (0: no retries)", minimum=0
    )
    retry_backoff: float = _seconds(
        0.05,
        "seconds bounding the first retry's random delay, doubled for each further retry",
        allow_zero=True,
    )
    retry_max_backoff: float = _seconds(1.0, "seconds; the most a retry's delay bound grows to")
    retry_deadline: float = _seconds(
        5.0,
        "seconds after its first retry that a command stops being retried (and stops waiting "
        "for a failover to give its slot a master); 0: fail at once",
        allow_zero=True,
    )
    retry_budget_percent: int = _int(
        20, "retries may add at most this percentage of the commands sent", minimum=0, maximum=100
    )
    retry_budget_floor: int = _int(
        100, "retries per second allowed whatever the traffic (the budget's floor)", minimum=0
    )
    idempotent: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "write commands sent again when their reply was lost with the connection "
            "(read-only commands always are; a write is otherwise never replayed)"
        },
    )
    breaker_failures: int = _int(5, "consecutive failures that open a node's circuit breaker")
    breaker_error_percent: int = _int(
        50,
        "or this percentage of a node's commands failed within breaker_window",
        maximum=100,
    )
    breaker_window: float = _seconds(10.0, "seconds of history for breaker_error_percent")
    breaker_min_commands: int = _int(
        20, "commands within breaker_window before breaker_error_percent counts"
    )
    breaker_reset_timeout: float = _seconds(
        1.0, "seconds an open breaker waits (times 1 to 1.5, at random) before probing the node"
    )
    breaker_successes: int = _int(2, "successful probes that close a half-open breaker")
    health_check_interval: float = _seconds(1.0, "seconds between PINGs to each node")
    health_check_timeout: float = _seconds(1.0, "seconds a health-check PING may take")
    tls: bool = field(
        default=False,
        metadata={"help": "connect to nodes over TLS (nodes with tls-port and tls-cluster yes)"},
    )
    tls_ca_file: str = field(
        default="",
        metadata={
            "help": "PEM CA bundle that nodes' certificates must chain to ('': the system's "
            "trusted CAs)"
        },
    )
    tls_cert_file: str = field(
        default="",
        metadata={
            "help": "PEM client certificate presented to nodes (needed when they say "
            "tls-auth-clients yes)"
        },
    )
    tls_key_file: str = field(default="", metadata={"help": "PEM private key of tls_cert_file"})
    tls_server_name: str = field(
        default="",
        metadata={
            "help": "name sent as SNI and checked in every node's certificate ('': each node's "
            "own address)"
        },
    )
    tls_check_hostname: bool = field(
        default=True,
        metadata={
            "help": "check that each node's certificate names it (false: only its chain is "
            "checked, for certificates that do not name the nodes' IP addresses)"
        },
    )
    read_policy: str = field(
        default="master",
        metadata={
            "help": "where read-only commands go: 'master', 'prefer-replica' (a replica, else "
            "the master), 'replica' (replicas only), 'any' (master and replicas in turn)",
            "choices": ("master", "prefer-replica", "replica", "any"),
        },
    )
    username: str = field(
        default="",
        metadata={
            "help": "ACL user the ambassador authenticates as on every node ('': the default user)"
        },
    )
    password: str = field(
        default="",
        metadata={
            "help": "password the ambassador authenticates with on every node ('': none)",
            "secret": True,
        },
    )
    password_file: str = field(
        default="",
        metadata={
            "help": "a file holding upstream.password (a Kubernetes secret mount), read at start "
            "and on each reload"
        },
    )


# Commands that can harm the whole cluster, denied by `serve` unless allowed: they wipe data,
# change every node's settings, stall or poke the nodes, or move keys out of the cluster.
DEFAULT_DENIED: tuple[str, ...] = (
    "flushall",
    "flushdb",
    "script|flush",
    "function|flush",
    "config|set",
    "config|resetstat",
    "config|rewrite",
    "debug",
    "migrate",
    # Hyperloglog debugging: PFSELFTEST holds the node for half a second (every client of it
    # waits), PFDEBUG rewrites a key's encoding.
    "pfselftest",
    "pfdebug",
)


@dataclass(frozen=True)
class CommandsConfig:
    """TOML section ``[commands]``: how commands a single node cannot answer are treated, and
    which commands clients may not run at all (the command policy)."""

    split_cross_slot: bool = field(
        default=True,
        metadata={
            "help": "split MGET/MSET/DEL/UNLINK/EXISTS/TOUCH whose keys span slots into one "
            "command per slot (not atomic across slots); false: refuse them with CROSSSLOT"
        },
    )
    cross_slot_transactions: str = field(
        default="per-node",
        metadata={
            "help": "MULTI/EXEC whose keys span slots: 'per-node' runs one MULTI/EXEC per slot "
            "on its master, one after another, and answers one EXEC reply in the order queued "
            "(each part atomic, the parts not isolated from each other); 'refuse' answers Redis "
            "Cluster's CROSSSLOT",
            "choices": ("per-node", "refuse"),
        },
    )
    deny: tuple[str, ...] = field(
        default=DEFAULT_DENIED,
        metadata={
            "help": "commands clients may not run (name or name|subcommand); `dev` denies none"
        },
    )
    allow: tuple[str, ...] = field(
        default=(),
        metadata={"help": "commands allowed even though commands.deny names them"},
    )
    cluster_view: str = field(
        default="single",
        metadata={
            "help": "CLUSTER INFO/SLOTS/SHARDS/NODES: 'single' describes the ambassador as one "
            "node owning every slot (for cluster-aware clients); 'real' asks a master (operators; "
            "the default with a standalone or sentinel backend, whose server says it has no "
            "cluster support)",
            "choices": ("single", "real"),
        },
    )


@dataclass(frozen=True)
class ChaosConfig:
    """TOML section ``[chaos]``: fault injection for tests; never active unless enabled. Its
    environment variables are named ``REDIS_AMBASSADOR_CHAOS_*`` (``_CHAOS`` for ``enabled``)."""

    enabled: bool = field(
        default=False,
        metadata={
            "help": "accept fault rules (admin API, CLI, [[chaos.rules]]); `serve --chaos`, "
            "always on in `dev`",
            "env": "CHAOS",
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "seed of the rules' random draws, so probabilistic faults replay "
            "(0: a random seed, logged at start)",
            "min": 0,
            "env": "CHAOS_SEED",
        },
    )
    in_band: bool = field(
        default=False,
        metadata={
            "help": "accept the CHAOS command on the Redis port (for when only that port is "
            "reachable); needs enabled",
            "env": "CHAOS_IN_BAND",
        },
    )
    log: bool = field(
        default=False,
        metadata={
            "help": "log every injected fault (at most 100 lines a second)",
            "env": "CHAOS_LOG",
        },
    )
    rules: tuple[dict[str, Any], ...] = field(
        default=(),
        metadata={
            "help": "fault rules active from the start ([[chaos.rules]] tables; from the "
            "environment a JSON array)",
            "env": "CHAOS_RULES",
        },
    )


@dataclass(frozen=True)
class Config:
    """Everything configurable, one frozen section per TOML table."""

    server: ServerConfig = ServerConfig()
    cluster: ClusterConfig = ClusterConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    commands: CommandsConfig = CommandsConfig()
    chaos: ChaosConfig = ChaosConfig()

    def value(self, dotted: str) -> Any:
        """The value of one key, e.g. ``config.value("upstream.pool_size")``."""
        section, name = dotted.split(".")
        return getattr(getattr(self, section), name)

    def with_values(self, values: Mapping[str, object]) -> Config:
        """This config with some keys (dotted) set to other values."""
        sections: dict[str, dict[str, object]] = {}
        for dotted, value in values.items():
            section, name = dotted.split(".")
            sections.setdefault(section, {})[name] = value
        return dataclasses.replace(
            self,
            **{
                section: dataclasses.replace(getattr(self, section), **changed)
                for section, changed in sections.items()
            },
        )


class ConfigError(ValueError):
    """A configuration problem; ``str(e)`` is one line naming the key, source and problem."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        # Keep it to one line so it reads well as a log line or a CLI error.
        super().__init__("config error: " + " ".join(message.splitlines()))
        self.key = key
        self.source = source


@dataclass(frozen=True)
class _Key:
    section: str
    name: str
    type: Any
    default: object
    help: str
    minimum: float
    allow_zero: bool
    choices: tuple[str, ...] = ()  # the words a str key accepts
    maximum: int | None = None  # the largest an int key accepts
    secret: bool = False  # metadata "secret": its value is never printed (`config check`)
    env_name: str = ""  # metadata "env": the variable's name after the prefix, if not NAME

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return ENV_PREFIX + (self.env_name or self.name.upper())


def _collect_keys() -> dict[str, _Key]:
    keys: dict[str, _Key] = {}
    for section in dataclasses.fields(Config):
        section_cls = typing.get_type_hints(Config)[section.name]
        hints = typing.get_type_hints(section_cls)
        for f in dataclasses.fields(section_cls):
            key = _Key(
                section=section.name,
                name=f.name,
                type=hints[f.name],
                default=f.default,
                help=f.metadata["help"],
                minimum=f.metadata.get("min", 0),
                maximum=f.metadata.get("max"),
                allow_zero=f.metadata.get("allow_zero", False),
                choices=f.metadata.get("choices", ()),
                secret=f.metadata.get("secret", False),
                env_name=f.metadata.get("env", ""),
            )
            if key.type not in _CONVERTERS:
                raise TypeError(f"config key {key.dotted}: no converter for type {key.type!r}")
            keys[key.dotted] = key
    env_names = [k.env for k in keys.values()] + [CONFIG_ENV_VAR]
    if len(set(env_names)) != len(env_names):
        raise TypeError("config key names must be unique across sections (env var clash)")
    return keys


class _Bad(Exception):
    """A value failed conversion; ``shown`` is what to print as the offending value."""

    def __init__(self, problem: str, shown: object = None):
        super().__init__(problem)
        self.problem = problem
        self.shown = shown


_TYPE_NAMES = {
    bool: "a boolean",
    str: "a string",
    list: "an array",
    tuple: "an array",
    dict: "a table",
    float: "a float",
    int: "an integer",
}


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _to_int(key: _Key, value: object, text_ok: bool) -> int:
    requirement = f"must be an integer >= {int(key.minimum)}"
    if key.maximum is not None:
        requirement = f"must be an integer from {int(key.minimum)} to {key.maximum}"
    if isinstance(value, str) and text_ok:
        try:
            value = int(value.strip())
        except ValueError:
            raise _Bad(requirement) from None
    # bool is an int subclass, but `pool_size = true` is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{requirement}, not {_type_name(value)}")
    if value < key.minimum or (key.maximum is not None and value > key.maximum):
        raise _Bad(requirement, value)
    return value


def _to_seconds(key: _Key, value: object, text_ok: bool) -> float:
    requirement = f"must be a number of seconds {'>=' if key.allow_zero else '>'} 0"
    if isinstance(value, str) and text_ok:
        try:
            value = float(value.strip())
        except ValueError:
            raise _Bad(requirement) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{requirement}, not {_type_name(value)}")
    seconds = float(value)
    # inf/nan would disable timeouts or break arithmetic in ways nobody means to configure.
    if not math.isfinite(seconds):
        raise _Bad(f"{requirement} and finite", seconds)
    if seconds < 0 or (seconds == 0 and not key.allow_zero):
        raise _Bad(requirement, seconds)
    return seconds


def _to_address(value: object) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise _Bad(f"must be a host:port string, not {_type_name(value)}")
    result = _address_problem(value)
    if isinstance(result, str):
        raise _Bad(f"invalid address: {result}")
    return Address(*result)


def _to_address_key(key: _Key, value: object, text_ok: bool) -> Address:
    return _to_address(value)


def _to_optional_address(key: _Key, value: object, text_ok: bool) -> Address | None:
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    try:
        return _to_address(value)
    except _Bad as e:
        raise _Bad(f"{e.problem} (or 'off')") from None


_SEEDS_SEPARATORS = re.compile(r"[,\s]+")


def _to_address_list(key: _Key, value: object, text_ok: bool) -> tuple[Address, ...]:
    if isinstance(value, str) and text_ok:
        items: list[object] = [s for s in _SEEDS_SEPARATORS.split(value.strip()) if s]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _Bad(f"must be a list of host:port strings, not {_type_name(value)}")
    addresses = []
    for item in items:
        try:
            addresses.append(_to_address(item))
        except _Bad as e:
            raise _Bad(f"item {_show(item)}: {e.problem}") from None
    return tuple(addresses)


# A command name as Redis's ACL writes it: letters, digits and - _ . : (module commands such as
# ft.search), optionally one |subcommand.
_COMMAND_NAME = re.compile(r"[a-z0-9_.:-]+(\|[a-z0-9_.:-]+)?")


def _to_command_names(key: _Key, value: object, text_ok: bool) -> tuple[str, ...]:
    if isinstance(value, str) and text_ok:
        items: list[object] = [s for s in _SEEDS_SEPARATORS.split(value.strip()) if s]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _Bad(f"must be a list of command names, not {_type_name(value)}")
    names = []
    for item in items:
        if not isinstance(item, str):
            raise _Bad(f"item {_show(item)}: must be a command name, not {_type_name(item)}")
        name = item.strip().lower()
        if not _COMMAND_NAME.fullmatch(name):
            raise _Bad(
                f"item {_show(item)}: must be a command name as Redis's ACL writes it, "
                "e.g. 'flushall' or 'config|set'"
            )
        names.append(name)
    return tuple(dict.fromkeys(names))


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _to_bool(key: _Key, value: object, text_ok: bool) -> bool:
    if isinstance(value, str) and text_ok:
        text = value.strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise _Bad("must be true or false (or yes/no, on/off, 1/0)", value)
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, not {_type_name(value)}")
    return value


def _to_choice(key: _Key, value: object, text_ok: bool) -> str:
    words = " or ".join(repr(choice) for choice in key.choices)
    if not isinstance(value, str):
        raise _Bad(f"must be {words or 'a string'}, not {_type_name(value)}")
    if not key.choices:  # free text (a token): kept exactly as given
        return value
    if value.strip().lower() not in key.choices:
        raise _Bad(f"must be {words}")
    return value.strip().lower()


def _to_rules(key: _Key, value: object, text_ok: bool) -> tuple[dict[str, Any], ...]:
    if isinstance(value, str) and text_ok:
        try:
            value = json.loads(value)
        except ValueError as e:
            raise _Bad(f"must be a JSON array of rule objects ({e})") from None
    if not isinstance(value, list | tuple):
        raise _Bad(f"must be an array of rule tables, not {_type_name(value)}")
    for number, rule in enumerate(value, 1):
        try:
            parse_rule(rule, str(number), 0.0)
        except RuleError as e:
            raise _Bad(f"rule {number}: {e}", rule) from None
    return tuple(dict(rule) for rule in value)


def _to_address_map(key: _Key, value: object, text_ok: bool) -> AddressMap:
    if isinstance(value, AddressMap):
        return value
    if isinstance(value, str) and text_ok:
        items = [s for s in _SEEDS_SEPARATORS.split(value.strip()) if s]
        if any(item.count("=") != 1 for item in items):
            raise _Bad("must be announced=reachable items, e.g. 10.0.0.5:6379=127.0.0.1:7000")
        value = dict(item.split("=") for item in items)
    if not isinstance(value, Mapping):
        raise _Bad(f"must be a table of host:port = host:port, not {_type_name(value)}")
    pairs = []
    for announced, reachable in value.items():
        try:
            pairs.append((_to_address(announced), _to_address(reachable)))
        except _Bad as e:
            raise _Bad(f"item {_show(announced)}: {e.problem}") from None
    return AddressMap(tuple(pairs))


_CONVERTERS: dict[Any, Any] = {
    bool: _to_bool,
    str: _to_choice,
    int: _to_int,
    float: _to_seconds,
    Address: _to_address_key,
    Address | None: _to_optional_address,
    tuple[Address, ...]: _to_address_list,
    tuple[str, ...]: _to_command_names,
    tuple[dict[str, Any], ...]: _to_rules,
    AddressMap: _to_address_map,
}

_KEYS = _collect_keys()
_SECTIONS = tuple(f.name for f in dataclasses.fields(Config))


def _show(value: object) -> str:
    if isinstance(value, Address):
        text = repr(str(value))
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def show_value(dotted: str, value: object) -> str:
    """A value of key ``dotted`` as log lines and errors show it (a secret key's as a mask)."""
    return _show("<secret>" if _KEYS[dotted].secret else value)


def _convert(key: _Key, raw: object, source: str, text_ok: bool) -> object:
    try:
        return _CONVERTERS[key.type](key, raw, text_ok)
    except _Bad as e:
        shown = raw if e.shown is None else e.shown
        raise ConfigError(
            f"{key.dotted} = {show_value(key.dotted, shown)} (from {source}): {e.problem}",
            key=key.dotted,
            source=source,
        ) from None


def _suggest(dotted: str) -> str:
    """A " (did you mean ...?)" hint for an unknown dotted key, or ""."""
    name = dotted.rpartition(".")[2]
    # Right name, wrong section is the likeliest mistake; say exactly where it goes.
    same_name = [k for k in _KEYS.values() if k.name == name]
    if same_name:
        return f" (did you mean '{same_name[0].dotted}'?)"
    # Compare bare names: the shared "section." prefix would make anything look close.
    by_name = {k.name: k.dotted for k in _KEYS.values()}
    close = difflib.get_close_matches(name, list(by_name), n=1)
    return f" (did you mean '{by_name[close[0]]}'?)" if close else ""


# Keys that were, and what took their place: one set anywhere is an error saying so, never
# silently ignored (an unknown REDIS_AMBASSADOR_* variable is, so theirs are looked for).
_REMOVED = {
    "server.auth_failure_window": "failed AUTHs are no longer refused per client address but "
    "slowed per connection: see server.auth_max_failures, auth_failure_delay and "
    "auth_failure_max_delay",
}


def _removed_in_env(env: Mapping[str, str]) -> None:
    for dotted, instead in _REMOVED.items():
        name = ENV_PREFIX + dotted.partition(".")[2].upper()
        if env.get(name, "").strip():
            raise ConfigError(f"{name} sets '{dotted}', which is gone: {instead}", source=name)


def _unknown_key(dotted: str, where: str = "", source: str | None = None) -> ConfigError:
    place = f" {where}" if where else ""
    if dotted in _REMOVED:
        return ConfigError(
            f"'{dotted}'{place} is gone: {_REMOVED[dotted]}", key=dotted, source=source
        )
    return ConfigError(
        f"unknown key '{dotted}'{place}{_suggest(dotted)}", key=dotted, source=source
    )


def _read_file(path: str, named_by: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        problem = "not found"
    except IsADirectoryError:
        problem = "is a directory"
    except OSError as e:
        problem = f"cannot be read: {e.strerror or e}"
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML in {path}: {e}", source=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"invalid TOML in {path}: not UTF-8 ({e.reason})", source=path) from None
    raise ConfigError(f"config file {path} {problem}{named_by}", source=path)


def _file_values(path: str, named_by: str) -> list[tuple[_Key, object]]:
    found = []
    for section, table in _read_file(path, named_by).items():
        if section not in _SECTIONS:
            if not isinstance(table, dict):
                # A key written above any [section] header.
                raise _unknown_key(section, f"in {path}", path)
            close = difflib.get_close_matches(section, _SECTIONS, n=1)
            hint = f" (did you mean '[{close[0]}]'?)" if close else ""
            raise ConfigError(f"unknown section '[{section}]' in {path}{hint}", source=path)
        if not isinstance(table, dict):
            raise ConfigError(
                f"'{section}' in {path} must be a [{section}] table, not {_type_name(table)}",
                key=section,
                source=path,
            )
        for name, raw in table.items():
            dotted = f"{section}.{name}"
            if dotted not in _KEYS:
                raise _unknown_key(dotted, f"in {path}", path)
            found.append((_KEYS[dotted], raw))
    return found


# The Ambassador pattern's generic environment variable names, each mapped onto the config key
# it sets. They rank below the REDIS_AMBASSADOR_* names: the specific name wins when both are set.
PATTERN_ENV: Mapping[str, str] = {
    "REDIS_MASTER_HOST": "cluster.seeds",
    "TARGET_HOST": "cluster.seeds",
    "TARGET_PORT": "cluster.seeds",
    "MAX_CONNECTIONS": "upstream.pool_size",
    "RETRY_COUNT": "upstream.retry_attempts",
    "RETRY_INTERVAL": "upstream.retry_backoff",
    "CIRCUIT_BREAK_THRESHOLD": "upstream.breaker_failures",
}
DEFAULT_REDIS_PORT = 6379

_PORT_PROBLEM = "must be a port number from 1 to 65535"


def _port(text: str) -> int | None:
    text = text.strip()
    # isascii() too: str.isdigit() accepts digits like '²' that int() rejects.
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    return None


def _hosts(text: str, default_port: int) -> tuple[Address, ...]:
    """Comma/space-separated ``host`` or ``host:port`` items (``[v6]``, ``[v6]:port`` or a bare
    IPv6 address too); an item without a port gets ``default_port``."""
    addresses = []
    for item in (s for s in _SEEDS_SEPARATORS.split(text.strip()) if s):
        if item.startswith("[") and item.endswith("]"):
            host, port = item[1:-1], default_port
        elif item.startswith("[") or item.count(":") == 1:
            result = _address_problem(item)
            if isinstance(result, str):
                raise _Bad(f"item {item!r}: {result.split('; expected')[0]}", text)
            host, port = result
        else:  # a host name, an IPv4 address or a bare IPv6 address: no port given
            host, port = item, default_port
        if not host:
            raise _Bad(f"item {item!r}: missing host", text)
        addresses.append(Address(host, port))
    return tuple(addresses)


_INTERVAL = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*", re.IGNORECASE)


def _interval_seconds(text: str) -> float:
    """RETRY_INTERVAL: milliseconds, unless it names its unit ('200ms', '0.2s')."""
    match = _INTERVAL.fullmatch(text)
    if match is None:
        raise _Bad(
            "must be a duration >= 0: milliseconds (e.g. 200), or with its unit (200ms, 0.2s)",
            text,
        )
    number = float(match[1])
    return number if (match[2] or "ms").lower() == "s" else number / 1000


def _pattern_error(key: _Key, shown: object, source: str, problem: str) -> ConfigError:
    return ConfigError(
        f"{key.dotted} = {_show(shown)} (from {source}): {problem}", key=key.dotted, source=source
    )


def _pattern_values(env: Mapping[str, str]) -> list[tuple[_Key, object, str]]:
    """The values the pattern's names set, as (key, converted value, source)."""
    found: list[tuple[_Key, object, str]] = []
    seeds_key = _KEYS["cluster.seeds"]
    seeds: list[Address] = []
    sources: list[str] = []
    port_text = env.get("TARGET_PORT", "").strip()
    port = DEFAULT_REDIS_PORT
    if port_text:
        checked = _port(port_text)
        if checked is None:
            raise _pattern_error(seeds_key, port_text, "TARGET_PORT", _PORT_PROBLEM)
        port = checked
    for name, default_port in (("REDIS_MASTER_HOST", DEFAULT_REDIS_PORT), ("TARGET_HOST", port)):
        text = env.get(name, "")
        if not text.strip():
            continue
        try:
            seeds.extend(_hosts(text, default_port))
        except _Bad as e:
            raise _pattern_error(seeds_key, text, name, e.problem) from None
        sources.append("TARGET_HOST, TARGET_PORT" if name == "TARGET_HOST" and port_text else name)
    if port_text and not env.get("TARGET_HOST", "").strip():
        raise _pattern_error(
            seeds_key,
            port_text,
            "TARGET_PORT",
            "TARGET_PORT is the port of the TARGET_HOST nodes, and TARGET_HOST is not set",
        )
    if seeds:
        source = ", ".join(sources)
        found.append(
            (seeds_key, _convert(seeds_key, tuple(dict.fromkeys(seeds)), source, False), source)
        )

    for name, dotted in PATTERN_ENV.items():
        text = env.get(name, "")
        if dotted == "cluster.seeds" or not text.strip():
            continue
        key = _KEYS[dotted]
        if name == "RETRY_INTERVAL":
            try:
                seconds = _interval_seconds(text)
            except _Bad as e:
                raise _pattern_error(key, text, name, e.problem) from None
            found.append((key, _convert(key, seconds, name, text_ok=False), name))
        else:
            found.append((key, _convert(key, text, name, text_ok=True), name))
    return found


@dataclass(frozen=True)
class Setting:
    """One key of a loaded config, with where its value came from (``explain_config``)."""

    key: str  # dotted, e.g. "upstream.pool_size"
    value: object
    origin: str  # "default", "file", "env" or "flag"
    source: str  # "default", the file's path, the environment variable(s), or "command line"
    secret: bool = False  # never print the value: see ``shown``

    @property
    def shown(self) -> str:
        """The value as TOML writes it (so `config check`'s output reads back as a config
        file), or a mask for a secret key that is set (an unset one shows as unset)."""
        if self.secret and self.value:
            return '"<secret>"'
        return _toml_value(self.value)


def _toml_value(value: object) -> str:
    if value is None:  # server.admin = "off"
        return '"off"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):  # a chaos rule, as an inline table
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, AddressMap):
        pairs = (f"{_toml_value(a)} = {_toml_value(b)}" for a, b in value.pairs)
        return "{ " + ", ".join(pairs) + " }" if value else "{}"
    # Address and str; JSON's escapes are TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)


def explain_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    defaults: Mapping[str, object] | None = None,
) -> tuple[Config, list[Setting]]:
    """``load_config``, and every key's value and where it came from, in declaration order."""
    values, origins = _load_values(path, env, overrides, defaults)
    settings = [
        Setting(dotted, values[dotted][0], origins[dotted], values[dotted][1], key.secret)
        for dotted, key in _KEYS.items()
    ]
    return _build(values), settings


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    defaults: Mapping[str, object] | None = None,
) -> Config:
    """Build the Config from defaults < file < environment < overrides; raise ConfigError.

    ``path`` falls back to ``$REDIS_AMBASSADOR_CONFIG``; with neither, no file is read.
    ``env=None`` means ``os.environ``. ``overrides`` maps dotted keys to strings or typed
    values (as the CLI flags give them); a None value means "flag not given". ``defaults``
    replaces built-in defaults (``DEV_DEFAULTS`` for ``dev``), below every other source.
    Within the environment, the pattern's names (``PATTERN_ENV``) rank below
    ``REDIS_AMBASSADOR_*``.
    """
    return _build(_load_values(path, env, overrides, defaults)[0])


def _load_values(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    overrides: Mapping[str, object] | None,
    defaults: Mapping[str, object] | None,
) -> tuple[dict[str, tuple[object, str]], dict[str, str]]:
    """Every key's (value, source), and its origin: "default", "file", "env" or "flag"."""
    if env is None:
        env = os.environ
    values: dict[str, tuple[object, str]] = {
        dotted: (key.default, "default") for dotted, key in _KEYS.items()
    }
    origins = dict.fromkeys(_KEYS, "default")
    for dotted, raw in (defaults or {}).items():
        if dotted not in _KEYS:
            raise _unknown_key(dotted, "in the defaults")
        values[dotted] = (_convert(_KEYS[dotted], raw, "default", text_ok=False), "default")

    named_by = ""
    if path is None and env.get(CONFIG_ENV_VAR, "").strip():
        path = env[CONFIG_ENV_VAR].strip()
        named_by = f" (named by {CONFIG_ENV_VAR})"
    if path is not None:
        source = os.fspath(path)
        for key, raw in _file_values(source, named_by):
            values[key.dotted] = (_convert(key, raw, source, text_ok=False), source)
            origins[key.dotted] = "file"

    for key, value, source in _pattern_values(env):
        values[key.dotted] = (value, source)
        origins[key.dotted] = "env"

    _removed_in_env(env)
    for key in _KEYS.values():
        text = env.get(key.env, "")
        if text.strip():
            values[key.dotted] = (_convert(key, text, key.env, text_ok=True), key.env)
            origins[key.dotted] = "env"

    source = "command line"
    for dotted, raw in (overrides or {}).items():
        if dotted not in _KEYS:
            raise _unknown_key(dotted, f"from {source}", source)
        if raw is not None:
            key = _KEYS[dotted]
            values[dotted] = (_convert(key, raw, source, text_ok=True), source)
            origins[dotted] = "flag"

    _check_consistency(values)
    if values["cluster.backend"][0] != "cluster" and origins["commands.cluster_view"] == "default":
        # In front of one server, CLUSTER is answered as that server answers it ("cluster
        # support disabled"), unless the one-node cluster view is asked for.
        values["commands.cluster_view"] = ("real", "default")
    return values, origins


def _build(values: Mapping[str, tuple[object, str]]) -> Config:
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(Config):
        section_cls = typing.get_type_hints(Config)[section.name]
        sections[section.name] = section_cls(
            **{
                f.name: values[f"{section.name}.{f.name}"][0]
                for f in dataclasses.fields(section_cls)
            }
        )
    return Config(**sections)


def _check_consistency(values: Mapping[str, tuple[object, str]]) -> None:
    """Checks that involve more than one key."""
    soft, soft_source = values["server.max_output_buffer"]
    hard, hard_source = values["server.output_buffer_hard_limit"]
    assert isinstance(soft, int) and isinstance(hard, int)
    if hard < soft:
        raise ConfigError(
            f"server.output_buffer_hard_limit = {hard!r} (from {hard_source}): must be >= "
            f"server.max_output_buffer ({soft!r}, from {soft_source})",
            key="server.output_buffer_hard_limit",
            source=hard_source,
        )
    for secret, path in (
        ("upstream.password", "upstream.password_file"),
        ("cluster.sentinel_password", "cluster.sentinel_password_file"),
        ("server.requirepass", "server.requirepass_file"),
    ):
        if values[secret][0] and values[path][0]:
            raise ConfigError(
                f"{secret} (from {values[secret][1]}) and {path} (from {values[path][1]}) are "
                "both set: give the password one way",
                key=path,
                source=values[path][1],
            )
    mode, mode_source = values["server.client_auth"]
    if mode == "password" and not (
        values["server.requirepass"][0] or values["server.requirepass_file"][0]
    ):
        raise ConfigError(
            f"server.client_auth = 'password' (from {mode_source}) needs server.requirepass or "
            "server.requirepass_file",
            key="server.client_auth",
            source=mode_source,
        )
    backend, backend_source = values["cluster.backend"]
    seeds, seeds_source = values["cluster.seeds"]
    assert isinstance(seeds, tuple)
    if backend == "standalone" and len(seeds) > 1:
        raise ConfigError(
            f"cluster.seeds (from {seeds_source}): the standalone backend is one server, "
            f"so one seed, not {len(seeds)} (cluster.backend from {backend_source})",
            key="cluster.seeds",
            source=seeds_source,
        )
    policy, policy_source = values["upstream.read_policy"]
    if backend == "standalone" and policy == "replica":
        raise ConfigError(
            f"upstream.read_policy = 'replica' (from {policy_source}): the standalone backend "
            f"has no replicas, so every read would fail (cluster.backend from {backend_source})",
            key="upstream.read_policy",
            source=policy_source,
        )
    name, name_source = values["cluster.sentinel_master"]
    if backend == "sentinel" and not str(name).strip():
        raise ConfigError(
            f"cluster.sentinel_master = {name!r} (from {name_source}): the sentinel backend "
            "needs the name the sentinels monitor the master by",
            key="cluster.sentinel_master",
            source=name_source,
        )
    low, low_source = values["cluster.min_refresh_interval"]
    high, high_source = values["cluster.refresh_interval"]
    assert isinstance(low, float) and isinstance(high, float)
    if low > high:
        raise ConfigError(
            f"cluster.min_refresh_interval = {low!r} (from {low_source}): must be <= "
            f"cluster.refresh_interval ({high!r}, from {high_source})",
            key="cluster.min_refresh_interval",
            source=low_source,
        )


# What `redis-ambassador dev` starts from instead of the built-in defaults: a local cluster made
# for development and tests, where FLUSHALL, CONFIG SET and DEBUG are everyday tools, and faults
# may be injected (its cluster is nobody else's).
DEV_DEFAULTS: Mapping[str, object] = {
    "commands.deny": (),
    "chaos.enabled": True,
    "chaos.in_band": True,
}


def describe_keys() -> list[tuple[str, object, str]]:
    """Every key as (dotted name, default, one-line help), in declaration order."""
    return [(k.dotted, k.default, k.help) for k in _KEYS.values()]


def env_var_name(dotted: str) -> str:
    """The environment variable that sets ``dotted`` (e.g. ``upstream.pool_size``)."""
    try:
        return _KEYS[dotted].env
    except KeyError:
        raise _unknown_key(dotted) from None
