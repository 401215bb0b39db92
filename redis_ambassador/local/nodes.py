"""Node-level chaos on a cluster this process started (``dev``, the pytest plugin): kill, pause,
resume, restart or fail over a node, migrate slots live. These act on real redis-server
processes through LocalCluster, so every call blocks: the admin listener runs them in a thread,
one at a time."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from redis.exceptions import RedisError

from redis_ambassador.faults.control import NODE_ACTIONS, NodeActionError, parse_slots
from redis_ambassador.local.cluster import LocalCluster, LocalClusterError, LocalNode

log = logging.getLogger("redis_ambassador.chaos")

_REJOIN_TIMEOUT = 30.0  # seconds a restarted node has to rejoin a healthy cluster


class NodeActions:  # implements faults.control.NodeControl
    """Kill/pause/resume/restart/failover and live slot migration on a LocalCluster, by node
    address ("host:port"); thread-safe (one action at a time)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self._lock = threading.Lock()

    def describe(self) -> list[dict[str, Any]]:
        """Each node: address, role, state ("running", "paused" or "killed"), pid."""
        with self._lock:
            # Refreshes every node's role; failing that, roles as last known (a half-dead
            # cluster is still worth describing).
            with contextlib.suppress(RedisError, LocalClusterError):
                self.cluster.masters()
            return [self._describe(node) for node in self.cluster.nodes]

    def act(self, address: str, action: str) -> dict[str, Any]:
        """Do ``action`` to the node at ``address``; returns the node's description after it."""
        if action not in NODE_ACTIONS:
            raise NodeActionError(400, f"action: must be one of {', '.join(NODE_ACTIONS)}")
        with self._lock:
            node = self._node(address)
            log.info("chaos: %s node %s", action, address)
            try:
                getattr(self, f"_{action}")(node)
            except (RedisError, LocalClusterError) as exc:
                raise NodeActionError(409, f"{action} {address}: {exc}") from None
            return self._describe(node)

    def migrate(self, slots: object, to: object) -> dict[str, Any]:
        """Move the slot range ``slots`` ("0-99") and its keys to master ``to``, live."""
        wanted = parse_slots(slots)
        if not isinstance(to, str):
            raise NodeActionError(400, 'to: must be the target master\'s "HOST:PORT"')
        with self._lock:
            target = self._node(to)
            log.info("chaos: migrating slots %s to %s", slots, to)
            try:
                moved = self.cluster.migrate(wanted, target)
            except (RedisError, LocalClusterError) as exc:
                raise NodeActionError(409, f"migrate to {to}: {exc}") from None
        return {"moved": moved, "slots": f"{wanted.start}-{wanted.stop - 1}", "to": to}

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node agrees on a complete, ok cluster (LocalClusterError if not)."""
        with self._lock:
            self.cluster.wait_healthy(timeout)

    # -- the actions ---------------------------------------------------------------------

    def _kill(self, node: LocalNode) -> None:
        self._require_running(node, "kill")
        self.cluster.kill(node)

    def _pause(self, node: LocalNode) -> None:
        self._require_running(node, "pause")
        self.cluster.pause(node)

    def _resume(self, node: LocalNode) -> None:
        if not self.cluster.is_paused(node):
            raise NodeActionError(409, f"resume {node.address}: it is not paused")
        self.cluster.resume(node)

    def _restart(self, node: LocalNode) -> None:
        """Returns once the node is back in the cluster: until then it still believes its
        nodes.conf (a failed-over master thinks it owns its old slots)."""
        self.cluster.restart(node)
        self.cluster.wait_healthy(_REJOIN_TIMEOUT)

    def _failover(self, node: LocalNode) -> None:
        """A replica takes over from its master; given a master, one of its replicas does."""
        self._require_running(node, "failover")
        self.cluster.masters()  # roles change with failovers: ask the cluster, not our memory
        if node.role == "replica":
            self.cluster.failover(node)
            return
        replicas = [r for r in self.cluster.replicas_of(node) if not self.cluster.is_paused(r)]
        if not replicas:
            raise NodeActionError(409, f"failover {node.address}: it has no running replica")
        self.cluster.failover(replicas[0])

    # -- helpers -------------------------------------------------------------------------

    def _node(self, address: str) -> LocalNode:
        try:
            return self.cluster.node(address)
        except LocalClusterError:
            known = ", ".join(n.address for n in self.cluster.nodes)
            raise NodeActionError(404, f"no node {address} in this cluster ({known})") from None

    def _require_running(self, node: LocalNode, action: str) -> None:
        if not node.is_running():
            raise NodeActionError(409, f"{action} {node.address}: it is not running (restart it)")
        if self.cluster.is_paused(node) and action != "kill":
            raise NodeActionError(409, f"{action} {node.address}: it is paused (resume it)")

    def _describe(self, node: LocalNode) -> dict[str, Any]:
        if not node.is_running():
            state = "killed"
        elif self.cluster.is_paused(node):
            state = "paused"
        else:
            state = "running"
        return {"address": node.address, "role": node.role, "state": state, "pid": node.pid}
