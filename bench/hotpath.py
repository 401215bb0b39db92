"""The ambassador's per-command Python cost, stage by stage, with no sockets and no nodes.

Real parser, router, node connections and client connections, driven through fake transports:
a read of N pipelined commands from each of 50 clients is parsed and dispatched, every node
connection flushes, each node "answers" every command, and the clients' replies are written. The
figure is CPU time (``time.process_time``) per command, so other load on the machine matters
less than it does for ``bench/run``; for an exact, repeatable count run it under
``valgrind --tool=callgrind`` and compare instruction totals.

    .venv/bin/python bench/hotpath.py [--pipeline 16] [--command GET] [--rounds 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from pathlib import Path

import hiredis

from redis_ambassador.commands.auth import ClientAuth
from redis_ambassador.commands.state import ServerFacts
from redis_ambassador.commands.table import CommandTable
from redis_ambassador.config import Address, load_config
from redis_ambassador.protocol.requests import RequestParser, encode_command
from redis_ambassador.routing.router import Router
from redis_ambassador.server.client import ClientConnection, ClientRegistry
from redis_ambassador.slots import SLOTS
from redis_ambassador.topology.slotmap import SlotMap
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.names import Names, system_lookup
from redis_ambassador.upstream.pool import Upstream

COMMAND_REPLY = Path(__file__).parent.parent / "tests" / "unit" / "data" / "command.resp"
CLIENTS = 50
MASTERS = 3


class _Transport:
    """Swallows writes; what the ambassador's protocols need of a transport."""

    def write(self, data: bytes) -> None:
        pass

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


class _NoDial:
    """Connects nothing: the node connections are given their fake transports by hand."""

    names = Names(system_lookup, 1.0, 1.0)  # never used
    tls = None

    def dial(self, *args: object) -> None:
        pass

    def start_soon(self, *args: object) -> None:
        pass


def _command_table() -> CommandTable:
    reader = hiredis.Reader()
    reader.feed(COMMAND_REPLY.read_bytes())
    return CommandTable.from_reply(reader.gets())


async def _measure(pipeline: int, command: bytes, rounds: int) -> dict[str, float]:
    config = load_config(None, env={}, overrides={"cluster.seeds": ["127.0.0.1:1"]})
    loop = asyncio.get_running_loop()
    upstream = Upstream(config.upstream, Credentials(), loop, _NoDial())
    client_auth = ClientAuth.from_config(config.server, b"")
    router = Router(config, upstream, _command_table(), ServerFacts(b"7.0.15"), client_auth, loop)
    masters = [Address("127.0.0.1", 7000 + i) for i in range(MASTERS)]
    router.refresher.apply(SlotMap(tuple(masters[s * MASTERS // SLOTS] for s in range(SLOTS))))
    conns = [c for pool in upstream.pools.values() for c in pool.conns if not c.closed]
    for conn in conns:
        conn.connection_made(_Transport())  # type: ignore[arg-type]
    clients = []
    for _ in range(CLIENTS):
        client = ClientConnection(router, ClientRegistry())
        client.connection_made(_Transport())  # type: ignore[arg-type]
        clients.append(client)
    value = [b"xxx"] if command == b"SET" else []
    reads = [
        b"".join(
            encode_command([command, b"key:%012d" % ((c * pipeline + i) * 7919 % 100000), *value])
            for i in range(pipeline)
        )
        for c in range(CLIENTS)
    ]
    reply = b"+OK\r\n" if command == b"SET" else b"$3\r\nxxx\r\n"

    # One stage alone: parsing a read.
    parser = RequestParser()
    started = time.process_time()
    for _ in range(rounds * CLIENTS // 10):
        parser.feed(reads[0])
    parse = (time.process_time() - started) / (rounds * CLIENTS // 10 * pipeline)

    # The whole path.
    gc.collect()
    started = time.process_time()
    for _ in range(rounds):
        for client, read in zip(clients, reads, strict=True):
            client.data_received(read)
        upstream._flush()
        for conn in conns:
            if conn.pending:
                conn.data_received(reply * conn.pending)
    total = (time.process_time() - started) / (rounds * CLIENTS * pipeline)

    return {"total": total, "parse": parse}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", type=int, default=16)
    parser.add_argument("--command", default="GET", choices=["GET", "SET"])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    figures = asyncio.run(_measure(args.pipeline, args.command.encode(), args.rounds))
    print(
        f"{args.command} x{args.pipeline} from {CLIENTS} clients: "
        f"{figures['total'] * 1e6:.2f} us CPU per command end to end "
        f"(of which parsing {figures['parse'] * 1e6:.2f}; the rest is routing, queueing, reply "
        f"framing and ordering)"
    )


if __name__ == "__main__":
    main()
