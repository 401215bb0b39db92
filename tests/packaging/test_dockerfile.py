"""The Dockerfile: a slim base, a non-root user, `redis-ambassador serve` as entrypoint, the
admin listener reachable from outside the container, and a HEALTHCHECK on /healthz that works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import pytest
from packaging_helpers import ROOT, http_server

from redis_ambassador.config import Address, load_config

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for line in lines:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    all_ = instructions()
    last_from = max(i for i, (word, _) in enumerate(all_) if word == "FROM")
    return all_[last_from:]


def the(word: str, stage: list[tuple[str, str]] | None = None) -> list[str]:
    return [rest for w, rest in (stage or final_stage()) if w == word]


def test_every_stage_is_a_slim_python_base() -> None:
    args = {m[1]: m[2] for m in re.finditer(r"(\w+)=(\S+)", " ".join(the("ARG", instructions())))}
    froms = the("FROM", instructions())
    assert froms
    for base in froms:
        image = base.split()[0].replace("${PYTHON_VERSION}", args.get("PYTHON_VERSION", ""))
        assert re.fullmatch(r"python:3\.1[1-9]-slim", image), base
    # pyproject.toml's requires-python admits the version the image uses.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minimum = project["requires-python"].removeprefix(">=")
    version = args["PYTHON_VERSION"]
    assert tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))


def test_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    users = the("USER", stage)
    assert users, "no USER in the final stage: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # The uid is numeric (Kubernetes' runAsNonRoot can only verify a numeric one) and created.
    assert user.isdigit()
    assert any(f"--uid {user}" in run for run in the("RUN", stage))
    # USER comes before the ENTRYPOINT and nothing after it switches back.
    words = [w for w, _ in stage]
    assert words.index("USER") < words.index("ENTRYPOINT")


def test_entrypoint_is_serve_in_exec_form() -> None:
    entrypoints = the("ENTRYPOINT")
    assert len(entrypoints) == 1
    # Exec form (JSON): the ambassador is PID 1 and receives SIGTERM (drain) and SIGHUP.
    assert json.loads(entrypoints[0]) == ["redis-ambassador", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "redis-ambassador" in scripts
    assert not the("CMD"), "a CMD would be replaced by the first `docker run IMAGE --flag`"


def test_admin_listener_is_reachable_from_outside_and_redis_stays_on_localhost() -> None:
    env = dict(
        re.fullmatch(r"(\w+)=(\S+)", item.strip()).groups()  # type: ignore[union-attr]
        for rest in the("ENV")
        for item in re.findall(r"\w+=\S+", rest)
    )
    assert env["REDIS_AMBASSADOR_ADMIN"] == "0.0.0.0:9090"
    assert "REDIS_AMBASSADOR_LISTEN" not in env  # the default: 127.0.0.1:6379
    config = load_config(env={**env, "REDIS_AMBASSADOR_SEEDS": "redis-1:6379"})
    assert config.server.admin == Address("0.0.0.0", 9090)
    assert config.server.listen == Address("127.0.0.1", 6379)
    assert set(" ".join(the("EXPOSE")).split()) == {"6379", "9090"}


def healthcheck_argv() -> list[str]:
    (healthcheck,) = the("HEALTHCHECK")
    command = healthcheck[healthcheck.index("CMD ") + len("CMD ") :]
    argv = json.loads(command)
    assert isinstance(argv, list), "HEALTHCHECK CMD should be in exec form"
    return argv


def test_healthcheck_asks_healthz_with_python_only() -> None:
    (healthcheck,) = the("HEALTHCHECK")
    for option in ("--interval=", "--timeout=", "--retries="):
        assert option in healthcheck
    argv = healthcheck_argv()
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]
    assert "curl" not in healthcheck and "wget" not in healthcheck


def run_healthcheck(admin: str) -> int:
    argv = [sys.executable, *healthcheck_argv()[1:]]
    env = {"REDIS_AMBASSADOR_ADMIN": admin} if admin else {}
    return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode


@pytest.mark.parametrize("bind", ["0.0.0.0", "127.0.0.1"])
def test_healthcheck_passes_when_healthz_answers_200(bind: str) -> None:
    with http_server({"/healthz": 200}) as port:
        assert run_healthcheck(f"{bind}:{port}") == 0


def test_healthcheck_fails_when_healthz_does_not_answer_200() -> None:
    with http_server({"/healthz": 503}) as port:
        assert run_healthcheck(f"0.0.0.0:{port}") != 0
    with http_server({}) as port:
        pass
    assert run_healthcheck(f"0.0.0.0:{port}") != 0  # nothing listens there any more


def test_healthcheck_passes_with_the_admin_listener_off() -> None:
    assert run_healthcheck("off") == 0


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "everything is excluded first"
    let_in = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
    copied: set[str] = set()
    for rest in the("COPY", instructions()):
        if rest.startswith("--from"):
            continue
        copied.update(rest.split()[:-1])
    assert copied == let_in == {"pyproject.toml", "README.md", "redis_ambassador"}
    for name in copied:
        assert (ROOT / name).exists()
