"""A pytest plugin for testing an app against a misbehaving Redis: a real Redis Cluster and a
chaos-enabled ambassador for the test session, and a ``chaos`` fixture to inject faults.

    pytest -p redis_ambassador.local.testing
    # or, in a conftest.py: pytest_plugins = ["redis_ambassador.local.testing"]

(installed with the package, it is loaded automatically). Fixtures, named so they do not clash
with a project's own:

- ``chaos_cluster`` (session): a 3-master, 3-replica LocalCluster of real redis-server processes;
  override it in your conftest.py for another shape.
- ``chaos_ambassador`` (session): ``redis-ambassador serve --chaos`` in front of it, on free ports
  (``host``, ``port``, ``url``, ``admin``).
- ``chaos`` (per test): a ``Chaos`` handle; point the app at ``chaos.url`` and use
  ``with chaos.fault(command="GET", error="LOADING ...", probability=0.5): ...``, node actions
  (``kill``, ``pause``, ``resume``, ``restart``, ``failover``, ``migrate``) and
  ``wait_healthy()``. After each test its rules are removed and its nodes brought back.

``--chaos-seed N`` replays a session's probabilistic faults (the seed is in the report header).
"""

from __future__ import annotations

import os
import random
import re
import selectors
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import pytest
import redis

from redis_ambassador.faults.client import ChaosApiError, ChaosClient
from redis_ambassador.local.cluster import LocalCluster, LocalNode, _die_with_parent
from redis_ambassador.local.nodes import NodeActions
from redis_ambassador.slots import key_slot

__all__ = [
    "Ambassador", "AmbassadorStartError", "Chaos", "Fault", "free_port", "memory_bytes",
    "reset_peak_rss",
]  # fmt: skip

_AMBASSADOR_READY_TIMEOUT = 20.0
_AMBASSADOR_STOP_TIMEOUT = 10.0
_AMBASSADOR_START_ATTEMPTS = 3
_READY_LINE = re.compile(rb"redis-ambassador serving on (\S+):(\d+)")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now (bind port 0, release it): another process may take it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def memory_bytes(pid: int, key: str) -> int:
    """A memory figure of a process from /proc/PID/status (Linux): ``VmRSS``, its resident
    memory, or ``VmHWM``, the peak of that."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} line in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> None:
    """Make a process's peak RSS (``VmHWM``) its current RSS (Linux 4.0+; raises OSError where
    not allowed), so the peak of what follows can be read."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class AmbassadorStartError(RuntimeError):
    """The ambassador exited or stayed silent instead of printing its ready line."""


