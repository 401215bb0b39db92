"""Client authentication at the ambassador (sans-IO): who must AUTH, which AUTH succeeds, and
the per-address limit on failed attempts.

Three modes (``server.client_auth``):

* ``off``: every client is in, as on a Redis whose default user has no password (``AUTH pass``
  gets Redis's "called without any password configured" error, ``AUTH default x`` +OK).
* ``password``: Redis's ``requirepass``: ``AUTH pass`` or ``AUTH default pass`` with
  ``server.requirepass``; the client then uses the ambassador's own node connections.
* ``acl``: ``AUTH user pass`` is checked by the cluster itself (an AUTH on a master); the client's
  commands then run as that user on the nodes (the router asks for that part).

Until a client is in, every command but AUTH, HELLO, QUIT and RESET gets Redis's ``-NOAUTH``.
"""

from __future__ import annotations

import hmac
import logging
from collections import deque
from dataclasses import dataclass

from redis_ambassador import errors
from redis_ambassador.commands.table import CommandSpec, arity_ok
from redis_ambassador.config import ServerConfig
from redis_ambassador.operations.ratelimit import LimitedLog
from redis_ambassador.protocol.replies import OK
from redis_ambassador.protocol.requests import as_bytes
from redis_ambassador.upstream.credentials import read_secret_file

log = logging.getLogger(__name__)

# What a client may send before it is in (Redis's no-auth commands, and QUIT).
NO_AUTH_NEEDED = frozenset(["auth", "hello", "quit", "reset"])
# Addresses whose failures are remembered at most (a flood of addresses cannot grow memory).
_MAX_ADDRESSES = 10_000
_limited_log = LimitedLog(log, logging.WARNING, 10, "authentication rate limits")


def unauthenticated_reply(spec: CommandSpec | None, args: list[bytes]) -> bytes | None:
    """The reply to a command from a client not yet in, as Redis checks it (unknown command,
    then arity, then authentication); None for the commands it may send."""
    if spec is None:
        return errors.unknown_command(args)
    if not arity_ok(spec.arity, len(args)):
        return errors.wrong_arity(spec.name)
    base = spec.name.split("|", 1)[0]
    if base in NO_AUTH_NEEDED:
        return None
    return errors.NOAUTH_EXEC if base == "exec" else errors.NOAUTH


def parse_auth(args: list[bytes]) -> tuple[bytes | None, bytes] | bytes:
    """AUTH's (user, password): user None for ``AUTH password``; or Redis's error."""
    args = as_bytes(args)  # kept while the cluster checks them
    if len(args) == 2:
        return None, args[1]
    if len(args) == 3:
        return args[1], args[2]
    if len(args) < 2:
        return errors.wrong_arity("auth")
    return errors.SYNTAX


class FailedAuths:
    """Failed AUTHs by client address over a sliding window. An address with ``limit`` failures
    within ``window`` seconds has its further AUTHs refused unchecked until the oldest of them
    leaves the window (a password cannot be guessed faster than ``limit`` per window)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failed: dict[str, deque[float]] = {}
        self.failures = 0  # failed AUTHs (metrics)
        self.refused = 0  # AUTHs refused unchecked (metrics)

    def retry_in(self, address: str, now: float) -> float:
        """0 if an AUTH from ``address`` may be checked now; else seconds until it may (and
        the refusal is counted)."""
        times = self._failed.get(address)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failed[address]
            return 0.0
        if len(times) < self.limit:
            return 0.0
        self.refused += 1
        return times[0] + self.window - now

    def failed(self, address: str, now: float) -> None:
        """An AUTH from ``address`` failed."""
        self.failures += 1
        times = self._failed.get(address)
        if times is None:
            if len(self._failed) >= _MAX_ADDRESSES:
                self._forget_oldest(now)
            times = self._failed[address] = deque()
        times.append(now)
        if len(times) == self.limit:
            _limited_log.log(
                now,
                "client address %s: %d failed AUTHs within %gs: its AUTHs are refused for a while",
                address, self.limit, self.window,
            )  # fmt: skip

    def _forget_oldest(self, now: float) -> None:
        for address in [a for a, t in self._failed.items() if t[-1] <= now - self.window]:
            del self._failed[address]
        while len(self._failed) >= _MAX_ADDRESSES:
            del self._failed[next(iter(self._failed))]


@dataclass(frozen=True)
class Verdict:
    """What a password check says: the reply, whether the client is in, whether it counts as
    a failed attempt."""

    reply: bytes
    signed_in: bool
    failed: bool


class ClientAuth:
    """The client authentication policy of one ambassador."""

    def __init__(self, mode: str, requirepass: bytes, failures: FailedAuths) -> None:
        self.mode = mode
        self._requirepass = requirepass
        self.failures = failures

    @classmethod
    def from_config(cls, config: ServerConfig) -> ClientAuth:
        """The configured policy (``requirepass_file`` read now)."""
        password = config.requirepass
        if config.requirepass_file:
            password = read_secret_file(config.requirepass_file, "server.requirepass_file")
        failures = FailedAuths(config.auth_max_failures, config.auth_failure_window)
        return cls(config.client_auth, password.encode(), failures)

    @property
    def required(self) -> bool:
        """Whether a new client must AUTH before anything else."""
        return self.mode != "off"

    @property
    def by_cluster(self) -> bool:
        """Whether AUTH is checked by the cluster (ACL users), not here."""
        return self.mode == "acl"

    def check(self, user: bytes | None, password: bytes) -> Verdict:
        """AUTH in the modes checked here (``off``, ``password``), as Redis answers it."""
        default = user is None or user == b"default"
        if self.mode == "off":
            if user is None:  # Redis: the default user has no password to check
                return Verdict(errors.AUTH_WITHOUT_PASSWORD, False, False)
            if default:
                return Verdict(OK, True, False)
        elif default and hmac.compare_digest(password, self._requirepass):
            return Verdict(OK, True, False)
        return Verdict(errors.WRONGPASS, False, True)
