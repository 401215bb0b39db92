"""compose/: a 6-node Redis Cluster, its one-shot init, the ambassador with the example app in
its network namespace, and the `monitoring` profile. Checked without Docker."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
from packaging_helpers import COMPOSE_DIR, DASHBOARD, ROOT, http_server, load_yaml

from redis_ambassador.config import Address, load_config

NODES = [f"redis-{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_DIR / "compose.yaml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def depends(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition} (the short list form means service_started)."""
    value = service.get("depends_on", {})
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    value = service.get("environment", {})
    if isinstance(value, list):
        return dict(item.split("=", 1) for item in value)
    return {k: str(v) for k, v in value.items()}


def test_services(services: dict[str, Any]) -> None:
    assert set(services) == {
        *NODES,
        "cluster-init",
        "ambassador",
        "app",
        "prometheus",
        "grafana",
    }
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dep in depends(service):
            assert dep in services, f"{name} depends on unknown {dep}"


def test_six_redis_7_cluster_nodes_announce_their_service_names(services: dict[str, Any]) -> None:
    conf = (COMPOSE_DIR / "redis-node.conf").read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line.strip() and line[0] != "#"
    )
    assert settings["cluster-enabled"] == "yes"
    assert settings["port"] == "6379"
    # Hostnames in CLUSTER SHARDS and MOVED: Docker's DNS resolves them in the network.
    assert settings["cluster-preferred-endpoint-type"] == "hostname"
    for name in NODES:
        node = services[name]
        assert node["image"] == "redis:7"
        command = node["command"]
        assert command[0] == "redis-server"
        assert command[command.index("--cluster-announce-hostname") + 1] == name
        mounted = node["volumes"][0].split(":")
        assert (COMPOSE_DIR / mounted[0]).resolve() == COMPOSE_DIR / "redis-node.conf"
        assert mounted[1] == command[1]
        assert "redis-cli" in node["healthcheck"]["test"]
        assert "ping" in node["healthcheck"]["test"]


def test_cluster_init_is_one_shot_after_every_node_is_healthy(services: dict[str, Any]) -> None:
    init = services["cluster-init"]
    assert init["image"] == "redis:7"
    assert depends(init) == dict.fromkeys(NODES, "service_healthy")
    assert init.get("restart", "no") == "no"
    script_path = init["volumes"][0].split(":")[0]
    script = (COMPOSE_DIR / script_path).read_text()
    assert init["entrypoint"][-1] == init["volumes"][0].split(":")[1]
    assert "redis-cli --cluster create" in script
    assert "--cluster-replicas 1" in script
    assert "--cluster-yes" in script
    for name in NODES:
        assert name in script


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh to check the script's syntax")
def test_cluster_init_script_parses() -> None:
    result = subprocess.run(
        ["sh", "-n", str(COMPOSE_DIR / "cluster-init.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_ambassador_is_built_from_the_repository_and_seeded_by_env(
    services: dict[str, Any],
) -> None:
    ambassador = services["ambassador"]
    build = ambassador["build"]
    assert (COMPOSE_DIR / build["context"]).resolve() == ROOT
    assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file()
    assert depends(ambassador) == {"cluster-init": "service_completed_successfully"}
    env = env_of(ambassador)
    config = load_config(env=env)
    assert config.cluster.seeds
    assert {seed.host for seed in config.cluster.seeds} <= set(NODES)
    assert {seed.port for seed in config.cluster.seeds} == {6379}
    assert config.server.listen == Address("127.0.0.1", 6379)
    assert config.server.admin == Address("0.0.0.0", 9090)
    # Its admin port is published on the host's loopback only.
    (published,) = ambassador["ports"]
    assert published.startswith("127.0.0.1:")
    assert published.endswith(":9090")


def test_ambassador_healthcheck_asks_readyz(services: dict[str, Any]) -> None:
    test = services["ambassador"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == "python"
    assert "/readyz" in test[-1]
    assert "127.0.0.1:9090" in test[-1]


def run_compose_healthcheck(services: dict[str, Any], port: int) -> int:
    code = services["ambassador"]["healthcheck"]["test"][-1].replace(
        "127.0.0.1:9090", f"127.0.0.1:{port}"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


def test_ambassador_healthcheck_follows_readyz(services: dict[str, Any]) -> None:
    with http_server({"/readyz": 200, "/healthz": 200}) as port:
        assert run_compose_healthcheck(services, port) == 0
    with http_server({"/readyz": 503, "/healthz": 200}) as port:
        assert run_compose_healthcheck(services, port) != 0


def test_app_is_a_sidecar_of_the_ambassador(services: dict[str, Any]) -> None:
    app = services["app"]
    # The shared network namespace, as in a pod: localhost is the ambassador.
    assert app["network_mode"] == "service:ambassador"
    assert "ports" not in app and "networks" not in app  # not allowed with network_mode
    assert env_of(app)["REDIS_HOST"] == "localhost:6379"
    assert depends(app) == {"ambassador": "service_healthy"}
    build_dir = COMPOSE_DIR / app["build"]
    assert (build_dir / "Dockerfile").is_file()
    assert "app.py" in (build_dir / "Dockerfile").read_text()
    assert "import redis" in (build_dir / "app.py").read_text()


def test_monitoring_profile(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ("prometheus", "grafana"):
            assert service["profiles"] == ["monitoring"]
        else:
            assert "profiles" not in service, f"{name} should start without a profile"


def test_prometheus_scrapes_the_ambassador_metrics(services: dict[str, Any]) -> None:
    volume = services["prometheus"]["volumes"][0].split(":")
    assert volume[1] == "/etc/prometheus/prometheus.yml"
    prometheus = load_yaml(COMPOSE_DIR / volume[0])
    (job,) = prometheus["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (static,) = job["static_configs"]
    admin = Address.parse(env_of(services["ambassador"])["REDIS_AMBASSADOR_ADMIN"])
    assert static["targets"] == [f"ambassador:{admin.port}"]


def test_grafana_is_provisioned_with_the_dashboard(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    assert depends(grafana) == {"prometheus": "service_started"}
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = COMPOSE_DIR / next(
        k for k, v in mounts.items() if v == "/etc/grafana/provisioning"
    )
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    prometheus_port = services["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = load_yaml(provisioning / "dashboards" / "redis-ambassador.yml")["providers"]
    in_container = provider["options"]["path"]
    host_dir = next(k for k, v in mounts.items() if v == in_container)
    assert (COMPOSE_DIR / host_dir).resolve() == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{in_container}/{DASHBOARD.name}"


def test_every_bind_mount_exists(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source}"


def test_host_ports_are_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert re.match(r"127\.0\.0\.1:", str(port)), f"{name} publishes {port} to the world"
