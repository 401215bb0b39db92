"""Finding the cluster again without a restart: nodes at new addresses, seed names that move,
a dead seed, announced addresses mapped, and MOVED storms that cost one refresh. Real
redis-server processes throughout; clusters of their own (the session `cluster` stays intact)."""

from __future__ import annotations

import asyncio
import functools
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import redis
from conftest import RawConnection, resp
from prometheus_client.parser import text_string_to_metric_families
from redis.crc import key_slot

from redis_ambassador.ambassador import Running, serve
from redis_ambassador.config import Address, load_config
from redis_ambassador.local.cluster import LocalCluster, LocalNode, plain_client
from redis_ambassador.local.testing import free_port

if TYPE_CHECKING:
    from conftest import Ambassador


def _config(directory: Path, cluster_keys: str = "") -> tuple[str, str]:
    """`serve` flags for a config file that refreshes every 0.5 s (a test waits seconds, not
    the default 30), plus ``cluster_keys``."""
    path = directory / "rediscovery.toml"
    path.write_text(f"[cluster]\nrefresh_interval = 0.5\n{cluster_keys}\n")
    return ("--config", str(path))


@pytest.fixture(scope="module")
def masters_only() -> Iterator[LocalCluster]:
    """Three masters, no replicas (a node that goes away is not failed over), for this module;
    a test that changes a node's configuration puts it back."""
    with LocalCluster(masters=3, replicas_per_master=0) as local:
        yield local


def _refreshes(ambassador: Ambassador) -> float:
    return ambassador.metric("topology_refreshes_total", result="ok")


