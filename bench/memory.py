"""Peak memory for large values: what one 10/50/100 MB SET or GET costs the ambassador.

Starts a 3-master cluster (no replicas) and, for every case and value size, a fresh
``redis-ambassador serve`` in front of it (so no case inherits another's heap). It resets the
process's peak RSS (``/proc/PID/clear_refs``), runs the case with raw sockets that read replies
as fast as they come, and reads the peak (``VmHWM``); growth is the peak minus the RSS just
before. Without the right to reset the peak it polls ``VmRSS`` instead. The same cases are run
against the redis-server that holds the keys, for comparison (there a SET's growth includes the
value it then stores).

    .venv/bin/python bench/memory.py [--sizes 10,50,100] [--no-direct] [--json PATH]

Cases (all keys in one hash slot, so on one node):

- ``set``: one client SETs a value of the size;
- ``get``: one client GETs one (stored beforehand, straight into the node);
- ``mix``: one client pipelines SET, GET and PING in one write: two values in flight;
- ``two-set``: two clients SET one value each at the same moment: two values in flight.

``ratio`` is growth / the bytes of the values in flight at once (the size, or twice it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import redis
from redis.crc import key_slot
from run import RESULTS_DIR

from redis_ambassador.local.cluster import LocalCluster
from redis_ambassador.local.testing import Ambassador, memory_bytes, reset_peak_rss

MB = 1024 * 1024
TAG = b"{bench:memory}"
STORED = TAG + b":stored"  # what GET reads
WRITTEN = [TAG + b":set", TAG + b":mix", TAG + b":two:0", TAG + b":two:1"]  # what cases SET
SCRATCH = bytearray(1 << 20)  # replies are read into this and dropped


def command(*args: bytes) -> list[bytes]:
    """The RESP frame of a command as pieces (a large value is sent without a copy of it)."""
    pieces = [b"*%d\r\n" % len(args)]
    for arg in args:
        pieces += [b"$%d\r\n" % len(arg), arg, b"\r\n"]
    return pieces


class Client:
    """A raw connection that sends pieces and reads replies without keeping them."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self._buf = b""

    def send(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.sock.sendall(piece)

    def _fill(self) -> None:
        n = self.sock.recv_into(SCRATCH)
        if not n:
            raise ConnectionError("closed by the server")
        self._buf += SCRATCH[:n]

    def reply(self) -> bytes:
        """One reply: its first line, the payload of a bulk string read and dropped."""
        while b"\r\n" not in self._buf:
            self._fill()
        line, _, self._buf = self._buf.partition(b"\r\n")
        if line[:1] == b"-":
            raise RuntimeError(f"error reply: {line.decode(errors='replace')}")
        if line[:1] == b"$" and int(line[1:]) >= 0:
            left = int(line[1:]) + 2
            taken = min(left, len(self._buf))
            self._buf = self._buf[taken:]
            left -= taken
            while left:
                n = self.sock.recv_into(SCRATCH, min(left, len(SCRATCH)))
                if not n:
                    raise ConnectionError("closed by the server")
                left -= n
        return line

    def close(self) -> None:
        self.sock.close()


@dataclass
class Figure:
    target: str  # "ambassador" or "direct"
    case: str
    size_mb: int
    inflight_mb: int  # bytes of values in flight at once
    growth_mb: float
    seconds: float

    @property
    def ratio(self) -> float:
        return self.growth_mb / self.inflight_mb


@contextmanager
def peak_growth(pid: int) -> Iterator[list[float]]:
    """Yields a list that holds the peak RSS growth in MB once the block ends."""
    result: list[float] = []
    try:
        reset_peak_rss(pid)
        exact = True
    except OSError:
        exact = False
    before = memory_bytes(pid, "VmRSS")
    polled = [before]
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.002):
            polled.append(memory_bytes(pid, "VmRSS"))

    poller = None if exact else threading.Thread(target=poll, daemon=True)
    if poller is not None:
        poller.start()
    try:
        yield result
    finally:
        done.set()
        if poller is not None:
            poller.join()
        peak = memory_bytes(pid, "VmHWM") if exact else max(polled)
        result.append((peak - before) / MB)


def case_set(host: str, port: int, value: bytes) -> None:
    client = Client(host, port)
    client.send(command(b"SET", WRITTEN[0], value))
    assert client.reply() == b"+OK"
    client.close()


