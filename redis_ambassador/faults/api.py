"""The chaos control API's routes, sans-IO: a method, a path and a body in, a status and a JSON
object out. Node actions block on real processes, so for them the answer is ``Deferred``: work
the admin listener runs in a thread, which then gives the response.

    GET    /chaos                          seed, rules (and nodes, when this process started them)
    GET    /chaos/rules                    the rules with their counters
    POST   /chaos/rules                    add a rule (JSON object) -> 201 its view | 400
    DELETE /chaos/rules/ID                 remove one -> 200 its last view | 404
    DELETE /chaos/rules                    remove all -> 200 {"removed": N}
    GET    /chaos/nodes                    the cluster's nodes (managed clusters only)
    POST   /chaos/nodes/HOST:PORT/ACTION   kill, pause, resume, restart, failover
    POST   /chaos/slots                    {"slots": "0-99", "to": "HOST:PORT"}: live migration
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis_ambassador.faults.control import NodeActionError, NodeControl
from redis_ambassador.faults.rules import Faults, RuleError

log = logging.getLogger("redis_ambassador.chaos")

JsonResponse = tuple[int, dict[str, Any]]

DISABLED: JsonResponse = (404, {"error": "chaos is not enabled (serve --chaos)"})
_UNMANAGED = (
    "node actions need a cluster this ambassador started (redis-ambassador dev, or the pytest "
    "plugin); under serve, act on the nodes with your own tools"
)


@dataclass(frozen=True)
class Deferred:
    """Blocking work (a node action) to run in a worker thread; ``run`` returns the response."""

    run: Callable[[], JsonResponse]


class ChaosApi:
    """Routes /chaos requests to the running ambassador's Faults and, when it started the
    cluster itself, to its NodeControl."""

    def __init__(self, faults: Faults, nodes: NodeControl | None = None) -> None:
        self._faults = faults
        self._nodes = nodes

    def handle(self, method: str, path: str, body: bytes = b"") -> JsonResponse | Deferred:
        parts = [p for p in path.split("?", 1)[0].split("/") if p][1:]  # after "chaos"
        match parts:
            case []:
                return self._allow(method, ("GET",)) or self._state()
            case ["rules"]:
                if method == "GET":
                    return 200, {"rules": self._faults.view()["rules"]}
                if method == "POST":
                    return self._add(body)
                if method == "DELETE":
                    removed = self._faults.clear()
                    log.info("chaos API: %d rules cleared", removed)
                    return 200, {"removed": removed}
                return _not_allowed("GET, POST, DELETE")
            case ["rules", rule_id]:
                if refused := self._allow(method, ("DELETE",)):
                    return refused
                # Its last counters: taken and removed in one step of the event loop, so no
                # hit falls between the two.
                last = [r for r in self._faults.view()["rules"] if r["id"] == rule_id]
                if self._faults.remove(rule_id):
                    log.info("chaos API: rule %s removed after %d hits", rule_id, last[0]["hits"])
                    return 200, {"removed": rule_id, "rule": last[0]}
                return 404, {"error": f"no rule {rule_id}"}
            case ["nodes"]:
                return self._allow(method, ("GET",)) or self._managed(
                    lambda nodes: (200, {"nodes": nodes.describe()})
                )
            case ["nodes", address, action]:
                return self._allow(method, ("POST",)) or self._managed(
                    lambda nodes: (200, {"node": nodes.act(address, action)})
                )
            case ["slots"]:
                if refused := self._allow(method, ("POST",)):
                    return refused
                spec = _json_object(body)
                if isinstance(spec, tuple):
                    return spec
                return self._managed(
                    lambda nodes: (200, nodes.migrate(spec.get("slots"), spec.get("to")))
                )
        return 404, {"error": f"no such chaos path {path}: see GET /chaos"}

    def _state(self) -> JsonResponse | Deferred:
        state = self._faults.view()
        if self._nodes is None:
            return 200, state
        nodes = self._nodes
        return Deferred(lambda: (200, {**state, "nodes": nodes.describe()}))

    def _add(self, body: bytes) -> JsonResponse:
        spec = _json_object(body)
        if isinstance(spec, tuple):
            return spec
        try:
            view = self._faults.add(spec)
        except RuleError as exc:
            return 400, {"error": str(exc)}
        log.info("chaos API: rule %s added: %s", view["id"], json.dumps(spec))
        return 201, view

    def _managed(self, action: Callable[[NodeControl], JsonResponse]) -> JsonResponse | Deferred:
        nodes = self._nodes
        if nodes is None:
            return 409, {"error": _UNMANAGED}

        def run() -> JsonResponse:
            try:
                return action(nodes)
            except NodeActionError as exc:
                return exc.status, {"error": str(exc)}

        return Deferred(run)

    @staticmethod
    def _allow(method: str, allowed: tuple[str, ...]) -> JsonResponse | None:
        return None if method in allowed else _not_allowed(", ".join(allowed))


def _not_allowed(allowed: str) -> JsonResponse:
    return 405, {"error": f"method not allowed here; use {allowed}"}


def _json_object(body: bytes) -> dict[str, Any] | JsonResponse:
    """The body as a JSON object, or the 400 response that says why it is not one."""
    try:
        value = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return 400, {"error": f"body: not valid JSON ({exc})"}
    if not isinstance(value, dict):
        return 400, {"error": "body: must be a JSON object"}
    return value
