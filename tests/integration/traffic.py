"""Client traffic for tests that change the cluster under live load: a redis-py client that
never retries silently, and a thread running rounds of commands through the ambassador."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot as _key_slot
from redis.retry import Retry

if TYPE_CHECKING:
    from conftest import Ambassador

__all__ = ["Traffic", "key_slot", "no_retry_client"]


def key_slot(key: str) -> int:
    """The cluster slot of ``key`` (hash tags honoured)."""
    return _key_slot(key.encode())


def no_retry_client(ambassador: Ambassador, **options: Any) -> redis.Redis:
    """One connection, no silent retries: every error the ambassador sends is seen and counted
    (``options``: more ``redis.Redis`` arguments, e.g. ``protocol=2``)."""
    return ambassador.client(
        single_connection_client=True, socket_timeout=10, retry=Retry(NoBackoff(), 0), **options
    )


@dataclass
class Traffic:
    """A client thread doing a round of commands over and over, checking every reply.

    ``round_fn(client, n)`` runs round ``n`` and returns problems (wrong replies) as strings;
    it raises on error replies. Errors and problems are recorded, never retried.
    ``client_options`` go to its client (``no_retry_client``).
    """

    ambassador: Ambassador
    round_fn: Callable[[redis.Redis, int], list[str]]
    client_options: dict[str, Any] = field(default_factory=dict)
    rounds: int = 0
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _progress: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client = no_retry_client(self.ambassador, **self.client_options)
        try:
            while not self._stop.is_set():
                try:
                    problems = self.round_fn(client, self.rounds)
                except redis.RedisError as exc:
                    self.errors.append(f"round {self.rounds}: {type(exc).__name__}: {exc}")
                    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                        client.close()
                        client = no_retry_client(self.ambassador, **self.client_options)
                else:
                    self.problems.extend(f"round {self.rounds}: {p}" for p in problems)
                with self._progress:
                    self.rounds += 1
                    self._progress.notify_all()
        finally:
            client.close()

    def wait_rounds(self, more: int, timeout: float = 20.0) -> None:
        """Block until ``more`` further rounds have completed (bounded by ``timeout``)."""
        with self._progress:
            target = self.rounds + more
            if not self._progress.wait_for(lambda: self.rounds >= target, timeout):
                raise AssertionError(
                    f"traffic made {self.rounds} of {target} rounds within {timeout}s; "
                    f"errors: {self.errors[:5]}"
                )

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "traffic thread still running after stop"