def _eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """``check()``'s first truthy result; its exceptions count as not yet."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (redis.RedisError, OSError, AssertionError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _key_on(local: LocalCluster, node: LocalNode, prefix: str = "k") -> bytes:
    """A key whose slot ``node`` serves."""
    for i in range(100_000):
        key = f"{prefix}{i}".encode()
        if local.master_for_slot(key_slot(key)) is node:
            return key
    raise AssertionError(f"no key found for {node.address}")


def test_a_node_restarted_on_a_new_port_is_found_again(
    masters_only: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    ambassador = start_ambassador(masters_only, extra_args=_config(tmp_path), admin=True)
    client = ambassador.client(socket_timeout=5)
    node = masters_only.nodes[0]
    key = _key_on(masters_only, node)
    assert client.set(key, b"before")
    old = node.address
    masters_only.restart_elsewhere(node)
    assert node.address != old
    masters_only.wait_healthy()
    # The data went with the restart (no persistence): the point is the key's node answers.
    _eventually(lambda: client.set(key, b"after"), f"SET through the node now at {node.address}")
    assert client.get(key) == b"after"
    # The old address's pool is gone, with its metrics.
    _eventually(
        lambda: _pool_nodes(ambassador) >= {node.address} and old not in _pool_nodes(ambassador),
        "the pool at the old address dropped",
    )
    client.close()


def _pool_nodes(ambassador: Ambassador) -> set[str]:
    url = f"http://{ambassador.host}:{ambassador.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels["node"]
        for family in text_string_to_metric_families(text)
        if family.name == "redis_ambassador_upstream_connections"
        for sample in family.samples
    }


def test_a_moved_storm_costs_a_bounded_number_of_refreshes(
    masters_only: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> None:
    """Thousands of MOVEDs (a slot moved while a pipeline was in flight) ask for a refresh
    each; the refresher coalesces them into a handful (min_refresh_interval apart)."""
    ambassador = start_ambassador(masters_only, admin=True)
    source = masters_only.nodes[1]
    target = masters_only.nodes[2]
    key = _key_on(masters_only, source, "storm")
    slot = key_slot(key)
    client = ambassador.client(socket_timeout=10)
    assert client.set(key, b"0")
    client.delete(key)
    before = _refreshes(ambassador)
    moved_before = ambassador.metric("redirects_total", kind="moved")
    # The slot is empty: reassigning it is only a SETSLOT on every node (no MIGRATE needed).
    for node in masters_only.nodes:
        plain_client(node.host, node.port).execute_command(
            "CLUSTER", "SETSLOT", slot, "NODE", target.node_id
        )
    # One write: the ambassador routes whole reads at once, all to the old owner.
    with RawConnection(ambassador.host, ambassador.port, timeout=10) as raw:
        replies = raw.exchange(resp("INCR", key) * 5000, 5000)
    assert replies[-1] == b":5000\r\n"
    moved = ambassador.metric("redirects_total", kind="moved") - moved_before
    time.sleep(0.5)  # let the refresher finish what was asked
    refreshes = _refreshes(ambassador) - before
    assert moved >= 500, moved
    assert 1 <= refreshes <= 5, (moved, refreshes)
    client.delete(key)
    for node in masters_only.nodes:  # give the slot back
        plain_client(node.host, node.port).execute_command(
            "CLUSTER", "SETSLOT", slot, "NODE", source.node_id
        )
    client.close()


def test_announced_addresses_are_mapped_to_reachable_ones_in_moved_too_and_on_reload(
    masters_only: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    """Nodes announce ports nothing listens on (as a cluster behind port forwarding does);
    cluster.address_map sends the ambassador to the real ones, MOVED targets included."""
    nodes = masters_only.nodes
    announced = {node: node.port + 1 for node in nodes}  # nothing listens there
    mapping = ", ".join(f'"{n.host}:{announced[n]}" = "{n.address}"' for n in nodes)
    flags = _config(tmp_path, f"address_map = {{ {mapping} }}")
    try:
        for node in nodes:
            plain_client(node.host, node.port).config_set("cluster-announce-port", announced[node])
        _wait_announced(nodes, announced)
        ambassador = start_ambassador(masters_only, extra_args=flags, admin=True)
        client = ambassador.client(socket_timeout=5)
        for i in range(30):
            assert client.set(f"mapped{i}", i)
        assert _pool_nodes(ambassador) == {n.address for n in nodes}
        # A slot moves behind the ambassador's back: the node's MOVED names the announced port.
        source, target = nodes[0], nodes[1]
        key = _key_on(masters_only, source, "mapped-moved")
        slot = key_slot(key)
        for node in nodes:
            plain_client(node.host, node.port).execute_command(
                "CLUSTER", "SETSLOT", slot, "NODE", target.node_id
            )
        try:
            moved = plain_client(source.host, source.port)
            with pytest.raises(redis.exceptions.ResponseError, match=f":{announced[target]}"):
                moved.execute_command("GET", key)
            assert client.set(key, b"v")
            assert plain_client(target.host, target.port).get(key) == b"v"
            assert _pool_nodes(ambassador) == {n.address for n in nodes}
            client.delete(key)
        finally:
            for node in nodes:
                plain_client(node.host, node.port).execute_command(
                    "CLUSTER", "SETSLOT", slot, "NODE", source.node_id
                )
        client.close()

        # Without the map, the ambassador dials what is announced; the map given by a reload
        # (SIGHUP) takes effect at the next refresh.
        unmapped = tmp_path / "unmapped"
        unmapped.mkdir()
        flags = _config(unmapped)
        late = start_ambassador(masters_only, extra_args=flags, admin=True)
        assert _pool_nodes(late) == {f"{n.host}:{announced[n]}" for n in nodes}
        _config(unmapped, f"address_map = {{ {mapping} }}")
        late.process.send_signal(signal.SIGHUP)
        _eventually(
            lambda: _pool_nodes(late) == {n.address for n in nodes}, "pools at mapped addresses"
        )
        with late.client(socket_timeout=5) as client:
            assert client.set(b"mapped-late", b"1")
    finally:
        for node in nodes:
            plain_client(node.host, node.port).config_set("cluster-announce-port", 0)
        _wait_announced(nodes, {node: node.port for node in nodes})


def test_a_hung_node_does_not_slow_refreshes(
    masters_only: LocalCluster, start_ambassador: Callable[..., Ambassador], tmp_path: Path
) -> None:
    """A paused node accepts connections and never answers: each refresh still asks it (it is
    a master), but gives it a quarter second once the others answered, not the 2 s timeout."""
    ambassador = start_ambassador(masters_only, extra_args=_config(tmp_path), admin=True)
    node = masters_only.nodes[2]
    counted = _refreshes(ambassador)
    masters_only.pause(node)
    try:
        time.sleep(4.0)
        during = _refreshes(ambassador) - counted
    finally:
        masters_only.resume(node)
    masters_only.wait_healthy()
    # Every 0.5 s plus 0.25 s of grace: about 5; waiting out the timeout would give at most 2.
    assert during >= 4, during


def _wait_announced(nodes: list[LocalNode], ports: dict[LocalNode, int]) -> None:
    """Until every node's CLUSTER NODES gives every node its port in ``ports`` (announced
    ports travel by gossip)."""
    wanted = {f"{node.node_id} {node.host}:{ports[node]}@" for node in nodes}

    def seen_everywhere() -> bool:
        for node in nodes:
            lines = plain_client(node.host, node.port).execute_command("CLUSTER", "NODES")
            if not all(entry in lines.decode() for entry in wanted):
                return False
        return True

    _eventually(seen_everywhere, f"every node to see the ports {sorted(ports.values())}")


def test_the_seed_node_killed_does_not_stop_refreshes(tmp_path: Path) -> None:
    from conftest import Ambassador as Process

    with LocalCluster(masters=3, replicas_per_master=1) as local:
        seed = local.masters()[0]
        ambassador = Process.start(
            [seed.address], tmp_path, admin=True, extra_args=_config(tmp_path)
        )
        try:
            client = ambassador.client(socket_timeout=5)
            key = _key_on(local, seed, "seeded")
            local.kill(seed)
            # Its replica takes over; the ambassador learns it from the nodes it knew.
            _eventually(lambda: client.set(key, b"v"), "a write to the dead seed's slots")
            counted = _refreshes(ambassador)
            _eventually(lambda: _refreshes(ambassador) >= counted + 3, "refreshes going on")
            assert ambassador.metric("slots_covered") == 16384
            client.close()
        finally:
            ambassador.stop()


# -- in-process, with a resolver the test controls ------------------------------------------


class Resolver:
    """Host names the test points where it likes (the system resolver knows none of them)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = dict(names)
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"unknown host {host}")
        return [self.names[host]]


