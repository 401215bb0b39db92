"""A small client of the chaos control API (stdlib HTTP and JSON), for the CLI, the pytest plugin
and scripts: ``ChaosClient("127.0.0.1:9090").add(command="GET", error="LOADING ...")``."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

TOKEN_ENV = "REDIS_AMBASSADOR_ADMIN_TOKEN"  # the env name of server.admin_token too


class ChaosApiError(Exception):
    """The API refused (``status``: 400 an invalid rule, 404, 409, ...; 0: not reachable);
    the message is the API's own explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ChaosClient:
    """The chaos API of the ambassador whose admin listener is at ``admin`` ("host:port");
    ``token``: server.admin_token (default: $REDIS_AMBASSADOR_ADMIN_TOKEN, if set)."""

    def __init__(self, admin: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.base = f"http://{admin}"
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.timeout = timeout  # node actions wait for the cluster: a failover takes seconds

    def state(self) -> dict[str, Any]:
        """Seed, rules with their counters, and nodes (when the ambassador started them)."""
        return self._call("GET", "/chaos")

    def rules(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/chaos/rules")["rules"])

    def add(self, **spec: Any) -> dict[str, Any]:
        """Add a rule (fields as in docs/chaos.md: ``command="GET", delay_ms=200``); its view."""
        return self._call("POST", "/chaos/rules", spec)

    def remove(self, rule_id: str) -> dict[str, Any]:
        """Remove a rule; its view with its final counters."""
        return dict(self._call("DELETE", f"/chaos/rules/{rule_id}")["rule"])

    def clear(self) -> int:
        """Remove every rule; how many there were."""
        return int(self._call("DELETE", "/chaos/rules")["removed"])

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/chaos/nodes")["nodes"])

    def node(self, action: str, address: str) -> dict[str, Any]:
        """kill, pause, resume, restart or failover the node at ``address``."""
        return dict(self._call("POST", f"/chaos/nodes/{address}/{action}")["node"])

    def migrate(self, slots: str, to: str) -> dict[str, Any]:
        """Move the slots ("0-99") and their keys to master ``to`` ("host:port"), live."""
        return self._call("POST", "/chaos/slots", {"slots": slots, "to": to})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ChaosApiError(exc.code, _explanation(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ChaosApiError(
                0, f"cannot reach the admin listener at {self.base}: {reason}"
            ) from None


def _explanation(exc: urllib.error.HTTPError) -> str:
    text = exc.read().decode(errors="replace")
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text.strip() or f"HTTP {exc.code}"
