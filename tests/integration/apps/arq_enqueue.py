"""arq, as an application uses it (run by test_libraries.py in arq's own virtualenv: arq pins
redis<6): enqueue (WATCH the job key, then MULTI over two slots), enqueue the same job id again
(the WATCH sees the job and nothing is enqueued), and a burst worker runs the job (its finish is
a transaction with a DEL of keys in three slots). Prints the second enqueue and the result."""

import asyncio
import sys

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func


async def add(ctx: dict, a: int, b: int) -> int:
    return a + b


async def main(host: str, port: str, queue: str) -> None:
    pool = await create_pool(RedisSettings(host=host, port=int(port)))
    try:
        job = await pool.enqueue_job("add", 2, 3, _queue_name=queue)
        assert job is not None
        again = await pool.enqueue_job("add", 2, 3, _job_id=job.job_id, _queue_name=queue)
        worker = Worker(
            functions=[func(add, name="add")], redis_pool=pool, burst=True, queue_name=queue,
            poll_delay=0.05, handle_signals=False,
        )  # fmt: skip
        await worker.main()
        print(again, await job.result(timeout=5))
    finally:
        await pool.aclose()


asyncio.run(main(*sys.argv[1:]))
