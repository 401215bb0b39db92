"""Celery with Redis as broker and result backend, as its guide sets it up for a Redis Cluster
(run by test_libraries.py): every broker key under one hash tag, every result key under another
(``global_keyprefix``), as kombu and the result backend run Lua scripts over several of their
keys. A worker (in this process) runs a task, a group and a chord. Prints what each returned."""

import sys

from celery import Celery, group
from celery.contrib.testing.worker import start_worker

host, port, run = sys.argv[1:]
url = f"redis://{host}:{port}/0"
app = Celery(f"tasks-{run}", broker=url, backend=url)
app.conf.task_default_queue = f"celery-{run}"
app.conf.broker_transport_options = {"global_keyprefix": f"{{celery-{run}}}"}
app.conf.result_backend_transport_options = {"global_keyprefix": f"{{results-{run}}}"}


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def total(numbers: list[int]) -> int:
    return sum(numbers)


with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
    print(add.delay(2, 3).get(timeout=10))
    print(group(add.s(n, n) for n in range(5))().get(timeout=10))
    print((group(add.s(n, 1) for n in range(4)) | total.s())().get(timeout=10))
