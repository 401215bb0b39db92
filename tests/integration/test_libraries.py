"""Popular libraries, used as their applications use them, through the ambassador in front of a
3-master cluster: their transactional pipelines span slots (django-redis's ``set_many``, RQ's
enqueue, arq's WATCH-then-MULTI enqueue, ioredis's ``multi()``) and must work as on one Redis,
which ``commands.cross_slot_transactions = "per-node"`` (the default) makes them; libraries
whose Lua scripts name keys in several slots (Celery, BullMQ) run with the hash-tag prefixes their
guides ask for on a cluster. docs/commands.md's library table says the same; each line is a test
here. The applications' own scenarios are in tests/integration/apps/."""

from __future__ import annotations

import json
import operator
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import redis
from conftest import Ambassador

from redis_ambassador.slots import key_slot


def _run() -> str:
    return uuid.uuid4().hex[:8]


def test_redis_py_default_pipeline_is_a_transaction_over_slots(ambassador: Ambassador) -> None:
    run = _run()
    keys = [f"{run}:{n}" for n in range(8)]
    assert len({key_slot(k.encode()) for k in keys}) > 1
    client = ambassador.client()
    pipe = client.pipeline()  # transaction=True: MULTI ... EXEC
    for n, key in enumerate(keys):
        pipe.set(key, n).incr(key)
    assert pipe.execute() == [
        True,
        1,
        True,
        2,
        True,
        3,
        True,
        4,
        True,
        5,
        True,
        6,
        True,
        7,
        True,
        8,
    ]
    assert client.mget(keys) == [b"%d" % (n + 1) for n in range(8)]
    client.delete(*keys)


def test_django_redis_set_many_get_many_delete_many_and_delete_pattern(
    ambassador: Ambassador,
) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    from django_redis.cache import RedisCache

    run = _run()
    cache = RedisCache(f"redis://{ambassador.host}:{ambassador.port}/0", {"KEY_PREFIX": run})
    values = {f"k{n}": {"n": n} for n in range(20)}  # pickled, under ":1:" keys in many slots
    cache.set_many(values, timeout=60)
    assert cache.get_many(list(values)) == values
    assert cache.add("counter", 1)
    assert cache.incr("counter") == 2
    cache.delete_many([f"k{n}" for n in range(10)])
    assert cache.get_many(list(values)) == {f"k{n}": {"n": n} for n in range(10, 20)}
    assert cache.delete_pattern("k1*") == 10  # k10 .. k19
    assert cache.get_many(list(values)) == {}
    cache.delete("counter")


def test_rq_enqueues_and_a_worker_runs_the_job(ambassador: Ambassador) -> None:
    """RQ's enqueue is a transaction over two slots (the job's hash, the queue's list); its
    worker moves a job id from the queue to the queue's ``:intermediate`` list (LMOVE), which a
    hash tag in the queue's name keeps in one slot."""
    from rq import Queue, SimpleWorker

    connection = redis.Redis(ambassador.host, ambassador.port)
    queue = Queue(f"{{q-{_run()}}}", connection=connection)
    job = queue.enqueue(operator.add, 2, 3)
    assert queue.count == 1
    assert key_slot(job.key.encode()) != key_slot(queue.key.encode())
    SimpleWorker([queue], connection=connection).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value() == 5
    assert queue.count == 0


_APPS = Path(__file__).parent / "apps"


def _scenario(command: list[str], ambassador: Ambassador) -> str:
    """Run an application's scenario against the ambassador; what it printed."""
    done = subprocess.run(
        [*command, ambassador.host, str(ambassador.port), _run()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_celery_runs_a_task_a_group_and_a_chord(ambassador: Ambassador) -> None:
    out = _scenario([sys.executable, str(_APPS / "celery_tasks.py")], ambassador)
    assert out.split("\n")[:3] == ["5", "[0, 2, 4, 6, 8]", "10"]


def _libs() -> Path:
    """Where applications' own environments are made once, beside the project's virtualenv."""
    return Path(sys.prefix) / "libs"


def _arq_python() -> Path:
    """arq pins redis<6 and the ambassador needs redis-py 8: arq runs from a virtualenv of its
    own (.venv/libs/arq), as an application of its own would."""
    env = _libs() / "arq"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "arq>=0.26"],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    return python


def test_arq_enqueues_with_watch_then_multi_and_a_worker_runs_the_job(
    ambassador: Ambassador,
) -> None:
    out = _scenario([str(_arq_python()), str(_APPS / "arq_enqueue.py")], ambassador)
    assert out.split() == ["None", "5"]


def _node_modules() -> Path:
    """BullMQ, ioredis and node-redis, installed once from tests/integration/apps/package.json into
    .venv/libs/node (Debian's nodejs and npm installed first where Node.js is missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "nodejs", "npm"],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
    target = _libs() / "node"
    manifest = (_APPS / "package.json").read_text()
    if not (target / "node_modules").is_dir() or (target / "package.json").read_text() != manifest:
        target.mkdir(parents=True, exist_ok=True)
        (target / "package.json").write_text(manifest)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    return target / "node_modules"


def test_ioredis_and_node_redis_multi_over_slots_and_a_bullmq_queue_under_a_hash_tag(
    ambassador: Ambassador,
) -> None:
    modules = _node_modules()
    done = subprocess.run(
        ["node", str(_APPS / "node_queues.js"), ambassador.host, str(ambassador.port), _run()],
        capture_output=True, text=True, timeout=180, env={**os.environ, "NODE_PATH": str(modules)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout)
    assert seen["ioredis"] == {
        "replies": [[None, "OK"], [None, 1], [None, "OK"], [None, 2], [None, "OK"], [None, 3],
                    [None, "OK"], [None, 4]],
        "values": ["1", "2", "3", "4"],
    }  # fmt: skip
    assert seen["nodeRedis"] == {
        "replies": ["OK", 1, "OK", 2, "OK", 3, "OK", 4],
        "values": ["1", "2", "3", "4"],
    }
    assert seen["bullmq"] == {"result": 5, "delayed": 2}
