"""Log lines on stderr, plain or JSON (``server.log_level``, ``server.log_format``).

JSON is one object per line: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``message``, then ``exception`` (the formatted traceback) and ``stack`` when the record has
them, and any fields a caller passed with ``extra=`` (values JSON cannot hold are written as
their ``str``). Nothing is logged per command; this module only decides how lines look.

``configure`` may be called again (on SIGHUP): it replaces its own handler on the root logger,
so lines are never written twice.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "configure"]

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("plain", "json")

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord carries; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        millis = int(record.created * 1000) % 1000
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry and not name.startswith("_"):
                entry[name] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it rather than adding a second one."""


def configure(level: str, format: str, stream: IO[str] | None = None) -> None:
    """Send every logger's records at ``level`` or above to ``stream`` (stderr) as
    ``format`` says; Python warnings too, so that JSON output stays all JSON."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
    if format not in FORMATS:
        raise ValueError(f"log format {format!r}: must be one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    handler = _Handler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(PLAIN_FORMAT))
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
