"""TLS settings made into ``ssl.SSLContext`` objects, at start and when a reload rotates the files
(rotation.py): one for connections to the nodes (every pool lane, private connection, health probe
and control-plane client uses it) and one for the client-facing TLS listener.

Verification is on unless switched off key by key: a node's certificate must chain to
``upstream.tls_ca_file`` (or the system's CAs) and, unless ``upstream.tls_check_hostname`` is
false, name the node (or ``upstream.tls_server_name``). A problem with a file is a ConfigError
naming the key, so it reads as one line and stops the start-up.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from redis_ambassador.config import Address, Config, ConfigError

# TLS 1.2 is the oldest Redis itself accepts by default (tls-protocols "TLSv1.2 TLSv1.3").
_MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True)
class NodeTLS:
    """How to open a TLS connection to a node."""

    context: ssl.SSLContext
    server_name: str  # '' : each node's own host
    client_certificate: bool = False  # one is presented (tls-auth-clients yes needs it)

    def server_hostname(self, address: Address) -> str:
        """The name sent as SNI and checked against the node's certificate."""
        return self.server_name or address.host


def connect_options(tls: NodeTLS | None, address: Address, timeout: float) -> dict[str, Any]:
    """``create_connection``'s TLS arguments for the node announced as ``address`` (none for
    plain TCP); the handshake gets the connect's own timeout."""
    if tls is None:
        return {}
    return {
        "ssl": tls.context,
        "server_hostname": tls.server_hostname(address),
        "ssl_handshake_timeout": timeout,
    }


def node_tls(config: Config) -> NodeTLS | None:
    """How to reach the nodes over TLS (None: plain TCP); ConfigError for a missing or bad file."""
    upstream = config.upstream
    if not upstream.tls:
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name"):
            if getattr(upstream, name):
                raise ConfigError(
                    f"upstream.{name} is set but upstream.tls is false: set upstream.tls = true "
                    "(REDIS_AMBASSADOR_TLS=true, --tls) to connect to the nodes over TLS",
                    key=f"upstream.{name}",
                )
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = _MINIMUM_VERSION
    context.check_hostname = upstream.tls_check_hostname
    if upstream.tls_ca_file:
        _load_ca(context, "upstream.tls_ca_file", upstream.tls_ca_file)
    _load_pair(
        context,
        ("upstream.tls_cert_file", upstream.tls_cert_file),
        ("upstream.tls_key_file", upstream.tls_key_file),
        required=False,
    )
    return NodeTLS(context, upstream.tls_server_name, bool(upstream.tls_cert_file))


def listener_context(config: Config) -> ssl.SSLContext | None:
    """The TLS listener's context (None: no TLS listener); ConfigError for a missing or bad file."""
    server = config.server
    if server.tls_listen is None:
        for name in ("tls_listen_cert_file", "tls_listen_key_file", "tls_listen_ca_file"):
            if getattr(server, name):
                raise ConfigError(
                    f"server.{name} is set but server.tls_listen is off: give the TLS "
                    "listener an address (REDIS_AMBASSADOR_TLS_LISTEN, --tls-listen HOST:PORT)",
                    key=f"server.{name}",
                )
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _MINIMUM_VERSION
    _load_pair(
        context,
        ("server.tls_listen_cert_file", server.tls_listen_cert_file),
        ("server.tls_listen_key_file", server.tls_listen_key_file),
        required=True,
    )
    if server.tls_listen_ca_file:
        _load_ca(context, "server.tls_listen_ca_file", server.tls_listen_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as Redis's tls-auth-clients yes
    return context


def _load_ca(context: ssl.SSLContext, key: str, path: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key} = {path!r}: cannot load it: {_reason(exc)}", key=key) from None


def _load_pair(
    context: ssl.SSLContext, cert: tuple[str, str], key: tuple[str, str], required: bool
) -> None:
    (cert_key, cert_path), (key_key, key_path) = cert, key
    if not cert_path and not key_path and not required:
        return
    for dotted, path in (cert, key):
        if not path:
            other = key_key if dotted == cert_key else cert_key
            need = "is required with TLS on" if required else f"is required with {other}"
            raise ConfigError(f"{dotted} is empty: it {need}", key=dotted)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{cert_key} = {cert_path!r}, {key_key} = {key_path!r}: cannot load them: "
            f"{_reason(exc)}",
            key=cert_key,
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return _ssl_reason(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason without its ``[SSL: ...]`` wrapping; a verify failure says why."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc.reason or exc.strerror or exc).lower().replace("_", " ")


def describe(exc: BaseException) -> str:
    """One line for a failed connection: a TLS failure says so, and why ('' if the exception
    says nothing, e.g. a timeout)."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {_ssl_reason(exc)}"
    return str(exc)