class InProcess:
    """``serve`` in a thread of its own, with the test's resolver."""

    def __init__(self, seeds: list[str], lookup: Resolver) -> None:
        self.config = load_config(
            env={},
            overrides={
                "cluster.seeds": ",".join(seeds),
                "cluster.refresh_interval": 0.5,
                "cluster.resolve_interval": 0.2,
                "server.listen": f"127.0.0.1:{free_port()}",
                "server.admin": "off",
            },
        )
        self._lookup = lookup
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._running: Running | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.address: Address | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(20) or self._failure is not None:
            raise AssertionError(f"in-process ambassador did not start: {self._failure!r}")

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            async with anyio.create_task_group() as tg:
                start = functools.partial(serve, self.config, self._on_ready, lookup=self._lookup)
                self._running = await tg.start(start)
                self._ready.set()

        try:
            anyio.run(main)
        except BaseException as exc:  # reported by __init__ or stop
            self._failure = exc
            self._ready.set()

    def _on_ready(self, address: Address) -> None:
        self.address = address

    def client(self) -> redis.Redis:
        assert self.address is not None
        return plain_client(self.address.host, self.address.port, socket_timeout=5)

    def stop(self) -> None:
        if self._loop is not None and self._running is not None:
            self._loop.call_soon_threadsafe(self._running.stop)
        self._thread.join(20)
        assert not self._thread.is_alive()


def test_a_seed_name_that_moves_to_a_new_address_is_followed() -> None:
    """A one-node cluster, its seed given as a name; the node comes back on another IP (a
    pod's new address) and the name is pointed there: the ambassador follows the name."""
    with LocalCluster(masters=1, replicas_per_master=0) as local:
        node = local.nodes[0]
        resolver = Resolver({"redis.test": "127.0.0.1"})
        ambassador = InProcess([f"redis.test:{node.port}"], resolver)
        try:
            client = ambassador.client()
            assert client.set(b"k", b"1")
            local.restart_elsewhere(node, host="127.0.0.2")
            resolver.names["redis.test"] = "127.0.0.2"
            _eventually(lambda: client.set(b"k", b"2"), "a write to the node at its new IP")
            assert client.get(b"k") == b"2"
            # Asked again and again (each refresh), yet at most once per resolve_interval.
            asked = len(resolver.asked)
            time.sleep(2.0)
            assert 2 <= len(resolver.asked) - asked <= 2.0 / 0.2 + 1
            client.close()
        finally:
            ambassador.stop()


def test_nodes_announced_by_name_are_dialed_by_that_name_and_followed() -> None:
    """The node announces a host name (cluster-announce-hostname with the preferred endpoint
    type hostname) that only the test's resolver knows; when it moves, so does the name."""
    with LocalCluster(masters=1, replicas_per_master=0) as local:
        node = local.nodes[0]

        def announce_name() -> None:
            admin = plain_client(node.host, node.port)
            admin.config_set("cluster-announce-hostname", "node.test")
            admin.config_set("cluster-preferred-endpoint-type", "hostname")

        announce_name()
        resolver = Resolver({"node.test": "127.0.0.1"})
        ambassador = InProcess([node.address], resolver)
        try:
            client = ambassador.client()
            assert client.set(b"k", b"1")
            assert "node.test" in resolver.asked
            local.restart_elsewhere(node, host="127.0.0.2")
            announce_name()
            resolver.names["node.test"] = "127.0.0.2"
            _eventually(lambda: client.set(b"k", b"2"), "a write to node.test at its new IP")
            client.close()
        finally:
            ambassador.stop()