class Ambassador:
    """A `redis_ambassador serve` subprocess in front of a cluster."""

    def __init__(self, host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.host = host
        self.port = port
        self.process = process
        self.log = log
        self.admin_port: int | None = None  # the admin HTTP listener's, when started with one

    @classmethod
    def start(
        cls,
        seeds: list[str],
        log_dir: Path,
        *,
        pool_size: int | None = None,
        extra_args: tuple[str, ...] = (),
        admin: bool = False,
    ) -> Self:
        """Launch on a free port and return once it printed its ready line.

        The port is picked by binding port 0 and releasing it, so another process may grab it in
        between: a start that fails for "already in use" is retried on a new port.
        """
        for attempt in range(_AMBASSADOR_START_ATTEMPTS):
            host, port = "127.0.0.1", free_port("127.0.0.1")
            log = log_dir / f"ambassador-{port}.log"
            args = [sys.executable, "-m", "redis_ambassador", "serve", "--listen", f"{host}:{port}"]
            for seed in seeds:
                args += ["--seed", seed]
            if pool_size is not None:
                args += ["--pool-size", str(pool_size)]
            admin_port = free_port(host) if admin else None
            if admin_port is not None:
                args += ["--admin", f"{host}:{admin_port}"]
            args += extra_args
            ambassador = cls.launch(args, host, port, log)
            ambassador.admin_port = admin_port
            try:
                ambassador._wait_ready()
            except AmbassadorStartError as exc:
                ambassador.stop()
                if "already in use" in str(exc) and attempt < _AMBASSADOR_START_ATTEMPTS - 1:
                    continue
                raise
            return ambassador
        raise AssertionError("unreachable")

    @classmethod
    def launch(cls, args: list[str], host: str, port: int, log: Path) -> Self:
        """Start the ``serve`` command line ``args`` (which makes it listen on host:port),
        stderr to ``log``; call ``_wait_ready`` next."""
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                preexec_fn=_die_with_parent,
            )
        return cls(host, port, process, log)

    def _wait_ready(self) -> None:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        seen = b""
        deadline = time.monotonic() + _AMBASSADOR_READY_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                match = _READY_LINE.search(seen)
                if match is not None:
                    if int(match.group(2)) != self.port:
                        raise AssertionError(f"ambassador says it serves on {match.group(0)!r}")
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AmbassadorStartError(
                        f"redis-ambassador printed no ready line within "
                        f"{_AMBASSADOR_READY_TIMEOUT:.0f}s; stdout: {seen!r}; "
                        f"stderr:\n{self.stderr_text()}"
                    )
                if not selector.select(left):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:  # stdout closed: the process is exiting
                    code = self.process.wait(timeout=_AMBASSADOR_STOP_TIMEOUT)
                    raise AmbassadorStartError(
                        f"redis-ambassador exited with code {code} before it was ready; "
                        f"stdout: {seen!r}; stderr:\n{self.stderr_text()}"
                    )
                seen += chunk

    def stderr_text(self) -> str:
        """Everything the process logged so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def client(self, **options: Any) -> redis.Redis:
        """redis-py at its defaults (RESP3 in redis-py 8), pointed at the ambassador, bytes."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "decode_responses": False}
        kwargs.update(options)
        return redis.Redis(**kwargs)

    def rss_bytes(self) -> int:
        """Resident memory of the ambassador process (Linux /proc)."""
        return memory_bytes(self.process.pid, "VmRSS")

    def stop(self, timeout: float = _AMBASSADOR_STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    @property
    def url(self) -> str:
        """``redis://host:port``, for the app under test."""
        return f"redis://{self.host}:{self.port}"

    @property
    def admin(self) -> str | None:
        """The admin listener's "host:port" (metrics, readiness, the chaos API), if started."""
        return None if self.admin_port is None else f"{self.host}:{self.admin_port}"


# -- the chaos handle ------------------------------------------------------------------------------

NodeRef = LocalNode | str  # a node of the cluster, or its "host:port"


class Fault:
    """A rule added through ``Chaos``: its id, and its counters read live from the ambassador."""

    def __init__(self, chaos: Chaos, view: dict[str, Any]) -> None:
        self._chaos = chaos
        self.id: str = view["id"]
        self.spec = {k: v for k, v in view.items() if k not in _COUNTERS}
        self._last: dict[str, Any] | None = None  # its view when removed through this handle

    def view(self) -> dict[str, Any]:
        """The rule as the API shows it now, or as it was when ``remove`` took it away."""
        if self._last is not None:
            return self._last
        for rule in self._chaos.api.rules():
            if rule["id"] == self.id:
                return rule
        raise KeyError(f"rule {self.id} was removed by someone else")

    @property
    def hits(self) -> int:
        """Faults injected so far."""
        return int(self.view()["hits"])

    @property
    def matched(self) -> int:
        """Commands that matched (before the probability draw)."""
        return int(self.view()["matched"])

    def remove(self) -> None:
        """Stop the fault; its counters stay readable (``hits`` after a ``with`` block)."""
        if self._last is not None:
            return
        try:
            self._last = self._chaos.api.remove(self.id)
        except ChaosApiError as exc:
            if exc.status != 404:  # already removed (or cleared): fine
                raise

    def __repr__(self) -> str:
        return f"Fault({self.id}, {self.spec})"


_COUNTERS = frozenset({"id", "hits", "matched", "spent", "active"})


class Chaos:
    """Faults and node actions for the session's cluster and ambassador."""

    def __init__(self, cluster: LocalCluster, ambassador: Ambassador) -> None:
        assert ambassador.admin is not None, "the chaos ambassador needs its admin listener"
        self.cluster = cluster
        self.ambassador = ambassador
        self.api = ChaosClient(ambassador.admin)
        self.nodes = NodeActions(cluster)

    # -- where the app connects ----------------------------------------------------------

    @property
    def host(self) -> str:
        return self.ambassador.host

    @property
    def port(self) -> int:
        return self.ambassador.port

    @property
    def url(self) -> str:
        """``redis://host:port`` of the ambassador: what the app under test connects to."""
        return self.ambassador.url

    def client(self, **options: Any) -> redis.Redis:
        """redis-py pointed at the ambassador (``options`` as for ``redis.Redis``)."""
        return self.ambassador.client(**options)

    # -- fault rules -----------------------------------------------------------------------

    def add(self, **spec: Any) -> Fault:
        """Add a rule (fields as in docs/chaos.md); it stays until removed or the test ends."""
        return Fault(self, self.api.add(**spec))

    @contextmanager
    def fault(self, **spec: Any) -> Iterator[Fault]:
        """A rule active inside the ``with`` block: ``with chaos.fault(command="GET",
        error="LOADING Redis is loading the dataset in memory", probability=0.5) as f:``."""
        added = self.add(**spec)
        try:
            yield added
        finally:
            added.remove()

    def rules(self) -> list[dict[str, Any]]:
        return self.api.rules()

    def clear(self) -> int:
        return self.api.clear()

    # -- the cluster's nodes -----------------------------------------------------------------

    def masters(self) -> list[LocalNode]:
        return self.cluster.masters()

    def replicas(self) -> list[LocalNode]:
        return self.cluster.replicas()

    def master_for(self, key: str | bytes) -> LocalNode:
        """The master serving ``key``'s slot now."""
        return self.cluster.master_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def kill(self, node: NodeRef) -> None:
        """SIGKILL the node (its replica takes over after the cluster's node timeout)."""
        self.nodes.act(_address(node), "kill")

    def pause(self, node: NodeRef) -> None:
        """SIGSTOP the node: connections stay open, nothing answers."""
        self.nodes.act(_address(node), "pause")

    def resume(self, node: NodeRef) -> None:
        self.nodes.act(_address(node), "resume")

    def restart(self, node: NodeRef) -> None:
        """Start a killed node again (a running one is killed first)."""
        self.nodes.act(_address(node), "restart")

    def failover(self, node: NodeRef) -> None:
        """A replica takes over from its master (given a master: one of its replicas)."""
        self.nodes.act(_address(node), "failover")

    def migrate(self, slots: str, to: NodeRef) -> int:
        """Move the slots ("0-99") and their keys to master ``to`` while clients run."""
        return int(self.nodes.migrate(slots, _address(to))["moved"])

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until the cluster is whole again (every slot served, replicas in sync) and the
        ambassador says it is ready (it knows a reachable master for every slot)."""
        deadline = time.monotonic() + timeout
        self.nodes.wait_healthy(timeout)
        url = f"http://{self.ambassador.admin}/readyz"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ambassador is not ready after {timeout:g}s ({url})")
            time.sleep(0.05)

    def restore(self) -> None:
        """No rules, every node running, the cluster healthy: what each test starts from."""
        self.clear()
        for node in self.cluster.nodes:
            if self.cluster.is_paused(node):
                self.cluster.resume(node)
            elif not node.is_running():
                self.cluster.restart(node)
        self.wait_healthy(60)


def _address(node: NodeRef) -> str:
    return node if isinstance(node, str) else node.address


# -- the pytest plugin ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("redis-ambassador chaos").addoption(
        "--chaos-seed",
        type=int,
        default=None,
        help="seed of the chaos ambassador's probabilistic faults (default: random, shown in "
        "the header)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("chaos_seed", None) is None:
        config.option.chaos_seed = random.randrange(1 << 31)


def pytest_report_header(config: pytest.Config) -> str:
    return f"redis-ambassador chaos seed: {config.option.chaos_seed} (replay: --chaos-seed)"


@pytest.fixture(scope="session")
def chaos_cluster() -> Iterator[LocalCluster]:
    """A real 3-master, 3-replica Redis Cluster for the chaos fixtures (its own, not shared)."""
    with LocalCluster() as local:
        yield local


@pytest.fixture(scope="session")
def chaos_ambassador(
    chaos_cluster: LocalCluster,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[Ambassador]:
    """``redis-ambassador serve --chaos`` in front of ``chaos_cluster``, with its admin
    listener on a free port (stderr in the session's temporary directory)."""
    seed = str(pytestconfig.option.chaos_seed)
    running = Ambassador.start(
        chaos_cluster.seeds,
        tmp_path_factory.mktemp("chaos-ambassador"),
        extra_args=("--chaos", "--chaos-seed", seed),
        admin=True,
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def chaos(chaos_cluster: LocalCluster, chaos_ambassador: Ambassador) -> Iterator[Chaos]:
    """The chaos handle for one test; afterwards its rules are gone and its nodes are back."""
    handle = Chaos(chaos_cluster, chaos_ambassador)
    try:
        yield handle
    finally:
        handle.restore()
