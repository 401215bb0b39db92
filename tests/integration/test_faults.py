"""Faults under continuous load: a killed master, a hung master, restarted nodes, a live reshard.

The load: CLIENTS (4) threads, each with its own connection through the ambassador and a redis-py
client that never retries (see ``traffic``). Round ``n`` of client ``c`` SETs the unique key
``<test>:c:n`` and INCRs one of six counters; every acknowledged result and every error is
recorded with the time it arrived. Each fault runs under that load; afterwards the load stops,
the cluster is healthy again, and three things are checked:

(a) Data, read directly from the masters (not through the ambassador): every acknowledged SET is
    there with its value; each counter is at least its highest acknowledged result and at most
    the number of INCRs sent (more would mean a write replayed behind the client's back). Only
    where Redis itself can lose a write -- a master SIGKILLed after acknowledging it, before its
    replica had it -- is a missing write excused: for the killed master's slots, writes
    acknowledged before the promotion is seen. Those are counted, printed and bounded
    (LOST_BY_REDIS_BOUND = 5); anything acknowledged later, or on another master, must be there.
(b) Client-visible errors, by scenario (each client has one command in flight at a time):
    - reshard of 1,000 slots (LocalCluster.migrate, 30,000 keys preloaded): 0;
    - SIGKILLed master (node timeout 1 s): 0 on the other masters. On its slots, per client: the
      commands on the wire at the kill, i.e. written to one of the node's LANES (4) connections
      before the ambassador has read that connection's end (a client told of one failure sends
      its next command at once, and it may land on another connection still open), plus one
      per exhausted retry budget (6.55 s) of the promotion window: 16 for a promotion under
      6.5 s; all between the kill and 1 s after the promotion is seen; 0 once the dead master
      restarts and rejoins as a replica;
    - restarted replica: 0;
    - restarted master (faster than the 5 s node timeout, so not failed over; AOF with fsync
      always, so Redis loses nothing): 0 on the other masters; on its slots only the commands
      on the wire when it died, at most LANES per client (16), none later than 1 s after it
      answers again;
    - master hung by SIGSTOP for 2.5 s (ambassador ``--command-timeout 1``, node timeout 5 s, so
      no failover): 0 on the other masters, none of their commands slower than 0.5 s; on its
      slots at most one per client per command timeout of the pause, plus one (12), none before
      the command timeout has elapsed nor later than a command timeout after the resume.
(c) The ambassador's resources: its resident memory and its open sockets (/proc/<pid>/fd) come
    back, within SETTLE_TIMEOUT (10 s, polled), to at most the baseline taken after a warm-up
    load before the fault plus RSS_MARGIN (4 MiB) and SOCKET_MARGIN (2: the RESP3 lanes of a
    node's pool open on demand, so which are open depends on the clients so far; a leak per
    failed connection would exceed it, every fault here fails at least four).

Measured on 2 cores (printed with ``-s``) at 93cd20a: killed master promoted after 2.0-2.7 s,
0-3 errors, all within 10 ms of the kill, its keys' commands held ~3.6 s by the retry ladder
(5.6 s once, see below), 0 writes lost by Redis; restarted master 0-5 errors within 15 ms of the
kill (one client got two), its keys' commands held ~2.55 s though it answered after 0.07 s; hung
master 8 errors (two per client, at ~+1.05-1.2 s and ~+2.3-2.45 s); reshard (1.4-2.7 s) and
replica restart 0 errors; memory within 0.3 MiB of the baseline, sockets at or below it. At
fe7f6d5: killed master 0-4 errors, keys held 3.0-3.5 s; restarted master 1-2 errors, keys held
2.3-2.8 s; hung master 8 errors, its keys held up to 2 s after the resume; sockets 2 below the
baseline.

One more test pins down a stall seen in the killed-master scenario on 93cd20a (the promotion
learned 2.5 s after it was visible, its keys held 5.6 s): with the dead master first in the
order the ambassador asks nodes for the slot map, a refresh waited out redis-py's silent retries
(1-5 s) before asking a live node. It was a strict xfail there; since fe7f6d5 the key answers in
0.03 s, and the test guards that (bound 0.5 s).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
import redis
from traffic import Traffic, key_slot, no_retry_client

from redis_ambassador.local.cluster import SLOT_COUNT, LocalCluster, LocalNode

if TYPE_CHECKING:
    from conftest import Ambassador

CLIENTS = 4  # client threads, each over its own connection through the ambassador
COUNTERS = 6  # counters INCRed by every client in turn
WARM_ROUNDS = 100  # rounds per client before a fault
AFTER_ROUNDS = 150  # rounds per client once the cluster has recovered
LOST_BY_REDIS_BOUND = 5  # acknowledged writes asynchronous replication may lose at a SIGKILL
# Connections the ambassador holds to one node: pool_size (2) lanes for RESP2 clients and as
# many for RESP3 ones. A client whose command fails because the node died sends its next one at
# once; until the ambassador has read the end of every one of them, it may land on another.
LANES = 4
RETRY_BUDGET = 6.55  # the ambassador's default: 10 retries, 0.05 s doubling, capped at 1 s
RSS_MARGIN = 4 << 20  # bytes of resident memory above the baseline once settled
SOCKET_MARGIN = 2  # open sockets above the baseline once settled
SETTLE_TIMEOUT = 10.0  # seconds to reach those after the load stops and the cluster is healthy
PRELOADED = 30_000  # keys in the cluster before the reshard


# -- the load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """A write the ambassador acknowledged: SET's value, or INCR's result, and when."""

    command: str
    key: str
    value: str
    at: float


@dataclass(frozen=True)
class Failure:
    """An error reply (or a broken connection) a client saw."""

    command: str
    key: str
    sent: float
    at: float
    message: str


@dataclass
class Load:
    """CLIENTS threads through the ambassador; round ``n`` of client ``c`` SETs the unique key
    ``{name}:{c}:{n}`` and INCRs one of the counters. Nothing is retried: every acknowledged
    result and every error is recorded with the time it arrived (``time.monotonic()``)."""

    ambassador: Ambassador
    name: str
    sets: list[Ack] = field(default_factory=list)
    incrs: list[Ack] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    slow: list[tuple[float, str, float]] = field(default_factory=list)  # (sent, key, seconds)
    incr_attempts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _clients: list[Traffic] = field(default_factory=list)

    @property
    def counters(self) -> list[str]:
        return [f"{self.name}:counter:{i}" for i in range(COUNTERS)]

    def _call(
        self, client: redis.Redis, command: str, key: str, *args: str
    ) -> tuple[object, float]:
        sent = time.monotonic()
        try:
            reply = client.execute_command(command, key, *args)
        except redis.RedisError as exc:
            at = time.monotonic()
            self.failures.append(Failure(command, key, sent, at, f"{type(exc).__name__}: {exc}"))
            raise
        at = time.monotonic()
        if at - sent > 0.1:
            self.slow.append((sent, key, at - sent))
        return reply, at

    def _round_fn(self, c: int) -> Callable[[redis.Redis, int], list[str]]:
        counters = self.counters

        def one_round(client: redis.Redis, n: int) -> list[str]:
            key, value = f"{self.name}:{c}:{n}", f"{c}-{n}"
            reply, at = self._call(client, "SET", key, value)
            if reply is not True:
                return [f"SET {key} -> {reply!r}"]
            self.sets.append(Ack("SET", key, value, at))
            counter = counters[(c + n) % COUNTERS]
            with self._lock:
                self.incr_attempts[counter] += 1
            reply, at = self._call(client, "INCR", counter)
            if not isinstance(reply, int):
                return [f"INCR {counter} -> {reply!r}"]
            self.incrs.append(Ack("INCR", counter, str(reply), at))
            return []

        return one_round

    def start(self) -> None:
        self._clients = [Traffic(self.ambassador, self._round_fn(c)) for c in range(CLIENTS)]
        for client in self._clients:
            client.start()

    def wait_rounds(self, more: int, timeout: float = 30.0) -> None:
        """Every client completes ``more`` further rounds (bounded by ``timeout`` each)."""
        for client in self._clients:
            client.wait_rounds(more, timeout)

    def stop(self) -> None:
        for client in self._clients:
            client.stop()
        problems = [p for client in self._clients for p in client.problems]
        assert not problems, f"wrong replies: {problems[:10]}"

    @property
    def rounds(self) -> int:
        return sum(client.rounds for client in self._clients)


# -- reading the cluster directly ------------------------------------------------------------------


def _slot_owners(cluster: LocalCluster, ask: LocalNode | None = None) -> list[LocalNode]:
    """The master of every slot, from one node's CLUSTER SLOTS (not through the ambassador)."""
    node = ask or cluster.masters()[0]
    with cluster.client(node, socket_timeout=5) as direct:
        ranges = direct.execute_command("CLUSTER", "SLOTS")
    by_id = {n.node_id: n for n in cluster.nodes}
    owners: list[LocalNode | None] = [None] * SLOT_COUNT
    for start, end, master, *_replicas in ranges:
        node_id = master[2].decode() if isinstance(master[2], bytes) else str(master[2])
        owners[int(start) : int(end) + 1] = [by_id[node_id]] * (int(end) - int(start) + 1)
    assert None not in owners, "some slot has no master"
    return owners  # type: ignore[return-value]