def case_get(host: str, port: int, value: bytes) -> None:
    client = Client(host, port)
    client.send(command(b"GET", STORED))
    assert client.reply() == b"$%d" % len(value)
    client.close()


def case_mix(host: str, port: int, value: bytes) -> None:
    client = Client(host, port)
    client.send([*command(b"SET", WRITTEN[1], value), *command(b"GET", STORED)])
    client.send(command(b"PING"))
    assert [client.reply() for _ in range(3)] == [b"+OK", b"$%d" % len(value), b"+PONG"]
    client.close()


def case_two_set(host: str, port: int, value: bytes) -> None:
    clients = [Client(host, port) for _ in range(2)]
    start = threading.Barrier(2)

    def one(i: int) -> None:
        start.wait()
        clients[i].send(command(b"SET", WRITTEN[2 + i], value))
        assert clients[i].reply() == b"+OK"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()


CASES: dict[str, tuple[Callable[[str, int, bytes], None], int]] = {
    "set": (case_set, 1),
    "get": (case_get, 1),
    "mix": (case_mix, 2),
    "two-set": (case_two_set, 2),
}


def measure(
    target: str, pid: int, host: str, port: int, case: str, size_mb: int, value: bytes
) -> Figure:
    """One case against one process; prints and returns its figure."""
    run, values = CASES[case]
    time.sleep(0.2)  # let the process settle after the last case's cleanup
    started = time.monotonic()
    with peak_growth(pid) as growth:
        run(host, port, value)
    figure = Figure(target, case, size_mb, values * size_mb, growth[0], time.monotonic() - started)
    print(_line(figure), flush=True)
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,50,100", help="value sizes in MB, comma-separated")
    parser.add_argument("--no-direct", action="store_true", help="skip the redis-server runs")
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "memory.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    # Never the admin listener's default port: another ambassador may hold it.
    os.environ["REDIS_AMBASSADOR_ADMIN"] = "off"
    figures: list[Figure] = []
    with (
        LocalCluster(masters=3, replicas_per_master=0) as cluster,
        tempfile.TemporaryDirectory(prefix="bench-memory-") as logs,
    ):
        node = cluster.master_for_slot(key_slot(TAG))
        host, port = node.address.rsplit(":", 1)
        store = redis.Redis(host=host, port=int(port))
        for size_mb in sizes:
            value = b"x" * (size_mb * MB)
            store.set(STORED, value)
            for case in CASES:
                if not args.no_direct:
                    assert node.pid is not None
                    figures.append(
                        measure("direct", node.pid, host, int(port), case, size_mb, value)
                    )
                    store.delete(*WRITTEN)
                amb = Ambassador.start(cluster.seeds, Path(logs))
                try:
                    case_set(amb.host, amb.port, b"warm-up")  # node connections open
                    pid = amb.process.pid
                    figures.append(
                        measure("ambassador", pid, amb.host, amb.port, case, size_mb, value)
                    )
                finally:
                    amb.stop()
                store.delete(*WRITTEN)
            del value
    _table(figures)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([asdict(f) | {"ratio": f.ratio} for f in figures], indent=2))
    print(f"\nresults in {args.json}")
    return 0


def _line(f: Figure) -> str:
    return (
        f"{f.target:10} {f.case:8} {f.size_mb:4d} MB: peak RSS +{f.growth_mb:7.1f} MB, "
        f"{f.ratio:.2f}x the {f.inflight_mb} MB in flight ({f.seconds:.2f} s)"
    )


def _table(figures: list[Figure]) -> None:
    print("\ncase      size  in flight  ambassador growth (ratio)  direct growth (ratio)")
    direct = {(f.case, f.size_mb): f for f in figures if f.target == "direct"}
    for f in figures:
        if f.target != "ambassador":
            continue
        d = direct.get((f.case, f.size_mb))
        other = f"{d.growth_mb:7.1f} MB ({d.ratio:.2f}x)" if d is not None else "-"
        print(
            f"{f.case:8} {f.size_mb:4d} MB {f.inflight_mb:6d} MB  "
            f"{f.growth_mb:9.1f} MB ({f.ratio:.2f}x)        {other}"
        )


if __name__ == "__main__":
    sys.exit(main())
