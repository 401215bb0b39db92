"""Shared pytest fixtures."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from redis_ambassador.local.cluster import LocalCluster, RedisServerNotFound
from redis_ambassador.local.servers import LocalSentinelSet, LocalStandalone

# Imported here before pytest may load it as a plugin (tests/integration/test_chaos_plugin.py):
# rewrite its asserts now, as pytest would then (unless its entry point loaded it already).
if "redis_ambassador.local.testing" not in sys.modules:
    pytest.register_assert_rewrite("redis_ambassador.local.testing")
from redis_ambassador.local.testing import Ambassador as _PluginAmbassador
from redis_ambassador.local.testing import AmbassadorStartError, free_port

_free_port = free_port  # the name the tests import
__all__ = ["Ambassador", "AmbassadorStartError", "_free_port"]


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A real 3-master, 3-replica Redis Cluster shared by the whole session; keep it intact."""
    local = LocalCluster()
    missing: str | None = None
    try:
        local.start()
    except RedisServerNotFound as exc:
        missing = str(exc)
    if missing is not None:
        # A missing server is a broken environment, not a reason to skip the suite.
        pytest.fail(missing, pytrace=False)
    try:
        yield local
    finally:
        local.stop()


# -- the ambassador as a real process -------------------------------------------------------------

# Every ambassador a test starts would otherwise bind the admin listener's default port
# (127.0.0.1:9090) and collide with the next one: off unless a test asks for it (--admin).
os.environ.setdefault("REDIS_AMBASSADOR_ADMIN", "off")