def _slots_of(cluster: LocalCluster, node: LocalNode) -> set[int]:
    return {slot for slot, owner in enumerate(_slot_owners(cluster)) if owner is node}


def _read_directly(cluster: LocalCluster, keys: list[str]) -> dict[str, bytes | None]:
    """Each key's value, GET from the master owning its slot."""
    owners = _slot_owners(cluster)
    by_node: dict[LocalNode, list[str]] = {}
    for key in keys:
        by_node.setdefault(owners[key_slot(key)], []).append(key)
    found: dict[str, bytes | None] = {}
    for node, node_keys in by_node.items():
        with cluster.client(node, socket_timeout=10) as direct:
            for i in range(0, len(node_keys), 5000):
                chunk = node_keys[i : i + 5000]
                pipe = direct.pipeline(transaction=False)
                for key in chunk:
                    pipe.get(key)
                found.update(zip(chunk, pipe.execute(), strict=True))
    return found


def _write_directly(cluster: LocalCluster, values: dict[str, str]) -> None:
    """SET each key on the master owning its slot."""
    owners = _slot_owners(cluster)
    by_node: dict[LocalNode, list[str]] = {}
    for key in values:
        by_node.setdefault(owners[key_slot(key)], []).append(key)
    for node, node_keys in by_node.items():
        with cluster.client(node, socket_timeout=10) as direct:
            pipe = direct.pipeline(transaction=False)
            for key in node_keys:
                pipe.set(key, values[key])
            assert all(pipe.execute())


