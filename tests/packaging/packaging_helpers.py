"""Shared by the packaging tests: the repository's paths, YAML loading, a tiny HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
K8S_DIR = ROOT / "k8s"
DASHBOARD = ROOT / "dashboards" / "redis-ambassador.json"

# The metrics the admin listener serves on /metrics, with their labels: the dashboard may use
# these and nothing else.
METRICS: dict[str, frozenset[str]] = {
    "redis_ambassador_commands_total": frozenset({"command"}),
    "redis_ambassador_client_connections": frozenset(),
    "redis_ambassador_client_connections_total": frozenset(),
    "redis_ambassador_upstream_connections": frozenset({"node"}),
    "redis_ambassador_upstream_pending": frozenset({"node"}),
    "redis_ambassador_breaker_state": frozenset({"node"}),
    "redis_ambassador_redirects_total": frozenset({"kind"}),
    "redis_ambassador_retries_total": frozenset(),
    "redis_ambassador_topology_refreshes_total": frozenset({"result"}),
    "redis_ambassador_name_lookups_total": frozenset({"result"}),
    "redis_ambassador_slot_map_age_seconds": frozenset(),
    "redis_ambassador_slots_covered": frozenset(),
    "redis_ambassador_client_bytes_received_total": frozenset(),
    "redis_ambassador_client_bytes_sent_total": frozenset(),
    "redis_ambassador_command_errors_total": frozenset({"command"}),
    "redis_ambassador_slow_requests_total": frozenset(),
    "redis_ambassador_request_duration_seconds_bucket": frozenset({"command", "le"}),
    "redis_ambassador_node_latency_seconds_bucket": frozenset({"node", "le"}),
    "redis_ambassador_chaos_faults_total": frozenset({"rule", "action"}),
    "redis_ambassador_client_connections_rejected_total": frozenset(),
    "redis_ambassador_client_disconnects_total": frozenset({"reason"}),
    "redis_ambassador_client_reads_paused_total": frozenset({"reason"}),
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yaml_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


@contextmanager
def http_server(status_by_path: dict[str, int]) -> Iterator[int]:
    """A local HTTP server answering GET with the status mapped to its path (404 otherwise);
    yields its port on 127.0.0.1."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = status_by_path.get(self.path, 404)
            body = b"ok\n" if status == 200 else b"no\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
