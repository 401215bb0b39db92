"""With Docker: bring compose/compose.yaml up for real and run the example app through the
ambassador. Skipped (the only skip in this suite) where no Docker daemon answers."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.request

import pytest
from packaging_helpers import COMPOSE_DIR


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    for argv, what in (
        (["docker", "info", "--format", "{{.ServerVersion}}"], "the Docker daemon"),
        (["docker", "compose", "version"], "docker compose"),
    ):
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{what} does not answer: {exc}"
        if result.returncode != 0:
            return f"{what} is not available: {(result.stderr or result.stdout).strip()[:200]}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_compose_stack_runs_the_example_app() -> None:
    problem = _docker_problem()
    if problem is not None:
        pytest.skip(f"needs Docker: {problem}")
    admin_port = _free_port()
    project = f"redis-ambassador-test-{os.getpid()}"
    env = {**os.environ, "AMBASSADOR_ADMIN_PORT": str(admin_port)}
    compose = ["docker", "compose", "-p", project, "-f", str(COMPOSE_DIR / "compose.yaml")]

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    try:
        up = run("up", "--detach", "--build", "--wait", "ambassador", timeout=900)
        assert up.returncode == 0, up.stderr[-3000:]
        app = run(
            "run", "--rm", "-e", "APP_ITERATIONS=10", "-e", "APP_INTERVAL=0.1", "app", timeout=300
        )
        assert app.returncode == 0, app.stdout[-3000:] + app.stderr[-3000:]
        rounds = [line for line in app.stdout.splitlines() if line.startswith("app: round")]
        assert len(rounds) == 10
        assert all(": ok SET/GET " in line for line in rounds), app.stdout
        assert "app: done: 10 rounds, 0 errors" in app.stdout
        # The admin listener, published on the host's loopback.
        base = f"http://127.0.0.1:{admin_port}"
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'redis_ambassador_commands_total{command="incr"}' in metrics.lower()
        assert re.search(r"^redis_ambassador_slots_covered 16384(\.0)?$", metrics, re.MULTILINE)
    finally:
        run("down", "--volumes", "--remove-orphans", "--timeout", "5", timeout=300)