@dataclass
class LostByRedis:
    """Acknowledged writes missing for a reason Redis owns (asynchronous replication)."""

    sets: list[Ack]
    incrs: dict[str, int]  # counter -> increments acknowledged and then lost

    def __len__(self) -> int:
        return len(self.sets) + sum(self.incrs.values())


def _check_writes(
    cluster: LocalCluster, load: Load, lossable: Callable[[Ack], bool], since: float
) -> LostByRedis:
    """Every acknowledged write is in the cluster, except those ``lossable`` says Redis itself
    may have dropped; those are returned. Counters: the final value is at least the highest
    result acknowledged that Redis could not lose, and at most the INCRs attempted (a write
    replayed behind the client's back would push it over)."""
    values = _read_directly(cluster, [a.key for a in load.sets] + load.counters)
    wrong = [(a, values[a.key]) for a in load.sets if values[a.key] not in (None, a.value.encode())]
    assert not wrong, f"keys holding another value than acknowledged: {wrong[:10]}"
    missing = [a for a in load.sets if values[a.key] is None]
    unexplained = [a for a in missing if not lossable(a)]
    assert not unexplained, (
        f"{len(unexplained)} acknowledged SETs missing that Redis cannot have lost "
        f"(first acknowledged {unexplained[0].at - since:+.3f}s after the fault began): "
        f"{unexplained[:10]}"
    )
    lost_incrs: dict[str, int] = {}
    for counter in load.counters:
        final = int(values[counter] or 0)
        acks = [a for a in load.incrs if a.key == counter]
        attempts = load.incr_attempts[counter]
        assert final <= attempts, (
            f"{counter} is {final} after only {attempts} INCRs were sent: one was replayed"
        )
        firm = [int(a.value) for a in acks if not lossable(a)]
        assert final >= max(firm, default=0), (
            f"{counter} is {final}, below the acknowledged result {max(firm)} Redis cannot "
            f"have lost"
        )
        # Increments Redis lost: the highest result acknowledged before the fault, minus the
        # value the counter restarted from on the promoted replica.
        before = [int(a.value) for a in acks if lossable(a)]
        after = [int(a.value) for a in acks if not lossable(a) and a.at >= since]
        if before and after and min(after) - 1 < max(before):
            lost_incrs[counter] = max(before) - (min(after) - 1)
        elif before and not after and final < max(before):
            lost_incrs[counter] = max(before) - final
    return LostByRedis([a for a in missing if lossable(a)], lost_incrs)


