"""The shapes of Redis that are not a cluster, as real local processes: one standalone server,
and a Sentinel-managed set (a master, its replicas, three sentinels). For ``dev --topology``
and the tests; synchronous, like ``local.cluster``, whose process and port handling they share.

Sentinels run as ``redis-server <conf> --sentinel`` (what the Debian ``redis-sentinel`` package's
binary does), so the redis-server package is all they need.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from redis_ambassador.local.cluster import (
    _INSTALL_HINT,
    BUS_PORT_OFFSET,
    LocalClusterError,
    RedisServerNotFound,
    _die_with_parent,
    _read_log,
    _release_ports,
    _reserve_ports,
    _signal_group,
    _tail,
    plain_client,
)

__all__ = ["LocalSentinelSet", "LocalServer", "LocalStandalone"]

_READY_TIMEOUT = 15.0
_SETTLE_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_BIND_ATTEMPTS = 8


class LocalServer:
    """One redis-server process (a data node or a sentinel) on a port of its own."""

    def __init__(
        self, binary: str, directory: Path, host: str, sentinel: bool = False, password: str = ""
    ) -> None:
        self.binary = binary
        self.password = password  # its requirepass ("": none)
        self.dir = directory
        self.host = host
        self.sentinel = sentinel
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.conf_path = directory / ("sentinel.conf" if sentinel else "redis.conf")
        self.log_path = directory / ("sentinel.log" if sentinel else "redis.log")

    @property
    def address(self) -> str:
        """The server as "host:port"."""
        return f"{self.host}:{self.port}"

    def client(self, **options: Any) -> redis.Redis:
        """redis-py to this server: bytes replies, no silent retries."""
        return plain_client(self.host, self.port, **{"password": self.password or None, **options})

    def start(self, conf: Callable[[int], list[str]]) -> None:
        """Launch with the config lines ``conf(port)`` on a free port; return once it answers
        as this process (a port taken meanwhile is retried on another)."""
        for attempt in range(_BIND_ATTEMPTS):
            self.port = _reserve_ports(1, self.host)[0]
            lines = [
                f"port {self.port}",
                f"bind {self.host}",
                "protected-mode no",
                "daemonize no",
                f"dir {self.dir}",
                f"logfile {self.log_path}",
                *conf(self.port),
            ]
            self.log_path.unlink(missing_ok=True)
            self.conf_path.write_text("\n".join(lines) + "\n")
            self.launch()
            if self._wait_ready():
                return
            self._release()
            if attempt == _BIND_ATTEMPTS - 1:
                raise LocalClusterError(f"no free port found (log: {self.log_path})")

    def launch(self) -> None:
        """Start the process from its config file (again, after ``kill``: same port)."""
        args = [self.binary, str(self.conf_path)] + (["--sentinel"] if self.sentinel else [])
        self.process = subprocess.Popen(
            args,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,  # a terminal's Ctrl-C reaches only us; we stop it in order
            preexec_fn=_die_with_parent,
        )

    def _wait_ready(self) -> bool:
        """True once it answers with this process's pid; False if the port was taken."""
        assert self.process is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        with self.client(socket_timeout=1.0, socket_connect_timeout=1.0) as admin:
            while True:
                if self.process.poll() is not None:
                    log = _read_log(self.log_path)
                    if "Address already in use" in log:
                        return False
                    raise LocalClusterError(
                        f"redis-server on {self.address} exited with code "
                        f"{self.process.returncode} (log: {self.log_path}):\n{_tail(log)}"
                    )
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if int(admin.info("server")["process_id"]) == self.process.pid:
                        return True
                if time.monotonic() > deadline:
                    raise LocalClusterError(
                        f"redis-server on {self.address} never answered (log: {self.log_path})"
                    )
                time.sleep(_POLL_INTERVAL)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, like a machine dying (``launch`` brings it back on the same port)."""
        if self.process is not None:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL whatever is left; the port is free for others again."""
        if self.process is not None:
            _signal_group(self.process, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=_STOP_TIMEOUT)
            _signal_group(self.process, signal.SIGKILL)  # fork children (RDB, replication)
            self.process.wait()
            self.process = None
        self._release()

    def _release(self) -> None:
        if self.port:
            _release_ports([self.port, self.port + BUS_PORT_OFFSET])


