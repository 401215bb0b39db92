"""A real Redis Cluster on localhost, for the dev command, the tests and the benchmark.

Synchronous on purpose (plain subprocess + redis-py) so it works from pytest fixtures,
scripts and threads alike, without an event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["ClusterTLS", "LocalCluster", "LocalClusterError", "LocalNode", "RedisServerNotFound"]

SLOT_COUNT = 16384
BUS_PORT_OFFSET = 10000

# Below the Linux ephemeral range (32768+) for both the port and its bus port, so outgoing
# connections never squat on them; randomised so concurrent runs rarely pick the same one.
_PORT_RANGE = (12000, 32768 - BUS_PORT_OFFSET)
_POLL_INTERVAL = 0.05
_READY_TIMEOUT = 15.0
_FORM_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_BIND_ATTEMPTS = 8

_INSTALL_HINT = (
    "install it with `sudo apt-get install -y redis-server redis-tools` "
    "(Debian/Ubuntu), or run `scripts/bootstrap` from the repository root"
)

# Ports handed out to clusters in this process, so two clusters started back to back cannot
# both pick a port the first has chosen but not yet bound.
_reserved_ports: set[int] = set()
_reserved_lock = threading.Lock()


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when its parent exits."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class LocalClusterError(RuntimeError):
    """The local cluster could not be started or never reached the expected state."""


class RedisServerNotFound(LocalClusterError):
    """No usable redis-server binary."""


class _PortInUse(Exception):
    """A node exited at start-up because its port or bus port was taken."""


@dataclass(frozen=True)
class ClusterTLS:
    """TLS for every node: it listens on TLS only (``port 0``, ``tls-port``), and the cluster
    bus and replication use TLS too (``tls-cluster``, ``tls-replication``)."""

    cert_file: Path  # each node's certificate, also presented to the others as a client's
    key_file: Path
    ca_file: Path  # the CAs a node trusts: the other nodes' certificates and its clients'
    auth_clients: bool = True  # tls-auth-clients: a client must present a certificate

    def conf_lines(self) -> list[str]:
        return [
            "tls-cluster yes",
            "tls-replication yes",
            f"tls-cert-file {self.cert_file}",
            f"tls-key-file {self.key_file}",
            f"tls-ca-cert-file {self.ca_file}",
            f"tls-auth-clients {'yes' if self.auth_clients else 'no'}",
        ]

    def client_options(self) -> dict[str, Any]:
        """redis-py's options for a client of the nodes (with the nodes' own certificate; the
        chain is verified, not the name: a test may give nodes certificates naming others)."""
        return {
            "ssl": True,
            "ssl_certfile": str(self.cert_file),
            "ssl_keyfile": str(self.key_file),
            "ssl_ca_certs": str(self.ca_file),
            "ssl_check_hostname": False,
        }


@dataclass(eq=False)
class LocalNode:
    """One redis-server process of a LocalCluster."""

    host: str
    port: int
    node_id: str
    role: str  # "master" or "replica", refreshed from the cluster's own view
    process: subprocess.Popen[bytes] | None
    dir: Path
    log_path: Path
    conf_path: Path = field(repr=False)

    @property
    def address(self) -> str:
        """The node as "host:port"."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Pid of the current process, or None if never started."""
        return self.process.pid if self.process is not None else None

    def is_running(self) -> bool:
        """True while the process exists (paused counts as running)."""
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    """Starts, forms, inspects and tears down a throwaway Redis Cluster of real processes."""

    def __init__(
        self,
        masters: int = 3,
        replicas_per_master: int = 1,
        *,
        redis_server: str | None = None,
        base_dir: str | None = None,
        host: str = "127.0.0.1",
        node_timeout_ms: int = 2000,
        password: str | None = None,
        tls: ClusterTLS | None = None,
    ) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        if replicas_per_master < 0:
            raise ValueError("replicas_per_master must be >= 0")
        self.masters_count = masters
        self.replicas_per_master = replicas_per_master
        self.redis_server = redis_server
        self.base_dir = base_dir
        self.host = host
        self.node_timeout_ms = node_timeout_ms
        # requirepass (and masterauth) of every node: a password-protected cluster.
        self.password = password
        self.tls = tls
        self._nodes: list[LocalNode] = []
        self._paused: set[int] = set()  # ports of SIGSTOPped nodes: never query them
        self._dir: Path | None = None
        self._owns_dir = False
        self._binary: str | None = None
        self._version: tuple[int, int, int] = (0, 0, 0)
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Launch every node and form the cluster; returns once it is fully healthy."""
        if self._started:
            raise LocalClusterError("LocalCluster is already started")
        self._binary = self._find_binary()
        self._version = _server_version(self._binary)
        self._started = True
        # Registered before the first Popen so a Ctrl-C mid-start still cleans up.
        atexit.register(self.stop)
        try:
            self._prepare_dirs()
            self._launch_all()
            self._form()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate every process, then remove the data directory if we created it."""
        if not self._started:
            return
        procs = [n.process for n in self._nodes if n.process is not None]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        # A SIGSTOPped process only acts on SIGTERM once continued.
        for proc in procs:
            _signal_group(proc, signal.SIGCONT)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            # Also reaches fork children (RDB/replication) that outlive their parent.
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self._paused.clear()
        _release_ports(p for n in self._nodes for p in (n.port, n.port + BUS_PORT_OFFSET))
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self._owns_dir = False
        self._started = False
        atexit.unregister(self.stop)

    # -- introspection -----------------------------------------------------------------

    @property
    def nodes(self) -> list[LocalNode]:
        """All nodes: masters first as started, then replicas (roles may change later)."""
        return list(self._nodes)

    @property
    def data_dir(self) -> Path | None:
        """Directory holding the node sub-directories while started."""
        return self._dir

    @property
    def seeds(self) -> list[str]:
        """Addresses ("host:port") of the current masters, for use as cluster seeds."""
        return [n.address for n in self.masters()]

    def masters(self) -> list[LocalNode]:
        """Nodes that are masters according to the cluster right now."""
        self._refresh_roles()
        return [n for n in self._nodes if n.role == "master"]

    def replicas(self) -> list[LocalNode]:
        """Nodes that are replicas according to the cluster right now."""
        self._refresh_roles()
        return [n for n in self._nodes if n.role == "replica"]

    def master_for_slot(self, slot: int) -> LocalNode:
        """The node that owns `slot`, asked live via CLUSTER SLOTS. Right after a failover
        some nodes still name the old master (gossip takes a moment), so a view naming a node
        that is down is passed over for one naming a running node."""
        if not 0 <= slot < SLOT_COUNT:
            raise ValueError(f"slot {slot} out of range 0..{SLOT_COUNT - 1}")
        stale: LocalNode | None = None
        for node in self._queryable():
            try:
                ranges = self._cluster_slots(node)
            except redis.RedisError:
                continue
            owner = next((m for start, end, m, _ in ranges if start <= slot <= end), None)
            if owner is None:
                raise LocalClusterError(f"slot {slot} is not served according to {node.address}")
            master = self._node_by_id(owner)
            if master.is_running():
                return master
            stale = stale or master
        if stale is not None:
            return stale
        raise LocalClusterError("no reachable node to ask CLUSTER SLOTS")

    def node(self, address: str) -> LocalNode:
        """The node at "host:port" (``localhost`` names this cluster's host too)."""
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise LocalClusterError(f"{address!r} is not host:port")
        return self._node_by_address(host, int(port))

    def is_paused(self, node: LocalNode) -> bool:
        """True while the node is SIGSTOPped (``pause`` without ``resume``)."""
        return node.port in self._paused

    def replicas_of(self, master: LocalNode) -> list[LocalNode]:
        """The running replicas of ``master``, as the cluster sees them now."""
        for asked in self._queryable():
            try:
                lines = self._command(asked, "CLUSTER", "REPLICAS", master.node_id)
            except redis.RedisError:
                continue
            ids = {_NodeEntry.parse(line).node_id for line in lines}
            return [n for n in self._nodes if n.node_id in ids and n.is_running()]
        raise LocalClusterError("no reachable node to ask CLUSTER REPLICAS")

    def client(self, node: LocalNode, **options: Any) -> redis.Redis:
        """A plain redis-py client to one node (bytes responses, no silent retries; signed in
        with the cluster's password, if it has one; over TLS for a TLS cluster)."""
        defaults = {"password": self.password, **self._tls_options()}
        return plain_client(node.host, node.port, **{**defaults, **options})

    # -- node actions ------------------------------------------------------------------

    def kill(self, node: LocalNode) -> None:
        """SIGKILL the node, like a machine dying; reaps it before returning."""
        proc = self._require_process(node)
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        self._paused.discard(node.port)

    def pause(self, node: LocalNode) -> None:
        """SIGSTOP the node: it keeps its sockets but stops answering."""
        _signal_group(self._require_process(node), signal.SIGSTOP)
        self._paused.add(node.port)

    def resume(self, node: LocalNode) -> None:
        """SIGCONT a paused node."""
        _signal_group(self._require_process(node), signal.SIGCONT)
        self._paused.discard(node.port)

    def restart(self, node: LocalNode) -> None:
        """(Re)start the node from its config and nodes.conf; waits until it answers."""
        if node.is_running():
            assert node.process is not None
            _signal_group(node.process, signal.SIGKILL)
            node.process.wait()
        self._paused.discard(node.port)
        self._spawn(node)
        try:
            self._wait_ready(node)
        except _PortInUse:
            # The rest of the cluster knows this node by its port, so it cannot move.
            raise LocalClusterError(
                f"cannot restart {node.address}: its port or bus port is now in use by "
                f"another process (log: {node.log_path})"
            ) from None

    def restart_elsewhere(self, node: LocalNode, host: str | None = None) -> None:
        """Restart the node (same node id and nodes.conf) at a new address: on ``host`` at
        the same port (a pod back with a new IP; it announces that address), or without one on
        a new free port. The other nodes learn it from the node's gossip; this waits until the
        node answers, not for that."""
        if node.is_running():
            assert node.process is not None
            _signal_group(node.process, signal.SIGKILL)
            node.process.wait()
        self._paused.discard(node.port)
        if host is not None:
            node.host = host
            self._write_conf(node)
            self.restart(node)
            return
        old = node.port
        for attempt in range(_BIND_ATTEMPTS):
            node.port = _reserve_ports(1, node.host)[0]
            self._write_conf(node)
            self._spawn(node)
            try:
                self._wait_ready(node)
                break
            except _PortInUse:
                _release_ports([node.port, node.port + BUS_PORT_OFFSET])
                if attempt == _BIND_ATTEMPTS - 1:
                    raise LocalClusterError(
                        f"no free port to restart {node.node_id} on (log: {node.log_path})"
                    ) from None
        _release_ports([old, old + BUS_PORT_OFFSET])

    def failover(self, replica: LocalNode, timeout: float = 30.0) -> None:
        """CLUSTER FAILOVER on `replica`; waits for the role swap and a healthy cluster."""
        info = self._info(replica, "replication")
        if info.get("role") != "slave":
            raise LocalClusterError(f"{replica.address} is not a replica")
        old_master = self._node_by_address(str(info["master_host"]), int(info["master_port"]))
        self._command(replica, "CLUSTER", "FAILOVER")
        deadline = time.monotonic() + timeout

        def swapped() -> str | None:
            if self._role(replica) != "master":
                return f"{replica.address} is not master yet"
            if old_master.is_running() and self._role(old_master) != "slave":
                return f"old master {old_master.address} has not become a replica yet"
            return None

        self._wait(f"failover to {replica.address}", swapped, deadline, [replica, old_master])
        self.wait_healthy(max(0.0, deadline - time.monotonic()))

    def migrate(self, slots: Iterable[int], to: LocalNode, timeout: float = 60.0) -> int:
        """Move ``slots`` and their keys to master ``to`` while clients keep using them, as
        ``redis-cli --cluster reshard`` does (IMPORTING/MIGRATING, MIGRATE the keys in
        batches, then SETSLOT NODE on the target, the source and every other master); waits
        for a healthy cluster and returns how many slots moved (those ``to`` owned are left)."""
        deadline = time.monotonic() + timeout
        wanted = sorted(set(slots))
        if any(not 0 <= slot < SLOT_COUNT for slot in wanted):
            raise ValueError(f"slots must be within 0..{SLOT_COUNT - 1}")
        live = self._queryable()
        masters = [m for m in self.masters() if m in live]
        if to not in masters:
            raise LocalClusterError(f"{to.address} is not a running master")
        owners = self._slot_owners(masters[0])
        moved = 0
        admins = {node.port: self._admin(node, timeout=10.0) for node in masters}
        try:
            target = admins[to.port]
            for slot in wanted:
                source_node = owners[slot]
                if source_node is to:
                    continue
                if source_node not in masters:
                    raise LocalClusterError(f"slot {slot}'s master {source_node.address} is down")
                source = admins[source_node.port]
                target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_node.node_id)
                source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", to.node_id)
                while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                    source.execute_command(
                        "MIGRATE", to.host, to.port, "", 0, 10_000, "KEYS", *keys
                    )
                # The target first: from then on it answers for the slot, and the source
                # sends its clients there (MOVED) once it knows too.
                for node in [to, source_node, *(m for m in masters if m not in (to, source_node))]:
                    admins[node.port].execute_command(
                        "CLUSTER", "SETSLOT", slot, "NODE", to.node_id
                    )
                moved += 1
        finally:
            for admin in admins.values():
                admin.close()
        self.wait_healthy(max(0.0, deadline - time.monotonic()))
        return moved

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every live node agrees on a complete, ok cluster with synced replicas."""
        live = self._queryable()
        self._wait("cluster healthy", self._health_problem, time.monotonic() + timeout, live)
        self._refresh_roles()

    # -- start-up ----------------------------------------------------------------------

    def _find_binary(self) -> str:
        wanted = self.redis_server or "redis-server"
        found = shutil.which(wanted)
        if found is None:
            where = f"at {wanted!r}" if self.redis_server else "on PATH"
            raise RedisServerNotFound(f"redis-server not found {where}; {_INSTALL_HINT}")
        return found

    def _prepare_dirs(self) -> None:
        self._nodes = []
        if self.base_dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="redis-ambassador-"))
            self._owns_dir = True
        else:
            self._dir = Path(self.base_dir)
            self._dir.mkdir(parents=True, exist_ok=True)
            self._owns_dir = False
        total = self.masters_count * (1 + self.replicas_per_master)
        ports = _reserve_ports(total, self.host)
        for index, port in enumerate(ports):
            node_dir = self._dir / f"node-{index}"
            node_dir.mkdir(exist_ok=True)
            # start() always forms a fresh cluster; stale state from a reused base_dir
            # would make the node rejoin an old one.
            for stale in ("nodes.conf", "dump.rdb", "redis.log"):
                (node_dir / stale).unlink(missing_ok=True)
            node = LocalNode(
                host=self.host,
                port=port,
                node_id="",
                role="master" if index < self.masters_count else "replica",
                process=None,
                dir=node_dir,
                log_path=node_dir / "redis.log",
                conf_path=node_dir / "redis.conf",
            )
            self._write_conf(node)
            self._nodes.append(node)

    def _write_conf(self, node: LocalNode) -> None:
        ports = [f"port {node.port}"]
        if self.tls is not None:
            ports = ["port 0", f"tls-port {node.port}", *self.tls.conf_lines()]
        lines = [
            *ports,
            f"bind {node.host}",
            "protected-mode no",
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout_ms}",
            "appendonly no",
            'save ""',
            "daemonize no",
            f"dir {node.dir}",
            f"logfile {node.log_path}",
            # Replicas sync at once instead of waiting 5 s for more replicas to batch with.
            "repl-diskless-sync-delay 0",
        ]
        if node.host != self.host:  # moved by restart_elsewhere: tell the others where it is
            lines.append(f"cluster-announce-ip {node.host}")
        if self._version >= (7, 0, 0):
            lines.append("enable-debug-command yes")
        if self.password is not None:
            lines += [f"requirepass {self.password}", f"masterauth {self.password}"]
        node.conf_path.write_text("\n".join(lines) + "\n")

    def _spawn(self, node: LocalNode) -> None:
        assert self._binary is not None
        node.process = subprocess.Popen(
            [self._binary, str(node.conf_path)],
            cwd=node.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Own group: a terminal Ctrl-C reaches only us, and we tear down in order.
            process_group=0,
            # If we die without running stop() (SIGKILL, CI timeout), the kernel ends the node.
            preexec_fn=_die_with_parent,
        )

    def _launch_all(self) -> None:
        for node in self._nodes:
            self._spawn(node)
        for node in self._nodes:
            for attempt in range(_BIND_ATTEMPTS):
                try:
                    self._wait_ready(node)
                    break
                except _PortInUse:
                    if attempt == _BIND_ATTEMPTS - 1:
                        raise LocalClusterError(
                            f"could not find free ports for a node after {_BIND_ATTEMPTS} "
                            f"attempts (log: {node.log_path})"
                        ) from None
                    _release_ports([node.port, node.port + BUS_PORT_OFFSET])
                    node.port = _reserve_ports(1, self.host)[0]
                    node.log_path.unlink(missing_ok=True)
                    self._write_conf(node)
                    self._spawn(node)
            node.node_id = str(self._command(node, "CLUSTER", "MYID"))

    def _wait_ready(self, node: LocalNode) -> None:
        """Poll until the node answers as *our* process (not another one on that port)."""
        proc = self._require_process(node)
        with self._admin(node, timeout=1.0) as admin:
            self._poll_ready(node, proc, admin)

    def _poll_ready(
        self, node: LocalNode, proc: subprocess.Popen[bytes], admin: redis.Redis
    ) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                log = _read_log(node.log_path)
                if "Address already in use" in log:
                    raise _PortInUse(node.port)
                raise LocalClusterError(
                    f"redis-server for {node.address} exited with code {proc.returncode} "
                    f"during start-up (log: {node.log_path}):\n{_tail(log)}"
                )
            try:
                if admin.ping() and int(admin.info("server")["process_id"]) == proc.pid:
                    return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if time.monotonic() >= deadline:
                raise LocalClusterError(
                    f"redis-server for {node.address} never answered PING within "
                    f"{_READY_TIMEOUT:.0f}s (log: {node.log_path})"
                )
            time.sleep(_POLL_INTERVAL)

    def _form(self) -> None:
        deadline = time.monotonic() + _FORM_TIMEOUT
        masters = self._nodes[: self.masters_count]
        for master, (start, end) in zip(masters, _slot_ranges(len(masters)), strict=True):
            if self._version >= (7, 0, 0):
                self._command(master, "CLUSTER", "ADDSLOTSRANGE", start, end)
            else:
                self._command(master, "CLUSTER", "ADDSLOTS", *range(start, end + 1))
        for other in self._nodes[1:]:
            self._command(self._nodes[0], "CLUSTER", "MEET", other.host, other.port)
        self._wait("every node knows every other", self._meet_problem, deadline, self._nodes)
        pairs = [
            (replica, masters[r // self.replicas_per_master])
            for r, replica in enumerate(self._nodes[self.masters_count :])
        ]
        for replica, master in pairs:
            self._command(replica, "CLUSTER", "REPLICATE", master.node_id)

        def unlinked() -> str | None:
            for replica, master in pairs:
                repl = self._info(replica, "replication")
                if repl.get("master_port") != master.port:
                    return f"{replica.address} is not replicating {master.address} yet"
                if repl.get("master_link_status") != "up":
                    return f"{replica.address} has master_link_status:down"
            return None

        self._wait("replicas linked to their masters", unlinked, deadline, self._nodes)
        if pairs:
            # CLUSTER SLOTS hides replicas whose offset is still 0, and an idle master only
            # advances it with the 10 s replication PING. FLUSHALL on the still-empty
            # masters is a propagated no-op that advances it now.
            for master in masters:
                self._command(master, "FLUSHALL")
        self._wait("cluster healthy", self._health_problem, deadline, self._nodes)
        self._refresh_roles()

    # -- health checks: each returns None when satisfied, else what is still wrong -------

    def _meet_problem(self) -> str | None:
        for node in self._nodes:
            entries = self._cluster_nodes(node)
            if len(entries) != len(self._nodes):
                return f"{node.address} knows {len(entries)} of {len(self._nodes)} nodes"
            for entry in entries:
                if {"handshake", "noaddr"} & entry.flags or entry.link != "connected":
                    return f"{node.address} still handshaking with {entry.address}"
        return None

    def _health_problem(self) -> str | None:
        live = self._queryable()
        if not live:
            return "no node is running"
        live_ids = {n.node_id for n in live}
        reference: list[tuple[int, int, str, frozenset[str]]] | None = None
        replicas_ids: set[str] = set()
        for node in live:
            info = self._cluster_info(node)
            if info.get("cluster_state") != "ok":
                return f"{node.address} reports cluster_state:{info.get('cluster_state')}"
            entries = self._cluster_nodes(node)
            if len(entries) != len(self._nodes):
                return f"{node.address} knows {len(entries)} of {len(self._nodes)} nodes"
            for entry in entries:
                if entry.node_id in live_ids and {"fail", "fail?", "handshake"} & entry.flags:
                    return f"{node.address} sees live node {entry.address} as {entry.flags}"
            view = self._cluster_slots(node)
            if reference is None:
                reference = view
                if problem := _coverage_problem(view):
                    return f"{node.address}: {problem}"
                dead = {master for _s, _e, master, _r in view} - live_ids
                if dead:
                    return f"slots still owned by stopped node(s) {sorted(dead)}"
            elif view != reference:
                return f"{node.address} disagrees with {live[0].address} on CLUSTER SLOTS"
            repl = self._info(node, "replication")
            # Just after a restart INFO still says master until the cluster cron re-attaches
            # the node, so its own CLUSTER NODES entry decides whether it is a replica.
            myself = next(e for e in entries if "myself" in e.flags)
            if "slave" in myself.flags or repl.get("role") == "slave":
                if repl.get("role") != "slave" or repl.get("master_link_status") != "up":
                    return (
                        f"replica {node.address} has master_link_status:"
                        f"{repl.get('master_link_status')}"
                    )
                replicas_ids.add(node.node_id)
        # CLUSTER SLOTS omits a replica until its offset has been gossiped, so "agree" alone
        # would pass with replicas still invisible to clients.
        assert reference is not None
        listed = {rid for _s, _e, _m, replicas in reference for rid in replicas}
        if missing := replicas_ids - listed:
            return f"replica(s) {sorted(missing)} not yet listed in CLUSTER SLOTS"
        return None

    def _wait(
        self,
        what: str,
        problem: Callable[[], str | None],
        deadline: float,
        involved: Iterable[LocalNode],
    ) -> None:
        last = "not checked yet"
        while True:
            try:
                current = problem()
            except redis.RedisError as exc:
                current = f"{type(exc).__name__}: {exc}"
            if current is None:
                return
            last = current
            if time.monotonic() >= deadline:
                logs = ", ".join(str(n.log_path) for n in involved)
                raise LocalClusterError(
                    f"timed out waiting for: {what}; last problem: {last} (logs: {logs})"
                )
            time.sleep(_POLL_INTERVAL)

    # -- small helpers -----------------------------------------------------------------

    def _admin(self, node: LocalNode, timeout: float = 5.0) -> redis.Redis:
        # No retries: redis-py's default backoff would hide a dead node for seconds.
        return redis.Redis(
            host=node.host,
            port=node.port,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            password=self.password,
            **self._tls_options(),
        )

    def _tls_options(self) -> dict[str, Any]:
        return {} if self.tls is None else self.tls.client_options()

    def _queryable(self) -> list[LocalNode]:
        return [n for n in self._nodes if n.is_running() and n.port not in self._paused]

    def _require_process(self, node: LocalNode) -> subprocess.Popen[bytes]:
        if node not in self._nodes or node.process is None:
            raise LocalClusterError(f"{node.address} is not a node of this cluster")
        return node.process

    def _node_by_id(self, node_id: str) -> LocalNode:
        for node in self._nodes:
            if node.node_id == node_id:
                return node
        raise LocalClusterError(f"unknown node id {node_id}")

    def _node_by_address(self, host: str, port: int) -> LocalNode:
        for node in self._nodes:
            if node.port == port and host in (node.host, "localhost"):
                return node
        raise LocalClusterError(f"unknown node {host}:{port}")

    def _command(self, node: LocalNode, *args: Any) -> Any:
        with self._admin(node) as admin:
            return admin.execute_command(*args)

    def _info(self, node: LocalNode, section: str) -> dict[str, Any]:
        with self._admin(node) as admin:
            return dict(admin.info(section))

    def _role(self, node: LocalNode) -> str:
        return str(self._command(node, "ROLE")[0])

    def _cluster_info(self, node: LocalNode) -> dict[str, str]:
        raw = str(self._command(node, "CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)

    def _cluster_nodes(self, node: LocalNode) -> list[_NodeEntry]:
        raw = str(self._command(node, "CLUSTER", "NODES"))
        return [_NodeEntry.parse(line) for line in raw.splitlines() if line.strip()]

    def _cluster_slots(self, node: LocalNode) -> list[tuple[int, int, str, frozenset[str]]]:
        raw = self._command(node, "CLUSTER", "SLOTS")
        view = [
            (int(r[0]), int(r[1]), str(r[2][2]), frozenset(str(x[2]) for x in r[3:])) for r in raw
        ]
        return sorted(view)

    def _slot_owners(self, node: LocalNode) -> list[LocalNode]:
        """The master of each slot (index) according to ``node``."""
        owners: list[LocalNode | None] = [None] * SLOT_COUNT
        for start, end, master, _replicas in self._cluster_slots(node):
            owners[start : end + 1] = [self._node_by_id(master)] * (end - start + 1)
        if None in owners:
            raise LocalClusterError(f"some slots have no master according to {node.address}")
        return owners  # type: ignore[return-value]

    def _refresh_roles(self) -> None:
        for node in self._queryable():
            try:
                entries = self._cluster_nodes(node)
            except redis.RedisError:
                continue
            by_id = {e.node_id: e for e in entries}
            for known in self._nodes:
                entry = by_id.get(known.node_id)
                if entry is not None and "master" in entry.flags:
                    known.role = "master"
                elif entry is not None and "slave" in entry.flags:
                    known.role = "replica"
            return


@dataclass(frozen=True)
class _NodeEntry:
    """One line of CLUSTER NODES."""

    node_id: str
    address: str
    flags: frozenset[str]
    link: str

    @classmethod
    def parse(cls, line: str) -> _NodeEntry:
        parts = line.split()
        return cls(parts[0], parts[1].split("@")[0], frozenset(parts[2].split(",")), parts[7])


def plain_client(host: str, port: int, **options: Any) -> redis.Redis:
    """redis-py to one server: bytes replies, and no silent retries (a test or a tool must see
    a failure, not have it hidden); ``options`` override."""
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "decode_responses": False,
        "retry": Retry(NoBackoff(), 0),
    }
    kwargs.update(options)
    return redis.Redis(**kwargs)


def _slot_ranges(count: int) -> list[tuple[int, int]]:
    """Split 0..16383 into `count` contiguous ranges differing in size by at most one."""
    base, extra = divmod(SLOT_COUNT, count)
    ranges = []
    start = 0
    for i in range(count):
        size = base + (1 if i < extra else 0)
        ranges.append((start, start + size - 1))
        start += size
    return ranges


def _coverage_problem(view: list[tuple[int, int, str, frozenset[str]]]) -> str | None:
    expected = 0
    for start, end, _master, _replicas in view:
        if start != expected:
            return f"slots {expected}..{start - 1} have no master"
        expected = end + 1
    if expected != SLOT_COUNT:
        return f"slots {expected}..{SLOT_COUNT - 1} have no master"
    return None


def _server_version(binary: str) -> tuple[int, int, int]:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisServerNotFound(f"cannot run {binary!r} ({exc}); {_INSTALL_HINT}") from exc
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise RedisServerNotFound(f"{binary!r} is not a redis-server ({out.strip()!r})")
    major, minor, patch = (int(g) for g in match.groups())
    return (major, minor, patch)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # No SO_REUSEADDR: stricter than redis-server's own bind, so a pass here means it binds.
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _reserve_ports(count: int, host: str) -> list[int]:
    chosen: list[int] = []
    low, high = _PORT_RANGE
    tries = 0
    with _reserved_lock:
        while len(chosen) < count:
            tries += 1
            if tries > 10_000:
                _reserved_ports.difference_update(chosen)
                raise LocalClusterError(f"no free (port, port+{BUS_PORT_OFFSET}) pairs found")
            port = random.randrange(low, high)
            bus = port + BUS_PORT_OFFSET
            if {port, bus} & _reserved_ports:
                continue
            if _port_free(host, port) and _port_free(host, bus):
                _reserved_ports.update((port, bus))
                chosen.append(port)
    return chosen


def _release_ports(ports: Iterable[int]) -> None:
    with _reserved_lock:
        _reserved_ports.difference_update(ports)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The pgid stays allocated while any member lives, so this cannot hit a reused pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.splitlines()[-lines:])
