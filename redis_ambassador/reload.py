"""SIGHUP's config reload, sans-IO: which keys changed, which take effect now, what to run with.

A key is live when the running ambassador reads it again after start: for each new client
connection (``Router.settings``), in ``Router.reconfigure``, or when it is needed (the drain on
SIGTERM, the idle-client sweep, each topology refresh); the secrets and the files holding them
(or the TLS certificates) are read again on each reload by rotation.py, whose findings
``Reload.amended`` folds in. Every other key was consumed once at
start -- the listener, the seeds, the node pools and their timeouts, the watchdog, the health
checks, the read policy -- so a changed value is reported as needing a restart and the
running value is kept: what runs is always exactly what the log says.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from redis_ambassador.config import Config, describe_keys, show_value
from redis_ambassador.rotation import ROTATED_KEYS

# A key not listed here needs a restart: a new key is reported, never silently ignored, until
# whoever makes it live (and applies it in Router.reconfigure) lists it.
LIVE_KEYS: frozenset[str] = (
    frozenset(
        {
            # Read by each new client connection: clients already connected keep theirs.
            "server.max_clients",
            "server.max_bulk_len",
            "server.max_multibulk_len",
            "server.max_query_buffer",
            "server.max_inflight_per_client",
            "server.max_output_buffer",
            "server.output_buffer_hard_limit",
            # Read when they are used.
            "server.drain_timeout",
            "server.idle_timeout",
            "server.output_buffer_soft_seconds",
            "server.slow_log_threshold",
            # cli reconfigures logging after each reload.
            "server.log_level",
            "server.log_format",
            # Router.reconfigure, and the topology refresher reads them each time.
            "cluster.refresh_interval",
            "cluster.min_refresh_interval",
            "cluster.refresh_nodes",
            "cluster.address_map",  # MOVED/ASK targets at once; the slot map from the next refresh
            "upstream.max_redirects",
            "upstream.retry_attempts",
            "upstream.retry_backoff",
            "upstream.retry_max_backoff",
            "upstream.retry_deadline",
            "upstream.retry_budget_percent",
            "upstream.retry_budget_floor",
            "upstream.idempotent",
            "upstream.breaker_failures",
            "upstream.breaker_error_percent",
            "upstream.breaker_window",
            "upstream.breaker_min_commands",
            "upstream.breaker_reset_timeout",
            "upstream.breaker_successes",
            "commands.split_cross_slot",
            "commands.cross_slot_transactions",  # read at each MULTI
            "commands.deny",
            "commands.allow",
            "commands.cluster_view",
        }
    )
    | ROTATED_KEYS
)  # the secrets and TLS files, read again on each reload (rotation.py)


@dataclass(frozen=True)
class Reload:
    """The outcome of reloading: the config to run with, and the changed keys by fate."""

    config: Config  # the running config with every changed live key taken from the new one
    applied: tuple[str, ...]  # changed live keys, now in effect
    pending: tuple[str, ...]  # changed keys that need a restart; config keeps their old value

    def restart_warning(self) -> str | None:
        """One line naming each changed key that needs a restart, or None when there is none."""
        if not self.pending:
            return None
        verb = "needs" if len(self.pending) == 1 else "need"
        running = ", ".join(
            f"{key} = {show_value(key, self.config.value(key))}" for key in self.pending
        )
        return f"config reload: {', '.join(self.pending)} {verb} a restart; still using {running}"

    def amended(self, running: Config, changed: Collection[str], failed: Collection[str]) -> Reload:
        """This plan once the secrets were read again (rotation.py): ``changed`` keys are in
        effect too (a file they name was rewritten, though the key's value is the same), and
        ``failed`` ones keep their running values (what they name could not be read)."""
        applied = [k for k in _ORDER if (k in self.applied or k in changed) and k not in failed]
        kept = {key: running.value(key) for key in failed}
        return Reload(self.config.with_values(kept), tuple(applied), self.pending)


# Every key, in declaration order: the order log lines name them in.
_ORDER = tuple(dotted for dotted, _, _ in describe_keys())


def plan_reload(running: Config, loaded: Config) -> Reload:
    """Compare the running config with a freshly loaded one (both already validated)."""
    applied: list[str] = []
    pending: list[str] = []
    for dotted in _ORDER:
        if running.value(dotted) == loaded.value(dotted):
            continue
        (applied if dotted in LIVE_KEYS else pending).append(dotted)
    kept = {dotted: running.value(dotted) for dotted in pending}
    return Reload(loaded.with_values(kept), tuple(applied), tuple(pending))
