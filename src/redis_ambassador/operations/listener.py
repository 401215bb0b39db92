"""The admin HTTP listener: ``/metrics`` (Prometheus text format), ``/healthz``, ``/readyz``,
and the chaos control API under ``/chaos`` (faults/api.py).

A deliberately small HTTP/1.1 server on asyncio: one request per connection (``Connection:
close``), GET and HEAD everywhere, POST and DELETE under ``/chaos`` only, the request head and
body bounded in size and time. It serves probes, scrapes and test suites from inside the pod,
not the internet; it is bound to localhost unless configured otherwise, and
``server.admin_token`` makes every path but the two probes ask for ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from redis_ambassador.faults.api import DISABLED, ChaosApi, Deferred, JsonResponse

log = logging.getLogger(__name__)

_MAX_HEAD = 8192  # bytes of request line and headers
_MAX_BODY = 65536  # bytes of a request body (a chaos rule is a few hundred)
_READ_TIMEOUT = 5.0  # seconds to send them
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes need no token

Response = tuple[int, str, bytes]  # status, content type, body
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            411: "Length Required", 413: "Content Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


class AdminRoutes:
    """What each path answers (sans-IO: a request in, a response out). Served from the start of
    the process: until ``attach`` (the cluster is being discovered), ``/readyz`` says so,
    ``/metrics`` is empty and ``/chaos`` is not enabled."""

    def __init__(self, token: str = "") -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._unready: Callable[[], str | None] = lambda: "starting: discovering the cluster"
        self._chaos: ChaosApi | None = None
        self.use_token(token)

    def attach(
        self,
        registry: CollectorRegistry,
        unready: Callable[[], str | None],
        chaos: ChaosApi | None = None,
    ) -> None:
        """The running ambassador's metrics, readiness and (when enabled) chaos API."""
        self._registry = registry
        self._unready = unready
        self._chaos = chaos

    def use_token(self, token: str) -> None:
        """Ask for this token from now on (a reload changed ``server.admin_token``)."""
        self._token = token.encode()

    def authorized(self, path: str, authorization: str | None) -> bool:
        """No token configured, a probe, or ``Authorization: Bearer <the token>``."""
        if not self._token or path.split("?", 1)[0] in _OPEN_PATHS:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        # Constant time: the answer must not tell how much of a guess was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self._token
        )

    def respond(self, method: str, path: str, body: bytes) -> Response | Deferred:
        """The response to an authorized request (Deferred: run it in a thread first)."""
        if path == "/chaos" or path.startswith(("/chaos/", "/chaos?")):
            if self._chaos is None:
                return as_json(DISABLED)
            answer = self._chaos.handle(method, path, body)
            return answer if isinstance(answer, Deferred) else as_json(answer)
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, b"only GET and HEAD (POST and DELETE under /chaos)\n"
        return self.get(path)

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
        return 404, _TEXT, b"not found: try /metrics, /healthz, /readyz or /chaos\n"


def as_json(response: JsonResponse) -> Response:
    status, obj = response
    return status, _JSON, json.dumps(obj).encode() + b"\n"


class _BadRequest(Exception):
    """The request cannot be served; ``response`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response: Response = (status, _TEXT, f"{message}\n".encode())


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    """Method, path, headers (lower-case names) and body of one request."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        raise ConnectionAbortedError from None  # nothing worth answering
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest(400, "bad request")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest(411, "send the body with a Content-Length")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise _BadRequest(400, "bad Content-Length")
    if int(length) > _MAX_BODY:
        raise _BadRequest(413, f"body larger than {_MAX_BODY} bytes")
    try:
        body = await asyncio.wait_for(reader.readexactly(int(length)), _READ_TIMEOUT)
    except (asyncio.IncompleteReadError, TimeoutError):
        raise ConnectionAbortedError from None
    return parts[0], parts[1], headers, body


async def handle(
    routes: AdminRoutes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one request on one connection."""
    try:
        method = "GET"
        extra = ""
        try:
            method, path, headers, body = await _read_request(reader)
        except _BadRequest as exc:
            status, kind, body = exc.response
        else:
            if not routes.authorized(path, headers.get("authorization")):
                status, kind, body = 401, _TEXT, b"unauthorized: send Authorization: Bearer TOKEN\n"
                extra = 'WWW-Authenticate: Bearer realm="redis-ambassador"\r\n'
            else:
                response = routes.respond(method, path, body)
                if isinstance(response, Deferred):
                    response = as_json(await _run_deferred(response))
                status, kind, body = response
        writer.write(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        if method != "HEAD":
            writer.write(body)
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _run_deferred(work: Deferred) -> JsonResponse:
    try:
        return await asyncio.to_thread(work.run)
    except Exception as exc:  # a node action's unexpected failure is an answer, not a crash
        log.exception("chaos API: %s failed", work)
        return 500, {"error": f"{type(exc).__name__}: {exc}"}


async def start_admin(routes: AdminRoutes, sock: object) -> asyncio.Server:
    """Serve the admin routes on an already bound listening socket."""
    return await asyncio.start_server(
        lambda r, w: handle(routes, r, w),
        sock=sock,
        limit=_MAX_HEAD,  # type: ignore[arg-type]
    )
