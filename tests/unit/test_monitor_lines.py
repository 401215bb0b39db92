"""MONITOR lines: Redis's format and quoting, the destination after the arguments."""

from __future__ import annotations

import re

from redis.client import Monitor

from redis_ambassador.routing.monitor import monitor_line, quoted


def test_arguments_are_quoted_as_redis_sdscatrepr_does() -> None:
    assert quoted(b"plain") == b'"plain"'
    assert quoted(b'say "hi"\\') == b'"say \\"hi\\"\\\\"'
    assert quoted(b"a\nb\r\t\x07\x08") == b'"a\\nb\\r\\t\\a\\b"'
    assert quoted(b"\x00\xff\x7f") == b'"\\x00\\xff\\x7f"'
    assert quoted(b"") == b'""'


def test_a_line_is_redis_format_with_the_destination_last() -> None:
    line = monitor_line(1764111111.0123456, "127.0.0.1:52214", [b"SET", b"k", b"v 1"], "node a:1")
    assert line == b'+1764111111.012345 [0 127.0.0.1:52214] "SET" "k" "v 1" (node a:1)\r\n'


def test_redis_py_parses_the_line_unchanged() -> None:
    line = monitor_line(1764111111.5, "10.0.0.3:40100", [b"GET", b"user:1"], "node 10.0.0.7:6379")
    response = line[1:-2].decode()
    command_time, command_data = response.split(" ", 1)
    match = Monitor.monitor_re.match(command_data)
    assert match is not None
    db_id, client_info, command = match.groups()
    assert (db_id, client_info) == ("0", "10.0.0.3:40100")
    assert " ".join(Monitor.command_re.findall(command)) == "GET user:1"
    assert re.fullmatch(r"\d+\.\d{6}", command_time)
