"""The secrets the ambassador runs with, read at start and again on each reload (SIGHUP).

Each secret is made from a few config keys and the files they name: the clients' password
(``server.requirepass`` or ``requirepass_file``), the admin token, the ambassador's credentials
on the nodes (``upstream.username`` and ``password`` or ``password_file``), the sentinels'
password, and the TLS contexts of both sides (certificate, key and CA files). A reload reads every
file again, so a file rewritten in place (a rotated Kubernetes secret) is a change though no key
changed; only a secret whose keys or files changed is made anew. One that cannot be made (a file
missing, empty, or not a certificate) is not used: it keeps its running value, and its keys
theirs, with one error line naming the key and the file, never what the file holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis_ambassador.config import Config, ConfigError, describe_keys
from redis_ambassador.tls import NodeTLS, listener_context, node_tls
from redis_ambassador.upstream.credentials import Credentials, read_secret_file

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class Secrets:
    """Every secret in use; ``sources`` is what each (by field name) was made from: its keys'
    values, each file named by a digest of its content (the content itself is not kept)."""

    requirepass: bytes
    admin_token: str
    upstream: Credentials
    sentinel: Credentials
    node_tls: NodeTLS | None
    listener_tls: ssl.SSLContext | None
    sources: Mapping[str, tuple[object, ...]]

    @classmethod
    def load(cls, config: Config) -> Secrets:
        """Read every secret; ConfigError (naming the key and the file) for one that cannot be."""
        sources = {secret.field: _sources(secret, config) for secret in _SECRETS}
        return cls(**{s.field: s.make(config) for s in _SECRETS}, sources=sources)

    def reread(self, config: Config) -> Reread:
        """The secrets as ``config`` (the reload's, before rotation) names them now: those whose
        keys or files changed made anew, the others (and any that fails) as they are."""
        made: dict[str, object] = {}
        sources = dict(self.sources)
        changed: list[str] = []
        failed: list[str] = []
        for secret in _SECRETS:
            now = _sources(secret, config)
            before = self.sources[secret.field]
            if now == before:
                continue
            try:
                made[secret.field] = secret.make(config)
            except ConfigError as exc:
                log.error("config reload: %s; still using the running %s", exc, secret.what)
                failed += secret.keys
                continue
            sources[secret.field] = now
            changed += [
                k for k, old, new in zip(secret.keys, before, now, strict=True) if old != new
            ]
        if not made:
            return Reread(self, (), tuple(failed))
        return Reread(
            dataclasses.replace(self, **made, sources=sources), tuple(changed), tuple(failed)
        )


@dataclass(frozen=True)
class Reread:
    """What a reload found: the secrets to use (the same object when none changed), the keys
    whose value or file changed and are now in effect, and those kept at their running value."""

    secrets: Secrets
    changed: tuple[str, ...]
    failed: tuple[str, ...]


@dataclass(frozen=True)
class _Secret:
    field: str  # of Secrets
    what: str  # for the log
    keys: tuple[str, ...]  # every key it is made from; those ending in _file name a file
    make: Callable[[Config], object]


def _password(config: Config, dotted: str) -> str:
    """A password key's value, or the content of the file its ``<key>_file`` names."""
    path = config.value(dotted + "_file")
    return read_secret_file(path, dotted + "_file") if path else config.value(dotted)


def _keys_starting(prefix: str) -> tuple[str, ...]:
    return tuple(dotted for dotted, _, _ in describe_keys() if dotted.startswith(prefix))


_SECRETS = (
    _Secret(
        "requirepass",
        "clients' password",
        ("server.requirepass", "server.requirepass_file"),
        lambda config: _password(config, "server.requirepass").encode(),
    ),
    _Secret(
        "admin_token",
        "admin token",
        ("server.admin_token",),
        lambda config: config.server.admin_token,
    ),
    _Secret(
        "upstream",
        "credentials on the nodes",
        ("upstream.username", "upstream.password", "upstream.password_file"),
        lambda config: Credentials(
            config.upstream.username.encode(), _password(config, "upstream.password").encode()
        ),
    ),
    _Secret(
        "sentinel",
        "sentinels' password",
        ("cluster.sentinel_password", "cluster.sentinel_password_file"),
        lambda config: Credentials(
            password=_password(config, "cluster.sentinel_password").encode()
        ),
    ),
    # Every key of TLS to the nodes, and of the TLS listener (``server.tls_listen*``).
    _Secret("node_tls", "TLS to the nodes", _keys_starting("upstream.tls"), node_tls),
    _Secret(
        "listener_tls",
        "TLS listener's certificate",
        _keys_starting("server.tls_listen"),
        listener_context,
    ),
)

# The keys a reload reads again (with their files): the secrets' keys, less the two that switch
# TLS on or off (a listener to open, or the nodes' other ports: a restart).
ROTATED_KEYS = frozenset(k for s in _SECRETS for k in s.keys) - {
    "upstream.tls",
    "server.tls_listen",
}


def _sources(secret: _Secret, config: Config) -> tuple[object, ...]:
    values = ((key, config.value(key)) for key in secret.keys)
    return tuple(
        (value, _digest(value)) if key.endswith("_file") and value else value
        for key, value in values
    )


def _digest(path: str) -> bytes | None:
    """A digest of the file's content (None: unreadable, which making the secret reports)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).digest()
    except OSError:
        return None