class _Processes:
    """A temporary directory and the servers started in it; stopped all at once."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.servers: list[LocalServer] = []
        self._dir: Path | None = None
        self._binary = ""

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
        found = shutil.which("redis-server")
        if found is None:
            raise RedisServerNotFound(f"redis-server not found on PATH; {_INSTALL_HINT}")
        self._binary = found
        self._dir = Path(tempfile.mkdtemp(prefix="redis-ambassador-"))
        atexit.register(self.stop)  # before the first process: a Ctrl-C mid-start cleans up
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        raise NotImplementedError

    def _server(
        self,
        name: str,
        conf: Callable[[int], list[str]],
        sentinel: bool = False,
        password: str = "",
    ) -> LocalServer:
        assert self._dir is not None
        directory = self._dir / name
        directory.mkdir()
        server = LocalServer(self._binary, directory, self.host, sentinel, password)
        self.servers.append(server)
        server.start(conf)
        return server

    def stop(self) -> None:
        """Stop every process and remove the directory."""
        for server in reversed(self.servers):
            server.stop()
        self.servers = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        atexit.unregister(self.stop)


_NO_PERSISTENCE = ['save ""', "appendonly no"]


class LocalStandalone(_Processes):
    """One plain redis-server without persistence."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)

    def _start(self) -> None:
        self.server = self._server("standalone", lambda port: _NO_PERSISTENCE)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def seeds(self) -> list[str]:
        """The server, as the ambassador's seed."""
        return [self.server.address]

    serve_args = ("--backend", "standalone")
    """The `serve` flags for this backend (with ``seeds`` as ``--seed``)."""

    def describe(self) -> str:
        """What runs, in one line."""
        return f"local standalone redis-server on {self.server.address}"

    def client(self, **options: Any) -> redis.Redis:
        return self.server.client(**options)