# -- the ambassador's resources --------------------------------------------------------------------


def _sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except FileNotFoundError:
            continue  # closed while listing
    return count


@dataclass(frozen=True)
class Usage:
    rss: int
    sockets: int

    def __str__(self) -> str:
        return f"rss {self.rss / (1 << 20):.1f} MiB, {self.sockets} sockets"


def _usage(ambassador: Ambassador) -> Usage:
    assert ambassador.process.poll() is None, "the ambassador exited"
    return Usage(ambassador.rss_bytes(), _sockets(ambassador.process.pid))


def _baseline(ambassador: Ambassador, name: str) -> Usage:
    """Usage after a short warm-up load (the pools are open, the allocator has grown), once
    the warm-up clients' sockets are gone: the same reading three polls in a row."""
    warm = Load(ambassador, f"{name}:warm")
    warm.start()
    warm.wait_rounds(WARM_ROUNDS)
    warm.stop()
    assert not warm.failures, warm.failures[:5]
    readings: list[Usage] = []
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while len(readings) < 3 or len({r.sockets for r in readings[-3:]}) > 1:
        assert time.monotonic() < deadline, f"socket count never settled: {readings[-5:]}"
        readings.append(_usage(ambassador))
        time.sleep(0.1)
    return readings[-1]


def _settled(ambassador: Ambassador, baseline: Usage) -> tuple[Usage, float]:
    """Poll until memory and sockets are back within their margins of ``baseline``; returns the
    reading and how long it took."""
    began = time.monotonic()
    while True:
        now = _usage(ambassador)
        if now.rss <= baseline.rss + RSS_MARGIN and now.sockets <= baseline.sockets + SOCKET_MARGIN:
            return now, time.monotonic() - began
        if time.monotonic() - began > SETTLE_TIMEOUT:
            raise AssertionError(
                f"the ambassador did not return to its baseline within {SETTLE_TIMEOUT:.0f}s: "
                f"before the fault {baseline}, now {now} (margins: "
                f"{RSS_MARGIN >> 20} MiB, {SOCKET_MARGIN} sockets)"
            )
        time.sleep(0.1)


def _report(title: str, load: Load, marks: dict[str, float], origin: float) -> None:
    timeline = ", ".join(f"{name} {at - origin:+.2f}s" for name, at in marks.items())
    print(
        f"\n{title}: {load.rounds} rounds, {len(load.sets)} SETs and {len(load.incrs)} INCRs "
        f"acknowledged, {len(load.failures)} errors; {timeline}"
    )
    for failure in load.failures[:40]:
        print(
            f"  error {failure.command} {failure.key} sent {failure.sent - origin:+.3f}s "
            f"answered {failure.at - origin:+.3f}s: {failure.message}"
        )
    slowest = sorted(load.slow, key=lambda s: -s[2])[:5]
    if slowest:
        print(
            "  slowest: " + ", ".join(f"{k} {s:.2f}s at {t - origin:+.2f}s" for t, k, s in slowest)
        )


def _window(load: Load, slots: set[int], origin: float) -> str:
    """The error window and the longest hold of the commands for ``slots``, as printed."""
    errors = [f.at - origin for f in load.failures if key_slot(f.key) in slots]
    held = [(sent - origin, took) for sent, key, took in load.slow if key_slot(key) in slots]
    text = f"{len(errors)} errors on its slots"
    if errors:
        text += f" between {min(errors):+.2f}s and {max(errors):+.2f}s"
    if held:
        sent, took = max(held, key=lambda h: h[0] + h[1])
        text += f"; its acknowledged commands held until {sent + took:+.2f}s (up to {took:.2f}s)"
    return text