def _die_with_parent() -> None:
    """In the child before exec: have Linux SIGTERM it if pytest dies without cleaning up."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Ambassador(_PluginAmbassador):
    """A `redis_ambassador serve` subprocess in front of a cluster (the plugin's), with raw
    sockets for byte-level tests."""

    def raw(self, timeout: float = 5.0) -> RawConnection:
        """A raw socket to the ambassador."""
        return RawConnection(self.host, self.port, timeout)

    def reload(self, expect: str, timeout: float = 30.0) -> str:
        """SIGHUP, then the first line the reload logs that matches ``expect`` (a regex)."""
        before = len(self.stderr_text().splitlines())
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            lines = self.stderr_text().splitlines()[before:]
            found = next((line for line in lines if re.search(expect, line)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {expect!r} after SIGHUP:\n{lines}")
            time.sleep(0.02)

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every sample of one metric from ``/metrics`` (started with ``admin=True``), with its
        labels: ``name`` without the ``redis_ambassador_`` prefix, e.g. ``breaker_state``."""
        url = f"http://{self.host}:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return [
            (sample.labels, float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "redis_ambassador_" + name
        ]

    def metric(self, name: str, **labels: str) -> float:
        """One sample from ``/metrics`` (started with ``admin=True``): ``name`` without the
        ``redis_ambassador_`` prefix, e.g. ``client_disconnects_total``; 0 when absent."""
        for found, value in self.samples(name):
            if found == labels:
                return value
        return 0.0


@pytest.fixture(scope="session")
def ambassador(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ambassador]:
    """The ambassador in front of the session `cluster`, for the whole session."""
    running = Ambassador.start(cluster.seeds, tmp_path_factory.mktemp("ambassador"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def start_ambassador(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Ambassador]]:
    """Factory: ``start_ambassador(local, pool_size=None, extra_args=(), admin=False)`` in
    front of a LocalCluster, LocalStandalone or LocalSentinelSet (its ``serve_args`` say which
    backend; more `serve` flags in ``extra_args``; ``admin``: an admin listener on a free port,
    in ``admin_port``); every one started is stopped at the end of the session."""
    started: list[Ambassador] = []
    log_dir = tmp_path_factory.mktemp("ambassadors")

    def start(
        local: LocalCluster | LocalStandalone | LocalSentinelSet,
        *,
        pool_size: int | None = None,
        extra_args: tuple[str, ...] = (),
        admin: bool = False,
    ) -> Ambassador:
        backend = getattr(local, "serve_args", ())
        running = Ambassador.start(
            local.seeds,
            log_dir,
            pool_size=pool_size,
            extra_args=(*backend, *extra_args),
            admin=admin,
        )
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.stop()


# -- servers that are not a cluster: the standalone reference, and the other backends ------------

# The plain standalone redis-server the ambassador must be indistinguishable from (the same
# binary as the cluster's nodes, so the same version).
StandaloneRedis = LocalStandalone


Local = TypeVar("Local", LocalStandalone, LocalSentinelSet)


def _running(local: Local) -> Iterator[Local]:
    """Start ``local`` (a missing redis-server fails the test, never skips it); stop it after."""
    try:
        local.start()
    except RedisServerNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def standalone_redis() -> Iterator[LocalStandalone]:
    """A plain standalone redis-server for the whole session, to compare the ambassador with.
    Tests that write to it flush it first; it is killed at the end of the session."""
    yield from _running(LocalStandalone())


@pytest.fixture(scope="module")
def standalone_backend() -> Iterator[LocalStandalone]:
    """A standalone redis-server for one test module to serve through the ambassador
    (``start_ambassador(standalone_backend)`` passes ``--backend standalone``)."""
    yield from _running(LocalStandalone())


@pytest.fixture
def sentinel_set() -> Iterator[LocalSentinelSet]:
    """A master, one replica and three sentinels monitoring them as "mymaster", for one test
    (failovers change it)."""
    yield from _running(LocalSentinelSet())


# -- raw sockets, for byte-level tests -------------------------------------------------------------


def resp(*args: bytes | str | int) -> bytes:
    """The RESP2 request frame for a command (written here, not taken from the ambassador)."""
    items = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%b\r\n" % (len(i), i) for i in items)


class ReplyTimeout(AssertionError):
    """The peer did not send what was expected before the deadline."""


_LINE_TYPES = frozenset(b"+-:_,#(")  # one line: simple string, error, integer, RESP3 scalars
_BLOB_TYPES = frozenset(b"$!=")  # length-prefixed: bulk string, blob error, verbatim string
_AGGREGATE_TYPES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2}  # items per count


def reply_end(buf: bytes, pos: int = 0) -> int:
    """End offset of the RESP2/RESP3 reply starting at ``pos``, or -1 if incomplete (written
    independently of the ambassador's own scanner, so a bug there cannot hide here)."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return -1
    kind = buf[pos]
    if kind in _LINE_TYPES:
        return eol + 2
    if kind in _BLOB_TYPES:
        size = int(buf[pos + 1 : eol])
        end = eol + 2 if size < 0 else eol + 2 + size + 2
        return end if end <= len(buf) else -1
    if kind in _AGGREGATE_TYPES or kind == ord("|"):
        count = int(buf[pos + 1 : eol])
        items = max(count, 0) * _AGGREGATE_TYPES.get(kind, 2)
        end = eol + 2
        for _ in range(items):
            end = reply_end(buf, end)
            if end < 0:
                return -1
        # An attribute annotates the reply that follows it: both belong together.
        return reply_end(buf, end) if kind == ord("|") else end
    raise AssertionError(f"not a RESP reply at offset {pos}: {buf[pos : pos + 60]!r}")


class RawConnection:
    """A plain TCP socket speaking bytes; every read is bounded by a deadline."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self.eof = False

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_some(self, deadline: float, what: str) -> bool:
        """Append what arrives before the deadline; False once the peer has closed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise ReplyTimeout(f"timed out waiting for {what}; received: {self._buf[:300]!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise ReplyTimeout(
                f"timed out waiting for {what}; received: {self._buf[:300]!r}"
            ) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self._buf += chunk
        return True

    def _need_more(self, deadline: float, what: str) -> None:
        if not self._recv_some(deadline, what):
            raise ReplyTimeout(
                f"connection closed while waiting for {what}; received: {self._buf[:300]!r}"
            )

    def read_bytes(self, count: int, timeout: float | None = None) -> bytes:
        """Exactly ``count`` bytes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self._buf) < count:
            self._need_more(deadline, f"{count} bytes")
        data, self._buf = self._buf[:count], self._buf[count:]
        return data

    def read_replies(self, count: int, timeout: float | None = None) -> list[bytes]:
        """The next ``count`` replies, each as its raw bytes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        replies: list[bytes] = []
        while len(replies) < count:
            end = reply_end(self._buf) if self._buf else -1
            if end < 0:
                self._need_more(deadline, f"reply {len(replies) + 1} of {count}")
                continue
            replies.append(self._buf[:end])
            self._buf = self._buf[end:]
        return replies

    def read_reply(self, timeout: float | None = None) -> bytes:
        """The next reply's raw bytes."""
        return self.read_replies(1, timeout)[0]

    def exchange(self, data: bytes, replies: int = 1) -> list[bytes]:
        """Send ``data`` and read ``replies`` replies."""
        self.send(data)
        return self.read_replies(replies)

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Every byte left until the peer closes; fails if it is still open at the deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._recv_some(deadline, "the peer to close the connection"):
            pass
        data, self._buf = self._buf, b""
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[[str, int], RawConnection]]:
    """Factory: ``raw(host, port)`` opens a RawConnection, closed at the end of the test."""
    opened: list[RawConnection] = []

    def connect(host: str, port: int) -> RawConnection:
        conn = RawConnection(host, port)
        opened.append(conn)
        return conn

    try:
        yield connect
    finally:
        for conn in opened:
            conn.close()
