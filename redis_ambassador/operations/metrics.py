"""Prometheus metrics, read from the running objects at scrape time.

Nothing is observed per command except one dict increment on the hot path (commands by name):
every other figure is a counter the slow paths already keep, or state read when Prometheus
asks. Labels are bounded: command names from ``COMMAND`` (anything else is "unknown"), node
addresses from the topology, fixed words; never keys or client addresses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from redis_ambassador.routing.router import Router
from redis_ambassador.server.client import ClientRegistry
from redis_ambassador.upstream.breaker import State
from redis_ambassador.upstream.connection import UNOPENED
from redis_ambassador.upstream.pool import Upstream

_PREFIX = "redis_ambassador_"
BREAKER_VALUES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


class AmbassadorCollector(Collector):
    """Every metric of one running ambassador."""

    def __init__(self, router: Router, upstream: Upstream, clients: ClientRegistry) -> None:
        self._router = router
        self._upstream = upstream
        self._clients = clients
        self._loop = asyncio.get_running_loop()

    def collect(self) -> Iterator[Metric]:
        yield from self._clients_metrics()
        yield from self._commands()
        yield from self._nodes()
        yield from self._topology()
        yield from self._chaos()

    def _clients_metrics(self) -> Iterator[Metric]:
        """Client connections: how many, their bytes, why some were refused or closed."""
        clients = self._clients
        yield _gauge("client_connections", "clients connected now", len(clients.connected))
        yield _counter("client_connections", "client connections accepted", clients.accepted)
        yield _counter("client_bytes_received", "bytes read from clients", clients.bytes_in)
        yield _counter("client_bytes_sent", "reply bytes written to clients", clients.bytes_out)
        yield _counter(
            "client_connections_rejected",
            "client connections refused with '-ERR max number of clients reached' "
            "(server.max_clients)",
            clients.rejected,
        )
        yield _by_label(
            "client_disconnects",
            "clients the ambassador closed for a limit or bad input, by reason",
            "reason",
            clients.closed_by,
        )
        yield _by_label(
            "client_reads_paused",
            "times reading a client's commands was paused for backpressure, by reason",
            "reason",
            clients.paused_by,
        )
        failed = self._router.client_auth.failures
        yield _counter(
            "auth_failures", "AUTHs refused for a wrong password or user", failed.failures
        )
        yield _counter(
            "auth_failures_delayed",
            "failed AUTHs answered late: their connection had failed auth_max_failures before",
            failed.delayed,
        )
        yield _counter(
            "client_tls_handshake_failures",
            "TLS clients closed because their handshake failed (no or an untrusted certificate "
            "under mutual TLS, not TLS at all)",
            clients.tls_handshake_failures,
        )

    def _commands(self) -> Iterator[Metric]:
        """Commands by name, their errors, request latency, redirects and retries."""
        stats = self._router.stats
        yield _by_label(
            "commands",
            "commands received, by name",
            "command",
            dict(sorted(stats.commands().items())),
        )
        yield _by_label(
            "command_errors",
            "commands answered with an error (by a node or by the ambassador), by name",
            "command",
            dict(sorted(stats.errors.items())),
        )
        requests = HistogramMetricFamily(
            _PREFIX + "request_duration_seconds",
            "sampled: from reading a client's commands to writing their replies, by the "
            "first command's name",
            labels=["command"],
        )
        for name, histogram in sorted(stats.latency.items()):
            requests.add_metric([name], histogram.cumulative(), histogram.sum)
        yield requests
        yield _by_label("redirects", "MOVED/ASK replies followed", "kind", stats.redirects)
        yield _counter(
            "slow_requests",
            "requests answered slower than server.slow_log_threshold",
            stats.slow_requests,
        )
        yield _counter("retries", "commands scheduled to be sent again", stats.retries)
        yield _counter(
            "retry_budget_exhausted", "retries refused by the retry budget", stats.budget_exhausted
        )

    def _nodes(self) -> Iterator[Metric]:
        """Each node: its connections, commands pending and sent, breaker, latency."""
        connections = GaugeMetricFamily(
            _PREFIX + "upstream_connections", "open connections to each node", labels=["node"]
        )
        pending = GaugeMetricFamily(
            _PREFIX + "upstream_pending",
            "commands written or queued to each node, awaiting replies",
            labels=["node"],
        )
        sent = CounterMetricFamily(
            _PREFIX + "upstream_commands", "commands written to each node", labels=["node"]
        )
        breaker = GaugeMetricFamily(
            _PREFIX + "breaker_state",
            "each node's circuit breaker: 0 closed, 1 half-open, 2 open",
            labels=["node"],
        )
        node_latency = HistogramMetricFamily(
            _PREFIX + "node_latency_seconds",
            "sampled: from writing a command to a node to its reply",
            labels=["node"],
        )
        for pool in sorted(self._upstream.pools.values(), key=lambda p: p.name):
            conns = [c for c in [*pool.conns, *pool.private] if c is not UNOPENED]
            connections.add_metric([pool.name], sum(1 for c in conns if not c.closed))
            pending.add_metric([pool.name], sum(c.pending for c in conns))
            sent.add_metric([pool.name], pool.sent)
            breaker.add_metric([pool.name], BREAKER_VALUES[pool.breaker.state])
            node_latency.add_metric([pool.name], pool.latency.cumulative(), pool.latency.sum)
        yield from (connections, pending, sent, breaker, node_latency)

    def _topology(self) -> Iterator[Metric]:
        """The slot map: refreshes, its age and coverage, the masters in use, readiness."""
        stats = self._router.stats
        yield _by_label(
            "topology_refreshes", "topology refreshes, by result", "result", stats.refreshes
        )
        yield _gauge(
            "topology_config_epoch",
            "config epoch of the view in use (the highest among the nodes asked)",
            stats.epoch,
        )
        yield _gauge("topology_views", "nodes whose views the last refresh compared", stats.views)
        yield _by_label(
            "name_lookups",
            "host name lookups (seeds and nodes announced by name), by result",
            "result",
            self._upstream.names.lookups,
        )
        yield _gauge(
            "slot_map_age_seconds",
            "seconds since the slot map was last refreshed",
            self._loop.time() - stats.refreshed_at,
        )
        yield _gauge("slots_covered", "slots with a master", self._router.owners.covered)
        backend, masters = self._router.backend_masters()
        in_use = GaugeMetricFamily(
            _PREFIX + "backend_masters",
            "1 for each master commands go to now (a Sentinel failover moves it), by backend",
            labels=["backend", "master"],
        )
        for master in masters:
            in_use.add_metric([backend, master], 1)
        yield in_use
        yield _gauge("ready", "1 when every slot has a reachable master", self._ready())

    def _chaos(self) -> Iterator[Metric]:
        """Fault rules and the faults they injected (only with chaos enabled)."""
        faults = self._router.faults
        if faults is None:
            return
        injected = CounterMetricFamily(
            _PREFIX + "chaos_faults",
            "faults injected by chaos rules, by rule id and action",
            labels=["rule", "action"],
        )
        for (rule, action), n in sorted(faults.injected.items()):
            injected.add_metric([rule, action], n)
        yield injected
        yield _gauge("chaos_rules", "chaos rules in place (spent ones included)", len(faults.rules))

    def _ready(self) -> int:
        return int(self._router.unready() is None)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(_PREFIX + name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(_PREFIX + name, documentation, value=value)


def _by_label(
    name: str, documentation: str, label: str, values: dict[str, int]
) -> CounterMetricFamily:
    counter = CounterMetricFamily(_PREFIX + name, documentation, labels=[label])
    for value, n in values.items():
        counter.add_metric([value], n)
    return counter


def registry_for(router: Router, upstream: Upstream, clients: ClientRegistry) -> CollectorRegistry:
    """A registry of this ambassador's metrics plus the process's (``process_*``: memory, CPU,
    open file descriptors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AmbassadorCollector(router, upstream, clients))
    ProcessCollector(registry=registry)
    return registry