# -- clusters --------------------------------------------------------------------------------------


def _restore(cluster: LocalCluster) -> None:
    """Every node running and the cluster healthy (a failed test may have left a node down)."""
    for node in cluster.nodes:
        if not node.is_running():
            cluster.restart(node)
    cluster.wait_healthy()


@pytest.fixture(scope="module")
def failover_cluster() -> Iterator[LocalCluster]:
    """Short node timeout: a dead master's replica is promoted within about two seconds."""
    with LocalCluster(node_timeout_ms=1000) as local:
        yield local


@pytest.fixture(scope="module")
def failover_ambassador(
    failover_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> Iterator[Ambassador]:
    own = start_ambassador(failover_cluster)
    yield own
    own.stop()


@pytest.fixture(scope="module")
def steady_cluster() -> Iterator[LocalCluster]:
    """Long node timeout: a master paused or restarted for a few seconds is not failed over."""
    with LocalCluster(node_timeout_ms=5000) as local:
        yield local


@pytest.fixture(scope="module")
def steady_ambassador(
    steady_cluster: LocalCluster, start_ambassador: Callable[..., Ambassador]
) -> Iterator[Ambassador]:
    own = start_ambassador(steady_cluster, extra_args=("--command-timeout", "1"))
    yield own
    own.stop()


def _never(_ack: Ack) -> bool:
    return False


# -- the scenarios ---------------------------------------------------------------------------------


def test_resharding_1000_slots_live_shows_clients_no_error_and_loses_no_write(
    failover_cluster: LocalCluster, failover_ambassador: Ambassador
) -> None:
    cluster, ambassador = failover_cluster, failover_ambassador
    _restore(cluster)
    baseline = _baseline(ambassador, "reshard")
    source, target = cluster.masters()[:2]
    target_slots = len(_slots_of(cluster, target))
    # Keys in every slot before the reshard, so MIGRATE has some to move while the load runs.
    preloaded = {f"reshard:pre:{i}": f"pre-{i}" for i in range(PRELOADED)}
    _write_directly(cluster, preloaded)

    load = Load(ambassador, "reshard")
    load.start()
    try:
        load.wait_rounds(WARM_ROUNDS)
        began = time.monotonic()
        moved = cluster.migrate(sorted(_slots_of(cluster, source))[:1000], target, timeout=120)
        done = time.monotonic()
        load.wait_rounds(AFTER_ROUNDS)
    finally:
        load.stop()
    _report("reshard", load, {"reshard done": done}, began)
    assert moved == 1000
    assert len(_slots_of(cluster, target)) == target_slots + 1000

    assert load.failures == [], (
        f"a live reshard must show clients no error (bound 0); got {len(load.failures)}: "
        f"{load.failures[:10]}"
    )
    lost = _check_writes(cluster, load, _never, began)
    assert len(lost) == 0
    values = _read_directly(cluster, list(preloaded))
    assert [k for k, v in preloaded.items() if values[k] != v.encode()] == []
    usage, took = _settled(ambassador, baseline)
    print(f"  reshard took {done - began:.1f}s; before {baseline}, after {usage} ({took:.1f}s)")


def test_a_killed_master_costs_only_its_slots_errors_until_the_promotion(
    failover_cluster: LocalCluster, failover_ambassador: Ambassador
) -> None:
    cluster, ambassador = failover_cluster, failover_ambassador
    _restore(cluster)
    baseline = _baseline(ambassador, "kill")
    victim = cluster.masters()[-1]
    victim_slots = _slots_of(cluster, victim)
    probe = min(victim_slots)

    load = Load(ambassador, "kill")
    load.start()
    try:
        load.wait_rounds(WARM_ROUNDS)
        killed = time.monotonic()
        cluster.kill(victim)
        while cluster.master_for_slot(probe) is victim:
            assert time.monotonic() < killed + 30, "no replica took over within 30 s"
            time.sleep(0.05)
        promoted = time.monotonic()
        load.wait_rounds(AFTER_ROUNDS)
        # The dead master comes back on its port and rejoins as a replica of the new master.
        returning = time.monotonic()
        cluster.restart(victim)
        cluster.wait_healthy()
        returned = time.monotonic()
        load.wait_rounds(AFTER_ROUNDS)
    finally:
        load.stop()
    marks = {"promotion seen": promoted, "old master restarting": returning, "healthy": returned}
    _report("killed master", load, marks, killed)
    assert cluster.master_for_slot(probe) is not victim

    on_victim = [f for f in load.failures if key_slot(f.key) in victim_slots]
    elsewhere = [f for f in load.failures if key_slot(f.key) not in victim_slots]
    window = promoted - killed
    bound = CLIENTS * (LANES + int(window // RETRY_BUDGET))
    assert not elsewhere, f"errors for keys of the masters still alive (bound 0): {elsewhere[:10]}"
    assert len(on_victim) <= bound, (
        f"{len(on_victim)} errors for the killed master's slots; bound {bound}: per client, "
        f"the commands written to its {LANES} connections before the ambassador saw them end, "
        f"plus one per {RETRY_BUDGET}s retry budget of the {window:.2f}s promotion window: "
        f"{on_victim[:10]}"
    )
    late = [f for f in on_victim if not killed <= f.at <= promoted + 1.0]
    assert not late, f"errors outside [kill, promotion seen + 1 s]: {late[:10]}"
    rejoin = [f for f in load.failures if f.at >= returning]
    assert not rejoin, f"errors once the old master restarted (bound 0): {rejoin[:10]}"
    recovered = [a for a in load.sets if key_slot(a.key) in victim_slots and a.at > promoted]
    assert len(recovered) >= 10, "the killed master's slots did not work after the promotion"

    def lossable(ack: Ack) -> bool:
        return key_slot(ack.key) in victim_slots and ack.at < promoted

    lost = _check_writes(cluster, load, lossable, promoted)
    print(
        f"  lost by Redis (acknowledged by the killed master, not replicated): {len(lost)}"
        + "".join(f"\n    {a.key} acknowledged {a.at - killed:+.4f}s" for a in lost.sets)
        + "".join(f"\n    {c}: {n} increments" for c, n in lost.incrs.items())
    )
    assert len(lost) <= LOST_BY_REDIS_BOUND, (
        f"{len(lost)} acknowledged writes lost at the kill, more than asynchronous replication "
        f"explains (bound {LOST_BY_REDIS_BOUND}): {lost}"
    )
    usage, took = _settled(ambassador, baseline)
    print(f"  promoted after {window:.2f}s; {_window(load, victim_slots, killed)}")
    print(f"  before {baseline}, after {usage} ({took:.1f}s)")


def test_a_restarted_replica_shows_clients_no_error(
    steady_cluster: LocalCluster, steady_ambassador: Ambassador
) -> None:
    cluster, ambassador = steady_cluster, steady_ambassador
    _restore(cluster)
    baseline = _baseline(ambassador, "replica")
    replica = cluster.replicas()[0]

    load = Load(ambassador, "replica")
    load.start()
    try:
        load.wait_rounds(WARM_ROUNDS)
        began = time.monotonic()
        cluster.restart(replica)
        cluster.wait_healthy()
        healthy = time.monotonic()
        load.wait_rounds(AFTER_ROUNDS)
    finally:
        load.stop()
    _report("restarted replica", load, {"healthy": healthy}, began)
    assert load.failures == [], (
        f"a restarted replica must show clients no error (bound 0): {load.failures[:10]}"
    )
    lost = _check_writes(cluster, load, _never, began)
    assert len(lost) == 0
    usage, took = _settled(ambassador, baseline)
    print(f"  before {baseline}, after {usage} ({took:.1f}s)")


def _aof(cluster: LocalCluster, node: LocalNode, on: bool) -> None:
    """Turn the node's append-only file on (fsync on every write, so a SIGKILL loses nothing
    acknowledged) or off, in its config file too, so a restart starts from it."""
    with cluster.client(node, socket_timeout=10) as direct:
        if on:
            direct.config_set("appendfsync", "always")
        direct.config_set("appendonly", "yes" if on else "no")
        deadline = time.monotonic() + 20
        while True:
            info = direct.info("persistence")
            if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
                break
            assert time.monotonic() < deadline, f"AOF rewrite on {node.address} never finished"
            time.sleep(0.05)
        direct.execute_command("CONFIG", "REWRITE")


def test_a_restarted_master_costs_only_the_commands_on_the_wire(
    steady_cluster: LocalCluster, steady_ambassador: Ambassador
) -> None:
    """Restarted faster than the node timeout, so it stays master. Without persistence it
    would come back empty and its replica would copy that; with an fsynced AOF Redis loses
    nothing, so every acknowledged write must be there."""
    cluster, ambassador = steady_cluster, steady_ambassador
    _restore(cluster)
    victim = cluster.masters()[0]
    victim_slots = _slots_of(cluster, victim)
    _aof(cluster, victim, on=True)
    try:
        baseline = _baseline(ambassador, "master")
        load = Load(ambassador, "master")
        load.start()
        try:
            load.wait_rounds(WARM_ROUNDS)
            began = time.monotonic()
            cluster.restart(victim)
            answering = time.monotonic()
            cluster.wait_healthy()
            healthy = time.monotonic()
            load.wait_rounds(AFTER_ROUNDS)
        finally:
            load.stop()
        _report("restarted master", load, {"answering": answering, "healthy": healthy}, began)
        assert cluster.master_for_slot(min(victim_slots)) is victim, "it was failed over"
        on_victim = [f for f in load.failures if key_slot(f.key) in victim_slots]
        elsewhere = [f for f in load.failures if key_slot(f.key) not in victim_slots]
        assert not elsewhere, f"errors for other masters' keys (bound 0): {elsewhere[:10]}"
        assert len(on_victim) <= CLIENTS * LANES, (
            f"{len(on_victim)} errors for the restarted master's keys; bound {CLIENTS * LANES}: "
            f"per client, the commands written to its {LANES} connections before the "
            f"ambassador saw them end: {on_victim[:10]}"
        )
        late = [f for f in on_victim if not began <= f.at <= answering + 1.0]
        assert not late, f"errors outside [restart, answering again + 1 s]: {late[:10]}"
        lost = _check_writes(cluster, load, _never, began)
        assert len(lost) == 0
        usage, took = _settled(ambassador, baseline)
        print(f"  {_window(load, victim_slots, began)}")
        print(f"  before {baseline}, after {usage} ({took:.1f}s)")
    finally:
        if victim.is_running():
            _aof(cluster, victim, on=False)


PAUSE = 2.5  # seconds a master is hung: over the 1 s command timeout, under the 5 s node timeout
COMMAND_TIMEOUT = 1.0


def test_a_hung_master_costs_its_own_keys_an_error_after_the_command_timeout_only(
    steady_cluster: LocalCluster, steady_ambassador: Ambassador
) -> None:
    cluster, ambassador = steady_cluster, steady_ambassador
    _restore(cluster)
    baseline = _baseline(ambassador, "pause")
    victim = cluster.masters()[1]
    victim_slots = _slots_of(cluster, victim)

    load = Load(ambassador, "pause")
    load.start()
    try:
        load.wait_rounds(WARM_ROUNDS)
        paused = time.monotonic()
        cluster.pause(victim)
        try:
            # The fault itself lasts PAUSE seconds; the load keeps running meanwhile.
            time.sleep(PAUSE)
        finally:
            cluster.resume(victim)
        resumed = time.monotonic()
        cluster.wait_healthy()
        healthy = time.monotonic()
        load.wait_rounds(AFTER_ROUNDS)
    finally:
        load.stop()
    _report("hung master", load, {"resumed": resumed, "healthy": healthy}, paused)
    assert cluster.master_for_slot(min(victim_slots)) is victim, "it was failed over"

    on_victim = [f for f in load.failures if key_slot(f.key) in victim_slots]
    elsewhere = [f for f in load.failures if key_slot(f.key) not in victim_slots]
    assert not elsewhere, f"errors for the other masters' keys (bound 0): {elsewhere[:10]}"
    slow_elsewhere = [s for s in load.slow if key_slot(s[1]) not in victim_slots and s[2] > 0.5]
    assert not slow_elsewhere, f"other masters' keys waited > 0.5 s: {slow_elsewhere[:10]}"
    bound = CLIENTS * (int(PAUSE // COMMAND_TIMEOUT) + 1)
    assert len(on_victim) <= bound, (
        f"{len(on_victim)} errors for the hung master's keys; bound {bound}: per client one per "
        f"{COMMAND_TIMEOUT}s command timeout of the {PAUSE}s pause, plus one: {on_victim[:10]}"
    )
    # The watchdog checks every quarter of the timeout: allow a tenth of it for the alignment.
    early = [f for f in on_victim if f.at < paused + 0.9 * COMMAND_TIMEOUT]
    assert not early, f"errors before the command timeout had elapsed: {early[:10]}"
    late = [f for f in on_victim if f.at > resumed + COMMAND_TIMEOUT]
    assert not late, f"errors over a command timeout after the resume: {late[:10]}"
    lost = _check_writes(cluster, load, _never, paused)
    assert len(lost) == 0
    usage, took = _settled(ambassador, baseline)
    print(f"  {_window(load, victim_slots, paused)}")
    print(f"  before {baseline}, after {usage} ({took:.1f}s)")


def _shards_calls(cluster: LocalCluster, node: LocalNode) -> int:
    with cluster.client(node) as direct:
        stats = direct.info("commandstats")
    return int(stats.get("cmdstat_cluster|shards", {}).get("calls", 0))


def _other_clients(cluster: LocalCluster, node: LocalNode) -> int:
    with cluster.client(node) as direct:
        return len(direct.client_list(_type="normal")) - 1  # not this one


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# Seconds for a key of a promoted slot to answer once the promotion is seen: one refresh that
# skips the refused node, within the first three retries (0.05 s, 0.1 s, 0.2 s after the first).
REFRESH_BOUND = 0.5


def test_a_dead_master_first_in_the_refresh_order_does_not_stall_learning_its_promotion(
    failover_cluster: LocalCluster, failover_ambassador: Ambassador
) -> None:
    """The ambassador asks the masters it knows for the slot map, several at once
    (cluster.refresh_nodes), in a fixed order. Make one of those it asks die, with no
    connection of the ambassador to it (so nothing notices the death before the promotion),
    then ask for one of its keys once its replica is promoted: the refresh that request
    triggers must skip the dead node at once, not after seconds."""
    cluster, ambassador = failover_cluster, failover_ambassador
    _restore(cluster)
    masters = cluster.masters()
    # Drop the ambassador's connections to every master: it refreshes its slot map, from the
    # first master in its order -- the one whose CLUSTER SHARDS count goes up.
    before = {node: _shards_calls(cluster, node) for node in masters}
    for node in masters:
        with cluster.client(node) as direct:
            direct.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    _wait_for(
        "the ambassador's refresh",
        lambda: any(_shards_calls(cluster, n) > before[n] for n in masters),
    )
    first = next(n for n in masters if _shards_calls(cluster, n) > before[n])
    _wait_for("the ambassador's connections to close", lambda: _other_clients(cluster, first) == 0)
    slots = _slots_of(cluster, first)
    key = next(k for k in (f"refresh:{i}" for i in range(100_000)) if key_slot(k) in slots)

    killed = time.monotonic()
    cluster.kill(first)
    try:
        _wait_for("the promotion", lambda: cluster.master_for_slot(key_slot(key)) is not first, 30)
        promoted = time.monotonic()
        client = no_retry_client(ambassador)
        try:
            began = time.monotonic()
            try:
                outcome = repr(client.get(key))
            except redis.RedisError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            took = time.monotonic() - began
        finally:
            client.close()
    finally:
        cluster.restart(first)
        cluster.wait_healthy()
    print(
        f"\nrefresh after a promotion: promoted {promoted - killed:.2f}s after the kill; "
        f"GET of its key then took {took:.2f}s -> {outcome}"
    )
    assert took <= REFRESH_BOUND and not outcome.startswith(("Response", "Connection")), (
        f"a key of the promoted slots answered {took:.2f}s after the promotion was visible "
        f"(bound {REFRESH_BOUND}s: one refresh skipping a refused connection, within the "
        f"first three retries): {outcome}"
    )
