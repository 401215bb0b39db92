"""Client authentication at the ambassador (sans-IO): who must AUTH, which AUTH succeeds, and
how failed attempts are slowed on their connection.

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
from dataclasses import dataclass

from redis_ambassador import errors
from redis_ambassador.config import ServerConfig
from redis_ambassador.operations.ratelimit import LimitedLog
from redis_ambassador.protocol.replies import OK
from redis_ambassador.protocol.requests import as_bytes

log = logging.getLogger(__name__)

# What a client may send before it is in (Redis's no-auth commands, and QUIT); anything else
# gets NOAUTH, once Redis's own checks (unknown command, arity) pass.
NO_AUTH_NEEDED = frozenset(["auth", "hello", "quit", "reset"])
_limited_log = LimitedLog(log, logging.WARNING, 10, "connections slowed for failed AUTHs")


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
    """How failed AUTHs are slowed, counted per client connection (by the caller): after
    ``limit`` of them on one connection, each further one is answered late -- ``delay`` seconds,
    doubled for each next one, up to ``max_delay`` -- and nothing that connection sent after it
    runs before that answer. So a password cannot be guessed quickly on one connection, while no
    other connection, from the same address or not, is ever slowed or refused."""

    def __init__(self, limit: int, delay: float, max_delay: float) -> None:
        self.limit = limit
        self.delay = delay
        self.max_delay = max_delay
        self.failures = 0  # failed AUTHs (metrics)
        self.delayed = 0  # of them, answered late (metrics)

    def failed(self, client: str, failures: int, now: float) -> float:
        """A connection's ``failures``-th failed AUTH (``client`` names it in the log): the
        seconds before it is answered, 0 for at once."""
        self.failures += 1
        over = failures - self.limit
        if over <= 0:
            return 0.0
        self.delayed += 1
        if over == 1:
            _limited_log.log(
                now,
                "client %s: %d failed AUTHs: its further failed AUTHs are answered late "
                "(server.auth_max_failures)", client, self.limit,
            )  # fmt: skip
        # Capped before doubling: a connection failing all day must not overflow the float.
        return min(self.max_delay, self.delay * 2.0 ** min(over - 1, 64))


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
        self.requirepass = requirepass  # replaced by a reload that rotates it (rotation.py)
        self.failures = failures

    @classmethod
    def from_config(cls, config: ServerConfig, requirepass: bytes) -> ClientAuth:
        """The configured policy, with the password (``requirepass`` or its file's) read."""
        failures = FailedAuths(
            config.auth_max_failures, config.auth_failure_delay, config.auth_failure_max_delay
        )
        return cls(config.client_auth, requirepass, failures)

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
        elif default and hmac.compare_digest(password, self.requirepass):
            return Verdict(OK, True, False)
        return Verdict(errors.WRONGPASS, False, True)
