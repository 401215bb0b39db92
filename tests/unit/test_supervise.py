"""The ambassador's lifelong tasks (ambassador.supervise): a bug in one is logged and the task
started again, instead of ending the task group with every client's service."""

from __future__ import annotations

import logging

import anyio
import pytest

from redis_ambassador import ambassador
from redis_ambassador.ambassador import supervise


def test_a_failing_task_is_logged_and_started_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ambassador, "_RESTART_AFTER", 0.01)
    runs: list[int] = []
    sibling_ticks: list[int] = []

    async def flaky(limit: int) -> None:
        runs.append(len(runs))
        if len(runs) < limit:
            raise KeyError("a bug")

    async def sibling() -> None:
        for n in range(5):
            sibling_ticks.append(n)
            await anyio.sleep(0.01)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            supervise(tg, "flaky loop", flaky, 3)
            tg.start_soon(sibling)

    with caplog.at_level(logging.ERROR, logger="redis_ambassador.ambassador"):
        anyio.run(main)
    assert runs == [0, 1, 2]  # failed twice, then returned normally (and was not restarted)
    assert sibling_ticks == [0, 1, 2, 3, 4]  # the task group lived on
    failures = [r for r in caplog.records if "flaky loop failed unexpectedly" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info is not None


def test_cancellation_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            supervise(tg, "forever", forever)
            await anyio.sleep(0.01)
            tg.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR):
        anyio.run(main)
    assert not caplog.records
