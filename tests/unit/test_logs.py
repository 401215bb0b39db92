"""redis_ambassador.logs: JSON lines and plain lines, level filtering, reconfiguring."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest

from redis_ambassador import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Where configure() sends lines; the root logger is put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield io.StringIO()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_time_level_logger_message(stream: io.StringIO) -> None:
    logs.configure("info", "json", stream)
    logging.getLogger("redis_ambassador.test").info("breaker %s: %s", "10.0.0.1:7000", "open")
    (line,) = lines(stream)
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "redis_ambassador.test"
    assert entry["message"] == "breaker 10.0.0.1:7000: open"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert "exception" not in entry


def test_json_exception_is_one_string_on_the_same_line(stream: io.StringIO) -> None:
    logs.configure("info", "json", stream)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("x").exception("it failed")
    (line,) = lines(stream)
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["message"] == "it failed"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom\nsecond line" in entry["exception"]


def test_json_extra_fields_and_values_json_cannot_hold(stream: io.StringIO) -> None:
    logs.configure("info", "json", stream)
    logging.getLogger("x").warning("moved", extra={"node": "a:1", "slots": {1, 2}, "n": 3})
    entry = json.loads(lines(stream)[0])
    assert entry["node"] == "a:1"
    assert entry["n"] == 3
    assert entry["slots"] == "{1, 2}"


def test_non_ascii_and_newlines_stay_one_line(stream: io.StringIO) -> None:
    logs.configure("debug", "json", stream)
    logging.getLogger("x").debug("clé\nsuite")
    (line,) = lines(stream)
    assert json.loads(line)["message"] == "clé\nsuite"


def test_level_filters(stream: io.StringIO) -> None:
    logs.configure("WARNING", "plain", stream)
    log = logging.getLogger("redis_ambassador.test")
    log.info("not shown")
    log.warning("shown")
    (line,) = lines(stream)
    assert line.endswith(" WARNING redis_ambassador.test: shown")


def test_configuring_again_replaces_the_handler(stream: io.StringIO) -> None:
    logs.configure("info", "plain", stream)
    logs.configure("info", "json", stream)
    logging.getLogger("x").info("once")
    (line,) = lines(stream)
    assert json.loads(line)["message"] == "once"


def test_python_warnings_are_logged(stream: io.StringIO) -> None:
    logs.configure("info", "json", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", DeprecationWarning, stacklevel=1)
    entry = json.loads(lines(stream)[0])
    assert entry["logger"] == "py.warnings"
    assert "careful" in entry["message"]


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_bad_level_or_format(level: str, fmt: str) -> None:
    with pytest.raises(ValueError):
        logs.configure(level, fmt, io.StringIO())
