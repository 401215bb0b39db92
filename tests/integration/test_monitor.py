"""MONITOR through the ambassador: every client's commands, in Redis's format, with the node
each went to; redis-py's Monitor reads it; RESET ends it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from conftest import ReplyTimeout, resp
from redis.crc import key_slot

from redis_ambassador.local.cluster import LocalCluster

if TYPE_CHECKING:
    from conftest import Ambassador

_LINE = re.compile(rb"\+(\d+\.\d{6}) \[0 (127\.0\.0\.1:\d+)\] (.*) \(([^()]+)\)\r\n")


def _lines_until(raw, last: bytes) -> list[re.Match[bytes]]:  # type: ignore[no-untyped-def]
    """MONITOR lines read up to (and including) the first whose arguments are ``last``."""
    seen = []
    while True:
        line = raw.read_reply(timeout=5)
        match = _LINE.fullmatch(line)
        assert match is not None, line
        seen.append(match)
        if match.group(3) == last:
            return seen


def test_monitor_shows_every_clients_commands_with_their_node(
    ambassador: Ambassador, cluster: LocalCluster
) -> None:
    watcher = ambassador.raw()
    watcher.send(resp("MONITOR"))
    assert watcher.read_reply() == b"+OK\r\n"
    with ambassador.client(protocol=2) as client:
        client.set("mon:key", 'say "hi"\n')
        client.get("mon:key")
        client.config_get("maxmemory")  # an admin command: Redis's MONITOR leaves it out
        client.ping()
    lines = _lines_until(watcher, b'"PING"')
    shown = {m.group(3): m.group(4) for m in lines}
    node = cluster.master_for_slot(key_slot(b"mon:key")).address
    assert shown[b'"SET" "mon:key" "say \\"hi\\"\\n"'] == f"node {node}".encode()
    assert shown[b'"GET" "mon:key"'] == f"node {node}".encode()
    assert shown[b'"PING"'] == b"ambassador"
    assert not any(b"CONFIG" in args for args in shown)
    # RESET leaves MONITOR: nothing more arrives.
    watcher.send(resp("RESET"))
    assert watcher.read_reply() == b"+RESET\r\n"
    with ambassador.client(protocol=2) as client:
        client.set("mon:key", "after")
    try:
        late = watcher.read_reply(timeout=0.5)
    except ReplyTimeout:
        late = b""
    assert late == b"", late
    watcher.close()


def test_redis_py_monitor_reads_the_lines(ambassador: Ambassador) -> None:
    monitored = ambassador.client(protocol=2)
    with ambassador.client(protocol=2).monitor() as monitor:
        monitored.set("mon:py", "1")
        while True:
            command = monitor.next_command()
            if command["command"] == "SET mon:py 1":
                break
        assert command["client_address"] == "127.0.0.1"
        assert command["db"] == 0
    monitored.close()
