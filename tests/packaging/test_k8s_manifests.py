"""k8s/: the manifests are valid Kubernetes 1.29 objects (strict schema: unknown fields are
errors), and the sidecar is wired as documented: probes, config, ports, resources."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from packaging_helpers import K8S_DIR, load_yaml_all

from redis_ambassador.config import Address, load_config

# Native sidecars (initContainers with restartPolicy: Always) are on by default from 1.29.
KUBERNETES_VERSION = "1.29"
MANIFESTS = sorted(K8S_DIR.glob("*.yaml"))
ADMIN_PORT = 9090
AMBASSADOR = "redis-ambassador"


def docs(name: str) -> list[dict[str, Any]]:
    return load_yaml_all(K8S_DIR / name)


def pod_spec(name: str) -> dict[str, Any]:
    (deployment,) = docs(name)
    assert deployment["kind"] == "Deployment"
    return deployment["spec"]["template"]["spec"]


def configmap() -> dict[str, Any]:
    (cm,) = docs("configmap.yaml")
    return cm


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (found,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return found


def http_probe(container: dict[str, Any], probe: str) -> tuple[str, int]:
    get = container[probe]["httpGet"]
    return get["path"], port_number(container, get["port"])


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def config_file_of(spec: dict[str, Any], container: dict[str, Any]) -> tuple[Path, str]:
    """The TOML file the container is told to read (--config, else REDIS_AMBASSADOR_CONFIG):
    its path in the container and its text, from the ConfigMap volume mounted there."""
    args = container.get("args", [])
    if "--config" in args:
        path = Path(args[args.index("--config") + 1])
    else:
        path = Path(env_of(container)["REDIS_AMBASSADOR_CONFIG"])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates (SIGHUP reload)"
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    cm = configmap()
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    return path, cm["data"][path.name]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_for_kubernetes(manifest: Path) -> None:
    objects = load_yaml_all(manifest)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_kinds() -> None:
    kinds = {p.name: [d["kind"] for d in load_yaml_all(p)] for p in MANIFESTS}
    assert kinds == {
        "configmap.yaml": ["ConfigMap"],
        "deployment.yaml": ["Deployment"],
        "deployment-native-sidecar.yaml": ["Deployment"],
    }


def test_configmap_is_a_valid_ambassador_config(tmp_path: Path) -> None:
    (name, text), *others = configmap()["data"].items()
    assert not others
    assert name.endswith(".toml")
    tomllib.loads(text)
    path = tmp_path / name
    path.write_text(text)
    config = load_config(path, env={})
    # Seeds: a headless Service's DNS name, which resolves to every node of the cluster.
    (seed,) = config.cluster.seeds
    assert seed.host.endswith(".svc.cluster.local")
    assert "headless" in seed.host
    # The app shares the pod's network namespace: nothing else needs the Redis port.
    assert config.server.listen == Address("127.0.0.1", 6379)


@pytest.mark.parametrize(
    ("manifest", "where"),
    [("deployment.yaml", "containers"), ("deployment-native-sidecar.yaml", "initContainers")],
)
def test_sidecar_probes_and_effective_config(manifest: str, where: str, tmp_path: Path) -> None:
    spec = pod_spec(manifest)
    (sidecar,) = [c for c in spec[where] if c["name"] == AMBASSADOR]
    assert http_probe(sidecar, "readinessProbe") == ("/readyz", ADMIN_PORT)
    assert http_probe(sidecar, "livenessProbe") == ("/healthz", ADMIN_PORT)
    assert ADMIN_PORT in [p["containerPort"] for p in sidecar["ports"]]
    # The image's entrypoint is `redis-ambassador serve`: args are serve's flags only.
    assert all(not arg.startswith("serve") for arg in sidecar.get("args", []))
    # What the process will run with: the ConfigMap's file, then the container's env on top.
    path, text = config_file_of(spec, sidecar)
    local = tmp_path / path.name
    local.write_text(text)
    config = load_config(local, env=env_of(sidecar))
    assert config.server.admin == Address("0.0.0.0", ADMIN_PORT)  # probes come to the pod IP
    # The app reaches it on localhost at the port it listens on.
    (app,) = (
        spec["containers"]
        if where == "initContainers"
        else [c for c in spec["containers"] if c["name"] != AMBASSADOR]
    )
    host, _, port = env_of(app)["REDIS_HOST"].rpartition(":")
    assert host == "localhost"
    assert config.server.listen.port == int(port)
    assert config.server.listen.host == "127.0.0.1"
    # Resources: requests for scheduling, a memory limit.
    resources = sidecar["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    # Non-root, matching the image's uid; read-only root filesystem.
    security = sidecar["securityContext"]
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    # The drain (server.drain_timeout) fits in the grace period, with the preStop sleep.
    drain = config.server.drain_timeout
    pre_stop = sidecar.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
    assert sleep + drain < spec["terminationGracePeriodSeconds"]


def test_classic_sidecar_uses_config_flag() -> None:
    spec = pod_spec("deployment.yaml")
    assert "initContainers" not in spec
    (sidecar,) = [c for c in spec["containers"] if c["name"] == AMBASSADOR]
    assert sidecar["args"][:1] == ["--config"]
    assert sidecar.get("restartPolicy") is None


def test_native_sidecar_is_an_init_container_that_gates_the_app() -> None:
    spec = pod_spec("deployment-native-sidecar.yaml")
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == AMBASSADOR
    assert sidecar["restartPolicy"] == "Always"
    # The startup probe, not the readiness probe, is what the app's start waits for.
    assert http_probe(sidecar, "startupProbe") == ("/readyz", ADMIN_PORT)
    assert env_of(sidecar)["REDIS_AMBASSADOR_CONFIG"].endswith(".toml")
    assert AMBASSADOR not in [c["name"] for c in spec["containers"]]


def test_both_deployments_scrape_annotations_point_at_the_admin_port() -> None:
    for manifest in ("deployment.yaml", "deployment-native-sidecar.yaml"):
        (deployment,) = docs(manifest)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(ADMIN_PORT)
        assert annotations["prometheus.io/path"] == "/metrics"


# The sizing rule (docs/operations.md, "Sizing: memory"): limit >= 64 MiB + L x 1.5 x V, with V
# the largest value (server.max_bulk_len) and L the connections moving one at once: two, the
# manifests say.
MiB = 1024 * 1024
_UNITS = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}
LARGE_VALUE_CONNECTIONS = 2


def _quantity(text: str) -> int:
    """A Kubernetes memory quantity in bytes (the binary suffixes the manifests use)."""
    return int(text[:-2]) * _UNITS[text[-2:]] if text[-2:] in _UNITS else int(text)


@pytest.mark.parametrize(
    ("manifest", "where"),
    [("deployment.yaml", "containers"), ("deployment-native-sidecar.yaml", "initContainers")],
)
def test_sidecar_memory_limit_fits_its_largest_value_by_the_sizing_rule(
    manifest: str, where: str, tmp_path: Path
) -> None:
    spec = pod_spec(manifest)
    (sidecar,) = [c for c in spec[where] if c["name"] == AMBASSADOR]
    path, text = config_file_of(spec, sidecar)
    local = tmp_path / path.name
    local.write_text(text)
    server = load_config(local, env=env_of(sidecar)).server
    value = server.max_bulk_len
    share = value * 3 // 2
    # A largest value passes both ways, and no connection holds more than its share.
    assert value < server.max_query_buffer <= share
    assert value < server.output_buffer_hard_limit <= share
    assert server.max_output_buffer <= server.output_buffer_hard_limit
    limit = _quantity(sidecar["resources"]["limits"]["memory"])
    assert limit >= 64 * MiB + LARGE_VALUE_CONNECTIONS * share, (
        f"{manifest}: {limit // MiB} MiB cannot hold {LARGE_VALUE_CONNECTIONS} values of "
        f"{value // MiB} MiB at once"
    )
