"""What the data path's stages need of the event loop: the time, and callbacks soon or later.

Passed in rather than looked up (``asyncio.get_running_loop()``), so each stage is built and
tested without a running loop: asyncio's loop is a ``Scheduler``, and tests pass a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Timer(Protocol):
    """A callback scheduled for later."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """The time, and callbacks run by the loop soon or after a delay (asyncio's loop is one)."""

    def time(self) -> float: ...

    def call_soon(self, callback: Callable[..., object], *args: Any) -> object: ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer: ...