class LocalSentinelSet(_Processes):
    """A master, ``replicas`` replicas of it, and ``sentinels`` sentinels monitoring it as
    ``name``, all agreed before ``start`` returns."""

    def __init__(
        self,
        name: str = "mymaster",
        replicas: int = 1,
        sentinels: int = 3,
        *,
        host: str = "127.0.0.1",
        down_after_ms: int = 1000,
        sentinel_password: str = "",
    ) -> None:
        super().__init__(host)
        self.name = name
        self.sentinel_password = sentinel_password  # the sentinels' requirepass ("": none)
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.down_after_ms = down_after_ms
        self.data: list[LocalServer] = []  # the master as started, then its replicas
        self.sentinels: list[LocalServer] = []

    def _start(self) -> None:
        master = self._server("node-0", self._data_conf(None))
        self.data = [master]
        for i in range(self.replica_count):
            self.data.append(self._server(f"node-{i + 1}", self._data_conf(master)))
        quorum = self.sentinel_count // 2 + 1
        monitor = [
            f"sentinel monitor {self.name} {master.host} {master.port} {quorum}",
            f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}",
            f"sentinel failover-timeout {self.name} 10000",
            f"sentinel parallel-syncs {self.name} 1",
        ]
        if self.sentinel_password:
            # Sentinels that ask clients for a password also give it to each other.
            monitor += [
                f"requirepass {self.sentinel_password}",
                f"sentinel sentinel-pass {self.sentinel_password}",
            ]
        self.sentinels = [
            self._server(f"sentinel-{i}", lambda port: monitor, True, self.sentinel_password)
            for i in range(self.sentinel_count)
        ]
        self.wait_settled(master)

    @staticmethod
    def _data_conf(master: LocalServer | None) -> Callable[[int], list[str]]:
        replica_of = [f"replicaof {master.host} {master.port}"] if master is not None else []
        # Replicas sync at once instead of waiting 5 s for more replicas to batch with.
        return lambda port: [*_NO_PERSISTENCE, "repl-diskless-sync-delay 0", *replica_of]

    @property
    def seeds(self) -> list[str]:
        """The sentinels, as the ambassador's seeds."""
        return [s.address for s in self.sentinels]

    @property
    def serve_args(self) -> tuple[str, ...]:
        """The `serve` flags for this backend (with ``seeds`` as ``--seed``)."""
        return ("--backend", "sentinel", "--sentinel-master", self.name)

    def describe(self) -> str:
        """What runs, in one line."""
        replicas = ", ".join(r.address for r in self.replicas()) or "none"
        return (
            f"local sentinel set {self.name!r}: master {self.master().address}, replicas "
            f"{replicas}, sentinels {', '.join(self.seeds)}"
        )

    def master(self) -> LocalServer:
        """The data node that says it is the master now."""
        for node in self.data:
            if node.is_running() and self._role(node) == b"master":
                return node
        raise LocalClusterError("no data node is a master")

    def replicas(self) -> list[LocalServer]:
        """The running data nodes that say they are replicas."""
        return [n for n in self.data if n.is_running() and self._role(n) == b"slave"]

    def failover(self, timeout: float = _SETTLE_TIMEOUT) -> LocalServer:
        """``SENTINEL FAILOVER``; returns the new master once every sentinel names it (the old
        master is demoted at a sentinel's next look at it, up to 10 s later: ``wait_settled``
        waits for that too)."""
        old = self.master()
        with _raw(self.sentinels[0]) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", self.name)
        deadline = time.monotonic() + timeout

        def promoted() -> str | None:
            return None if self._promoted(old) else "no replica promoted yet"

        self._wait("a replica promoted", promoted, deadline)
        new = self._promoted(old)
        assert new is not None
        self.wait_settled(new, max(0.0, deadline - time.monotonic()), replicas=False)
        return new

    def wait_settled(
        self, master: LocalServer, timeout: float = _SETTLE_TIMEOUT, *, replicas: bool = True
    ) -> None:
        """Until every sentinel names ``master`` and knows the other sentinels, and (with
        ``replicas``) every other running data node replicates it, as the sentinels see."""
        others = [n for n in self.data if n is not master and n.is_running()] if replicas else []
        want = (master.host.encode(), str(master.port).encode())

        def problem() -> str | None:
            for node in others:
                with node.client() as client:
                    info = client.info("replication")
                if info.get("master_port") != master.port or info.get("master_link_status") != "up":
                    return f"{node.address} is not replicating {master.address} yet"
            for sentinel in self.sentinels:
                with _raw(sentinel) as client:
                    named = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                    if tuple(named or ()) != want:
                        return f"sentinel {sentinel.address} names {named}"
                    peers = client.execute_command("SENTINEL", "SENTINELS", self.name)
                    if len(peers) != len(self.sentinels) - 1:
                        return f"sentinel {sentinel.address} knows {len(peers)} other sentinels"
                    seen = client.execute_command("SENTINEL", "REPLICAS", self.name)
                    linked = [r for r in seen if _fields(r).get(b"master-link-status") == b"ok"]
                    if len(linked) < len(others):
                        return f"sentinel {sentinel.address} sees {len(linked)} linked replicas"
            return None

        self._wait(f"sentinels agreeing on master {master.address}", problem,
                   time.monotonic() + timeout)  # fmt: skip

    def _wait(self, what: str, problem: Callable[[], str | None], deadline: float) -> None:
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
                logs = ", ".join(str(s.log_path) for s in self.servers)
                raise LocalClusterError(f"timed out waiting for {what}: {last} (logs: {logs})")
            time.sleep(_POLL_INTERVAL)

    def _promoted(self, old: LocalServer) -> LocalServer | None:
        for node in self.data:
            if node is not old and node.is_running() and self._role(node) == b"master":
                return node
        return None

    @staticmethod
    def _role(node: LocalServer) -> bytes:
        try:
            with node.client(socket_timeout=1.0) as client:
                return bytes(client.execute_command("ROLE")[0])
        except redis.RedisError:
            return b""


def _raw(server: LocalServer) -> redis.Redis:
    """A RESP2 client that leaves replies as the server sent them (redis-py reshapes SENTINEL's
    replies otherwise)."""
    client = server.client(protocol=2)
    client.response_callbacks.clear()
    return client


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    """A ``SENTINEL REPLICAS`` entry (field, value, field, value...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=False))
