"""The admin HTTP listener: ``/metrics`` (Prometheus text format), ``/healthz``, ``/readyz``.

A deliberately small HTTP/1.1 server on asyncio: one request per connection (``Connection:
close``), GET and HEAD only, the request head bounded in size and time. It serves probes and
scrapes from inside the pod, not the internet; it is bound to localhost unless configured
otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

_MAX_HEAD = 8192  # bytes of request line and headers
_READ_TIMEOUT = 5.0  # seconds to send them

Response = tuple[int, str, bytes]  # status, content type, body
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}  # fmt: skip
_TEXT = "text/plain; charset=utf-8"


class AdminRoutes:
    """What each path answers (sans-IO: a path in, a response out). Served from the start of
    the process: until ``attach`` (the cluster is being discovered), ``/readyz`` says so and
    ``/metrics`` is empty."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._unready: Callable[[], str | None] = lambda: "starting: discovering the cluster"

    def attach(self, registry: CollectorRegistry, unready: Callable[[], str | None]) -> None:
        """The running ambassador's metrics and readiness."""
        self._registry = registry
        self._unready = unready

    def get(self, path: str) -> Response:
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return 200, _TEXT, b"ok\n"
        if path == "/readyz":
            why = self._unready()
            if why is None:
                return 200, _TEXT, b"ready\n"
            return 503, _TEXT, f"not ready: {why}\n".encode()
        return 404, _TEXT, b"not found: try /metrics, /healthz or /readyz\n"


async def handle(
    routes: AdminRoutes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one request on one connection."""
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            status, kind, body = 400, _TEXT, b"bad request\n"
            method = "GET"
        else:
            method, path, _ = parts
            if method in ("GET", "HEAD"):
                status, kind, body = routes.get(path)
            else:
                status, kind, body = 405, _TEXT, b"only GET and HEAD\n"
        writer.write(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        if method != "HEAD":
            writer.write(body)
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def start_admin(routes: AdminRoutes, sock: object) -> asyncio.Server:
    """Serve the admin routes on an already bound listening socket."""
    return await asyncio.start_server(
        lambda r, w: handle(routes, r, w),
        sock=sock,
        limit=_MAX_HEAD,  # type: ignore[arg-type]
    )
